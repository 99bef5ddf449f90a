"""Fused element-wise passes of the forward model and its adjoint (cupy, numba), numpy otherwise.

On the GPU the FFTs are fast and the element-wise passes, each reading and writing whole
``(N, B, M, Ky, Kx)`` arrays, bound the throughput (docs/benchmarks: 15–29 % of the FFT bound).
The functions here do in one pass what numpy does in several; each has one numpy definition
(the reference, and the CPU path without numba) and a cupy kernel with the same arguments and
results.  The passes that touch the object's windows (:func:`transmit`, :func:`transmit_sum`,
:func:`add_windows`) also have a CPU kernel compiled by numba when numba is installed (optional;
``Backend.jit``): numpy can only run them as strided copies of whole window rows plus separate
passes, which on the CPU cost about as much as the FFTs they sit between.

:func:`transmit`
    ``φ = ψ · O[n, j, window_b]``: gathers the object windows *and* multiplies (no patch array
    written and read back);
:func:`transmit_sum`
    ``Σ_n O[n, j, window_b] · h``: the adjoint of transmitting one wave through every state;
:func:`add_windows`
    ``g[n, window_b] += Σ_m ψ · h``: the object gradient's sum over overlapping windows (CPU);
:func:`propagate`, :func:`propagate_adjoint`
    the propagator's multiply, with the copy kept for the tilt gradient, and its adjoint with
    the tilt correlation (CPU);
:func:`intensity`
    ``I = (1/N) Σ_n Σ_m |Ψ|²`` as one reduction over states and modes;
:func:`loss_and_dI`
    the Gaussian-amplitude or Poisson loss and ``∂L/∂I`` in one pass (numpy: five to seven);
:func:`conj_scale`
    the conjugated adjoint seed ``h = conj(Ψ) · w`` in place (numpy: one pass on the real view).

cupy is imported only when a cupy array arrives; kernels are compiled once per process and
dtype (cupy caches them).  numba is imported at the first call with ``jit=True``; its kernels are
compiled once per dtype and cached on disk, run on the calling thread (no threads of their own,
the GIL released) and add in a fixed order, so results do not depend on thread timing.  The GPU
tests (``-m gpu``) check every cupy kernel, ``tests/core/test_kernels.py`` every numba kernel,
against its numpy definition.
"""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType
from typing import Any

import numpy as np

from caviar_napari.core import loss as loss_mod

__all__ = [
    "add_windows",
    "conj_scale",
    "has_jit",
    "intensity",
    "is_cupy",
    "loss_and_dI",
    "propagate",
    "propagate_adjoint",
    "state_sum",
    "transmit",
    "transmit_sum",
    "window_adjoint",
]


def has_jit() -> bool:
    """Whether numba is installed (the compiled CPU kernels are available)."""
    return importlib.util.find_spec("numba") is not None


def is_cupy(xp: ModuleType) -> bool:
    """Whether ``xp`` is cupy (the fused kernels apply)."""
    return getattr(xp, "__name__", "") == "cupy"


# ---------------------------------------------------------------- kernels (cupy, lazily)
@functools.cache
def _kernels() -> dict[str, Any]:
    import cupy

    return {
        "gaussian": cupy.ElementwiseKernel(
            "T I, T a, T m, T eps",
            "T dl, T term",
            """
            T s = sqrt(I + eps);
            T r = s - a;
            dl = m * (r / s);
            term = m * r * r;
            """,
            "caviar_gaussian_loss",
        ),
        "poisson": cupy.ElementwiseKernel(
            "T I, T a, T m, T eps",
            "T dl, T term",
            """
            T y = a * a;
            T d = I - y;
            dl = m * (1 - y / (I + eps));
            term = m * (d - y * log1p(d / (y + eps)));
            """,
            "caviar_poisson_loss",
        ),
        "conj_scale": cupy.ElementwiseKernel(
            "C psi, R w", "C h", "h = conj(psi) * w", "caviar_conj_scale"
        ),
        # concrete types: a reduction's output type cannot be deduced from a complex input
        **{
            f"intensity_{c}": cupy.ReductionKernel(
                f"{c} psi",
                f"{r} out",
                "psi.real() * psi.real() + psi.imag() * psi.imag()",
                "a + b",
                "out = a",
                "0",
                f"caviar_intensity_{c}",
            )
            for c, r in (("complex64", "float32"), ("complex128", "float64"))
        },
        "transmit": cupy.ElementwiseKernel(
            "raw C psi, raw C obj, raw int64 corners, int64 j, int64 n_psi, int64 S, "
            "int64 B, int64 M, int64 KY, int64 KX, int64 H, int64 W",
            "C phi",
            """
            long long x = i % KX;
            long long y = (i / KX) % KY;
            long long m = (i / (KX * KY)) % M;
            long long b = (i / (KX * KY * M)) % B;
            long long n = i / (KX * KY * M * B);
            long long np_ = n_psi == 1 ? 0 : n;
            long long cy = corners[2 * b];
            long long cx = corners[2 * b + 1];
            long long src = (((np_ * B + b) * M + m) * KY + y) * KX + x;
            long long o = ((n * S + j) * H + cy + y) * W + cx + x;
            phi = psi[src] * obj[o];
            """,
            "caviar_transmit",
        ),
    }


