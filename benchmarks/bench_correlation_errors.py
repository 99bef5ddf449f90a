"""Benchmark: calibration of the correlation errors and significance tests (issue 13).

Three questions, answered on exact Gaussian ensembles (no reconstruction involved):

1. **Errors of the tensor's entries with few states.**  For 4000 datasets of N = 10 states of a
   2 + 2 dof block, the mean estimated variance of each cross-covariance entry over its
   empirical variance, for the bootstrap (200 replicas), the delete-one jackknife, and the
   analytic Wishart variance (plug-in, and with the unbiased plug-in); and the coefficient of
   variation of the standard error itself.
2. **False positives.**  Independent displacements: how often a block is "significant at 2σ"
   by ``|value| / error`` of its largest entry (bootstrap, jackknife) and by the exact tests of
   :mod:`caviar_napari.analysis.correlation_significance` (per pair, per arrow, unit-cell class
   averages on a 6 × 6 honeycomb supercell).
3. **Power.**  The fraction of nearest-neighbour blocks (per pair, and class averages)
   significant at 2σ on exact snapshots of the correlated hBN model, for N = 10, 20, 40, 80.

Run: ``PYTHONPATH=. python benchmarks/bench_correlation_errors.py [--doc docs/benchmarks/
correlation-errors.md]`` (about a minute on one core).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.correlation_errors import Resampling, replicate
from caviar_napari.analysis.correlation_significance import (
    arrow_significance,
    block_significance,
    class_members,
    class_significance,
)
from caviar_napari.analysis.phonons import HarmonicLattice

N_STATES = 10


def _green(u: np.ndarray) -> np.ndarray:
    u = u - u.mean(axis=0)
    return u.T @ u / u.shape[0]


def entry_errors(n_sets: int = 4000, seed: int = 1) -> dict[str, tuple[float, float, float]]:
    """Per method: (mean variance ratio, its range over the 4 entries, cv of the error) and the
    false-positive rate of ``max |value| / error > 2`` over the block's four entries."""
    rng = np.random.default_rng(seed)
    sd = np.array([1.0, 0.5, 0.8, 1.3])
    n, nu = N_STATES, N_STATES - 1
    values, var = [], {k: [] for k in ("bootstrap", "jackknife", "Wishart", "Wishart unbiased")}
    for _ in range(n_sets):
        u = rng.standard_normal((n, 1, 4)) * sd
        u = u - u.mean(axis=0)
        g = u[:, 0].T @ u[:, 0] / n
        v = g[:2, 2:].ravel()
        values.append(v)
        for method, res in (
            ("bootstrap", Resampling("bootstrap", 200, seed=int(rng.integers(1 << 30)))),
            ("jackknife", Resampling()),
        ):
            rep = replicate(u, res, lambda gw, w: {"c": gw[:2, 2:].ravel()})
            var[method].append(rep.stderr["c"] ** 2)
        a = np.repeat(np.diag(g)[:2], 2)
        b = np.tile(np.diag(g)[2:], 2)
        var["Wishart"].append((n - 1) / n**2 * (v**2 + a * b))
        s_ab2, s_aa_bb = (n * v) ** 2, (n * n) * a * b  # S = N G ~ W(Σ, ν)
        c1 = (nu - 2) / (nu * (nu + 2) * (nu - 1))
        c2 = 1.0 / ((nu + 2) * (nu - 1))
        var["Wishart unbiased"].append(nu * (c1 * s_ab2 + c2 * s_aa_bb) / n**2)
    values = np.array(values)
    true_var = values.var(axis=0)
    out = {}
    for method, vs in var.items():
        vs = np.array(vs)
        ratio = vs.mean(axis=0) / true_var
        se = np.sqrt(vs)
        cv = float(np.mean(se.std(axis=0) / se.mean(axis=0)))
        fp = float(np.mean(np.max(np.abs(values) / se, axis=1) > 2.0))
        out[method] = (float(ratio.mean()), float(ratio.min()), float(ratio.max()), cv, fp)
    return out


def exact_test_rates(n_sets: int = 4000, seed: int = 2) -> tuple[float, float]:
    """False-positive rates at 2σ of the exact block and arrow tests (independent atoms)."""
    rng = np.random.default_rng(seed)
    sd = np.array([1.0, 0.4, 0.7, 1.3, 0.9, 0.9, 2.0, 0.3, 1.1, 0.6, 0.5, 1.5])
    pairs = np.array([[0, 1], [2, 3], [4, 5]])
    rot = corr.frame_rotation([1.0, 2.0])
    blocks, arrows = [], []
    for _ in range(n_sets):
        g = _green(rng.standard_normal((N_STATES, 12)) * sd)
        blocks.append(block_significance(g, pairs, N_STATES - 1).sigma)
        arrows.append(arrow_significance(g, pairs, N_STATES - 1, rot).ravel())
    return float(np.mean(np.concatenate(blocks) >= 2)), float(np.mean(np.concatenate(arrows) >= 2))


