"""Scan-position refinement on abTEM data with drifted, jittered positions (issue 15, must-show 2).

``caviar simulate hbn-static`` three ways: exact positions; and the true positions off the
stated raster by a linear drift of ``--drift-A`` (0.3 Å) plus ``--jitter-A`` (0.05 Å) rms
random jitter, the file giving the nominal raster. Each is reconstructed with the same
single-state, single-slice, two-stage recipe (object and probe, then the same again): the
exact data as they are, the drifted data without and with ``--refine-positions``.

Prints a markdown table: the rms error of the positions after removing a common shift (the
nominal raster's error for the runs that do not refine), the Pearson correlation of the
reconstructed phase with the true phase in the scanned field of view after removing the same
common shift (a drift moves the mean position, and the object with it, which no data can
see), its difference from the exact-position run, the final loss and the time.

    PYTHONPATH=. python benchmarks/bench_positions.py [--iterations 100 200] [--scan 20]
        [--doc docs/benchmarks/positions.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from _doc import write_page
from bench_calibration import caviar, phase_correlation

RECIPE = """\
device: cpu
holdout_fraction: 0.0
stages:
  - {{name: object, iterations: {0}, refine: [object, probe]}}
  - {{name: refine, iterations: {1}, refine: [object, probe]}}
"""


def global_offset_A(recon: Path, data: Path) -> np.ndarray:
    """Mean of the true positions minus the mean of the reconstruction's: the common shift
    that neither the data nor the refinement can fix (the object moves with it)."""
    with h5py.File(recon) as f:
        found = np.asarray(f["scan_positions_A"][()], float).reshape(-1, 2)
    with h5py.File(data) as f:
        true = np.asarray(f["ground_truth/scan_positions_A"][()], float).reshape(-1, 2)
    return true.mean(0) - found.mean(0)


def position_error_A(recon: Path, data: Path) -> tuple[float, float]:
    """rms error (Å) of the reconstruction's positions and of the nominal raster against the
    true positions, each after removing a common shift."""
    with h5py.File(recon) as f:
        found = np.asarray(f["scan_positions_A"][()], float).reshape(-1, 2)
    with h5py.File(data) as f:
        true = np.asarray(f["ground_truth/scan_positions_A"][()], float).reshape(-1, 2)
        nominal = np.asarray(f["scan/positions_A"][()], float).reshape(-1, 2)

    def rms(a: np.ndarray, b: np.ndarray) -> float:
        d = (a - a.mean(0)) - (b - b.mean(0))
        return float(np.sqrt(np.mean(np.sum(d**2, axis=1))))

    # the reconstruction's positions are in the object frame: compare their offsets from the
    # nominal raster (same frame, no rotation here)
    shifts = found - found.mean(0) - (nominal - nominal.mean(0))
    return rms(nominal + shifts, true), rms(nominal, true)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, nargs=2, default=(100, 200))
    parser.add_argument("--scan", type=int, default=20)
    parser.add_argument("--drift-A", type=float, default=0.3)
    parser.add_argument("--jitter-A", type=float, default=0.05)
    parser.add_argument("--doc", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    n = str(args.scan)
    sim = ["--cells", "4", "6", "--detector-shape", "48", "48", "--scan", n, n, "--step", "0.3",
           "--overwrite"]  # fmt: skip
    errors = ["--drift-A", str(args.drift_A), "--drift-angle-deg", "30",
              "--position-jitter-A", str(args.jitter_A)]  # fmt: skip
    say(f"hBN, {n}×{n} scan at 0.3 Å; positions off the stated raster by a {args.drift_A:g} Å "
          f"drift and {args.jitter_A:g} Å rms jitter; single-slice, single-state recipe "
          f"{args.iterations[0]} + {args.iterations[1]} L-BFGS iterations\n")  # fmt: skip
    say("| data | refinement | position error, rms (Å) | phase corr. | Δ vs exact "
          "| final loss | time |")  # fmt: skip
    say("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recipe = tmp / "recipe.yaml"
        recipe.write_text(RECIPE.format(*args.iterations))
        exact, drifted, out = tmp / "exact.h5", tmp / "drifted.h5", tmp / "rec.h5"
        caviar("simulate", "hbn-static", "--out", str(exact), *sim)
        caviar("simulate", "hbn-static", "--out", str(drifted), *sim, *errors)
        reference = None
        for label, data, extra in (
            ("exact positions", exact, []),
            ("drifted + jittered", drifted, []),
            ("drifted + jittered", drifted, ["--refine-positions"]),
        ):
            t0 = time.perf_counter()
            caviar("reconstruct", str(data), "--out", str(out), "--config", str(recipe),
                   "--overwrite", *extra)  # fmt: skip
            r = phase_correlation(out, data, global_offset_A(out, data))
            reference = r if reference is None else reference
            err, nominal = position_error_A(out, data)
            with h5py.File(out) as f:
                loss = float(f["loss"][-1])
            shown = f"{err:.4f}" if extra else f"{nominal:.4f} (nominal raster)"
            say(f"| {label} | {'positions + affine' if extra else 'none'} | {shown} "
                  f"| {r:.4f} | {r - reference:+.4f} | {loss:.3e} "
                  f"| {time.perf_counter() - t0:.0f} s |")  # fmt: skip
    if args.doc is not None:
        write_page(
            args.doc,
            "Scan-position refinement on abTEM data (issue 15)",
            __file__,
            __doc__,
            lines,
        )


if __name__ == "__main__":
    main()