# ---------------------------------------------------------------- kernels (numba, lazily)
# Plain-Python loops compiled by numba; every inner loop runs over one contiguous window row.
def _transmit_rows(psi, obj, j, corners, out):  # pragma: no cover - compiled by numba
    n, nb, m, ky, kx = out.shape
    n_psi = psi.shape[0]
    for i in range(n):
        ip = i if n_psi > 1 else 0
        for b in range(nb):
            cy = corners[b, 0]
            cx = corners[b, 1]
            for mm in range(m):
                for y in range(ky):
                    orow = obj[i, j, cy + y, cx : cx + kx]
                    prow = psi[ip, b, mm, y]
                    dst = out[i, b, mm, y]
                    for x in range(kx):
                        dst[x] = prow[x] * orow[x]


def _transmit_sum_rows(h, obj, j, corners, out):  # pragma: no cover - compiled by numba
    n, nb, m, ky, kx = h.shape
    for b in range(nb):
        cy = corners[b, 0]
        cx = corners[b, 1]
        for mm in range(m):
            for y in range(ky):
                dst = out[b, mm, y]
                orow = obj[0, j, cy + y, cx : cx + kx]
                hrow = h[0, b, mm, y]
                for x in range(kx):
                    dst[x] = hrow[x] * orow[x]
                for i in range(1, n):  # states in order
                    orow = obj[i, j, cy + y, cx : cx + kx]
                    hrow = h[i, b, mm, y]
                    for x in range(kx):
                        dst[x] += hrow[x] * orow[x]


def _add_windows_rows(plane, wave, h, corners):  # pragma: no cover - compiled by numba
    n, nb, m, ky, kx = h.shape
    n_wave = wave.shape[0]
    for b in range(nb):  # windows in batch order
        cy = corners[b, 0]
        cx = corners[b, 1]
        for i in range(n):
            iw = i if n_wave > 1 else 0
            for mm in range(m):
                for y in range(ky):
                    grow = plane[i, cy + y, cx : cx + kx]
                    wrow = wave[iw, b, mm, y]
                    hrow = h[i, b, mm, y]
                    for x in range(kx):
                        grow[x] += wrow[x] * hrow[x]


def _adjoint_rows(plane, add, wave, h, obj, j, corners, oy, ox):  # pragma: no cover - numba
    # add_windows (if add), then transmit in place, in one pass over h (the same sums, in the
    # same order, as the two separate kernels)
    n, nb, m, ky, kx = h.shape
    n_wave = wave.shape[0]
    for b in range(nb):
        cy = corners[b, 0]
        cx = corners[b, 1]
        for i in range(n):
            iw = i if n_wave > 1 else 0
            for mm in range(m):
                for y in range(ky):
                    hrow = h[i, b, mm, y]
                    if add:
                        grow = plane[i, cy - oy + y, cx - ox : cx - ox + kx]
                        wrow = wave[iw, b, mm, y]
                        for x in range(kx):
                            grow[x] += wrow[x] * hrow[x]
                    orow = obj[i, j, cy + y, cx : cx + kx]
                    for x in range(kx):
                        hrow[x] = hrow[x] * orow[x]


