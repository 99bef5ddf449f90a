"""View-model of the **Correlations** dock (Qt-free): Green's tensor, arrows, LSM/CSM.

Source: an :class:`~caviar_napari.io.atoms_file.AtomsData`.  :func:`compute_job` computes the
Green's tensor (eq. 2), B factors, ρ_nn and unit-cell averages; :func:`drawing_job` turns the
current :class:`Selection` and :class:`ArrowOptions` into everything the dock draws (arrows,
B-factor rings, reference markers, local-frame axes, the Green's tensor image, texts);
:func:`truth_job` reads a simulated file's ground truth and matches its atoms.  All three run in
a worker; the dock only assigns their results to layers.

Arrows (conventions §4), napari Vectors data ``[start, projection]`` in Å world coordinates: at
each atom j its self-correlation rows (row y of ``G_jj`` yellow, row x purple); at each neighbour
j of the reference atom i the rows of ``G_ij`` (pink: the reference's y row, light blue: its x
row).  Arrow length on screen = correlation (pm²) / scale (pm² per Å).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import to_rgba

from caviar_napari.analysis import correlations as corr
from caviar_napari.errors import CaviarError, InputError
from caviar_napari.io.correlations_file import (
    CorrelationsData,
    read_ground_truth,
    write_correlations,
)
from caviar_napari.viewmodels import correlation_blocks as cb
from caviar_napari.viewmodels.correlations_figure import (
    ARROW_COLOURS,
    NEIGHBOUR_COLOUR,
    PM2_PER_A2,
    REFERENCE_COLOUR,
    ArrowsPanel,
    ImageView,
    draw_green_matrix,
    save_correlations_figure,
)
from caviar_napari.viewmodels.figures import (
    FigureSize,
    RenderedFigure,
    dark_figure,
    render,
    style_axes,
)
from caviar_napari.viewmodels.notices import result_warnings

#: Arrow scale S = 10^(SCALE_MAX_EXP − v / SCALE_STEPS_PER_DECADE) pm² per Å at slider step v.
SCALE_MAX_EXP = 4.0
SCALE_STEPS_PER_DECADE = 50
SCALE_SLIDER_MAX = 200
#: Prefix of the names of the layers the dock draws.
LAYER_PREFIX = "correlations"

SELF_ALL, SELF_SELECTED, SELF_NONE = "all atoms", "reference and neighbours", "no atoms"
FRAME_LAB, FRAME_LOCAL = "lab (y, x)", "local lattice (x → neighbour)"
PAIRS_DRAWN, PAIRS_NN = "reference + neighbours (drawn)", "all atoms: self + nearest neighbours"
#: Ground-truth atoms farther than this from every reconstructed atom are not matched, Å.
MATCH_TOLERANCE_A = 0.5


# ==================================================================================== compute
@dataclass(frozen=True)
class ComputeResult:
    """The correlations of a source.

    Attributes
    ----------
    data
        Green's tensor, B factors, slices, excluded atoms (the CORR file's content).
    rho_nn
        Nearest-neighbour correlation coefficient, None when it cannot be computed.
    rho_error
        Why ``rho_nn`` is None.
    averages
        Unit-cell averages out to 4 nearest-neighbour distances (None without lattice indices).
    nn_distance_A
        Nearest-neighbour distance, Å.
    warnings
        Warnings carried by the data (e.g. displacements at the noise floor).
    """

    data: CorrelationsData
    rho_nn: corr.NeighbourCorrelation | None
    rho_error: str
    averages: cb.CellAverages | None
    nn_distance_A: float
    warnings: tuple[str, ...] = ()

    @property
    def positions_A(self) -> np.ndarray:
        """``(N, 2)`` mean positions with NaN for the excluded atoms, Å."""
        positions = self.data.mean_positions_A.copy()
        positions[self.data.excluded_atoms] = np.nan
        return positions


def compute_job(atoms: Any, slices: str | None) -> Generator[str, None, ComputeResult]:
    """Worker: Green's tensor, B, ρ_nn and unit-cell averages of an AtomsData."""
    yield "Green's tensor"
    data = corr.correlations_from_atoms(atoms, slices)
    positions = data.mean_positions_A.copy()
    positions[data.excluded_atoms] = np.nan
    yield "nearest neighbours"
    d_nn = corr.nearest_neighbour_distance(positions)
    try:
        rho, rho_error = corr.nearest_neighbour_correlation(data.green_A2, positions), ""
    except InputError as exc:
        rho, rho_error = None, str(exc)
    averages = None
    if data.cell_index is not None and data.basis_index is not None:
        yield "unit-cell averages"
        averages = cb.cell_averages(
            data.green_A2, data.cell_index, data.basis_index, positions, 4.0 * d_nn
        )
    return ComputeResult(data, rho, rho_error, averages, d_nn, tuple(result_warnings(data, atoms)))


