"""View-model of the **Correlations** dock (Qt-free): Green's tensor, errors, arrows, LSM/CSM.

Source: an :class:`~caviar_napari.io.atoms_file.AtomsData`.  :func:`compute_job` runs the whole
analysis of ``caviar correlations``
(:func:`~caviar_napari.analysis.correlation_analysis.analyse_correlations`): the Green's tensor
(eq. 2) with a standard error on every entry (resampling the object states), B factors, ρ_nn,
the rms displacement and the uniform x–x / y–y offset (subtracted on request), each ± its error,
the significance of the nearest-neighbour blocks and the noise floor; plus the unit-cell
averages the arrows may show.  :func:`drawing_job` turns the current :class:`Selection` and
:class:`ArrowOptions` into everything the dock draws (arrows faded or hidden by their
significance, B-factor rings, reference markers, local-frame axes, the Green's tensor image,
texts); :func:`truth_job` reads a simulated file's ground truth and :func:`comparison_job`
compares with it (LSM, CSM ± errors) — a z-range with its matched layer of a layered truth and
with every layer, by the steps of ``caviar correlations --ground-truth``
(:func:`layer_table`).  :func:`unit_cell_table` is the source's table of unit-cell averages.
All of them run in a worker; the dock only assigns their results to layers.

Arrows (conventions §4), napari Vectors data ``[start, projection]`` in Å world coordinates: at
each atom j its self-correlation rows (row y of ``G_jj`` yellow, row x purple); at each neighbour
j of the reference atom i the rows of ``G_ij`` (pink: the reference's y row, light blue: its x
row).  Arrow length on screen = correlation (pm²) / scale (pm² per Å).  Each reference arrow
carries its significance against zero correlation in σ (the exact test of
:mod:`caviar_napari.analysis.correlation_significance`); arrows below the chosen threshold are
drawn faded (the fainter, the less significant) or hidden.
"""

from __future__ import annotations

import dataclasses
import html
import os
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import to_rgba

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.correlation_analysis import (
    CorrelationAnalysis,
    CorrelationConfig,
    analyse_correlations,
)
from caviar_napari.analysis.correlation_errors import (
    RESAMPLING_METHODS,
    Resampling,
    effective_dof,
)
from caviar_napari.analysis.correlation_significance import SIGNIFICANCE_SIGMA
from caviar_napari.analysis.noise_floor import noise_floor_warnings, physical_floor_warnings
from caviar_napari.analysis.phonons import STANDARD_ATOMIC_WEIGHTS_AMU
from caviar_napari.analysis.uniform_offset import offset_warnings
from caviar_napari.data.correlations import (
    CorrelationsData,
    LayerMetrics,
    TruthMetrics,
    UnitCellTable,
)
from caviar_napari.data.ground_truth import GroundTruth
from caviar_napari.errors import CaviarError, InputError
from caviar_napari.io.correlations_file import read_ground_truth, write_correlations
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
from caviar_napari.viewmodels.notices import dock_words, result_warnings
from caviar_napari.viewmodels.tables import Table
from caviar_napari.workflows.correlations import (
    TruthChoice,
    basis_labels,
    layered_truth,
    match_lines,
    range_truth_input,
    summary_lines,
    truth_lines,
    with_layer_comparisons,
)
from caviar_napari.workflows.inputs import range_slices
from caviar_napari.workflows.noise_floor import separation_report_check

#: Arrow scale S = 10^(SCALE_MAX_EXP − v / SCALE_STEPS_PER_DECADE) pm² per Å at slider step v.
SCALE_MAX_EXP = 4.0
SCALE_STEPS_PER_DECADE = 50
SCALE_SLIDER_MAX = 200
#: Prefix of the names of the layers the dock draws.
LAYER_PREFIX = "correlations"

