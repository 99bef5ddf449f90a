"""The **Correlations** dock widget: Green's tensor, correlation arrows (paper Fig. 2, 4), LSM/CSM.

Source: an ATOMS file, or any napari Points layer whose ``metadata["caviar_atoms"]`` holds an
``io.atoms_file.AtomsData`` (as made by the Atoms widget).  The Green's tensor (eq. 2), B factors,
ρ_nn and unit-cell averages are computed in a background worker; drawing is on the main thread.

Arrows (conventions §4), in a napari Vectors layer whose data are ``[start, projection]`` in Å world
coordinates: at each atom j its self-correlation rows (row y of ``G_jj`` yellow, row x purple);
at each neighbour j of the reference atom i the rows of ``G_ij`` (pink: the reference's y row,
light blue: its x row).  Arrow length on screen = correlation (pm²) / scale (pm² per Å).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import to_rgba
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from caviar_napari._qt._atoms_source import (
    ATOMS_METADATA_KEY,
    AtomsAnalysisDock,
    AtomsSourcePicker,
)
from caviar_napari._qt._file_dialogs import FIGURE_FILTER, HDF5_FILTER, ask_and_run, ask_path
from caviar_napari._qt._forms import double_spin, hrow, int_spin, push_button, text_label
from caviar_napari._qt._plot import PlotCanvas
from caviar_napari._qt.correlations_figure import (
    ARROW_COLOURS,
    ARROW_LEGEND,
    NEIGHBOUR_COLOUR,
    PM2_PER_A2,
    REFERENCE_COLOUR,
    ArrowsPanel,
    current_image_view,
    draw_green_matrix,
    save_correlations_figure,
)
from caviar_napari.analysis import correlations as corr
from caviar_napari.errors import CaviarError, InputError
from caviar_napari.io.correlations_file import (
    CorrelationsData,
    read_ground_truth,
    write_correlations,
)

__all__ = [
    "ARROW_COLOURS",
    "ARROW_LEGEND",
    "ATOMS_METADATA_KEY",
    "FRAME_LAB",
    "FRAME_LOCAL",
    "NEIGHBOUR_COLOUR",
    "PAIRS_DRAWN",
    "PAIRS_NN",
    "REFERENCE_COLOUR",
    "SELF_ALL",
    "SELF_NONE",
    "SELF_SELECTED",
    "ComputeResult",
    "CorrelationsWidget",
    "draw_green_matrix",
]

#: Slider position v → arrow scale S = 10^(SCALE_MAX_EXP − v / SCALE_STEPS_PER_DECADE) pm² per Å
SCALE_MAX_EXP = 4.0
SCALE_STEPS_PER_DECADE = 50
SCALE_SLIDER_MAX = 200

LAYER_PREFIX = "correlations"

SELF_ALL, SELF_SELECTED, SELF_NONE = "all atoms", "reference and neighbours", "no atoms"
FRAME_LAB, FRAME_LOCAL = "lab (y, x)", "local lattice (x → neighbour)"
PAIRS_DRAWN, PAIRS_NN = "reference + neighbours (drawn)", "all atoms: self + nearest neighbours"


@dataclasses.dataclass(frozen=True)
class ComputeResult:
    """What the background computation returns to the widget."""

    data: CorrelationsData
    rho_nn: corr.NeighbourCorrelation | None
    rho_error: str
    averages: corr.UnitCellAverages | None
    averages_distance_A: float
    nn_distance_A: float


def _compute(atoms: Any, slices: str | None) -> Generator[str, None, ComputeResult]:
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
    averages, distance = None, 0.0
    if data.cell_index is not None and data.basis_index is not None:
        yield "unit-cell averages"
        distance = 4.0 * d_nn
        averages = corr.unit_cell_averages(
            data.green_A2, data.cell_index, data.basis_index, positions, max_distance_A=distance
        )
    return ComputeResult(data, rho, rho_error, averages, distance, d_nn)


def _load_truth(
    path: str, green: np.ndarray, positions: np.ndarray, tolerance_A: float
) -> Generator[str, None, tuple]:
    """Worker: read a ground truth, match atoms, re-index its realised tensor, ρ_nn of both.

    Returns ``(path, AtomMatch, truth tensor in reconstructed order, ρ_nn of the
    reconstruction, ρ per pair of the truth over the same pairs)``.
    """
    yield "reading ground truth"
    truth = read_ground_truth(path)
    yield "matching atoms"
    match = corr.match_atoms(positions, truth.mean_positions_A, tolerance_A)
    truth_green = corr.reindex_green(truth.green_realised_A2, match.truth_index)
    rho_positions = positions.copy()
    rho_positions[match.truth_index < 0] = np.nan
    rho_rec = corr.nearest_neighbour_correlation(green, rho_positions)
    rho_truth = corr.correlation_coefficients(truth_green, rho_rec.pairs)
    return path, match, truth_green, rho_rec, rho_truth


def _strict_marker_size_A(mean_positions_A: np.ndarray) -> float:
    """Marker size of a source opened from a file: 0.3 × the nearest-neighbour distance, Å.

    Raises InputError with fewer than two finite atoms (there would be no pair to correlate),
    so such a file is refused when opened.
    """
    return 0.3 * corr.nearest_neighbour_distance(mean_positions_A)


def _disconnect(viewer: Any, mouse_callback: Any, *_: Any) -> None:
    """Detach a destroyed widget's mouse callback from the viewer."""
    if mouse_callback in viewer.mouse_drag_callbacks:
        viewer.mouse_drag_callbacks.remove(mouse_callback)


