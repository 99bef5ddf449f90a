"""Depth-resolved analysis of multislice reconstructions: z-ranges, per-range correlations, and
the match of z-ranges to the layers of a layered ground truth (issue 16; conventions §3, §4).

A **z-range** (:class:`~caviar_napari.data.atoms.ZRange`) is a contiguous run of slices
``A:B`` (Python slice semantics, step 1) of a reconstruction; its depth below the entrance
surface follows from the slice thicknesses.  ``caviar atoms --slices A:B`` / ``--zrange
LABEL=A:B`` detect, refine and index each range on its own, in its own lattice frame; this module
provides what comes next:

* :func:`zrange_from_spec`, :func:`zrange_phase` — the range and its phase (summed over its
  slices, averaged over states: the projected phase of that depth);
* :func:`zrange_correlations`, :func:`zrange_unit_cell_averages` — each range's Green's tensor
  averaged over its slices (via :mod:`caviar_napari.analysis.correlations`' public functions) and
  its unit-cell averages in the range's own local lattice frame (x towards a nearest neighbour);
  :func:`shell_averages` — per neighbour shell, the longitudinal and transverse correlations in
  each bond's own frame with standard errors (orientation-free: turned layers compare directly);
* :func:`match_layers` — which z-range shows which layer of a simulated layered specimen: by
  depth (the layer's entrance plane inside the range's extent) and by lateral lattice match
  (fraction of the range's atoms on the layer's sites, and the angle between the lattices);
* :func:`compare_with_layer` — LSM/CSM and ρ_nn of a range's correlations against a layer's
  realised Green's tensor, the layer's own or another's carried into the range's lattice frame
  (so that a range can be compared with the layer it does *not* show, pair by pair);
* :func:`layer_ground_truth`, :func:`layer_metrics` — one layer's part of a ground truth (to
  compare a range with its own layer, errors included, as any other truth) and a range's
  metrics against every layer (CORR ``layer_comparison``);
* :func:`phase_correlation` — Pearson correlation of a range's phase with a layer's true phase
  over the scanned area.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.ndimage import map_coordinates
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.atoms import as_phase_stack
from caviar_napari.analysis.lattice import ensure_lattice_index
from caviar_napari.data.atoms import AtomsData, ZRange
from caviar_napari.data.correlations import CorrelationsData, LayerMetrics
from caviar_napari.data.ground_truth import GroundTruth
from caviar_napari.data.layers import TruthLayer
from caviar_napari.errors import InputError

__all__ = [
    "LayerComparison",
    "LayerMatch",
    "ShellAverages",
    "compare_with_layer",
    "layer_ground_truth",
    "layer_index_map",
    "layer_metrics",
    "match_layers",
    "occupied_slices",
    "phase_correlation",
    "shell_averages",
    "zrange_correlations",
    "zrange_from_spec",
    "zrange_phase",
    "zrange_unit_cell_averages",
]


def zrange_from_spec(spec: str, slice_thickness_A: ArrayLike, label: str = "") -> ZRange:
    """The z-range of the slices ``spec`` (``"A:B"``, ``"A"``, ``":"``) of a reconstruction.

    Parameters
    ----------
    spec
        Python slice text; a step other than 1 is refused (a depth range is contiguous).
    slice_thickness_A
        ``(S,)`` thickness of every slice of the reconstruction, Å.
    label
        Name of the range.

    Raises
    ------
    InputError
        Malformed text, a step, or a range selecting no slice (named).
    """
    dz = np.atleast_1d(np.asarray(slice_thickness_A, dtype=float))
    if spec.count(":") > 1:
        raise InputError(f"slices {spec!r}: a z-range is contiguous, give 'A:B' without a step")
    chosen = corr.parse_slice_spec(spec, dz.size)
    start, stop = int(chosen[0]), int(chosen[-1]) + 1
    return ZRange(
        label=label,
        start=start,
        stop=stop,
        slice_thickness_A=tuple(dz[start:stop].tolist()),
        z_top_A=float(dz[:start].sum()),
        n_slices_total=int(dz.size),
    )


def zrange_phase(phase: ArrayLike, zrange: ZRange) -> np.ndarray:
    """Phase ``(y, x)`` of a z-range: summed over its slices, averaged over object states.

    Parameters
    ----------
    phase
        ``(state, slice, y, x)`` phase (rad) or the complex object (its angle is taken).
    zrange
        The range; its ``n_slices_total`` must match the slice axis.
    """
    stack = as_phase_stack(phase)
    if stack.shape[1] != zrange.n_slices_total:
        raise InputError(
            f"z-range {zrange.spec} is of a {zrange.n_slices_total}-slice reconstruction, the "
            f"phase has {stack.shape[1]} slices"
        )
    return stack[:, zrange.start : zrange.stop].sum(axis=1).mean(axis=0)


def occupied_slices(atoms: AtomsData, min_fraction: float = 0.5) -> np.ndarray:
    """Slices of a z-range (indices into its slice axis) in which at least ``min_fraction`` of
    the atoms refined in every state.

    A range that includes slices without the layer's atoms (vacuum, or the other layer) fails
    there for most atoms ("moved beyond the window radius"); :func:`zrange_correlations` leaves
    such slices out rather than excluding every atom that failed in them.
    """
    finite = np.isfinite(np.asarray(atoms.positions_A)).all(axis=-1).all(axis=0)  # (slice, atom)
    fraction = finite.mean(axis=1)
    chosen = np.flatnonzero(fraction >= min_fraction)
    if chosen.size == 0:
        raise InputError(
            f"no slice of the z-range has {min_fraction:.0%} of its atoms refined in every state "
            f"(best: {fraction.max():.0%})"
        )
    return chosen


def zrange_correlations(
    atoms: AtomsData, slices: ArrayLike | str | None = "occupied"
) -> CorrelationsData:
    """Green's tensor of one z-range's atoms, averaged over its slices (eq. 2 per slice, then
    the mean over slices, as the paper does for its z-ranges).

    Parameters
    ----------
    atoms
        The z-range's ATOMS contents.
    slices
        ``"occupied"`` (default): the slices of :func:`occupied_slices`; None: every slice of
        the range; or indices / ``"A:B"`` text relative to the range (passed to
        :func:`caviar_napari.analysis.correlations.correlations_from_atoms`).
    """
    if isinstance(slices, str) and slices == "occupied":
        slices = occupied_slices(atoms)
    return corr.correlations_from_atoms(atoms, slices)


def zrange_unit_cell_averages(
    atoms: AtomsData,
    correlations: CorrelationsData,
    *,
    max_distance_A: float | None = None,
) -> corr.UnitCellAverages:
    """Unit-cell averages (same ``l' − l``, κ, κ') of a z-range in its own local lattice frame.

    The frame's x axis points from the atom nearest the centre of the range's atoms to its
    nearest neighbour (conventions §4), so two z-ranges of turned lattices (a twisted bilayer)
    are each expressed in their own frame and can be compared class by class.
    """
    indexed = ensure_lattice_index(atoms)
    positions = np.asarray(indexed.mean_positions_A, dtype=float)
    rotation, _ = corr.central_frame(positions)
    return corr.unit_cell_averages(
        correlations.green_A2,
        indexed.cell_index,
        indexed.basis_index,
        positions,
        rotation,
        max_distance_A=max_distance_A,
    )


@dataclass(frozen=True)
class ShellAverages:
    """Correlations averaged over the pairs of each neighbour shell, in the bond frame.

    For a pair (i, j) with unit bond vector ``e`` (from i to j) and ``t`` perpendicular to it,
    the longitudinal correlation is ``eᵀ G_ij e`` and the transverse one ``tᵀ G_ij t``: both
    are independent of the lattice's orientation, so two z-ranges of turned lattices (a twisted
    bilayer) can be compared shell by shell.  Shell 0 is the self blocks (``e`` along x, and the
    two values are ``G_xx`` and ``G_yy`` then averaged as (xx + yy)/2 for both).

    Attributes
    ----------
    distance_A
        ``(n,)`` mean distance of each shell (0 for the self shell), Å.
    longitudinal_A2, transverse_A2
        ``(n,)`` means over the shell's pairs, Å².
    longitudinal_stderr_A2, transverse_stderr_A2
        ``(n,)`` standard errors of those means (standard deviation over the pairs / sqrt(count);
        pairs sharing an atom are not independent, so this is a lower bound on the error).
    counts
        ``(n,)`` pairs per shell.
    """

    distance_A: np.ndarray
    longitudinal_A2: np.ndarray
    transverse_A2: np.ndarray
    longitudinal_stderr_A2: np.ndarray
    transverse_stderr_A2: np.ndarray
    counts: np.ndarray


def shell_averages(
    correlations: CorrelationsData, n_shells: int = 3, tolerance: float = 0.08
) -> ShellAverages:
    """Self and neighbour-shell averages of a z-range's Green's tensor (see ShellAverages).

    Shells are runs of the sorted pair distances separated by gaps wider than ``tolerance`` ×
    the nearest-neighbour distance.
    """
    positions = np.asarray(correlations.mean_positions_A, dtype=float)
    green = np.asarray(correlations.green_A2, dtype=float)
    valid = np.isfinite(np.diagonal(green)).reshape(-1, 2).all(axis=1)
    valid &= np.isfinite(positions).all(axis=1)
    kept = positions.copy()
    kept[~valid] = np.nan
    d_nn = corr.nearest_neighbour_distance(kept)
    pairs = corr.pairs_within_radius(kept, (n_shells + 0.5) * d_nn, include_self=False)
    sep = positions[pairs[:, 1]] - positions[pairs[:, 0]]
    dist = np.hypot(sep[:, 0], sep[:, 1])
    blocks = corr.pair_blocks(green, pairs)  # (P, 2, 2), (y, x) components
    e = sep / dist[:, None]
    t = np.stack([e[:, 1], -e[:, 0]], axis=1)
    lon = np.einsum("pa,pab,pb->p", e, blocks, e)
    tra = np.einsum("pa,pab,pb->p", t, blocks, t)
    # shells: runs of sorted distances without a gap wider than tolerance × d_nn
    shell = corr.distance_shells(dist, tolerance * d_nn)
    groups = [np.flatnonzero(shell == s) for s in range(min(n_shells, shell.max(initial=-1) + 1))]
    selves = np.flatnonzero(valid)
    self_blocks = corr.pair_blocks(green, np.stack([selves, selves], axis=1))
    self_vals = 0.5 * (self_blocks[:, 0, 0] + self_blocks[:, 1, 1])
    out = [(0.0, self_vals, self_vals)]
    for member in groups:
        out.append((float(dist[member].mean()), lon[member], tra[member]))

    def sem(v: np.ndarray) -> float:
        return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")

    return ShellAverages(
        distance_A=np.array([o[0] for o in out]),
        longitudinal_A2=np.array([o[1].mean() for o in out]),
        transverse_A2=np.array([o[2].mean() for o in out]),
        longitudinal_stderr_A2=np.array([sem(o[1]) for o in out]),
        transverse_stderr_A2=np.array([sem(o[2]) for o in out]),
        counts=np.array([o[1].size for o in out]),
    )


# ------------------------------------------------------------------------- layers ↔ z-ranges
def _frame_rotation(from_lattice: np.ndarray, to_lattice: np.ndarray) -> np.ndarray:
    """``R`` with ``to = from @ Rᵀ`` for lattice rows (a proper rotation, checked)."""
    r = (np.linalg.inv(from_lattice) @ to_lattice).T
    if not np.allclose(r @ r.T, np.eye(2), atol=1e-6) or np.linalg.det(r) < 0:
        raise InputError("the two layers' lattices are not related by a rotation")
    return r


def layer_index_map(
    positions_A: ArrayLike,
    frame: TruthLayer,
    target: TruthLayer,
    truth_mean_positions_A: ArrayLike,
    box_yx_A: tuple[float, float],
    *,
    tolerance_A: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map atoms seen in the lattice frame of layer ``frame`` onto the sites of layer ``target``.

    Each position is written in ``frame``'s lattice coordinates (``f = (r − origin) A⁻¹``) and
    carried to ``target``'s lattice (``origin' + f A'``), then matched to the nearest of the
    target's ideal sites modulo the periodic box, after removing the median offset (a global
    shift of the reconstruction's frame).  With ``target = frame`` this is the plain
    nearest-site match.

    Returns
    -------
    index
        ``(N,)`` int: the target layer's atom (0-based within the layer) of each position, −1
        where none lies within ``tolerance_A`` (or where the position is NaN).
    distance_A
        ``(N,)`` residual distance, NaN where unmatched.
    rotation
        ``(2, 2)`` ``R`` carrying the target's lab-frame 2×2 blocks into ``frame``'s orientation
        (``R G Rᵀ``); the identity when the two lattices are parallel.
    """
    pos = np.asarray(positions_A, dtype=float).reshape(-1, 2)
    truth = np.asarray(truth_mean_positions_A, dtype=float)[target.atoms]
    box = np.asarray(box_yx_A, dtype=float)
    frac = (pos - frame.origin_A) @ np.linalg.inv(frame.lattice_vectors_A)
    carried = target.origin_A + frac @ target.lattice_vectors_A
    rotation = _frame_rotation(target.lattice_vectors_A, frame.lattice_vectors_A)
    origin = truth.min(axis=0) - box  # any origin; the tree needs coordinates in [0, box)
    tree = cKDTree(np.mod(truth - origin, box), boxsize=box)
    finite = np.isfinite(carried).all(axis=1)
    index = np.full(pos.shape[0], -1)
    distance = np.full(pos.shape[0], np.nan)
    if not finite.any():
        return index, distance, rotation
    _, nearest = tree.query(np.mod(carried[finite] - origin, box))
    offset = carried[finite] - truth[nearest]
    offset -= box * np.rint(offset / box)
    shift = np.median(offset, axis=0)
    d, nearest = tree.query(np.mod(carried[finite] - shift - origin, box))
    ok = d <= tolerance_A
    rows = np.flatnonzero(finite)
    index[rows[ok]] = nearest[ok]
    distance[rows[ok]] = d[ok]
    # one-to-one: a site claimed twice keeps its nearer claimant
    claimed = np.flatnonzero(index >= 0)
    order = claimed[np.argsort(distance[claimed], kind="stable")]
    _, first = np.unique(index[order], return_index=True)
    losers = np.setdiff1d(claimed, order[first])
    index[losers] = -1
    distance[losers] = np.nan
    return index, distance, rotation


