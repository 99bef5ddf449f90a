"""Real-space grids: conversion between pixel indices and Å positions (conventions §1).

Pixel ``[iy, ix]`` of a grid sits at ``origin + (iy * dy, ix * dx)``: no half-pixel offset.
Coordinates are always ``(y, x)`` in the last axis.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def as_pair(value: float | ArrayLike, name: str = "value") -> tuple[float, float]:
    """Return ``value`` as a ``(y, x)`` pair of floats; a scalar is used for both axes."""
    arr = np.asarray(value, dtype=float).ravel()
    if arr.size == 1:
        return float(arr[0]), float(arr[0])
    if arr.size == 2:
        return float(arr[0]), float(arr[1])
    raise ValueError(f"{name} must be a scalar or a (y, x) pair, got shape {np.shape(value)}")


def px_to_A(pixels: ArrayLike, origin_A: ArrayLike, pixel_size_A: float | ArrayLike) -> np.ndarray:
    """Convert pixel coordinates ``(..., 2)`` as ``(y, x)`` to positions in Å.

    Parameters
    ----------
    pixels
        Fractional pixel coordinates, last axis ``(y, x)``.
    origin_A
        Position in Å of pixel ``[0, 0]``.
    pixel_size_A
        Pixel size in Å, scalar or ``(dy, dx)``.
    """
    d = np.asarray(as_pair(pixel_size_A, "pixel_size_A"))
    return np.asarray(origin_A, dtype=float) + np.asarray(pixels, dtype=float) * d


def A_to_px(
    positions_A: ArrayLike, origin_A: ArrayLike, pixel_size_A: float | ArrayLike
) -> np.ndarray:
    """Convert positions in Å ``(..., 2)`` as ``(y, x)`` to fractional pixel coordinates."""
    d = np.asarray(as_pair(pixel_size_A, "pixel_size_A"))
    return (np.asarray(positions_A, dtype=float) - np.asarray(origin_A, dtype=float)) / d
