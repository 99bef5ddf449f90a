"""Measured amplitudes, batch by batch: stored unpadded, padded into the probe window per batch.

The model needs, for a batch of patterns, ``sqrt(I)`` zero-padded into the ``(Ky, Kx)`` probe
window in FFT (unshifted) order, on the compute device.  :class:`PatternFeed` keeps the data as
small as they are measured (``(P, K0y, K0x)``, the detector) and where the memory plan
(:mod:`caviar_napari.core.memory`) put them:

``device``
    all amplitudes on the compute device (the fastest; a GPU needs room for them);
``host``
    in host memory (pinned on a GPU so copies run at full speed), copied to the device one
    batch at a time;
``file``
    left in the file (:class:`~caviar_napari.data.lazy.LazyIntensities`), read one batch at a
    time (out-of-core: data larger than the host memory).

Padding per batch scatters the ``K0y × K0x`` measured pixels into a zero window at the rows
``(oy + i − Ky//2) mod Ky`` and columns ``(ox + j − Kx//2) mod Kx`` (centred → FFT order), so no
padded copy of the whole dataset ever exists.  Every placement gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from caviar_napari.core.backend import Backend
from caviar_napari.data.lazy import LazyIntensities, read_patterns
from caviar_napari.errors import InputError

__all__ = ["PLACEMENTS", "PatternFeed"]

#: Where the measured data may live during a reconstruction.
PLACEMENTS = ("device", "host", "file")


class PatternFeed:
    """Amplitudes of the measured patterns, handed out per batch (see the module notes).

    Parameters
    ----------
    backend
        Compute backend.
    intensities
        ``(P, K0y, K0x)`` or ``(Sy, Sx, K0y, K0x)`` measured intensities, centred (zero angle at
        ``[K0y//2, K0x//2]``), an array or a :class:`LazyIntensities`.
    window
        ``(Ky, Kx)`` probe window (≥ the detector).
    pad_offset
        ``(oy, ox)``: where the detector sits in the centred window.
    placement
        ``"device"``, ``"host"`` or ``"file"`` (module notes); ``"file"`` needs a lazy store.
    indices
        Flat pattern indices this feed serves (a shard of a distributed run); default all.
        Batch selections given to :meth:`batch` index into this list.
    amplitudes
        ``intensities`` holds amplitudes ``sqrt(I)`` already (kept in their precision).
    """

    def __init__(
        self,
        backend: Backend,
        intensities: Any,
        window: Sequence[int],
        pad_offset: Sequence[int] = (0, 0),
        placement: str = "device",
        indices: Any = None,
        amplitudes: bool = False,
    ) -> None:
        if placement not in PLACEMENTS:
            raise InputError(f"data placement must be one of {PLACEMENTS}, got {placement!r}")
        self.backend = backend
        self.placement = placement
        shape = tuple(int(v) for v in intensities.shape)
        if len(shape) == 4:
            n_all, det = shape[0] * shape[1], shape[2:]
        elif len(shape) == 3:
            n_all, det = shape[0], shape[1:]
        else:
            raise InputError(f"intensities must be (P, Ky, Kx) or (Sy, Sx, Ky, Kx), got {shape}")
        self.detector_shape = (int(det[0]), int(det[1]))
        self.window = (int(window[0]), int(window[1]))
        oy, ox = (int(v) for v in pad_offset)
        ky, kx = self.window
        if oy < 0 or ox < 0 or oy + det[0] > ky or ox + det[1] > kx:
            raise InputError(
                f"the {det[0]}×{det[1]} detector at offset ({oy}, {ox}) does not fit the "
                f"{ky}×{kx} probe window"
            )
        self.pad_offset = (oy, ox)
        self.indices = np.arange(n_all) if indices is None else np.asarray(indices, np.int64)
        self._rows = (oy + np.arange(det[0]) - ky // 2) % ky
        self._cols = (ox + np.arange(det[1]) - kx // 2) % kx
        self._identity = (ky, kx) == self.detector_shape
        self._source = intensities
        self._is_amplitude = bool(amplitudes)
        xp = backend.xp
        self._rows_dev = xp.asarray(self._rows)
        self._cols_dev = xp.asarray(self._cols)
        self._stored = None
        if placement == "file":
            if not isinstance(intensities, LazyIntensities):
                raise InputError("data placement 'file' needs data left in their file (lazy)")
            return
        amp = self._amplitudes(np.arange(self.indices.size))
        if placement == "device":
            self._stored = xp.asarray(amp, dtype=backend.real_dtype)
        else:
            self._stored = _host_buffer(backend, amp)

    @classmethod
    def from_window_amplitudes(cls, backend: Backend, amplitudes: Any) -> PatternFeed:
        """A feed of amplitudes already in the window and in FFT order (``(P, Ky, Kx)``)."""
        amp = np.fft.fftshift(np.asarray(backend.to_host(amplitudes)), axes=(-2, -1))
        window = amp.shape[1:]
        if amp.ndim != 3:
            raise InputError(f"amplitudes must be (P, Ky, Kx), got shape {amp.shape}")
        if not np.all(np.isfinite(amp)) or np.any(amp < 0):
            raise InputError("amplitudes must be finite and non-negative")
        return cls(backend, amp, window, (0, 0), "device", amplitudes=True)

    # ------------------------------------------------------------------ properties
    @property
    def n_patterns(self) -> int:
        """Patterns this feed serves."""
        return int(self.indices.size)

    @property
    def stored_bytes(self) -> int:
        """Bytes the feed holds (device or host); 0 when the data stay in the file."""
        if self._stored is None:
            return 0
        return int(self._stored.nbytes)

    # ------------------------------------------------------------------ access
    def _read(self, local: np.ndarray) -> np.ndarray:
        """Stored values (intensities, or amplitudes) of the local patterns, host."""
        src = self._source
        flat = self.indices[local]
        if len(src.shape) == 3 and not isinstance(src, LazyIntensities):
            return np.asarray(src)[flat]
        return read_patterns(src, flat)

    def _amplitudes(self, local: np.ndarray) -> np.ndarray:
        values = self._read(local)
        if self._is_amplitude:
            return values
        return np.sqrt(np.asarray(values, dtype=np.float64)).astype(self.backend.real_dtype)

    def unpadded(self, sel: Any) -> Any:
        """``(B, K0y, K0x)`` amplitudes (centred) of the local patterns ``sel`` on the device."""
        xp = self.backend.xp
        sel = np.asarray(sel, dtype=np.int64)
        if self.placement == "device":
            return self._stored[xp.asarray(sel)]
        if self.placement == "host":
            return xp.asarray(self._stored[sel], dtype=self.backend.real_dtype)
        return xp.asarray(self._amplitudes(sel), dtype=self.backend.real_dtype)

    def batch(self, sel: Any, out: Any = None) -> Any:
        """``(B, Ky, Kx)`` amplitudes of the local patterns ``sel``: padded, FFT order, device.

        ``out`` may be a reusable ``(B, Ky, Kx)`` device buffer (it is overwritten).
        """
        xp = self.backend.xp
        amp = self.unpadded(sel)
        b = amp.shape[0]
        if out is None:
            out = xp.zeros((b, *self.window), dtype=self.backend.real_dtype)
        elif not self._identity:
            out[...] = 0
        if self._identity:  # ifftshift, written block by block into out (no temporary)
            ky, kx = self.window
            hy, hx = ky // 2, kx // 2
            for dst_y, src_y in (
                (slice(0, ky - hy), slice(hy, ky)),
                (slice(ky - hy, ky), slice(0, hy)),
            ):
                for dst_x, src_x in (
                    (slice(0, kx - hx), slice(hx, kx)),
                    (slice(kx - hx, kx), slice(0, hx)),
                ):
                    out[:, dst_y, dst_x] = amp[:, src_y, src_x]
            return out
        out[:, self._rows_dev[:, None], self._cols_dev[None, :]] = amp
        return out

    def total_intensity(self) -> float:
        """Sum of the measured intensity of the served patterns (float64)."""
        if self._stored is not None:
            xp = self.backend.xp
            return float(xp.sum(xp.square(self._stored, dtype=np.float64)))
        total = 0.0
        step = max(1, (32 << 20) // (4 * self.detector_shape[0] * self.detector_shape[1]))
        for start in range(0, self.n_patterns, step):
            amp = self._amplitudes(np.arange(start, min(self.n_patterns, start + step)))
            total += float(np.square(amp, dtype=np.float64).sum())
        return total


def _host_buffer(backend: Backend, values: np.ndarray) -> np.ndarray:
    """``values`` as float (backend precision) in host memory, page-locked on a GPU."""
    dtype = backend.real_dtype
    if backend.name == "gpu":
        import cupyx

        buf = cupyx.empty_pinned(values.shape, dtype=dtype)
        buf[...] = values
        return buf
    return np.ascontiguousarray(values, dtype=dtype)
