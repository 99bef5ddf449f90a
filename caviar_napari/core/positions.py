"""Scan-position refinement: per-position shifts, a global affine map and a linear drift.

The refined position of scan point ``p`` is its nominal position ``r_p`` (the object frame of
:mod:`caviar_napari.core.geometry`) plus

    s_p = Δ_p + A (r_p − r̄) + d (t_p − ½),

* ``Δ_p`` — a per-position shift (jitter), ``Δ = B tanh(u / B)`` with the optimiser's free
  variables ``u``: no shift can exceed the bound ``B`` (``position_bound_A``) however far the
  optimiser steps. Their mean is taken out (a common shift of every position is a shift of the
  object, which the data cannot see);
* ``A`` — a 2 × 2 matrix (scale, shear, rotation of the scan about its centre ``r̄``);
* ``d`` — the drift over the whole scan, ``t_p`` the position's place in the scan order
  (0 for the first point, 1 for the last).

``u`` are the ``positions`` block of a stage's ``refine``, ``(A, d)`` (six numbers) the
``affine`` block. A penalty ``λ · mean_p |Δ_p|²`` (``position_penalty``, per Å² in the units of
the normalised loss) pulls the shifts towards the nominal grid, where the data say nothing.

Gradients: the model gives ``g_p = ∂L/∂s_p`` (:meth:`MultisliceModel.loss_and_gradient` with
``shifts``); then ``∂L/∂u_p = sech²(u_p/B) (g_p − ḡ)``, ``∂L/∂A = Σ_p g_p (r_p − r̄)ᵀ`` and
``∂L/∂d = Σ_p g_p (t_p − ½)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["AFFINE_SIZE", "ScanPositions", "describe_refinement", "nominal_from_refined"]

#: Parameters of the affine block: A (2 × 2, row-major) and the drift d (y, x), Å.
AFFINE_SIZE = 6


@dataclass(frozen=True)
class ScanPositions:
    """The map from the refinement variables to the shifts of the scan positions.

    Attributes
    ----------
    nominal_A
        ``(P, 2)`` nominal positions ``(y, x)`` in the object frame, Å.
    bound_A
        Largest per-position shift ``B``, Å.
    penalty
        Weight λ of the penalty on the per-position shifts (per Å², normalised-loss units).
    """

    nominal_A: np.ndarray
    bound_A: float = 1.0
    penalty: float = 0.0

    def __post_init__(self) -> None:
        r = np.asarray(self.nominal_A, dtype=np.float64)
        if r.ndim != 2 or r.shape[1] != 2 or not np.all(np.isfinite(r)):
            raise InputError(f"nominal positions must be finite (P, 2), got shape {r.shape}")
        if not self.bound_A > 0:
            raise InputError(f"position_bound_A must be > 0 Å, got {self.bound_A!r}")
        object.__setattr__(self, "nominal_A", r)

    @property
    def n_positions(self) -> int:
        """Number of scan positions P."""
        return int(self.nominal_A.shape[0])

    @property
    def centred_A(self) -> np.ndarray:
        """``(P, 2)`` ``r_p − r̄``."""
        return self.nominal_A - self.nominal_A.mean(axis=0)

    @property
    def scan_time(self) -> np.ndarray:
        """``(P,)`` ``t_p − ½`` (scan order, first point −½, last +½)."""
        p = self.n_positions
        return np.arange(p) / max(p - 1, 1) - 0.5

    def jitter_A(self, u: Any) -> np.ndarray:
        """``(P, 2)`` per-position shifts ``Δ`` (bounded, mean-free) of the variables ``u``."""
        b = self.bound_A
        delta = b * np.tanh(np.asarray(u, dtype=np.float64) / b)
        return delta - delta.mean(axis=0)

    def shifts_A(self, u: Any | None, affine: Any | None) -> np.ndarray:
        """``(P, 2)`` shifts ``s_p`` of the positions, Å (None blocks count as zero)."""
        s = np.zeros((self.n_positions, 2))
        if u is not None:
            s += self.jitter_A(u)
        if affine is not None:
            a = np.asarray(affine, dtype=np.float64)
            s += self.centred_A @ a[:4].reshape(2, 2).T + np.outer(self.scan_time, a[4:6])
        return s

    def chain(self, grad_A: np.ndarray, u: Any | None) -> tuple[np.ndarray | None, np.ndarray]:
        """``(∂L/∂u, ∂L/∂affine)`` from ``∂L/∂s`` ``(P, 2)`` per Å."""
        g = np.asarray(grad_A, dtype=np.float64)
        g_affine = np.concatenate([(g.T @ self.centred_A).ravel(), g.T @ self.scan_time])
        g_u = None
        if u is not None:
            sech2 = 1.0 / np.cosh(np.asarray(u, dtype=np.float64) / self.bound_A) ** 2
            g_u = sech2 * (g - g.mean(axis=0))
        return g_u, g_affine

    def penalty_and_gradient(self, u: Any) -> tuple[float, np.ndarray]:
        """``λ · mean_p |Δ_p|²`` and its gradient with respect to ``u``."""
        if not self.penalty:
            return 0.0, np.zeros((self.n_positions, 2))
        delta = self.jitter_A(u)
        value = self.penalty * float(np.mean(np.sum(delta**2, axis=1)))
        g_delta = 2.0 * self.penalty * delta / self.n_positions
        sech2 = 1.0 / np.cosh(np.asarray(u, dtype=np.float64) / self.bound_A) ** 2
        return value, sech2 * (g_delta - g_delta.mean(axis=0))


def nominal_from_refined(
    refined_A: np.ndarray, u: np.ndarray | None, affine: np.ndarray | None, bound_A: float
) -> np.ndarray:
    """The nominal positions ``r_p`` that the refinement variables moved to ``refined_A``.

    Inverts ``s = r + Δ(u) + A (r − r̄) + d (t − ½)`` (module docstring) exactly: ``Δ`` and
    ``t − ½`` are mean-free, so ``r̄`` is the mean of the refined positions, and then
    ``r = (s − Δ − d (t − ½) + A r̄) (I + A)⁻¹`` (row vectors, transposed). A reconstruction
    file holds the refined positions and the variables, not the nominal grid.

    Parameters
    ----------
    refined_A
        ``(P, 2)`` refined positions ``(y, x)`` in the object frame, Å
        (``ReconState.scan_positions_A``).
    u, affine
        The refinement variables (``ReconState.positions_u``, ``affine``; None: not refined).
    bound_A
        ``position_bound_A`` of the configuration that refined them.

    Raises
    ------
    InputError
        Shapes that do not fit, or a singular scan map ``I + A``.
    """
    s = np.asarray(refined_A, dtype=np.float64).reshape(-1, 2)
    rest = s.copy()
    if u is not None:
        if np.shape(u) != s.shape:
            raise InputError(f"scan refinement: u has shape {np.shape(u)}, positions {s.shape}")
        rest -= ScanPositions(s, bound_A).jitter_A(u)
    if affine is None:
        return rest
    a = np.asarray(affine, dtype=np.float64).ravel()
    if a.size != AFFINE_SIZE:
        raise InputError(f"scan refinement: affine must have {AFFINE_SIZE} values, got {a.size}")
    m = a[:4].reshape(2, 2)
    time = ScanPositions(s, bound_A).scan_time
    rest -= np.outer(time, a[4:6])
    mean = s.mean(axis=0)
    try:
        return np.linalg.solve((np.eye(2) + m), (rest + mean @ m.T).T).T
    except np.linalg.LinAlgError:
        raise InputError("scan refinement: the refined scan map is singular") from None


def describe_refinement(
    u: np.ndarray | None, affine: np.ndarray | None, bound_A: float
) -> tuple[str, list[str]]:
    """One line on refined scan positions, and warnings (shifts at the bound).

    Parameters
    ----------
    u, affine
        The refinement variables of a reconstruction (``ReconState.positions_u``, ``affine``).
    bound_A
        ``position_bound_A`` of its configuration.

    Examples
    --------
    >>> line, warn = describe_refinement(None, np.array([0, 0, 0, 0, 0.3, 0.0]), 1.0)
    >>> line.split(", scan map")[0]
    'scan positions refined: drift (+0.300, +0.000) Å over the scan'
    """
    parts, warnings = [], []
    if u is not None:
        delta = bound_A * np.tanh(np.asarray(u, np.float64) / bound_A)
        delta -= delta.mean(axis=0)
        size = np.sqrt(np.sum(delta**2, axis=1))
        parts.append(f"shifts rms {np.sqrt(np.mean(size**2)):.3f} Å (max {size.max():.3f} Å)")
        if np.abs(delta).max() > 0.9 * bound_A:
            warnings.append(
                f"scan positions: some shifts reach the bound position_bound_A = {bound_A:g} Å; "
                "raise it if the scan is that far off, or check the calibration"
            )
    if affine is not None:
        a = np.asarray(affine, np.float64)
        m = a[:4].reshape(2, 2)
        parts.append(
            f"drift ({a[4]:+.3f}, {a[5]:+.3f}) Å over the scan, scan map scale "
            f"({100 * m[0, 0]:+.2f} %, {100 * m[1, 1]:+.2f} %), shear {m[0, 1] + m[1, 0]:+.3f}"
        )
    line = "scan positions refined: " + ", ".join(parts) if parts else ""
    return line, warnings
