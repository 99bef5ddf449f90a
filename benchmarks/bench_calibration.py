"""Calibration then a single-slice reconstruction: rotated and transposed data vs the unrotated
case (issue 15, must-show 1).

For each case, ``caviar simulate`` (hBN, 60 Å underfocus; the file states 0°, no transpose and
0 Å), then ``caviar calibrate``, then a single-stage, single-state, single-slice
``caviar reconstruct`` of the calibrated file (the engine's default stage: object and probe,
L-BFGS) with ``--iterations N``, and the Pearson correlation of the reconstructed phase with
the true phase inside the scanned field of view (the true phase sampled at the object pixels,
in the object frame of conventions §2).  A first row reconstructs the unrotated data with the
true values stated (no calibration): the reference for what the calibration costs.

Prints one markdown row per case: the found rotation / transpose / defocus against the truth,
how the half-turn was decided (and with what confidence), the phase correlation and its
difference from the calibrated unrotated case, and the relative loss change over the last
tenth of the iterations (a convergence check).

    PYTHONPATH=. python benchmarks/bench_calibration.py [--iterations 200] [--scan 20]
        [--defocus-A 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from scipy.ndimage import map_coordinates

#: name → (extra simulate options, true rotation (°), true transpose)
CASES = {
    "unrotated": ([], 0.0, False),
    "rotated 15°": (["--scan-rotation-deg", "15"], 15.0, False),
    "transposed": (["--detector-transposed"], 0.0, True),
    "rotated 15° + transposed": (
        ["--scan-rotation-deg", "15", "--detector-transposed"],
        15.0,
        True,
    ),
}


def caviar(*args: str) -> str:
    cmd = [sys.executable, "-m", "caviar_napari.cli", *args]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return done.stdout


def phase_correlation(recon: Path, truth: Path) -> float:
    with h5py.File(recon) as f:
        phase = np.angle(f["object"][0, 0])
        d = np.asarray(f.attrs["pixel_size_A"], float)
        origin = np.asarray(f.attrs["object_origin_A"], float)
    with h5py.File(truth) as f:
        g = f["ground_truth"]
        true = g["phase"][0]
        td = np.asarray(g.attrs["phase_pixel_size_A"], float)
        to = np.asarray(g.attrs["phase_origin_A"], float)
        true_pos = np.asarray(g["scan_positions_A"][()], float).reshape(-1, 2)
    iy, ix = np.meshgrid(np.arange(phase.shape[0]), np.arange(phase.shape[1]), indexing="ij")
    world = origin + np.stack([iy * d[0], ix * d[1]], -1)
    lo, hi = true_pos.min(0), true_pos.max(0)
    inside = np.all((world >= lo) & (world <= hi), axis=-1)
    coords = ((world - to) / td).reshape(-1, 2).T
    sampled = map_coordinates(true, coords, order=1, mode="wrap").reshape(phase.shape)
    a, b = phase[inside], sampled[inside]
    return float(np.corrcoef(a - a.mean(), b - b.mean())[0, 1])


def loss_change(recon: Path) -> float:
    """Relative loss decrease over the last tenth of the iterations."""
    with h5py.File(recon) as f:
        loss = np.asarray(f["loss"][()], float)
    k = max(1, loss.size // 10)
    return float((loss[-k - 1] - loss[-1]) / abs(loss[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--scan", type=int, default=20)
    parser.add_argument("--defocus-A", type=float, default=60.0)
    args = parser.parse_args()
    n, df = str(args.scan), args.defocus_A
    sim = ["--cells", "4", "6", "--detector-shape", "48", "48", "--scan", n, n, "--step",
           "0.3", "--defocus-A", str(df)]  # fmt: skip
    rec = ["--iterations", str(args.iterations), "--overwrite"]
    print(f"hBN, {n}×{n} scan at 0.3 Å, {df:g} Å underfocus stated as 0 Å; single-slice, "
          f"single-state reconstruction, {args.iterations} L-BFGS iterations\n")  # fmt: skip
    print("| case | rotation found (true) | transposed found (true) | defocus found (true) "
          "| half-turn by (confidence) | phase corr. | Δ vs unrotated | loss change, last "
          "10% | time |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        data, cal, out = (Path(tmp) / f"{k}.h5" for k in ("data", "cal", "rec"))
        t0 = time.perf_counter()
        caviar("simulate", "hbn-static", "--out", str(data), "--overwrite", *sim)
        caviar("reconstruct", str(data), "--out", str(out), *rec)
        r = phase_correlation(out, data)
        print(f"| unrotated, true values stated (no calibration) | 0 (0) | no (no) | {df:g} "
              f"(stated) | – | {r:.4f} | – | {loss_change(out):.1e} "
              f"| {time.perf_counter() - t0:.0f} s |", flush=True)  # fmt: skip
        reference = None
        for name, (extra, rot, transposed) in CASES.items():
            t0 = time.perf_counter()
            caviar("simulate", "hbn-static", "--out", str(data), "--overwrite", *sim,
                   "--recorded-defocus-A", "0", *extra)  # fmt: skip
            v = json.loads(caviar("calibrate", str(data), "--out", str(cal), "--json",
                                  "--overwrite"))  # fmt: skip
            caviar("reconstruct", str(cal), "--out", str(out), *rec)
            r = phase_correlation(out, data)
            reference = r if reference is None else reference
            yes = {True: "yes", False: "no"}
            print(
                f"| {name} | {v['scan_rotation_deg']:.2f}° ({rot:g}°) "
                f"| {yes[v['detector_transposed']]} ({yes[transposed]}) "
                f"| {v['defocus_A']:.1f} Å ({df:g} Å) "
                f"| {v['half_turn_decided_by']} ({v['half_turn_confidence']:.2f}) "
                f"| {r:.4f} | {r - reference:+.4f} | {loss_change(out):.1e} "
                f"| {time.perf_counter() - t0:.0f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
