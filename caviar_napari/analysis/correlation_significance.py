"""Is a correlation arrow real?  Calibrated tests of zero correlation (issue 13, conventions §4).

A cross block ``G_ij`` (``i ≠ j``) estimated from N object states is never exactly zero.  Whether
it differs from zero by more than sampling noise is decided here by a test of the hypothesis
"``u_i`` and ``u_j`` are uncorrelated", and the result is given as a **significance in σ**: the
two-sided p-value converted to the number of standard deviations of a normal variable with the
same tail, ``σ = Φ⁻¹(1 − p/2)`` (2σ ⇔ p = 0.0455).  Under the hypothesis a block is "significant
at 2σ" in 4.55 % of cases, whatever N is — unlike ``|value| / error``, whose tails with 9 degrees
of freedom are much heavier than a normal variable's (a block whose largest of four entries
exceeds 2 errors: 18 % (jackknife), 33 % (bootstrap) of independent blocks with 10 states).

Tests (``dof`` is the Wishart degrees of freedom of the tensor, ``N − 1`` for one slice,
:func:`~.correlation_errors.effective_dof` for several):

* one atom pair, the whole 2 × 2 block (:func:`block_significance`): Wilks' likelihood-ratio
  test of independence, ``Λ = det S / (det S_ii det S_jj)`` of the 4 × 4 covariance of
  ``(u_i, u_j)``, exact for Gaussian displacements:
  ``(1 − √Λ)/√Λ · (dof − 3)/2 ~ F(4, 2(dof − 3))``;
* one arrow, a row ``r_aᵀ G_ij`` (the reference's displacement along the frame axis ``a`` with
  j's displacement, :func:`arrow_significance`): the squared multiple correlation ``R²`` of
  ``r_aᵀ u_i`` on ``u_j``, exact: ``R²/(1 − R²) · (dof − 2)/2 ~ F(2, dof − 2)``;
* a block or arrow averaged over the P pairs of a unit-cell class
  (:func:`class_significance`): the averaged entries are nearly normal, with the covariance
  that a Wishart tensor gives, ``Cov(G_ia,jb, G_kc,ld) = (G_ia,kc G_jb,ld + G_ia,ld G_jb,kc) /
  dof``, evaluated with the estimated tensor (the tested blocks themselves set to zero, as the
  hypothesis says) and summed over all pairs of the class; ``T² = vᵀ C⁻¹ v ~ χ²(4)`` (block) or
  ``χ²(2)`` (arrow).  A class of one pair uses the exact tests above.

Self blocks (``i = j``) are variances: they are always "significant" (``σ = +inf``).

Calibration (``benchmarks/bench_correlation_errors.py``, ``docs/benchmarks/
correlation-errors.md``; independent Gaussian displacements, 10 states): single-pair blocks are
significant at 2σ in 4.3 % of 12000 cases and single arrows in 4.5 % of 24000 (4.55 % expected);
unit-cell class averages on a 6 × 6 honeycomb supercell in 2.8 % (slightly conservative).  Power
on the correlated hBN model (ρ_nn ≈ 0.43): 22 % of single nearest-neighbour blocks at 10 states,
57 % at 20, 94 % at 40; every nearest-neighbour class average from 10 states on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from caviar_napari.errors import InputError

__all__ = [
    "SIGNIFICANCE_SIGMA",
    "BlockTest",
    "arrow_significance",
    "block_significance",
    "class_members",
    "class_significance",
    "sigma_from_p",
]

#: Default threshold: a block or arrow is significant when its significance is at least this (σ).
SIGNIFICANCE_SIGMA = 2.0


def sigma_from_p(p_value: ArrayLike) -> np.ndarray:
    """``σ = Φ⁻¹(1 − p/2)``: the normal deviation with the same two-sided tail; NaN stays NaN."""
    p = np.asarray(p_value, dtype=float)
    with np.errstate(divide="ignore"):
        return stats.norm.isf(np.clip(p, 0.0, 1.0) / 2.0)


@dataclass(frozen=True)
class BlockTest:
    """Significance of 2 × 2 blocks against zero.

    Attributes
    ----------
    p_value
        ``(P,)`` two-sided p-values (0 for self blocks, NaN where the test is not defined).
    sigma
        ``(P,)`` the same as a normal deviation (:func:`sigma_from_p`).
    """

    p_value: np.ndarray
    sigma: np.ndarray

    def significant(self, threshold_sigma: float = SIGNIFICANCE_SIGMA) -> np.ndarray:
        """``(P,)`` bool: at least ``threshold_sigma`` (NaN is not significant)."""
        return np.nan_to_num(self.sigma, nan=-np.inf) >= threshold_sigma


def _check_dof(dof: float, need: float) -> float:
    dof = float(dof)
    if not np.isfinite(dof) or dof <= 0:
        raise InputError(f"degrees of freedom must be a positive number, got {dof!r}")
    return dof if dof > need else np.nan  # too few states: the test is not defined


def _pairs(pairs: ArrayLike) -> np.ndarray:
    return np.asarray(pairs, dtype=int).reshape(-1, 2)


def _blocks(green: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b), 2, 2)`` blocks ``G[a_p, b_q]``."""
    rows = (2 * a[:, None] + np.arange(2)).ravel()
    cols = (2 * b[:, None] + np.arange(2)).ravel()
    sub = green[np.ix_(rows, cols)]
    return sub.reshape(a.size, 2, b.size, 2).transpose(0, 2, 1, 3)