def summary_text(result: ComputeResult) -> str:
    """Atoms, states, slices, excluded atoms and ρ_nn (HTML line break between)."""
    d = result.data
    excluded = d.excluded_atoms
    shown = ", ".join(map(str, excluded[:10])) + (" …" if excluded.size > 10 else "")
    r = result.rho_nn
    rho = (
        f"ρ_nn = {r.mean:+.3f} ± {r.std:.3f} over {r.values.size} "
        f"nearest-neighbour pairs (d_nn = {r.distance_A:.3f} Å)"
        if r is not None
        else f"ρ_nn: n/a ({result.rho_error})"
    )
    return (
        f"{d.n_atoms} atoms, {d.n_states} states, slices {d.slices.min()}–{d.slices.max()} "
        f"({d.slices.size}); excluded (NaN): {shown or 'none'}<br>{rho}"
    )


# ==================================================================================== options
@dataclass(frozen=True)
class Selection:
    """The reference atom and its neighbours.

    Attributes
    ----------
    reference
        Index of the reference atom i.
    by_radius
        Neighbours within ``radius_A`` (True) or the ``n_nearest`` nearest (False).
    n_nearest
        Number of nearest neighbours.
    radius_A
        Neighbour radius, Å.
    """

    reference: int = 0
    by_radius: bool = False
    n_nearest: int = 3
    radius_A: float = 3.0


@dataclass(frozen=True)
class ArrowOptions:
    """How the arrows are drawn.

    Attributes
    ----------
    self_atoms
        Where self arrows go: :data:`SELF_ALL`, :data:`SELF_SELECTED` or :data:`SELF_NONE`.
    averaged
        Unit-cell averaged blocks instead of each pair's own.
    frame
        :data:`FRAME_LAB` or :data:`FRAME_LOCAL` (local x towards a neighbour).
    frame_neighbour
        Which nearest neighbour (1-based) the local x points to.
    scale_pm2_per_A
        Arrow scale S: pm² of correlation per Å of arrow on screen.
    b_factor_rings
        Draw the B factors as coloured rings.
    """

    self_atoms: str = SELF_ALL
    averaged: bool = False
    frame: str = FRAME_LAB
    frame_neighbour: int = 1
    scale_pm2_per_A: float = 100.0
    b_factor_rings: bool = True


def slider_to_scale(value: int) -> float:
    """Arrow scale S (pm² per Å) at slider step ``value``."""
    return float(10.0 ** (SCALE_MAX_EXP - value / SCALE_STEPS_PER_DECADE))


def scale_to_slider(scale_pm2_per_A: float) -> int:
    """Slider step nearest to the arrow scale S (pm² per Å)."""
    v = round((SCALE_MAX_EXP - np.log10(scale_pm2_per_A)) * SCALE_STEPS_PER_DECADE)
    return int(np.clip(v, 0, SCALE_SLIDER_MAX))


def scale_text(scale_pm2_per_A: float) -> str:
    """What one Å of arrow on screen means."""
    s = scale_pm2_per_A
    return f"scale: {s:.3g} pm² per Å on screen (1 Å of arrow = {s:.3g} pm² = {s / 1e4:.3g} Å²)"


# ==================================================================================== drawing
@dataclass(frozen=True)
class VectorsDrawing:
    """A Vectors layer's content: ``data`` ``(M, 2, 2)``, per-vector ``colours`` ``(M, 4)``,
    ``features``, ``width`` (Å)."""

    data: np.ndarray
    colours: np.ndarray
    features: dict[str, np.ndarray]
    width: float


