"""Gaussian likelihood of a displacement ensemble given force constants (issue 14).

Displacements ``u = R − mean over states`` (per slice) of the atoms of a window are
Gaussian with covariance ``k_B T Φ⁺``; with the mean estimated from the same N states, the
scatter matrix ``S = Σ_(states, slices) u uᵀ`` is Wishart with ``ν = slices · (N − 1)`` degrees
of freedom, so ``−2 log L = ν log det Σ + tr(Σ⁻¹ S) + const``.  Both classes here give that
function of the force constants θ (:mod:`.force_constant_model`), its gradient and Hessian:

* :class:`PeriodicLikelihood` — the block is one period of the crystal.  ``Σ`` is block-diagonal
  in q: ``−2 log L = Σ_q [−ν log det Φ̃(q) + tr(Φ̃(q) S(q)) / k_B T]``, convex in θ; at Γ the
  two rigid translations (the null space of ``Φ̃(0)``) are left out.
* :class:`OpenLikelihood` — the atoms are a window of a periodic crystal of ``crystal`` cells:
  any set of atoms (``(l1, l2, κ)`` sites), whole cells or not.  ``Σ`` is the window's block of
  ``k_B T Φ⁺`` (a q sum over the crystal's grid, gathered per pair of sites by their cell
  difference and basis atoms), with the window's rigid translations projected out of data and
  model.

``evaluate(θ) + offset`` is ``−2 log L`` up to a constant that depends on the data only and is
the same for both classes, so their values can be compared.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.force_constant_model import ForceConstantModel
from caviar_napari.analysis.phonons import commensurate_q_frac
from caviar_napari.errors import InputError

__all__ = [
    "DisplacementStatistics",
    "OpenLikelihood",
    "PeriodicLikelihood",
    "displacement_statistics",
    "window_statistics",
]


def _translation_complement(d: int) -> np.ndarray:
    """``(d, d − 2)`` orthonormal basis orthogonal to the (unweighted) rigid translations."""
    T = np.zeros((d, 2))
    T[0::2, 0] = 1.0
    T[1::2, 1] = 1.0
    q, _ = np.linalg.qr(np.concatenate([T, np.eye(d)], axis=1))
    return q[:, 2:d]


def _trace_products(A: np.ndarray, B: np.ndarray | None = None) -> np.ndarray:
    """``Re tr(A_p B_r)`` for stacks ``(p, ..., n, n)``: a ``(p, r)`` matrix."""
    B = A if B is None else B
    a = A.reshape(A.shape[0], -1)
    b = np.swapaxes(B, -1, -2).reshape(B.shape[0], -1)
    return (a @ b.T).real


def _logdet_and_inverse(M: np.ndarray) -> tuple[float, np.ndarray] | None:
    """``log det`` and inverse of a stack of Hermitian matrices; None if one is not PD."""
    try:
        chol = np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        return None
    logdet = 2.0 * float(np.sum(np.log(np.abs(np.diagonal(chol, axis1=-2, axis2=-1)))))
    return logdet, np.linalg.inv(M)


@dataclass(frozen=True, eq=False)
class DisplacementStatistics:
    """Centred displacements of the atoms of a window of the crystal (its *sites*).

    Attributes
    ----------
    u
        ``(N, s, A, 2)`` displacements (Å) of the ``A`` sites, centred over states per slice.
    nu
        Degrees of freedom of the scatter, ``s (N − 1)``.
    cell
        ``(A, 2)`` int unit-cell index ``(l1, l2)`` of each site, the window's lowest at 0.
    basis
        ``(A,)`` int basis index κ of each site.
    n_basis
        Basis atoms per cell κ.
    block
        ``(L1, L2)`` when the sites are exactly the whole cells of an ``L1 × L2`` block, in
        ``(l1, l2, κ)`` order (the periodic description needs this), else None.
    """

    u: np.ndarray
    nu: int
    cell: np.ndarray
    basis: np.ndarray
    n_basis: int
    block: tuple[int, int] | None = None

    @property
    def cells(self) -> tuple[int, int]:
        """``(L1, L2)``: the extent of the window in cells (the block itself for a block)."""
        extent = self.cell.max(axis=0) + 1
        return int(extent[0]), int(extent[1])

    @property
    def n_sites(self) -> int:
        """Number of sites ``A``."""
        return int(self.basis.size)

    def with_displacements(self, positions: np.ndarray) -> DisplacementStatistics:
        """The same sites with other positions ``(N', s, A, 2)`` (bootstrap replicas), centred."""
        R = np.asarray(positions, dtype=float)
        return dataclasses.replace(
            self, u=R - R.mean(axis=0, keepdims=True), nu=R.shape[1] * (R.shape[0] - 1)
        )

    def block_displacements(self) -> np.ndarray:
        """``(N, s, L1, L2, κ, 2)`` displacements of a block.

        Raises
        ------
        InputError
            If the sites are not the whole cells of a block.
        """
        if self.block is None:
            raise InputError(
                "the periodic description needs a block of whole cells; these atoms are an "
                "irregular window (use the open boundary)"
            )
        L1, L2 = self.block
        return self.u.reshape(*self.u.shape[:2], L1, L2, self.n_basis, 2)


def displacement_statistics(positions: ArrayLike) -> DisplacementStatistics:
    """Centre positions ``(N, s, L1, L2, κ, 2)`` of a block of whole cells over states (eq. 1).

    Raises
    ------
    InputError
        Fewer than two states.
    """
    R = np.asarray(positions, dtype=float)
    if R.ndim != 6 or R.shape[-1] != 2:
        raise InputError(f"positions must be (state, slice, L1, L2, κ, 2), got shape {R.shape}")
    L1, L2, kappa = R.shape[2:5]
    sites = _block_sites(L1, L2, kappa)
    return window_statistics(
        R.reshape(*R.shape[:2], -1, 2), sites[:, :2], sites[:, 2], kappa, block=(L1, L2)
    )


def _block_sites(L1: int, L2: int, n_basis: int) -> np.ndarray:
    """``(L1 · L2 · κ, 3)`` sites ``(l1, l2, κ)`` of a block of whole cells, in that order."""
    l1, l2, kappa = np.meshgrid(np.arange(L1), np.arange(L2), np.arange(n_basis), indexing="ij")
    return np.stack([l1.ravel(), l2.ravel(), kappa.ravel()], axis=-1)


def window_statistics(
    positions: ArrayLike,
    cell_index: ArrayLike,
    basis_index: ArrayLike,
    n_basis: int,
    *,
    block: tuple[int, int] | None = None,
) -> DisplacementStatistics:
    """Centre positions ``(N, s, A, 2)`` of any set of atoms over states (eq. 1).

    Parameters
    ----------
    positions
        ``(N, s, A, 2)`` positions ``(y, x)``, Å, finite.
    cell_index, basis_index
        ``(A, 2)`` and ``(A,)`` int lattice indices of the atoms (shifted here so that the
        window's lowest cell index is 0).
    n_basis
        Basis atoms per cell κ.
    block
        ``(L1, L2)`` if the atoms are the whole cells of that block in ``(l1, l2, κ)`` order.

    Raises
    ------
    InputError
        Fewer than two states or two atoms, mismatched shapes, a basis index out of range, or
        a repeated site.

    Examples
    --------
    >>> import numpy as np
    >>> R = np.zeros((3, 1, 2, 2)); R[1, 0, 0, 0] = 0.01
    >>> stats = window_statistics(R, [[4, 0], [5, 2]], [0, 1], 2)
    >>> stats.cells, stats.nu, stats.block is None
    ((2, 3), 2, True)
    """
    R = np.asarray(positions, dtype=float)
    cell = np.asarray(cell_index, dtype=np.int64)
    basis = np.asarray(basis_index, dtype=np.int64)
    if R.ndim != 4 or R.shape[-1] != 2:
        raise InputError(f"positions must be (state, slice, atom, 2), got shape {R.shape}")
    n_states, n_sites = R.shape[0], R.shape[2]
    if cell.shape != (n_sites, 2) or basis.shape != (n_sites,):
        raise InputError(
            f"cell_index {cell.shape} / basis_index {basis.shape} do not match {n_sites} atoms"
        )
    if n_states < 2:
        raise InputError(f"force constants need at least 2 states, got {n_states}")
    if n_sites < 2:
        raise InputError(f"force constants need at least 2 atoms, got {n_sites}")
    if basis.min() < 0 or basis.max() >= n_basis:
        raise InputError(
            f"basis indices must be 0 … {n_basis - 1}, got {sorted(set(basis.tolist()))}"
        )
    cell = cell - cell.min(axis=0)
    key = (cell[:, 0] * (cell[:, 1].max() + 1) + cell[:, 1]) * n_basis + basis
    if np.unique(key).size != n_sites:
        raise InputError("two atoms of the window share a cell index and basis index")
    if block is not None:
        L1, L2 = (int(b) for b in block)
        if not np.array_equal(_block_sites(L1, L2, n_basis), np.c_[cell, basis]):
            raise InputError(
                f"the atoms are not the whole cells of an {L1} × {L2} block in (l1, l2, κ) order"
            )
        block = (L1, L2)
    return DisplacementStatistics(
        u=R - R.mean(axis=0, keepdims=True),
        nu=R.shape[1] * (n_states - 1),
        cell=cell,
        basis=basis,
        n_basis=int(n_basis),
        block=block,
    )


class PeriodicLikelihood:
    """``−2 log L`` of a periodic block (module docstring), block-diagonal in q."""

    def __init__(self, model: ForceConstantModel, stats: DisplacementStatistics, kT: float) -> None:
        stats.block_displacements()  # raises unless the sites are a block of whole cells
        L1, L2 = stats.block
        q = commensurate_q_frac(L1, L2)
        d = 2 * stats.n_basis
        B = model.basis_q(q)  # (nq, p, d, d)
        Q = _translation_complement(d)  # Γ: leave out the rigid translations
        self.Q = Q
        self.kT = kT
        self.B = B[1:]
        self.B0 = np.einsum("ia,pij,jb->pab", Q, B[0], Q)
        self.n_dims = L1 * L2 * d - 2
        self.set_data(stats)

    def set_data(self, stats: DisplacementStatistics) -> None:
        """Use the scatter of other displacements on the same block (bootstrap replicas)."""
        d = self.Q.shape[0]
        u = stats.block_displacements()
        ut = np.fft.fft2(u, axes=(2, 3), norm="ortho").reshape(*u.shape[:2], -1, d)
        S = np.einsum("nsqi,nsqj->qij", ut, ut.conj())  # (nq, d, d) scatter
        Q = self.Q
        self.linear = (
            np.einsum("qpij,qji->p", self.B, S[1:]).real
            + np.einsum("pab,ba->p", self.B0, Q.T @ S[0] @ Q).real
        ) / self.kT
        self.nu = stats.nu

    @property
    def offset(self) -> float:
        """Add to ``evaluate``'s value for ``−2 log L`` comparable between boundaries:
        ``ν D log k_B T`` (``log det C = D log k_B T − log det Φ̃``)."""
        return self.nu * self.n_dims * math.log(self.kT)

    def quadratic(self, theta: np.ndarray) -> float:
        """``Σ_q tr(Φ̃ S) / k_B T`` (the data term)."""
        return float(self.linear @ theta)

    def evaluate(
        self, theta: np.ndarray, derivatives: bool = True
    ) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """``(−2 log L, gradient, Hessian)`` up to a constant; ``inf`` outside the stable set."""
        phi = np.tensordot(theta, self.B, axes=(0, 1))
        phi0 = np.tensordot(theta, self.B0, axes=(0, 0))
        parts = [_logdet_and_inverse(phi), _logdet_and_inverse(phi0[None])]
        if any(part is None for part in parts):
            return math.inf, None, None
        (ld, inv), (ld0, inv0) = parts
        f = -self.nu * (ld + ld0) + self.quadratic(theta)
        if not derivatives:
            return f, None, None
        X = inv[:, None] @ self.B  # Φ̃⁻¹ B_p, (q, p, d, d)
        X0 = inv0[0] @ self.B0
        grad = self.linear - self.nu * (np.einsum("qpii->p", X).real + np.einsum("pii->p", X0).real)
        hess = self.nu * (_trace_products(np.moveaxis(X, 1, 0)) + _trace_products(X0))
        return f, grad, hess

    def observed_hessian(self, theta: np.ndarray) -> np.ndarray:
        """Exact Hessian (the data term is linear, so observed = expected information)."""
        return self.evaluate(theta)[2]


class OpenLikelihood:
    """``−2 log L`` of a window cut out of a periodic crystal of ``crystal`` cells."""

    def __init__(
        self,
        model: ForceConstantModel,
        stats: DisplacementStatistics,
        kT: float,
        crystal: tuple[int, int],
    ) -> None:
        M1, M2 = crystal
        d = 2 * stats.n_basis
        q = commensurate_q_frac(M1, M2)
        self.B = model.basis_q(q)  # (Mq, p, d, d)
        self.crystal = (M1, M2)
        self.kT = kT
        self.d = d
        self.Qc = _translation_complement(d)
        # each pair of sites' cell difference Δ = l − l' on the crystal's M1 × M2 grid: the
        # real-space kernel Σ_q K(q) exp(2πi q·Δ) / Mq is an inverse FFT over the grid (q in
        # commensurate_q_frac order, the FFT's), read at Δ mod M
        cell = stats.cell
        d1 = (cell[:, None, 0] - cell[None, :, 0]) % M1
        d2 = (cell[:, None, 1] - cell[None, :, 1]) % M2
        self.delta_index = d1 * M2 + d2  # (A, A) into the flattened grid
        self.rows = 2 * stats.basis[:, None] + np.arange(2)  # (A, 2): rows of Φ̃ per site
        n = 2 * stats.n_sites
        T = np.zeros((n, 2))
        T[0::2, 0] = 1.0 / math.sqrt(n / 2)
        T[1::2, 1] = 1.0 / math.sqrt(n / 2)
        self.T = T
        self.n = n
        self.n_dims = n - 2
        self.c = 1.0  # Å², fixed: the regulariser c T Tᵀ adds a constant to log det
        self.set_data(stats)

    def set_data(self, stats: DisplacementStatistics) -> None:
        """Use the scatter of other displacements on the same window (bootstrap replicas)."""
        u = stats.u.reshape(-1, self.n)
        u = u - (u @ self.T) @ self.T.T  # the window's rigid translations left out
        self.S = u.T @ u
        self.nu = stats.nu

    # -- covariance and its derivatives in real space --------------------------------------
    def _inverse_q(self, theta: np.ndarray) -> np.ndarray | None:
        phi = np.tensordot(theta, self.B, axes=(0, 1))
        inv = np.zeros_like(phi)
        rest = _logdet_and_inverse(phi[1:])
        phi0 = self.Qc.T @ phi[0] @ self.Qc
        zero = _logdet_and_inverse(phi0[None])
        if rest is None or zero is None:
            return None
        inv[1:] = rest[1]
        inv[0] = self.Qc @ zero[1][0] @ self.Qc.T  # pseudo-inverse: translations left out
        return inv

    def _window(self, kernel_q: np.ndarray) -> np.ndarray:
        """Real-space window of q-space kernels ``(k, Mq, d, d)``: ``P Σ P``, ``(k, n, n)``.

        ``Σ_(l κα, l' κ'β) = (1/Mq) Σ_q K_(κα, κ'β)(q) exp(2πi q·(l − l'))``: the inverse FFT
        of the kernels over the crystal's grid (real: ``K(−q) = K(q)*``), read per pair of
        sites.  Memory ``O(k · Mq · d²)``, not ``O(nΔ · Mq)``.
        """
        k, d = kernel_q.shape[0], self.d
        M1, M2 = self.crystal
        g = np.fft.ifft2(kernel_q.reshape(k, M1, M2, d, d), axes=(1, 2)).real
        g = np.moveaxis(g.reshape(k, M1 * M2, d, d), 0, -1)  # (M1·M2, d, d, k)
        r = self.rows
        w = g[self.delta_index[:, :, None, None], r[:, None, :, None], r[None, :, None, :]]
        a = w.shape[0]  # w: (A, A, 2, 2, k) → Σ (k, 2A, 2A)
        sigma = w.transpose(4, 0, 2, 1, 3).reshape(k, 2 * a, 2 * a)
        sigma = 0.5 * (sigma + np.swapaxes(sigma, 1, 2))
        T = self.T
        Ts = T @ (T.T @ sigma)  # (k, n, n)
        return sigma - Ts - np.swapaxes(Ts, 1, 2) + T @ (T.T @ sigma @ T) @ T.T

    def _sigma(self, inv_q: np.ndarray) -> np.ndarray:
        return self.kT * self._window(inv_q[None])[0] + self.c * (self.T @ self.T.T)

    def _dsigma(self, inv_q: np.ndarray) -> np.ndarray:
        X = inv_q[:, None] @ self.B  # Φ̃⁻¹ B_p, (q, p, d, d)
        dq = -np.moveaxis(X @ inv_q[:, None], 1, 0)  # (p, q, d, d)
        return self.kT * self._window(dq)

    @property
    def offset(self) -> float:
        """Add to ``evaluate``'s value for ``−2 log L`` comparable between boundaries: the
        regulariser ``c T Tᵀ`` adds ``2 ν log c`` to ``ν log det Σ̃``."""
        return -2.0 * self.nu * math.log(self.c)

    def quadratic(self, theta: np.ndarray) -> float:
        """``tr(Σ⁻¹ S)`` (the data term)."""
        inv_q = self._inverse_q(theta)
        if inv_q is None:
            return math.inf
        return float(np.sum(np.linalg.inv(self._sigma(inv_q)) * self.S))

    def evaluate(
        self, theta: np.ndarray, derivatives: bool = True
    ) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """``(−2 log L, gradient, expected Fisher Hessian)`` up to a constant."""
        inv_q = self._inverse_q(theta)
        if inv_q is None:
            return math.inf, None, None
        sigma = self._sigma(inv_q)
        part = _logdet_and_inverse(sigma)
        if part is None:
            return math.inf, None, None
        logdet, sinv = part
        f = self.nu * logdet + float(np.sum(sinv * self.S))
        if not derivatives:
            return f, None, None
        ds = self._dsigma(inv_q)  # (p, n, n)
        W = self.nu * sinv - sinv @ self.S @ sinv
        grad = np.sum(W[None] * ds, axis=(1, 2))  # tr(W Σ_p), both symmetric
        Y = sinv @ ds
        hess = self.nu * _trace_products(Y)
        return f, grad, 0.5 * (hess + hess.T)

    def one_step(self, theta: np.ndarray, replicas: list[DisplacementStatistics]) -> np.ndarray:
        """One Fisher-scoring step from ``theta`` for each replica's data: ``(n, p)``.

        ``θ* = θ − F(θ)⁻¹ g*(θ)`` with ``g*_p = tr((ν Σ⁻¹ − Σ⁻¹ S* Σ⁻¹) Σ_p)``: everything but
        the replica's scatter ``S*`` is evaluated once at ``theta`` (a linearised bootstrap).
        """
        inv_q = self._inverse_q(theta)
        sinv = np.linalg.inv(self._sigma(inv_q))
        ds = self._dsigma(inv_q)
        Y = sinv @ ds
        fisher = self.nu * _trace_products(Y)
        base = self.nu * np.trace(Y, axis1=1, axis2=2)  # ν tr(Σ⁻¹ Σ_p)
        A = (Y @ sinv).reshape(Y.shape[0], -1)  # Σ⁻¹ Σ_p Σ⁻¹
        out = []
        for rep in replicas:  # a few hundred replicas, each a matrix–vector product
            u = rep.u.reshape(-1, self.n)
            u = u - (u @ self.T) @ self.T.T
            grad = base * (rep.nu / self.nu) - A @ (u.T @ u).ravel()
            out.append(theta - np.linalg.solve(fisher * (rep.nu / self.nu), grad))
        return np.array(out).reshape(-1, theta.size)

    def observed_hessian(self, theta: np.ndarray) -> np.ndarray:
        """Exact Hessian of ``−2 log L`` (second derivatives of Σ included)."""
        inv_q = self._inverse_q(theta)
        sigma = self._sigma(inv_q)
        sinv = np.linalg.inv(sigma)
        ds = self._dsigma(inv_q)
        p = ds.shape[0]
        W = self.nu * sinv - sinv @ self.S @ sinv
        Y = sinv @ ds
        Z = (sinv @ self.S) @ Y  # Σ⁻¹ S Σ⁻¹ Σ_p
        X = inv_q[:, None] @ self.B  # Φ̃⁻¹ B_p
        hess = -self.nu * _trace_products(Y) + 2.0 * _trace_products(Z, Y)
        a, b = np.triu_indices(p)  # p(p+1)/2 second derivatives of Σ
        d2 = (X[:, a] @ X[:, b] + X[:, b] @ X[:, a]) @ inv_q[:, None]  # (q, pairs, d, d)
        vals = np.sum(W[None] * (self.kT * self._window(np.moveaxis(d2, 1, 0))), axis=(1, 2))
        hess[a, b] += vals
        hess[b[a != b], a[a != b]] += vals[a != b]
        return 0.5 * (hess + hess.T)