@dataclass(frozen=True)
class LayerMatch:
    """A z-range matched to a layer.

    Attributes
    ----------
    zrange, layer
        The range's label and the layer's name.
    depth_offset_A
        Distance from the layer's entrance plane to the range's depth extent ``[top, bottom)``
        (0 when inside).
    site_fraction
        Fraction of the range's atoms within the tolerance of one of the layer's sites (in the
        layer's lattice, modulo the box, after a global shift).
    angle_deg
        Angle between the range's lattice and the layer's, modulo 60° (hexagonal) or 90°,
        the smallest equivalent; NaN when the range is not indexed.
    """

    zrange: str
    layer: str
    depth_offset_A: float
    site_fraction: float
    angle_deg: float


def _lattice_angle_deg(a: np.ndarray | None, b: np.ndarray) -> float:
    """Smallest angle between the a1 rows of two lattices modulo their symmetry (60° or 90°)."""
    if a is None:
        return float("nan")
    na, nb = np.hypot(*a[0]), np.hypot(*b[0])
    cos12 = abs(b[0] @ b[1]) / (np.hypot(*b[0]) * np.hypot(*b[1]))
    period = 60.0 if abs(cos12 - 0.5) < 0.05 else 90.0
    angle = np.degrees(np.arctan2(a[0][0], a[0][1]) - np.arctan2(b[0][0], b[0][1]))
    angle = np.mod(angle, period)
    if na <= 0 or nb <= 0:
        return float("nan")
    return float(min(angle, period - angle))


