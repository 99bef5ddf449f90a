"""Atom positions from phases: LoG detection and centre-of-mass refinement (conventions §3).

The paper determines initial positions by hand (or a detection network) and refines them by "the
centre of mass within a small circular region … using the retrieved phase values as weighting
factors".  This module provides

* :func:`detection_image` — the image atoms are found on: the phase summed over slices and
  averaged over object states (default), or one slice;
* :func:`detect_atoms` — Laplacian-of-Gaussian detection (:func:`skimage.feature.blob_log`) with
  the blob size in Å and duplicates within a minimum distance merged;
* :func:`refine_com` — phase-weighted centre of mass inside a circle of radius ``r`` with the
  local minimum in the circle subtracted, iterated until the shift is below ``tol_px``, for any
  number of images and atoms at once (vectorised: windows are gathered with flat fancy indexing,
  there is no Python loop over atoms, images, states or slices);
* :func:`refine_states` / :func:`iter_refine_states` — refinement on the mean image, then in
  every state and every slice starting from the refined mean positions.

Conventions (conventions §1): images are ``(..., y, x)``; pixel ``[iy, ix]`` sits at
``origin_A + (iy * dy, ix * dx)`` Å; coordinate pairs are ``(y, x)``.  The phase is positive on
atoms.

Circular window
    The window is a disc of radius ``r`` Å with an anti-aliased edge one pixel wide: a pixel at
    distance ``d`` (in pixels) from the current centre has weight ``clip(r - d + 1/2, 0, 1)``
    (1 inside ``r − 1/2``, 0 beyond ``r + 1/2``).  The window "leaves the image" when the
    square box around that disc does.
    A hard-edged disc makes the centre of mass a discontinuous function of the window centre
    (pixels pop in and out), which biases sub-pixel positions and can make the iteration cycle;
    the soft edge makes it continuous.  Background: the minimum phase over the pixels of the
    disc is subtracted before weighting.

Failures
    An atom is NaN, with a status code saying why (:class:`Status`), when its window leaves the
    image, when no pixel of the window has positive weight, when the refined position moved
    further than ``max_shift_factor × r`` from its start (the window walked to another atom), or
    when its start is not finite.  An atom that has not converged to ``tol_px`` after
    ``max_iter`` iterations keeps its last position and is counted as ``NOT_CONVERGED``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.core.grid import A_to_px, as_pair, px_to_A
from caviar_napari.core.sites import log_peaks_A, nearest_neighbour_distance
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import AtomsData

if TYPE_CHECKING:
    from caviar_napari.analysis.lattice import LatticeIndex

#: Default radius of the centre-of-mass disc as a fraction of the nearest-neighbour distance.
DEFAULT_RADIUS_FACTOR = 0.35

#: Number of windows refined together (bounds memory: windows × pixels per window × 4 bytes).
DEFAULT_CHUNK_WINDOWS = 8192


class Status(enum.IntEnum):
    """Outcome of the refinement of one atom in one image."""

    OK = 0
    OUTSIDE = 1  #: the window left the image
    NO_WEIGHT = 2  #: no pixel of the window had positive background-subtracted phase
    DRIFTED = 3  #: moved further than ``max_shift_factor × radius`` from the start
    INVALID_START = 4  #: the start position was not finite
    NOT_CONVERGED = 5  #: kept, but the last shift was still above the tolerance

    @property
    def failed(self) -> bool:
        """True for the outcomes whose position is NaN."""
        return self not in (Status.OK, Status.NOT_CONVERGED)


#: Human-readable names of the status codes, for reports.
STATUS_LABELS = {
    Status.OK: "refined",
    Status.OUTSIDE: "window outside the image",
    Status.NO_WEIGHT: "no positive weight",
    Status.DRIFTED: "moved beyond the window radius",
    Status.INVALID_START: "no start position",
    Status.NOT_CONVERGED: "not converged (kept)",
}

_FAILED_CODES = np.array([s.value for s in Status if s.failed], dtype=np.int8)


def failed_mask(status: ArrayLike) -> np.ndarray:
    """Return a boolean mask of the status codes whose position is NaN."""
    return np.isin(np.asarray(status), _FAILED_CODES)


def status_counts(status: ArrayLike) -> dict[str, int]:
    """Count status codes by label (only the codes that occur)."""
    codes, counts = np.unique(np.asarray(status, dtype=np.int8), return_counts=True)
    return {STATUS_LABELS[Status(int(c))]: int(n) for c, n in zip(codes, counts)}


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


def _positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"parameter '{name}' must be a number, got {value!r}") from exc
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise InputError(f"parameter '{name}' must be finite and {bound}, got {value!r}")
    return v


@dataclass(frozen=True)
class DetectionConfig:
    """Parameters of the Laplacian-of-Gaussian detection (lengths in Å).

    Attributes
    ----------
    sigma_min_A, sigma_max_A
        Range of the Gaussian blob sizes (standard deviations) searched, Å.  An atom's phase
        peak has a standard deviation of roughly 0.2–0.5 Å.
    num_sigma
        Number of sizes tried in the range.
    threshold_rel
        Minimum LoG response of a blob relative to the strongest one, in ``(0, 1]``.
    min_distance_A
        Detections closer than this are one atom: they are merged into their mean position.
    exclude_border_A
        Detections closer than this to the image border are dropped (0 keeps all).
    """

    sigma_min_A: float = 0.15
    sigma_max_A: float = 0.6
    num_sigma: int = 6
    threshold_rel: float = 0.1
    min_distance_A: float = 0.5
    exclude_border_A: float = 0.0

    def __post_init__(self) -> None:
        _positive(self.sigma_min_A, "sigma_min_A")
        _positive(self.sigma_max_A, "sigma_max_A")
        if self.sigma_max_A < self.sigma_min_A:
            raise InputError(
                f"parameter 'sigma_max_A' ({self.sigma_max_A}) must not be smaller than "
                f"'sigma_min_A' ({self.sigma_min_A})"
            )
        if int(self.num_sigma) != self.num_sigma or self.num_sigma < 1:
            raise InputError(f"parameter 'num_sigma' must be an integer ≥ 1, got {self.num_sigma}")
        if not (0 < float(self.threshold_rel) <= 1):
            raise InputError(
                f"parameter 'threshold_rel' must be in (0, 1], got {self.threshold_rel}"
            )
        _positive(self.min_distance_A, "min_distance_A", allow_zero=True)
        _positive(self.exclude_border_A, "exclude_border_A", allow_zero=True)


@dataclass(frozen=True)
class RefineConfig:
    """Parameters of the centre-of-mass refinement.

    Attributes
    ----------
    radius_A
        Radius of the disc, Å; ``None`` uses ``radius_factor ×`` the median nearest-neighbour
        distance of the start positions (conventions §3: 0.3–0.4 × d_nn).
    radius_factor
        Fraction of the nearest-neighbour distance used when ``radius_A`` is ``None``.
    tol_px
        The iteration stops when the shift is below this many pixels.
    max_iter
        Maximum number of iterations per window.
    max_shift_factor
        A position that ends further than this × radius from its start is a failure.
    slice_index
        Image for the mean refinement: ``None`` sums the phase over slices (and averages over
        states); an integer uses that slice (averaged over states).
    chunk_windows
        Windows refined together (memory bound; not a physical parameter).
    """

    radius_A: float | None = None
    radius_factor: float = DEFAULT_RADIUS_FACTOR
    tol_px: float = 1e-3
    max_iter: int = 50
    max_shift_factor: float = 1.0
    slice_index: int | None = None
    chunk_windows: int = DEFAULT_CHUNK_WINDOWS

    def __post_init__(self) -> None:
        if self.radius_A is not None:
            _positive(self.radius_A, "radius_A")
        _positive(self.radius_factor, "radius_factor")
        _positive(self.tol_px, "tol_px")
        _positive(self.max_shift_factor, "max_shift_factor")
        if int(self.max_iter) != self.max_iter or self.max_iter < 1:
            raise InputError(f"parameter 'max_iter' must be an integer ≥ 1, got {self.max_iter}")
        if int(self.chunk_windows) != self.chunk_windows or self.chunk_windows < 1:
            raise InputError(
                f"parameter 'chunk_windows' must be an integer ≥ 1, got {self.chunk_windows}"
            )
        if self.slice_index is not None and int(self.slice_index) != self.slice_index:
            raise InputError(f"parameter 'slice_index' must be an integer, got {self.slice_index}")


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def as_phase_stack(phase: ArrayLike, name: str = "phase") -> np.ndarray:
    """Return ``phase`` as a real ``(state, slice, y, x)`` array.

    A complex input is converted with :func:`numpy.angle`; a 2D image becomes ``(1, 1, y, x)``
    and a 3D stack ``(slice, y, x)`` becomes ``(1, slice, y, x)``.
    """
    arr = np.asarray(phase)
    if np.iscomplexobj(arr):
        arr = np.angle(arr)
    if arr.ndim == 2:
        arr = arr[None, None]
    elif arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise InputError(
            f"'{name}' must be (state, slice, y, x), (slice, y, x) or (y, x); got shape "
            f"{np.shape(phase)}"
        )
    if min(arr.shape[-2:]) < 3:
        raise InputError(f"'{name}' images are too small: shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    return arr


def detection_image(phase: ArrayLike, slice_index: int | None = None) -> np.ndarray:
    """Return the image atoms are detected and first refined on, ``(y, x)``.

    Parameters
    ----------
    phase
        Phase in rad, ``(state, slice, y, x)`` (or complex object, or fewer leading axes, see
        :func:`as_phase_stack`).
    slice_index
        ``None``: phase summed over slices and averaged over states (the projected phase of the
        mean structure); an integer: that slice, averaged over states.
    """
    stack = as_phase_stack(phase)
    if slice_index is None:
        return stack.sum(axis=1).mean(axis=0)
    n_slices = stack.shape[1]
    if not -n_slices <= int(slice_index) < n_slices:
        raise InputError(f"parameter 'slice_index' {slice_index} is out of range 0..{n_slices - 1}")
    return stack[:, int(slice_index)].mean(axis=0)


# --------------------------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------------------------


def detect_atoms(
    image: ArrayLike,
    pixel_size_A: float | ArrayLike,
    origin_A: ArrayLike = (0.0, 0.0),
    config: DetectionConfig | None = None,
) -> np.ndarray:
    """Find atoms (bright phase peaks) by Laplacian of Gaussian.

    Parameters
    ----------
    image
        ``(y, x)`` real image, atoms bright (e.g. :func:`detection_image`).
    pixel_size_A
        ``(dy, dx)`` or scalar, Å.
    origin_A
        ``(y, x)`` position of pixel ``[0, 0]``, Å.
    config
        Detection parameters (:class:`DetectionConfig`).

    Returns
    -------
    numpy.ndarray
        ``(atoms, 2)`` positions ``(y, x)`` in Å, to the nearest pixel (refine them with
        :func:`refine_com`), sorted by y then x.
    """
    cfg = config or DetectionConfig()
    return log_peaks_A(
        image,
        pixel_size_A,
        origin_A,
        sigma_A=(cfg.sigma_min_A, cfg.sigma_max_A),
        num_sigma=cfg.num_sigma,
        threshold_rel=cfg.threshold_rel,
        min_distance_A=cfg.min_distance_A,
        exclude_border_A=cfg.exclude_border_A,
    )


def default_radius_A(positions_A: ArrayLike, factor: float = DEFAULT_RADIUS_FACTOR) -> float:
    """Default centre-of-mass radius: ``factor ×`` the median nearest-neighbour distance, Å."""
    return factor * nearest_neighbour_distance(positions_A)


# --------------------------------------------------------------------------------------------
# centre-of-mass refinement
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    """Pixel offsets of the box around a window centre and the soft-disc geometry."""

    oy: np.ndarray  # (K,) float32 offsets in pixels
    ox: np.ndarray
    flat: np.ndarray  # (K,) int64 flat offsets oy * W + ox
    half: tuple[int, int]  # box half sizes (hy, hx)
    sy: np.ndarray  # (K,) float32 offsets in units of the radius
    sx: np.ndarray
    moments: np.ndarray  # (3, K) float32 rows 1, oy, ox
    inv_r: tuple[float, float]  # 1 / radius in pixels, per axis
    r_eff: float  # radius in geometric-mean pixels (edge width scale)

    @classmethod
    def make(cls, radius_A: float, pixel_size_A: tuple[float, float], width: int) -> _Window:
        dy, dx = pixel_size_A
        ry, rx = radius_A / dy, radius_A / dx
        r_eff = radius_A / math.sqrt(dy * dx)
        # a pixel has weight when its distance from the centre is < r + 1/2 (r in geometric-mean
        # pixels, i.e. rho < 1 + 1/(2 r_eff)); the centre is within 1/2 pixel of the box centre,
        # so along y the box needs every |oy| < ry (1 + 1/(2 r_eff)) + 1/2 (same along x)
        hy = max(math.ceil(ry * (1 + 0.5 / r_eff) + 0.5) - 1, 1)
        hx = max(math.ceil(rx * (1 + 0.5 / r_eff) + 0.5) - 1, 1)
        oy, ox = np.meshgrid(np.arange(-hy, hy + 1), np.arange(-hx, hx + 1), indexing="ij")
        oy, ox = oy.ravel(), ox.ravel()
        return cls(
            oy=oy.astype(np.float32),
            ox=ox.astype(np.float32),
            flat=(oy * width + ox).astype(np.int64),
            half=(hy, hx),
            sy=(oy / ry).astype(np.float32),
            sx=(ox / rx).astype(np.float32),
            moments=np.stack([np.ones(oy.size), oy, ox]).astype(np.float32),
            inv_r=(1.0 / ry, 1.0 / rx),
            r_eff=r_eff,
        )


@dataclass
class CoMResult:
    """Result of :func:`refine_com`.

    Attributes
    ----------
    positions_px
        ``(image, atom, 2)`` refined pixel coordinates ``(y, x)``; NaN where refinement failed.
    status
        ``(image, atom)`` :class:`Status` codes (int8).
    iterations
        ``(image, atom)`` number of iterations used.
    """

    positions_px: np.ndarray
    status: np.ndarray
    iterations: np.ndarray

    @property
    def n_failed(self) -> int:
        """Number of (image, atom) refinements that failed (NaN)."""
        return int(failed_mask(self.status).sum())


def _com_chunk(
    flat_images: np.ndarray,
    shape: tuple[int, int, int],
    image_index: np.ndarray,
    start: np.ndarray,
    win: _Window,
    tol_px: float,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iterate the centre of mass for one chunk of windows (all arrays per window)."""
    _, H, W = shape
    hy, hx = win.half
    n = len(start)
    pos = start.astype(np.float64, copy=True)
    status = np.full(n, Status.NOT_CONVERGED, dtype=np.int8)
    iters = np.zeros(n, dtype=np.int32)
    bad = ~np.all(np.isfinite(pos), axis=1)
    status[bad] = Status.INVALID_START
    active = np.flatnonzero(~bad)
    image_offset = image_index.astype(np.int64) * (H * W)
    inv_ry, inv_rx = (np.float32(v) for v in win.inv_r)
    r_eff = np.float32(win.r_eff)
    # work buffers reused by every iteration (fresh large temporaries cost page faults)
    K = win.flat.size
    buf_mask = np.empty((n, K), np.float32)
    buf_tmp = np.empty((n, K), np.float32)
    buf_vals = np.empty((n, K), np.float32)
    buf_idx = np.empty((n, K), np.int64)
    buf_in = np.empty((n, K), bool)
    for _ in range(max_iter):
        if active.size == 0:
            break
        c = pos[active]
        base = np.rint(c).astype(np.int64)
        outside = (
            (base[:, 0] - hy < 0)
            | (base[:, 0] + hy > H - 1)
            | (base[:, 1] - hx < 0)
            | (base[:, 1] + hx > W - 1)
        )
        if outside.any():
            status[active[outside]] = Status.OUTSIDE
            keep = ~outside
            active, c, base = active[keep], c[keep], base[keep]
            if active.size == 0:
                break
        m = active.size
        mask, tmp, vals, idx, inside = (
            buf_mask[:m],
            buf_tmp[:m],
            buf_vals[:m],
            buf_idx[:m],
            buf_in[:m],
        )
        frac = (c - base).astype(np.float32)
        # distance from the current centre in units of the radius, then the soft-edged disc
        np.subtract(win.sy[None, :], (frac[:, 0] * inv_ry)[:, None], out=mask)
        np.square(mask, out=mask)
        np.subtract(win.sx[None, :], (frac[:, 1] * inv_rx)[:, None], out=tmp)
        np.square(tmp, out=tmp)
        mask += tmp
        np.sqrt(mask, out=mask)
        mask *= -r_eff
        mask += r_eff + np.float32(0.5)
        np.clip(mask, 0, 1, out=mask)
        np.add(
            (image_offset[active] + base[:, 0] * W + base[:, 1])[:, None],
            win.flat[None, :],
            out=idx,
        )
        np.take(flat_images, idx, out=vals)
        # background: the local minimum over the pixels of the disc
        np.greater(mask, 0, out=inside)
        tmp.fill(np.inf)
        np.copyto(tmp, vals, where=inside)
        vals -= tmp.min(axis=1)[:, None]
        vals *= mask
        # Σ w, Σ w·oy, Σ w·ox: einsum's own loop, not BLAS (threaded BLAS on such thin products
        # spends its time spinning when the cores are busy)
        total = np.einsum("nk,k->n", vals, win.moments[0]).astype(np.float64)
        first = np.stack(
            [
                np.einsum("nk,k->n", vals, win.moments[1]),
                np.einsum("nk,k->n", vals, win.moments[2]),
            ],
            axis=-1,
        ).astype(np.float64)
        ok = np.isfinite(total) & (total > 0)
        if not ok.all():
            status[active[~ok]] = Status.NO_WEIGHT
            active, c, frac, first, total = (
                active[ok],
                c[ok],
                frac[ok],
                first[ok],
                total[ok],
            )
        shift = first / total[:, None] - frac
        pos[active] = c + shift
        iters[active] += 1
        done = np.hypot(shift[:, 0], shift[:, 1]) < tol_px
        status[active[done]] = Status.OK
        active = active[~done]
    return pos, status, iters