SELF_ALL, SELF_SELECTED, SELF_NONE = "all atoms", "reference and neighbours", "no atoms"
FRAME_LAB, FRAME_LOCAL = "lab (y, x)", "local lattice (x → neighbour)"
PAIRS_DRAWN, PAIRS_NN = "reference + neighbours (drawn)", "all atoms: self + nearest neighbours"
#: How arrows below the significance threshold are drawn.
SIG_FADE, SIG_HIDE, SIG_ALL = "fade", "hide", "show all"
SIGNIFICANCE_MODES = (SIG_FADE, SIG_HIDE, SIG_ALL)
#: Opacity of a faded arrow: from FADE_MIN (0 σ) up to FADE_MAX (just below the threshold).
FADE_MIN, FADE_MAX = 0.2, 0.5
#: Ground-truth atoms farther than this from every reconstructed atom are not matched, Å.
MATCH_TOLERANCE_A = 0.5
#: Replicas of the bootstrap errors (seed :data:`BOOTSTRAP_SEED`).
BOOTSTRAP_REPLICAS = 200
BOOTSTRAP_SEED = 0


# ==================================================================================== compute
@dataclass(frozen=True)
class AnalysisOptions:
    """What the correlation analysis computes (the dock's "Source" and "Errors" controls).

    Attributes
    ----------
    slices
        ``"A:B"`` (B excluded), one index, or None / blank for all slices.
    errors
        ``"jackknife"`` (delete-one over the object states) or ``"bootstrap"``
        (:data:`BOOTSTRAP_REPLICAS` replicas, seed :data:`BOOTSTRAP_SEED`).
    subtract_offset
        Subtract the uniform x–x / y–y offset (partial spatial coherence) from the tensor.
    offset_min_distance_A
        Only pairs at least this far apart enter the offset, Å (0: every pair of distinct
        atoms).
    noise_floor_A
        A known positional noise floor per direction (e.g. the rms displacement of a static
        control analysed the same way), Å; None: estimated where the data allow.
    """

    slices: str | None = None
    errors: str = "jackknife"
    subtract_offset: bool = False
    offset_min_distance_A: float = 0.0
    noise_floor_A: float | None = None

    def config(self) -> CorrelationConfig:
        """The analysis configuration (``InputError`` naming a bad option)."""
        if self.errors not in RESAMPLING_METHODS:
            raise InputError(
                f"errors must be one of {', '.join(RESAMPLING_METHODS)}, got {self.errors!r}"
            )
        return CorrelationConfig(
            slices=(self.slices or "").strip() or None,
            resampling=Resampling(self.errors, BOOTSTRAP_REPLICAS, BOOTSTRAP_SEED),
            subtract_offset=bool(self.subtract_offset),
            offset_min_distance_A=float(self.offset_min_distance_A),
            noise_floor_A=self.noise_floor_A,
            noise_floor_source="noise-floor field" if self.noise_floor_A is not None else "",
        )


@dataclass(frozen=True)
class ComputeResult:
    """The correlation analysis of a source.

    Attributes
    ----------
    analysis
        Tensor, errors, B, ρ_nn, rms, offset, significance, noise floor (the CORR contents in
        ``analysis.data``).
    atoms
        The source analysed (kept for the comparison with a truth).
    config
        The analysis configuration used.
    averages
        Unit-cell averages out to 4 nearest-neighbour distances (None without lattice indices).
    nn_distance_A
        Nearest-neighbour distance, Å.
    dof
        Wishart degrees of freedom of the tensor for the significance of the arrows (NaN with
        fewer than 2 states' worth).
    warnings
        Noise floor, unseparated states, too few states for errors or tests.
    range_lines
        The source's z-range and the slices of it analysed (empty without a range).
    """

    analysis: CorrelationAnalysis
    atoms: Any
    config: CorrelationConfig
    averages: cb.CellAverages | None
    nn_distance_A: float
    dof: float
    warnings: tuple[str, ...] = ()
    range_lines: tuple[str, ...] = ()

    @property
    def data(self) -> CorrelationsData:
        """The CORR contents."""
        return self.analysis.data

    @property
    def positions_A(self) -> np.ndarray:
        """``(N, 2)`` mean positions with NaN for the excluded atoms, Å."""
        positions = self.data.mean_positions_A.copy()
        positions[self.data.excluded_atoms] = np.nan
        return positions