def match_layers(
    zranges: Mapping[str, AtomsData],
    layers: Sequence[TruthLayer],
    truth_mean_positions_A: ArrayLike,
    box_yx_A: tuple[float, float],
    *,
    tolerance_A: float = 0.3,
) -> list[LayerMatch]:
    """Match z-ranges to layers, one-to-one, by depth and by lateral lattice match.

    The score of a (range, layer) pair is its site fraction (0–1) plus 1 when the layer's
    entrance plane lies inside the range's depth extent; the assignment maximises the total
    score (Hungarian algorithm).  Ranges without a z-range record are taken as every slice.

    Returns
    -------
    list of LayerMatch
        One per matched pair, in the order of ``zranges``.
    """
    labels = list(zranges)
    if not labels or not layers:
        raise InputError("matching needs at least one z-range and one layer")
    score = np.zeros((len(labels), len(layers)))
    table: dict[tuple[int, int], LayerMatch] = {}
    for i, label in enumerate(labels):
        atoms = zranges[label]
        z = atoms.zrange
        for j, layer in enumerate(layers):
            offset = 0.0
            if z is not None:  # slices are [top, bottom): the bottom plane is the next range's
                top, bottom = z.z_extent_A
                if not top <= layer.entrance_z_A < bottom:
                    offset = min(abs(layer.entrance_z_A - top), abs(layer.entrance_z_A - bottom))
            index, _, _ = layer_index_map(
                atoms.mean_positions_A, layer, layer, truth_mean_positions_A, box_yx_A,
                tolerance_A=tolerance_A,
            )  # fmt: skip
            finite = np.isfinite(atoms.mean_positions_A).all(axis=1)
            fraction = float((index >= 0).sum() / max(int(finite.sum()), 1))
            angle = _lattice_angle_deg(atoms.lattice_vectors_A, layer.lattice_vectors_A)
            table[i, j] = LayerMatch(label, layer.name, float(offset), fraction, angle)
            score[i, j] = fraction + (1.0 if offset == 0.0 else 0.0)
    rows, cols = linear_sum_assignment(-score)
    return [table[i, j] for i, j in sorted(zip(rows, cols))]