def iter_refine_com(
    images: ArrayLike,
    start_px: ArrayLike,
    radius_A: float,
    pixel_size_A: float | ArrayLike = 1.0,
    *,
    tol_px: float = 1e-3,
    max_iter: int = 50,
    max_shift_factor: float = 1.0,
    chunk_windows: int = DEFAULT_CHUNK_WINDOWS,
) -> Generator[float, None, CoMResult]:
    """Generator form of :func:`refine_com`: yields the fraction done after each chunk.

    Returns the :class:`CoMResult` (``StopIteration.value``).
    """
    imgs = np.asarray(images)
    if imgs.ndim == 2:
        imgs = imgs[None]
    if imgs.ndim != 3:
        raise InputError(f"images must be (image, y, x) or (y, x), got shape {np.shape(images)}")
    n_img, H, W = imgs.shape
    start = np.asarray(start_px, dtype=np.float64)
    if start.ndim == 2:
        start = np.broadcast_to(start, (n_img, *start.shape))
    if start.ndim != 3 or start.shape[0] != n_img or start.shape[-1] != 2:
        raise InputError(
            f"start positions must be (atom, 2) or ({n_img}, atom, 2), got {np.shape(start_px)}"
        )
    d = as_pair(pixel_size_A, "pixel_size_A")
    _positive(radius_A, "radius_A")
    win = _Window.make(float(radius_A), d, W)
    n_atoms = start.shape[1]
    total = n_img * n_atoms
    flat_images = np.ascontiguousarray(imgs, dtype=np.float32).reshape(-1)
    flat_start = start.reshape(total, 2)
    image_index = np.repeat(np.arange(n_img), n_atoms)
    pos = np.empty((total, 2))
    status = np.empty(total, dtype=np.int8)
    iters = np.empty(total, dtype=np.int32)
    chunk = max(int(chunk_windows), 1)
    for lo in range(0, total, chunk):
        hi = min(lo + chunk, total)
        pos[lo:hi], status[lo:hi], iters[lo:hi] = _com_chunk(
            flat_images, (n_img, H, W), image_index[lo:hi], flat_start[lo:hi], win, tol_px, max_iter
        )
        yield hi / total
    # positions that ran away from their start
    moved = np.hypot((pos[:, 0] - flat_start[:, 0]) * d[0], (pos[:, 1] - flat_start[:, 1]) * d[1])
    drifted = (moved > max_shift_factor * radius_A) & ~failed_mask(status)
    status[drifted] = Status.DRIFTED
    pos[failed_mask(status)] = np.nan
    return CoMResult(
        positions_px=pos.reshape(n_img, n_atoms, 2),
        status=status.reshape(n_img, n_atoms),
        iterations=iters.reshape(n_img, n_atoms),
    )


