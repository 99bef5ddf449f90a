"""Where the L-BFGS curvature pairs live: on the device, on the host, or at half precision.

The pairs ``(s_i, y_i)`` are ``2 · lbfgs_memory`` object-sized arrays: most of a large run's
memory. :class:`PairStore` keeps each stored block in one of three forms and gives it back on
the compute device when the two-loop recursion reaches it, one pair at a time:

``device``
    as computed (no copy);
``host``
    a host copy (page-locked on a GPU, so the transfers run at full bus speed); the two-loop
    recursion streams the pairs through the device one at a time;
``half``
    half the bytes: complex128/float64 blocks as complex64/float32; complex64/float32 blocks as
    float16 real pairs scaled by their largest magnitude (relative precision ~5e-4: the
    curvature model is an approximation anyway, and a direction that is not a descent
    direction makes L-BFGS fall back to a gradient step).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["HISTORY_MODES", "PairStore"]

#: Forms of a stored pair.
HISTORY_MODES = ("device", "host", "half")


class _Half:
    """A float16 copy of a float32/complex64 array, scaled by its largest magnitude."""

    __slots__ = ("data", "dtype", "scale", "shape")

    def __init__(self, a: Any, xp: ModuleType) -> None:
        self.dtype = a.dtype
        self.shape = a.shape
        real = a.view(a.real.dtype) if xp.iscomplexobj(a) else a
        peak = float(xp.max(xp.abs(real))) if real.size else 0.0
        self.scale = peak / 32768.0 if peak > 0 else 1.0
        self.data = (real / self.scale).astype(np.float16)

    def restore(self, xp: ModuleType) -> Any:
        real = self.data.astype(np.float32) * np.float32(self.scale)
        if np.dtype(self.dtype).kind == "c":
            return real.view(np.complex64).reshape(self.shape)
        return real.reshape(self.shape)


class PairStore:
    """Stores and restores blocks (dicts of arrays) in one of :data:`HISTORY_MODES`."""

    def __init__(self, mode: str = "device", xp: ModuleType = np) -> None:
        if mode not in HISTORY_MODES:
            raise InputError(f"L-BFGS history must be one of {HISTORY_MODES}, got {mode!r}")
        self.mode = mode
        self.xp = xp

    def _store(self, a: Any) -> Any:
        xp = self.xp
        if self.mode == "device":
            return a
        if self.mode == "host":
            if xp is np:
                return np.array(a, copy=True)
            import cupyx

            buf = cupyx.empty_pinned(a.shape, dtype=a.dtype)
            a.get(out=buf)
            return buf
        # half
        if a.dtype == np.complex128:
            return a.astype(np.complex64)
        if a.dtype == np.float64:
            return a.astype(np.float32)
        return _Half(xp.ascontiguousarray(a), xp)

    def _load(self, v: Any, dtype: Any) -> Any:
        xp = self.xp
        if isinstance(v, _Half):
            return v.restore(xp)
        if self.mode == "device":
            return v
        return xp.asarray(v).astype(dtype, copy=False)

    def stash(self, blocks: dict[str, Any]) -> dict[str, Any]:
        """The stored form of ``blocks`` (the originals may be dropped)."""
        if self.mode == "device":
            return blocks
        return {k: (self._store(v), v.dtype) for k, v in blocks.items()}

    def load(self, stored: dict[str, Any]) -> dict[str, Any]:
        """``stored`` back as device arrays of their original dtypes."""
        if self.mode == "device":
            return stored
        return {k: self._load(v, dtype) for k, (v, dtype) in stored.items()}

    def host(self, stored: dict[str, Any], key: str) -> np.ndarray:
        """Host numpy copy of one block (checkpoints)."""
        v = self.load({key: stored[key]})[key]
        return v.get() if hasattr(v, "get") else np.array(v)
