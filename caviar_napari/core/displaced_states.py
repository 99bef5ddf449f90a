"""Object states as displaced atoms: every state is the mean object with its atoms moved.

``state_model: displacements`` (docs/conventions.md §2). A state ``k`` is

    ``O_k(s, r) = Ō(s, r) − Σ_c U_kc(s, r) ∂_c Ō(s, r)``,   ``U_kc(s, r) = u[k, a(s, r), c]``,

the first-order Taylor expansion of the mean object ``Ō`` shifted by a displacement field that
is constant, ``u[k, a]`` (Å, ``c`` = y, x), on the *cell* of each atom site ``a``: the pixels of
its slice nearer to it than to any other site of that slice, within ``CELL_RADIUS`` nearest-
neighbour distances (pixels outside every cell do not move). ``∂_c`` is the spectral derivative
(1/Å). The sites are LoG peaks of each slice's phase of the mean object inside the scanned
field, found once at the stage's start (:func:`find_cells`).

Why: the data depend on the states only through their covariance, and a free state has a
whole object's worth of variables. Two numbers per atom and state are what CAVIAR measures
anyway (the centre-of-mass analysis reads exactly these shifts); fitted directly they reach the
thermal amplitude in tens of iterations where free states need hundreds, and the counting
noise has far fewer ways in. A ``free`` stage after this one starts from these states.

Gauges. The displacements have zero mean over the states (``Σ_k u_k = 0``), so the mean of
the states is ``Ō`` exactly; with ``remove_state_shifts`` each state's mean displacement over
its sites is zero too (a rigid shift of a whole state is a probe shift, see
:class:`~caviar_napari.data.config.StageConfig`). Both are orthogonal projections of ``u`` and
of its gradient, so the optimiser minimises the objective restricted to that subspace exactly.

Gradients (``g_k = ∂f/∂O_k*``, Wirtinger; ``∂_c`` is anti-Hermitian)::

    ∂f/∂Ō*     = Σ_k g_k + Σ_c ∂_c(Σ_k U_kc g_k)
    ∂f/∂u_kac  = −2 Re Σ_{(s, r) ∈ cell a} conj(g_k) ∂_c Ō
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from caviar_napari.core.backend import Backend
from caviar_napari.core.grid import px_to_A
from caviar_napari.core.sites import log_peaks_A, nearest_neighbour_distance

__all__ = [
    "CELL_RADIUS",
    "MIN_SLICE_CONTRAST",
    "AtomCells",
    "DisplacedStates",
    "cells_from_sites",
    "find_cells",
    "project_displacements",
]

#: A site's cell reaches at most this many nearest-neighbour distances from it.
CELL_RADIUS = 0.6

#: Slices whose phase range in the scanned field is below this fraction of the largest
#: slice's get no sites (vacuum, or a slice the sample does not reach).
MIN_SLICE_CONTRAST = 0.1


@dataclass(frozen=True)
class AtomCells:
    """Atom sites of the mean object and the pixels each one moves.

    Attributes
    ----------
    sites
        ``(A, 3)`` sites ``(slice, y, x)``: slice index, then y, x in Å (object frame).
    labels
        ``(S, H, W)`` int: the site whose cell holds the pixel, or ``-1`` (not moved).
    """

    sites: np.ndarray
    labels: np.ndarray

    @property
    def n_sites(self) -> int:
        """Number of sites ``A``."""
        return int(self.sites.shape[0])


def cells_from_sites(
    sites: np.ndarray,
    shape: tuple[int, int, int],
    pixel_size_A: tuple[float, float],
    origin_A: tuple[float, float],
) -> AtomCells:
    """The cells (nearest site of the slice, within ``CELL_RADIUS`` × the median in-slice d_nn).

    Parameters
    ----------
    sites
        ``(A, 3)`` ``(slice, y, x)`` (slice index; Å).
    shape
        ``(S, H, W)`` of the object.
    pixel_size_A, origin_A
        Object grid (conventions §1).
    """
    sites = np.asarray(sites, dtype=np.float64).reshape(-1, 3)
    n_slices, h, w = shape
    labels = np.full(shape, -1, dtype=np.int32)
    if len(sites) == 0:
        return AtomCells(sites, labels)
    yx = sites[:, 1:]
    by_slice = [np.flatnonzero(np.round(sites[:, 0]).astype(int) == s) for s in range(n_slices)]
    # d_nn within each slice: the same column seen in several slices is not a neighbour
    d_nn = [nearest_neighbour_distance(yx[m]) for m in by_slice if m.size > 1]
    radius = CELL_RADIUS * (float(np.median(d_nn)) if d_nn else 1.0)
    iy, ix = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    pixels_A = px_to_A(np.stack([iy.ravel(), ix.ravel()], axis=1), origin_A, pixel_size_A)
    for s, mine in enumerate(by_slice):
        if mine.size == 0:
            continue
        dist, nearest = cKDTree(yx[mine]).query(pixels_A, distance_upper_bound=radius)
        inside = np.isfinite(dist)
        flat = labels[s].reshape(-1)
        flat[inside] = mine[nearest[inside]]
    return AtomCells(sites, labels)


def find_cells(
    mean_object: np.ndarray,
    pixel_size_A: tuple[float, float],
    origin_A: tuple[float, float],
    region: tuple[slice, slice],
) -> AtomCells:
    """Sites and cells of the mean object: LoG peaks of each slice's phase in ``region``.

    Parameters
    ----------
    mean_object
        ``(S, H, W)`` complex mean object (host array).
    pixel_size_A, origin_A
        Object grid (conventions §1).
    region
        ``(rows, columns)`` of the scanned field: sites outside it are dropped (nothing
        there is measured).

    Returns
    -------
    AtomCells
        Sites ordered by slice, then y, then x.
    """
    phase = np.angle(np.asarray(mean_object))
    n_slices = phase.shape[0]
    ranges = np.array([np.ptp(phase[s][region]) for s in range(n_slices)])
    lo = np.array([region[0].start, region[1].start], dtype=float)
    hi = np.array([region[0].stop - 1, region[1].stop - 1], dtype=float)
    corner_A = px_to_A(lo, origin_A, pixel_size_A)
    # half a pixel of slack: a peak on the field's first or last pixel is inside it, whatever
    # the rounding of its position in Å
    lo_A = px_to_A(lo - 0.5, origin_A, pixel_size_A)
    hi_A = px_to_A(hi + 0.5, origin_A, pixel_size_A)
    found = []
    for s in range(n_slices):
        if ranges[s] <= MIN_SLICE_CONTRAST * ranges.max():
            continue
        # LoG on the scanned field alone, as caviar atoms detects: outside it the object is
        # held only by the probe tails, and its noise would set the relative threshold
        peaks = log_peaks_A(phase[s][region], pixel_size_A, tuple(corner_A))
        keep = np.all((peaks >= lo_A) & (peaks <= hi_A), axis=1)
        found.extend((s, y, x) for y, x in peaks[keep])
    sites = np.array(found, dtype=np.float64).reshape(-1, 3)
    return cells_from_sites(sites, phase.shape, pixel_size_A, origin_A)


def project_displacements(xp: Any, u: Any, remove_shifts: bool) -> Any:
    """``u`` ``(N, A, 2)`` with zero mean over the states (and over each state's sites)."""
    u = u - u.mean(axis=0, keepdims=True)
    if remove_shifts:
        u = u - u.mean(axis=1, keepdims=True)
    return u


class DisplacedStates:
    """The map ``(Ō, u) → O_k`` of one stage and its adjoint.

    Parameters
    ----------
    backend
        Array backend.
    cells
        Sites and cells (:func:`find_cells`).
    pixel_size_A
        ``(dy, dx)``, Å.
    remove_shifts
        Also keep each state's mean displacement over its sites at zero.
    """

    def __init__(
        self, backend: Backend, cells: AtomCells, pixel_size_A: tuple[float, float], *,
        remove_shifts: bool = True,
    ) -> None:  # fmt: skip
        xp = backend.xp
        self.backend = backend
        self.cells = cells
        self.remove_shifts = bool(remove_shifts)
        n_slices, h, w = cells.labels.shape
        labels = np.where(cells.labels < 0, cells.n_sites, cells.labels).reshape(-1)
        self.labels = xp.asarray(labels)  # the last index: "no site" (zero displacement)
        rdt = backend.real_dtype
        ky = np.fft.fftfreq(h, pixel_size_A[0])[:, None]
        kx = np.fft.fftfreq(w, pixel_size_A[1])[None, :]
        self.ik = [xp.asarray(2j * np.pi * k, dtype=backend.complex_dtype) for k in (ky, kx)]
        self.shape = (n_slices, h, w)
        self._rdt = rdt

    def derivatives(self, mean: Any) -> list[Any]:
        """``[∂_y Ō, ∂_x Ō]`` of the ``(S, H, W)`` mean object (spectral, 1/Å)."""
        spec = self.backend.fft2(mean)
        return [self.backend.ifft2(spec * ik) for ik in self.ik]

    def field(self, u: Any) -> list[Any]:
        """``[U_y, U_x]``, each ``(N, S, H, W)`` real: the displacement of every pixel, Å."""
        xp = self.backend.xp
        n = u.shape[0]
        padded = xp.concatenate([u, xp.zeros((n, 1, 2), dtype=u.dtype)], axis=1)
        return [padded[:, self.labels, c].reshape(n, *self.shape) for c in range(2)]

    def states(self, mean: Any, u: Any) -> Any:
        """``(N, S, H, W)`` states from the ``(1, S, H, W)`` mean and ``(N, A, 2)`` ``u``."""
        d = self.derivatives(mean[0])
        uy, ux = self.field(u)
        return mean - (uy * d[0] + ux * d[1])

    def contract(self, mean: Any, u: Any, g: Any) -> tuple[Any, Any]:
        """``(∂f/∂Ō*, ∂f/∂u)`` from the states' gradient ``g = ∂f/∂O_k*`` ``(N, S, H, W)``.

        The displacement gradient is projected onto the gauge (:func:`project_displacements`).
        """
        be, xp = self.backend, self.backend.xp
        d = self.derivatives(mean[0])
        fields = self.field(u)
        spectrum = sum(be.fft2((fields[c] * g).sum(axis=0)) * self.ik[c] for c in range(2))
        g_mean = (g.sum(axis=0) + be.ifft2(spectrum))[None]
        n, a = u.shape[0], self.cells.n_sites
        g_u = xp.zeros((n, a, 2), dtype=np.float64)
        for c in range(2):
            weights = -2.0 * (g.conj() * d[c]).real  # (N, S, H, W)
            for k in range(n):
                sums = xp.bincount(self.labels, weights=weights[k].reshape(-1), minlength=a + 1)
                g_u[k, :, c] = sums[:a]
        g_u = project_displacements(xp, g_u, self.remove_shifts)
        return g_mean.astype(g.dtype, copy=False), g_u.astype(self._rdt, copy=False)

    def fit(self, states: Any) -> tuple[Any, Any]:
        """Mean object and least-squares displacements of given ``(N, S, H, W)`` states.

        Per site, the 2 × 2 normal equations of ``δ_k ≈ −u_ka · ∇Ō`` over its cell; a site
        whose cell has no gradient gets zero. Used when a stage starts from several states.
        """
        xp = self.backend.xp
        mean = states.mean(axis=0, keepdims=True)
        dev = states - mean
        d = self.derivatives(mean[0])
        a = self.cells.n_sites

        def cell_sum(values: Any) -> Any:
            return xp.bincount(self.labels, weights=values.reshape(-1), minlength=a + 1)[:a]

        gram = xp.stack(
            [
                xp.stack([cell_sum((d[i].conj() * d[j]).real) for j in range(2)], axis=-1)
                for i in range(2)
            ],
            axis=-2,
        )  # (A, 2, 2)
        n = states.shape[0]
        rhs = xp.stack(
            [
                xp.stack([cell_sum(-(d[c].conj() * dev[k]).real) for c in range(2)], axis=-1)
                for k in range(n)
            ]
        )  # (N, A, 2)
        det = gram[:, 0, 0] * gram[:, 1, 1] - gram[:, 0, 1] * gram[:, 1, 0]
        ok = det > 1e-12 * xp.maximum(gram[:, 0, 0] * gram[:, 1, 1], 1e-300)
        inv = (
            xp.stack(
                [
                    xp.stack([gram[:, 1, 1], -gram[:, 0, 1]], axis=-1),
                    xp.stack([-gram[:, 1, 0], gram[:, 0, 0]], axis=-1),
                ],
                axis=-2,
            )
            / xp.where(ok, det, 1.0)[:, None, None]
        )
        u = xp.einsum("aij,kaj->kai", inv, rhs) * ok[None, :, None]
        u = project_displacements(xp, u, self.remove_shifts)
        return mean, u.astype(self._rdt)