class CorrelationsWidget(AtomsAnalysisDock):
    """Dock widget **Correlations**: compute, draw and compare displacement correlations.

    Parameters
    ----------
    napari_viewer
        The viewer whose atoms layers are the sources; the arrows, rings and markers are drawn
        in it and a click on an atom picks the reference.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.atoms: Any = None
        self.result: ComputeResult | None = None
        self._truth: tuple | None = None
        self.similarity: corr.Similarity | None = None
        self._matrix_key: tuple | None = None
        self._layers: dict[str, Any] = {}
        self._build_ui()
        self.source_picker.changed.connect(self._set_enabled)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse_drag)
        self.destroyed.connect(functools.partial(_disconnect, self.viewer, self._on_mouse_drag))

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)

        source = QGroupBox("Source")
        form = QFormLayout(source)
        self.source_picker = AtomsSourcePicker(
            self.viewer, marker_size=_strict_marker_size_A, opacity=0.6
        )
        form.addRow("atoms layer", self.source_picker)
        self.slices_edit = QLineEdit()
        self.slices_edit.setPlaceholderText("all slices (or A:B, B excluded; or one index)")
        form.addRow("slices", self.slices_edit)
        self.compute_button = push_button("Compute Green's tensor", self.compute)
        form.addRow(self.compute_button)
        self.summary_label = text_label("No correlations yet: choose a source and compute.")
        form.addRow(self.summary_label)
        layout.addWidget(source)

        selection = QGroupBox("Reference atom and neighbours")
        form = QFormLayout(selection)
        self.reference_spin = int_spin(0, 0)
        self.reference_spin.valueChanged.connect(self._on_selection_changed)
        self.click_check = QCheckBox("pick by clicking an atom")
        self.click_check.setChecked(True)
        form.addRow("reference atom", hrow(self.reference_spin, self.click_check))
        self.nearest_radio = QRadioButton("n nearest")
        self.radius_radio = QRadioButton("within radius")
        self.nearest_radio.setChecked(True)
        self.n_nearest_spin = int_spin(1, 99, 3)
        self.radius_spin = double_spin(0.1, 100.0, 3.0, step=0.1, decimals=2, suffix=" Å")
        row = hrow(self.nearest_radio, self.n_nearest_spin, self.radius_radio, self.radius_spin)
        form.addRow("neighbours", row)
        for w in (self.nearest_radio, self.radius_radio):
            w.toggled.connect(self._on_selection_changed)
        self.n_nearest_spin.valueChanged.connect(self._on_selection_changed)
        self.radius_spin.valueChanged.connect(self._on_selection_changed)
        layout.addWidget(selection)

        arrows = QGroupBox("Arrows")
        form = QFormLayout(arrows)
        self.self_combo = QComboBox()
        self.self_combo.addItems([SELF_ALL, SELF_SELECTED, SELF_NONE])
        self.self_combo.currentIndexChanged.connect(self._redraw_arrows)
        form.addRow("self arrows at", self.self_combo)
        self.averaged_check = QCheckBox("unit-cell averages (same l − l′, κ, κ′)")
        self.averaged_check.toggled.connect(self._redraw_arrows)
        form.addRow(self.averaged_check)
        self.average_label = text_label()
        self.average_label.setVisible(False)
        form.addRow(self.average_label)
        self.frame_combo = QComboBox()
        self.frame_combo.addItems([FRAME_LAB, FRAME_LOCAL])
        self.frame_combo.currentIndexChanged.connect(self._redraw_frame)
        self.frame_neighbour_spin = int_spin(1, 6, prefix="NN #")
        self.frame_neighbour_spin.setToolTip("local x points to this nearest neighbour")
        self.frame_neighbour_spin.valueChanged.connect(self._redraw_frame)
        form.addRow("frame", hrow((self.frame_combo, 1), self.frame_neighbour_spin))
        self.scale_slider = QSlider(Qt.Horizontal)
        self.scale_slider.setRange(0, SCALE_SLIDER_MAX)
        self.scale_slider.setValue(SCALE_SLIDER_MAX // 2)
        self.scale_slider.valueChanged.connect(self._on_scale_changed)
        self.scale_label = QLabel()
        form.addRow("arrow scale", self.scale_slider)
        form.addRow(self.scale_label)
        form.addRow(self._legend())
        self.b_check = QCheckBox("B factor as coloured rings on the atoms")
        self.b_check.setChecked(True)
        self.b_check.toggled.connect(self._redraw_b_factors)
        form.addRow(self.b_check)
        self.b_label = text_label()
        form.addRow(self.b_label)
        self.frame_label = text_label()
        form.addRow(self.frame_label)
        layout.addWidget(arrows)

        truth = QGroupBox("Ground truth (simulated file)")
        form = QFormLayout(truth)
        self.truth_edit = QLineEdit()
        self.truth_edit.setPlaceholderText("DATA.h5 written by caviar simulate")
        browse = push_button("Browse…", self._ask_truth_file)
        form.addRow("file", hrow((self.truth_edit, 1), browse))
        self.pairs_combo = QComboBox()
        self.pairs_combo.addItems([PAIRS_DRAWN, PAIRS_NN])
        self.pairs_combo.currentIndexChanged.connect(self._update_comparison)
        form.addRow("pairs", self.pairs_combo)
        self.compare_button = push_button("Compare with realised truth", self.compare)
        form.addRow(self.compare_button)
        self.truth_label = text_label(selectable=True)
        form.addRow(self.truth_label)
        layout.addWidget(truth)

        export = QHBoxLayout()
        self.save_corr_button = push_button("Save CORR…", self._ask_export_correlations)
        self.save_figure_button = push_button("Save figure (PNG/SVG)…", self._ask_export_figure)
        export.addWidget(self.save_corr_button)
        export.addWidget(self.save_figure_button)
        layout.addLayout(export)

        self.plot = PlotCanvas(self, height_px=300)
        layout.addWidget(self.plot, 1)
        self._update_scale_label()
        self._set_enabled()

    @staticmethod
    def _legend() -> QWidget:
        """Colour legend: one row per arrow kind and marker ring."""
        legend = QWidget()
        grid = QGridLayout(legend)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(1)
        entries = [(ARROW_COLOURS[k], "➜", ARROW_LEGEND[k]) for k in corr.ARROW_KINDS]
        entries += [
            (REFERENCE_COLOUR, "◯", "reference atom"),
            (NEIGHBOUR_COLOUR, "◯", "neighbours"),
            ("#d6d8db", "◯", "ring colour: B factor (viridis)"),
        ]
        for row, (colour, symbol, text) in enumerate(entries):
            mark = QLabel(symbol)
            mark.setStyleSheet(f"color: {colour}; font-size: 14pt; font-weight: bold;")
            grid.addWidget(mark, row, 0)
            grid.addWidget(QLabel(text), row, 1)
        grid.setColumnStretch(1, 1)
        return legend

    def _set_enabled(self) -> None:
        busy = self.worker is not None
        has = self.result is not None
        self.compute_button.setEnabled(not busy and self.atoms_source() is not None)
        self.compare_button.setEnabled(not busy and has)
        self.save_corr_button.setEnabled(has)
        self.save_figure_button.setEnabled(has)
        self.averaged_check.setEnabled(has and self.result.averages is not None)

    # ------------------------------------------------------------------ compute
    def compute(self) -> None:
        """Start the background computation of the Green's tensor of the chosen source."""
        atoms = self.atoms_source()
        if atoms is None or self.worker is not None:
            return
        slices = self.slices_edit.text().strip() or None
        self.atoms = atoms
        self._run_in_worker(
            self.summary_label, "computing …", _compute, atoms, slices, on_return=self._on_computed
        )

    def _on_computed(self, result: ComputeResult) -> None:
        self.result = result
        self._truth = None
        self.truth_label.setText("")
        data = result.data
        self.reference_spin.blockSignals(True)
        self.reference_spin.setRange(0, data.n_atoms - 1)
        valid = np.flatnonzero(np.isfinite(data.b_factor_A2))
        if self.reference_spin.value() not in valid and valid.size:
            centre = np.nanmean(data.mean_positions_A[valid], axis=0)
            d = np.linalg.norm(data.mean_positions_A[valid] - centre, axis=1)
            self.reference_spin.setValue(int(valid[np.argmin(d)]))
        self.reference_spin.blockSignals(False)
        self.radius_spin.blockSignals(True)
        self.radius_spin.setValue(round(1.15 * result.nn_distance_A, 2))
        self.radius_spin.blockSignals(False)
        self._matrix_key = None
        self._auto_scale()
        self.summary_label.setText(self._summary_text())
        self._set_enabled()
        self.redraw()

    def _summary_text(self) -> str:
        r = self.result
        d = r.data
        excluded = d.excluded_atoms
        shown = ", ".join(map(str, excluded[:10])) + (" …" if excluded.size > 10 else "")
        rho = (
            f"ρ_nn = {r.rho_nn.mean:+.3f} ± {r.rho_nn.std:.3f} over {r.rho_nn.values.size} "
            f"nearest-neighbour pairs (d_nn = {r.rho_nn.distance_A:.3f} Å)"
            if r.rho_nn is not None
            else f"ρ_nn: n/a ({r.rho_error})"
        )
        return (
            f"{d.n_atoms} atoms, {d.n_states} states, slices {d.slices.min()}–{d.slices.max()} "
            f"({d.slices.size}); excluded (NaN): {shown or 'none'}<br>{rho}"
        )

    # ------------------------------------------------------------------ reference selection
    def set_reference(self, atom: int) -> None:
        """Make ``atom`` the reference atom and redraw."""
        self.reference_spin.setValue(int(atom))

    def pick_reference_at(self, position_A: Any) -> int | None:
        """Make the valid atom nearest to a world position ``(…, y, x)`` (Å) the reference."""
        if self.result is None:
            return None
        positions = self._positions()
        finite = np.flatnonzero(np.isfinite(positions).all(axis=1))
        yx = np.asarray(position_A, dtype=float)[-2:]
        atom = int(finite[np.argmin(np.linalg.norm(positions[finite] - yx, axis=1))])
        self.set_reference(atom)
        return atom

    def _on_mouse_drag(self, viewer: Any, event: Any) -> Generator[None, None, None]:
        """Viewer mouse callback: a click (press and release without moving) picks an atom."""
        if not self.click_check.isChecked() or self.result is None:
            return
        position = np.asarray(event.position, dtype=float)
        moved = False
        yield
        while event.type == "mouse_move":
            moved = True
            yield
        if not moved:
            self.pick_reference_at(position)

    def _positions(self) -> np.ndarray:
        positions = self.result.data.mean_positions_A.copy()
        positions[self.result.data.excluded_atoms] = np.nan
        return positions

    def reference(self) -> int:
        """The current reference atom index."""
        return int(self.reference_spin.value())

    def neighbour_atoms(self) -> np.ndarray:
        """Neighbours of the reference atom by the chosen rule, nearest first."""
        positions = self._positions()
        if self.radius_radio.isChecked():
            return corr.neighbours(positions, self.reference(), radius_A=self.radius_spin.value())
        return corr.neighbours(positions, self.reference(), n_nearest=self.n_nearest_spin.value())

    def _on_selection_changed(self, *_: Any) -> None:
        self._draw("arrows", "markers", "frame", "matrix")
        self._update_comparison()

    # ------------------------------------------------------------------ scale
    def scale_pm2_per_A(self) -> float:
        """Arrow scale S: pm² of correlation per Å of arrow on screen."""
        v = self.scale_slider.value()
        return float(10.0 ** (SCALE_MAX_EXP - v / SCALE_STEPS_PER_DECADE))

    def set_scale_pm2_per_A(self, scale: float) -> None:
        """Set the slider to the position nearest to a scale S (pm² per Å)."""
        v = round((SCALE_MAX_EXP - np.log10(scale)) * SCALE_STEPS_PER_DECADE)
        self.scale_slider.setValue(int(np.clip(v, 0, SCALE_SLIDER_MAX)))

    def _auto_scale(self) -> None:
        d = self.result.data
        diag = np.diagonal(d.green_A2)
        typical = np.nanmedian(np.abs(diag)) * PM2_PER_A2
        if np.isfinite(typical) and typical > 0:
            self.set_scale_pm2_per_A(typical / (0.35 * self.result.nn_distance_A))

    def _on_scale_changed(self, *_: Any) -> None:
        self._update_scale_label()
        self._draw("arrows")

    def _update_scale_label(self) -> None:
        s = self.scale_pm2_per_A()
        self.scale_label.setText(
            f"scale: {s:.3g} pm² per Å on screen (1 Å of arrow = {s:.3g} pm² = {s / 1e4:.3g} Å²)"
        )

    # ------------------------------------------------------------------ drawing
    def _frame(self) -> np.ndarray:
        if self.frame_combo.currentText() != FRAME_LOCAL:
            return np.eye(2)
        positions = self._positions()
        k = self.frame_neighbour_spin.value()
        nearest = corr.neighbours(positions, self.reference(), n_nearest=k)
        return corr.local_frame(positions, self.reference(), int(nearest[min(k, nearest.size) - 1]))

    def _blocks(self, pairs: np.ndarray) -> np.ndarray:
        """Blocks of pairs: per atom, or averaged over identical unit-cell pairs."""
        d = self.result.data
        if not self.averaged_check.isChecked() or self.result.averages is None:
            return corr.pair_blocks(d.green_A2, pairs)
        if pairs.size == 0:
            return np.empty((0, 2, 2))
        averages = self.result.averages
        positions = self._positions()
        distance = np.max(np.linalg.norm(positions[pairs[:, 1]] - positions[pairs[:, 0]], axis=1))
        if distance > self.result.averages_distance_A:
            averages = corr.unit_cell_averages(
                d.green_A2,
                d.cell_index,
                d.basis_index,
                positions,
                max_distance_A=1.01 * distance,
            )
            self.result = dataclasses.replace(
                self.result, averages=averages, averages_distance_A=1.01 * distance
            )
        classes = averages.class_of(d.cell_index, d.basis_index, pairs)
        blocks = averages.lab_blocks_A2[np.where(classes < 0, 0, classes)]
        blocks[classes < 0] = np.nan
        return blocks

    def arrows(self) -> corr.Arrows:
        """The arrows for the current selection, frame and scale (Å world coordinates)."""
        ref = self.reference()
        nbrs = self.neighbour_atoms()
        choice = self.self_combo.currentText()
        valid = np.flatnonzero(np.isfinite(self.result.data.b_factor_A2))
        if choice == SELF_ALL:
            selves = valid
        elif choice == SELF_SELECTED:
            selves = np.concatenate([[ref], nbrs])
        else:
            selves = np.empty(0, dtype=int)
        self_blocks = self._blocks(np.stack([selves, selves], axis=1))
        ref_blocks = self._blocks(np.stack([np.full_like(nbrs, ref), nbrs], axis=1))
        scale_A_per_A2 = PM2_PER_A2 / self.scale_pm2_per_A()
        return corr.correlation_arrows(
            self.result.data.mean_positions_A,
            selves,
            self_blocks,
            nbrs,
            ref_blocks,
            scale_A_per_A2,
            self._frame(),
        )

    def _redraw_arrows(self, *_: Any) -> None:
        self._draw("arrows")

    def _redraw_frame(self, *_: Any) -> None:
        self._draw("arrows", "frame")

    def _redraw_b_factors(self, *_: Any) -> None:
        self._draw("b_factors")

    def _layer(self, key: str) -> Any:
        layer = self._layers.get(key)
        if layer is not None and layer in self.viewer.layers:
            return layer
        return None

    def redraw(self, *_: Any) -> None:
        """Redraw arrows, markers, B-factor colours and the Green's tensor plot."""
        self._draw("b_factors", "arrows", "markers", "frame", "matrix")

    def _draw(self, *parts: str) -> None:
        """Redraw only the named parts (b_factors, arrows, markers, frame, matrix)."""
        if self.result is None:
            return
        errors = []
        for part in parts:
            try:
                getattr(self, f"_draw_{part}")()
            except CaviarError as exc:
                errors.append(str(exc))
        if errors:
            show_error(errors[0])

    def _averaged_note(self) -> str:
        """How many identical unit-cell pairs each drawn averaged block is the mean of."""
        averages = self.result.averages
        if not self.averaged_check.isChecked() or averages is None:
            return ""
        d = self.result.data
        ref, nbrs = self.reference(), self.neighbour_atoms()
        pairs = np.concatenate([[[ref, ref]], np.c_[np.full_like(nbrs, ref), nbrs]])
        classes = averages.class_of(d.cell_index, d.basis_index, pairs)
        counts = averages.counts[classes[classes >= 0]]
        return (
            f"averages over identical unit-cell pairs: {averages.keys.shape[0]} classes within "
            f"{self.result.averages_distance_A:.2f} Å; the reference's pairs are means of "
            f"{counts.min()}–{counts.max()} atom pairs"
        )

    def _draw_arrows(self) -> None:
        note = self._averaged_note()
        self.average_label.setText(note)
        self.average_label.setVisible(bool(note))
        arrows = self.arrows()
        kinds = np.array(corr.ARROW_KINDS)[arrows.kind]
        colours = np.array([to_rgba(ARROW_COLOURS[k]) for k in kinds]).reshape(-1, 4)
        features = {
            "kind": kinds,
            "atom": arrows.atom,
            "value_y_pm2": arrows.values_A2[:, 0] * PM2_PER_A2,
            "value_x_pm2": arrows.values_A2[:, 1] * PM2_PER_A2,
        }
        width = 0.06 * self.result.nn_distance_A
        layer = self._layer("arrows")
        if layer is None:
            self._layers["arrows"] = self.viewer.add_vectors(
                arrows.data,
                name=f"{LAYER_PREFIX}: arrows",
                edge_color=colours,
                edge_width=width,
                length=1.0,
                vector_style="arrow",
                features=features,
            )
            return
        layer.data = arrows.data
        layer.features = features
        layer.edge_color = colours

    def _draw_b_factors(self) -> None:
        layer = self._layer("b_factor")
        d = self.result.data
        if not self.b_check.isChecked():
            if layer is not None:
                layer.visible = False
            self.b_label.setText("")
            return
        valid = np.flatnonzero(np.isfinite(d.b_factor_A2))
        b = d.b_factor_A2[valid]
        lo, hi = float(b.min()), float(b.max())
        if hi <= lo:
            hi = lo + 1e-12
        features = {"atom": valid, "b_factor_A2": b}
        if layer is None:
            layer = self.viewer.add_points(
                d.mean_positions_A[valid],
                name=f"{LAYER_PREFIX}: B factor (Å²)",
                size=0.55 * self.result.nn_distance_A,
                features=features,
                face_color="transparent",
                border_color="b_factor_A2",
                border_colormap="viridis",
                border_contrast_limits=(lo, hi),
                border_width=0.22,
            )
            self._layers["b_factor"] = layer
        else:
            layer.data = d.mean_positions_A[valid]
            layer.features = features
            layer.border_color = "b_factor_A2"
            layer.border_contrast_limits = (lo, hi)
            layer.refresh_colors()
            layer.visible = True
        self.b_label.setText(
            f"B = 8π²(⟨u_y²⟩ + ⟨u_x²⟩), rings: viridis from {lo:.3f} Å² (dark blue) to "
            f"{hi:.3f} Å² (yellow), mean {b.mean():.3f} Å²"
        )

    def _draw_markers(self) -> None:
        ref = self.reference()
        nbrs = self.neighbour_atoms()
        atoms = np.concatenate([[ref], nbrs])
        points = self.result.data.mean_positions_A[atoms]
        colours = [REFERENCE_COLOUR] + [NEIGHBOUR_COLOUR] * nbrs.size
        layer = self._layer("markers")
        size = 0.8 * self.result.nn_distance_A
        if layer is None:
            self._layers["markers"] = self.viewer.add_points(
                points,
                name=f"{LAYER_PREFIX}: reference and neighbours",
                size=size,
                face_color="transparent",
                border_color=colours,
                border_width=0.12,
                features={"atom": atoms},
            )
            return
        layer.data = points
        layer.features = {"atom": atoms}
        layer.border_color = colours
        layer.face_color = "transparent"

    def _draw_frame(self) -> None:
        layer = self._layer("frame")
        local = self.frame_combo.currentText() == FRAME_LOCAL
        if not local:
            if layer is not None:
                layer.visible = False
            self.frame_label.setText("arrows in the lab frame: rows are y (down) and x (right)")
            return
        rot = self._frame()
        positions = self._positions()
        lo = np.nanmin(positions, axis=0)
        hi = np.nanmax(positions, axis=0)
        length = 1.5 * self.result.nn_distance_A
        origin = np.array([hi[0] + length * 0.6, lo[1] - length * 0.6])  # lower left
        data = np.stack([[origin, rot[1] * length], [origin, rot[0] * length]])
        if layer is None:
            self._layers["frame"] = self.viewer.add_vectors(
                data,
                name=f"{LAYER_PREFIX}: local frame (x, y)",
                edge_color="white",
                edge_width=0.06 * self.result.nn_distance_A,
                vector_style="arrow",
                features={"axis": np.array(["x", "y"])},
            )
        else:
            layer.data = data
            layer.visible = True
        angle = np.degrees(np.arctan2(-rot[1, 0], rot[1, 1]))
        self.frame_label.setText(
            f"local frame: x towards NN #{self.frame_neighbour_spin.value()} of the reference, "
            f"at {angle:+.1f}° from lab x (counter-clockwise on screen); arrows are the rows "
            "along local y and x (white arrows, lower left)"
        )

    def _draw_matrix(self) -> None:
        key = (id(self.result.data), self.reference())
        if key == self._matrix_key:
            return
        self._matrix_key = key
        fig = self.plot.figure
        fig.clear()
        ax = fig.add_subplot()
        draw_green_matrix(fig, ax, self.result.data.green_A2, self.reference(), dark=True)
        self.plot.style_axes(ax)
        self.plot.redraw()

    # ------------------------------------------------------------------ ground truth
    def compare(self, path: str | None = None) -> None:
        """Load a ground-truth file in the background and compare with it."""
        if self.result is None or self.worker is not None:
            return
        path = path or self.truth_edit.text().strip()
        if not path:
            show_error("choose a ground-truth file (a DATA.h5 written by caviar simulate)")
            return
        self.truth_edit.setText(str(path))
        self._run_in_worker(
            self.truth_label,
            "comparing …",
            _load_truth,
            str(path),
            self.result.data.green_A2,
            self._positions(),
            0.5,
            on_return=self._on_truth_loaded,
        )

    def _on_truth_loaded(self, loaded: tuple) -> None:
        self._truth = loaded
        self._update_comparison()

    def comparison_pairs(self) -> np.ndarray:
        """The pair set for LSM/CSM (reconstructed atom indices)."""
        if self.pairs_combo.currentText() == PAIRS_DRAWN:
            return corr.reference_pairs(self.reference(), self.neighbour_atoms())
        positions = self._positions()
        return corr.pairs_within_radius(
            positions, 1.15 * corr.nearest_neighbour_distance(positions)
        )

    def _update_comparison(self, *_: Any) -> None:
        if self._truth is None or self.result is None:
            return
        path, match, truth_green, rho_rec, rho_truth = self._truth
        try:
            pairs = self.comparison_pairs()
            pairs = pairs[(match.truth_index[pairs] >= 0).all(axis=1)]
            s = corr.similarity(self.result.data.green_A2, truth_green, pairs)
        except CaviarError as exc:
            self.similarity = None
            self.truth_label.setText(f"no comparison: {exc}")
            return
        matched = int((match.truth_index >= 0).sum())
        self.truth_label.setText(
            f"vs realised truth of {Path(path).name}: matched {matched}/{match.truth_index.size}"
            f" atoms<br>pairs: {self.pairs_combo.currentText()} ({s.n_pairs} pairs)"
            f"<br>LSM (eq. 3 as printed, sum of {s.n_vectors} vectors) = {s.lsm_sum:.3f}"
            f"<br>LSM (mean per vector) = {s.lsm_mean:.3f}"
            f"<br>CSM (eq. 4) = {s.csm:+.3f}"
            f"<br>ρ_nn: reconstruction {rho_rec.mean:+.3f}, truth {np.nanmean(rho_truth):+.3f}"
            f" ({rho_rec.values.size} NN pairs)"
        )
        self.similarity = s

    # ------------------------------------------------------------------ export
    def export_correlations(self, path: str | os.PathLike) -> None:
        """Write the CORR file of the current result (atomically)."""
        if self.result is None:
            raise InputError("nothing to save: compute the correlations first")
        write_correlations(path, self.result.data)
        show_info(f"saved {path}")

    def export_figure(self, path: str | os.PathLike, *, dpi: int = 200) -> None:
        """Save arrows over the background image and the Green's tensor.

        The format follows the extension (PNG, SVG, PDF); ``dpi`` applies to raster output.
        """
        if self.result is None:
            raise InputError("nothing to save: compute the correlations first")
        background = current_image_view(self.viewer)
        frame = "local lattice frame" if self.frame_combo.currentText() == FRAME_LOCAL else "lab"
        mode = "unit-cell averaged" if self.averaged_check.isChecked() else "per atom"
        panel = ArrowsPanel(
            positions_A=self._positions(),
            b_factor_A2=self.result.data.b_factor_A2,
            arrows=self.arrows(),
            reference=self.reference(),
            neighbours=self.neighbour_atoms(),
            pad_A=self.result.nn_distance_A,
            title=f"correlations ({mode}, {frame}); scale {self.scale_pm2_per_A():.3g} pm² per Å",
            background=background,
        )
        save_correlations_figure(path, panel, self.result.data.green_A2, dpi=dpi)

    def _ask_export_correlations(self) -> None:
        ask_and_run(
            self, self.export_correlations, "Save CORR file", "HDF5 (*.h5)", save_as="corr.h5"
        )

    def _ask_export_figure(self) -> None:
        ask_and_run(
            self, self.export_figure, "Save figure", FIGURE_FILTER, save_as="correlations.png"
        )

    def _ask_truth_file(self) -> None:
        path = ask_path(self, "Ground truth (simulated 4D-STEM file)", HDF5_FILTER)
        if path:
            self.truth_edit.setText(path)