def _species_masses(data: CorrelationsData) -> list[float]:
    """Standard atomic weights of the species of the atoms used (unknown species left out)."""
    if data.species is None:
        return []
    used = set(data.species[np.isfinite(data.b_factor_A2)].tolist())
    return [STANDARD_ATOMIC_WEIGHTS_AMU[s] for s in used if s in STANDARD_ATOMIC_WEIGHTS_AMU]


def analysis_warnings(
    analysis: CorrelationAnalysis, atoms: Any, atoms_path: str | os.PathLike | None = None
) -> list[str]:
    """What ``caviar correlations`` warns about, for the dock's banner.

    The source's own warnings, the reconstruction's "states did not separate" verdict (when the
    ATOMS data name a reconstruction file that is there), displacements at the positional noise
    floor or below any vibration, and too few states for errors (3) or significance tests (5).
    """
    data = analysis.data
    warnings = result_warnings(atoms, getattr(atoms, "provenance", None))
    warnings += separation_report_check(atoms, atoms_path or ".")[1]
    if data.noise_floor is not None:
        warnings += [dock_words(w) for w in noise_floor_warnings(data.noise_floor)]
    if data.rms_displacement_A is not None:
        warnings += physical_floor_warnings(data.rms_displacement_A.value, _species_masses(data))
    warnings += [dock_words(w) for w in offset_warnings(data)]
    if data.uncertainty is None:
        warnings.append(
            f"only {data.n_states} object states: no standard errors (at least 3 are needed)"
        )
    if data.n_states < 5:
        warnings.append(
            f"only {data.n_states} object states: the significance of the correlations cannot "
            "be tested (at least 5 states are needed): no arrow is faded"
        )
    return list(dict.fromkeys(warnings))


def compute_job(
    atoms: Any, options: AnalysisOptions | None = None, atoms_path: str | None = None
) -> Generator[str, None, ComputeResult]:
    """Worker: the correlation analysis of an AtomsData and the unit-cell averages.

    Parameters
    ----------
    atoms
        The source (per-state, per-slice positions).
    options
        What to compute (default: all slices, jackknife errors, offset not subtracted).
    atoms_path
        The ATOMS file the source came from, if any (to find the reconstruction it names).
    """
    options = AnalysisOptions() if options is None else options
    config = options.config()
    range_lines: list[str] = []
    zrange = getattr(atoms, "zrange", None)
    if zrange is not None:  # as caviar correlations: the range's occupied slices by default
        slices, range_lines = range_slices(atoms, config.slices)
        config = dataclasses.replace(config, slices=slices)
        range_lines = [zrange.describe(), *range_lines]
    yield "Green's tensor and its errors"
    analysis = analyse_correlations(atoms, config)
    data = analysis.data
    positions = data.mean_positions_A.copy()
    positions[data.excluded_atoms] = np.nan
    yield "nearest neighbours"
    d_nn = corr.nearest_neighbour_distance(positions)
    if data.uncertainty is not None:
        dof = float(data.uncertainty.green_dof)
    else:
        disp = corr.state_displacements(np.asarray(atoms.positions_A, float), data.slices)
        dof = float(effective_dof(disp.u_A))
    averages = None
    if data.cell_index is not None and data.basis_index is not None:
        yield "unit-cell averages"
        averages = cb.cell_averages(
            data.green_A2, data.cell_index, data.basis_index, positions, 4.0 * d_nn
        )
    return ComputeResult(
        analysis=analysis,
        atoms=atoms,
        config=config,
        averages=averages,
        nn_distance_A=d_nn,
        dof=dof,
        warnings=tuple(analysis_warnings(analysis, atoms, atoms_path)),
        range_lines=tuple(range_lines),
    )


def html_lines(lines: list[str]) -> str:
    """Plain text lines as one rich-text label text (escaped, ``<br>`` between)."""
    return "<br>".join(html.escape(line, quote=False) for line in lines)


