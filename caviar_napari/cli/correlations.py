"""``caviar correlations``: Green's tensor and B factors of an ATOMS file; LSM/CSM vs a truth.

::

    caviar correlations ATOMS.h5 --out CORR.h5 [--slices A:B]
        [--ground-truth DATA.h5 [--reference-atom I] [--neighbours N] [--match-tolerance-A T]]

Prints the number of atoms, the excluded ones, the mean B factor and the nearest-neighbour
correlation coefficient ρ_nn (conventions §4 asks for it on every dataset).  With ``--ground-truth``
(a file written by ``caviar simulate``), the reconstruction is compared with the *realised*
Green's tensor of the simulated configurations: LSM as printed in the paper (a sum over
vectors), LSM as a mean, CSM, and ρ_nn of both over the same pairs.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from caviar_napari.analysis import correlations as corr
from caviar_napari.errors import InputError
from caviar_napari.io.correlations_file import (
    CorrelationsData,
    read_ground_truth,
    write_correlations,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``correlations`` sub-command."""
    p = subparsers.add_parser(
        "correlations",
        help="Green's tensor, B factors and ρ_nn of an ATOMS file (CORR file)",
        description=(
            "Compute the Green's tensor G = (1/N) Σ_n u uᵀ (paper eq. 2, dof 2i + a, a = 0 y, "
            "1 x, Å²) of per-state atom positions, averaged over the chosen slices, and the "
            "B factors 8π²(⟨u_y²⟩ + ⟨u_x²⟩); optionally compare with the realised ground truth "
            "of a simulated dataset (LSM, CSM, ρ_nn)."
        ),
    )
    p.add_argument("atoms", metavar="ATOMS.h5", help="ATOMS file (caviar atoms)")
    p.add_argument("--out", required=True, metavar="CORR.h5", help="output CORR file")
    p.add_argument(
        "--slices",
        default=None,
        metavar="A:B",
        help="slices to average, Python slice syntax (A included, B excluded) or one index; "
        "default: all",
    )
    p.add_argument(
        "--ground-truth",
        default=None,
        metavar="DATA.h5",
        help="simulated 4D-STEM file with a ground_truth group to compare with",
    )
    p.add_argument(
        "--reference-atom",
        type=int,
        default=None,
        metavar="I",
        help="compare over this atom and its neighbours (default: every atom's self block and "
        "every nearest-neighbour pair)",
    )
    p.add_argument(
        "--neighbours",
        type=int,
        default=6,
        metavar="N",
        help="number of nearest neighbours of the reference atom (default 6)",
    )
    p.add_argument(
        "--match-tolerance-A",
        type=float,
        default=0.5,
        metavar="T",
        help="largest distance (Å) when matching atoms to the ground truth (default 0.5)",
    )
    p.set_defaults(func=run)


def _indices_text(indices: np.ndarray, limit: int = 20) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f", … ({indices.size} in all)" if indices.size > limit else "")


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
        f"slices: {_indices_text(data.slices)}",
        f"excluded atoms (NaN positions): {_indices_text(data.excluded_atoms) or 'none'}",
    ]
    if valid.any():
        b = data.b_factor_A2[valid]
        lines.append(
            f"B factor 8π²(<u_y²> + <u_x²>): mean {b.mean():.4f} Å², "
            f"min {b.min():.4f}, max {b.max():.4f} Å²"
        )
    lines.append(f"rho_nn: {_rho_text(data.green_A2, data.mean_positions_A)}")
    return lines


def _rms_pm(green_A2: np.ndarray, positions_A: np.ndarray) -> float:
    """Root-mean-square displacement per direction (pm) over the atoms with finite positions."""
    diag = np.diag(green_A2).reshape(-1, 2)
    valid = np.all(np.isfinite(positions_A), axis=1) & np.all(np.isfinite(diag), axis=1)
    return float(np.sqrt(np.mean(diag[valid]))) * 100.0 if valid.any() else float("nan")


def comparison_lines(
    data: CorrelationsData,
    truth_path: str,
    reference: int | None,
    n_neighbours: int,
    tolerance_A: float,
) -> list[str]:
    """Compare a CORR result with the realised ground truth of ``truth_path``; text lines."""
    truth = read_ground_truth(truth_path)
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
        radius = 1.15 * corr.nearest_neighbour_distance(positions)
        pairs = corr.pairs_within_radius(positions, radius)
        pair_set = "every atom's self block and every nearest-neighbour pair"
    if not np.any(truth.green_realised_A2):
        # a static truth: eq. 3-4 divide by the truth's vectors, so they have no value here;
        # what the reconstruction shows is then all artefact, and its size is what matters
        return [
            f"ground truth: {truth_path} (realised Green's tensor of "
            f"{truth.positions_A.shape[0]} configurations)",
            "LSM/CSM undefined: the ground truth has no displacements (static); every "
            "correlation in the reconstruction is an artefact",
            f"reconstruction over {pair_set}: rms displacement "
            f"{_rms_pm(data.green_A2, positions):.2f} pm per direction",
            f"rho_nn (reconstruction): {_rho_text(data.green_A2, data.mean_positions_A)}",
        ]
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
        f"ground truth: {truth_path} (realised Green's tensor of "
        f"{truth.positions_A.shape[0]} configurations)",
        f"matched atoms: {matched} of {data.n_atoms} (truth has {truth.mean_positions_A.shape[0]}"
        f"), global shift ({m.shift_A[0]:+.3f}, {m.shift_A[1]:+.3f}) Å (y, x), "
        f"unmatched reconstructed: {_indices_text(m.unmatched_reconstructed) or 'none'}",
        f"pairs: {pair_set}: {s.n_pairs} pairs, {s.n_vectors} vectors",
        f"LSM (eq. 3 as printed, sum over {s.n_vectors} vectors): {s.lsm_sum:.4f}",
        f"LSM (mean per vector, 1 = equal length): {s.lsm_mean:.4f}",
        f"CSM (eq. 4, mean over {s.n_pairs} pairs): {s.csm:+.4f}",
        f"rho_nn over the same {cmp.rho_nn_reconstructed.values.size} nearest-neighbour pairs: "
        f"reconstruction {cmp.rho_nn_reconstructed.mean:+.3f}, "
        f"truth (realised) {cmp.rho_nn_truth.mean:+.3f}",
    ]


def run(args: argparse.Namespace) -> int:
    """Run ``caviar correlations``; returns the exit status."""
    from caviar_napari.io.atoms_file import read_atoms

    if args.reference_atom is not None and args.ground_truth is None:
        raise InputError("--reference-atom is only used with --ground-truth")
    if args.neighbours < 1:
        raise InputError(f"--neighbours must be at least 1, got {args.neighbours}")
    atoms = read_atoms(args.atoms)
    data = corr.correlations_from_atoms(atoms, args.slices)
    data = dataclasses.replace(data, source=str(args.atoms))
    write_correlations(args.out, data)
    lines = summary_lines(data)
    if args.ground_truth is not None:
        lines += comparison_lines(
            data, args.ground_truth, args.reference_atom, args.neighbours, args.match_tolerance_A
        )
    lines.append(f"wrote {args.out}")
    print("\n".join(lines))
    return 0