def refine_com(
    images: ArrayLike,
    start_px: ArrayLike,
    radius_A: float,
    pixel_size_A: float | ArrayLike = 1.0,
    *,
    tol_px: float = 1e-3,
    max_iter: int = 50,
    max_shift_factor: float = 1.0,
    chunk_windows: int = DEFAULT_CHUNK_WINDOWS,
) -> CoMResult:
    """Phase-weighted centre of mass in a disc, iterated, for many atoms in many images.

    Parameters
    ----------
    images
        ``(image, y, x)`` or ``(y, x)`` real weights (phase, rad; atoms positive).
    start_px
        Start positions in pixel coordinates ``(y, x)``: ``(atom, 2)`` (the same in every
        image) or ``(image, atom, 2)``.
    radius_A
        Disc radius, Å.
    pixel_size_A
        ``(dy, dx)`` or scalar, Å (pixels may be anisotropic; the disc is round in Å).
    tol_px
        Convergence: the iteration of a window stops when its shift is below this (pixels).
    max_iter
        Maximum iterations per window.
    max_shift_factor
        Positions that end further than this × ``radius_A`` from their start fail (DRIFTED).
    chunk_windows
        Number of windows processed together (memory bound).

    Returns
    -------
    CoMResult
        Refined positions (NaN where failed), status codes and iteration counts.
    """
    gen = iter_refine_com(
        images,
        start_px,
        radius_A,
        pixel_size_A,
        tol_px=tol_px,
        max_iter=max_iter,
        max_shift_factor=max_shift_factor,
        chunk_windows=chunk_windows,
    )
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


