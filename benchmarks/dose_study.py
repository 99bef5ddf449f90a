"""Dose study (issue 13): how many electrons CAVIAR needs to recover correlated vibrations.

For each dose the ``hbn-correlated`` dataset of the study size is simulated with Poisson noise
(``caviar simulate hbn-correlated --dose-per-A2 D``; noise-free as the reference), reconstructed
with the default (recommended) recipe and the default ``loss: auto`` (Poisson for counts), its
atoms found, and the correlations compared with the *realised* truth of the same configurations:
CSM over the self blocks and nearest-neighbour pairs, CSM of the cross blocks alone, ρ_nn and the
rms displacement. The table, a plot of CSM against dose and the dose at which CSM reaches 0.9
(interpolated in log dose) go into ``docs/validation.md`` as a generated section.

::

    python benchmarks/dose_study.py                       # cpu size, 1e4 … 1e7 e/Å² and noise-free
    python benchmarks/dose_study.py --size test --doses 1e5 1e7 --workdir /tmp/dose
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from caviar_napari.data.config import state_penalty_from_text
from caviar_napari.workflows.study import run_study
from caviar_napari.workflows.study_config import SIZES, Case, StudyConfig, replace_size
from caviar_napari.workflows.study_report import machine_description, write_document

ROOT = Path(__file__).resolve().parents[1]


def _label(dose: float | None) -> str:
    return "noise-free" if dose is None else f"{dose:.0e} e/Å²"


def dose_for(target: float, doses: list[float], values: list[float]) -> float | None:
    """Dose at which ``values`` (increasing with dose) first reach ``target``, interpolated in
    log dose between the bracketing doses; None when never reached."""
    pairs = sorted(zip(doses, values, strict=True))
    for (d0, v0), (d1, v1) in zip(pairs, pairs[1:], strict=False):
        if v0 < target <= v1:
            t = (target - v0) / (v1 - v0)
            return float(10 ** (math.log10(d0) + t * (math.log10(d1) - math.log10(d0))))
    if pairs and pairs[0][1] >= target:
        return pairs[0][0]
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="cpu", choices=sorted(SIZES))
    ap.add_argument("--doses", type=float, nargs="+", default=[1e4, 1e5, 1e6, 1e7])
    ap.add_argument("--workdir", type=Path, default=Path("dose-study"))
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "validation.md")
    ap.add_argument("--images", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--recipe",
        default="recommended",
        choices=["recommended", "displaced"],
        help="the default recipe, or the same with the states as displaced atoms",
    )
    ap.add_argument(
        "--state-penalty",
        default=0.0,
        type=state_penalty_from_text,
        help="state_penalty of the states stage: 0 (the recipe's), a weight, or auto (chosen "
        "by the held-out patterns)",
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="reuse data and reconstructions in WORKDIR made with the same parameters",
    )
    args = ap.parse_args(argv)
    case = Case("hbn-correlated", recipe=args.recipe, state_penalty=args.state_penalty)

    rows = []
    t_all = time.perf_counter()
    for dose in [None, *sorted(args.doses)]:
        size = (
            SIZES[args.size] if dose is None else replace_size(SIZES[args.size], dose_e_per_A2=dose)
        )
        workdir = args.workdir / ("noise-free" if dose is None else f"dose-{dose:.0e}")
        config = StudyConfig(
            size=size,
            workdir=workdir,
            cases=(case,),
            seed=args.seed,
            reuse=args.reuse,
        )
        t0 = time.perf_counter()
        result = run_study(config, report=lambda line: print(line, flush=True))
        r = result.by_key(case.key)
        rows.append((dose, r, time.perf_counter() - t0))
        print(
            f"{_label(dose)}: CSM nn {r.own.csm_nn:.3f}, cross {r.own.csm_nn_cross:.3f}, "
            f"rho {r.rho_nn_rec:+.3f} (truth {r.rho_nn_truth:+.3f}), rms "
            f"{100 * r.rms_rec_A:.2f}/{100 * r.rms_truth_A:.2f} pm",
            flush=True,
        )

    noisy = [(d, r) for d, r, _ in rows if d is not None]
    reach = dose_for(0.9, [d for d, _ in noisy], [r.own.csm_nn for _, r in noisy])
    tag = args.size if args.recipe == "recommended" else f"{args.size}-{args.recipe}"
    if case.state_penalty:
        tag += f"-penalty-{case.state_penalty}"
    figure = args.images / f"validation-dose-{tag}.png"
    _plot(rows, figure)
    lines = [
        "## Dose study"
        + ("" if args.recipe == "recommended" else ", displaced-atom states")
        + (
            ""
            if not case.state_penalty
            else ", state penalty chosen by held-out patterns"
            if case.state_penalty == "auto"
            else f", state penalty λ = {case.state_penalty:g}"
        ),
        "",
        f"`hbn-correlated` at the `{args.size}` size ({SIZES[args.size].scan_shape[0]} × "
        f"{SIZES[args.size].scan_shape[1]} scan, {SIZES[args.size].n_configs} configurations and "
        "states), Poisson noise at each dose, reconstructed with the "
        + ("default recipe" if args.recipe == "recommended" else "displaced-states recipe")
        + " and "
        "`loss: auto`; every number against the realised truth of the same configurations.",
        "",
        "| dose | CSM nn | CSM nn cross | LSM nn | ρ_nn (truth) | rms pm (truth) | separated "
        "| λ | time s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dose, r, seconds in rows:
        sep, weight = _separated(r.paths["recon"])
        lines.append(
            f"| {_label(dose)} | {r.own.csm_nn:.3f} | {r.own.csm_nn_cross:.3f} | "
            f"{r.own.lsm_nn:.2f} | {r.rho_nn_rec:+.2f} ({r.rho_nn_truth:+.2f}) | "
            f"{100 * r.rms_rec_A:.2f} ({100 * r.rms_truth_A:.2f}) | {sep} | {weight} | "
            f"{seconds:.0f}{'' if 'reconstruct' in r.timings_s else ' (reused)'} |"
        )
    lines += [
        "",
        "time: of the whole case (simulation, reconstruction and analysis); *reused*: the "
        "reconstruction was made earlier with the same parameters (`--reuse`).",
        "",
        "λ: the state penalty of the states stage (`auto`: the weight the held-out patterns "
        "chose; 0 without held-out patterns, as noise-free data have none).",
        "",
        "CSM (nn) reaches 0.9 at about "
        + (f"**{reach:.1e} e/Å²**" if reach else "**no dose tested**")
        + " (interpolated in log dose).",
        "",
        f"![CSM against dose]({Path('images') / figure.name})",
        "",
        f"Command: `python benchmarks/dose_study.py {' '.join(sys.argv[1:])}`; "
        f"{time.perf_counter() - t_all:.0f} s; {time.strftime('%Y-%m-%d')}; "
        f"{machine_description('cpu')}.",
    ]
    write_document(args.doc, f"dose-{tag}", "\n".join(lines))
    print("\n".join(lines))
    return 0


def _separated(recon: Path) -> tuple[str, str]:
    """Whether the states of ``recon`` separated, and the state penalty of its last stage
    (the chosen weight for ``auto``)."""
    from caviar_napari.io.reconstruction import load_reconstruction

    state = load_reconstruction(recon)
    reports = state.diagnostics.get("separation", [])
    stage = state.config.stages[-1]
    weight = f"{stage.state_penalty:g}" if stage.state_penalty != "auto" else ""
    if stage.state_penalty == "auto":
        chosen = state.diagnostics.get("state_penalty_chosen", {}).get(stage.name, 0.0)
        weight = f"{chosen:g} (auto)"
    separated = bool(reports) and all(r["separated"] for r in reports)
    return ("yes" if separated else "no"), weight


def _plot(rows, path: Path) -> None:
    from matplotlib.figure import Figure

    noisy = [(d, r) for d, r, _ in rows if d is not None]
    fig = Figure(figsize=(5.0, 3.4), dpi=120)
    ax = fig.add_subplot()
    d = np.array([x for x, _ in noisy])
    ax.semilogx(d, [r.own.csm_nn for _, r in noisy], "o-", label="CSM nn")
    ax.semilogx(d, [r.own.csm_nn_cross for _, r in noisy], "s-", label="CSM nn cross")
    for _, r, _ in rows[:1]:
        ax.axhline(r.own.csm_nn, color="C0", ls=":", label="noise-free")
    ax.axhline(0.9, color="0.5", lw=0.8)
    ax.set_xlabel("dose (e/Å²)")
    ax.set_ylabel("CSM against the realised truth")
    lowest = min([r.own.csm_nn_cross for _, r in noisy] + [0.0])
    ax.set_ylim(min(-0.2, lowest - 0.05), 1.05)  # every point inside
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