def block_significance(green_A2: ArrayLike, pairs: ArrayLike, dof: float) -> BlockTest:
    """Wilks' exact test that the block ``G_ij`` of each pair is zero (module docstring).

    Parameters
    ----------
    green_A2
        ``(2N, 2N)`` Green's tensor, Å² (any positive scale: the test is scale-free).
    pairs
        ``(P, 2)`` atom pairs ``(i, j)``.
    dof
        Wishart degrees of freedom (``CorrelationsData.uncertainty.green_dof``; ``N − 1`` for
        N states of one slice).  At most 3 gives NaN (the test needs 5 states).

    Returns
    -------
    BlockTest
        Self pairs get ``p = 0``, ``σ = +inf``; pairs with a NaN or singular covariance NaN.
    """
    green = np.asarray(green_A2, dtype=float)
    pairs = _pairs(pairs)
    n = _check_dof(dof, 3.0)
    i, j = pairs[:, 0], pairs[:, 1]
    s_ii = _blocks(green, i, i)[np.arange(i.size), np.arange(i.size)]
    s_jj = _blocks(green, j, j)[np.arange(j.size), np.arange(j.size)]
    s_ij = _blocks(green, i, j)[np.arange(i.size), np.arange(j.size)]
    full = np.block([[s_ii, s_ij], [np.swapaxes(s_ij, 1, 2), s_jj]])  # (P, 4, 4)
    with np.errstate(invalid="ignore", divide="ignore"):
        lam = np.linalg.det(full) / (np.linalg.det(s_ii) * np.linalg.det(s_jj))
        root = np.sqrt(np.clip(lam, 0.0, 1.0))
        f_stat = (1.0 - root) / root * (n - 3.0) / 2.0
    p = stats.f.sf(f_stat, 4.0, 2.0 * (n - 3.0))
    p = np.where(np.isfinite(lam) & (lam > 0), p, np.nan)
    p = np.where(i == j, 0.0, p)
    return BlockTest(p_value=p, sigma=sigma_from_p(p))


def arrow_significance(
    green_A2: ArrayLike, pairs: ArrayLike, dof: float, rotation: ArrayLike | None = None
) -> np.ndarray:
    """Significance (σ) of each arrow: the two rows of ``R G_ij`` for every pair ``(i, j)``.

    Row ``a`` is the arrow drawn at atom j for the reference i's displacement along the frame
    axis ``a`` (``a = 0`` y, ``1`` x; :func:`~.correlations.correlation_arrows`).  The test is
    exact for Gaussian displacements (module docstring).

    Parameters
    ----------
    green_A2
        ``(2N, 2N)`` Green's tensor, Å².
    pairs
        ``(P, 2)`` pairs ``(reference i, atom j)``.
    dof
        Wishart degrees of freedom (see :func:`block_significance`); at most 2 gives NaN.
    rotation
        Lab → local frame rotation ``R`` (:func:`~.correlations.local_frame`); identity when
        None.

    Returns
    -------
    numpy.ndarray
        ``(P, 2)`` σ per row (y row, x row); ``+inf`` for self pairs, NaN where undefined.
    """
    green = np.asarray(green_A2, dtype=float)
    pairs = _pairs(pairs)
    n = _check_dof(dof, 2.0)
    r = np.eye(2) if rotation is None else np.asarray(rotation, dtype=float)
    i, j = pairs[:, 0], pairs[:, 1]
    idx = np.arange(i.size)
    s_ii = np.einsum("ab,pbc,dc->pad", r, _blocks(green, i, i)[idx, idx], r)
    s_jj = _blocks(green, j, j)[idx, idx]
    c = np.einsum("ab,pbc->pac", r, _blocks(green, i, j)[idx, idx])  # rows: reference along a
    with np.errstate(invalid="ignore", divide="ignore"):
        explained = np.einsum(
            "pac,pac->pa", c, np.linalg.solve(s_jj, np.swapaxes(c, 1, 2)).swapaxes(1, 2)
        )
        r2 = np.clip(explained / np.diagonal(s_ii, axis1=1, axis2=2), 0.0, 1.0)
        f_stat = r2 / (1.0 - r2) * (n - 2.0) / 2.0
    p = stats.f.sf(f_stat, 2.0, n - 2.0)
    p = np.where(np.isfinite(r2), p, np.nan)
    sigma = sigma_from_p(p)
    sigma[i == j] = np.inf
    return sigma


