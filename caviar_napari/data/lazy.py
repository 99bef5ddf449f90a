"""Diffraction patterns left in their file: read by pattern, never all at once.

A :class:`LazyIntensities` stands in for the ``(Sy, Sx, Ky, Kx)`` array of a
:class:`~caviar_napari.data.dataset.STEMDataset` whose data do not fit in memory (out-of-core
reconstruction).  It knows its shape and reads any set of patterns (flat scan indices,
``iy * Sx + ix``) as a float32 ``(B, Ky, Kx)`` array; the readers (``io``) implement
:meth:`LazyIntensities._read_sorted` for their format.  Every read is checked as the in-memory
dataset is on construction: non-finite values are an :class:`~caviar_napari.errors.InputError`
naming the file and pattern, negative values are clipped to 0.

:func:`read_patterns` and :func:`pattern_mean` work on an in-memory array or a lazy one alike,
so the engine has one code path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["LazyIntensities", "iter_pattern_chunks", "pattern_mean", "read_patterns"]

#: Bytes of patterns read at once when streaming through a lazy dataset.
CHUNK_BYTES = 32 << 20


class LazyIntensities:
    """Base of the out-of-core pattern stores (``(Sy, Sx, Ky, Kx)`` float32, read by pattern).

    Subclasses set :attr:`shape` and :attr:`source` and implement :meth:`_read_sorted`; they
    must be picklable (a distributed worker reads its own patterns from the file).
    """

    #: ``(Sy, Sx, Ky, Kx)``.
    shape: tuple[int, int, int, int] = (0, 0, 0, 0)
    #: File the patterns live in (messages).
    source: str = ""
    dtype = np.dtype(np.float32)
    ndim = 4

    @property
    def n_patterns(self) -> int:
        """``Sy · Sx``."""
        return int(self.shape[0] * self.shape[1])

    @property
    def nbytes(self) -> int:
        """Size of all patterns as float32, bytes."""
        return int(np.prod(self.shape)) * 4

    def _read_sorted(self, flat: np.ndarray) -> np.ndarray:
        """``(B, Ky, Kx)`` patterns at the increasing flat indices ``flat`` (any real dtype)."""
        raise NotImplementedError

    def read(self, flat: Any) -> np.ndarray:
        """Patterns at the flat scan indices ``flat`` (any order, repeats allowed), float32.

        Raises
        ------
        InputError
            An index outside the scan, or a non-finite value (named with file and pattern).
        """
        idx = np.asarray(flat, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_patterns):
            raise InputError(f"{self.source}: pattern index outside [0, {self.n_patterns})")
        uniq, inverse = np.unique(idx, return_inverse=True)
        data = np.asarray(self._read_sorted(uniq), dtype=np.float32)
        bad = ~np.isfinite(data)
        if bad.any():
            first = int(uniq[np.argwhere(bad)[0][0]])
            raise InputError(
                f"{self.source}: 'intensities' contains non-finite values in pattern "
                f"{divmod(first, self.shape[1])} (scan_y, scan_x)"
            )
        np.maximum(data, 0, out=data)
        return data[inverse] if uniq.size != idx.size or np.any(np.diff(idx) < 0) else data

    def __getitem__(self, key: Any) -> np.ndarray:
        """``lazy[iy]`` or ``lazy[iy, ix]`` (integers or slices of the scan axes)."""
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) > 2:
            raise InputError(f"{self.source}: index the scan axes only (got {len(key)} indices)")
        key = key + (slice(None),) * (2 - len(key))
        sy, sx = self.shape[:2]
        iy = np.arange(sy)[key[0]]
        ix = np.arange(sx)[key[1]]
        flat = (np.atleast_1d(iy)[:, None] * sx + np.atleast_1d(ix)[None, :]).ravel()
        out = self.read(flat).reshape(np.size(iy), np.size(ix), *self.shape[2:])
        return out[(0 if np.ndim(iy) == 0 else slice(None), 0 if np.ndim(ix) == 0 else slice(None))]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Materialise everything (only for code that cannot stream; avoid for large data)."""
        out = self.read(np.arange(self.n_patterns)).reshape(self.shape)
        return out if dtype is None else out.astype(dtype)


def iter_pattern_chunks(
    intensities: Any, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(flat indices, (B, Ky, Kx) float32 patterns)`` chunks covering every pattern in order."""
    shape = tuple(int(v) for v in intensities.shape)
    n = shape[0] * shape[1]
    per = max(1, int(chunk_bytes) // max(1, 4 * shape[2] * shape[3]))
    for start in range(0, n, per):
        flat = np.arange(start, min(n, start + per))
        yield flat, read_patterns(intensities, flat)


def read_patterns(intensities: Any, flat: Any) -> np.ndarray:
    """``(B, Ky, Kx)`` float32 patterns at flat scan indices of an array or lazy store."""
    if isinstance(intensities, LazyIntensities):
        return intensities.read(flat)
    arr = np.asarray(intensities)
    flat_view = arr.reshape(arr.shape[0] * arr.shape[1], *arr.shape[2:])
    return np.asarray(flat_view[np.asarray(flat, dtype=np.int64)], dtype=np.float32)


def pattern_mean(intensities: Any) -> np.ndarray:
    """``(Ky, Kx)`` float64 mean pattern (streamed in chunks for a lazy store)."""
    if not isinstance(intensities, LazyIntensities):
        return np.asarray(intensities).mean(axis=(0, 1), dtype=np.float64)
    total = np.zeros(intensities.shape[2:], dtype=np.float64)
    for _flat, chunk in iter_pattern_chunks(intensities):
        total += chunk.sum(axis=0, dtype=np.float64)
    return total / intensities.n_patterns
