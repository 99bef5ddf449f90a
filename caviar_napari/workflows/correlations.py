"""Green's tensor, B factors and ρ_nn of an ATOMS file; LSM/CSM against a truth
(``caviar correlations``).

With a ground truth (a file written by ``caviar simulate``) the reconstruction is compared with
the *realised* Green's tensor of the simulated configurations: LSM as printed in the paper (a
sum over vectors), LSM as a mean, CSM, and ρ_nn of both over the same pairs.  Every input,
the ground truth included, is read and checked before the CORR file is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.truth import nearest_neighbour_pair_set, rms_displacement_A
from caviar_napari.errors import InputError
from caviar_napari.io.outputs import OutputTarget
from caviar_napari.workflows.inputs import index_list, read_checked_atoms
from caviar_napari.workflows.summary import StepSummary

if TYPE_CHECKING:
    from caviar_napari.io.correlations_file import CorrelationsData, GroundTruth

__all__ = [
    "CorrelationsOptions",
    "CorrelationsSummary",
    "comparison_lines",
    "run_correlations",
    "summary_lines",
]


@dataclass(frozen=True)
class CorrelationsOptions:
    """Options of :func:`run_correlations`.

    Attributes
    ----------
    atoms
        ATOMS file.
    out
        Output CORR file.
    slices
        Slices to average (``"A:B"``, one index, or None for all).
    ground_truth
        Simulated 4D-STEM file whose ``ground_truth`` group to compare with, or None.
    reference_atom
        Compare over this atom and its ``neighbours`` nearest neighbours (default: every self
        block and every nearest-neighbour pair); only with ``ground_truth``.
    neighbours
        Nearest neighbours of the reference atom.
    match_tolerance_A
        Largest distance when matching atoms to the ground truth, Å.
    overwrite
        Replace an existing output that this program did not write, or of another kind.
    """

    atoms: Path
    out: Path
    slices: str | None = None
    ground_truth: Path | None = None
    reference_atom: int | None = None
    neighbours: int = 6
    match_tolerance_A: float = 0.5
    overwrite: bool = False


@dataclass(kw_only=True)
class CorrelationsSummary(StepSummary):
    """Result of :func:`run_correlations`.

    Attributes
    ----------
    data
        The CORR contents written.
    comparison
        The comparison with the ground truth (None without one, or for a static truth).
    n_infinite
        Atoms excluded for an infinite position (besides the NaN ones of failed refinements).
    """

    data: CorrelationsData | None = None
    comparison: corr.TruthComparison | None = None
    n_infinite: int = 0


def _rho_text(green: np.ndarray, positions: np.ndarray) -> str:
    try:
        rho = corr.nearest_neighbour_correlation(green, positions)
    except InputError as exc:
        return f"n/a ({exc})"
    return f"{rho.mean:+.3f} ± {rho.std:.3f} (std over {rho.values.size} pairs)"


def summary_lines(data: CorrelationsData) -> list[str]:
    """Human-readable summary of a CORR result (atoms, exclusions, B, ρ_nn)."""
    valid = np.isfinite(data.b_factor_A2)
    lines = [
        f"atoms: {data.n_atoms} ({valid.sum()} used), states: {data.n_states}, "
        f"slices: {index_list(data.slices)}",
        f"excluded atoms (NaN positions): {index_list(data.excluded_atoms) or 'none'}",
    ]
    if valid.any():
        b = data.b_factor_A2[valid]
        lines.append(
            f"B factor 8π²(<u_y²> + <u_x²>): mean {b.mean():.4f} Å², "
            f"min {b.min():.4f}, max {b.max():.4f} Å²"
        )
    lines.append(f"rho_nn: {_rho_text(data.green_A2, data.mean_positions_A)}")
    return lines


def comparison_lines(
    data: CorrelationsData,
    truth: GroundTruth,
    truth_path: str | Path,
    reference: int | None,
    n_neighbours: int,
    tolerance_A: float,
) -> tuple[list[str], corr.TruthComparison | None]:
    """Compare a CORR result with the realised ground truth; text lines and the comparison."""
    positions = data.mean_positions_A.copy()
    positions[data.excluded_atoms] = np.nan
    if reference is not None:
        if not 0 <= reference < data.n_atoms or reference in data.excluded_atoms:
            raise InputError(
                f"--reference-atom {reference}: not one of the {data.n_atoms} atoms with "
                "finite correlations"
            )
        nbrs = corr.neighbours(positions, reference, n_nearest=n_neighbours)
        pairs = corr.reference_pairs(reference, nbrs)
        pair_set = (
            f"reference atom {reference} and its {nbrs.size} nearest neighbours "
            f"(self blocks included)"
        )
    else:
        pairs = nearest_neighbour_pair_set(positions)
        pair_set = "every atom's self block and every nearest-neighbour pair"
    head = (
        f"ground truth: {truth_path} (realised Green's tensor of "
        f"{truth.positions_A.shape[0]} configurations)"
    )
    if not np.any(truth.green_realised_A2):
        # a static truth: eq. 3-4 divide by the truth's vectors, so they have no value here;
        # what the reconstruction shows is then all artefact, and its size is what matters
        return [
            head,
            "LSM/CSM undefined: the ground truth has no displacements (static); every "
            "correlation in the reconstruction is an artefact",
            f"reconstruction over {pair_set}: rms displacement "
            f"{100 * rms_displacement_A(data.green_A2):.2f} pm per direction",
            f"rho_nn (reconstruction): {_rho_text(data.green_A2, data.mean_positions_A)}",
        ], None
    cmp = corr.compare_to_truth(
        data.green_A2,
        positions,
        truth.green_realised_A2,
        truth.mean_positions_A,
        pairs,
        tolerance_A=tolerance_A,
    )
    m, s = cmp.match, cmp.similarity
    matched = int((m.truth_index >= 0).sum())
    return [
        head,
        f"matched atoms: {matched} of {data.n_atoms} (truth has {truth.mean_positions_A.shape[0]}"
        f"), global shift ({m.shift_A[0]:+.3f}, {m.shift_A[1]:+.3f}) Å (y, x), "
        f"unmatched reconstructed: {index_list(m.unmatched_reconstructed) or 'none'}",
        f"pairs: {pair_set}: {s.n_pairs} pairs, {s.n_vectors} vectors",
        f"LSM (eq. 3 as printed, sum over {s.n_vectors} vectors): {s.lsm_sum:.4f}",
        f"LSM (mean per vector, 1 = equal length): {s.lsm_mean:.4f}",
        f"CSM (eq. 4, mean over {s.n_pairs} pairs): {s.csm:+.4f}",
        f"rho_nn over the same {cmp.rho_nn_reconstructed.values.size} nearest-neighbour pairs: "
        f"reconstruction {cmp.rho_nn_reconstructed.mean:+.3f}, "
        f"truth (realised) {cmp.rho_nn_truth.mean:+.3f}",
    ], cmp


def run_correlations(options: CorrelationsOptions) -> CorrelationsSummary:
    """Compute the CORR contents of an ATOMS file, compare them with a truth, write the file.

    Raises
    ------
    InputError
        Unreadable inputs (ATOMS, ground truth), an ATOMS file with no atoms, bad options.
    OutputError
        The output may not or cannot be written (checked first; e.g. it is the ground truth).
    """
    from caviar_napari.io.correlations_file import read_ground_truth, write_correlations

    if options.reference_atom is not None and options.ground_truth is None:
        raise InputError("--reference-atom is only used with --ground-truth")
    if options.neighbours < 1:
        raise InputError(f"--neighbours must be at least 1, got {options.neighbours}")
    target = OutputTarget.prepare(
        options.out,
        "corr",
        inputs={"ATOMS": options.atoms, "--ground-truth": options.ground_truth},
        overwrite=options.overwrite,
    )
    checked = read_checked_atoms(options.atoms)
    truth = None if options.ground_truth is None else read_ground_truth(options.ground_truth)
    data = corr.correlations_from_atoms(checked.atoms, options.slices)
    data = dataclasses.replace(data, source=str(options.atoms))
    summary = CorrelationsSummary(data=data, n_infinite=int(checked.infinite_atoms.size))
    summary.lines = summary_lines(data)
    summary.lines[2:2] = checked.exclusion_lines()
    summary.warnings += checked.exclusion_lines()
    if not np.isfinite(data.b_factor_A2).any():
        raise InputError(
            f"{options.atoms}: every atom is excluded (a non-finite position in some state or "
            "slice); no correlations to compute"
        )
    if truth is not None:
        lines, summary.comparison = comparison_lines(
            data,
            truth,
            options.ground_truth,
            options.reference_atom,
            options.neighbours,
            options.match_tolerance_A,
        )
        summary.lines += lines
    summary.out = target.write(lambda p: write_correlations(p, data), warnings=summary.warnings)
    summary.lines.append(f"wrote {options.out}")
    return summary
