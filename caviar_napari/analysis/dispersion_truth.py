"""How close an estimated dispersion is to the exact one (known truth; issue 14's measures).

The measures of issue 14, on the commensurate grid:

* the **per-q relative error** ``(ν̂ − ν) / ν`` of every branch at every q where the exact
  frequency is not zero (the acoustic branches at Γ are left out);
* its root mean square over q and branches (**per-q rms error**);
* the **per-branch bias**, the mean signed relative error of each branch (sorted band index)
  over q;
* for fitted force constants, the **coverage**: the fraction of constants within ``k`` stated
  errors of the true ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.errors import InputError

__all__ = ["DispersionAccuracy", "coverage", "dispersion_accuracy", "relative_errors"]


def relative_errors(
    estimated_THz: ArrayLike, exact_THz: ArrayLike, floor_THz: float = 1e-6
) -> np.ndarray:
    """``(ν̂ − ν) / ν`` with NaN where ``|ν| ≤ floor_THz`` (the acoustic modes at Γ)."""
    est = np.asarray(estimated_THz, dtype=float)
    exact = np.asarray(exact_THz, dtype=float)
    if est.shape != exact.shape:
        raise InputError(f"estimated {est.shape} and exact {exact.shape} frequencies differ")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (est - exact) / exact
    return np.where(np.abs(exact) > floor_THz, rel, np.nan)


@dataclass(frozen=True)
class DispersionAccuracy:
    """Relative errors of an estimated dispersion.

    Attributes
    ----------
    rms
        Root mean square of the per-q relative errors (all branches).
    max_abs
        Largest absolute relative error.
    branch_bias
        ``(nb,)`` mean signed relative error of each branch over q.
    branch_rms
        ``(nb,)`` rms relative error of each branch.
    """

    rms: float
    max_abs: float
    branch_bias: np.ndarray
    branch_rms: np.ndarray


def dispersion_accuracy(estimated_THz: ArrayLike, exact_THz: ArrayLike) -> DispersionAccuracy:
    """The measures of the module docstring for ``(nq, nb)`` frequencies on the same q."""
    rel = relative_errors(estimated_THz, exact_THz)
    return DispersionAccuracy(
        rms=float(np.sqrt(np.nanmean(rel**2))),
        max_abs=float(np.nanmax(np.abs(rel))),
        branch_bias=np.nanmean(rel, axis=0),
        branch_rms=np.sqrt(np.nanmean(rel**2, axis=0)),
    )


def coverage(values: ArrayLike, errors: ArrayLike, truth: ArrayLike, k: float = 1.0) -> float:
    """Fraction of ``|value − truth| ≤ k · error`` (NaN errors count as not covered)."""
    v, e, t = (np.asarray(x, dtype=float) for x in (values, errors, truth))
    with np.errstate(invalid="ignore"):
        inside = np.abs(v - t) <= k * e
    return float(np.mean(inside))
