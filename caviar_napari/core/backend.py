"""Array backend: one code path for numpy (+ ``scipy.fft``) on the CPU and cupy on the GPU.

Every numerical routine of the engine receives a :class:`Backend` and uses ``backend.xp`` as
its array module, ``backend.fft2`` / ``backend.ifft2`` for transforms (over the last two axes,
``norm="ortho"``, so that ``Σ|Ψ|² = Σ|ψ|²``) and ``backend.to_host`` to hand results back as
numpy arrays.  cupy is imported only when a GPU backend is asked for, never at module level.

Precision: ``"single"`` (default) computes in complex64 / float32, ``"double"`` in
complex128 / float64 (tests, gradient checks).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Literal

import numpy as np

from caviar_napari.core.kernels import has_jit
from caviar_napari.data.config import DEVICES
from caviar_napari.errors import DeviceError, InputError

__all__ = ["Backend", "ScatterPlan", "detect_devices", "get_backend"]

log = logging.getLogger(__name__)

#: Static types of :data:`caviar_napari.data.config.DEVICES` and ``PRECISIONS``.
DeviceName = Literal["auto", "cpu", "gpu"]
PrecisionName = Literal["single", "double"]

_GiB = float(1 << 30)


@dataclass(frozen=True)
class Backend:
    """An array module with its FFTs, dtypes and device description.

    Attributes
    ----------
    name
        ``"cpu"`` or ``"gpu"``.
    xp
        The array module: ``numpy`` or ``cupy``.
    complex_dtype, real_dtype
        ``complex64``/``float32`` (single) or ``complex128``/``float64`` (double).
    workers
        Threads used by ``scipy.fft`` on the CPU (ignored on the GPU).
    device_info
        Human-readable description, e.g. ``"CPU: 2 cores"`` or ``"GPU: NVIDIA H100, 79.6 GiB"``.
    jit
        CPU: run the window passes of the model as numba kernels
        (:mod:`caviar_napari.core.kernels`); True when numba is installed, False for the plain
        numpy definitions.  Ignored on the GPU.
    """

    name: Literal["cpu", "gpu"]
    xp: ModuleType
    complex_dtype: np.dtype
    real_dtype: np.dtype
    workers: int
    device_info: str
    jit: bool = False

    @property
    def precision(self) -> PrecisionName:
        """``"single"`` (complex64) or ``"double"`` (complex128)."""
        return "double" if np.dtype(self.complex_dtype) == np.complex128 else "single"

    def with_precision(self, precision: PrecisionName) -> Backend:
        """The same device and array module computing in ``precision``."""
        complex_dtype, real_dtype = _dtypes(precision)
        return replace(self, complex_dtype=complex_dtype, real_dtype=real_dtype)

    # ------------------------------------------------------------------ transforms
    def fft2(self, a: Any, overwrite: bool = False, workers: int | None = None) -> Any:
        """Forward 2-D FFT over the last two axes, ``norm="ortho"``.

        ``Ψ(k) = Σ_r ψ(r) exp(−2πi k·r) / sqrt(Ky·Kx)``.  With ``overwrite=True`` the input may be
        destroyed (and reused as the output buffer on the CPU).  ``workers`` overrides the
        number of FFT threads on the CPU (e.g. 1 inside parallel batches).
        """
        if self.name == "cpu":
            import scipy.fft

            return scipy.fft.fft2(
                a,
                axes=(-2, -1),
                norm="ortho",
                workers=workers or self.workers,
                overwrite_x=overwrite,
            )
        import cupyx.scipy.fft

        return cupyx.scipy.fft.fft2(a, axes=(-2, -1), norm="ortho", overwrite_x=overwrite)

    def ifft2(self, a: Any, overwrite: bool = False, workers: int | None = None) -> Any:
        """Inverse 2-D FFT over the last two axes, ``norm="ortho"`` (adjoint of :meth:`fft2`)."""
        if self.name == "cpu":
            import scipy.fft

            return scipy.fft.ifft2(
                a,
                axes=(-2, -1),
                norm="ortho",
                workers=workers or self.workers,
                overwrite_x=overwrite,
            )
        import cupyx.scipy.fft

        return cupyx.scipy.fft.ifft2(a, axes=(-2, -1), norm="ortho", overwrite_x=overwrite)

    # ------------------------------------------------------------------ transfers
    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Return ``a`` as an array of this backend (no copy when it already is one)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a: Any) -> np.ndarray:
        """Return a numpy copy (GPU) or the array itself (CPU) of ``a``."""
        if self.name == "gpu" and not isinstance(a, np.ndarray):
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def synchronize(self) -> None:
        """Wait until queued device work is done (no-op on the CPU); for timing."""
        if self.name == "gpu":
            self.xp.cuda.Stream.null.synchronize()

    # ------------------------------------------------------------------ helpers
    def scatter_plan(self, index: Any, size: int) -> ScatterPlan:
        """Plan repeated sums of values into ``size`` bins at ``index`` (:class:`ScatterPlan`)."""
        return ScatterPlan.build(self, index, size)

    def free_memory_bytes(self) -> int:
        """Memory available for new arrays on this device, in bytes.

        CPU: ``MemAvailable`` of ``/proc/meminfo`` (or physical pages as a fallback).
        GPU: free device memory plus the free blocks held by cupy's memory pool.
        """
        if self.name == "gpu":
            free, _total = self.xp.cuda.runtime.memGetInfo()
            pool = self.xp.get_default_memory_pool()
            return int(free + pool.free_bytes())
        return _host_available_bytes()


@dataclass(frozen=True)
class ScatterPlan:
    """Vectorised scatter-add ``out[index[i], ...] += values[i, ...]`` (repeats summed).

    The object gradient of ptychography sums overlapping probe windows into the object; this
    does it without Python loops and much faster than ``numpy.add.at``. On the CPU the plan is
    a sparse ``(size, n)`` 0/1 matrix (``scipy.sparse`` CSR, one entry per column) applied to
    the values as a sparse × dense product, vectorised over trailing axes and complex-native;
    on the GPU ``cupy.add.at`` (atomic adds) on the real view.

    Attributes
    ----------
    backend
        The backend the plan runs on.
    index
        ``(n,)`` integer bin of each value, in ``[0, size)``.
    size
        Number of bins.
    matrix
        CPU: the CSR matrix; GPU: None.
    """

    backend: Backend
    index: Any
    size: int
    matrix: Any

    @classmethod
    def build(cls, backend: Backend, index: Any, size: int) -> ScatterPlan:
        """Build the plan for flat ``index`` (any shape, raveled) into ``size`` bins."""
        index = backend.xp.asarray(index).ravel()
        if backend.name != "cpu":
            return cls(backend, index, int(size), None)
        import scipy.sparse

        n = index.size
        ones = np.ones(n, dtype=np.float32)
        csc = scipy.sparse.csc_matrix(
            (ones, index.astype(np.int64, copy=False), np.arange(n + 1)), shape=(int(size), n)
        )
        return cls(backend, index, int(size), csc.tocsr())

    def __call__(self, values: Any) -> Any:
        """Sum the rows of ``values`` ``(n, ...)`` into bins: returns ``(size, ...)``."""
        xp = self.backend.xp
        n = self.index.size
        trail = values.shape[1:]
        flat = values.reshape(n, -1)
        if self.matrix is not None:
            out = self.matrix @ flat  # CSR × C-ordered dense: one pass, no copies
            return np.asarray(out, dtype=values.dtype).reshape(self.size, *trail)
        real_dtype = values.real.dtype
        cols = flat.shape[1]
        out = xp.zeros((self.size, cols), dtype=values.dtype)
        vals = xp.ascontiguousarray(flat).view(real_dtype)  # (n, 2 cols)
        add_at = getattr(xp.add, "at", None)
        if add_at is not None:
            add_at(out.view(real_dtype), self.index, vals)  # atomic adds on the device
        else:  # older cupy: the same operation under its former name
            import cupyx

            cupyx.scatter_add(out.view(real_dtype), self.index, vals)
        return out.reshape(self.size, *trail)


def _host_available_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _dtypes(precision: str) -> tuple[np.dtype, np.dtype]:
    if precision == "single":
        return np.dtype(np.complex64), np.dtype(np.float32)
    if precision == "double":
        return np.dtype(np.complex128), np.dtype(np.float64)
    raise InputError(f"precision must be 'single' or 'double', got {precision!r}")


def _gpu_probe() -> tuple[ModuleType, str]:
    """Import cupy and check that a device works; return ``(cupy, description)``.

    Raises
    ------
    DeviceError
        With the reason (cupy missing, no device, driver failure).
    """
    try:
        import cupy
    except ImportError as exc:
        raise DeviceError(
            "device 'gpu' needs cupy, which is not installed "
            "(install the 'gpu' extra: pip install 'caviar-napari[gpu]')"
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            raise DeviceError("device 'gpu': cupy found no CUDA device")
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        total = dev.mem_info[1]
        # a tiny computation proves the driver and the FFT library work
        probe = cupy.fft.fft(cupy.ones(8, dtype=cupy.complex64))
        cupy.cuda.Stream.null.synchronize()
        del probe
    except DeviceError:
        raise
    except Exception as exc:  # cupy raises several unrelated types for a broken driver
        raise DeviceError(
            f"device 'gpu': CUDA is not usable ({type(exc).__name__}: {exc})"
        ) from exc
    return cupy, f"GPU: {name}, {total / _GiB:.1f} GiB"


def get_backend(device: DeviceName = "auto", precision: PrecisionName = "single") -> Backend:
    """Return the backend for ``device`` and ``precision``.

    Parameters
    ----------
    device
        ``"cpu"`` (numpy + scipy.fft), ``"gpu"`` (cupy; a :class:`DeviceError` if unusable) or
        ``"auto"`` (the GPU when usable, else the CPU with a logged notice).
    precision
        ``"single"`` (complex64, default) or ``"double"`` (complex128).
    """
    complex_dtype, real_dtype = _dtypes(precision)
    if device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    cores = _cpu_count()
    if device in ("gpu", "auto"):
        try:
            cupy, info = _gpu_probe()
        except DeviceError as exc:
            if device == "gpu":
                raise
            log.info("no usable GPU (%s); computing on the CPU with %d cores", exc, cores)
        else:
            return Backend("gpu", cupy, complex_dtype, real_dtype, cores, info)
    return Backend(
        "cpu", np, complex_dtype, real_dtype, cores, f"CPU: {cores} cores", jit=has_jit()
    )


def detect_devices() -> str:
    """One-line summary of the compute devices, for the widgets.

    Returns e.g. ``"GPU: NVIDIA H100 80GB HBM3, 79.2 GiB; CPU: 16 cores"`` or
    ``"CPU: 2 cores (no GPU: cupy is not installed …)"``.
    """
    cores = _cpu_count()
    try:
        _cupy, info = _gpu_probe()
    except DeviceError as exc:
        return f"CPU: {cores} cores (no GPU: {exc})"
    return f"{info}; CPU: {cores} cores"
