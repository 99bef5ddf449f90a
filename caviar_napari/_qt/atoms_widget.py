"""The **Atoms** dock widget: pick atoms (LoG or by hand), refine them in every state and slice.

Workflow (conventions §3):

1. choose the reconstruction's phase layer (an Image layer with dims ``(state, slice, y, x)``,
   ``scale (1, 1, dy, dx)``, ``translate (0, 0, y0, x0)``: world coordinates are Å in the scan
   frame);
2. **Detect** finds atoms by Laplacian of Gaussian on the phase summed over slices and averaged
   over states (or one slice) and puts them in the editable Points layer ``atoms``; add, move and
   delete points with napari's own Points tools — that is the manual picking;
3. **Refine** (in a worker) refines the points by the phase-weighted centre of mass on the same
   image, then in every state and slice; the ``atoms`` layer moves to the refined mean positions,
   the 4D Points layer ``atoms per state`` ``(state, slice, y, x)`` follows the state/slice
   sliders so that each state's atoms sit on that state's phase, both coloured by the per-atom
   spread (rms displacement over states, pm; colour bar in the widget); atoms whose refinement
   failed keep a red border; the lattice is indexed and its vectors drawn (``lattice vectors``);
4. export / import positions as CSV (``y_A,x_A[,species]``) or as an ATOMS file (conventions §6).

Depth (issue 16; :mod:`caviar_napari._qt.atoms_depth_panel`): a range slider on the slice axis
picks slices, which the viewer can show summed; named, they become z-ranges.  With a range
chosen, Detect works on the phase summed over its slices, Refine in each of its states and
slices with its own lattice, and the per-state points sit on its slices; *Detect and refine
every range* runs ``caviar atoms --zrange``'s workflow on the reconstruction the phase layer
holds.  Export writes every range that has atoms (one labelled file), Import reads every range
of a file.  The side view shows the phase along a line of constant y against x and depth, with
the ranges marked, so that the slices holding atoms are easy to pick.

After a refinement the ``atoms`` layer carries the :class:`~caviar_napari.io.atoms_file.AtomsData`
in ``metadata["caviar_atoms"]``, the source the Correlations and Dispersion widgets read.
Editing the points afterwards drops it (the refinement no longer matches the points).

The parameters, jobs and drawings are those of the Qt-free
:class:`~caviar_napari.viewmodels.atoms.AtomsViewModel`; the parameter forms are magicgui forms.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Points, Shapes, Vectors
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QComboBox, QFormLayout, QGridLayout, QGroupBox, QProgressBar, QVBoxLayout

from caviar_napari._qt._dock import ViewerDock, follow_layers
from caviar_napari._qt._file_dialogs import CSV_FILTER, HDF5_FILTER, ask_and_run
from caviar_napari._qt._forms import ParamField, ParamForm, push_button, replace_items, text_label
from caviar_napari._qt._plot import ColourBar
from caviar_napari._qt._worker import Coalesced, error_message, start_worker
from caviar_napari._qt.atoms_depth_panel import SIDE_LINE_NAME, DepthPanel
from caviar_napari.analysis import atoms as am
from caviar_napari.core.grid import as_pair
from caviar_napari.errors import CaviarError, InputError
from caviar_napari.io.atoms_file import AtomsData
from caviar_napari.viewmodels import atoms_layers as al
from caviar_napari.viewmodels.atoms import (
    LATTICE_NAME,
    NO_ATOMS,
    POINTS_NAME,
    STATES_NAME,
    AtomsResult,
    AtomsViewModel,
    LatticeRequest,
    PhaseSource,
    RangesOutcome,
    detect_job,
    import_atoms_file,
    range_slice_index,
    ranges_job,
    refine_job,
)
from caviar_napari.viewmodels.atoms_depth import (
    ALL_SLICES,
    SideViewRequest,
    new_range,
    side_view_job,
    slice_thicknesses,
)
from caviar_napari.viewmodels.layer_keys import (
    ATOMS_METADATA_KEY,
    PATH_KEY,
    RECON_ROLE_KEY,
    STATE_KEY,
)

__all__ = ["ATOMS_METADATA_KEY", "AtomsWidget"]

#: Progress bar resolution.
_PROGRESS_STEPS = 1000

#: The detection form (fields of :class:`~caviar_napari.analysis.atoms.DetectionConfig`).
DETECTION_FIELDS = (
    ParamField("sigma_min_A", "σ min", {"min": 0.01, "max": 10.0, "step": 0.05}, " Å"),
    ParamField("sigma_max_A", "σ max", {"min": 0.01, "max": 10.0, "step": 0.05}, " Å"),
    ParamField("num_sigma", "σ steps", {"min": 1, "max": 50}),
    ParamField(
        "threshold_rel",
        "threshold",
        {"min": 0.001, "max": 1.0, "step": 0.005},
        tooltip="minimum LoG response relative to the strongest blob",
    ),
    ParamField(
        "min_distance_A",
        "merge within",
        {"min": 0.0, "max": 10.0, "step": 0.05},
        " Å",
        tooltip="detections closer than this are merged into one atom",
    ),
    ParamField(
        "exclude_border_A",
        "border",
        {"min": 0.0, "max": 100.0, "step": 0.1},
        " Å",
        tooltip="drop detections closer than this to the image border",
    ),
)
#: The refinement and lattice form.
REFINE_FIELDS = (
    ParamField(
        "radius_A",
        "radius",
        {"min": 0.0, "max": 10.0, "step": 0.05},
        " Å",
        tooltip="disc radius; auto = 0.35 × median nearest-neighbour distance",
        special=f"auto ({am.DEFAULT_RADIUS_FACTOR} × d_nn)",
    ),
    ParamField("tol_px", "stop when shift <", {"min": 1e-4, "max": 0.1, "step": 5e-4}, " px"),
    ParamField("lattice", "index lattice", {"widget_type": "CheckBox"}),
    ParamField("n_basis", "basis atoms", {"min": 0, "max": 64}, special="any"),
    ParamField(
        "vectors",
        "lattice vectors",
        {"widget_type": "LineEdit"},
        placeholder="estimate  (or a1y a1x a2y a2x in Å)",
    ),
    ParamField(
        "species",
        "species",
        {"widget_type": "LineEdit"},
        tooltip="species of the basis sites, assigned by phase strength",
        placeholder="optional, weakest first, e.g. B N",
    ),
)
REFINE_DEFAULTS = {
    "radius_A": 0.0,
    "tol_px": 1e-3,
    "lattice": True,
    "n_basis": 0,
    "vectors": "",
    "species": "",
}


class AtomsWidget(ViewerDock):
    """Dock widget **Atoms**: LoG or manual picking, centre-of-mass refinement, lattice, export.

    Parameters
    ----------
    napari_viewer
        The viewer whose phase layer is analysed; the atoms, per-state atoms and lattice layers
        are drawn in it.

    Attributes
    ----------
    vm
        The view-model: parameters, jobs, the last result.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.vm = AtomsViewModel()
        self._updating = False
        self._side_view = Coalesced(self._start_side_view)
        self._adding_line = False
        self._build_ui()
        self._refresh_layers()
        follow_layers(self, self.viewer, self._refresh_layers)

    @property
    def atoms(self) -> AtomsData | None:
        """The last refinement or imported ATOMS data (None after the points were edited)."""
        return self.vm.atoms

    @property
    def index(self) -> Any:
        """The lattice index of the last refinement (None if not indexed)."""
        return None if self.vm.result is None else self.vm.result.index

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        layout = self.body
        source = QGroupBox("Phase")
        form = QFormLayout(source)
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip(
            "Image layer of the object phase, dims (state, slice, y, x), world units Å"
        )
        self.layer_combo.currentTextChanged.connect(self._update_image_choices)
        form.addRow("phase layer", self.layer_combo)
        self.image_combo = QComboBox()
        self.image_combo.setToolTip(
            "Image for detection and the mean refinement; the per-state refinement always "
            "uses every state and slice"
        )
        form.addRow("detect on", self.image_combo)
        layout.addWidget(source)
        layout.addWidget(self._build_depth())

        detect = QGroupBox("Detection (Laplacian of Gaussian)")
        box = QVBoxLayout(detect)
        self.detection_form = ParamForm(DETECTION_FIELDS, self.vm.detection)
        box.addWidget(self.detection_form.native)
        self.detect_button = push_button(
            "Detect",
            self.detect,
            "Find atoms and put them in the editable Points layer 'atoms' (add, move or "
            "delete points with napari's Points tools to pick by hand)",
        )
        box.addWidget(self.detect_button)
        layout.addWidget(detect)

        refine = QGroupBox("Refinement (phase-weighted centre of mass)")
        box = QVBoxLayout(refine)
        self.refine_form = ParamForm(REFINE_FIELDS, REFINE_DEFAULTS)
        box.addWidget(self.refine_form.native)
        self.refine_button = push_button("Refine in every state and slice", self.refine)
        box.addWidget(self.refine_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, _PROGRESS_STEPS)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(8)
        box.addWidget(self.progress)
        layout.addWidget(refine)

        results = QGroupBox("Result")
        box = QVBoxLayout(results)
        self.status_label = text_label(NO_ATOMS, selectable=True)
        box.addWidget(self.status_label)
        self.lattice_label = text_label()
        box.addWidget(self.lattice_label)
        self.colorbar = ColourBar(al.SPREAD_COLORMAP)
        self.colorbar.setToolTip("point colour: per-atom rms displacement over states")
        box.addWidget(self.colorbar)
        self._show_colorbar(None)
        files = QGridLayout()
        self.import_csv_button = push_button("Import CSV…", self._ask_import_csv)
        self.export_csv_button = push_button("Export CSV…", self._ask_export_csv)
        self.import_atoms_button = push_button("Import ATOMS…", self._ask_import_atoms)
        self.export_atoms_button = push_button("Export ATOMS…", self._ask_export_atoms)
        self.file_buttons = [
            self.import_csv_button,
            self.export_csv_button,
            self.import_atoms_button,
            self.export_atoms_button,
        ]
        for i, button in enumerate(self.file_buttons):
            files.addWidget(button, i // 2, i % 2)
        box.addLayout(files)
        layout.addWidget(results)
        layout.addStretch(1)
        self.fit_width()

    def _build_depth(self) -> DepthPanel:
        self.depth = DepthPanel()
        self.depth.slab_changed.connect(self._on_slab)
        self.depth.active_changed.connect(self.set_active_range)
        self.depth.show_check.toggled.connect(lambda *_: self._apply_slab())
        self.depth.add_button.clicked.connect(lambda *_: self._add_range_clicked())
        self.depth.remove_button.clicked.connect(lambda *_: self.remove_range(self.depth.active()))
        self.depth.all_button.clicked.connect(lambda *_: self.refine_all_ranges())
        self.depth.side_view_changed.connect(self.update_side_view)
        return self.depth

    def _show_colorbar(self, limits: tuple[float, float] | None) -> None:
        label = al.SPREAD_LABEL if limits is not None else f"{al.SPREAD_LABEL} — after Refine"
        self.colorbar.set_limits(limits, label)

    # ------------------------------------------------------------------ layers
    def _phase_layers(self) -> list[Image]:
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not layer.multiscale and 2 <= layer.ndim <= 4
        ]

    def _refresh_layers(self, *_: Any) -> None:
        if self._adding_line:  # the side view's own line: nothing to refresh
            return
        current = self.layer_combo.currentText()
        names = [layer.name for layer in self._phase_layers()]
        preferred = (
            current
            if current in names
            else next((n for n in names if n.endswith("phase")), names[0] if names else "")
        )
        replace_items(self.layer_combo, names, preferred)
        self._update_image_choices()

    def _update_image_choices(self, *_: Any) -> None:
        layer = self._find(self.layer_combo.currentText(), Image)
        n_slices = 1
        if layer is not None and layer.ndim >= 3:
            n_slices = int(layer.data.shape[-3])
        previous = self.image_combo.currentIndex()
        self.image_combo.clear()
        self.image_combo.addItem("Σ slices, mean over states")
        self.image_combo.addItems([f"slice {j}" for j in range(n_slices)] if n_slices > 1 else [])
        self.image_combo.setCurrentIndex(
            previous if 0 <= previous < self.image_combo.count() else 0
        )
        self._update_depth(layer)

    def _find(self, name: str, kind: type) -> Any:
        for layer in self.viewer.layers:
            if layer.name == name and isinstance(layer, kind):
                return layer
        return None

    def set_phase_layer(self, name: str) -> None:
        """Choose the phase layer by name."""
        if self._find(name, Image) is None:
            raise InputError(f"no Image layer named {name!r}")
        self.layer_combo.setCurrentText(name)

    def _units(self, ndim: int) -> tuple[str, ...] | None:
        """Units of a new layer with ``ndim`` dims, matching the phase layer's (None if none)."""
        phase = self._find(self.layer_combo.currentText(), Image)
        if phase is None:
            return None
        units = [str(u) for u in phase.units]
        lead = ["pixel"] * (ndim - 2)  # state, slice: as the phase layer's where it has them
        k = min(len(units) - 2, ndim - 2)
        if k > 0:
            lead[-k:] = units[-2 - k : -2]
        return (*lead, *units[-2:])

    def _match_units(self, layer: Any) -> None:
        """Give an existing layer the phase layer's units (keeps the scale bar in Å)."""
        wanted = self._units(layer.ndim)
        if wanted is not None and tuple(str(u) for u in layer.units) != wanted:
            layer.units = wanted

    @property
    def points_layer(self) -> Points | None:
        """The editable Points layer of the (mean) atom positions, if any."""
        return self._find(POINTS_NAME, Points)

    @property
    def states_layer(self) -> Points | None:
        """The 4D Points layer of the per-state, per-slice positions, if any."""
        return self._find(STATES_NAME, Points)

    @property
    def lattice_layer(self) -> Vectors | None:
        """The Vectors layer of the lattice vectors, if any."""
        return self._find(LATTICE_NAME, Vectors)

    # ------------------------------------------------------------------ parameters
    def phase_source(self) -> PhaseSource:
        """Host copy of the chosen phase layer's data and geometry (raises InputError)."""
        layer = self._find(self.layer_combo.currentText(), Image)
        if layer is None:
            raise InputError("choose a phase layer: no Image layer is selected")
        phase = am.as_phase_stack(np.asarray(layer.data), name=f"layer {layer.name!r}")
        dy, dx = as_pair(tuple(layer.scale[-2:]), "scale")
        y0, x0 = as_pair(tuple(layer.translate[-2:]), "translate")
        return PhaseSource(phase=phase, pixel_size_A=(dy, dx), origin_A=(y0, x0), name=layer.name)

    def slice_thicknesses(self) -> np.ndarray | None:
        """Slice thicknesses (Å) of the phase layer's reconstruction (None when it holds
        none: a live run before its result, or an image)."""
        layer = self._find(self.layer_combo.currentText(), Image)
        if layer is None or layer.ndim < 3:
            return None
        return slice_thicknesses(layer.metadata.get(STATE_KEY), int(layer.data.shape[-3]))

    def active_zrange(self) -> Any:
        """The z-range Detect and Refine work on (None: every slice; ``InputError`` when a
        range is chosen but the phase layer holds no slice thicknesses)."""
        return self.vm.active_zrange(self.slice_thicknesses())

    def slice_index(self) -> int | None:
        """Slice chosen for detection and mean refinement (None: sum over slices)."""
        i = self.image_combo.currentIndex()
        return None if i <= 0 else i - 1

    def detection_config(self) -> am.DetectionConfig:
        """The detection parameters of the widget (validated)."""
        self.vm.detection = self.detection_form.apply_to(self.vm.detection)
        return self.vm.detection

    def refine_config(self) -> am.RefineConfig:
        """The refinement parameters of the widget (validated)."""
        values = self.refine_form.values()
        radius = float(values["radius_A"])
        self.vm.refine = dataclasses.replace(
            self.vm.refine,
            radius_A=radius if radius > 0 else None,
            tol_px=float(values["tol_px"]),
            slice_index=self.slice_index(),
        )
        return self.vm.refine

    def lattice_request(self) -> LatticeRequest:
        """The lattice options of the widget (raises InputError on malformed vectors)."""
        values = self.refine_form.values()
        return LatticeRequest.parse(
            enabled=values["lattice"],
            vectors_text=values["vectors"],
            n_basis=values["n_basis"],
            species_text=values["species"],
        )

    # ------------------------------------------------------------------ actions
    def _busy(self, busy: bool) -> None:
        for button in (self.detect_button, self.refine_button, *self.file_buttons):
            button.setEnabled(not busy)
        for control in (self.depth.range_combo, self.depth.add_button, self.depth.slider):
            control.setEnabled(not busy)
        self.depth.remove_button.setEnabled(not busy and self.vm.active != ALL_SLICES)
        self.depth.all_button.setEnabled(not busy and bool(self.vm.ranges))
        if not busy:
            self.worker = None

    def _on_progress(self, fraction: float) -> None:
        self.progress.setValue(int(round(float(fraction) * _PROGRESS_STEPS)))

    def _fail(self, exc: BaseException) -> None:
        show_error(str(exc))
        self.status_label.setText(f"Error: {exc}")

    def detect(self) -> Any:
        """Start LoG detection in a worker; the atoms go to the 'atoms' Points layer.

        Returns the worker (None when the input is invalid; the error is shown).
        """
        try:
            source = self.phase_source()
            config = self.detection_config()
            slice_index = self.slice_index()
            zrange = self.active_zrange()
            range_slice_index(slice_index, zrange)
        except CaviarError as exc:
            self._fail(exc)
            return None
        where = "" if zrange is None else f" in z-range {zrange.label!r} ({zrange.spec})"
        return self._start(
            f"Detecting atoms{where}…",
            detect_job,
            source,
            config,
            slice_index,
            zrange,
            on_return=self._on_detected,
        )

    def _start(
        self, message: str, job: Callable[..., Generator], *args: Any, on_return: Callable
    ) -> Any:
        """Run ``job(*args)`` in :attr:`worker` with progress; buttons off until it ends."""
        self._busy(True)
        self.status_label.setText(message)
        self.worker = start_worker(
            job,
            *args,
            on_yield=self._on_progress,
            on_return=on_return,
            on_done=lambda: self._busy(False),
            on_error=lambda exc: self.status_label.setText(f"Error: {exc}"),
        )
        return self.worker

    def _on_detected(self, positions_A: np.ndarray) -> None:
        self.set_positions(positions_A)
        self.progress.setValue(_PROGRESS_STEPS)
        self.status_label.setText(self.vm.detected_text(len(positions_A)))

    def set_positions(self, positions_A: np.ndarray, species: np.ndarray | None = None) -> Points:
        """Replace the points of the 'atoms' layer (Å, ``(atom, 2)``); drops any refinement."""
        pos = np.asarray(positions_A, dtype=float).reshape(-1, 2)
        data, kwargs, _ = al.mean_points_layer(pos, name=POINTS_NAME, species=species)
        self._set_result(None)
        self._remove(STATES_NAME)
        self._remove(LATTICE_NAME)
        return self._put_points(data, kwargs)

    def _remove(self, name: str) -> None:
        for layer in list(self.viewer.layers):
            if layer.name == name:
                self.viewer.layers.remove(layer)

    def _put_points(self, data: np.ndarray, kwargs: dict[str, Any]) -> Points:
        """Update the 'atoms' layer in place (or add it) without dropping the refinement."""
        layer = self.points_layer
        self._updating = True
        try:
            if layer is None or layer.ndim != 2:
                self._remove(POINTS_NAME)
                layer = self.viewer.add_points(data, units=self._units(2), **kwargs)
                layer.events.data.connect(self._on_points_edited)
            else:
                layer.data = data
                layer.features = kwargs["features"]
                layer.size = kwargs["size"]
                if len(data):
                    layer.face_colormap = kwargs["face_colormap"]
                    layer.face_contrast_limits = kwargs["face_contrast_limits"]
                    layer.face_color = kwargs["face_color"]
                    layer.border_color = kwargs["border_color"]
                layer.symbol = kwargs["symbol"]
            layer.metadata = {**kwargs["metadata"]}
            self._match_units(layer)
            if self.atoms is not None:
                layer.metadata[ATOMS_METADATA_KEY] = self.atoms
            layer.mode = "select" if len(data) else "add"
        finally:
            self._updating = False
        return layer

    def _on_points_edited(self, event: Any = None) -> None:
        """A point was added, moved or deleted by hand: the refinement no longer applies."""
        if self._updating or self.atoms is None:
            return
        action = str(getattr(getattr(event, "action", None), "value", ""))
        if action in ("adding", "removing", "changing"):  # wait for the completed edit
            return
        self._set_result(None)
        layer = self.points_layer
        if layer is not None:
            layer.metadata.pop(ATOMS_METADATA_KEY, None)
        self.status_label.setText("Points edited: Refine again to update the per-state positions.")

    def start_positions(self) -> np.ndarray:
        """Positions ``(atom, 2)`` Å of the 'atoms' layer (raises InputError if empty)."""
        layer = self.points_layer
        return self.vm.start_positions(None if layer is None else np.asarray(layer.data))

    def refine(self) -> Any:
        """Start the refinement in every state and slice in a worker; returns the worker."""
        try:
            source = self.phase_source()
            start = self.start_positions()
            config = self.refine_config()
            lattice = self.lattice_request()
            zrange = self.active_zrange()
            range_slice_index(config.slice_index, zrange)
        except CaviarError as exc:
            self._fail(exc)
            return None
        self.progress.setValue(0)
        n_states, n_slices = source.phase.shape[:2]
        where = ""
        if zrange is not None:
            n_slices, where = zrange.n_slices, f" of z-range {zrange.label!r}"
        return self._start(
            f"Refining {len(start)} atoms in {n_states} state(s) × {n_slices} slice(s){where}…",
            refine_job,
            source,
            start,
            config,
            lattice,
            zrange,
            on_return=self._on_refined,
        )

    def _on_refined(self, result: AtomsResult) -> None:
        self._set_result(result)
        self._show_result(result)
        self.progress.setValue(_PROGRESS_STEPS)
        self.status_label.setText(result.summary)
        if result.lattice_error:
            show_info(f"lattice not indexed: {result.lattice_error}")

    def _set_result(self, result: AtomsResult | None) -> None:
        self.vm.accept(result)
        self.show_warnings(self.vm.warnings)
        if result is None:
            self.lattice_label.setText("")
            self._show_colorbar(None)

    def _show_result(self, result: AtomsResult) -> None:
        """Draw the mean points, the per-state points, the lattice and the colour bar."""
        drawing = result.drawing
        data, kwargs, _ = drawing.points
        self._put_points(data, kwargs)
        sdata, skwargs, _ = drawing.states
        added = self._put_layer(sdata, skwargs, "points", ndim=4)
        if drawing.lattice is not None:
            vdata, vkwargs, _ = drawing.lattice
            added |= self._put_layer(vdata, vkwargs, "vectors")
        else:
            self._remove(LATTICE_NAME)
        self.lattice_label.setText(drawing.lattice_text)
        self._show_colorbar(drawing.spread_limits_pm)
        points = self.points_layer
        if added and points is not None:  # a new layer became active: the points stay editable
            self.viewer.layers.selection.active = points

    def _put_layer(
        self, data: np.ndarray, kwargs: dict[str, Any], kind: str, ndim: int = 2
    ) -> bool:
        """Update the named Points/Vectors layer in place, or add it; True when added."""
        cls = Points if kind == "points" else Vectors
        layer = self._find(kwargs["name"], cls)
        if layer is None or layer.ndim != ndim or (kind == "points" and not len(layer.data)):
            self._remove(kwargs["name"])
            getattr(self.viewer, f"add_{kind}")(data, units=self._units(ndim), **kwargs)
            return True
        layer.data = data
        layer.features = kwargs["features"]
        layer.metadata = dict(kwargs["metadata"])
        if kind == "points":
            layer.size = kwargs["size"]
            if len(data):
                layer.face_colormap = kwargs["face_colormap"]
                layer.face_contrast_limits = kwargs["face_contrast_limits"]
                layer.face_color = kwargs["face_color"]  # re-map the new features
        else:
            layer.edge_color = kwargs["edge_color"]
        return False

    # ------------------------------------------------------------------ files
    def export_csv(self, path: str | os.PathLike) -> None:
        """Write the positions of the 'atoms' layer (and species, if known) as CSV."""
        layer = self.points_layer
        species = None
        if layer is not None and "species" in layer.features:
            species = np.asarray(layer.features["species"], dtype=str)
        self.vm.export_csv(path, None if layer is None else np.asarray(layer.data), species)

    def import_csv(self, path: str | os.PathLike) -> Points:
        """Read a CSV position list into the 'atoms' layer (replaces its points)."""
        positions, species = self.vm.import_csv(path)
        layer = self.set_positions(positions, species)
        self.status_label.setText(f"{len(layer.data)} atoms read from {Path(path).name}.")
        return layer

    def export_atoms(self, path: str | os.PathLike) -> None:
        """Write the last refinement (or imported ATOMS data) as an ATOMS file: with a z-range
        chosen, every range that has atoms (one labelled file)."""
        what = self.vm.export_atoms(path)
        self.status_label.setText(f"{Path(path).name}: {what} written.")

    def import_atoms(self, path: str | os.PathLike) -> AtomsData:
        """Read an ATOMS file (every z-range it holds: they join the range list, the first is
        chosen): mean positions, per-state positions and lattice are shown."""
        results = import_atoms_file(path)
        self.vm.accept_import(results)
        self._show_ranges()
        result = self.vm.result
        self._set_result(result)
        self._show_result(result)
        extra = f" ({len(results)} z-ranges: choose one under Depth)" if len(results) > 1 else ""
        self.status_label.setText(result.summary + extra)
        return result.atoms

    # ------------------------------------------------------------------ depth
    def _update_depth(self, layer: Any) -> None:
        """The phase layer changed: the slider spans its slices; the side view follows."""
        n_slices = int(layer.data.shape[-3]) if self._is_multislice_phase(layer) else 1
        if n_slices != self.depth.n_slices:
            self.depth.set_slices(n_slices)
            choice = self.vm.active_range
            if choice is not None and choice.stop <= n_slices:
                self.depth.set_slab(choice.start, choice.stop - 1)
        if layer is not None:
            dy = float(layer.scale[-2])
            y0 = float(layer.translate[-2])
            y1 = y0 + dy * (int(layer.data.shape[-2]) - 1)
            self.depth.y_spin.blockSignals(True)
            self.depth.y_spin.setRange(y0, y1)
            if not y0 <= self.depth.y_spin.value() <= y1 or self.depth.y_spin.value() == 0:
                self.depth.y_spin.setValue(self._scan_centre_y(layer, 0.5 * (y0 + y1)))
            self.depth.y_spin.blockSignals(False)
        self._show_span()
        self.update_side_view()

    @staticmethod
    def _scan_centre_y(layer: Any, default: float) -> float:
        """The y of the middle of the scan of the layer's reconstruction (else ``default``)."""
        state = layer.metadata.get(STATE_KEY)
        positions = getattr(state, "scan_positions_A", None)
        if positions is None or not np.size(positions):
            return default
        return float(np.mean(np.asarray(positions, float).reshape(-1, 2)[:, 0]))

    def _show_span(self) -> None:
        lo, hi = self.depth.slab()
        text = f"slices {lo}:{hi + 1} picked"
        dz = self.slice_thicknesses()
        if dz is not None:
            edges = np.concatenate([[0.0], np.cumsum(dz)])
            text += f" — z = {edges[lo]:.1f} … {edges[hi + 1]:.1f} Å below the entrance"
        choice = self.vm.active_range
        if choice is not None:
            text += f"; moving them moves '{choice.label}'"
        self.depth.set_span_text(text)

    def _on_slab(self, first: int, last: int) -> None:
        choice = self.vm.active_range
        if choice is not None:
            try:
                changed = self.vm.move_range(choice.label, first, last + 1)
            except CaviarError as exc:
                self._fail(exc)
                return
            if changed:
                self._show_ranges()
                self._clear_range_layers()
                self.status_label.setText(
                    f"z-range '{choice.label}' is now slices {first}:{last + 1}: Detect and "
                    "Refine it again."
                )
        self._show_span()
        self._apply_slab()
        self.update_side_view()

    def _apply_slab(self) -> None:
        self.depth.apply_slab(self.viewer, self._find(self.layer_combo.currentText(), Image))

    def _show_ranges(self) -> None:
        self.depth.set_ranges(self.vm.ranges, self.vm.active)
        choice = self.vm.active_range
        if choice is not None and choice.stop <= self.depth.n_slices:
            self.depth.set_slab(choice.start, choice.stop - 1)
        self._show_span()
        self._apply_slab()
        self.update_side_view()

    def _clear_range_layers(self) -> None:
        """The per-state points and lattice no longer belong to the chosen range."""
        self._remove(STATES_NAME)
        self._remove(LATTICE_NAME)
        self.lattice_label.setText("")
        self._show_colorbar(None)
        self.show_warnings([])

    def _add_range_clicked(self) -> None:
        try:
            self.add_range(self.depth.label_edit.text(), *self.depth.slab())
        except CaviarError as exc:
            self._fail(exc)

    def add_range(self, label: str, first: int, last: int) -> str:
        """Name the slices ``first … last`` (inclusive) as a z-range and choose it; returns its
        label (``InputError`` for a label in use or slices outside the phase layer)."""
        choice = new_range(label, first, last + 1, self.depth.n_slices, self.vm.ranges)
        self.vm.add_range(choice)
        self.depth.label_edit.clear()
        self._show_ranges()
        self._clear_range_layers()
        self.status_label.setText(
            f"z-range '{choice.label}' = slices {choice.spec}: Detect and Refine work on it."
        )
        return choice.label

    def remove_range(self, label: str) -> None:
        """Forget a z-range (and its atoms); all slices are chosen if it was."""
        self.vm.remove_range(label)
        self._show_ranges()
        self._show_active_result()

    def set_active_range(self, label: str) -> None:
        """Work on z-range ``label`` (``""``: all slices); its atoms are shown if it has any."""
        self.vm.set_active(label)
        self._show_ranges()
        self._show_active_result()

    def _show_active_result(self) -> None:
        result = self.vm.result
        if result is None:
            self._clear_range_layers()
            layer = self.points_layer
            if layer is not None:
                layer.metadata.pop(ATOMS_METADATA_KEY, None)
            choice = self.vm.active_range
            name = "all slices" if choice is None else f"z-range '{choice.label}'"
            self.status_label.setText(f"{name}: no atoms refined yet. Detect, then Refine.")
            return
        self._set_result(result)
        self._show_result(result)
        self.status_label.setText(result.summary)

    def refine_all_ranges(self) -> Any:
        """Detect, refine and index the atoms of every z-range in a worker (the workflow of
        ``caviar atoms --zrange`` on the phase layer's reconstruction); returns the worker."""
        layer = self._find(self.layer_combo.currentText(), Image)
        state = None if layer is None else layer.metadata.get(STATE_KEY)
        try:
            if state is None:
                raise InputError(
                    "the phase layer holds no reconstruction (open its file, or wait for the "
                    "run's result): every range is found by caviar atoms's workflow on it"
                )
            if not self.vm.ranges:
                raise InputError("no z-ranges: pick slices and Add range first")
            detection = self.detection_config()
            refine = self.refine_config()
            lattice = self.lattice_request()
        except CaviarError as exc:
            self._fail(exc)
            return None
        name = str(layer.metadata.get(PATH_KEY) or layer.name)
        labels = ", ".join(r.label for r in self.vm.ranges)
        return self._start(
            f"Detecting and refining the atoms of every z-range ({labels})…",
            ranges_job,
            state,
            name,
            tuple(self.vm.ranges),
            detection,
            refine,
            lattice,
            on_return=self._on_ranges,
        )

    def _on_ranges(self, outcome: RangesOutcome) -> None:
        self.vm.accept_ranges(outcome)
        self._show_ranges()
        result = self.vm.result
        self._set_result(result)
        self._show_result(result)
        self.show_warnings(self.vm.warnings)
        self.progress.setValue(_PROGRESS_STEPS)
        counts = ", ".join(f"'{k}' {r.atoms.n_atoms}" for k, r in outcome.results.items())
        self.status_label.setText(f"atoms per z-range: {counts}.\n{result.summary}")

    # ------------------------------------------------------------------ side view
    def update_side_view(self, *_: Any) -> Any:
        """Draw the side view again (in a worker, coalesced); returns the worker if started."""
        return self._side_view.request()

    def _start_side_view(self, on_done: Callable[[], None]) -> Any:
        layer = self._find(self.layer_combo.currentText(), Image)
        if not self._is_multislice_phase(layer):
            self._put_side_line(None)
            return None
        try:
            source = self.phase_source()
        except CaviarError:
            return None
        state = layer.metadata.get(STATE_KEY)
        x_range = None
        positions = getattr(state, "scan_positions_A", None)
        if positions is not None and np.size(positions):
            x = np.asarray(positions, float).reshape(-1, 2)[:, 1]
            x_range = (float(x.min()) - 1.0, float(x.max()) + 1.0)
        y = float(self.depth.y_spin.value())
        request = SideViewRequest(
            phase=source.phase,
            pixel_size_A=source.pixel_size_A,
            origin_A=source.origin_A,
            y_A=y,
            slice_thickness_A=self.slice_thicknesses(),
            x_range_A=x_range,
            ranges=tuple(self.vm.ranges),
            active=self.vm.active,
            size=self.depth.plot.render_size(),
        )
        width = source.phase.shape[-1]
        x0 = source.origin_A[1]
        xs = x_range or (x0, x0 + source.pixel_size_A[1] * (width - 1))
        self._put_side_line((y, xs))
        return start_worker(
            side_view_job,
            request,
            on_return=self.depth.plot.show_figure,
            on_error=lambda exc: self.depth.set_span_text(
                f"side view failed: {error_message(exc)}"
            ),
            on_done=on_done,
        )

    @staticmethod
    def _is_multislice_phase(layer: Any) -> bool:
        """A phase layer with several slices: a reconstruction's (or one whose axes say
        ``slice``), not, say, a 4D-STEM layer."""
        if layer is None or layer.ndim < 3 or int(layer.data.shape[-3]) < 2:
            return False
        labels = tuple(str(a) for a in layer.axis_labels)
        return layer.metadata.get(RECON_ROLE_KEY) == "phase" or labels[-3] == "slice"

    def _put_side_line(self, line: tuple[float, tuple[float, float]] | None) -> None:
        """Mark the side view's line in the viewer (a Shapes line), or remove the mark."""
        layer = self._find(SIDE_LINE_NAME, Shapes)
        if layer is not None and line is not None:
            y, (x0, x1) = line
            layer.data = [np.array([[y, x0], [y, x1]])]
            layer.shape_type = "line"
            return
        self._adding_line = True  # the layer list changes: not a reason to refresh
        try:
            if line is None and layer is not None:
                self.viewer.layers.remove(layer)
            elif line is not None:
                y, (x0, x1) = line
                self.viewer.add_shapes(
                    [np.array([[y, x0], [y, x1]])],
                    shape_type="line",
                    edge_color="#ffd54f",
                    edge_width=0.06,
                    name=SIDE_LINE_NAME,
                    opacity=0.8,
                    units=self._units(2),
                )
        finally:
            self._adding_line = False

    def _ask_file_action(
        self, action: Any, title: str, filters: str, save_as: str | None = None
    ) -> None:
        """Ask for a file, run ``action(path)``; errors go to the status line."""
        path = ask_and_run(self, action, title, filters, save_as=save_as, on_error=self._fail)
        if path:
            show_info(f"{Path(path).name}: done")

    def _ask_import_csv(self) -> None:
        self._ask_file_action(self.import_csv, "Import positions (CSV)", CSV_FILTER)

    def _ask_export_csv(self) -> None:
        self._ask_file_action(self.export_csv, "Export positions (CSV)", CSV_FILTER, "atoms.csv")

    def _ask_import_atoms(self) -> None:
        self._ask_file_action(self.import_atoms, "Import ATOMS file", HDF5_FILTER)

    def _ask_export_atoms(self) -> None:
        self._ask_file_action(self.export_atoms, "Export ATOMS file", HDF5_FILTER, "atoms.h5")