def _propagate_rows(phi, prop, kept):  # pragma: no cover - compiled by numba
    n, nb, m, ky, kx = phi.shape
    for i in range(n):
        for b in range(nb):
            for mm in range(m):
                for y in range(ky):
                    row = phi[i, b, mm, y]
                    prow = prop[y]
                    krow = kept[i, b, mm, y]
                    for x in range(kx):
                        v = row[x] * prow[x]
                        row[x] = v
                        krow[x] = v


def _propagate_adjoint_rows(h, prop, kept, corr):  # pragma: no cover - compiled by numba
    n, nb, m, ky, kx = h.shape
    for i in range(n):
        for b in range(nb):
            for mm in range(m):
                for y in range(ky):
                    row = h[i, b, mm, y]
                    prow = prop[y]
                    krow = kept[i, b, mm, y]
                    crow = corr[y]
                    for x in range(kx):
                        v = row[x]
                        crow[x] += v * krow[x]
                        row[x] = v * prow[x]


def _intensity_rows(psi, scale, out):  # pragma: no cover - compiled by numba
    n, nb, m, ky, kx = psi.shape
    for b in range(nb):
        for y in range(ky):
            orow = out[b, y]
            for x in range(kx):
                orow[x] = 0.0
            for i in range(n):  # states and modes in order
                for mm in range(m):
                    row = psi[i, b, mm, y]
                    for x in range(kx):
                        v = row[x]
                        orow[x] += v.real * v.real + v.imag * v.imag
            for x in range(kx):
                orow[x] *= scale


def _loss_rows(poisson, inten, amp, mask, eps, dl, terms):  # pragma: no cover - numba
    # terms and ∂L/∂I in the input's precision (as numpy), the sum in float64 in a fixed order
    nb, ky, kx = inten.shape
    total = 0.0
    for b in range(nb):
        for y in range(ky):
            irow = inten[b, y]
            arow = amp[b, y]
            drow = dl[b, y]
            mrow = mask[y]
            if poisson:
                for x in range(kx):
                    yy = arow[x] * arow[x]
                    d = irow[x] - yy
                    drow[x] = mrow[x] * (1 - yy / (irow[x] + eps))
                    terms[x] = mrow[x] * (d - yy * np.log1p(d / (yy + eps)))
            else:
                for x in range(kx):
                    sq = np.sqrt(irow[x] + eps)
                    r = sq - arow[x]
                    drow[x] = mrow[x] * (r / sq)
                    terms[x] = mrow[x] * (r * r)
            for x in range(kx):
                total += terms[x]
    return total


def _conj_scale_rows(psi, w):  # pragma: no cover - compiled by numba
    n, nb, m, ky, kx = psi.shape
    for i in range(n):
        for b in range(nb):
            for mm in range(m):
                for y in range(ky):
                    row = psi[i, b, mm, y]
                    wrow = w[b, y]
                    for x in range(kx):
                        row[x] = row[x].conjugate() * wrow[x]


@functools.cache
def _jit_kernels() -> dict[str, Any]:
    import numba

    # strict IEEE arithmetic (no fastmath): the same rounding on every call
    compile_ = numba.njit(nogil=True, cache=True, error_model="numpy")
    return {
        "transmit": compile_(_transmit_rows),
        "transmit_sum": compile_(_transmit_sum_rows),
        "add_windows": compile_(_add_windows_rows),
        "adjoint": compile_(_adjoint_rows),
        "propagate": compile_(_propagate_rows),
        "propagate_adjoint": compile_(_propagate_adjoint_rows),
        "intensity": compile_(_intensity_rows),
        "loss": compile_(_loss_rows),
        "conj_scale": compile_(_conj_scale_rows),
    }


def _jit_ready(jit: bool, xp: ModuleType) -> bool:
    return jit and not is_cupy(xp) and has_jit()


