"""Calibration then a short reconstruction: rotated and transposed data vs the unrotated case.

For each case, ``caviar simulate`` (hBN, the file stating 0° and no transpose), then
``caviar calibrate``, then a short single-slice ``caviar reconstruct`` of the calibrated file,
and the Pearson correlation of the reconstructed phase with the true phase inside the scanned
field of view (the true phase sampled at the object pixels, in the object frame of conventions
§2).  Prints one line per case: the found rotation/transpose/defocus and the correlation.

    PYTHONPATH=. python benchmarks/bench_calibration.py [--iterations 30] [--scan 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from scipy.ndimage import map_coordinates

CASES = {
    "unrotated": [],
    "rotated 15°": ["--scan-rotation-deg", "15"],
    "transposed": ["--detector-transposed"],
    "rotated 15° + transposed": ["--scan-rotation-deg", "15", "--detector-transposed"],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--scan", type=int, default=20)
    args = parser.parse_args()
    n = str(args.scan)
    sim = ["--cells", "4", "6", "--detector-shape", "48", "48", "--scan", n, n, "--step",
           "0.3", "--defocus-A", "60", "--recorded-defocus-A", "0"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in CASES.items():
            data, cal, rec = (Path(tmp) / f"{k}.h5" for k in ("data", "cal", "rec"))
            caviar("simulate", "hbn-static", "--out", str(data), "--overwrite", *sim, *extra)
            values = json.loads(
                caviar("calibrate", str(data), "--out", str(cal), "--json", "--overwrite")
            )
            caviar("reconstruct", str(cal), "--out", str(rec), "--iterations",
                   str(args.iterations), "--overwrite")  # fmt: skip
            r = phase_correlation(rec, data)
            print(
                f"{name:26s} rotation {values['scan_rotation_deg']:7.2f}°  transposed "
                f"{values['detector_transposed']!s:5s}  defocus {values['defocus_A']:6.1f} Å "
                f"(true 60)  phase correlation {r:.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