def summary_text(result: ComputeResult) -> str:
    """The analysis summary of ``caviar correlations`` (every value ± its error), rich text;
    for a z-range, its depths and the slices analysed first."""
    lines = [*result.range_lines, *summary_lines(result.analysis)]
    return html_lines([dock_words(line) for line in lines])


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
    significance
        Reference arrows below ``threshold_sigma``: :data:`SIG_FADE` (drawn faded, the fainter
        the less significant), :data:`SIG_HIDE` (not drawn) or :data:`SIG_ALL` (drawn alike).
    threshold_sigma
        Significance threshold against zero correlation, σ (2σ: p = 0.046).
    """

    self_atoms: str = SELF_ALL
    averaged: bool = False
    frame: str = FRAME_LAB
    frame_neighbour: int = 1
    scale_pm2_per_A: float = 100.0
    b_factor_rings: bool = True
    significance: str = SIG_FADE
    threshold_sigma: float = SIGNIFICANCE_SIGMA


def slider_to_scale(value: int) -> float:
    """Arrow scale S (pm² per Å) at slider step ``value``."""
    return float(10.0 ** (SCALE_MAX_EXP - value / SCALE_STEPS_PER_DECADE))


def scale_to_slider(scale_pm2_per_A: float) -> int:
    """Slider step nearest to the arrow scale S (pm² per Å)."""
    v = round((SCALE_MAX_EXP - np.log10(scale_pm2_per_A)) * SCALE_STEPS_PER_DECADE)
    return int(np.clip(v, 0, SCALE_SLIDER_MAX))


def arrow_sigma(arrows: corr.Arrows) -> np.ndarray:
    """``(M,)`` significance of each arrow, σ (NaN where not tested)."""
    if arrows.sigma is None:
        return np.full(arrows.kind.shape, np.nan)
    return np.asarray(arrows.sigma, dtype=float)


def significance_alpha(sigma: np.ndarray, options: ArrowOptions) -> np.ndarray:
    """Opacity ``(M,)`` of each arrow by its significance σ (0: hidden).

    At or above the threshold, or untested (NaN, ``+inf`` for self arrows): 1.  Below it:
    :data:`SIG_ALL` 1, :data:`SIG_HIDE` 0, :data:`SIG_FADE` from :data:`FADE_MIN` at 0 σ up to
    :data:`FADE_MAX` just below the threshold.
    """
    sigma = np.asarray(sigma, dtype=float)
    alpha = np.ones(sigma.shape)
    below = np.isfinite(sigma) & (sigma < options.threshold_sigma)
    if options.significance == SIG_HIDE:
        alpha[below] = 0.0
    elif options.significance == SIG_FADE:
        t = np.clip(sigma[below] / max(options.threshold_sigma, 1e-12), 0.0, 1.0)
        alpha[below] = FADE_MIN + (FADE_MAX - FADE_MIN) * t
    return alpha


def significance_text(arrows: corr.Arrows, result: ComputeResult, options: ArrowOptions) -> str:
    """How many of the drawn reference arrows and of all nearest-neighbour blocks are
    significant at the threshold, and how the others are drawn."""
    if result.data.n_states < 5 or not np.isfinite(result.dof):
        return "significance: not tested (at least 5 object states are needed)"
    t = options.threshold_sigma
    sigma = arrow_sigma(arrows)[arrows.kind >= 2]
    tested = np.isfinite(sigma)
    n_sig = int((sigma[tested] >= t).sum())
    how = {
        SIG_FADE: "the others faded (the fainter, the less significant)",
        SIG_HIDE: "the others hidden",
        SIG_ALL: "all drawn alike",
    }[options.significance]
    text = (
        f"reference arrows significant at {t:g}σ: {n_sig} of {int(tested.sum())}; {how}. "
        f"Exact test of zero correlation (Wishart dof {result.dof:.3g}; "
        f"{100 * _chance(t):.1f} % of uncorrelated arrows pass by chance)"
    )
    nb = result.analysis.neighbours
    if nb is not None:
        sig = nb.test.significant(t)
        text += f"; nearest-neighbour blocks: {int(sig.sum())} of {sig.size} pairs"
        if nb.class_sigma.size:
            cls = np.nan_to_num(nb.class_sigma, nan=-np.inf) >= t
            text += f", {int(cls.sum())} of {cls.size} unit-cell classes"
    return text


def _chance(threshold_sigma: float) -> float:
    """Two-sided normal tail beyond ``threshold_sigma``: the false-positive rate of a test."""
    from scipy.stats import norm

    return float(2.0 * norm.sf(threshold_sigma))


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
    significance_text: str = ""


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
        dof=result.dof if d.n_states >= 5 and np.isfinite(result.dof) else None,
    )


def _vectors(arrows: corr.Arrows, width: float, options: ArrowOptions) -> VectorsDrawing:
    """The arrows as a Vectors layer: colour by kind, opacity by significance; arrows hidden
    by the options are left out."""
    sigma = arrow_sigma(arrows)
    alpha = significance_alpha(sigma, options)
    shown = alpha > 0
    kinds = np.array(corr.ARROW_KINDS)[arrows.kind][shown]
    colours = np.array([to_rgba(ARROW_COLOURS[k]) for k in kinds]).reshape(-1, 4)
    colours[:, 3] = alpha[shown]
    features = {
        "kind": kinds,
        "atom": arrows.atom[shown],
        "value_y_pm2": arrows.values_A2[shown, 0] * PM2_PER_A2,
        "value_x_pm2": arrows.values_A2[shown, 1] * PM2_PER_A2,
        "sigma": sigma[shown],
        "significant": ~(np.isfinite(sigma[shown]) & (sigma[shown] < options.threshold_sigma)),
    }
    return VectorsDrawing(arrows.data[shown].reshape(-1, 2, 2), colours, features, width)


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
        vectors=_vectors(arrows, 0.06 * result.nn_distance_A, options),
        averaged_note=note,
        rings=rings,
        rings_text="" if rings is None else rings.text,
        markers=markers,
        frame=frame,
        frame_text=frame_text,
        matrix=matrix,
        averages=averages if averages is not None else request.averages,
        significance_text=significance_text(arrows, result, options),
    )


# ==================================================================================== truth
@dataclass(frozen=True)
class Truth:
    """A simulated file's ground truth, read once.

    Attributes
    ----------
    path
        The simulated file.
    truth
        Its ``ground_truth`` group.
    """

    path: str
    truth: GroundTruth

    @property
    def static(self) -> bool:
        """The truth has no displacements (LSM/CSM are undefined)."""
        return not np.any(self.truth.green_realised_A2)


@dataclass(frozen=True)
class ComparisonRequest:
    """A comparison to make (taken on the main thread, computed in a worker).

    Attributes
    ----------
    result
        The analysis compared (its source and configuration are analysed again with the truth).
    truth
        The ground truth.
    reference
        Compare over this atom and its ``neighbours`` nearest neighbours (self blocks included);
        None: every self block and every nearest-neighbour pair.
    neighbours
        Nearest neighbours of the reference.
    label
        The pair set in words.
    ranges
        The z-ranges of the source's ATOMS file by label, the source's among them: matched
        together to the layers of a layered truth (empty: a source without a z-range).
    """

    result: ComputeResult
    truth: Truth
    reference: int | None
    neighbours: int
    label: str
    ranges: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """LSM/CSM ± errors against a truth (``metrics`` None: static truth or no comparison).

    Attributes
    ----------
    metrics
        The comparison with the truth compared with (a z-range's: its own layer's).
    text
        The comparison in words (rich text).
    layers
        A z-range against every layer of a layered truth (empty otherwise).
    layer
        The layer the z-range was matched to (``""``: none).
    """

    metrics: TruthMetrics | None
    text: str
    layers: tuple[LayerMetrics, ...] = ()
    layer: str = ""


def truth_job(path: str) -> Generator[str, None, Truth]:
    """Worker: read the ground truth of a simulated file."""
    yield "reading ground truth"
    return Truth(str(path), read_ground_truth(path))


def comparison_job(request: ComparisonRequest) -> Generator[str, None, Comparison]:
    """Worker: the analysis again with the truth (LSM, CSM, ρ_nn ± errors), as ``caviar
    correlations --ground-truth`` does it: a z-range source with a layered truth is matched to
    its layer (with the other ranges of its file) and compared with that layer's realised
    tensor, and with every layer in its own lattice frame; the text of the comparison (rich
    text)."""
    yield "comparing"
    t, result = request.truth, request.result
    zrange = getattr(result.atoms, "zrange", None)
    label = "" if zrange is None else zrange.label
    choice = TruthChoice(
        Path(t.path).name, MATCH_TOLERANCE_A, request.reference, max(int(request.neighbours), 1)
    )
    try:
        layered, matches = None, []
        if zrange is not None:
            ranges = dict(request.ranges) or {label: result.atoms}
            layered, matches = layered_truth(t.path, t.truth, ranges)
        truth_input, layer = range_truth_input(choice, t.truth, layered, label)
        analysis = result.analysis
        if truth_input is not None:
            analysis = analyse_correlations(result.atoms, result.config, truth_input)
            analysis = with_layer_comparisons(analysis, layered, layer)
    except CaviarError as exc:
        return Comparison(None, html.escape(f"no comparison: {exc}"))
    lines = match_lines(matches, choice.path) + truth_lines(
        choice, analysis, t.truth, truth_input, layered, label
    )
    return Comparison(
        analysis.data.truth_metrics if truth_input is not None else None,
        html_lines([dock_words(x) for x in lines]),
        layers=tuple(analysis.data.layer_comparisons or ()),
        layer="" if layer is None else layer.name,
    )


def layer_table(comparison: Comparison) -> Table | None:
    """A z-range against every layer of a layered truth, one row per layer (None: not a
    z-range against a layered truth)."""
    if not comparison.layers:
        return None
    rows = []
    for m in comparison.layers:
        name = m.layer + (" (own)" if m.matched else "")
        if m.n_matched == 0:
            rows.append((name, "n/a", "n/a", "n/a", "n/a", "0"))
            continue
        rows.append(
            (
                name,
                f"{m.csm:+.3f}",
                f"{m.lsm_mean:.3f}",
                f"{m.rho_nn_reconstructed:+.3f}",
                f"{m.rho_nn_truth:+.3f}",
                str(m.n_matched),
            )
        )
    return Table(
        ("layer", "CSM nn", "LSM", "ρ_nn", "ρ_nn truth", "atoms"),
        rows,
        "this z-range against every layer of the ground truth: each layer's realised blocks "
        "carried into the range's lattice frame, over the self blocks and nearest-neighbour "
        "pairs of the range's atoms on its sites (CSM eq. 4, LSM eq. 3 as a mean per vector); "
        "'own': the layer the range was matched to (by depth and lattice sites)",
    )


def _pm2(value_A2: float, error_A2: float) -> str:
    text = f"{PM2_PER_A2 * value_A2:+.2f}"
    return text + (f"±{PM2_PER_A2 * error_A2:.2f}" if np.isfinite(error_A2) else "")


def unit_cell_table(result: ComputeResult) -> Table | None:
    """The unit-cell averages of ``caviar correlations`` (CORR ``unit_cell_averages``): one row
    per class ``(Δl1,Δl2) κ→κ'`` with its neighbour shell and ``G_xx``, ``G_yy``, ``G_xy``
    ± error in pm² in the local lattice frame, and the significance of the averaged block (None
    without lattice indices)."""
    table: UnitCellTable | None = result.data.unit_cell_averages
    if table is None:
        return None
    labels = basis_labels(result.data)

    def name(k: int) -> str:
        return labels[k] if 0 <= k < len(labels) else str(k)

    rows = []
    for c in range(table.n_classes):  # a few classes per shell
        d1, d2, k1, k2 = (int(v) for v in table.keys[c])
        b, e = table.blocks_A2[c], table.stderr_A2[c]
        sigma = table.block_sigma[c]
        sig = "self" if np.isinf(sigma) else f"{sigma:.1f}" if np.isfinite(sigma) else "n/a"
        rows.append(
            (
                f"({d1},{d2}) {name(k1)}→{name(k2)}",
                str(int(table.shell[c])),
                _pm2(b[1, 1], e[1, 1]),
                _pm2(b[0, 0], e[0, 0]),
                _pm2(b[1, 0], e[1, 0]),
                sig,
            )
        )
    return Table(
        ("class", "shell", "G_xx", "G_yy", "G_xy", "σ"),
        rows,
        "unit-cell averages: every pair of atoms with the same cell offset Δl = l′ − l and basis "
        "atoms κ → κ′ averaged (class (Δl1,Δl2) κ→κ′, each listed once: its reverse holds the "
        "same pairs), with its neighbour shell (0: self); G in pm² in the local lattice "
        "frame, ± standard error from resampling the object states; σ: significance of the "
        "averaged block against zero correlation",
    )


def unit_cell_caption(result: ComputeResult) -> str:
    """What the unit-cell table holds: the z-range, the pairs and the local frame."""
    table = result.data.unit_cell_averages
    if table is None:
        return "no unit-cell averages: the source has no lattice indices (cell, basis)"
    labels = basis_labels(result.data)
    f1, f2, k1, k2 = (int(v) for v in table.frame_key)
    a = labels[k1] if k1 < len(labels) else str(k1)
    b = labels[k2] if k2 < len(labels) else str(k2)
    zrange = getattr(result.atoms, "zrange", None)
    where = "" if zrange is None else f"z-range {zrange.label or zrange.spec}: "
    shells = np.unique(table.shell[table.shell > 0])
    shell_distances = [float(np.mean(table.distance_A[table.shell == k])) for k in shells]
    return (
        f"{where}G in pm² ± error, classes of pairs within {table.max_distance_A:.2f} Å (shells "
        f"at {', '.join(f'{d:.2f}' for d in shell_distances)} Å); local frame: x along the {a} → "
        f"{b} bond Δl = ({f1}, {f2}), {table.frame_angle_deg:+.1f}° from lab x"
    )


# ==================================================================================== the dock
class CorrelationsViewModel:
    """State of the Correlations dock.

    Attributes
    ----------
    analysis_options
        What the analysis computes (slices, errors, offset).
    result
        The last computation (None before the first).
    selection, options
        What the arrows show.
    averages
        Unit-cell averages in use (extended when farther pairs were drawn).
    truth
        The ground truth read (None: no comparison).
    metrics
        LSM/CSM ± errors of the last comparison (None: none, static truth, or failed).
    warnings
        Warnings of :attr:`result`.
    """

    def __init__(self) -> None:
        self.analysis_options = AnalysisOptions()
        self.result: ComputeResult | None = None
        self.selection = Selection()
        self.options = ArrowOptions()
        self.averages: cb.CellAverages | None = None
        self.truth: Truth | None = None
        self.metrics: TruthMetrics | None = None
        self.comparison: Comparison | None = None
        self.warnings: list[str] = []

    def accept(self, result: ComputeResult) -> None:
        """Keep a new computation: the reference moves to a valid atom near the centre if it
        is not valid, the neighbour radius to 1.15 d_nn, the scale to show typical arrows at
        a third of d_nn (only for a new source); the comparison's numbers are dropped."""
        new_source = self.result is None or self.result.atoms is not result.atoms
        self.result = result
        self.averages = result.averages
        self.metrics = None
        self.comparison = None
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
        if new_source and np.isfinite(typical) and typical > 0:
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
        """The arrows of the current selection and options (Å world coordinates), each
        reference arrow with its significance."""
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

    def comparison_request(
        self, by_drawn: bool, label: str, ranges: Mapping[str, Any] | None = None
    ) -> ComparisonRequest | None:
        """What to compare now (None: no result or no truth): the drawn reference and its
        neighbours, or every self block and nearest-neighbour pair; ``ranges``: the z-ranges
        of the source's file by label (matched together to a layered truth's layers)."""
        if self.truth is None or self.result is None:
            return None
        reference = self.selection.reference if by_drawn else None
        return ComparisonRequest(
            self.result,
            self.truth,
            reference,
            int(self.neighbour_atoms().size),
            label,
            dict(ranges or {}),
        )

    def accept_comparison(self, comparison: Comparison) -> str:
        """Keep a comparison and its metrics; returns its text."""
        self.comparison = comparison
        self.metrics = comparison.metrics
        return comparison.text

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
        arrows = self.arrows()
        panel = ArrowsPanel(
            positions_A=self.result.positions_A,
            b_factor_A2=self.result.data.b_factor_A2,
            arrows=arrows,
            alpha=significance_alpha(arrow_sigma(arrows), self.options),
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
