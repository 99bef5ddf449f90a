"""The **Correlations** dock widget: Green's tensor, correlation arrows (paper Fig. 2, 4), LSM/CSM.

Source: an ATOMS file, or any napari Points layer whose ``metadata["caviar_atoms"]`` holds an
``io.atoms_file.AtomsData`` (as made by the Atoms widget).  The dock binds its controls to the
Qt-free :class:`~caviar_napari.viewmodels.correlations.CorrelationsViewModel`; the analysis of
``caviar correlations`` (Green's tensor (eq. 2) with a standard error on every entry, B factors,
ρ_nn, rms displacement and the uniform offset ± errors, subtracted on request, significance of
the nearest-neighbour blocks, noise floor), the drawing of a selection (arrows faded or hidden
by their significance, rings, markers, frame axes, the Green's tensor image) and the comparison
with a ground truth (LSM, CSM ± errors) are computed in background workers; the main thread
assigns the results to layers.  Warnings (noise floor, states that did not separate, too few
states) go to the banner.  A source of a z-range (issue 16; a file of several is one source per
range, picked by the z-range combo) is analysed over its occupied slices, as ``caviar
correlations`` does, and drawn in layers of its own (``correlations [<label>]: arrows`` …), so
that the arrows of several ranges can be seen together; against a layered ground truth it is
matched to its layer together with the other ranges of its file and compared with that layer
and with every layer (a small table: CSM, LSM, ρ_nn per layer), as ``caviar correlations
--ground-truth``.  The *Unit-cell averages* tab holds the source's table of class averages (CORR
``unit_cell_averages``: class, shell, G_xx, G_yy, G_xy ± error in pm², significance).

Arrows (conventions §4), in a napari Vectors layer whose data are ``[start, projection]`` in Å
world coordinates: at each atom j its self-correlation rows (row y of ``G_jj`` yellow, row x
purple); at each neighbour j of the reference atom i the rows of ``G_ij`` (pink: the reference's
y row, light blue: its x row).  Arrow length on screen = correlation (pm²) / scale (pm² per Å).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Generator
from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QSlider,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from caviar_napari._qt._atoms_source import AtomsAnalysisDock, AtomsSourcePicker
from caviar_napari._qt._file_dialogs import FIGURE_FILTER, HDF5_FILTER, ask_and_run, ask_path
from caviar_napari._qt._forms import (
    check_box,
    combo,
    double_spin,
    fill_table,
    hrow,
    int_spin,
    push_button,
    read_only_table,
    text_label,
)
from caviar_napari._qt._plot import FigureView
from caviar_napari._qt._worker import Coalesced, start_worker
from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.correlation_errors import RESAMPLING_METHODS
from caviar_napari.analysis.correlation_significance import SIGNIFICANCE_SIGMA
from caviar_napari.data.correlations import TruthMetrics
from caviar_napari.errors import InputError
from caviar_napari.viewmodels import correlations as cvm
from caviar_napari.viewmodels.correlations import (
    FRAME_LAB,
    FRAME_LOCAL,
    LAYER_PREFIX,
    PAIRS_DRAWN,
    PAIRS_NN,
    SCALE_SLIDER_MAX,
    SELF_ALL,
    SELF_NONE,
    SELF_SELECTED,
    SIG_ALL,
    SIG_FADE,
    SIG_HIDE,
    SIGNIFICANCE_MODES,
    ComputeResult,
    CorrelationsDrawing,
    CorrelationsViewModel,
    VectorsDrawing,
)
from caviar_napari.viewmodels.correlations_figure import (
    ARROW_COLOURS,
    ARROW_LEGEND,
    NEIGHBOUR_COLOUR,
    REFERENCE_COLOUR,
    ImageView,
)
from caviar_napari.viewmodels.layer_keys import ATOMS_METADATA_KEY

__all__ = [
    "ARROW_COLOURS",
    "ATOMS_METADATA_KEY",
    "FRAME_LAB",
    "FRAME_LOCAL",
    "PAIRS_DRAWN",
    "PAIRS_NN",
    "SELF_ALL",
    "SELF_NONE",
    "SELF_SELECTED",
    "SIG_ALL",
    "SIG_FADE",
    "SIG_HIDE",
    "CorrelationsWidget",
    "current_image_view",
]


def current_image_view(viewer: Any) -> ImageView | None:
    """The current 2D view of the topmost visible non-RGB Image layer and its extent in Å.

    The leading (state, slice, …) indices are those of the viewer's current dims point.
    Returns None when there is no such layer.
    """
    images = [
        layer
        for layer in viewer.layers
        if layer.__class__.__name__ == "Image" and layer.visible and not layer.rgb
    ]
    if not images:
        return None
    layer = images[-1]
    data = layer.data[0] if layer.multiscale else layer.data
    shape = data.shape
    point = np.asarray(layer.world_to_data(viewer.dims.point))
    index = tuple(int(np.clip(round(point[k]), 0, shape[k] - 1)) for k in range(len(shape) - 2))
    image = np.asarray(data[index], dtype=float)
    dy, dx = np.asarray(layer.scale)[-2:]
    ty, tx = np.asarray(layer.translate)[-2:]
    h, w = image.shape
    extent = [tx - dx / 2, tx + (w - 0.5) * dx, ty + (h - 0.5) * dy, ty - dy / 2]
    return image, extent


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

    Attributes
    ----------
    vm
        The view-model: result, selection, options, comparison.
    drawing
        The last drawing applied to the layers (None before the first).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.vm = CorrelationsViewModel()
        self.drawing: CorrelationsDrawing | None = None
        self._layers: dict[str, Any] = {}
        self._drawer = Coalesced(self._start_drawing)
        self._comparer = Coalesced(self._start_comparison)
        self._compute_again = False
        self._matrix_reference: int | None = None
        self._build_ui()
        self.source_picker.changed.connect(self._set_enabled)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse_drag)
        self.destroyed.connect(functools.partial(_disconnect, self.viewer, self._on_mouse_drag))

    # ------------------------------------------------------------------ shortcuts
    @property
    def result(self) -> ComputeResult | None:
        """The last computation."""
        return self.vm.result

    @property
    def metrics(self) -> TruthMetrics | None:
        """LSM/CSM ± errors of the last comparison with a truth."""
        return self.vm.metrics

    @property
    def is_drawing(self) -> bool:
        """Whether a drawing or a comparison is being computed (or one more is due)."""
        return self._drawer.busy or self._comparer.busy

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        layout = self.body

        source = QGroupBox("Source")
        form = QFormLayout(source)
        self.source_picker = AtomsSourcePicker(
            self.viewer, marker_size=_strict_marker_size_A, opacity=0.6
        )
        form.addRow("atoms layer", self.source_picker)
        self.slices_edit = QLineEdit()
        self.slices_edit.setPlaceholderText("all slices (or A:B, B excluded; or one index)")
        self.slices_edit.editingFinished.connect(self._on_analysis_changed)
        form.addRow("slices", self.slices_edit)
        self.errors_combo = combo(
            RESAMPLING_METHODS,
            "Standard errors of every correlation from resampling the object states (each with "
            f"all its slices): jackknife (delete one state), or bootstrap ({cvm.BOOTSTRAP_REPLICAS}"
            f" replicas, seed {cvm.BOOTSTRAP_SEED}).",
        )
        self.errors_combo.currentIndexChanged.connect(self._on_analysis_changed)
        form.addRow("errors (±)", self.errors_combo)
        self.subtract_check = check_box(
            "subtract the uniform offset",
            False,
            "Partial spatial coherence adds the same x–x and y–y correlation to every pair of "
            "atoms (paper §2). Subtract the offset estimated from the pairs below (its value ± "
            "error is in the summary) from the whole tensor.",
        )
        self.subtract_check.toggled.connect(self._on_analysis_changed)
        self.offset_distance_spin = double_spin(
            0.0,
            1000.0,
            0.0,
            step=0.5,
            decimals=2,
            suffix=" Å",
            special="all pairs",
            tooltip="Only pairs of atoms at least this far apart enter the offset (their true "
            "correlations have died away); 'all pairs': every pair of distinct atoms.",
        )
        self.offset_distance_spin.valueChanged.connect(self._on_analysis_changed)
        form.addRow(self.subtract_check)
        form.addRow("offset from pairs ≥", self.offset_distance_spin)
        self.noise_floor_spin = double_spin(
            -0.01,
            100.0,
            -0.01,
            step=0.1,
            decimals=2,
            suffix=" pm",
            special="unknown",
            tooltip="A known positional noise per direction, e.g. the rms displacement of a "
            "static control (hbn-static) analysed the same way, in pm; 'unknown': estimated "
            "from the slices where there are several. Displacements near it are flagged.",
        )
        self.noise_floor_spin.valueChanged.connect(self._on_analysis_changed)
        form.addRow("noise floor", self.noise_floor_spin)
        self.compute_button = push_button(
            "Compute Green's tensor",
            self.compute,
            "Green's tensor (eq. 2) and its errors, B factors, ρ_nn, rms displacement, uniform "
            "offset, significance and noise floor, as caviar correlations.",
        )
        form.addRow(self.compute_button)
        self.summary_label = text_label(
            "No correlations yet: choose a source and compute.", selectable=True
        )
        form.addRow(self.summary_label)
        layout.addWidget(source)

        selection = QGroupBox("Reference atom and neighbours")
        form = QFormLayout(selection)
        self.reference_spin = int_spin(0, 0)
        self.reference_spin.valueChanged.connect(self._on_selection_changed)
        self.click_check = check_box("pick by clicking an atom", True)
        form.addRow("reference atom", self.reference_spin)
        form.addRow("", self.click_check)
        self.nearest_radio = QRadioButton("n nearest")
        self.radius_radio = QRadioButton("within radius")
        self.nearest_radio.setChecked(True)
        self.n_nearest_spin = int_spin(1, 99, 3)
        self.radius_spin = double_spin(0.1, 100.0, 3.0, step=0.1, decimals=2, suffix=" Å")
        form.addRow("neighbours", hrow(self.nearest_radio, (self.n_nearest_spin, 1)))
        form.addRow("", hrow(self.radius_radio, (self.radius_spin, 1)))
        for w in (self.nearest_radio, self.radius_radio):
            w.toggled.connect(self._on_selection_changed)
        self.n_nearest_spin.valueChanged.connect(self._on_selection_changed)
        self.radius_spin.valueChanged.connect(self._on_selection_changed)
        layout.addWidget(selection)

        arrows = QGroupBox("Arrows")
        form = QFormLayout(arrows)
        self.self_combo = combo([SELF_ALL, SELF_SELECTED, SELF_NONE])
        self.self_combo.currentIndexChanged.connect(self._on_options_changed)
        form.addRow("self arrows at", self.self_combo)
        self.averaged_check = check_box("unit-cell averages (same l − l′, κ, κ′)")
        self.averaged_check.toggled.connect(self._on_options_changed)
        form.addRow(self.averaged_check)
        self.average_label = text_label()
        self.average_label.setVisible(False)
        form.addRow(self.average_label)
        self.frame_combo = combo([FRAME_LAB, FRAME_LOCAL])
        self.frame_combo.currentIndexChanged.connect(self._on_options_changed)
        self.frame_neighbour_spin = int_spin(
            1, 6, tooltip="in the local frame, x points to this nearest neighbour of the reference"
        )
        self.frame_neighbour_spin.valueChanged.connect(self._on_options_changed)
        form.addRow("frame", self.frame_combo)
        form.addRow("local x to NN #", self.frame_neighbour_spin)
        self.scale_slider = QSlider(Qt.Horizontal)
        self.scale_slider.setRange(0, SCALE_SLIDER_MAX)
        self.scale_slider.setValue(SCALE_SLIDER_MAX // 2)
        self.scale_slider.valueChanged.connect(self._on_scale_changed)
        self.scale_label = text_label()
        form.addRow("arrow scale", self.scale_slider)
        form.addRow(self.scale_label)
        self.significance_combo = combo(
            SIGNIFICANCE_MODES,
            "Reference arrows below the threshold (not distinguishable from zero correlation): "
            "fade (the fainter, the less significant), hide, or show all alike.",
        )
        self.significance_combo.currentIndexChanged.connect(self._on_options_changed)
        self.threshold_spin = double_spin(
            0.0,
            10.0,
            SIGNIFICANCE_SIGMA,
            step=0.5,
            decimals=1,
            suffix=" σ",
            tooltip="Significance threshold against zero correlation, as a normal deviation "
            "(2σ: p = 0.046, 3σ: p = 0.0027). The test is exact for Gaussian displacements; "
            "unit-cell averages are tested over all their atom pairs.",
        )
        self.threshold_spin.valueChanged.connect(self._on_options_changed)
        form.addRow("significant from", self.threshold_spin)
        form.addRow("arrows below", self.significance_combo)
        self.significance_label = text_label(hint=True)
        form.addRow(self.significance_label)
        form.addRow(self._legend())
        self.b_check = check_box("B factor as coloured rings on the atoms", True)
        self.b_check.toggled.connect(self._on_options_changed)
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
        self.browse_button = push_button("Browse…", self._ask_truth_file)
        form.addRow("file", hrow((self.truth_edit, 1), self.browse_button))
        self.pairs_combo = combo([PAIRS_DRAWN, PAIRS_NN])
        self.pairs_combo.currentIndexChanged.connect(self._update_comparison)
        form.addRow("pairs", self.pairs_combo)
        self.compare_button = push_button(
            "Compare with realised truth",
            self.compare,
            "LSM (eq. 3) and CSM (eq. 4) ± errors against the realised Green's tensor of the "
            "simulated configurations, over the chosen pairs.",
        )
        form.addRow(self.compare_button)
        self.truth_label = text_label(selectable=True)
        form.addRow(self.truth_label)
        self.layer_table = read_only_table("")
        self.layer_table.setVisible(False)
        form.addRow(self.layer_table)
        layout.addWidget(truth)

        export = QHBoxLayout()
        self.save_corr_button = push_button("Save CORR…", self._ask_export_correlations)
        self.save_figure_button = push_button("Save figure (PNG/SVG)…", self._ask_export_figure)
        export.addWidget(self.save_corr_button)
        export.addWidget(self.save_figure_button)
        layout.addLayout(export)

        self.tabs = QTabWidget()
        self.plot = FigureView(self, height_px=300)
        self.plot.resized.connect(self._on_plot_resized)
        self.tabs.addTab(self.plot, "Green's tensor")
        cells = QWidget()
        box = QVBoxLayout(cells)
        box.setContentsMargins(2, 4, 2, 2)
        self.unit_cell_label = text_label("No unit-cell averages yet.", hint=True)
        box.addWidget(self.unit_cell_label)
        self.unit_cell_table = read_only_table("")
        self.unit_cell_table.setVisible(False)
        box.addWidget(self.unit_cell_table)
        box.addStretch(1)
        self.tabs.addTab(cells, "Unit-cell averages")
        layout.addWidget(self.tabs, 1)
        self._update_scale_label()
        self._set_enabled()
        self.fit_width()

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
            label = QLabel(text)
            label.setWordWrap(True)
            grid.addWidget(label, row, 1)
        grid.setColumnStretch(1, 1)
        return legend

    def _set_enabled(self) -> None:
        busy = self.worker is not None
        has = self.vm.result is not None
        self.compute_button.setEnabled(not busy and self.atoms_source() is not None)
        self.compare_button.setEnabled(not busy and has)
        self.save_corr_button.setEnabled(has)
        self.save_figure_button.setEnabled(has)
        self.averaged_check.setEnabled(has and self.vm.result.averages is not None)

    # ------------------------------------------------------------------ compute
    def analysis_options(self) -> cvm.AnalysisOptions:
        """What the analysis computes, as set in the controls."""
        floor = self.noise_floor_spin.value()
        return cvm.AnalysisOptions(
            slices=self.slices_edit.text().strip() or None,
            errors=self.errors_combo.currentText(),
            subtract_offset=self.subtract_check.isChecked(),
            offset_min_distance_A=float(self.offset_distance_spin.value()),
            noise_floor_A=(
                None if floor <= self.noise_floor_spin.minimum() else float(floor) / 100.0
            ),
        )

    def compute(self) -> Any:
        """Start the background analysis of the chosen source; returns the worker (None when
        there is no source or a computation runs)."""
        atoms = self.atoms_source()
        if atoms is None or self.worker is not None:
            return None
        self._compute_again = False
        self.vm.analysis_options = self.analysis_options()
        return self._run_in_worker(
            self.summary_label,
            "computing the tensor and its errors …",
            cvm.compute_job,
            atoms,
            self.vm.analysis_options,
            self.source_path(),
            on_return=self._on_computed,
        )

    def _on_analysis_changed(self, *_: Any) -> None:
        """An analysis option changed: compute again (at once, or after the running one)."""
        if self.vm.result is None or self.atoms_source() is None:
            return
        if self.analysis_options() == self.vm.analysis_options:
            return
        if self.worker is not None:
            self._compute_again = True
            return
        self.compute()

    def _on_worker_done(self) -> None:
        super()._on_worker_done()
        if self._compute_again:
            self.compute()

    def _on_computed(self, result: ComputeResult) -> None:
        self.vm.accept(result)
        self.show_warnings(self.vm.warnings)
        selection, options = self.vm.selection, self.vm.options
        for w in (self.reference_spin, self.radius_spin, self.scale_slider):
            w.blockSignals(True)
        self.reference_spin.setRange(0, result.data.n_atoms - 1)
        self.reference_spin.setValue(selection.reference)
        self.radius_spin.setValue(selection.radius_A)
        self.scale_slider.setValue(cvm.scale_to_slider(options.scale_pm2_per_A))
        for w in (self.reference_spin, self.radius_spin, self.scale_slider):
            w.blockSignals(False)
        self._update_scale_label()
        self._matrix_reference = None
        self.summary_label.setText(cvm.summary_text(result))
        self._show_unit_cells(result)
        self.layer_table.setVisible(False)
        self._set_enabled()
        self.redraw()
        self._update_comparison()

    def _show_unit_cells(self, result: ComputeResult) -> None:
        """The unit-cell averages of the analysed source (its z-range) in their tab."""
        table = cvm.unit_cell_table(result)
        self.unit_cell_label.setText(cvm.unit_cell_caption(result))
        if table is not None:
            fill_table(self.unit_cell_table, table)
        self.unit_cell_table.setVisible(table is not None)
        self.fit_width()

    # ------------------------------------------------------------------ controls → view-model
    def _read_controls(self) -> None:
        self.vm.selection = cvm.Selection(
            reference=int(self.reference_spin.value()),
            by_radius=self.radius_radio.isChecked(),
            n_nearest=int(self.n_nearest_spin.value()),
            radius_A=float(self.radius_spin.value()),
        )
        self.vm.options = cvm.ArrowOptions(
            self_atoms=self.self_combo.currentText(),
            averaged=self.averaged_check.isChecked(),
            frame=self.frame_combo.currentText(),
            frame_neighbour=int(self.frame_neighbour_spin.value()),
            scale_pm2_per_A=self.scale_pm2_per_A(),
            b_factor_rings=self.b_check.isChecked(),
            significance=self.significance_combo.currentText(),
            threshold_sigma=float(self.threshold_spin.value()),
        )

    def _on_selection_changed(self, *_: Any) -> None:
        self.redraw()
        self._update_comparison()

    def _on_options_changed(self, *_: Any) -> None:
        self.redraw()

    def _on_scale_changed(self, *_: Any) -> None:
        self._update_scale_label()
        self.redraw()

    def _update_scale_label(self) -> None:
        self.scale_label.setText(cvm.scale_text(self.scale_pm2_per_A()))

    def _on_plot_resized(self) -> None:
        self._matrix_reference = None
        self.redraw()

    # ------------------------------------------------------------------ reference selection
    def set_reference(self, atom: int) -> None:
        """Make ``atom`` the reference atom and redraw."""
        self.reference_spin.setValue(int(atom))

    def reference(self) -> int:
        """The current reference atom index."""
        return int(self.reference_spin.value())

    def pick_reference_at(self, position_A: Any) -> int | None:
        """Make the valid atom nearest to a world position ``(…, y, x)`` (Å) the reference."""
        atom = self.vm.nearest_atom(position_A)
        if atom is not None:
            self.set_reference(atom)
        return atom

    def _on_mouse_drag(self, viewer: Any, event: Any) -> Generator[None, None, None]:
        """Viewer mouse callback: a click (press and release without moving) picks an atom."""
        if not self.click_check.isChecked() or self.vm.result is None:
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
        return self.vm.result.positions_A

    def neighbour_atoms(self) -> np.ndarray:
        """Neighbours of the reference atom by the chosen rule, nearest first."""
        self._read_controls()
        return self.vm.neighbour_atoms()

    # ------------------------------------------------------------------ scale
    def scale_pm2_per_A(self) -> float:
        """Arrow scale S: pm² of correlation per Å of arrow on screen."""
        return cvm.slider_to_scale(self.scale_slider.value())

    def set_scale_pm2_per_A(self, scale: float) -> None:
        """Set the slider to the position nearest to a scale S (pm² per Å)."""
        self.scale_slider.setValue(cvm.scale_to_slider(scale))

    # ------------------------------------------------------------------ drawing
    def arrows(self) -> corr.Arrows:
        """The arrows for the current selection, frame and scale (Å world coordinates)."""
        self._read_controls()
        return self.vm.arrows()

    def redraw(self, *_: Any) -> Any:
        """Draw the current selection in a worker (coalesced: at most one at a time, the
        newest state drawn last); returns the worker, if one was started."""
        if self.vm.result is None:
            return None
        return self._drawer.request()

    def _start_drawing(self, on_done: Any) -> Any:
        if self.vm.result is None:
            return None
        self._read_controls()
        size = None
        if self._matrix_reference != self.vm.selection.reference:
            size = self.plot.render_size()
            self._matrix_reference = self.vm.selection.reference
        return start_worker(
            cvm.drawing_job,
            self.vm.request(size),
            on_return=self._apply_drawing,
            on_error=self._draw_failed,
            on_done=on_done,
        )

    def _draw_failed(self, exc: BaseException) -> None:
        self._matrix_reference = None
        self.summary_label.setText(f"drawing failed: {exc}")

    def _range_tag(self) -> str:
        """The z-range of the analysed source (its label, or its slices), ``""`` without one:
        each range's arrows, rings and markers are layers of their own."""
        zrange = getattr(getattr(self.vm.result, "atoms", None), "zrange", None)
        return "" if zrange is None else (zrange.label or f"slices {zrange.spec}")

    def _layer_name(self, what: str) -> str:
        tag = self._range_tag()
        return f"{LAYER_PREFIX} [{tag}]: {what}" if tag else f"{LAYER_PREFIX}: {what}"

    def _layer(self, key: str) -> Any:
        key = f"{self._range_tag()}|{key}"
        layer = self._layers.get(key)
        if layer is not None and layer in self.viewer.layers:
            return layer
        return None

    def _apply_drawing(self, drawing: CorrelationsDrawing) -> None:
        """Put a drawing into the layers, labels and plot (assignments only)."""
        self.vm.accept_drawing(drawing)
        self.drawing = drawing
        self.average_label.setText(drawing.averaged_note)
        self.average_label.setVisible(bool(drawing.averaged_note))
        self._put_vectors("arrows", self._layer_name("arrows"), drawing.vectors)
        self._put_rings(drawing)
        self._put_markers(drawing)
        if drawing.frame is None:
            layer = self._layer("frame")
            if layer is not None:
                layer.visible = False
        else:
            self._put_vectors("frame", self._layer_name("local frame (x, y)"), drawing.frame)
        self.frame_label.setText(drawing.frame_text)
        self.significance_label.setText(drawing.significance_text)
        if drawing.matrix is not None:
            self.plot.show_figure(drawing.matrix)

    def _put_vectors(self, key: str, name: str, vectors: VectorsDrawing) -> None:
        layer = self._layer(key)
        if layer is None:
            self._layers[f"{self._range_tag()}|{key}"] = self.viewer.add_vectors(
                vectors.data,
                name=name,
                edge_color=vectors.colours,
                edge_width=vectors.width,
                length=1.0,
                vector_style="arrow",
                features=vectors.features,
                units=("Å", "Å"),
            )
            return
        layer.data = vectors.data
        layer.features = vectors.features
        layer.edge_color = vectors.colours
        layer.visible = True

    def _put_rings(self, drawing: CorrelationsDrawing) -> None:
        layer = self._layer("b_factor")
        rings = drawing.rings
        self.b_label.setText(drawing.rings_text)
        if rings is None:
            if layer is not None:
                layer.visible = False
            return
        if layer is None:
            self._layers[f"{self._range_tag()}|b_factor"] = self.viewer.add_points(
                rings.points,
                name=self._layer_name("B factor (Å²)"),
                size=rings.size,
                features=rings.features,
                face_color="transparent",
                border_color="b_factor_A2",
                border_colormap="viridis",
                border_contrast_limits=rings.limits,
                border_width=0.22,
                units=("Å", "Å"),
            )
            return
        layer.data = rings.points
        layer.features = rings.features
        layer.border_color = "b_factor_A2"
        layer.border_contrast_limits = rings.limits
        layer.refresh_colors()
        layer.visible = True

    def _put_markers(self, drawing: CorrelationsDrawing) -> None:
        markers = drawing.markers
        layer = self._layer("markers")
        if layer is None:
            self._layers[f"{self._range_tag()}|markers"] = self.viewer.add_points(
                markers.points,
                name=self._layer_name("reference and neighbours"),
                size=markers.size,
                face_color="transparent",
                border_color=markers.colours,
                border_width=0.12,
                features={"atom": markers.atoms},
                units=("Å", "Å"),
            )
            return
        layer.data = markers.points
        layer.features = {"atom": markers.atoms}
        layer.border_color = markers.colours
        layer.face_color = "transparent"

    # ------------------------------------------------------------------ ground truth
    def compare(self, path: str | None = None) -> Any:
        """Read a ground-truth file in the background, then compare with it; returns the
        worker (None when there is nothing to compare or no file was given)."""
        if self.vm.result is None or self.worker is not None:
            return None
        path = path or self.truth_edit.text().strip()
        if not path:
            message = "choose a ground-truth file (a DATA.h5 written by caviar simulate)"
            show_error(message)
            self.truth_label.setText(message)
            return None
        self.truth_edit.setText(str(path))
        return self._run_in_worker(
            self.truth_label,
            "reading the ground truth …",
            cvm.truth_job,
            str(path),
            on_return=self._on_truth_loaded,
        )

    def _on_truth_loaded(self, truth: cvm.Truth) -> None:
        self.vm.truth = truth
        self._update_comparison()

    def comparison_pairs(self) -> np.ndarray:
        """The pair set for LSM/CSM (reconstructed atom indices)."""
        self._read_controls()
        return self.vm.comparison_pairs(self.pairs_combo.currentText() == PAIRS_DRAWN)

    def _update_comparison(self, *_: Any) -> None:
        """Compare again (in a worker, coalesced) when a truth is loaded."""
        if self.vm.truth is not None and self.vm.result is not None:
            self._comparer.request()

    def _start_comparison(self, on_done: Any) -> Any:
        self._read_controls()
        label = self.pairs_combo.currentText()
        request = self.vm.comparison_request(
            label == PAIRS_DRAWN, label, self.source_picker.zrange_atoms()
        )
        if request is None:
            return None
        self.truth_label.setText("comparing …")
        return start_worker(
            cvm.comparison_job,
            request,
            on_return=self._on_compared,
            on_error=lambda exc: self.truth_label.setText(f"failed: {exc}"),
            on_done=on_done,
        )

    def _on_compared(self, comparison: cvm.Comparison) -> None:
        """Show a comparison: its text, and a z-range's numbers against every layer."""
        self.truth_label.setText(self.vm.accept_comparison(comparison))
        table = cvm.layer_table(comparison)
        if table is not None:
            fill_table(self.layer_table, table)
        self.layer_table.setVisible(table is not None)
        self.fit_width()

    # ------------------------------------------------------------------ export
    def export_correlations(self, path: str | os.PathLike) -> None:
        """Write the CORR file of the current result (atomically)."""
        self.vm.export_correlations(path)
        show_info(f"saved {path}")

    def export_figure(self, path: str | os.PathLike, *, dpi: int = 200) -> None:
        """Save arrows over the background image and the Green's tensor.

        The format follows the extension (PNG, SVG, PDF); ``dpi`` applies to raster output.
        """
        if self.vm.result is None:
            raise InputError("nothing to save: compute the correlations first")
        self._read_controls()
        self.vm.export_figure(path, current_image_view(self.viewer), dpi=dpi)

    def _ask_export_correlations(self) -> None:
        ask_and_run(
            self, self.export_correlations, "Save CORR file", HDF5_FILTER, save_as="corr.h5"
        )

    def _ask_export_figure(self) -> None:
        ask_and_run(
            self, self.export_figure, "Save figure", FIGURE_FILTER, save_as="correlations.png"
        )

    def _ask_truth_file(self) -> None:
        path = ask_path(self, "Ground truth (simulated 4D-STEM file)", HDF5_FILTER)
        if path:
            self.truth_edit.setText(path)