@dataclass(frozen=True)
class RingsDrawing:
    """B-factor rings: ``points`` ``(n, 2)`` Å, ``features`` (``atom``, ``b_factor_A2``),
    colour ``limits`` (Å²), ring ``size`` (Å) and the legend ``text``."""

    points: np.ndarray
    features: dict[str, np.ndarray]
    limits: tuple[float, float]
    size: float
    text: str


@dataclass(frozen=True)
class MarkersDrawing:
    """Reference (first) and neighbour rings: ``points``, ``colours``, ``atoms``, ``size``."""

    points: np.ndarray
    colours: list[str]
    atoms: np.ndarray
    size: float


@dataclass(frozen=True)
class CorrelationsDrawing:
    """Everything the dock draws for one selection and set of options.

    ``rings`` is None when the rings are switched off, ``frame`` None in the lab frame,
    ``matrix`` None when the Green's tensor image did not change.
    """

    arrows: corr.Arrows
    vectors: VectorsDrawing
    averaged_note: str
    rings: RingsDrawing | None
    rings_text: str
    markers: MarkersDrawing
    frame: VectorsDrawing | None
    frame_text: str
    matrix: RenderedFigure | None
    averages: cb.CellAverages | None


@dataclass(frozen=True)
class DrawRequest:
    """A snapshot of what to draw (taken on the main thread, drawn in a worker)."""

    result: ComputeResult
    selection: Selection
    options: ArrowOptions
    averages: cb.CellAverages | None
    matrix_size: FigureSize | None


def neighbour_atoms(positions_A: np.ndarray, selection: Selection) -> np.ndarray:
    """Neighbours of the reference atom by the selection's rule, nearest first."""
    if selection.by_radius:
        return corr.neighbours(positions_A, selection.reference, radius_A=selection.radius_A)
    return corr.neighbours(positions_A, selection.reference, n_nearest=selection.n_nearest)


def frame_rotation(positions_A: np.ndarray, selection: Selection, options: ArrowOptions):
    """Lab → arrow-frame rotation ``(2, 2)`` (identity in the lab frame)."""
    if options.frame != FRAME_LOCAL:
        return np.eye(2)
    k = options.frame_neighbour
    nearest = corr.neighbours(positions_A, selection.reference, n_nearest=k)
    return corr.local_frame(
        positions_A, selection.reference, int(nearest[min(k, nearest.size) - 1])
    )


def self_atoms(result: ComputeResult, selection: Selection, nbrs: np.ndarray, mode: str):
    """The atoms that get self arrows under ``mode``."""
    if mode == SELF_ALL:
        return np.flatnonzero(np.isfinite(result.data.b_factor_A2))
    if mode == SELF_SELECTED:
        return np.concatenate([[selection.reference], nbrs]).astype(int)
    return np.empty(0, dtype=int)


def selection_arrows(
    result: ComputeResult,
    selection: Selection,
    options: ArrowOptions,
    averages: cb.CellAverages | None = None,
) -> tuple[corr.Arrows, cb.CellAverages | None]:
    """The arrows of a selection (Å world coordinates) and the averages used."""
    positions = result.positions_A
    d = result.data
    nbrs = neighbour_atoms(positions, selection)
    use = (averages or result.averages) if options.averaged else None
    return cb.selection_arrows(
        d.green_A2,
        positions,
        selection.reference,
        nbrs,
        self_atoms(result, selection, nbrs, options.self_atoms),
        PM2_PER_A2 / options.scale_pm2_per_A,
        rotation=frame_rotation(positions, selection, options),
        cell_index=d.cell_index,
        basis_index=d.basis_index,
        averages=use,
    )


def _vectors(arrows: corr.Arrows, width: float) -> VectorsDrawing:
    kinds = np.array(corr.ARROW_KINDS)[arrows.kind]
    colours = np.array([to_rgba(ARROW_COLOURS[k]) for k in kinds]).reshape(-1, 4)
    features = {
        "kind": kinds,
        "atom": arrows.atom,
        "value_y_pm2": arrows.values_A2[:, 0] * PM2_PER_A2,
        "value_x_pm2": arrows.values_A2[:, 1] * PM2_PER_A2,
    }
    return VectorsDrawing(arrows.data, colours, features, width)