@dataclass(frozen=True)
class LayerComparison:
    """A z-range's correlations against one layer's realised truth.

    Attributes
    ----------
    layer
        The truth layer's name.
    similarity
        LSM/CSM (paper eqs. 3, 4) over every self block and nearest-neighbour pair.
    rho_nn_reconstructed, rho_nn_truth
        Mean ρ_nn of the range and of the truth over the same nearest-neighbour pairs.
    n_matched
        Atoms of the range matched to a site of the layer.
    rotation
        The rotation that carried the layer's blocks into the range's frame.
    """

    layer: str
    similarity: corr.Similarity
    rho_nn_reconstructed: float
    rho_nn_truth: float
    n_matched: int
    rotation: np.ndarray


def compare_with_layer(
    correlations: CorrelationsData,
    frame: TruthLayer,
    target: TruthLayer,
    truth_mean_positions_A: ArrayLike,
    box_yx_A: tuple[float, float],
    *,
    tolerance_A: float = 0.5,
    nn_tolerance: float = 0.15,
) -> LayerComparison:
    """LSM/CSM and ρ_nn of a z-range (which shows layer ``frame``) against layer ``target``.

    With ``target = frame`` this is the comparison with the range's own truth.  With another
    layer, each atom of the range is carried into the target's lattice
    (:func:`layer_index_map`) and the target's realised 2×2 blocks are turned into the range's
    orientation, so that pair (i, j) of the range meets the pair of the *same lattice relation*
    in the other layer: two independent displacement fields then give a low CSM on the cross
    pairs, equal fields a high one.

    Parameters
    ----------
    correlations
        The range's :class:`CorrelationsData` (:func:`zrange_correlations`).
    frame, target
        The layer the range shows (its lattice frame) and the layer compared with.
    truth_mean_positions_A
        ``(atoms, 2)`` ideal positions of the ground truth (scan frame).
    box_yx_A
        The periodic simulation box ``(Ly, Lx)``, Å.
    """
    positions = np.asarray(correlations.mean_positions_A, dtype=float)
    green = np.asarray(correlations.green_A2, dtype=float)
    index, _, rotation = layer_index_map(
        positions, frame, target, truth_mean_positions_A, box_yx_A, tolerance_A=tolerance_A
    )
    valid = (index >= 0) & np.isfinite(np.diagonal(green)).reshape(-1, 2).all(axis=1)
    if valid.sum() < 2:
        raise InputError(
            f"fewer than two atoms of the z-range match sites of layer {target.name!r} within "
            f"{tolerance_A} Å"
        )
    n_t = target.n_atoms
    turned = corr.rotate_blocks(
        target.green_realised_A2.reshape(n_t, 2, n_t, 2).transpose(0, 2, 1, 3), rotation
    )
    truth = corr.reindex_green(turned.transpose(0, 2, 1, 3).reshape(2 * n_t, 2 * n_t), index)
    kept = positions.copy()
    kept[~valid] = np.nan
    nn = corr.nearest_neighbour_pairs(kept, nn_tolerance)
    selves = np.flatnonzero(valid)
    pairs = np.concatenate([np.stack([selves, selves], axis=1), nn])
    rho_rec = corr.correlation_coefficients(green, nn)
    rho_truth = corr.correlation_coefficients(truth, nn)
    return LayerComparison(
        layer=target.name,
        similarity=corr.similarity(green, truth, pairs),
        rho_nn_reconstructed=float(np.nanmean(rho_rec)),
        rho_nn_truth=float(np.nanmean(rho_truth)),
        n_matched=int(valid.sum()),
        rotation=rotation,
    )