# --------------------------------------------------------------------------------------------
# states and slices
# --------------------------------------------------------------------------------------------


@dataclass
class StateRefinement:
    """Atom positions in every object state and slice.

    Attributes
    ----------
    positions_A
        ``(state, slice, atom, 2)`` positions ``(y, x)``, Å, NaN where refinement failed.
    mean_positions_A
        ``(atom, 2)`` positions refined on the mean image (NaN where that failed).
    status
        ``(state, slice, atom)`` :class:`Status` codes of the per-state refinement.
    mean_status
        ``(atom,)`` :class:`Status` codes of the refinement on the mean image.
    radius_A
        Disc radius used, Å.
    strength
        ``(atom,)`` background-subtracted peak phase of the mean image at the mean position
        (rad); NaN where the mean refinement failed.  Used to tell species apart.
    """

    positions_A: np.ndarray
    mean_positions_A: np.ndarray
    status: np.ndarray
    mean_status: np.ndarray
    radius_A: float
    strength: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.mean_positions_A.shape[0])

    @property
    def n_failed(self) -> int:
        """Number of failed (state, slice, atom) refinements (NaN positions)."""
        return int(failed_mask(self.status).sum())

    @property
    def n_failed_mean(self) -> int:
        """Number of atoms whose refinement on the mean image failed."""
        return int(failed_mask(self.mean_status).sum())

    def counts(self) -> dict[str, int]:
        """Counts of per-state outcomes by label (see :data:`STATUS_LABELS`)."""
        return status_counts(self.status)

    def summary(self) -> str:
        """One line: atoms, windows, failures by reason."""
        n_win = int(self.status.size)
        parts = ", ".join(f"{k}: {v}" for k, v in self.counts().items() if k != "refined")
        text = (
            f"{self.n_atoms} atoms ({self.n_failed_mean} failed on the mean image); "
            f"{n_win - self.n_failed}/{n_win} state×slice positions refined"
        )
        return f"{text} ({parts})" if parts else text

    def spread_A(self) -> np.ndarray:
        """Per-atom rms displacement over states, ``(atom,)`` Å (see :func:`rms_spread_A`)."""
        return rms_spread_A(self.positions_A)

    def to_atoms_data(
        self,
        index: LatticeIndex | None = None,
        species: ArrayLike | None = None,
        *,
        source: str = "",
        provenance: dict[str, Any] | None = None,
    ) -> AtomsData:
        """The ATOMS-file contents of this refinement (conventions §6).

        Parameters
        ----------
        index
            Lattice indexing of the mean positions (cell, basis, lattice vectors), or None.
        species
            ``(atom,)`` species names, or None.
        source
            The file the positions were measured on.
        provenance
            Parameters that produced the positions (the radius is added).
        """
        return AtomsData(
            positions_A=self.positions_A,
            mean_positions_A=self.mean_positions_A,
            cell_index=None if index is None else index.cell_index,
            basis_index=None if index is None else index.basis_index,
            species=None if species is None else np.asarray(species, dtype=str),
            lattice_vectors_A=None if index is None else index.lattice_vectors_A,
            source=str(source),
            status=self.status,
            provenance={**(provenance or {}), "radius_A": self.radius_A},
        )


