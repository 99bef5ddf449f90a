"""Convergence of the object states: displacement amplitude against iterations, in single and
in double precision, with free states and with states as displaced atoms (issues 13, 14, 16).

The correlated hBN dataset of the validation study's size (``--size test``: 12 × 12 scan, 8
configurations; simulated with ``caviar simulate`` unless ``--data`` names one) is reconstructed
with the recommended recipe of that size, its object-states stage run for ``--iterations`` with
no stopping rule in each of the ``--variants``: ``single`` and ``double`` (free states in that
``precision``), ``displacements`` (``state_model: displacements``, single precision) and
``displacements-shifts`` (the same with ``remove_state_shifts: false``; ``-double``: in double
precision) and
``displacements-shifts+free`` (half the iterations so, then half with free states). Every
``--every`` iterations the atoms are refined in every state (phase-weighted centre of mass, at
the true mean sites inside the scanned field of view) and their Green's tensor is compared with
the realised truth of the configurations: the rms displacement, LSM (mean over vectors, 1 =
equal length) and CSM over the self blocks and nearest-neighbour pairs, ρ_nn, and the uniform
x–x / y–y offset (mean (G_yy + G_xx)/2 over pairs of distinct atoms: what a finite source or
rigid shifts between the states add). A stage
whose line search stalls (no decrease along the gradient either) ends there, as a real run does;
its last row gives the iteration it stalled at.

::

    python benchmarks/bench_state_convergence.py --workdir /tmp/conv
    python benchmarks/bench_state_convergence.py --data cor.h5 --iterations 600 --every 50 \\
        --doc docs/benchmarks/state-convergence.md
    python benchmarks/bench_state_convergence.py --data cor.h5 --iterations 150 --every 25 \\
        --variants single displacements displacements-shifts
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np

from caviar_napari.analysis import atoms as am
from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis import truth as tm
from caviar_napari.core import engine
from caviar_napari.data.config import ReconstructionConfig
from caviar_napari.io.correlations_file import read_ground_truth
from caviar_napari.io.readers import load_stem
from caviar_napari.workflows.study_config import SIZES, Case, reconstruction_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import write_page

#: The default preset (``--preset``: any preset with a correlated truth).
PRESET = "hbn-correlated"
#: The settings of each variant's states stages (the iterations split evenly between them).
_DISPLACED = {"precision": "single", "state_model": "displacements"}
VARIANTS = {
    "single": ({"precision": "single"},),
    "double": ({"precision": "double"},),
    "displacements": (_DISPLACED,),
    "displacements-shifts": ({**_DISPLACED, "remove_state_shifts": False},),
    "displacements-shifts-double": (
        {**_DISPLACED, "remove_state_shifts": False, "precision": "double"},
    ),
    "displacements-shifts+free": (
        {**_DISPLACED, "remove_state_shifts": False},
        {"precision": "single", "remove_state_shifts": False},
    ),
}


def _data(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return args.data
    from caviar_napari.workflows.simulate import SimulateOptions, run_simulate
    from caviar_napari.workflows.study_config import simulate_overrides

    out = args.workdir / f"{args.preset}-{args.size}.h5"
    if not out.exists():
        args.workdir.mkdir(parents=True, exist_ok=True)
        overrides = simulate_overrides(args.preset, SIZES[args.size], args.seed)
        run_simulate(SimulateOptions(args.preset, out, overrides))
    return out


def score(obj: np.ndarray, geom, truth, scan_A: np.ndarray) -> dict[str, float]:
    """rms (pm), LSM and CSM (self + nearest-neighbour blocks) of the states ``obj`` against the
    realised truth, at the true mean sites inside the scanned field of view."""
    fov = tm.field_of_view(scan_A.reshape(-1, 2))
    start = truth.mean_positions_A[tm.inside_field_of_view(truth.mean_positions_A, fov)]
    refined = am.refine_states(
        np.angle(obj).astype(np.float32), start, geom.pixel_size_A, geom.object_origin_A
    )
    green = corr.green_tensor(refined.positions_A).green_A2
    positions = refined.mean_positions_A
    pairs = corr.pairs_within_radius(positions, 1.15 * corr.nearest_neighbour_distance(positions))
    cmp = corr.compare_to_truth(
        green, positions, truth.green_realised_A2, truth.mean_positions_A, pairs
    )
    green_truth = corr.reindex_green(truth.green_realised_A2, cmp.match.truth_index)
    return {
        "rms_pm": 100 * tm.rms_displacement_A(green),
        "rms_truth_pm": 100 * tm.rms_displacement_A(green_truth),
        "lsm": float(cmp.similarity.lsm_mean),
        "csm": float(cmp.similarity.csm),
        "rho": cmp.rho_nn_reconstructed.mean,
        "rho_truth": cmp.rho_nn_truth.mean,
        "offset_pm2": 1e4 * tm.offset_A2(green),
        "offset_truth_pm2": 1e4 * tm.offset_A2(green_truth),
    }


def run_variant(data: Path, variant: str, args: argparse.Namespace) -> list[dict]:
    """The recipe with its states stage as ``variant`` says; one row per scored iteration."""
    dataset, truth = load_stem(data), read_ground_truth(data)
    size = dataclasses.replace(SIZES[args.size], iterations=(SIZES[args.size].iterations[0], 1))
    config = reconstruction_config(size, Case(args.preset), device="cpu", seed=args.seed)
    stages = [st.to_dict() for st in config.stages]
    parts = VARIANTS[variant]
    states_stage = stages.pop()
    for k, part in enumerate(parts):
        iterations = args.iterations // len(parts) + (k < args.iterations % len(parts))
        name = states_stage["name"] + (f" {k + 1}" if len(parts) > 1 else "")
        stages.append(
            {**states_stage, "name": name, "iterations": iterations, "stop_patience": 0, **part}
        )
    config = ReconstructionConfig.from_dict(
        {**config.to_dict(), "stages": stages, "update_every": args.every}
    )
    geom = engine.plan_geometry(dataset, config)
    rows, t0, stage2_t0, stalls, done = [], time.perf_counter(), None, 0, 0
    for p in engine.run(dataset, config):
        if p.stage_index == 0:
            continue
        stage2_t0 = stage2_t0 or time.perf_counter()
        stalls += p.method == "stalled"
        done += 1  # iterations run (a stall ends the stage before its count)
        if p.object is None:
            continue
        row = {"variant": variant, "iteration": done, "loss": p.loss}
        row |= score(p.object, geom, truth, dataset.positions_A)
        row["seconds"] = time.perf_counter() - stage2_t0
        row["stalled"] = stalls
        rows.append(row)
        print(_line(row), flush=True)
    print(f"{variant}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def _line(r: dict) -> str:
    return (
        f"| {r['variant']} | {r['iteration']} | {r['loss']:.3g} | {r['rms_pm']:.2f} "
        f"({r['rms_truth_pm']:.2f}) | {r['lsm']:.2f} | {r['csm']:.3f} | {r['rho']:+.2f} "
        f"({r['rho_truth']:+.2f}) | {r['offset_pm2']:+.2f} ({r['offset_truth_pm2']:+.2f}) | "
        f"{r['seconds']:.0f} |" + (" stalled" if r["stalled"] else "")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=PRESET, help="the simulation preset (default %(default)s)")
    ap.add_argument("--data", type=Path, default=None, help="a file of that preset")
    ap.add_argument("--size", default="test", choices=sorted(SIZES))
    ap.add_argument("--workdir", type=Path, default=Path("state-convergence"))
    ap.add_argument("--iterations", type=int, default=600, help="states-stage iterations")
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--variants", nargs="+", default=["single", "double"], choices=sorted(VARIANTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--doc", type=Path, default=None)
    args = ap.parse_args(argv)
    data = _data(args)
    header = [
        "| stage 2 | stage-2 iteration | loss | rms pm (truth) | LSM | CSM | ρ_nn (truth) "
        "| offset pm² (truth) | stage-2 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(header))
    rows = [r for v in args.variants for r in run_variant(data, v, args)]
    lines = header + [_line(r) for r in rows]
    last = {v: [r for r in rows if r["variant"] == v][-1] for v in args.variants}
    summary = [
        "",
        "Final: "
        + "; ".join(
            f"{p} {r['iteration']} iterations, LSM {r['lsm']:.2f}, rms {r['rms_pm']:.2f} of "
            f"{r['rms_truth_pm']:.2f} pm" + (" (line search stalled)" if r["stalled"] else "")
            for p, r in last.items()
        )
        + f". Data: `{data}`.",
    ]
    print(summary[-1])
    if args.doc is not None:
        write_page(args.doc, "Convergence of the object states", __file__, __doc__, lines + summary)
    return 0 if all(math.isfinite(r["lsm"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