def layer_ground_truth(truth: GroundTruth, layer: TruthLayer) -> GroundTruth:
    """The part of a ground truth that is one layer: its atoms' configurations and ideal sites,
    its realised and model Green's tensors, its own lattice indexing and vectors."""
    atoms = layer.atoms
    return GroundTruth(
        positions_A=np.asarray(truth.positions_A)[:, atoms],
        mean_positions_A=np.asarray(truth.mean_positions_A)[atoms],
        green_realised_A2=layer.green_realised_A2,
        green_model_A2=layer.green_model_A2,
        cell_index=layer.cell_index,
        basis_index=layer.basis_index,
        species=None if truth.species is None else np.asarray(truth.species)[atoms],
        lattice_vectors_A=layer.lattice_vectors_A,
    )


def layer_metrics(
    correlations: CorrelationsData,
    matched: TruthLayer,
    layers: Sequence[TruthLayer],
    truth_mean_positions_A: ArrayLike,
    box_yx_A: tuple[float, float],
) -> tuple[LayerMetrics, ...]:
    """A z-range's LSM/CSM and ρ_nn against every layer (:func:`compare_with_layer`), the range
    seen in the lattice frame of the layer it was matched to.

    A layer with fewer than two of the range's atoms on its sites gets NaN metrics and
    ``n_matched`` 0 (nothing to compare), not an error.
    """
    out = []
    for layer in layers:
        try:
            c = compare_with_layer(correlations, matched, layer, truth_mean_positions_A, box_yx_A)
        except InputError:  # fewer than two atoms on the layer's sites
            nan = float("nan")
            out.append(LayerMetrics(layer.name, layer is matched, nan, nan, nan, nan, nan, 0))
            continue
        s = c.similarity
        out.append(
            LayerMetrics(
                layer=layer.name,
                matched=layer is matched,
                lsm_sum=float(s.lsm_sum),
                lsm_mean=float(s.lsm_mean),
                csm=float(s.csm),
                rho_nn_reconstructed=c.rho_nn_reconstructed,
                rho_nn_truth=c.rho_nn_truth,
                n_matched=c.n_matched,
            )
        )
    return tuple(out)


