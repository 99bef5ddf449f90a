"""Held-out scan positions: patterns left out of the fit and used to judge it.

A fraction of the scan positions, spread evenly over the scan, is kept out of the objective.
Their loss, evaluated as the run goes, tells fitting the signal from fitting the noise: it
falls while the model learns what the data share across positions and rises once it starts
fitting each pattern's own counting noise. The engine uses it to end a stage (the stopping
rule, :mod:`caviar_napari.core.engine`) and to judge whether object states separated
(:mod:`caviar_napari.core.separation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["HOLDOUT_AUTO", "PatternSplit", "holdout_fraction", "pattern_split", "split_positions"]

#: Fraction held out by ``holdout_fraction: auto`` when the data are counts (noise-free data
#: hold nothing out: every pattern is fitted).
HOLDOUT_AUTO = 0.1


def holdout_fraction(setting: float | str, is_counts: bool) -> float:
    """The fraction to hold out for ``setting`` (``"auto"`` or a number in [0, 0.5])."""
    if setting == "auto":
        return HOLDOUT_AUTO if is_counts else 0.0
    return float(setting)


def split_positions(scan_shape: tuple[int, int], fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (raster order) of the fitted and of the held-out scan positions.

    Every ``n = round(1/fraction)``-th position along the diagonals ``(iy · 3 + ix) mod n`` is
    held out, so the held-out positions form an even lattice over the scan and each has fitted
    neighbours on every side (the object under it is still constrained by overlapping probes).

    Examples
    --------
    >>> fit, held = split_positions((4, 5), 0.25)
    >>> held.tolist(), len(fit)
    ([0, 4, 6, 12, 18], 15)
    """
    sy, sx = (int(v) for v in scan_shape)
    everything = np.arange(sy * sx)
    if fraction <= 0:
        return everything, everything[:0]
    if fraction > 0.5:
        raise InputError(f"holdout_fraction must be ≤ 0.5, got {fraction!r}")
    n = max(2, round(1.0 / fraction))
    iy, ix = np.divmod(everything, sx)
    held = (iy * 3 + ix) % n == 0
    if held.all() or not held.any():
        return everything, everything[:0]
    return everything[~held], everything[held]


@dataclass(frozen=True)
class PatternSplit:
    """The fitted and held-out patterns of a run, with the loss normaliser of each.

    Attributes
    ----------
    fit, held
        Pattern indices (raster order); ``held`` is empty when nothing is held out.
    fit_norm, held_norm
        Total measured intensity inside the loss mask over each set (``held_norm`` 1 when
        empty).
    """

    fit: np.ndarray
    held: np.ndarray
    fit_norm: float
    held_norm: float

    @property
    def holds_out(self) -> bool:
        """Whether any pattern is held out."""
        return self.held.size > 0


def pattern_split(
    scan_shape: tuple[int, int], fraction: float, amplitudes: np.ndarray, mask: np.ndarray
) -> PatternSplit:
    """:func:`split_positions` with the loss normalisers of both sets.

    Parameters
    ----------
    scan_shape
        ``(Sy, Sx)``.
    fraction
        Fraction held out (0: none).
    amplitudes
        ``(P, Ky, Kx)`` measured amplitudes (host), FFT order.
    mask
        ``(Ky, Kx)`` loss mask, FFT order.
    """
    fit, held = split_positions(scan_shape, fraction)
    per_pattern = np.einsum("pyx,yx->p", np.square(amplitudes, dtype=np.float64), mask)
    fit_norm = float(per_pattern[fit].sum())
    if not fit_norm > 0:
        raise InputError("no measured intensity in the fitted patterns' loss mask")
    held_norm = float(per_pattern[held].sum()) if held.size else 1.0
    return PatternSplit(fit=fit, held=held, fit_norm=fit_norm, held_norm=held_norm or 1.0)
