"""Is a dispersion believable?  Small-sample bias of eq. 6 and the physical range (issues 12, 14).

Two checks for the command line and the Dispersion dock (``caviar dispersion`` prints their
messages; :func:`~caviar_napari.analysis.dispersion.compute_dispersion` records them in the
DISP file):

* :func:`green_bias` / :func:`green_states_warning` — eq. 6 inverts a covariance estimated from
  ``N`` states.  With few states the eigenvalues of that estimate spread apart and the highest
  frequencies come out too high.  The expected bias of the sorted frequencies is computed for
  the worst case, an isotropic covariance (all eigenvalues equal, where the spreading is
  largest), by a seeded Monte Carlo of the estimator itself: complex Wishart samples with
  ``(N − 1) · slices · pooling`` degrees of freedom, normalised by ``N · slices · pooling`` as
  eq. 2 does.  A real dispersion has unequal eigenvalues, so its bias is at most this (the
  benchmark ``benchmarks/bench_dispersion_estimators.py`` compares both).
* :func:`frequency_warnings` — frequencies that are not finite, higher than any solid reaches
  for the given masses, or negative beyond their errors.  The ceiling is
  ``ν_max = 15.633 · sqrt(K_max / m_min)`` THz with ``K_max = 500 eV/Å²``, the total stiffness an
  atom would feel from several triple bonds (diamond's atoms feel about 80 eV/Å², N₂'s triple
  bond is 143 eV/Å²): 101 THz for carbon, 106 THz for boron, 66 THz for silicon, about 350 THz
  for hydrogen.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.phonons import THZ_PER_SQRT_EIGENVALUE
from caviar_napari.errors import InputError

__all__ = [
    "GREEN_BIAS_TOLERANCE",
    "MAX_STIFFNESS_EV_PER_A2",
    "frequency_warnings",
    "green_bias",
    "green_min_states",
    "green_states_warning",
    "physical_limit_THz",
]

#: Largest expected relative bias of a green frequency before a warning is given.
GREEN_BIAS_TOLERANCE = 0.05

#: Total stiffness (eV/Å²) no atom in a solid exceeds (module docstring).
MAX_STIFFNESS_EV_PER_A2 = 500.0

#: Monte Carlo draws behind :func:`green_bias` (seeded; the result is deterministic).
BIAS_DRAWS = 2000


def green_bias(n_states: int, n_basis: int, n_slices: int = 1, pooling: float = 1.0) -> np.ndarray:
    """Expected relative bias of the sorted green frequencies in the isotropic worst case.

    Parameters
    ----------
    n_states
        Number of object states N (≥ 2).
    n_basis
        Basis atoms κ; the covariance per q is ``2κ × 2κ``.
    n_slices
        Slices averaged.
    pooling
        Independent members of the star of q averaged by symmetry pooling (1: none).

    Returns
    -------
    ndarray, shape ``(2κ,)``
        ``E[ν̂_b] / ν_b − 1`` for branches b in ascending order (the last is the worst).
    """
    n_states, n_basis, n_slices = int(n_states), int(n_basis), int(n_slices)
    if n_states < 2 or n_basis < 1 or n_slices < 1 or not pooling >= 1:
        raise InputError(
            f"green_bias needs N ≥ 2 states, κ ≥ 1, slices ≥ 1 and pooling ≥ 1, got "
            f"{n_states}, {n_basis}, {n_slices}, {pooling}"
        )
    d = 2 * n_basis
    samples = n_slices * float(pooling)
    dof = max(float(d), (n_states - 1) * samples)
    # complex Wishart W ~ CW_d(dof, I) by the Bartlett decomposition W = L L^H: L_ii² is
    # Gamma(dof − i, 1), L_ij (i > j) standard complex normal — O(d²) numbers per draw
    rng = np.random.default_rng(0)
    L = np.tril(
        rng.standard_normal((BIAS_DRAWS, d, d)) + 1j * rng.standard_normal((BIAS_DRAWS, d, d)), -1
    )
    L /= math.sqrt(2.0)
    diag = np.sqrt(rng.gamma(dof - np.arange(d), 1.0, size=(BIAS_DRAWS, d)))
    L[:, np.arange(d), np.arange(d)] = diag
    C = L @ np.conj(np.swapaxes(L, -1, -2)) / (n_states * samples)
    mu = np.linalg.eigvalsh(C)  # ascending; ν ∝ μ^(−½) descends
    nu = np.sort(1.0 / np.sqrt(mu), axis=-1)
    return nu.mean(axis=0) - 1.0


def green_min_states(
    n_basis: int,
    n_slices: int = 1,
    pooling: float = 1.0,
    tolerance: float = GREEN_BIAS_TOLERANCE,
    limit: int = 100_000,
) -> int:
    """About the smallest number of states for which :func:`green_bias` stays within
    ``tolerance`` (to within 5 %: a bracket from the ``1/sqrt(N)`` decay, then bisection)."""
    first = float(green_bias(10, n_basis, n_slices, pooling)[-1])
    guess = int(min(limit, max(3, 9 * (first / tolerance) ** 2 + 1)))
    lo, hi = max(2, guess // 2), guess
    while green_bias(hi, n_basis, n_slices, pooling)[-1] > tolerance:
        lo, hi = hi, hi * 2
        if hi > limit:
            return limit
    while green_bias(lo, n_basis, n_slices, pooling)[-1] <= tolerance and lo > 2:
        lo, hi = max(2, lo // 2), lo
    while hi - lo > max(1, hi // 20):  # bisection on N (the bias falls with N)
        mid = (lo + hi) // 2
        if green_bias(mid, n_basis, n_slices, pooling)[-1] > tolerance:
            lo = mid
        else:
            hi = mid
    return hi


def green_states_warning(
    n_states: int,
    n_basis: int,
    n_slices: int = 1,
    pooling: float = 1.0,
    tolerance: float = GREEN_BIAS_TOLERANCE,
) -> str | None:
    """A warning when ``n_states`` are too few for eq. 6 to be unbiased, else None.

    The message gives the expected bias of the highest branch (isotropic worst case), the
    number of states needed and recommends the force-constant estimator.
    """
    bias = green_bias(n_states, n_basis, n_slices, pooling)
    if bias[-1] <= tolerance:
        return None
    need = green_min_states(n_basis, n_slices, pooling, tolerance)
    return (
        f"green estimator with {n_states} states: the highest branch may be biased by up to "
        f"{100 * bias[-1]:+.0f} % and the lowest by {100 * bias[0]:+.0f} % (small-sample spread "
        f"of the covariance; about {need} states would keep the bias within "
        f"{100 * tolerance:.0f} %); use --estimator force-constants"
    )


def physical_limit_THz(masses_amu: ArrayLike) -> float:
    """Highest frequency any solid reaches for atoms of these masses, THz (module docstring)."""
    m = np.asarray(masses_amu, dtype=float)
    return float(THZ_PER_SQRT_EIGENVALUE * math.sqrt(MAX_STIFFNESS_EV_PER_A2 / np.min(m)))


def frequency_warnings(
    frequencies_THz: ArrayLike,
    masses_amu: ArrayLike,
    errors_THz: ArrayLike | None = None,
    where: str = "frequencies",
) -> list[str]:
    """Warnings for frequencies outside any physical range for the given masses.

    Parameters
    ----------
    frequencies_THz
        Any shape, THz.
    masses_amu
        The basis masses used.
    errors_THz
        Their errors (same shape; NaN where none), to tell negative frequencies beyond the
        noise from round-off.
    where
        Name of the quantity in the messages.

    Returns
    -------
    list of str
        Empty when all frequencies are finite, below :func:`physical_limit_THz` and not
        negative beyond two errors (beyond 1e−6 of the largest one without errors).
    """
    nu = np.asarray(frequencies_THz, dtype=float)
    err = np.full_like(nu, np.nan) if errors_THz is None else np.asarray(errors_THz, float)
    limit = physical_limit_THz(masses_amu)
    out = []
    bad = ~np.isfinite(nu)
    if np.any(bad):
        out.append(
            f"{int(bad.sum())} of {nu.size} {where} are not finite (a singular covariance or "
            "an unstable fit)"
        )
    finite = nu[~bad]
    high = finite > limit
    if np.any(high):
        out.append(
            f"{int(high.sum())} of {nu.size} {where} exceed {limit:.0f} THz (up to "
            f"{finite.max():.0f} THz), more than any solid reaches for atoms of "
            f"{np.min(masses_amu):.3g} amu: the displacements are not thermal vibrations "
            "(noise, too few states, or object states that did not separate)"
        )
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    noise = np.where(np.isfinite(err), 2.0 * err, 1e-6 * scale)
    negative = (nu < -noise) & ~bad
    if np.any(negative):
        out.append(
            f"{int(negative.sum())} of {nu.size} {where} are negative beyond their errors "
            f"(down to {nu[negative].min():.1f} THz): not a stable harmonic ensemble"
        )
    return out