# ---------------------------------------------------------------- the passes
def transmit(
    psi: Any,
    obj: Any,
    j: int,
    corners: Any,
    window: tuple[int, int],
    out: Any,
    xp: ModuleType,
    jit: bool = False,
) -> Any:
    """``out = ψ · O[:, j, window_b]`` of shape ``(N, B, M, Ky, Kx)``.

    Parameters
    ----------
    psi
        ``(N|1, B, M, Ky, Kx)`` waves at the top of slice ``j``.
    obj
        ``(N, S, H, W)`` C-contiguous object.
    corners
        ``(B, 2)`` int64 window corners (device array).
    out
        ``(N, B, M, Ky, Kx)`` output (may not alias ``psi`` when ``N > 1 = psi.shape[0]``).
    jit
        Use the numba kernel on the CPU when numba is installed.
    """
    n, s, h, w = obj.shape
    n_psi, b, m = psi.shape[:3]
    ky, kx = window
    if _jit_ready(jit, xp) and psi.flags.c_contiguous and obj.flags.c_contiguous:
        _jit_kernels()["transmit"](psi, obj, j, np.asarray(corners, dtype=np.int64), out)
        return out
    if is_cupy(xp):
        return _kernels()["transmit"](
            xp.ascontiguousarray(psi), obj, xp.ascontiguousarray(corners, dtype=np.int64),
            j, n_psi, s, b, m, ky, kx, h, w, out,
        )  # fmt: skip
    rows = corners[:, 0, None, None] + np.arange(ky)[None, :, None]
    cols = corners[:, 1, None, None] + np.arange(kx)[None, None, :]
    patch = obj[:, j][:, rows, cols][:, :, None]  # (N, B, 1, Ky, Kx)
    return xp.multiply(psi, patch, out=out)


def transmit_sum(
    h: Any,
    obj: Any,
    j: int,
    corners: Any,
    window: tuple[int, int],
    out: Any,
    xp: ModuleType,
    jit: bool = False,
) -> Any:
    """``out = Σ_n O[n, j, window_b] · h[n]`` of shape ``(B, M, Ky, Kx)``.

    The adjoint of :func:`transmit` for one wave ``(1, B, M, Ky, Kx)`` sent through every
    state: the (conjugated) gradient at the wave entering slice ``j``.  ``h`` is
    ``(N, B, M, Ky, Kx)``; ``out`` may be ``h[0]`` (``h`` is then overwritten) but no other part
    of ``h``.  The states are added in order.
    """
    if _jit_ready(jit, xp) and h.flags.c_contiguous and obj.flags.c_contiguous:
        _jit_kernels()["transmit_sum"](h, obj, j, np.asarray(corners, dtype=np.int64), out)
        return out
    if is_cupy(xp):
        full = transmit(h, obj, j, corners, window, h, xp)
        return xp.sum(full, axis=0, out=out)
    ky, kx = window
    rows = corners[:, 0, None, None] + np.arange(ky)[None, :, None]
    cols = corners[:, 1, None, None] + np.arange(kx)[None, None, :]
    patch = obj[:, j][:, rows, cols][:, :, None]  # (N, B, 1, Ky, Kx)
    return state_sum(h, patch, out, xp)


def state_sum(h: Any, patch: Any, out: Any, xp: ModuleType) -> Any:
    """``out = Σ_n patch[n] · h[n]``, states added in order, one state at a time (no product
    array of all states); ``patch`` ``(N, B, 1|M, Ky, Kx)`` broadcasts against ``h``."""
    xp.multiply(h[0], patch[0], out=out)
    term = xp.empty_like(out) if h.shape[0] > 1 else None
    for i in range(1, h.shape[0]):
        out += xp.multiply(h[i], patch[i], out=term)
    return out


def add_windows(
    plane: Any, wave: Any, h: Any, corners: Any, xp: ModuleType, jit: bool = False, work: Any = None
) -> Any:
    """``plane[n, window_b] += Σ_m ψ[n|0, b, m] · h[n, b, m]`` for every window, in batch order.

    Parameters
    ----------
    plane
        ``(N, Hb, Wb)`` C-contiguous accumulator, added to in place.
    wave, h
        ``(N|1, B, M, Ky, Kx)`` and ``(N, B, M, Ky, Kx)``.
    corners
        ``(B, 2)`` window corners relative to ``plane``, host integers.
    jit
        Use the numba kernel (one pass, no product array) when numba is installed.
    work
        numpy path: an optional ``(N, B, Ky, Kx)`` buffer for the products.
    """
    corners = np.asarray(corners, dtype=np.int64)
    if (
        _jit_ready(jit, xp)
        and plane.flags.c_contiguous
        and wave.flags.c_contiguous
        and h.flags.c_contiguous
    ):
        _jit_kernels()["add_windows"](plane, wave, h, corners)
        return plane
    n, nb, m, ky, kx = h.shape
    prod = xp.empty((n, nb, ky, kx), dtype=h.dtype) if work is None else work
    xp.multiply(wave[:, :, 0], h[:, :, 0], out=prod)
    for mm in range(1, m):
        prod += wave[:, :, mm] * h[:, :, mm]
    for i, (y, x) in enumerate(corners.tolist()):
        window = plane[:, y : y + ky, x : x + kx]
        xp.add(window, prod[:, i], out=window)
    return plane