def class_members(
    cell_index: ArrayLike, basis_index: ArrayLike, keys: ArrayLike, valid: ArrayLike
) -> list[np.ndarray]:
    """The atom pairs of each unit-cell class ``(Δl1, Δl2, κ, κ')`` among the valid atoms.

    Parameters
    ----------
    cell_index, basis_index
        ``(N, 2)`` and ``(N,)`` lattice indices.
    keys
        ``(C, 4)`` class keys (``UnitCellAverages.keys``).
    valid
        ``(N,)`` bool, the atoms that entered the averages.

    Returns
    -------
    list of numpy.ndarray
        ``(P_c, 2)`` pairs ``(i, j)`` with ``l_j − l_i = Δl``, ``κ_i = κ``, ``κ_j = κ'``.
    """
    cells = np.asarray(cell_index, dtype=np.int64)
    basis = np.asarray(basis_index, dtype=np.int64).ravel()
    ok = np.flatnonzero(np.asarray(valid, dtype=bool))
    site = {(int(c[0]), int(c[1]), int(k)): int(a) for a, c, k in zip(ok, cells[ok], basis[ok])}
    members = []
    for dl1, dl2, k1, k2 in np.asarray(keys, dtype=np.int64).reshape(-1, 4):
        first = ok[basis[ok] == k1]
        targets = [
            site.get((int(cells[a, 0] + dl1), int(cells[a, 1] + dl2), int(k2))) for a in first
        ]
        found = [(int(a), t) for a, t in zip(first, targets) if t is not None]
        members.append(np.array(found, dtype=int).reshape(-1, 2))
    return members


def class_significance(
    green_A2: ArrayLike,
    members: list[np.ndarray],
    dof: float,
    rotation: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Significance (σ) of unit-cell-averaged blocks and of their two arrows.

    Parameters
    ----------
    green_A2
        ``(2N, 2N)`` Green's tensor, Å².
    members
        Per class, its ``(P, 2)`` atom pairs (:func:`class_members`).
    dof
        Wishart degrees of freedom.
    rotation
        Lab → local frame rotation of the arrows (the block test does not depend on it).

    Returns
    -------
    block_sigma : numpy.ndarray
        ``(C,)`` σ of the averaged block (``+inf`` for self classes, NaN for empty classes).
    arrow_sigma : numpy.ndarray
        ``(C, 2)`` σ of its y and x rows in the frame.
    """
    green = np.asarray(green_A2, dtype=float)
    r = np.eye(2) if rotation is None else np.asarray(rotation, dtype=float)
    block = np.full(len(members), np.nan)
    arrows = np.full((len(members), 2), np.nan)
    for c, pairs in enumerate(members):
        pairs = _pairs(pairs)
        if pairs.shape[0] == 0:
            continue
        if np.all(pairs[:, 0] == pairs[:, 1]):
            block[c], arrows[c] = np.inf, np.inf
            continue
        if pairs.shape[0] == 1:
            block[c] = block_significance(green, pairs, dof).sigma[0]
            arrows[c] = arrow_significance(green, pairs, dof, r)[0]
            continue
        n = _check_dof(dof, 0.0)
        i, j = pairs[:, 0], pairs[:, 1]
        a, b = _blocks(green, i, i), _blocks(green, j, j)
        x, y = _blocks(green, i, j).copy(), _blocks(green, j, i).copy()
        diag = np.arange(pairs.shape[0])
        x[diag, diag] = 0.0  # the tested blocks are zero under the hypothesis
        y[diag, diag] = 0.0
        cov = (np.einsum("pqac,pqbd->abcd", a, b) + np.einsum("pqad,pqbc->abcd", x, y)) / (
            n * pairs.shape[0] ** 2
        )  # Cov(mean G_ab, mean G_cd)
        mean = _blocks(green, i, j)[diag, diag].mean(axis=0)
        rot = np.einsum("ea,abcd,fc->ebfd", r, cov, r)  # rows in the frame
        v = r @ mean
        with np.errstate(invalid="ignore"):
            try:
                t_block = float(mean.ravel() @ np.linalg.solve(cov.reshape(4, 4), mean.ravel()))
                block[c] = sigma_from_p(stats.chi2.sf(t_block, 4))
                for row in range(2):
                    t_row = float(v[row] @ np.linalg.solve(rot[row, :, row, :], v[row]))
                    arrows[c, row] = sigma_from_p(stats.chi2.sf(t_row, 2))
            except np.linalg.LinAlgError:
                continue
    return block, arrows
