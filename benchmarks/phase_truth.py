"""Phase correlation of a reconstruction with the simulated truth, on the truth's grid.

The measure used by the peer comparisons (``bench_peer_hbn.py``) and the accuracy study
(docs/benchmarks/accuracy-hbn-static.md):

* truth: ``ground_truth/phase`` of a ``caviar simulate`` file, summed over its slices, on its own
  grid (pixel ``phase_pixel_size_A``, origin ``phase_origin_A``, scan frame);
* reconstruction: the projected phase ``Σ_slices angle(O)`` (mean over states), on the object
  grid (pixel ``pixel_size_A``, origin ``object_origin_A``);
* field of view: the truth pixels inside the rectangle of the scan positions (each probe centre
  has visited it), so a reconstruction on a finer (padded) grid and one on the truth's grid
  are compared on the same pixels;
* the reconstruction is band-limited to the truth grid's Nyquist square (the frequencies a
  reconstruction on the truth's own grid holds) and evaluated exactly at the truth pixels as
  that trigonometric polynomial (no spline error); the Pearson correlation of the two images on
  the field of view is the result (a constant phase offset and a scale do not matter).  No
  shift is fitted: the scan positions fix the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

__all__ = ["TruthPhase", "phase_correlation", "projected_phase", "read_truth_phase"]


@dataclass(frozen=True)
class TruthPhase:
    """Projected truth phase ``(h, w)`` on its grid (scan frame)."""

    phase: np.ndarray
    origin_A: tuple[float, float]
    pixel_A: tuple[float, float]


def read_truth_phase(path: str | Path) -> TruthPhase:
    """The projected truth phase of a ``caviar simulate`` file."""
    with h5py.File(path, "r") as f:
        g = f["ground_truth"]
        phase = np.asarray(g["phase"], dtype=np.float64).sum(axis=0)
        origin = tuple(float(v) for v in g.attrs["phase_origin_A"])
        pixel = tuple(float(v) for v in g.attrs["phase_pixel_size_A"])
    return TruthPhase(phase, origin, pixel)  # type: ignore[arg-type]


def projected_phase(obj: np.ndarray) -> np.ndarray:
    """``Σ_slices angle(O)``, mean over states, of an ``(N, S, H, W)`` (or ``(H, W)``) object."""
    o = np.asarray(obj)
    if o.ndim == 2:
        o = o[None, None]
    return np.angle(o).sum(axis=1).mean(axis=0)


def _band_limited_samples(
    image: np.ndarray,
    pixel: tuple[float, float],
    k_max: tuple[float, float],
    yy: np.ndarray,
    xx: np.ndarray,
) -> np.ndarray:
    """``image`` (periodic on its grid, pixel ``[i, j]`` at ``(i dy, j dx)``) restricted to
    ``|k_y| < k_max[0]``, ``|k_x| < k_max[1]`` and evaluated at the points ``yy`` (rows) ×
    ``xx`` (columns) in pixel-origin coordinates (Å): an exact trigonometric interpolation."""
    spec = np.fft.fft2(image) / image.size
    ky = np.fft.fftfreq(image.shape[0], pixel[0])
    kx = np.fft.fftfreq(image.shape[1], pixel[1])
    sy = np.abs(ky) < k_max[0] * (1 - 1e-9)
    sx = np.abs(kx) < k_max[1] * (1 - 1e-9)
    ey = np.exp(2j * np.pi * yy[:, None] * ky[None, sy])  # (h, ky)
    ex = np.exp(2j * np.pi * kx[sx][:, None] * xx[None, :])  # (kx, w)
    return (ey @ spec[np.ix_(sy, sx)] @ ex).real


def phase_correlation(
    phase: np.ndarray,
    origin_A: tuple[float, float],
    pixel_A: tuple[float, float],
    scan_positions_A: np.ndarray,
    truth: TruthPhase,
) -> float:
    """Pearson correlation of a reconstructed phase with the truth on the field of view.

    Parameters
    ----------
    phase
        ``(H, W)`` reconstructed projected phase.
    origin_A, pixel_A
        Its grid: position of pixel ``[0, 0]`` and pixel size ``(dy, dx)``, Å.
    scan_positions_A
        ``(P, 2)`` probe positions, same frame as the truth (scan frame), Å.
    truth
        :func:`read_truth_phase`.
    """
    img = np.asarray(phase, dtype=np.float64)
    pos = np.asarray(scan_positions_A, dtype=np.float64).reshape(-1, 2)
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    h, w = truth.phase.shape
    ty = truth.origin_A[0] + np.arange(h) * truth.pixel_A[0]
    tx = truth.origin_A[1] + np.arange(w) * truth.pixel_A[1]
    iy = np.flatnonzero((ty >= lo[0] - 1e-9) & (ty <= hi[0] + 1e-9))
    ix = np.flatnonzero((tx >= lo[1] - 1e-9) & (tx <= hi[1] + 1e-9))
    nyquist = (0.5 / truth.pixel_A[0], 0.5 / truth.pixel_A[1])
    rec = _band_limited_samples(img, pixel_A, nyquist, ty[iy] - origin_A[0], tx[ix] - origin_A[1])
    ref = truth.phase[np.ix_(iy, ix)]
    return float(np.corrcoef(rec.ravel(), ref.ravel())[0, 1])