def window_adjoint(
    plane: Any,
    wave: Any,
    h: Any,
    obj: Any,
    j: int,
    corners: Any,
    origin: tuple[int, int],
    out: Any,
    window: tuple[int, int],
    xp: ModuleType,
    jit: bool = False,
) -> Any:
    """The adjoint at the top of slice ``j`` on the CPU: the object gradient's window sums and
    ``h_ψ = O · h_φ``.

    ``plane`` (or None): ``(N, Hb, Wb)`` accumulator at ``origin`` ``(y, x)`` in the object,
    given :func:`add_windows` of ``wave · h``.  Then with ``out`` None, ``h ← O[:, j, window_b]
    · h`` in place (:func:`transmit`; with numba in the same pass over ``h``); else
    ``out = Σ_n O · h`` (:func:`transmit_sum`, a separate pass: faster than one fused pass).
    ``corners`` are the windows' corners in the object (host).  Returns ``h`` or ``out``.
    """
    corners = np.asarray(corners, dtype=np.int64)
    arrays = (wave, h, obj) if plane is None else (plane, wave, h, obj)
    if out is None and _jit_ready(jit, xp) and _contiguous(*arrays):
        acc = np.empty((1, 1, 1), h.dtype) if plane is None else plane  # typed placeholder
        oy, ox = (int(v) for v in origin)
        _jit_kernels()["adjoint"](acc, plane is not None, wave, h, obj, j, corners, oy, ox)
        return h
    if plane is not None:
        add_windows(plane, wave, h, corners - np.asarray(origin), xp, jit)
    if out is None:
        return transmit(h, obj, j, corners, window, h, xp, jit)
    return transmit_sum(h, obj, j, corners, window, out, xp, jit)


def _contiguous(*arrays: Any) -> bool:
    return all(a.flags.c_contiguous for a in arrays)


def propagate(phi: Any, prop: Any, kept: Any, xp: ModuleType, jit: bool = False) -> Any:
    """``φ ← P · φ`` in place (``P`` ``(Ky, Kx)``), also written into ``kept``.

    The forward propagator's multiply when its result is kept for the tilt gradient; ``φ`` and
    ``kept`` are ``(N, B, M, Ky, Kx)``.
    """
    if _jit_ready(jit, xp) and _contiguous(phi, prop, kept):
        _jit_kernels()["propagate"](phi, prop, kept)
        return phi
    phi *= prop
    kept[...] = phi
    return phi


def propagate_adjoint(
    h: Any, prop: Any, kept: Any, corr: Any, xp: ModuleType, jit: bool = False
) -> Any:
    """``corr += Σ_{n,b,m} h · kept`` (the tilt correlation), then ``h ← P · h`` in place.

    ``h`` and ``kept`` are ``(N, B, M, Ky, Kx)``, ``P`` and ``corr`` ``(Ky, Kx)``.  The numpy
    definition sums state by state; the numba kernel adds every term in order in one pass.
    """
    if _jit_ready(jit, xp) and _contiguous(h, prop, kept, corr):
        _jit_kernels()["propagate_adjoint"](h, prop, kept, corr)
        return h
    term = xp.empty_like(h[0])
    for i in range(h.shape[0]):
        corr += xp.multiply(h[i], kept[i], out=term).sum(axis=(0, 1))
    h *= prop
    return h


