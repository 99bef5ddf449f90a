"""Convergence of the object states: displacement amplitude against iterations, in single and
in double precision (issues 13, 14, 16).

The correlated hBN dataset of the validation study's size (``--size test``: 12 × 12 scan, 8
configurations; simulated with ``caviar simulate`` unless ``--data`` names one) is reconstructed
with the recommended recipe of that size, its object-states stage run for ``--iterations`` in
single and then in double precision (``precision`` of the stage) with no stopping rule. Every
``--every`` iterations the atoms are refined in every state (phase-weighted centre of mass, at
the true mean sites inside the scanned field of view) and their Green's tensor is compared with
the realised truth of the configurations: the rms displacement, LSM (mean over vectors, 1 =
equal length) and CSM over the self blocks and nearest-neighbour pairs. A stage
whose line search stalls (no decrease along the gradient either) ends there, as a real run does;
its last row gives the iteration it stalled at.

::

    python benchmarks/bench_state_convergence.py --workdir /tmp/conv
    python benchmarks/bench_state_convergence.py --data cor.h5 --iterations 600 --every 50 \\
        --doc docs/benchmarks/state-convergence.md
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

PRESET = "hbn-correlated"


def _data(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return args.data
    from caviar_napari.workflows.simulate import SimulateOptions, run_simulate
    from caviar_napari.workflows.study_config import simulate_overrides

    out = args.workdir / f"{PRESET}-{args.size}.h5"
    if not out.exists():
        args.workdir.mkdir(parents=True, exist_ok=True)
        overrides = simulate_overrides(PRESET, SIZES[args.size], args.seed)
        run_simulate(SimulateOptions(PRESET, out, overrides))
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
    }


def run_precision(data: Path, precision: str, args: argparse.Namespace) -> list[dict]:
    """The recipe with its states stage in ``precision``; one row per scored iteration."""
    dataset, truth = load_stem(data), read_ground_truth(data)
    size = dataclasses.replace(SIZES[args.size], iterations=(SIZES[args.size].iterations[0], 1))
    config = reconstruction_config(size, Case(PRESET), device="cpu", seed=args.seed)
    stages = [st.to_dict() for st in config.stages]
    stages[-1].update(iterations=args.iterations, stop_patience=0, precision=precision)
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
        row = {"precision": precision, "iteration": done, "loss": p.loss}
        row |= score(p.object, geom, truth, dataset.positions_A)
        row["seconds"] = time.perf_counter() - stage2_t0
        row["stalled"] = stalls
        rows.append(row)
        print(_line(row), flush=True)
    print(f"{precision}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def _line(r: dict) -> str:
    return (
        f"| {r['precision']} | {r['iteration']} | {r['loss']:.3g} | {r['rms_pm']:.2f} "
        f"({r['rms_truth_pm']:.2f}) | {r['lsm']:.2f} | {r['csm']:.3f} | {r['seconds']:.0f} |"
        + (" stalled" if r["stalled"] else "")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="a hbn-correlated file")
    ap.add_argument("--size", default="test", choices=sorted(SIZES))
    ap.add_argument("--workdir", type=Path, default=Path("state-convergence"))
    ap.add_argument("--iterations", type=int, default=600, help="states-stage iterations")
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--precisions", nargs="+", default=["single", "double"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--doc", type=Path, default=None)
    args = ap.parse_args(argv)
    data = _data(args)
    header = [
        "| stage-2 precision | stage-2 iteration | loss | rms pm (truth) | LSM | CSM | stage-2 s |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(header))
    rows = [r for p in args.precisions for r in run_precision(data, p, args)]
    lines = header + [_line(r) for r in rows]
    last = {p: [r for r in rows if r["precision"] == p][-1] for p in args.precisions}
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