def _nn_classes(sc) -> tuple[np.ndarray, list[np.ndarray]]:
    pairs = corr.nearest_neighbour_pairs(sc.positions_A)
    keys = np.unique(
        np.column_stack(
            [
                sc.cell_index[pairs[:, 1]] - sc.cell_index[pairs[:, 0]],
                sc.basis_index[pairs[:, 0]],
                sc.basis_index[pairs[:, 1]],
            ]
        ),
        axis=0,
    )
    members = class_members(sc.cell_index, sc.basis_index, keys, np.ones(sc.n_atoms, bool))
    return pairs, members


def class_rates(n_sets: int = 400, seed: int = 3) -> float:
    """False-positive rate at 2σ of the class-average test (Einstein model, 6 × 6 supercell)."""
    sc = HarmonicLattice.honeycomb().supercell(6, 6)
    _, members = _nn_classes(sc)
    sd = np.sqrt(np.diag(sc.green_tensor(300.0)))
    rng = np.random.default_rng(seed)
    sig = []
    for _ in range(n_sets):
        g = _green(rng.standard_normal((N_STATES, sd.size)) * sd)
        sig.append(class_significance(g, members, N_STATES - 1)[0])
    return float(np.mean(np.concatenate(sig) >= 2))


def power(states: tuple[int, ...] = (10, 20, 40, 80), n_sets: int = 30) -> dict[int, tuple]:
    """Per N: fraction of nearest-neighbour pair blocks and class averages significant at 2σ on
    exact snapshots of the correlated hBN model (6 × 6 supercell, 300 K)."""
    sc = HarmonicLattice.honeycomb().supercell(6, 6)
    pairs, members = _nn_classes(sc)
    out = {}
    for n in states:
        per_pair, per_class = [], []
        for seed in range(n_sets):
            u = sc.sample_snapshots(300.0, n, 1000 * n + seed).reshape(n, -1)
            g = _green(u)
            per_pair.append(np.mean(block_significance(g, pairs, n - 1).sigma >= 2))
            per_class.append(np.mean(class_significance(g, members, n - 1)[0] >= 2))
        out[n] = (float(np.mean(per_pair)), float(np.mean(per_class)))
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print (and optionally write) the markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc", type=Path, default=None, help="write the tables to this file")
    args = parser.parse_args(argv)
    lines = [
        "# Correlation errors and significance with few object states (issue 13)",
        "",
        "Generated by `PYTHONPATH=. python benchmarks/bench_correlation_errors.py` (exact "
        "Gaussian ensembles, no reconstruction).",
        "",
        f"## Errors of a cross-covariance entry, N = {N_STATES} states, 4000 datasets",
        "",
        "| method | E[error²] / sampling variance (mean, min–max over 4 entries) | cv of the "
        "error | blocks with max \\|value\\|/error > 2, independent atoms |",
        "|---|---|---|---|",
    ]
    for method, (mean, lo, hi, cv, fp) in entry_errors().items():
        lines.append(f"| {method} | {mean:.2f} ({lo:.2f}–{hi:.2f}) | {cv:.2f} | {100 * fp:.1f} % |")
    block, arrow = exact_test_rates()
    lines += [
        "",
        "## Exact tests (what `caviar correlations` and the dock use), independent atoms",
        "",
        "| test | significant at 2σ (4.55 % expected) |",
        "|---|---|",
        f"| per pair, 2 × 2 block (Wilks, F(4, 2(ν−3))), 12000 blocks | {100 * block:.2f} % |",
        f"| per arrow, one row (F(2, ν−2)), 24000 arrows | {100 * arrow:.2f} % |",
        f"| unit-cell class average (χ²(4), Wishart covariance), 6 × 6 honeycomb | "
        f"{100 * class_rates():.2f} % |",
        "",
        "## Power on the correlated hBN model (ρ_nn ≈ 0.43), 6 × 6 supercell, 30 datasets per N",
        "",
        "| states N | nearest-neighbour pair blocks significant | class averages significant |",
        "|---|---|---|",
    ]
    for n, (pp, pc) in power().items():
        lines.append(f"| {n} | {100 * pp:.0f} % | {100 * pc:.0f} % |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.doc is not None:
        args.doc.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