def intensity(psi_k: Any, xp: ModuleType, jit: bool = False) -> Any:
    """``(1/N) Σ_n Σ_m |Ψ|²`` of ``(N, B, M, Ky, Kx)`` → ``(B, Ky, Kx)`` real.

    numpy: one sum-of-products pass over the real view (re² + im² summed over states and modes
    while reading ``Ψ`` once; no squared copy), then the pairs of the interleaved result.
    """
    n = psi_k.shape[0]
    if _jit_ready(jit, xp) and _contiguous(psi_k):
        b, _m, ky, kx = psi_k.shape[1:]
        out = np.empty((b, ky, kx), dtype=psi_k.real.dtype)
        _jit_kernels()["intensity"](psi_k, 1.0 / n, out)
        return out
    if is_cupy(xp):
        res = _kernels()[f"intensity_{psi_k.dtype.name}"](psi_k, axis=(0, 2))
        res *= 1.0 / n
        return res
    v = psi_k.view(psi_k.real.dtype)  # (N, B, M, Ky, 2 Kx): re, im interleaved
    r = np.einsum("nbmyx,nbmyx->byx", v, v)  # fixed-order C loops: no BLAS, no threads
    res = r[..., 0::2] + r[..., 1::2]
    res *= 1.0 / n
    return res


def loss_and_dI(
    kind: str,
    intensity: Any,
    amplitude: Any,
    mask: Any,
    eps: float,
    xp: ModuleType,
    jit: bool = False,
) -> tuple[float, Any]:
    """The loss and ``∂L/∂I`` (:func:`caviar_napari.core.loss.loss_and_dI`), one pass on a
    GPU or with numba (terms in the input's precision, summed in double precision)."""
    if (
        _jit_ready(jit, xp)
        and intensity.ndim == 3
        and amplitude.shape == intensity.shape
        and _contiguous(intensity, amplitude)
    ):
        loss_mod.check_kind(kind)
        dtype = intensity.dtype
        shape = intensity.shape[1:]
        m = np.ones(shape, dtype) if mask is None else np.ascontiguousarray(mask, dtype=dtype)
        dl = np.empty_like(intensity)
        amp = amplitude.astype(dtype, copy=False)
        terms = np.empty(shape[1], dtype)
        total = _jit_kernels()["loss"](
            kind == "poisson", intensity, amp, m, dtype.type(eps), dl, terms
        )
        return float(total), dl
    if not is_cupy(xp):
        return loss_mod.loss_and_dI(kind, intensity, amplitude, mask, eps, xp)
    loss_mod.check_kind(kind)
    dtype = intensity.dtype
    m = mask if mask is not None else xp.asarray(1, dtype=dtype)
    dl = xp.empty_like(intensity)
    term = xp.empty_like(intensity)
    _kernels()[kind](intensity, amplitude.astype(dtype, copy=False), m.astype(dtype, copy=False),
                     dtype.type(eps), dl, term)  # fmt: skip
    return float(term.sum(dtype=np.float64)), dl


def conj_scale(psi: Any, w: Any, xp: ModuleType, jit: bool = False) -> Any:
    """``conj(Ψ) · w`` written into ``Ψ`` (``w`` real, broadcast against ``Ψ``).

    numpy: one pass over the real view, ``(re, im) · (w, −w)`` (no conjugation pass, no
    complex × real broadcast, which numpy runs through a cast buffer).  numba: for the
    model's per-pattern weights ``w`` ``(1, B, 1, Ky, Kx)``, one pass on ``Ψ`` itself.
    """
    if (
        _jit_ready(jit, xp)
        and w.ndim == 5
        and w.shape[0] == w.shape[2] == 1
        and w.shape[1] == psi.shape[1]
        and w.shape[3:] == psi.shape[3:]
        and _contiguous(psi)
    ):
        w3 = np.ascontiguousarray(w[0, :, 0], dtype=psi.real.dtype)
        _jit_kernels()["conj_scale"](psi, w3)
        return psi
    if is_cupy(xp):
        return _kernels()["conj_scale"](psi, w.astype(psi.real.dtype, copy=False), psi)
    real = psi.real.dtype
    w = np.asarray(w, dtype=real)
    signed = np.empty((*w.shape, 2), dtype=real)  # (…, Kx, 2): w, −w
    signed[..., 0] = w
    np.negative(w, out=signed[..., 1])
    if not psi.flags.c_contiguous:
        h = np.conjugate(psi, out=psi)
        h *= w
        return h
    view = psi.view(real).reshape(*psi.shape, 2)
    np.multiply(view, signed, out=view)
    return psi