def _rings(result: ComputeResult) -> RingsDrawing:
    d = result.data
    valid = np.flatnonzero(np.isfinite(d.b_factor_A2))
    b = d.b_factor_A2[valid]
    lo, hi = (float(b.min()), float(b.max())) if b.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1e-12
    text = (
        f"B = 8π²(⟨u_y²⟩ + ⟨u_x²⟩), rings: viridis from {lo:.3f} Å² (dark blue) to "
        f"{hi:.3f} Å² (yellow), mean {b.mean() if b.size else float('nan'):.3f} Å²"
    )
    return RingsDrawing(
        points=d.mean_positions_A[valid],
        features={"atom": valid, "b_factor_A2": b},
        limits=(lo, hi),
        size=0.55 * result.nn_distance_A,
        text=text,
    )


def _frame(result: ComputeResult, selection: Selection, options: ArrowOptions):
    if options.frame != FRAME_LOCAL:
        return None, "arrows in the lab frame: rows are y (down) and x (right)"
    positions = result.positions_A
    rot = frame_rotation(positions, selection, options)
    lo, hi = np.nanmin(positions, axis=0), np.nanmax(positions, axis=0)
    length = 1.5 * result.nn_distance_A
    origin = np.array([hi[0] + length * 0.6, lo[1] - length * 0.6])  # lower left
    data = np.stack([[origin, rot[1] * length], [origin, rot[0] * length]])
    colours = np.array([to_rgba("white")] * 2)
    drawing = VectorsDrawing(
        data, colours, {"axis": np.array(["x", "y"])}, 0.06 * result.nn_distance_A
    )
    angle = np.degrees(np.arctan2(-rot[1, 0], rot[1, 1]))
    text = (
        f"local frame: x towards NN #{options.frame_neighbour} of the reference, "
        f"at {angle:+.1f}° from lab x (counter-clockwise on screen); arrows are the rows "
        "along local y and x (white arrows, lower left)"
    )
    return drawing, text


def green_matrix_figure(green_A2: np.ndarray, reference: int, size: FigureSize) -> RenderedFigure:
    """The Green's tensor image with the reference's rows outlined, rendered at ``size``."""
    fig = dark_figure(size)
    ax = fig.add_subplot()
    draw_green_matrix(fig, ax, green_A2, reference, dark=True)
    style_axes(ax)
    return render(fig, size)


def drawing_job(request: DrawRequest) -> Generator[None, None, CorrelationsDrawing]:
    """Worker: everything the dock draws for ``request``."""
    yield None
    result, selection, options = request.result, request.selection, request.options
    arrows, averages = selection_arrows(result, selection, options, request.averages)
    note = ""
    if options.averaged and averages is not None:
        d = result.data
        nbrs = neighbour_atoms(result.positions_A, selection)
        ref = selection.reference
        pairs = np.concatenate([[[ref, ref]], np.c_[np.full_like(nbrs, ref), nbrs]])
        lo, hi = cb.averaged_pair_counts(averages, d.cell_index, d.basis_index, pairs)
        note = (
            f"averages over identical unit-cell pairs: {averages.averages.keys.shape[0]} classes "
            f"within {averages.max_distance_A:.2f} Å; the reference's pairs are means of "
            f"{lo}–{hi} atom pairs"
        )
    nbrs = neighbour_atoms(result.positions_A, selection)
    marked = np.concatenate([[selection.reference], nbrs]).astype(int)
    markers = MarkersDrawing(
        points=result.data.mean_positions_A[marked],
        colours=[REFERENCE_COLOUR] + [NEIGHBOUR_COLOUR] * nbrs.size,
        atoms=marked,
        size=0.8 * result.nn_distance_A,
    )
    rings = _rings(result) if options.b_factor_rings else None
    frame, frame_text = _frame(result, selection, options)
    matrix = None
    if request.matrix_size is not None:
        matrix = green_matrix_figure(result.data.green_A2, selection.reference, request.matrix_size)
    return CorrelationsDrawing(
        arrows=arrows,
        vectors=_vectors(arrows, 0.06 * result.nn_distance_A),
        averaged_note=note,
        rings=rings,
        rings_text="" if rings is None else rings.text,
        markers=markers,
        frame=frame,
        frame_text=frame_text,
        matrix=matrix,
        averages=averages if averages is not None else request.averages,
    )


