"""Data-fit losses of ptychography and their derivatives with respect to the model intensity.

Both losses are sums over patterns and detector pixels, restricted to a detector mask
(pixels outside it, e.g. zero padding beyond the measured disc, do not count):

* ``"gaussian"`` (paper eq. S8), on amplitudes:
  ``L = Σ mask (a − sqrt(I + ε))²``, ``∂L/∂I = mask (1 − a / sqrt(I + ε))``;
* ``"poisson"`` (negative log-likelihood minus its value at the data, i.e. half the Poisson
  deviance): ``L = Σ mask (I − y − y log((I + ε)/(y + ε)))`` with ``y = a²``,
  ``∂L/∂I = mask (1 − y / (I + ε))``. Subtracting the saturated model's value (a constant of the
  data) changes no gradient, but makes each term small near the fit (``≈ (I − y)²/(2y)``, about
  1/2 per pixel from counting noise) instead of ``≈ y log y``: written as
  ``(I − y) − y log1p((I − y)/(y + ε))`` the terms keep their precision in float32 at any dose,
  where ``I − y log I`` loses the states' signal to rounding at high counts, and the loss is
  comparable with its counting-noise floor (:func:`caviar_napari.core.separation.
  expected_noise_loss`).

``a = sqrt(I_meas)`` are the measured amplitudes and ``I`` the model intensity. The small
``ε > 0`` keeps both losses differentiable where the model intensity vanishes (the amplitude
loss has an infinite slope ``−a / (2 sqrt(I))`` at ``I → 0``; the Poisson loss diverges). It is a
regularisation of the loss itself, not only of its gradient, so the returned gradient is the
exact derivative of the returned loss (finite differences agree to rounding).  The model picks
``ε = 1e-6 ×`` the mean measured intensity per detector pixel unless given.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

import numpy as np

from caviar_napari.data.config import LOSSES
from caviar_napari.errors import InputError

__all__ = ["LOSSES", "LossKind", "default_eps", "loss_and_dI", "loss_value"]

#: Static type of :data:`caviar_napari.data.config.LOSSES`.
LossKind = Literal["gaussian", "poisson"]


def check_kind(kind: str) -> str:
    """Return ``kind`` if it names a loss, else raise :class:`InputError`."""
    if kind not in LOSSES:
        raise InputError(f"loss must be one of {LOSSES}, got {kind!r}")
    return kind


def default_eps(amplitudes: Any, xp: ModuleType = np) -> float:
    """``1e-6 ×`` the mean measured intensity per pixel (at least 1e-30), a safe ``ε``."""
    mean_intensity = float(xp.mean(xp.asarray(amplitudes, dtype=np.float64) ** 2))
    return max(1e-6 * mean_intensity, 1e-30)


def loss_and_dI(
    kind: LossKind,
    intensity: Any,
    amplitude: Any,
    mask: Any | None = None,
    eps: float = 1e-12,
    xp: ModuleType = np,
) -> tuple[float, Any]:
    """Loss and its derivative with respect to the model intensity.

    Parameters
    ----------
    kind
        ``"gaussian"`` (amplitudes) or ``"poisson"``.
    intensity
        Model intensities ``I``, shape ``(B, Ky, Kx)``, real, ≥ 0.
    amplitude
        Measured amplitudes ``a = sqrt(I_meas)``, same shape (or broadcastable).
    mask
        Detector weights ``(Ky, Kx)`` (0/1 or real ≥ 0), or None for all pixels.
    eps
        Regularisation ``ε > 0`` (same units as the intensity).

    Returns
    -------
    loss
        Python float, summed over patterns and pixels (accumulated in float64).
    dL_dI
        ``∂L/∂I``, shape of ``intensity``, its dtype; 0 outside the mask.
    """
    check_kind(kind)
    # few passes, written in place into fresh temporaries (the inputs are left untouched)
    if kind == "gaussian":
        s = xp.add(intensity, eps)
        xp.sqrt(s, out=s)  # sqrt(I+ε)
        residual = xp.subtract(s, amplitude)  # sqrt(I+ε) − a
        dl_di = xp.divide(residual, s, out=s)  # = 1 − a / sqrt(I+ε)
        terms = xp.multiply(residual, residual, out=residual)
    else:
        y = xp.multiply(amplitude, amplitude).astype(intensity.dtype, copy=False)
        d = xp.subtract(intensity, y)  # I − y
        terms = xp.add(y, eps)
        xp.divide(d, terms, out=terms)
        xp.log1p(terms, out=terms)  # log((I+ε)/(y+ε))
        terms *= y
        xp.subtract(d, terms, out=terms)  # (I − y) − y log((I+ε)/(y+ε))
        ie = xp.add(intensity, eps, out=d)
        dl_di = xp.divide(y, ie, out=ie)
        xp.subtract(1.0, dl_di, out=dl_di)  # 1 − y / (I+ε)
    if mask is not None:  # for 0/1 weights mask² = mask: the loss is Σ mask · term
        terms *= mask
        dl_di *= mask
    return float(xp.sum(terms, dtype=np.float64)), dl_di


def loss_value(
    kind: LossKind,
    intensity: Any,
    amplitude: Any,
    mask: Any | None = None,
    eps: float = 1e-12,
    xp: ModuleType = np,
) -> float:
    """The loss alone (see :func:`loss_and_dI`)."""
    return loss_and_dI(kind, intensity, amplitude, mask, eps, xp)[0]