def phase_correlation(
    image: ArrayLike,
    pixel_size_A: tuple[float, float],
    origin_A: tuple[float, float],
    truth_phase: ArrayLike,
    truth_pixel_size_A: tuple[float, float],
    truth_origin_A: tuple[float, float],
    region_A: ArrayLike,
    *,
    band_limit_invA: float | None = None,
) -> float:
    """Pearson correlation of a phase image with a true phase over a region (scan frame, Å).

    The true phase is sampled at the image's pixels inside ``region_A`` (bilinear).  With
    ``band_limit_invA`` both are first cut to spatial frequencies below it (a sharp circular
    mask in Fourier space), so that a reconstruction is not penalised for detail the optics
    cannot transfer; the cut must be stated with the number.

    Parameters
    ----------
    image
        ``(H, W)`` phase, pixel ``[iy, ix]`` at ``origin_A + (iy, ix) · pixel_size_A``.
    truth_phase
        ``(H', W')`` true phase on its own grid.
    region_A
        ``[[y0, x0], [y1, x1]]`` rectangle compared (e.g. the scanned area).
    """
    img = np.asarray(image, dtype=float)
    tru = np.asarray(truth_phase, dtype=float)
    d = np.asarray(pixel_size_A, dtype=float)
    dt = np.asarray(truth_pixel_size_A, dtype=float)
    if band_limit_invA is not None:
        img = _low_pass(img, d, band_limit_invA)
        tru = _low_pass(tru, dt, band_limit_invA)
    reg = np.asarray(region_A, dtype=float)
    lo = np.ceil((reg[0] - np.asarray(origin_A)) / d).astype(int)
    hi = np.floor((reg[1] - np.asarray(origin_A)) / d).astype(int) + 1
    lo = np.clip(lo, 0, img.shape)
    hi = np.clip(hi, 0, img.shape)
    if np.any(hi - lo < 2):
        raise InputError("the compared region holds fewer than 2 × 2 pixels of the image")
    iy, ix = np.meshgrid(np.arange(lo[0], hi[0]), np.arange(lo[1], hi[1]), indexing="ij")
    yy = np.asarray(origin_A)[0] + iy * d[0]
    xx = np.asarray(origin_A)[1] + ix * d[1]
    ty = (yy - truth_origin_A[0]) / dt[0]
    tx = (xx - truth_origin_A[1]) / dt[1]
    if ty.min() < 0 or tx.min() < 0 or ty.max() > tru.shape[0] - 1 or tx.max() > tru.shape[1] - 1:
        raise InputError("the compared region reaches beyond the true phase's grid")
    sampled = map_coordinates(tru, [ty.ravel(), tx.ravel()], order=1).reshape(ty.shape)
    a = img[iy, ix].ravel() - img[iy, ix].mean()
    b = sampled.ravel() - sampled.mean()
    denom = np.sqrt((a @ a) * (b @ b))
    if denom == 0:
        raise InputError("a compared image is constant: no correlation can be computed")
    return float(a @ b / denom)


def _low_pass(image: np.ndarray, pixel: np.ndarray, k_max: float) -> np.ndarray:
    """``image`` with the spatial frequencies above ``k_max`` (1/Å) removed (mean kept)."""
    ky = np.fft.fftfreq(image.shape[0], pixel[0])
    kx = np.fft.fftfreq(image.shape[1], pixel[1])
    mask = (ky[:, None] ** 2 + kx[None, :] ** 2) <= k_max**2
    return np.real(np.fft.ifft2(np.fft.fft2(image) * mask))
