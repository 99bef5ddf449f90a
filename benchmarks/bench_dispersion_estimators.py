"""Benchmark: the dispersion estimators against exact harmonic snapshots (issue 14).

Exact classical snapshots of the project's hBN-like harmonic model
(:meth:`~caviar_napari.analysis.phonons.HarmonicLattice.honeycomb`, the presets' springs:
NN 20/6 eV/Å² longitudinal/transverse, NNN 4 eV/Å² longitudinal) go through
:func:`~caviar_napari.analysis.dispersion.compute_dispersion` exactly as ``caviar dispersion``
would, once per estimator, and the frequencies on the commensurate grid are compared with the
exact ones (:mod:`caviar_napari.analysis.dispersion_truth`).  Cases:

1. **6 × 6 periodic cells, 300 K, 10 (and 20) states, many seeds** — per-q rms error, per-branch
   bias, coverage of the fitted force constants by their stated errors: ``green`` as before
   issue 14 (no symmetry pooling), ``green`` with pooling, ``force-constants`` with the
   periodic boundary (the exact description of these data), the open one, and the default
   ``auto`` (both fitted, the likelier kept).
2. **2000 states** — all estimators against the exact frequencies.
3. **Goodness of fit** — a truth with 3rd-neighbour springs fitted with 2 shells (how often the
   likelihood-ratio test flags it), and the 2-shell truth itself (false alarms).
4. **A window of a larger crystal** — 6 × 6 cells cut out of a 24 × 24 periodic crystal, the
   situation of a reconstruction's field of view: periodic, open and auto boundary.
5. **A square field of view** — the atoms inside a square of the sample (in Å, as a scan
   sees them) of a 24 × 24 crystal: force constants fitted to the largest block of whole cells
   only (as before the window fit) and to every atom (the default); errors along the dense
   Γ–M–K–Γ path.

Writes a Markdown table (with the command, machine and date) to
``docs/benchmarks/dispersion-estimators.md``.

Run: ``python benchmarks/bench_dispersion_estimators.py [--seeds 20] [--quick]``
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from caviar_napari.analysis.brillouin import default_path, dense_path
from caviar_napari.analysis.cell_block import crop_to_cells
from caviar_napari.analysis.dispersion import DispersionConfig, compute_dispersion
from caviar_napari.analysis.dispersion_checks import green_bias
from caviar_napari.analysis.dispersion_truth import coverage, dispersion_accuracy
from caviar_napari.analysis.force_constants import ForceConstantModel
from caviar_napari.analysis.phonons import HarmonicLattice, Spring

T = 300.0
BRANCHES = ("TA", "LA", "TO", "LO")

#: Estimators compared: name → DispersionConfig options.
ESTIMATORS = {
    "green, no pooling (before issue 14)": {"estimator": "green", "symmetry": False},
    "green, symmetry pooling": {"estimator": "green"},
    "force-constants, periodic": {"estimator": "force-constants", "boundary": "periodic"},
    "force-constants, open": {"estimator": "force-constants", "boundary": "open"},
    "force-constants, auto (default)": {"estimator": "force-constants"},
}


def snapshots(lattice: HarmonicLattice, cells: int, states: int, seed: int):
    sc = lattice.supercell(cells, cells)
    return sc, sc.positions_A[None] + sc.sample_snapshots(T, states, seed)


def run(pos, sc, lattice, options, bootstrap):
    cfg = DispersionConfig(T, bootstrap=bootstrap, **options)
    t0 = time.perf_counter()
    data = compute_dispersion(
        pos, sc.cell_index, sc.basis_index, lattice.lattice_vectors_A, cfg, sc.species
    )
    return data, time.perf_counter() - t0


def truth_parameters(lattice: HarmonicLattice, shells: int = 2) -> np.ndarray:
    model = ForceConstantModel.build(
        lattice.lattice_vectors_A, lattice.basis_A, lattice.species, shells
    )
    b = lattice.bonds
    theta, residual = model.parameters_of(b.source, b.target, b.offset, b.K)
    assert residual < 1e-9, residual
    return theta


def case_small(lattice, states, seeds, cells, bootstrap, rows):
    truth = truth_parameters(lattice)
    for name, options in ESTIMATORS.items():
        rms, bias, times, cov = [], [], [], {"F1": [], "F2": [], "B1": [], "B2": []}
        for seed in seeds:
            sc, pos = snapshots(lattice, cells, states, seed)
            boot = bootstrap if "force" in name else 0
            data, dt = run(pos, sc, lattice, options, boot)
            acc = dispersion_accuracy(data.frequencies_THz, lattice.frequencies_THz(data.q_frac))
            rms.append(acc.rms)
            bias.append(acc.branch_bias)
            times.append(dt)
            fc = data.force_constants
            if fc is not None:
                for k in (1, 2):
                    cov[f"F{k}"].append(
                        coverage(fc.value_eV_per_A2, fc.err_fisher_eV_per_A2, truth, k)
                    )
                    cov[f"B{k}"].append(
                        coverage(fc.value_eV_per_A2, fc.err_bootstrap_eV_per_A2, truth, k)
                    )
        rows.append(
            {
                "case": f"{cells}×{cells}, {states} states, {len(seeds)} seeds",
                "estimator": name,
                "rms": float(np.mean(rms)),
                "bias": np.mean(bias, axis=0),
                "coverage": {k: float(np.mean(v)) for k, v in cov.items() if v},
                "time": float(np.median(times)),
            }
        )
        print(f"  {rows[-1]['case']}: {name}: rms {100 * rows[-1]['rms']:.1f} %", flush=True)


def case_many_states(lattice, states, seeds, cells, rows):
    for name, options in ESTIMATORS.items():
        rms, worst, bias, times = [], [], [], []
        for seed in seeds:
            sc, pos = snapshots(lattice, cells, states, seed)
            data, dt = run(pos, sc, lattice, options, 0)
            acc = dispersion_accuracy(data.frequencies_THz, lattice.frequencies_THz(data.q_frac))
            rms.append(acc.rms)
            worst.append(acc.max_abs)
            bias.append(acc.branch_bias)
            times.append(dt)
        rows.append(
            {
                "case": f"{cells}×{cells}, {states} states, {len(seeds)} seeds",
                "estimator": name,
                "rms": float(np.mean(rms)),
                "max": float(np.max(worst)),
                "bias": np.mean(bias, axis=0),
                "time": float(np.median(times)),
            }
        )
        print(f"  {rows[-1]['case']}: {name}: max {100 * rows[-1]['max']:.2f} %", flush=True)


def case_goodness_of_fit(seeds, cells, states_list, k3_list, rows):
    base = HarmonicLattice.honeycomb()
    for k3 in (0.0, *k3_list):
        extra = (Spring(2.504 * 2 / np.sqrt(3.0), k3, 0.0),) if k3 else ()
        lattice = dataclasses.replace(base, springs=(*base.springs, *extra))
        label = f"3rd neighbours, k3 = {k3:g} eV/Å²" if k3 else "2-shell truth (null)"
        for states in states_list:
            p_values, rms = [], []
            for seed in seeds:
                sc, pos = snapshots(lattice, cells, states, seed)
                data, _ = run(pos, sc, lattice, ESTIMATORS["force-constants, periodic"], 0)
                p_values.append(data.force_constants.next_shell_p_value)
                exact = lattice.frequencies_THz(data.q_frac)
                rms.append(dispersion_accuracy(data.frequencies_THz, exact).rms)
            p = np.array(p_values)
            rows.append(
                {
                    "truth": label,
                    "states": states,
                    "flagged": float(np.mean(p < 0.01)),
                    "median_p": float(np.median(p)),
                    "rms": float(np.mean(rms)),
                    "n": len(seeds),
                }
            )
            print(
                f"  goodness of fit, {label}, {states} states: flagged "
                f"{100 * rows[-1]['flagged']:.0f} %",
                flush=True,
            )


def case_window(lattice, crystal, window, states, seeds, rows):
    sc = lattice.supercell(crystal, crystal)
    corners = [(0, 0), (crystal // 2, 0), (0, crystal // 2), (crystal // 2, crystal // 2)]
    results = {name: [] for name in ESTIMATORS if name != "green, no pooling (before issue 14)"}
    for seed in seeds:
        pos = sc.positions_A[None] + sc.sample_snapshots(T, states, seed)
        for c1, c2 in corners:
            cell = sc.cell_index
            inside = (cell[:, 0] >= c1) & (cell[:, 0] < c1 + window)
            inside &= (cell[:, 1] >= c2) & (cell[:, 1] < c2 + window)
            for name in results:
                cfg = DispersionConfig(T, bootstrap=0, **ESTIMATORS[name])
                data = compute_dispersion(
                    pos[:, inside],
                    cell[inside],
                    sc.basis_index[inside],
                    lattice.lattice_vectors_A,
                    cfg,
                    sc.species[inside],
                )
                exact = lattice.frequencies_THz(data.q_frac)
                results[name].append(dispersion_accuracy(data.frequencies_THz, exact))
    for name, accs in results.items():
        rows.append(
            {
                "case": f"{window}×{window} window of a {crystal}×{crystal} crystal, "
                f"{states} states, {len(accs)} windows",
                "estimator": name,
                "rms": float(np.mean([a.rms for a in accs])),
                "bias": np.mean([a.branch_bias for a in accs], axis=0),
            }
        )
        print(f"  window: {name}: rms {100 * rows[-1]['rms']:.1f} %", flush=True)


def case_field_of_view(lattice, crystal, sides_A, states, seeds, rows):
    """Square fields of view: the block of whole cells only, against every atom."""
    sc = lattice.supercell(crystal, crystal)
    a = lattice.lattice_vectors_A
    dense = dense_path(default_path(a), a)
    exact = lattice.frequencies_THz(dense.q_frac)
    span = sc.positions_A.max(axis=0) - sc.positions_A.min(axis=0)
    centres = sc.positions_A.min(axis=0) + span * np.array([[0.3, 0.3], [0.3, 0.7], [0.7, 0.5]])
    cfg = DispersionConfig(T, bootstrap=0, estimator="force-constants")
    for side in sides_A:
        results = {"whole cells only (before)": [], "every atom (default)": []}
        atoms = {name: [] for name in results}
        for seed in seeds:
            pos = sc.positions_A[None] + sc.sample_snapshots(T, states, seed)
            for centre in centres:
                fov = np.all(np.abs(sc.positions_A - centre) <= side / 2, axis=1)
                block = crop_to_cells(sc.cell_index[fov], sc.basis_index[fov]).atom_index.ravel()
                for name, keep in zip(results, (np.flatnonzero(fov)[block], np.flatnonzero(fov))):
                    data = compute_dispersion(
                        pos[:, keep],
                        sc.cell_index[keep],
                        sc.basis_index[keep],
                        a,
                        cfg,
                        sc.species[keep],
                    )
                    acc = dispersion_accuracy(data.dense_path.frequencies_THz, exact)
                    results[name].append(acc)
                    atoms[name].append(data.fit_atoms)
        for name, accs in results.items():
            rows.append(
                {
                    "case": f"{side:g} × {side:g} Å field of view, {states} states, "
                    f"{len(accs)} views",
                    "estimator": f"force-constants, {name}, {np.mean(atoms[name]):.0f} atoms",
                    "rms": float(np.mean([acc.rms for acc in accs])),
                    "bias": np.mean([acc.branch_bias for acc in accs], axis=0),
                }
            )
            print(f"  field of view: {name}: rms {100 * rows[-1]['rms']:.1f} %", flush=True)


def command() -> str:
    """The command line as run (with PYTHONPATH when set, e.g. to use a worktree)."""
    env = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    env += f"OPENBLAS_NUM_THREADS={threads} " if threads else ""
    return env + " ".join(["python", *sys.argv])


def pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def bias_row(r: dict) -> str:
    """A table row: case, estimator, per-q rms and the bias of each branch."""
    bias = " | ".join(pct(b) for b in r["bias"])
    return f"| {r['case']} | {r['estimator']} | {100 * r['rms']:.1f} % | {bias} |"


def markdown(args, small, many, gof, window, fov, elapsed) -> str:
    lines = [
        "# Dispersion estimators against exact harmonic snapshots (issue 14)",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}  ",
        f"Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; "
        f"total {elapsed / 60:.1f} min",
        "",
        "Truth: the hBN-like harmonic model of the presets (NN 20/6 eV/Å², NNN 4 eV/Å²), exact "
        f"classical snapshots at {T:g} K of a periodic supercell (`Supercell.sample_snapshots`), "
        "through `compute_dispersion` as `caviar dispersion` runs it.  Relative errors on the "
        "commensurate grid (acoustic Γ left out); bias = mean signed error per branch (sorted "
        "band index: TA, LA, TO, LO).  Force-constant coverage: fraction of the 6 fitted constants "
        "within 1 or 2 stated standard errors of the true ones (F: Fisher, B: bootstrap over "
        f"states, {args.bootstrap} refits).  Time: median of one `compute_dispersion` call "
        f"(force constants with {args.bootstrap} bootstrap refits and the shell test; green "
        "without bootstrap), one thread.",
        "",
        "## Few states",
        "",
        "| case | estimator | per-q rms | bias TA | bias LA | bias TO | bias LO "
        "| coverage 1σ / 2σ (F; B) | time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in small:
        cov = r["coverage"]
        text = (
            f"{100 * cov['F1']:.0f} / {100 * cov['F2']:.0f} %; {100 * cov['B1']:.0f} / "
            f"{100 * cov['B2']:.0f} %"
            if cov
            else "—"
        )
        lines.append(
            f"| {r['case']} | {r['estimator']} | {100 * r['rms']:.1f} % | "
            + " | ".join(pct(b) for b in r["bias"])
            + f" | {text} | {r['time']:.2f} s |"
        )
    lines += [
        "",
        "Predicted worst-case (isotropic) bias of green, `dispersion_checks.green_bias`, "
        "sorted branches: "
        + "; ".join(f"{n} states: " + ", ".join(pct(b) for b in green_bias(n, 2)) for n in (10, 20))
        + " (without pooling).",
        "",
        "## Many states",
        "",
        "| case | estimator | per-q rms | max abs error | bias TA | bias LA | bias TO | bias LO "
        "| time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in many:
        lines.append(
            f"| {r['case']} | {r['estimator']} | {100 * r['rms']:.2f} % | {100 * r['max']:.2f} % | "
            + " | ".join(pct(b) for b in r["bias"])
            + f" | {r['time']:.2f} s |"
        )
    lines += [
        "",
        "## Goodness of fit (2 shells fitted, likelihood ratio against 3, α = 0.01)",
        "",
        f"{args.cells}×{args.cells} periodic cells, periodic boundary; the truth adds a central "
        "3rd-neighbour spring (B–N at 2a/√3) of k3 to the presets' springs; per-q rms = error "
        "of the 2-shell fit against the exact dispersion of that truth.",
        "",
        "| truth | states | flagged | median p | per-q rms of the 2-shell fit | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for r in gof:
        lines.append(
            f"| {r['truth']} | {r['states']} | {100 * r['flagged']:.0f} % | "
            f"{r['median_p']:.2g} | {100 * r['rms']:.1f} % | {r['n']} |"
        )
    lines += [
        "",
        "## A window of a larger crystal (a reconstruction's field of view)",
        "",
        "| case | estimator | per-q rms | bias TA | bias LA | bias TO | bias LO |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [bias_row(r) for r in window]
    lines += [
        "",
        "## A square field of view (the atoms a scan sees, not whole cells)",
        "",
        "Atoms whose positions lie in a square of the given side, at three places in a 24 × 24 "
        "crystal; relative errors along the dense Γ–M–K–Γ path (Γ left out).  A square of a "
        "hexagonal lattice holds a block of whole cells of a fraction of its atoms; the open "
        "description needs no whole cells and fits every atom.",
        "",
        "| case | estimator | per-q rms (dense path) | bias TA | bias LA | bias TO | bias LO |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [bias_row(r) for r in fov]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds of the few-state cases")
    parser.add_argument("--cells", type=int, default=6)
    parser.add_argument("--states", type=int, default=10)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--many-states", type=int, default=2000)
    parser.add_argument("--many-seeds", type=int, default=3)
    parser.add_argument(
        "--k3", type=float, nargs="+", default=[2.0, 4.0, 8.0], help="3rd-neighbour springs, eV/Å²"
    )
    parser.add_argument("--gof-states", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--window-seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smoke test: few seeds")
    parser.add_argument("--out", default="docs/benchmarks/dispersion-estimators.md")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.many_seeds, args.window_seeds, args.bootstrap = 2, 1, 1, 10
    t0 = time.perf_counter()
    lattice = HarmonicLattice.honeycomb()
    seeds = range(args.seeds)
    small, many, gof, window, fov = [], [], [], [], []
    print("few states", flush=True)
    for states in (args.states, 2 * args.states):
        case_small(lattice, states, seeds, args.cells, args.bootstrap, small)
    print("many states", flush=True)
    case_many_states(lattice, args.many_states, range(args.many_seeds), args.cells, many)
    print("goodness of fit", flush=True)
    case_goodness_of_fit(seeds, args.cells, args.gof_states, args.k3, gof)
    print("window", flush=True)
    case_window(lattice, 24, args.cells, args.states, range(args.window_seeds), window)
    print("field of view", flush=True)
    case_field_of_view(lattice, 24, (7.7, 12.0), args.states, range(args.window_seeds), fov)
    text = markdown(args, small, many, gof, window, fov, time.perf_counter() - t0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