# ==================================================================================== truth
@dataclass(frozen=True)
class TruthMatch:
    """A ground truth matched to the reconstructed atoms.

    Attributes
    ----------
    path
        The simulated file.
    match
        Atom matching (``truth_index`` −1 where unmatched).
    green_A2
        The truth's realised Green's tensor in the reconstructed atom order.
    rho_rec, rho_truth
        ρ per nearest-neighbour pair of the reconstruction, and of the truth over the same pairs.
    """

    path: str
    match: corr.AtomMatch
    green_A2: np.ndarray
    rho_rec: corr.NeighbourCorrelation
    rho_truth: np.ndarray


def truth_job(
    path: str, green_A2: np.ndarray, positions_A: np.ndarray, tolerance_A: float
) -> Generator[str, None, TruthMatch]:
    """Worker: read a ground truth, match atoms, re-index its realised tensor, ρ_nn of both."""
    yield "reading ground truth"
    truth = read_ground_truth(path)
    yield "matching atoms"
    match = corr.match_atoms(positions_A, truth.mean_positions_A, tolerance_A)
    truth_green = corr.reindex_green(truth.green_realised_A2, match.truth_index)
    rho_positions = positions_A.copy()
    rho_positions[match.truth_index < 0] = np.nan
    rho_rec = corr.nearest_neighbour_correlation(green_A2, rho_positions)
    rho_truth = corr.correlation_coefficients(truth_green, rho_rec.pairs)
    return TruthMatch(str(path), match, truth_green, rho_rec, rho_truth)


