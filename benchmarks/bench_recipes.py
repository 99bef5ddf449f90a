"""Accuracy and wall time of reconstruction recipes on a static sample, one run; optionally
against a baseline checkout of caviar-napari on the same data, in the same run.

Recipes (one state, one probe mode, object and probe refined; ``--slices`` slices of
``--slice-thickness-A``; each recipe is one ``caviar reconstruct DATA --config RECIPE.yaml``
process, timed from start to exit, so the times include imports, set-up and the file write):

* ``auto-N``: N L-BFGS iterations on the ``auto`` padding (the detector zero-padded so that the
  2/3 band limit holds what the data reach);
* ``none-N``: N iterations unpadded (the 2/3 band limit cuts the object's high frequencies);
* ``padYxX-N``: N iterations on a ``Y×X`` window (``detector_padding: YxX``);
* ``staged-A+B``: A iterations unpadded, then B iterations padded (``auto``), the object and
  probe resampled between the stages (``StageConfig.detector_padding``);
* ``minibatch-E+N``: E mini-batch epochs (128 patterns per batch) then L-BFGS, N iterations in
  all, padded;
* ``baseline-N`` (with ``--baseline CHECKOUT``): the checkout's ``caviar reconstruct DATA
  --iterations N --slices S --slice-thickness-A DZ`` (its default one-stage configuration), run
  with the checkout first on ``PYTHONPATH``, for "same data, same machine, same run" speed-ups.

Each line: phase correlation with the truth (``phase_truth.py``), wall time, final loss and the
load average at the start. ``--page PAGE.md`` writes the table as a generated page.

::

    python benchmarks/bench_recipes.py hbn_static.h5 auto-10 auto-15 none-15 staged-8+7
    python benchmarks/bench_recipes.py si110.h5 baseline-60 auto-60 auto-30 --slices 16 \\
        --slice-thickness-A 1.92 --baseline /path/to/old/checkout
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _doc import write_page
from phase_truth import phase_correlation, projected_phase, read_truth_phase

from caviar_napari.data.config import ReconstructionConfig, StageConfig
from caviar_napari.io.config_file import save_yaml

DEFAULT = ["auto-10", "auto-15", "none-15", "staged-8+7", "minibatch-3+12"]


def recipe(name: str, slices: int = 1, slice_thickness_A: float = 4.0) -> ReconstructionConfig:
    """The configuration of a recipe name (module notes; not ``baseline-N``)."""
    kind, _, counts = name.partition("-")
    common = dict(slices=slices, slice_thickness_A=slice_thickness_A)
    if kind in ("auto", "none"):
        stages = [StageConfig(iterations=int(counts), detector_padding=kind, **common)]
    elif re.fullmatch(r"pad\d+x\d+", kind):
        stages = [StageConfig(iterations=int(counts), detector_padding=kind[3:], **common)]
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


def command(name: str, args: argparse.Namespace, work: Path) -> tuple[list[str], dict]:
    """The ``caviar reconstruct`` process of recipe ``name`` and its environment."""
    out = work / f"{name}.h5"
    env = dict(os.environ)
    argv = [sys.executable, "-m", "caviar_napari.cli", "reconstruct", str(args.data.resolve())]
    argv += ["--out", str(out)]
    if name.startswith("baseline-"):
        if args.baseline is None:
            raise SystemExit("recipe baseline-N needs --baseline CHECKOUT")
        env["PYTHONPATH"] = os.pathsep.join(
            [str(args.baseline.resolve()), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        argv += ["--iterations", name.partition("-")[2], "--device", "cpu"]
        argv += ["--slices", str(args.slices), "--slice-thickness-A", str(args.slice_thickness_A)]
    else:
        cfg = work / f"{name}.yaml"
        save_yaml(cfg, recipe(name, args.slices, args.slice_thickness_A))
        argv += ["--config", str(cfg)]
    return argv, env


def score(path: Path, truth) -> tuple[float, float]:
    """Phase correlation with the truth and final loss of a RECON file (read with h5py only, so
    that a baseline's file is read the same way)."""
    with h5py.File(path, "r") as f:
        obj = np.asarray(f["object"])
        positions = np.asarray(f["scan_positions_A"])
        origin = tuple(float(v) for v in f.attrs["object_origin_A"])
        pixel = tuple(float(v) for v in f.attrs["pixel_size_A"])
        loss = float(np.asarray(f["loss"])[-1])
    return phase_correlation(projected_phase(obj), origin, pixel, positions, truth), loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("recipes", nargs="*", default=DEFAULT)
    parser.add_argument("--slices", type=int, default=1)
    parser.add_argument("--slice-thickness-A", type=float, default=4.0)
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout of caviar-napari")
    parser.add_argument("--page", type=Path, default=None, help="write the table here (.md)")
    args = parser.parse_args()
    truth = read_truth_phase(args.data)
    rows = []
    with tempfile.TemporaryDirectory(prefix="recipes-") as tmp:
        for name in args.recipes:
            argv, env = command(name, args, Path(tmp))
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            # cwd: `python -m` puts the working folder first on sys.path
            proc = subprocess.run(argv, env=env, cwd=tmp, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
            corr, loss = score(Path(tmp) / f"{name}.h5", truth)
            row = {"recipe": name, "phase_corr": round(corr, 5), "wall_s": round(wall, 1)}
            row.update(final_loss=loss, load_1min=round(load, 2))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.page:
        lines = [
            "| recipe | phase correlation | wall s | final loss | load |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `{r['recipe']}` | {r['phase_corr']:.5f} | {r['wall_s']:.1f} | "
            f"{r['final_loss']:.4g} | {r['load_1min']:.1f} |"
            for r in rows
        ]
        write_page(args.page, "Reconstruction recipes: accuracy and wall time", __file__,
                   __doc__, lines)  # fmt: skip


if __name__ == "__main__":
    main()