def rms_spread_A(positions_A: ArrayLike) -> np.ndarray:
    """Per-atom rms displacement from the state mean, ``sqrt(<|R_n − <R>_n|²>)``, Å.

    Parameters
    ----------
    positions_A
        ``(state, slice, atom, 2)`` positions (NaN ignored).

    Returns
    -------
    numpy.ndarray
        ``(atom,)``: the mean over states and slices of the squared in-plane displacement from
        each slice's mean over states, square-rooted; NaN for an atom with no finite position.
    """
    pos = np.asarray(positions_A, dtype=float)
    if pos.ndim != 4 or pos.shape[-1] != 2:
        raise InputError(f"positions_A must be (state, slice, atom, 2), got shape {pos.shape}")
    finite = np.all(np.isfinite(pos), axis=-1)  # (N, S, A)
    n_ok = finite.sum(axis=0)  # (S, A)
    filled = np.where(finite[..., None], pos, 0.0)
    mean = filled.sum(axis=0) / np.maximum(n_ok, 1)[..., None]  # (S, A, 2)
    sq = np.where(finite, ((pos - mean) ** 2).sum(axis=-1), 0.0)  # (N, S, A)
    count = finite.sum(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.sqrt(sq.sum(axis=(0, 1)) / np.maximum(count, 1)), np.nan)


