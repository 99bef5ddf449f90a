"""Mixed-state multislice forward model and its hand-written Wirtinger adjoint.

For scan position ``p``, object state ``n`` (of N) and probe mode ``m`` (of M)::

    ψ_0      = S_p ψ_m                      sub-pixel shift: F⁻¹[B(k) e^{−2πi k·δ_p} F ψ_m]
    φ_j      = ψ_j · O[n, j, window_p]       transmit at the top of slice j
    ψ_{j+1}  = F⁻¹[P_j(k) F φ_j]             propagate by dz_j (j < S−1; none after the last)
    Ψ        = F φ_{S−1}
    I_p(k)   = (1/N) Σ_n Σ_m |Ψ(k)|²         mean over object states, sum over probe modes

``F`` is the unitary 2-D FFT (``norm="ortho"``), ``B`` the circular 2/3-Nyquist band limit,
``P_j`` the tilted Fresnel propagator times ``B`` (:func:`optics.fresnel_propagator`), ``δ_p``
the sub-pixel part of the scan position. The probe window's top-left object pixel is
``round(r_p) − K//2`` (``round`` = floor(x + 1/2)) so that the probe's centre pixel
``[Ky//2, Kx//2]`` lands on ``r_p``.  Intensities and amplitudes are in FFT (unshifted) order.

Gradients are Wirtinger derivatives ``g = ∂L/∂z*`` (``dL = 2 Re Σ conj(g) dz``) for the object
and the probe and the real derivative ``∂L/∂α`` (per mrad) for the tilt.  The backward pass runs
on the conjugated adjoint ``h = conj(g)``: then ``h_ψ = O · h_φ`` and
``h_φ = F[P · F⁻¹ h_ψ]`` need no conjugation of the large arrays, and the few reduced gradients
are conjugated once at the end.

The whole batch ``(N, B, M, Ky, Kx)`` (states × patterns × modes) is processed at once with
broadcasting; Python loops run only over slices and batches.  With ``object_band_limit`` the
object gradient is projected onto the band-limited subspace (hard circular mask on the object
grid), the exact gradient of the loss restricted to band-limited object updates.  The probe
enters through the band-limited shift, so probe power beyond the band limit (e.g. of high
Hermite modes) does not reach the detector and gets no gradient.

On a multi-core CPU the batches run in threads, one run of consecutive batches per core, each
with single-threaded FFTs and its own reusable work buffers and gradient accumulators; the
accumulators are added in a fixed order, so results are deterministic and independent of the
thread timing.  On the GPU batches are as large as half the free device memory allows.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from caviar_napari.core import kernels, optics
from caviar_napari.core import loss as loss_mod
from caviar_napari.core.backend import Backend, ScatterPlan
from caviar_napari.core.grid import as_pair
from caviar_napari.core.patterns import PatternFeed
from caviar_napari.errors import InputError

__all__ = ["GRADIENT_BLOCKS", "MultisliceModel", "window_corners"]

#: Names of the gradient blocks :meth:`MultisliceModel.loss_and_gradient` can compute.
GRADIENT_BLOCKS = frozenset({"object", "probe", "tilt", "shifts"})

# CPU batches are sized so that one batch's working set (per thread) stays near this many
# bytes; GPU batches use this fraction of the free device memory.
_CPU_BATCH_BYTES = 24 << 20
#: Most bytes of batch index data (phase ramps, scatter plans) a model keeps between evaluations.
_BATCH_CACHE_BYTES = 256 << 20
_GPU_MEMORY_FRACTION = 0.5


def window_corners(positions_px: Any, window: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Integer top-left corners of the probe windows and the sub-pixel remainders.

    Parameters
    ----------
    positions_px
        Probe-centre positions ``(P, 2)`` as ``(y, x)`` in object pixel coordinates.
    window
        ``(Ky, Kx)``.

    Returns
    -------
    corners
        ``(P, 2)`` int64: ``floor(pos + 1/2) − K//2``.
    remainders
        ``(P, 2)`` float64 in ``[−1/2, 1/2)``: ``pos − floor(pos + 1/2)``, the sub-pixel shift
        applied to the probe as a Fourier phase ramp.
    """
    pos = np.asarray(positions_px, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise InputError(f"positions_px must have shape (P, 2) as (y, x), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise InputError("positions_px contains non-finite values")
    rounded = np.floor(pos + 0.5)
    half = np.array([int(window[0]) // 2, int(window[1]) // 2])
    return rounded.astype(np.int64) - half, pos - rounded


@dataclass(frozen=True)
class _Batch:
    """Per-batch index data (device arrays) shared by the forward and backward passes."""

    sel: np.ndarray  # (B,) pattern indices, host
    corners: Any  # (B, 2) window corners (device)
    gather: Any  # (B, Ky, Kx) flat indices into the object plane (H*W), GPU only
    scatter: ScatterPlan | None  # sums (B*Ky*Kx, N) window pixels into the (Hb*Wb) bounding box
    box: tuple[int, int, int, int]  # y0, y1, x0, x1 of the bounding box
    ramp: Any  # (B, 1, Ky, Kx) complex: band limit × sub-pixel phase ramp


@dataclass(frozen=True)
class _Context:
    """Per-call read-only data shared by the batches (and threads) of one evaluation."""

    obj: Any  # (N, S, H, W), C-contiguous
    probe_k: Any  # (M, Ky, Kx) probe modes in Fourier space
    props: Any  # (S-1, Ky, Kx) propagators
    shifts: np.ndarray | None = None  # (P, 2) extra probe shifts (y, x) in pixels, host


@dataclass
class _Accumulator:
    """Loss and (conjugated) gradient sums of one chunk of consecutive batches.

    Each thread owns one; they are added in chunk order at the end, so results do not depend
    on thread timing.  The object part covers only the chunk's bounding box ``box``.
    """

    box: tuple[int, int, int, int]  # y0, y1, x0, x1
    total: float = 0.0
    #: Σ ψ_j h_φ(j) summed into the box: CPU (S, N, y1-y0, x1-x0), window by window;
    #: GPU (S, y1-y0, x1-x0, N), states last for one scatter-add of each batch's windows
    g_obj: Any = None
    q_probe: Any = None  # (M, Ky, Kx) Σ_b R_b F⁻¹ h_ψ(0) (the probe gradient before F, conj)
    t_acc: Any = None  # (S-1, Ky, Kx) tilt correlation T_j(k)
    g_shift: dict[int, np.ndarray] | None = None  # batch offset → (B, 2) ∂L/∂shift (per px)


class _Workspace:
    """Reusable flat work buffers of one thread.

    Fresh multi-megabyte arrays cost page faults on every batch (the allocator returns them to
    the system); reusing buffers across the batches of a thread avoids that.
    """

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self._buffers: dict[str, Any] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """A C-contiguous array of ``shape`` backed by the buffer ``name`` (grown as needed)."""
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != np.dtype(dtype):
            buf = self.xp.empty(size, dtype=dtype)
            self._buffers[name] = buf
        return buf[:size].reshape(shape)


def _batch_bytes(batch: _Batch) -> int:
    """Bytes a batch's index data hold (ramp, gather indices, scatter matrix)."""
    total = int(batch.ramp.nbytes) + int(batch.corners.nbytes)
    if batch.gather is not None:
        total += int(batch.gather.nbytes)
    if batch.scatter is not None:
        m = batch.scatter.matrix
        parts = (m.data, m.indices, m.indptr) if m is not None else (batch.scatter.index,)
        total += sum(int(a.nbytes) for a in parts)
    return total


def _ordered_sum(arrays: list[Any]) -> Any:
    """Sum of ``arrays`` added left to right (deterministic rounding)."""
    out = arrays[0].copy()
    for a in arrays[1:]:
        out += a
    return out


class MultisliceModel:
    """Batched mixed-object, mixed-probe multislice model with its adjoint.

    Parameters
    ----------
    backend
        Array backend (numpy or cupy; precision from it).
    wavelength_A
        Electron wavelength, Å.
    pixel_size_A
        Real-space pixel ``(dy, dx)`` in Å (or a scalar).
    slice_thickness_A
        ``(S,)`` slice thicknesses in Å; the wave is propagated by ``dz_j`` after slices
        ``j = 0 … S−2`` (no propagation after the last slice, whose thickness is unused here).
    positions_px
        ``(P, 2)`` probe-centre positions ``(y, x)`` in object pixel coordinates.
    object_shape
        ``(H, W)`` of the object in pixels; every probe window must lie inside it.
    amplitudes
        ``(P, Ky, Kx)`` measured amplitudes ``sqrt(I_meas)`` in FFT (unshifted) order, or None
        (forward model only, or ``patterns`` given).
    patterns
        The measured data as a :class:`~caviar_napari.core.patterns.PatternFeed` (unpadded,
        on the device, the host or in the file; padded per batch) instead of ``amplitudes``.
    detector_mask
        ``(Ky, Kx)`` bool, FFT order: pixels counted in the loss (None: all).
    loss
        ``"gaussian"`` (amplitudes, eq. S8) or ``"poisson"`` (see :mod:`caviar_napari.core.loss`).
    batch_size
        Patterns per batch; None picks one from the device memory (GPU) or cache size (CPU).
    window
        ``(Ky, Kx)``; needed only when ``amplitudes`` is None.
    band_limit
        Fraction of Nyquist of the circular band limit on waves and propagators.
    object_band_limit
        Project the object gradient onto the band limit (on the object grid).
    loss_eps
        ``ε`` of the loss; None: ``1e-6 ×`` the mean measured intensity per pixel.
    batch_cache_bytes
        Most bytes of batch index data kept between evaluations (None: 256 MiB); the engine
        gives what its memory plan leaves free.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        wavelength_A: float,
        pixel_size_A: float | Sequence[float],
        slice_thickness_A: Sequence[float] | np.ndarray,
        positions_px: Any,
        object_shape: Sequence[int],
        amplitudes: Any | None = None,
        patterns: PatternFeed | None = None,
        detector_mask: Any | None = None,
        loss: str = "gaussian",
        batch_size: int | None = None,
        window: Sequence[int] | None = None,
        band_limit: float = optics.BAND_LIMIT,
        object_band_limit: bool = True,
        loss_eps: float | None = None,
        batch_cache_bytes: int | None = None,
    ) -> None:
        self.backend = backend
        xp = backend.xp
        self.xp = xp
        if not (math.isfinite(wavelength_A) and wavelength_A > 0):
            raise InputError(f"wavelength_A must be positive, got {wavelength_A!r}")
        self.wavelength_A = float(wavelength_A)
        try:
            self.pixel_size_A = as_pair(pixel_size_A, "pixel_size_A")
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        if min(self.pixel_size_A) <= 0:
            raise InputError(f"pixel_size_A must be positive, got {pixel_size_A!r}")
        dz = np.atleast_1d(np.asarray(slice_thickness_A, dtype=np.float64))
        if dz.ndim != 1 or dz.size < 1 or not np.all(np.isfinite(dz)) or np.any(dz <= 0):
            raise InputError(
                f"slice_thickness_A must be a 1-D sequence of positive Å, got {slice_thickness_A!r}"
            )
        self.slice_thickness_A = dz
        self.loss_kind = loss_mod.check_kind(loss)

        if amplitudes is not None and patterns is not None:
            raise InputError("give the measured data as amplitudes or as patterns, not both")
        if amplitudes is not None:
            amp_shape = tuple(amplitudes.shape)
            if len(amp_shape) != 3:
                raise InputError(f"amplitudes must be (P, Ky, Kx), got shape {amp_shape}")
            if window is not None and tuple(int(v) for v in window) != amp_shape[1:]:
                raise InputError(f"window {tuple(window)} differs from amplitudes {amp_shape[1:]}")
            patterns = PatternFeed.from_window_amplitudes(backend, amplitudes)
        if patterns is not None:
            if window is not None and tuple(int(v) for v in window) != patterns.window:
                raise InputError(
                    f"window {tuple(window)} differs from the data's {patterns.window}"
                )
            window = patterns.window
        if window is None:
            raise InputError("window (Ky, Kx) is required when amplitudes is None")
        self.window = (int(window[0]), int(window[1]))

        ny, nx = (int(v) for v in object_shape)
        self.object_shape = (ny, nx)
        corners, frac = window_corners(positions_px, self.window)
        ky, kx = self.window
        bad = (
            (corners[:, 0] < 0)
            | (corners[:, 1] < 0)
            | (corners[:, 0] + ky > ny)
            | (corners[:, 1] + kx > nx)
        )
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"positions_px[{i}] = {tuple(np.asarray(positions_px)[i])}: its {ky}×{kx} probe "
                f"window (corner {tuple(corners[i])}) leaves the {ny}×{nx} object "
                f"({int(bad.sum())} windows do); enlarge the object margin"
            )
        self._corners = corners
        self._frac = frac
        self.n_patterns = corners.shape[0]

        if patterns is not None and patterns.n_patterns != self.n_patterns:
            raise InputError(
                f"the data have {patterns.n_patterns} patterns but positions_px has "
                f"{self.n_patterns}"
            )
        self._feed = patterns
        if detector_mask is not None:
            mask = np.asarray(backend.to_host(xp.asarray(detector_mask)))
            if mask.shape != self.window:
                raise InputError(f"detector_mask shape {mask.shape} differs from {self.window}")
            self._mask = xp.asarray(mask.astype(backend.real_dtype))
        else:
            self._mask = None
        if loss_eps is None:
            loss_eps = 1e-12
            if patterns is not None:  # 1e-6 × the mean measured intensity per window pixel
                per_pixel = patterns.total_intensity() / (self.n_patterns * math.prod(self.window))
                loss_eps = max(1e-6 * per_pixel, 1e-30)
        if not loss_eps > 0:
            raise InputError(f"loss_eps must be positive, got {loss_eps!r}")
        self.loss_eps = float(loss_eps)

        self.band_limit = float(band_limit)
        self.object_band_limit = bool(object_band_limit)
        cdt = backend.complex_dtype
        self._wave_mask = xp.asarray(
            optics.band_limit_mask(self.window, self.pixel_size_A, self.band_limit), dtype=cdt
        )
        self._obj_mask = (
            xp.asarray(
                optics.band_limit_mask(self.object_shape, self.pixel_size_A, self.band_limit),
                dtype=backend.real_dtype,
            )
            if self.object_band_limit
            else None
        )
        # frequencies in cycles per pixel (phase ramps) and 1/Å (tilt derivative)
        self._fy = xp.asarray(np.fft.fftfreq(ky))
        self._fx = xp.asarray(np.fft.fftfreq(kx))
        self._ky_A = np.fft.fftfreq(ky, self.pixel_size_A[0])
        self._kx_A = np.fft.fftfreq(kx, self.pixel_size_A[1])
        if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._batch_size = None if batch_size is None else int(batch_size)
        # index data of the batches, reused by later evaluations (the scan does not change)
        self._batches: dict[tuple, _Batch] = {}
        self._batches_bytes = 0
        self._batches_lock = threading.Lock()
        self._cache_limit = _BATCH_CACHE_BYTES if batch_cache_bytes is None else batch_cache_bytes
        # CPU: the object gradient is summed window by window (slice adds, no scatter plan);
        # GPU: one scatter-add of all windows of a batch (thousands of windows per batch)
        self._window_sums = backend.name == "cpu"
        # gather + multiply in one pass (no object patches stored): cupy, or numba on the CPU
        self._fused = kernels.is_cupy(xp) or (backend.name == "cpu" and backend.jit)

    # ------------------------------------------------------------------ properties
    @property
    def n_slices(self) -> int:
        """Number of slices S."""
        return int(self.slice_thickness_A.size)

    @property
    def corners(self) -> np.ndarray:
        """``(P, 2)`` int64 top-left object pixels of the probe windows."""
        return self._corners.copy()

    @property
    def remainders(self) -> np.ndarray:
        """``(P, 2)`` sub-pixel shifts ``(δy, δx)`` in pixels, in ``[−1/2, 1/2)``."""
        return self._frac.copy()

    window_corners = staticmethod(window_corners)

    @staticmethod
    def bytes_per_pattern(
        window: Sequence[int],
        n_states: int,
        n_modes: int,
        n_slices: int,
        itemsize: int = 8,
        tilt: bool = True,
    ) -> int:
        """Working memory per pattern of one batch in bytes (complex ``itemsize``).

        Counts the stored waves of every slice, the exit wave, one scratch wave and the squared
        moduli (and the propagated Fourier waves when the tilt gradient is wanted), the object
        patches, the states-last gradient buffer and the index arrays.  On a CPU with T cores,
        T batches are in flight at once (one per thread): see :meth:`working_bytes`.
        """
        k2 = int(window[0]) * int(window[1])
        wave = n_states * n_modes * k2 * itemsize
        stored = n_slices + 2.5 + (n_slices - 1 if tilt else 0)
        patches = n_states * k2 * (itemsize * (n_slices + 2) + 16)
        return int(stored * wave + patches)

    def working_bytes(self, n_states: int, n_modes: int, want: frozenset[str]) -> int:
        """Peak working memory of one evaluation beyond its inputs, in bytes.

        ``batches in flight × batch size × bytes_per_pattern`` plus the gradient accumulators
        (per thread, each about the object's size at most, and one for the result).
        """
        size = self.batch_size_for(n_states, n_modes, want)
        itemsize = np.dtype(self.backend.complex_dtype).itemsize
        per = self.bytes_per_pattern(
            self.window, n_states, n_modes, self.n_slices, itemsize, tilt="tilt" in want
        )
        batches = -(-self.n_patterns // size)
        threads = min(self.backend.workers, batches) if self.backend.name == "cpu" else 1
        obj = n_states * self.n_slices * math.prod(self.object_shape) * itemsize
        accumulators = (threads + 2) * obj if "object" in want else 0
        return threads * size * per + accumulators

    def batch_size_for(self, n_states: int, n_modes: int, want: frozenset[str]) -> int:
        """Patterns per batch: the given ``batch_size`` or one sized from the device."""
        if self._batch_size is not None:
            return min(self._batch_size, self.n_patterns)
        per = self.bytes_per_pattern(
            self.window,
            n_states,
            n_modes,
            self.n_slices,
            np.dtype(self.backend.complex_dtype).itemsize,
            tilt="tilt" in want,
        )
        if self.backend.name == "gpu":
            budget = _GPU_MEMORY_FRACTION * self.backend.free_memory_bytes()
            return int(max(1, min(self.n_patterns, budget // max(per, 1))))
        # CPU: cache-sized batches, and at least one batch per core for the threads
        per_core = -(-self.n_patterns // self.backend.workers)
        return int(max(1, min(per_core, _CPU_BATCH_BYTES // max(per, 1))))

    # ------------------------------------------------------------------ inputs
    def _check_inputs(self, obj: Any, probe: Any, tilt_mrad: Any) -> tuple[Any, Any, tuple]:
        xp, cdt = self.xp, self.backend.complex_dtype
        obj = xp.ascontiguousarray(xp.asarray(obj, dtype=cdt))
        probe = xp.asarray(probe, dtype=cdt)
        if probe.ndim == 2:
            probe = probe[None]
        if obj.ndim != 4 or obj.shape[1] != self.n_slices or obj.shape[2:] != self.object_shape:
            raise InputError(
                f"object must be (N, {self.n_slices}, {self.object_shape[0]}, "
                f"{self.object_shape[1]}) as (state, slice, y, x), got {tuple(obj.shape)}"
            )
        if probe.ndim != 3 or tuple(probe.shape[1:]) != self.window:
            raise InputError(
                f"probe must be (M, {self.window[0]}, {self.window[1]}), got {tuple(probe.shape)}"
            )
        tilt = np.asarray(self.backend.to_host(xp.asarray(tilt_mrad)), dtype=np.float64).ravel()
        if tilt.shape != (2,) or not np.all(np.isfinite(tilt)):
            raise InputError(f"tilt_mrad must be a finite (α_y, α_x) pair, got {tilt_mrad!r}")
        return obj, probe, (float(tilt[0]), float(tilt[1]))

    def _indices(self, indices: Any | None) -> np.ndarray:
        if indices is None:
            return np.arange(self.n_patterns)
        idx = np.asarray(self.backend.to_host(self.xp.asarray(indices)), dtype=np.int64).ravel()
        if idx.size == 0:
            raise InputError("indices selects no pattern")
        if idx.min() < 0 or idx.max() >= self.n_patterns:
            raise InputError(f"indices must lie in [0, {self.n_patterns}), got {idx.min()}…")
        return idx

    def propagators(self, tilt_mrad: Sequence[float]) -> Any:
        """``(S−1, Ky, Kx)`` band-limited tilted propagators of the slice gaps (FFT order)."""
        dz = self.slice_thickness_A[:-1]
        if dz.size == 0:
            return self.xp.zeros((0, *self.window), dtype=self.backend.complex_dtype)
        prop = optics.fresnel_propagator(
            self.window,
            self.pixel_size_A,
            self.wavelength_A,
            dz,
            tilt_mrad,
            xp=self.xp,
            band_limit=self.band_limit,
        )
        return prop.astype(self.backend.complex_dtype)

    # ------------------------------------------------------------------ batches
    def _make_batch(self, sel: np.ndarray, scatter: bool) -> _Batch:
        """Index data of the patterns ``sel``, computed once and kept while the kept batches
        take less than :data:`_BATCH_CACHE_BYTES` (later evaluations reuse them)."""
        key = (bool(scatter), sel.size, int(sel[0]), hash(sel.tobytes()))
        batch = self._batches.get(key)
        if batch is not None and np.array_equal(batch.sel, sel):
            return batch
        batch = self._build_batch(sel, scatter)
        size = _batch_bytes(batch)
        with self._batches_lock:
            if self._batches_bytes + size <= self._cache_limit:
                self._batches[key] = batch
                self._batches_bytes += size
        return batch

    def _build_batch(self, sel: np.ndarray, scatter: bool) -> _Batch:
        """Index data of the patterns ``sel`` (computed on the device)."""
        xp = self.xp
        ky, kx = self.window
        _ny, nx = self.object_shape
        c = self._corners[sel]
        y0, x0 = (int(v) for v in c.min(axis=0))
        y1, x1 = int(c[:, 0].max()) + ky, int(c[:, 1].max()) + kx
        wb = x1 - x0
        cd = xp.asarray(c)
        rows = cd[:, 0, None, None] + xp.arange(ky).reshape(ky, 1)  # (B, Ky, 1)
        cols = cd[:, 1, None, None] + xp.arange(kx).reshape(1, kx)  # (B, 1, Kx)
        frac = xp.asarray(self._frac[sel])
        ry = xp.exp((-2j * math.pi) * frac[:, 0, None] * self._fy[None, :])  # (B, Ky)
        rx = xp.exp((-2j * math.pi) * frac[:, 1, None] * self._fx[None, :])  # (B, Kx)
        ramp = (ry[:, :, None] * rx[:, None, :]).astype(self.backend.complex_dtype)
        ramp *= self._wave_mask
        plan = None
        if scatter:
            local = (rows - y0) * wb + (cols - x0)
            plan = self.backend.scatter_plan(local, (y1 - y0) * wb)
        return _Batch(
            sel=sel,
            corners=cd,
            gather=rows * nx + cols if self.backend.name == "gpu" else None,
            scatter=plan,
            box=(y0, y1, x0, x1),
            ramp=ramp[:, None],
        )

    def _chunks(self, idx: np.ndarray, size: int) -> list[list[tuple[int, np.ndarray]]]:
        """Batches ``(offset, patterns)`` of ``size`` patterns, grouped into one run of
        consecutive batches per thread (one run on the GPU)."""
        parts = [(i, idx[i : i + size]) for i in range(0, idx.size, size)]
        threads = min(self.backend.workers, len(parts)) if self.backend.name == "cpu" else 1
        bounds = np.linspace(0, len(parts), max(threads, 1) + 1).round().astype(int)
        return [parts[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def _parallel(self, fn: Callable[[Any, _Workspace, int], Any], chunks: list) -> list:
        """``[fn(chunk, workspace, fft_workers) for chunk in chunks]``, one thread per chunk.

        numpy's element-wise kernels run on one core; running whole chunks of batches in
        parallel threads (each with single-threaded FFTs) uses every core for all of the work,
        not only for the FFTs (the GIL is released inside numpy, scipy.fft and scipy.sparse
        kernels).  Each thread reuses its own work buffers.  Results come back in chunk order.
        """
        if len(chunks) <= 1 or self.backend.name != "cpu":
            return [fn(c, _Workspace(self.xp), self.backend.workers) for c in chunks]
        per = max(1, self.backend.workers // len(chunks))
        with ThreadPoolExecutor(max_workers=len(chunks), thread_name_prefix="multislice") as pool:
            futures = [pool.submit(fn, c, _Workspace(self.xp), per) for c in chunks]
            return [f.result() for f in futures]  # re-raises a worker's exception here

    def _forward_batch(
        self,
        ctx: _Context,
        batch: _Batch,
        ws: _Workspace,
        store: bool,
        keep_fourier: bool,
        workers: int,
    ) -> tuple[Any, list, list, list]:
        """Forward pass of one batch; returns ``(Ψ, ψ_j list, O patches, P_jΦ_j list)``.

        Waves live in the workspace's buffers (FFTs in place), so no large array is allocated
        per batch.  ``Ψ`` is ``(N, B, M, Ky, Kx)``; ``ψ_0`` is ``(1, B, M, Ky, Kx)``.
        """
        be, xp = self.backend, self.xp
        cdt = be.complex_dtype
        n, s = ctx.obj.shape[:2]
        m = ctx.probe_k.shape[0]
        nb = batch.sel.size
        shape = (n, nb, m, *self.window)
        psi = ws.get("w0", (1, nb, m, *self.window), cdt)
        xp.multiply(ctx.probe_k[None], self._ramp(ctx, batch), out=psi[0])  # F⁻¹[B e^{−2πik·δ} Fψ]
        psi = be.ifft2(psi, overwrite=True, workers=workers)
        waves, patches, fourier = [], [], []
        fused, jit = self._fused, be.jit
        for j in range(s):
            name = "exit" if j == s - 1 else (f"w{j + 1}" if store else f"t{j % 2}")
            if fused:  # gather and multiply in one kernel; the adjoint gathers again
                patch = None
                out = ws.get(name, shape, cdt)
                phi = kernels.transmit(psi, ctx.obj, j, batch.corners, self.window, out, xp, jit)
            else:
                patch = self._gather(ctx.obj[:, j], batch)[:, :, None]  # (N, B, 1, Ky, Kx)
                phi = xp.multiply(psi, patch, out=ws.get(name, shape, cdt))  # transmit
            if store:
                waves.append(psi)
                patches.append(patch)
            phi = be.fft2(phi, overwrite=True, workers=workers)
            if j == s - 1:
                return phi, waves, patches, fourier
            if keep_fourier:  # propagate (with the band limit); P_jΦ_j kept for the tilt
                kept = ws.get(f"f{j}", shape, cdt)
                kernels.propagate(phi, ctx.props[j], kept, xp, jit)
                fourier.append(kept)
            else:
                phi *= ctx.props[j]  # propagate (with the band limit)
            psi = be.ifft2(phi, overwrite=True, workers=workers)
        raise AssertionError("unreachable")

    def _gather(self, plane: Any, batch: _Batch) -> Any:
        """The batch's probe windows of ``plane`` ``(N, H, W)``: ``(N, B, Ky, Kx)``.

        CPU: fancy indexing of a strided view of all ``Ky × Kx`` windows (copies whole window
        rows, several times faster than ``take`` of flat indices); GPU: ``take``.
        """
        xp = self.xp
        n, h, w = plane.shape
        if batch.gather is not None:
            return xp.take(plane.reshape(n, h * w), batch.gather, axis=1)
        ky, kx = self.window
        sn, sh, sw = plane.strides
        windows = np.lib.stride_tricks.as_strided(
            plane,
            shape=(n, h - ky + 1, w - kx + 1, ky, kx),
            strides=(sn, sh, sw, sh, sw),
            writeable=False,
        )
        return windows[:, batch.corners[:, 0], batch.corners[:, 1]]

    def _context(
        self, obj: Any, probe: Any, tilt: tuple[float, float], shifts_px: Any = None
    ) -> _Context:
        shifts = None
        if shifts_px is not None:
            shifts = np.asarray(self.backend.to_host(shifts_px), dtype=np.float64)
            if shifts.shape != (self.n_patterns, 2) or not np.all(np.isfinite(shifts)):
                raise InputError(
                    f"shifts_px must be finite (P, 2) = ({self.n_patterns}, 2), got {shifts.shape}"
                )
        return _Context(
            obj=obj,
            probe_k=self.backend.fft2(probe),
            props=self.propagators(tilt),
            shifts=shifts,
        )

    def _ramp(self, ctx: _Context, batch: _Batch) -> Any:
        """The batch's probe ramps ``(B, 1, Ky, Kx)``: band limit × sub-pixel shift, times the
        call's extra shifts (position refinement) when it has them."""
        if ctx.shifts is None:
            return batch.ramp
        xp = self.xp
        extra = xp.asarray(ctx.shifts[batch.sel])
        ry = xp.exp((-2j * math.pi) * extra[:, 0, None] * self._fy[None, :])
        rx = xp.exp((-2j * math.pi) * extra[:, 1, None] * self._fx[None, :])
        shift = (ry[:, :, None] * rx[:, None, :]).astype(self.backend.complex_dtype)
        return batch.ramp * shift[:, None]

    # ------------------------------------------------------------------ public API
    def exit_waves(
        self, obj: Any, probe: Any, tilt_mrad: Sequence[float] = (0.0, 0.0), indices: Any = None
    ) -> Any:
        """Far-field exit waves ``Ψ`` ``(N, B, M, Ky, Kx)`` (FFT order) of patterns ``indices``."""
        return self._forward_all(obj, probe, tilt_mrad, indices, waves=True)

    def intensities(
        self,
        obj: Any,
        probe: Any,
        tilt_mrad: Sequence[float] = (0.0, 0.0),
        indices: Any = None,
        shifts_px: Any = None,
    ) -> Any:
        """Model intensities ``(B, Ky, Kx)`` (backend array, FFT order) of the patterns ``indices``.

        Parameters
        ----------
        obj
            ``(N, S, H, W)`` complex transmission functions.
        probe
            ``(M, Ky, Kx)`` complex probe modes, real space, centred.
        tilt_mrad
            ``(α_y, α_x)`` crystal tilt, mrad.
        indices
            Pattern indices (default: all, in order).
        shifts_px
            Optional ``(P, 2)`` shifts ``(y, x)`` of every scan position from its position at
            construction, in pixels (position refinement; a Fourier shift of the probe in its
            window, so a few pixels at most).
        """
        return self._forward_all(obj, probe, tilt_mrad, indices, waves=False, shifts=shifts_px)

    def _forward_all(
        self,
        obj: Any,
        probe: Any,
        tilt_mrad: Any,
        indices: Any,
        waves: bool,
        shifts: Any = None,
    ) -> Any:
        obj, probe, tilt = self._check_inputs(obj, probe, tilt_mrad)
        idx = self._indices(indices)
        ctx = self._context(obj, probe, tilt, shifts)
        n, m = obj.shape[0], probe.shape[0]
        if waves:
            out = self.xp.empty((n, idx.size, m, *self.window), dtype=self.backend.complex_dtype)
        else:
            out = self.xp.empty((idx.size, *self.window), dtype=self.backend.real_dtype)
        size = self.batch_size_for(n, m, frozenset())

        def run(chunk: list[tuple[int, np.ndarray]], ws: _Workspace, workers: int) -> None:
            for start, sel in chunk:
                b = self._make_batch(sel, scatter=False)
                psi_k = self._forward_batch(ctx, b, ws, False, False, workers)[0]
                if waves:
                    out[:, start : start + sel.size] = psi_k
                else:
                    out[start : start + sel.size] = kernels.intensity(
                        psi_k, self.xp, self.backend.jit
                    )

        self._parallel(run, self._chunks(idx, size))
        return out

    def loss(
        self,
        obj: Any,
        probe: Any,
        tilt_mrad: Sequence[float] = (0.0, 0.0),
        indices: Any = None,
        shifts_px: Any = None,
    ) -> float:
        """The loss alone (no gradient, no stored waves)."""
        return self.loss_and_gradient(obj, probe, tilt_mrad, frozenset(), indices, shifts_px)[0]

    def loss_and_gradient(
        self,
        obj: Any,
        probe: Any,
        tilt_mrad: Sequence[float] = (0.0, 0.0),
        want: frozenset[str] | set[str] = GRADIENT_BLOCKS,
        indices: Any = None,
        shifts_px: Any = None,
    ) -> tuple[float, dict[str, Any]]:
        """Loss and its gradients with respect to the requested blocks.

        Parameters
        ----------
        obj
            ``(N, S, H, W)`` complex transmission functions.
        probe
            ``(M, Ky, Kx)`` complex probe modes, real space, centred.
        tilt_mrad
            ``(α_y, α_x)`` crystal tilt, mrad.
        want
            Subset of ``{"object", "probe", "tilt", "shifts"}``; only those gradients are
            computed.
        indices
            Pattern indices (default: all): the loss is summed over these patterns.
        shifts_px
            Optional ``(P, 2)`` shifts of the scan positions in pixels (see :meth:`intensities`).

        Returns
        -------
        loss
            Float, summed over patterns and masked detector pixels.
        gradients
            ``"object"``: ``∂L/∂O*`` ``(N, S, H, W)`` complex; ``"probe"``: ``∂L/∂ψ*``
            ``(M, Ky, Kx)`` complex; ``"tilt"``: ``∂L/∂α`` ``(2,)`` real, per mrad;
            ``"shifts"``: ``∂L/∂s`` ``(P, 2)`` real host array, per pixel (0 for patterns not in
            ``indices``). Backend arrays in the backend's precision.
        """
        if self._feed is None:
            raise InputError("loss_and_gradient needs measured data (amplitudes or patterns)")
        want = frozenset(want)
        unknown = want - GRADIENT_BLOCKS
        if unknown:
            raise InputError(
                f"unknown gradient blocks {sorted(unknown)}; known: {sorted(GRADIENT_BLOCKS)}"
            )
        be, xp = self.backend, self.xp
        obj, probe, tilt = self._check_inputs(obj, probe, tilt_mrad)
        idx = self._indices(indices)
        n, s, h, w = obj.shape
        m = probe.shape[0]
        cdt = be.complex_dtype
        ctx = self._context(obj, probe, tilt, shifts_px)
        want_obj, want_probe = "object" in want, "probe" in want
        want_tilt = "tilt" in want and s > 1
        want_shift = "shifts" in want
        size = self.batch_size_for(n, m, want)

        def run_chunk(
            chunk: list[tuple[int, np.ndarray]], ws: _Workspace, workers: int
        ) -> _Accumulator:
            corners = self._corners[np.concatenate([sel for _, sel in chunk])]
            y0, x0 = (int(v) for v in corners.min(axis=0))
            y1 = int(corners[:, 0].max()) + self.window[0]
            x1 = int(corners[:, 1].max()) + self.window[1]
            acc = _Accumulator(box=(y0, y1, x0, x1))
            if want_obj:  # layout: see _Accumulator.g_obj
                box = (y1 - y0, x1 - x0)
                shape = (s, n, *box) if self._window_sums else (s, *box, n)
                acc.g_obj = xp.zeros(shape, dtype=cdt)
            if want_probe:
                acc.q_probe = xp.zeros((m, *self.window), dtype=cdt)
            if want_tilt:
                acc.t_acc = xp.zeros((s - 1, *self.window), dtype=cdt)
            if want_shift:
                acc.g_shift = {}
            for _, sel in chunk:
                self._loss_grad_batch(ctx, acc, ws, sel, want, workers)
            return acc

        accs = self._parallel(run_chunk, self._chunks(idx, size))
        total = float(sum(a.total for a in accs))
        if want_obj:
            full = (s, n, h, w) if self._window_sums else (s, h, w, n)
            g_obj = xp.zeros(full, dtype=cdt)
            for a in accs:  # fixed order: deterministic sums
                y0, y1, x0, x1 = a.box
                if self._window_sums:
                    g_obj[..., y0:y1, x0:x1] += a.g_obj
                else:
                    g_obj[:, y0:y1, x0:x1] += a.g_obj
        q_probe = _ordered_sum([a.q_probe for a in accs]) if want_probe else None
        t_acc = _ordered_sum([a.t_acc for a in accs]) if want_tilt else None
        grads: dict[str, Any] = {}
        if want_obj:
            states_first = (1, 0, 2, 3) if self._window_sums else (3, 0, 1, 2)
            g = xp.conjugate(g_obj.transpose(states_first))
            if self._obj_mask is not None:
                g = be.fft2(g, overwrite=True)
                g *= self._obj_mask
                g = be.ifft2(g, overwrite=True)
            grads["object"] = xp.ascontiguousarray(g, dtype=cdt)
        if want_probe:
            grads["probe"] = xp.conjugate(be.fft2(q_probe)).astype(cdt, copy=False)
        if "tilt" in want:
            grads["tilt"] = self._tilt_gradient(t_acc, tilt)
        if want_shift:
            g_shift = np.zeros((self.n_patterns, 2))
            for a in accs:
                for sel, values in a.g_shift.values():
                    g_shift[sel] = values
            grads["shifts"] = g_shift
        return total, grads

    def _loss_grad_batch(
        self,
        ctx: _Context,
        acc: _Accumulator,
        ws: _Workspace,
        sel: np.ndarray,
        want: frozenset,
        workers: int,
    ) -> None:
        """Loss of one batch and its gradient contributions, added to ``acc``."""
        be, xp = self.backend, self.xp
        n, s = ctx.obj.shape[:2]
        want_obj, want_probe = "object" in want, "probe" in want
        want_tilt = acc.t_acc is not None
        want_shift = acc.g_shift is not None
        want_h0 = want_probe or want_shift  # the gradient at the shifted probe ψ_0
        jit = be.jit
        b = self._make_batch(sel, scatter=want_obj and not self._window_sums)
        psi_k, waves, patches, fourier = self._forward_batch(
            ctx, b, ws, store=bool(want), keep_fourier=want_tilt, workers=workers
        )
        intensity = kernels.intensity(psi_k, xp, jit)
        measured = self._feed.batch(b.sel, out=ws.get("amp", intensity.shape, be.real_dtype))
        loss_b, dl_di = kernels.loss_and_dI(
            self.loss_kind, intensity, measured, self._mask, self.loss_eps, xp, jit
        )
        acc.total += loss_b
        if not (want_obj or want_h0 or want_tilt):
            return
        # conjugated adjoint: h_Ψ = conj(∂L/∂Ψ*) = (∂L/∂I / N) conj(Ψ)
        hk = kernels.conj_scale(psi_k, (dl_di * (1.0 / n))[None, :, None], xp, jit)
        hw = be.fft2(hk, overwrite=True, workers=workers)  # h_φ of the last slice
        for j in range(s - 1, -1, -1):
            if j < s - 1:
                hkk = be.ifft2(hw, overwrite=True, workers=workers)  # = conj(F g_ψ(j+1))
                if want_tilt:  # the tilt correlation, and h ← P · h
                    kernels.propagate_adjoint(
                        hkk, ctx.props[j], fourier[j], acc.t_acc[j], xp, be.jit
                    )
                else:
                    hkk *= ctx.props[j]
                if j == 0 and not (want_obj or want_h0):
                    break  # tilt only: h_φ(0) is not needed
                hw = be.fft2(hkk, overwrite=True, workers=workers)  # h_φ(j)
            if self._fused and self._window_sums and (j > 0 or want_h0):  # CPU, one pass
                plane = acc.g_obj[j] if want_obj else None
                hp = None if j > 0 else ws.get("h0", hw.shape[1:], hw.dtype)
                kernels.window_adjoint(plane, waves[j], hw, ctx.obj, j, b.corners,
                                       acc.box[::2], hp, self.window, xp, jit)  # fmt: skip
                continue
            if want_obj:
                self._object_contribution(acc, ws, j, b, waves[j], hw)
            if j > 0:  # h_ψ(j) = O · h_φ(j)
                if patches[j] is None:  # fused path: gather the window again
                    hw = kernels.transmit(hw, ctx.obj, j, b.corners, self.window, hw, xp, jit)
                else:
                    hw *= patches[j]
            elif want_h0:  # only Σ_n h_ψ(0) is needed (ψ_0 is the same for every state)
                hp = ws.get("h0", hw.shape[1:], hw.dtype)  # (B, M, Ky, Kx)
                if patches[0] is None:
                    kernels.transmit_sum(hw, ctx.obj, 0, b.corners, self.window, hp, xp, jit)
                else:
                    kernels.state_sum(hw, patches[0], hp, xp)
        if want_h0:
            hp = be.ifft2(hp, overwrite=True, workers=workers)  # conj(∂L/∂(Fψ_0)*)
            ramp = self._ramp(ctx, b)
            if want_shift:
                # ∂(Fψ_0)/∂s_a = −2πi f_a Fψ_0  →  ∂L/∂s_a = 2 Re Σ h · (−2πi f_a) Fψ_0
                t = hp * (ctx.probe_k[None] * ramp)
                ty = (t.sum(axis=(1, 3)) * self._fy[None, :]).sum(axis=1)
                tx = (t.sum(axis=(1, 2)) * self._fx[None, :]).sum(axis=1)
                grad = 4.0 * math.pi * self.xp.stack([ty.imag, tx.imag], axis=-1)
                acc.g_shift[int(sel[0])] = (sel, np.asarray(self.backend.to_host(grad), float))
            if want_probe:
                hp *= ramp
                acc.q_probe += hp.sum(axis=0)

    def _object_contribution(
        self, acc: _Accumulator, ws: _Workspace, j: int, b: _Batch, wave: Any, h_phi: Any
    ) -> None:
        """``g[j][window_p] += Σ_m ψ_j · h_φ`` over the batch's windows.

        ``wave`` is ``(N|1, B, M, Ky, Kx)``, ``h_φ`` ``(N, B, M, Ky, Kx)``.  CPU: each window is
        added to its part of the chunk's accumulator in batch order (:func:`kernels.add_windows`;
        deterministic, no index arrays).  GPU: the products are written states-last
        ``(B, Ky, Kx, N)``, scatter-added into the batch's bounding box and added to the
        accumulator.
        """
        xp = self.xp
        n, nb, m = h_phi.shape[:3]
        ky, kx = self.window
        ay, _, ax, _ = acc.box
        if self._window_sums:
            corners = self._corners[b.sel] - np.array([ay, ax])
            work = ws.get("contrib", (n, nb, ky, kx), h_phi.dtype)
            kernels.add_windows(acc.g_obj[j], wave, h_phi, corners, xp, self.backend.jit, work)
            return
        work = ws.get("contrib", (nb, ky, kx, n), h_phi.dtype)
        prod = work.transpose(3, 0, 1, 2)  # (N, B, Ky, Kx) view of the states-last buffer
        if m == 1:
            xp.multiply(wave[:, :, 0], h_phi[:, :, 0], out=prod)
        else:
            full = xp.multiply(wave, h_phi, out=ws.get("tmp", h_phi.shape, h_phi.dtype))
            xp.sum(full, axis=2, out=prod)
        y0, y1, x0, x1 = b.box
        box = b.scatter(work.reshape(-1, n)).reshape(y1 - y0, x1 - x0, n)
        acc.g_obj[j, y0 - ay : y1 - ay, x0 - ax : x1 - ax] += box

    def _tilt_gradient(self, t_acc: Any | None, tilt: tuple[float, float]) -> Any:
        """``∂L/∂α`` (per mrad) from ``T_j(k) = Σ F⁻¹(h_ψ(j+1)) · P_jΦ_j``.

        ``∂P_j/∂α_y = P_j · (−2πi dz_j k_y sec²α_y) · 1e-3`` so
        ``∂L/∂α_y = Σ_j 4π dz_j sec²α_y 1e-3 Σ_k k_y Im T_j(k)`` (likewise x).
        """
        xp = self.xp
        out = np.zeros(2)
        if t_acc is not None and t_acc.shape[0]:
            im = self.backend.to_host(t_acc.imag).astype(np.float64)  # (S-1, Ky, Kx)
            dz = self.slice_thickness_A[:-1]
            sy = (im * self._ky_A[:, None]).sum(axis=(1, 2))
            sx = (im * self._kx_A[None, :]).sum(axis=(1, 2))
            sec2 = 1.0 + np.tan(np.asarray(tilt) * 1e-3) ** 2
            out[0] = 4e-3 * math.pi * sec2[0] * float(np.dot(dz, sy))
            out[1] = 4e-3 * math.pi * sec2[1] * float(np.dot(dz, sx))
        return xp.asarray(out, dtype=self.backend.real_dtype)