# ==================================================================================== the dock
class CorrelationsViewModel:
    """State of the Correlations dock.

    Attributes
    ----------
    result
        The last computation (None before the first).
    selection, options
        What the arrows show.
    averages
        Unit-cell averages in use (extended when farther pairs were drawn).
    truth
        The matched ground truth (None: no comparison).
    similarity
        LSM/CSM of the last comparison (None: none or failed).
    warnings
        Warnings of :attr:`result`.
    """

    def __init__(self) -> None:
        self.result: ComputeResult | None = None
        self.selection = Selection()
        self.options = ArrowOptions()
        self.averages: cb.CellAverages | None = None
        self.truth: TruthMatch | None = None
        self.similarity: corr.Similarity | None = None
        self.warnings: list[str] = []

    def accept(self, result: ComputeResult) -> None:
        """Keep a new computation: the reference moves to a valid atom near the centre if it
        is not valid, the neighbour radius to 1.15 d_nn, the scale to show typical arrows at
        a third of d_nn; a comparison is dropped."""
        self.result = result
        self.averages = result.averages
        self.truth = None
        self.similarity = None
        self.warnings = list(result.warnings)
        data = result.data
        valid = np.flatnonzero(np.isfinite(data.b_factor_A2))
        reference = min(self.selection.reference, data.n_atoms - 1)
        if reference not in valid and valid.size:
            centre = np.nanmean(data.mean_positions_A[valid], axis=0)
            d = np.linalg.norm(data.mean_positions_A[valid] - centre, axis=1)
            reference = int(valid[np.argmin(d)])
        self.selection = dataclasses.replace(
            self.selection,
            reference=int(reference),
            radius_A=round(1.15 * result.nn_distance_A, 2),
        )
        diag = np.diagonal(data.green_A2)
        typical = np.nanmedian(np.abs(diag)) * PM2_PER_A2 if diag.size else np.nan
        if np.isfinite(typical) and typical > 0:
            scale = slider_to_scale(scale_to_slider(typical / (0.35 * result.nn_distance_A)))
            self.options = dataclasses.replace(self.options, scale_pm2_per_A=scale)

    def request(self, matrix_size: FigureSize | None) -> DrawRequest:
        """A snapshot of the current state to draw (``matrix_size`` None: keep the image)."""
        if self.result is None:
            raise InputError("nothing to draw: compute the correlations first")
        return DrawRequest(self.result, self.selection, self.options, self.averages, matrix_size)

    def accept_drawing(self, drawing: CorrelationsDrawing) -> None:
        """Keep the (possibly extended) averages a drawing used."""
        if drawing.averages is not None:
            self.averages = drawing.averages

    def nearest_atom(self, position_A: Any) -> int | None:
        """The valid atom nearest to a world position ``(…, y, x)`` Å (None: no result)."""
        if self.result is None:
            return None
        positions = self.result.positions_A
        finite = np.flatnonzero(np.isfinite(positions).all(axis=1))
        if finite.size == 0:
            return None
        yx = np.asarray(position_A, dtype=float)[-2:]
        return int(finite[np.argmin(np.linalg.norm(positions[finite] - yx, axis=1))])

    def neighbour_atoms(self) -> np.ndarray:
        """Neighbours of the reference atom, nearest first."""
        if self.result is None:
            return np.empty(0, dtype=int)
        return neighbour_atoms(self.result.positions_A, self.selection)

    def arrows(self) -> corr.Arrows:
        """The arrows of the current selection and options (Å world coordinates)."""
        if self.result is None:
            raise InputError("nothing to draw: compute the correlations first")
        arrows, averages = selection_arrows(
            self.result, self.selection, self.options, self.averages
        )
        if averages is not None:
            self.averages = averages
        return arrows

    # ------------------------------------------------------------------ comparison
    def comparison_pairs(self, by_drawn: bool) -> np.ndarray:
        """The pair set for LSM/CSM: the drawn reference pairs, or self + nearest neighbours."""
        positions = self.result.positions_A
        if by_drawn:
            return corr.reference_pairs(self.selection.reference, self.neighbour_atoms())
        return corr.pairs_within_radius(
            positions, 1.15 * corr.nearest_neighbour_distance(positions)
        )

    def compare(self, by_drawn: bool, pairs_label: str) -> str:
        """LSM/CSM against the matched truth over the chosen pairs; returns the text (HTML)."""
        if self.truth is None or self.result is None:
            return ""
        t = self.truth
        try:
            pairs = self.comparison_pairs(by_drawn)
            pairs = pairs[(t.match.truth_index[pairs] >= 0).all(axis=1)]
            s = corr.similarity(self.result.data.green_A2, t.green_A2, pairs)
        except CaviarError as exc:
            self.similarity = None
            return f"no comparison: {exc}"
        self.similarity = s
        matched = int((t.match.truth_index >= 0).sum())
        return (
            f"vs realised truth of {Path(t.path).name}: matched {matched}/"
            f"{t.match.truth_index.size} atoms<br>pairs: {pairs_label} ({s.n_pairs} pairs)"
            f"<br>LSM (eq. 3 as printed, sum of {s.n_vectors} vectors) = {s.lsm_sum:.3f}"
            f"<br>LSM (mean per vector) = {s.lsm_mean:.3f}"
            f"<br>CSM (eq. 4) = {s.csm:+.3f}"
            f"<br>ρ_nn: reconstruction {t.rho_rec.mean:+.3f}, truth "
            f"{np.nanmean(t.rho_truth):+.3f} ({t.rho_rec.values.size} NN pairs)"
        )

    # ------------------------------------------------------------------ export
    def export_correlations(self, path: str | os.PathLike) -> None:
        """Write the CORR file of the current result (atomically)."""
        if self.result is None:
            raise InputError("nothing to save: compute the correlations first")
        write_correlations(path, self.result.data)

    def export_figure(
        self, path: str | os.PathLike, background: ImageView | None, *, dpi: int = 200
    ) -> None:
        """Save arrows over ``background`` and the Green's tensor (PNG, SVG, PDF by
        extension; ``dpi`` for raster output)."""
        if self.result is None:
            raise InputError("nothing to save: compute the correlations first")
        frame = "local lattice frame" if self.options.frame == FRAME_LOCAL else "lab"
        mode = "unit-cell averaged" if self.options.averaged else "per atom"
        panel = ArrowsPanel(
            positions_A=self.result.positions_A,
            b_factor_A2=self.result.data.b_factor_A2,
            arrows=self.arrows(),
            reference=self.selection.reference,
            neighbours=self.neighbour_atoms(),
            pad_A=self.result.nn_distance_A,
            title=(
                f"correlations ({mode}, {frame}); scale "
                f"{self.options.scale_pm2_per_A:.3g} pm² per Å"
            ),
            background=background,
        )
        save_correlations_figure(path, panel, self.result.data.green_A2, dpi=dpi)