def _peak_strength(image: np.ndarray, positions_px: np.ndarray, win: _Window) -> np.ndarray:
    """Background-subtracted maximum of ``image`` in the disc around each position."""
    H, W = image.shape
    hy, hx = win.half
    out = np.full(len(positions_px), np.nan)
    ok = np.all(np.isfinite(positions_px), axis=1)
    base = np.rint(np.where(ok[:, None], positions_px, 0)).astype(np.int64)
    ok &= (base[:, 0] >= hy) & (base[:, 0] < H - hy) & (base[:, 1] >= hx) & (base[:, 1] < W - hx)
    if not ok.any():
        return out
    frac = (positions_px[ok] - base[ok]).astype(np.float32)
    rho = np.sqrt(
        ((win.oy[None] - frac[:, 0, None]) * win.inv_r[0]) ** 2
        + ((win.ox[None] - frac[:, 1, None]) * win.inv_r[1]) ** 2
    )
    inside = rho <= 1
    vals = image.reshape(-1)[(base[ok, 0] * W + base[ok, 1])[:, None] + win.flat[None]]
    out[ok] = np.where(inside, vals, -np.inf).max(1) - np.where(inside, vals, np.inf).min(1)
    return out


def iter_refine_states(
    phase: ArrayLike,
    start_A: ArrayLike,
    pixel_size_A: float | ArrayLike,
    origin_A: ArrayLike = (0.0, 0.0),
    config: RefineConfig | None = None,
) -> Generator[float, None, StateRefinement]:
    """Generator form of :func:`refine_states`: yields the fraction done (0–1) as it goes."""
    cfg = config or RefineConfig()
    stack = as_phase_stack(phase)
    n_states, n_slices, H, W = stack.shape
    start = np.asarray(start_A, dtype=float).reshape(-1, 2)
    if len(start) == 0:
        raise InputError("no atom positions to refine")
    d = as_pair(pixel_size_A, "pixel_size_A")
    radius = (
        cfg.radius_A if cfg.radius_A is not None else default_radius_A(start, cfg.radius_factor)
    )
    opts = {
        "tol_px": cfg.tol_px,
        "max_iter": cfg.max_iter,
        "max_shift_factor": cfg.max_shift_factor,
        "chunk_windows": cfg.chunk_windows,
    }
    mean_img = detection_image(stack, cfg.slice_index)
    n_mean = len(start)
    n_total = n_mean + n_states * n_slices * n_mean

    gen = iter_refine_com(mean_img, A_to_px(start, origin_A, d), radius, d, **opts)
    try:
        while True:
            yield next(gen) * n_mean / n_total
    except StopIteration as stop:
        mean_res: CoMResult = stop.value
    mean_px = mean_res.positions_px[0]

    images = stack.reshape(n_states * n_slices, H, W)
    gen = iter_refine_com(images, mean_px, radius, d, **opts)
    try:
        while True:
            yield (n_mean + next(gen) * (n_total - n_mean)) / n_total
    except StopIteration as stop:
        res: CoMResult = stop.value
    strength = _peak_strength(mean_img.astype(np.float32), mean_px, _Window.make(radius, d, W))
    positions = px_to_A(res.positions_px, origin_A, d).reshape(n_states, n_slices, n_mean, 2)
    return StateRefinement(
        positions_A=positions,
        mean_positions_A=px_to_A(mean_px, origin_A, d),
        status=res.status.reshape(n_states, n_slices, n_mean),
        mean_status=mean_res.status[0],
        radius_A=float(radius),
        strength=strength,
    )


def refine_states(
    phase: ArrayLike,
    start_A: ArrayLike,
    pixel_size_A: float | ArrayLike,
    origin_A: ArrayLike = (0.0, 0.0),
    config: RefineConfig | None = None,
) -> StateRefinement:
    """Refine atom positions on the mean image, then in every object state and slice.

    Parameters
    ----------
    phase
        ``(state, slice, y, x)`` phase in rad (a complex object is converted with ``angle``).
    start_A
        ``(atom, 2)`` start positions ``(y, x)``, Å (picked by hand or :func:`detect_atoms`).
    pixel_size_A
        ``(dy, dx)`` or scalar, Å.
    origin_A
        ``(y, x)`` position of pixel ``[0, 0]``, Å.
    config
        :class:`RefineConfig` (radius, tolerance, which image the mean refinement uses).

    Returns
    -------
    StateRefinement
        Positions per state and slice (each started from the refined mean position), the mean
        positions, status codes, and the radius used.  Failed refinements are NaN and counted.
    """
    gen = iter_refine_states(phase, start_A, pixel_size_A, origin_A, config)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
