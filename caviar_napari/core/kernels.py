"""Fused element-wise passes of the forward model and its adjoint (cupy), numpy otherwise.

On the GPU the FFTs are fast and the element-wise passes, each reading and writing whole
``(N, B, M, Ky, Kx)`` arrays, bound the throughput (docs/benchmarks: 15–29 % of the FFT bound).
The functions here do in one pass what numpy does in several; each has one numpy definition
(the reference, used on the CPU) and a cupy kernel with the same arguments and results:

:func:`transmit`
    ``φ = ψ · O[n, j, window_b]``: gathers the object windows *and* multiplies (no patch array
    written and read back);
:func:`intensity`
    ``I = (1/N) Σ_n Σ_m |Ψ|²`` as one reduction over states and modes;
:func:`loss_and_dI`
    the Gaussian-amplitude or Poisson loss and ``∂L/∂I`` in one pass (numpy: five to seven);
:func:`conj_scale`
    the conjugated adjoint seed ``h = conj(Ψ) · w`` in place (numpy: one pass on the real view).

cupy is imported only when a cupy array arrives; kernels are compiled once per process and
dtype (cupy caches them).  The GPU tests (``-m gpu``) check every kernel against its numpy
definition.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np

from caviar_napari.core import loss as loss_mod

__all__ = ["conj_scale", "intensity", "is_cupy", "loss_and_dI", "transmit"]


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
            T ie = I + eps;
            T y = a * a;
            dl = m * (1 - y / ie);
            term = m * (I - y * log(ie));
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


# ---------------------------------------------------------------- the passes
def transmit(
    psi: Any, obj: Any, j: int, corners: Any, window: tuple[int, int], out: Any, xp: ModuleType
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
    """
    n, s, h, w = obj.shape
    n_psi, b, m = psi.shape[:3]
    ky, kx = window
    if is_cupy(xp):
        return _kernels()["transmit"](
            xp.ascontiguousarray(psi), obj, xp.ascontiguousarray(corners, dtype=np.int64),
            j, n_psi, s, b, m, ky, kx, h, w, out,
        )  # fmt: skip
    rows = corners[:, 0, None, None] + np.arange(ky)[None, :, None]
    cols = corners[:, 1, None, None] + np.arange(kx)[None, None, :]
    patch = obj[:, j][:, rows, cols][:, :, None]  # (N, B, 1, Ky, Kx)
    return xp.multiply(psi, patch, out=out)


def intensity(psi_k: Any, xp: ModuleType) -> Any:
    """``(1/N) Σ_n Σ_m |Ψ|²`` of ``(N, B, M, Ky, Kx)`` → ``(B, Ky, Kx)`` real.

    numpy: one sum-of-products pass over the real view (re² + im² summed over states and modes
    while reading ``Ψ`` once; no squared copy), then the pairs of the interleaved result.
    """
    n = psi_k.shape[0]
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
    kind: str, intensity: Any, amplitude: Any, mask: Any, eps: float, xp: ModuleType
) -> tuple[float, Any]:
    """The loss and ``∂L/∂I`` (:func:`caviar_napari.core.loss.loss_and_dI`), one pass on a
    GPU."""
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


def conj_scale(psi: Any, w: Any, xp: ModuleType) -> Any:
    """``conj(Ψ) · w`` written into ``Ψ`` (``w`` real, broadcast against ``Ψ``).

    numpy: one pass over the real view, ``(re, im) · (w, −w)`` (no conjugation pass, no
    complex × real broadcast, which numpy runs through a cast buffer).
    """
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
