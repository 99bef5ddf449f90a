"""Accuracy and wall time of reconstruction recipes on the static hBN case, one run.

Recipes (one state, one probe mode, object and probe refined, 60 kV hBN data of
``bench_peer_hbn.py``):

* ``auto-N``: N L-BFGS iterations on the ``auto`` padding (the 64² detector padded to 120²);
* ``none-N``: N iterations unpadded (64²: the 2/3 band limit cuts the object's high
  frequencies);
* ``staged-A+B``: A iterations unpadded, then B iterations padded (``auto``), the object and
  probe resampled between the stages (``StageConfig.detector_padding``);
* ``minibatch-E+N``: E mini-batch epochs (128 patterns per batch) then L-BFGS, N iterations in
  all, padded.

Each line: phase correlation with the truth (``phase_truth.py``), wall time, load average.
Run: ``python benchmarks/bench_recipes_hbn.py DATA.h5 [RECIPE ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from phase_truth import phase_correlation, projected_phase, read_truth_phase

from caviar_napari.core import engine
from caviar_napari.data.config import ReconstructionConfig, StageConfig
from caviar_napari.io.dataset import read_stem_h5

DEFAULT = ["auto-10", "auto-15", "none-15", "staged-8+7", "minibatch-3+12"]


def recipe(name: str) -> ReconstructionConfig:
    """The configuration of a recipe name (module notes)."""
    kind, _, counts = name.partition("-")
    common = dict(slice_thickness_A=4.0)
    if kind in ("auto", "none"):
        stages = [StageConfig(iterations=int(counts), detector_padding=kind, **common)]
    elif kind == "staged":
        a, b = (int(v) for v in counts.split("+"))
        stages = [
            StageConfig(name="unpadded", iterations=a, detector_padding="none", **common),
            StageConfig(name="padded", iterations=b, detector_padding="auto", **common),
        ]
    elif kind == "minibatch":
        e, n = (int(v) for v in counts.split("+"))
        stages = [StageConfig(iterations=e + n, minibatch_epochs=e, minibatch_size=128, **common)]
    else:
        raise SystemExit(f"unknown recipe {name!r}")
    return ReconstructionConfig(device="cpu", stages=stages, update_every=0).validate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("recipes", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    data = read_stem_h5(args.data)
    truth = read_truth_phase(args.data)
    for name in args.recipes:
        cfg = recipe(name)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        state = engine.run_to_end(data, cfg)
        wall = time.perf_counter() - t0
        corr = phase_correlation(
            projected_phase(state.object),
            state.object_origin_A,
            state.pixel_size_A,
            state.scan_positions_A,
            truth,
        )
        row = {"recipe": name, "phase_corr": round(corr, 5), "wall_s": round(wall, 1)}
        row.update(final_loss=state.loss[-1], load_1min=load)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
