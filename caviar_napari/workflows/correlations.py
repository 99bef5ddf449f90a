"""Green's tensor, its errors, B factors, ρ_nn, offset and significance of an ATOMS file; LSM/CSM
against a truth (``caviar correlations``).

Everything is computed by :func:`caviar_napari.analysis.correlation_analysis.analyse_correlations`:
standard errors by resampling the object states (jackknife by default, or a seeded bootstrap),
the uniform x–x / y–y offset (subtracted with ``subtract_offset``), the significance of the
nearest-neighbour cross blocks, and the positional noise floor.  With a ground truth (a file
written by ``caviar simulate``) the reconstruction is compared with the *realised* Green's tensor
of the simulated configurations: LSM as printed in the paper (a sum over vectors), LSM as a mean,
CSM, each ± its error, and ρ_nn of both over the same pairs.  Every input, the ground truth
included, is read and checked before the CORR file is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.correlation_analysis import (
    CorrelationAnalysis,
    CorrelationConfig,
    TruthInput,
    analyse_correlations,
)
from caviar_napari.analysis.correlation_errors import RESAMPLING_METHODS, Resampling
from caviar_napari.analysis.correlation_significance import SIGNIFICANCE_SIGMA
from caviar_napari.analysis.noise_floor import (
    noise_floor_lines,
    noise_floor_warnings,
    physical_floor_warnings,
)
from caviar_napari.analysis.phonons import STANDARD_ATOMIC_WEIGHTS_AMU
from caviar_napari.errors import InputError
from caviar_napari.io.outputs import OutputTarget
from caviar_napari.workflows.inputs import index_list, read_checked_atoms
from caviar_napari.workflows.noise_floor import separation_report_check
from caviar_napari.workflows.summary import StepSummary

if TYPE_CHECKING:
    from caviar_napari.io.correlations_file import CorrelationsData, GroundTruth

__all__ = [
    "ERROR_CHOICES",
    "CorrelationsOptions",
    "CorrelationsSummary",
    "comparison_lines",
    "run_correlations",
    "summary_lines",
]

#: ``errors`` choices: a resampling method, or none.
ERROR_CHOICES = (*RESAMPLING_METHODS, "none")


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
    errors
        ``"jackknife"`` (default), ``"bootstrap"`` or ``"none"``: how standard errors are
        obtained (resampling the object states, each with all its slices).
    bootstrap
        Bootstrap replicas (with ``errors="bootstrap"``).
    seed
        Seed of the bootstrap draws.
    subtract_offset
        Subtract the uniform x–x / y–y offset (partial spatial coherence) from the tensor.
    offset_min_distance_A
        Only pairs of atoms at least this far apart enter the offset (0: all distinct pairs).
    noise_floor_A
        A known positional noise floor per direction (e.g. the rms displacement of a static
        control analysed the same way), Å; None: estimated where the data allow.
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
    errors: str = "jackknife"
    bootstrap: int = 200
    seed: int = 0
    subtract_offset: bool = False
    offset_min_distance_A: float = 0.0
    noise_floor_A: float | None = None
    overwrite: bool = False

    def analysis_config(self) -> CorrelationConfig:
        """The analysis options (validated)."""
        if self.errors not in ERROR_CHOICES:
            raise InputError(
                f"--errors must be one of {', '.join(ERROR_CHOICES)}, got {self.errors!r}"
            )
        resampling = None
        if self.errors != "none":
            resampling = Resampling(self.errors, int(self.bootstrap), int(self.seed))
        return CorrelationConfig(
            slices=self.slices,
            resampling=resampling,
            subtract_offset=self.subtract_offset,
            offset_min_distance_A=self.offset_min_distance_A,
            noise_floor_A=self.noise_floor_A,
            noise_floor_source="--noise-floor-A" if self.noise_floor_A is not None else "",
        )


@dataclass(kw_only=True)
class CorrelationsSummary(StepSummary):
    """Result of :func:`run_correlations`.

    Attributes
    ----------
    data
        The CORR contents written.
    comparison
        The comparison with the ground truth (None without one, or for a static truth).
    analysis
        Everything computed (significance of the nearest-neighbour blocks included).
    n_infinite
        Atoms excluded for an infinite position (besides the NaN ones of failed refinements).
    """

    data: CorrelationsData | None = None
    comparison: corr.TruthComparison | None = None
    analysis: CorrelationAnalysis | None = None
    n_infinite: int = 0


def _pm2(values: np.ndarray) -> str:
    return ", ".join(f"{100**2 * v:+.2f}" for v in values)


def summary_lines(analysis: CorrelationAnalysis) -> list[str]:
    """Human-readable summary of a correlation analysis: atoms, exclusions, errors, B, rms,
    ρ_nn, offset, significance and noise floor, each ``value ± error``."""
    data = analysis.data
    valid = np.isfinite(data.b_factor_A2)
    lines = [
        f"atoms: {data.n_atoms} ({valid.sum()} used), states: {data.n_states}, "
        f"slices: {index_list(data.slices)}",
        f"excluded atoms (NaN positions): {index_list(data.excluded_atoms) or 'none'}",
    ]
    if data.uncertainty is not None:
        lines.append(f"errors (±): {data.uncertainty.describe()}")
    else:
        lines.append("errors: none computed (--errors none)")
    if valid.any():
        b = data.b_factor_A2[valid]
        lines.append(
            f"B factor 8π²(<u_y²> + <u_x²>): mean {analysis.b_factor_mean_A2.text('.4f')} Å², "
            f"min {b.min():.4f}, max {b.max():.4f} Å² (per-atom errors in the file)"
        )
    if data.rms_displacement_A is not None:
        lines.append(
            f"rms displacement: {data.rms_displacement_A.text('.2f', 100.0)} pm per direction"
        )
    if data.rho_nn is not None and np.isfinite(data.rho_nn.value):
        rho = corr.correlation_coefficients(data.green_A2, analysis.neighbours.pairs)
        lines.append(
            f"rho_nn: {data.rho_nn.text('+.3f')} (mean over {rho.size} nearest-neighbour "
            f"pairs; spread between pairs {np.nanstd(rho):.3f})"
        )
    else:
        lines.append("rho_nn: n/a (no nearest-neighbour pairs among the atoms used)")
    o = data.offset
    if o is not None:
        pairs = (
            "every pair of distinct atoms"
            if o.min_distance_A == 0
            else f"distinct atoms at least {o.min_distance_A:g} Å apart"
        )
        err = (
            f" ± ({_pm2(o.stderr_A2).replace('+', '')})" if np.all(np.isfinite(o.stderr_A2)) else ""
        )
        lines.append(
            f"uniform offset (c_y, c_x): ({_pm2(o.offset_A2)}){err} pm² over {o.n_pairs} pairs "
            f"({pairs}); "
            + (
                "subtracted from the tensor"
                if o.subtracted
                else "not subtracted (--subtract-offset)"
            )
        )
    nb = analysis.neighbours
    if nb is not None:
        sig, n, csig, nc = nb.counts()
        dof = data.uncertainty.green_dof if data.uncertainty is not None else float("nan")
        text = (
            f"nearest-neighbour cross blocks significant at {SIGNIFICANCE_SIGMA:g}σ: {sig} of "
            f"{n} pairs (exact test of zero correlation, Wishart dof {dof:.3g}; 4.6 % expected "
            "by chance)"
        )
        if nc:
            text += f"; averaged over identical unit-cell pairs: {csig} of {nc} classes"
        lines.append(text)
    if data.noise_floor is not None:
        lines += noise_floor_lines(data.noise_floor)
    return lines


def comparison_lines(
    analysis: CorrelationAnalysis, truth: GroundTruth, truth_path: str | Path, pair_set: str
) -> list[str]:
    """The comparison of a reconstruction with its realised ground truth, ``value ± error``."""
    cmp, m = analysis.comparison, analysis.data.truth_metrics
    match = cmp.match
    matched = int((match.truth_index >= 0).sum())
    return [
        f"ground truth: {truth_path} (realised Green's tensor of {truth.positions_A.shape[0]} "
        "configurations)",
        f"matched atoms: {matched} of {analysis.data.n_atoms} (truth has "
        f"{truth.mean_positions_A.shape[0]}), global shift "
        f"({match.shift_A[0]:+.3f}, {match.shift_A[1]:+.3f}) Å (y, x), unmatched "
        f"reconstructed: {index_list(match.unmatched_reconstructed) or 'none'}",
        f"pairs: {pair_set}: {m.n_pairs} pairs, {m.n_vectors} vectors; errors: {m.pairing} "
        "(states resampled with the configuration assigned to each)"
        if m.pairing == "paired"
        else f"pairs: {pair_set}: {m.n_pairs} pairs, {m.n_vectors} vectors; errors: truth fixed, "
        "states resampled",
        f"LSM (eq. 3 as printed, sum over {m.n_vectors} vectors): {m.lsm_sum.text('.4f')}",
        f"LSM (mean per vector, 1 = equal length): {m.lsm_mean.text('.4f')}",
        f"CSM (eq. 4, mean over {m.n_pairs} pairs): {m.csm.text('+.4f')}",
        f"rho_nn over the same {cmp.rho_nn_reconstructed.values.size} nearest-neighbour pairs: "
        f"reconstruction {cmp.rho_nn_reconstructed.mean:+.3f}, "
        f"truth (realised) {m.rho_nn_truth:+.3f}",
    ]


def _static_truth_lines(analysis: CorrelationAnalysis, truth_path: str | Path, n: int) -> list[str]:
    # a static truth: eq. 3-4 divide by the truth's vectors, so they have no value here; what
    # the reconstruction shows is then all artefact, and its size is what matters
    rms = analysis.data.rms_displacement_A
    return [
        f"ground truth: {truth_path} (realised Green's tensor of {n} configurations)",
        "LSM/CSM undefined: the ground truth has no displacements (static); every correlation "
        "in the reconstruction is an artefact",
        f"reconstruction: rms displacement {rms.text('.2f', 100.0)} pm per direction",
    ]


def _masses(data: CorrelationsData) -> list[float]:
    """Standard atomic weights of the species of the atoms used (unknown species left out)."""
    if data.species is None:
        return []
    used = data.species[np.isfinite(data.b_factor_A2)]
    return [
        STANDARD_ATOMIC_WEIGHTS_AMU[s]
        for s in set(used.tolist())
        if s in STANDARD_ATOMIC_WEIGHTS_AMU
    ]


def run_correlations(options: CorrelationsOptions) -> CorrelationsSummary:
    """Analyse the correlations of an ATOMS file, compare them with a truth, write the CORR file.

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
    config = options.analysis_config()
    target = OutputTarget.prepare(
        options.out,
        "corr",
        inputs={"ATOMS": options.atoms, "--ground-truth": options.ground_truth},
        overwrite=options.overwrite,
    )
    checked = read_checked_atoms(options.atoms)
    truth = None if options.ground_truth is None else read_ground_truth(options.ground_truth)
    truth_input = None
    if truth is not None and np.any(truth.green_realised_A2):
        truth_input = TruthInput(
            truth=truth,
            label=str(options.ground_truth),
            tolerance_A=options.match_tolerance_A,
            reference_atom=options.reference_atom,
            neighbours=options.neighbours,
        )
    try:
        analysis = analyse_correlations(checked.atoms, config, truth_input)
    except InputError as exc:
        raise InputError(f"{options.atoms}: {exc}") from None
    data = dataclasses.replace(analysis.data, source=str(options.atoms))
    analysis = dataclasses.replace(analysis, data=data)
    summary = CorrelationsSummary(
        data=data,
        comparison=analysis.comparison,
        analysis=analysis,
        n_infinite=int(checked.infinite_atoms.size),
    )
    summary.lines = summary_lines(analysis)
    summary.lines[2:2] = checked.exclusion_lines()
    summary.warnings += checked.exclusion_lines()
    recon_lines, recon_warnings = separation_report_check(checked.atoms, options.atoms)
    summary.lines += recon_lines
    summary.warnings += recon_warnings
    if data.noise_floor is not None:
        summary.warnings += noise_floor_warnings(data.noise_floor)
    if data.rms_displacement_A is not None:
        summary.warnings += physical_floor_warnings(data.rms_displacement_A.value, _masses(data))
    if data.uncertainty is None and config.resampling is not None:
        summary.warnings.append(
            f"only {data.n_states} object states: no standard errors (at least 3 are needed)"
        )
    if data.n_states < 5:
        summary.warnings.append(
            f"only {data.n_states} object states: the significance of the correlations cannot "
            "be tested (at least 5 states are needed)"
        )
    if truth is not None:
        n_configs = truth.positions_A.shape[0]
        if truth_input is None:
            summary.lines += _static_truth_lines(analysis, options.ground_truth, n_configs)
        else:
            pair_set = (
                "every atom's self block and every nearest-neighbour pair"
                if options.reference_atom is None
                else f"reference atom {options.reference_atom} and its {options.neighbours} "
                "nearest neighbours (self blocks included)"
            )
            summary.lines += comparison_lines(analysis, truth, options.ground_truth, pair_set)
    summary.out = target.write(lambda p: write_correlations(p, data), warnings=summary.warnings)
    summary.lines.append(f"wrote {options.out}")
    return summary
