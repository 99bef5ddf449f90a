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

After a refinement the ``atoms`` layer carries the :class:`~caviar_napari.io.atoms_file.AtomsData`
in ``metadata["caviar_atoms"]``, the source the Correlations and Dispersion widgets read.
Editing the points afterwards drops it (the refinement no longer matches the points).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Normalize
from napari.layers import Image, Points, Vectors
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QProgressBar,
    QVBoxLayout,
)

from caviar_napari._napari import atoms_layers as al
from caviar_napari._qt._dock import ViewerDock, follow_layers
from caviar_napari._qt._file_dialogs import CSV_FILTER, HDF5_FILTER, ask_and_run
from caviar_napari._qt._forms import (
    double_spin,
    hrow,
    int_spin,
    push_button,
    replace_items,
    text_label,
)
from caviar_napari._qt._plot import PlotCanvas
from caviar_napari._qt._worker import start_worker
from caviar_napari.analysis import atoms as am
from caviar_napari.analysis.lattice import LatticeIndex, index_lattice, species_by_strength
from caviar_napari.core.grid import as_pair
from caviar_napari.errors import CaviarError, InputError
from caviar_napari.io.atoms_file import (
    AtomsData,
    read_atoms,
    read_positions_csv,
    write_atoms,
    write_positions_csv,
)

#: Metadata key of Points layers that carry an AtomsData (shared with the other widgets).
ATOMS_METADATA_KEY = al.ATOMS_METADATA_KEY
#: Names of the layers this widget owns.
POINTS_NAME = "atoms"
STATES_NAME = "atoms per state"
LATTICE_NAME = "lattice vectors"
#: Progress bar resolution.
_PROGRESS_STEPS = 1000


@dataclass(frozen=True)
class PhaseSource:
    """Host copy of what the workers need from the phase layer.

    Attributes
    ----------
    phase
        ``(state, slice, y, x)`` phase, rad.
    pixel_size_A
        ``(dy, dx)``, Å.
    origin_A
        ``(y, x)`` of pixel ``[0, 0]``, Å.
    name
        Layer name (recorded as the source of the ATOMS data).
    """

    phase: np.ndarray
    pixel_size_A: tuple[float, float]
    origin_A: tuple[float, float]
    name: str


@dataclass(frozen=True)
class LatticeRequest:
    """Lattice options of a refinement: ``enabled``, given ``vectors_A`` (or None), expected
    ``n_basis`` (or None), ``species`` names weakest first (or empty)."""

    enabled: bool = True
    vectors_A: np.ndarray | None = None
    n_basis: int | None = None
    species: tuple[str, ...] = ()


@dataclass
class RefineOutcome:
    """What the refinement worker returns."""

    result: am.StateRefinement
    index: LatticeIndex | None
    species: np.ndarray | None
    lattice_error: str = ""


def _detect_job(source: PhaseSource, config: am.DetectionConfig, slice_index: int | None):
    """Worker: LoG detection on the detection image; returns ``(atom, 2)`` Å."""
    yield 0.0
    image = am.detection_image(source.phase, slice_index)
    yield 0.5
    return am.detect_atoms(image, source.pixel_size_A, source.origin_A, config)


def _refine_job(
    source: PhaseSource, start_A: np.ndarray, config: am.RefineConfig, lattice: LatticeRequest
) -> Generator[float, None, RefineOutcome]:
    """Worker: refinement in every state and slice, then lattice indexing and species."""
    gen = am.iter_refine_states(source.phase, start_A, source.pixel_size_A, source.origin_A, config)
    try:
        while True:
            yield 0.95 * next(gen)
    except StopIteration as stop:
        result: am.StateRefinement = stop.value
    index, species, error = None, None, ""
    if lattice.enabled:
        try:
            index = index_lattice(
                result.mean_positions_A, lattice.vectors_A, n_basis=lattice.n_basis
            )
            if lattice.species:
                species = species_by_strength(result.strength, index.basis_index, lattice.species)
        except InputError as exc:
            error = str(exc)
    yield 1.0
    return RefineOutcome(result=result, index=index, species=species, lattice_error=error)


class AtomsWidget(ViewerDock):
    """Dock widget **Atoms**: LoG or manual picking, centre-of-mass refinement, lattice, export.

    Parameters
    ----------
    napari_viewer
        The viewer whose phase layer is analysed; the atoms, per-state atoms and lattice layers
        are drawn in it.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.atoms: AtomsData | None = None
        self.index: LatticeIndex | None = None
        self._updating = False
        self._build_ui()
        self._refresh_layers()
        follow_layers(self, self.viewer, self._refresh_layers)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        defaults = am.DetectionConfig()

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

        detect = QGroupBox("Detection (Laplacian of Gaussian)")
        grid = QGridLayout(detect)
        self.sigma_min = double_spin(0.01, 10.0, defaults.sigma_min_A, step=0.05, suffix=" Å")
        self.sigma_max = double_spin(0.01, 10.0, defaults.sigma_max_A, step=0.05, suffix=" Å")
        self.num_sigma = int_spin(1, 50, defaults.num_sigma)
        self.threshold = double_spin(0.001, 1.0, defaults.threshold_rel, step=0.01, decimals=3)
        self.threshold.setToolTip("minimum LoG response relative to the strongest blob")
        self.min_distance = double_spin(0.0, 10.0, defaults.min_distance_A, step=0.05, suffix=" Å")
        self.min_distance.setToolTip("detections closer than this are merged into one atom")
        self.border = double_spin(0.0, 100.0, defaults.exclude_border_A, step=0.1, suffix=" Å")
        self.border.setToolTip("drop detections closer than this to the image border")
        for row, (label, box, label2, box2) in enumerate(
            [
                ("σ min", self.sigma_min, "σ max", self.sigma_max),
                ("σ steps", self.num_sigma, "threshold", self.threshold),
                ("merge within", self.min_distance, "border", self.border),
            ]
        ):
            grid.addWidget(QLabel(label), row, 0)
            grid.addWidget(box, row, 1)
            grid.addWidget(QLabel(label2), row, 2)
            grid.addWidget(box2, row, 3)
        self.detect_button = push_button(
            "Detect",
            self.detect,
            "Find atoms and put them in the editable Points layer 'atoms' (add, move or "
            "delete points with napari's Points tools to pick by hand)",
        )
        grid.addWidget(self.detect_button, 3, 0, 1, 4)
        layout.addWidget(detect)

        refine = QGroupBox("Refinement (phase-weighted centre of mass)")
        form = QFormLayout(refine)
        self.radius = double_spin(
            0.0,
            10.0,
            0.0,
            step=0.05,
            suffix=" Å",
            special=f"auto ({am.DEFAULT_RADIUS_FACTOR} × d_nn)",
        )
        self.radius.setToolTip("disc radius; auto = 0.35 × median nearest-neighbour distance")
        form.addRow("radius", self.radius)
        self.tolerance = double_spin(1e-4, 0.1, 1e-3, step=1e-3, decimals=4, suffix=" px")
        form.addRow("stop when shift <", self.tolerance)
        self.lattice_check = QCheckBox("index lattice")
        self.lattice_check.setChecked(True)
        self.n_basis = int_spin(0, 64, special="any")
        form.addRow(hrow(self.lattice_check, QLabel("basis atoms"), self.n_basis))
        self.vectors_edit = QLineEdit()
        self.vectors_edit.setPlaceholderText("estimate  (or a1y a1x a2y a2x in Å)")
        form.addRow("lattice vectors", self.vectors_edit)
        self.species_edit = QLineEdit()
        self.species_edit.setPlaceholderText("optional, weakest first, e.g. B N")
        self.species_edit.setToolTip("species of the basis sites, assigned by phase strength")
        form.addRow("species", self.species_edit)
        self.refine_button = push_button("Refine in every state and slice", self.refine)
        form.addRow(self.refine_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, _PROGRESS_STEPS)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(8)
        form.addRow(self.progress)
        layout.addWidget(refine)

        results = QGroupBox("Result")
        box = QVBoxLayout(results)
        self.status_label = text_label(
            "No atoms yet: Detect, or add points to the 'atoms' layer.", selectable=True
        )
        box.addWidget(self.status_label)
        self.lattice_label = text_label()
        box.addWidget(self.lattice_label)
        self.colorbar = PlotCanvas(height_px=56)
        self.colorbar.setFixedHeight(64)
        self.colorbar.setToolTip("point colour: per-atom rms displacement over states")
        box.addWidget(self.colorbar)
        self._draw_colorbar(None)
        files = QGridLayout()
        buttons = [
            ("Import CSV…", self._ask_import_csv),
            ("Export CSV…", self._ask_export_csv),
            ("Import ATOMS…", self._ask_import_atoms),
            ("Export ATOMS…", self._ask_export_atoms),
        ]
        self.file_buttons = []
        for i, (text, slot) in enumerate(buttons):
            button = push_button(text, slot)
            files.addWidget(button, i // 2, i % 2)
            self.file_buttons.append(button)
        box.addLayout(files)
        layout.addWidget(results)
        layout.addStretch(1)

    def _draw_colorbar(self, limits: tuple[float, float] | None) -> None:
        fig = self.colorbar.figure
        fig.clear()
        ax = fig.add_subplot(111)
        lo, hi = limits if limits is not None else (0.0, 1.0)
        bar = Colorbar(
            ax,
            cmap=colormaps[al.SPREAD_COLORMAP],
            norm=Normalize(lo, hi),
            orientation="horizontal",
        )
        label = al.SPREAD_LABEL if limits is not None else f"{al.SPREAD_LABEL} — after Refine"
        bar.set_label(label, color="#d6d8db", fontsize=8)
        ax.tick_params(labelsize=7)
        self.colorbar.style_axes(ax)
        bar.outline.set_edgecolor("#d6d8db")
        self.colorbar.redraw()

    # ------------------------------------------------------------------ layers
    def _phase_layers(self) -> list[Image]:
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not layer.multiscale and 2 <= layer.ndim <= 4
        ]

    def _refresh_layers(self, *_: Any) -> None:
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

    def phase_source(self) -> PhaseSource:
        """Host copy of the chosen phase layer's data and geometry (raises InputError)."""
        layer = self._find(self.layer_combo.currentText(), Image)
        if layer is None:
            raise InputError("choose a phase layer: no Image layer is selected")
        phase = am.as_phase_stack(np.asarray(layer.data), name=f"layer {layer.name!r}")
        dy, dx = as_pair(tuple(layer.scale[-2:]), "scale")
        y0, x0 = as_pair(tuple(layer.translate[-2:]), "translate")
        return PhaseSource(phase=phase, pixel_size_A=(dy, dx), origin_A=(y0, x0), name=layer.name)

    def slice_index(self) -> int | None:
        """Slice chosen for detection and mean refinement (None: sum over slices)."""
        i = self.image_combo.currentIndex()
        return None if i <= 0 else i - 1

    def detection_config(self) -> am.DetectionConfig:
        """The detection parameters of the widget."""
        return am.DetectionConfig(
            sigma_min_A=self.sigma_min.value(),
            sigma_max_A=self.sigma_max.value(),
            num_sigma=self.num_sigma.value(),
            threshold_rel=self.threshold.value(),
            min_distance_A=self.min_distance.value(),
            exclude_border_A=self.border.value(),
        )

    def refine_config(self) -> am.RefineConfig:
        """The refinement parameters of the widget."""
        radius = self.radius.value()
        return am.RefineConfig(
            radius_A=radius if radius > 0 else None,
            tol_px=self.tolerance.value(),
            slice_index=self.slice_index(),
        )

    def lattice_request(self) -> LatticeRequest:
        """The lattice options of the widget (raises InputError on malformed vectors)."""
        text = self.vectors_edit.text().replace(",", " ").split()
        vectors = None
        if text:
            try:
                values = [float(v) for v in text]
            except ValueError as exc:
                raise InputError(
                    f"lattice vectors: not numbers: {self.vectors_edit.text()!r}"
                ) from exc
            if len(values) != 4:
                raise InputError(
                    f"lattice vectors: give 4 numbers a1y a1x a2y a2x (Å), got {len(values)}"
                )
            vectors = np.reshape(values, (2, 2))
        return LatticeRequest(
            enabled=self.lattice_check.isChecked(),
            vectors_A=vectors,
            n_basis=self.n_basis.value() or None,
            species=tuple(self.species_edit.text().replace(",", " ").split()),
        )

    # ------------------------------------------------------------------ actions
    def _busy(self, busy: bool) -> None:
        for button in (self.detect_button, self.refine_button, *self.file_buttons):
            button.setEnabled(not busy)
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
        except CaviarError as exc:
            self._fail(exc)
            return None
        return self._start(
            "Detecting atoms…",
            _detect_job,
            source,
            config,
            slice_index,
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
        self.status_label.setText(
            f"{len(positions_A)} atoms detected. Add, move or delete points in the 'atoms' layer, "
            "then Refine."
        )

    def set_positions(self, positions_A: np.ndarray, species: np.ndarray | None = None) -> Points:
        """Replace the points of the 'atoms' layer (Å, ``(atom, 2)``); drops any refinement."""
        pos = np.asarray(positions_A, dtype=float).reshape(-1, 2)
        pos = pos[np.all(np.isfinite(pos), axis=1)]
        data, kwargs, _ = al.mean_points_layer(pos, name=POINTS_NAME, species=species)
        self._set_result(None, None)
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
        self._set_result(None, None)
        layer = self.points_layer
        if layer is not None:
            layer.metadata.pop(ATOMS_METADATA_KEY, None)
        self.status_label.setText("Points edited: Refine again to update the per-state positions.")

    def start_positions(self) -> np.ndarray:
        """Positions ``(atom, 2)`` Å of the 'atoms' layer (raises InputError if empty)."""
        layer = self.points_layer
        if layer is None or len(layer.data) == 0:
            raise InputError("no atoms to refine: Detect, import, or add points to 'atoms'")
        return np.asarray(layer.data, dtype=float)[:, -2:]

    def refine(self) -> Any:
        """Start the refinement in every state and slice in a worker; returns the worker."""
        try:
            source = self.phase_source()
            start = self.start_positions()
            config = self.refine_config()
            lattice = self.lattice_request()
        except CaviarError as exc:
            self._fail(exc)
            return None
        self.progress.setValue(0)
        n_states, n_slices = source.phase.shape[:2]
        return self._start(
            f"Refining {len(start)} atoms in {n_states} state(s) × {n_slices} slice(s)…",
            _refine_job,
            source,
            start,
            config,
            lattice,
            on_return=lambda outcome: self._on_refined(outcome, source, start, config),
        )

    def _on_refined(
        self,
        outcome: RefineOutcome,
        source: PhaseSource,
        start: np.ndarray,
        config: am.RefineConfig,
    ) -> None:
        result = outcome.result
        provenance = {
            "phase_layer": source.name,
            "start": "Atoms widget points",
            "refine": {k: v for k, v in config.__dict__.items() if k != "chunk_windows"},
        }
        atoms = result.to_atoms_data(
            outcome.index, outcome.species, source=source.name, provenance=provenance
        )
        refined = np.all(np.isfinite(result.mean_positions_A), axis=1)
        shown = np.where(refined[:, None], result.mean_positions_A, start)
        self._set_result(atoms, outcome.index)
        self._show_atoms(atoms, shown, refined)
        self.progress.setValue(_PROGRESS_STEPS)
        self.status_label.setText(self._summary(result))
        if outcome.lattice_error:
            self.lattice_label.setText(f"Lattice not indexed: {outcome.lattice_error}")
            show_info(f"lattice not indexed: {outcome.lattice_error}")

    @staticmethod
    def _summary(result: am.StateRefinement) -> str:
        n_states, n_slices, n_atoms = result.status.shape
        n_win = result.status.size
        reasons = ", ".join(f"{k} {v}" for k, v in result.counts().items() if k != "refined")
        lines = [
            f"{n_atoms} atoms, disc radius {result.radius_A:.3f} Å.",
            f"Mean image: {n_atoms - result.n_failed_mean} refined, {result.n_failed_mean} failed.",
            f"States × slices ({n_states} × {n_slices}): {n_win - result.n_failed} of {n_win} "
            f"refined, {result.n_failed} failed (NaN)" + (f": {reasons}." if reasons else "."),
        ]
        return "\n".join(lines)

    def _set_result(self, atoms: AtomsData | None, index: LatticeIndex | None) -> None:
        self.atoms = atoms
        self.index = index
        if atoms is None:
            self.lattice_label.setText("")
            self._draw_colorbar(None)

    def _show_atoms(self, atoms: AtomsData, shown_A: np.ndarray, refined: np.ndarray) -> None:
        """Draw the mean points, the per-state points, the lattice and the colour bar."""
        spread_pm = 100.0 * am.rms_spread_A(atoms.positions_A)
        size = al.point_size_A(shown_A)
        data, kwargs, _ = al.mean_points_layer(
            shown_A,
            name=POINTS_NAME,
            spread_pm=spread_pm,
            refined=refined,
            cell_index=atoms.cell_index,
            basis_index=atoms.basis_index,
            species=atoms.species,
            size_A=size,
        )
        self._put_points(data, kwargs)
        sdata, skwargs, _ = al.states_points_layer(
            atoms.positions_A, spread_pm, name=STATES_NAME, size_A=size
        )
        added = self._put_layer(sdata, skwargs, "points", ndim=4)
        if atoms.lattice_vectors_A is not None:
            vdata, vkwargs, _ = al.lattice_layer(
                atoms.lattice_vectors_A, atoms.mean_positions_A, name=LATTICE_NAME
            )
            added |= self._put_layer(vdata, vkwargs, "vectors")
            self.lattice_label.setText(self._lattice_text(atoms))
        else:
            self._remove(LATTICE_NAME)
            self.lattice_label.setText("Lattice not indexed.")
        self._draw_colorbar(al.spread_limits(spread_pm))
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

    def _lattice_text(self, atoms: AtomsData) -> str:
        a1, a2 = atoms.lattice_vectors_A
        n1, n2 = np.hypot(*a1), np.hypot(*a2)
        angle = np.degrees(np.arccos(np.clip(a1 @ a2 / (n1 * n2), -1, 1)))
        n_basis = int(atoms.basis_index.max()) + 1 if atoms.basis_index is not None else 0
        text = (
            f"Lattice: |a1| = {n1:.3f} Å (orange), |a2| = {n2:.3f} Å (cyan), "
            f"angle {angle:.1f}°, {n_basis} basis atom(s)"
        )
        if atoms.species is not None:
            text += f", species {' '.join(sorted(set(atoms.species.tolist()) - {''}))}"
        return text + "."

    # ------------------------------------------------------------------ files
    def export_csv(self, path: str | os.PathLike) -> None:
        """Write the positions of the 'atoms' layer (and species, if known) as CSV."""
        layer = self.points_layer
        if layer is None or len(layer.data) == 0:
            raise InputError("no atoms to export: the 'atoms' layer is empty")
        species = None
        if "species" in layer.features:
            species = np.asarray(layer.features["species"], dtype=str)
        write_positions_csv(path, np.asarray(layer.data)[:, -2:], species)

    def import_csv(self, path: str | os.PathLike) -> Points:
        """Read a CSV position list into the 'atoms' layer (replaces its points)."""
        positions, species = read_positions_csv(path)
        layer = self.set_positions(positions, species)
        self.status_label.setText(f"{len(layer.data)} atoms read from {Path(path).name}.")
        return layer

    def export_atoms(self, path: str | os.PathLike) -> None:
        """Write the last refinement (or imported ATOMS data) as an ATOMS file."""
        if self.atoms is None:
            raise InputError("nothing to export: Refine first (or import an ATOMS file)")
        write_atoms(path, self.atoms)

    def import_atoms(self, path: str | os.PathLike) -> AtomsData:
        """Read an ATOMS file: mean positions, per-state positions and lattice are shown."""
        atoms = read_atoms(path)
        refined = np.all(np.isfinite(atoms.mean_positions_A), axis=1)
        if not refined.any():
            raise InputError(f"{path}: no finite mean position")
        shown = np.where(refined[:, None], atoms.mean_positions_A, 0.0)
        keep = refined  # atoms without a mean position cannot be drawn
        sub = AtomsData(
            positions_A=atoms.positions_A[:, :, keep],
            mean_positions_A=atoms.mean_positions_A[keep],
            cell_index=None if atoms.cell_index is None else atoms.cell_index[keep],
            basis_index=None if atoms.basis_index is None else atoms.basis_index[keep],
            species=None if atoms.species is None else atoms.species[keep],
            lattice_vectors_A=atoms.lattice_vectors_A,
            source=atoms.source,
            status=None if atoms.status is None else atoms.status[:, :, keep],
            provenance=atoms.provenance,
        )
        self._set_result(sub, None)
        self._show_atoms(sub, shown[keep], refined[keep])
        n_failed = sub.n_failed
        self.status_label.setText(
            f"{sub.n_atoms} atoms read from {Path(path).name} ({int((~refined).sum())} without a "
            f"mean position left out); {n_failed} of {sub.positions_A[..., 0].size} "
            "state×slice positions are NaN."
        )
        return sub

    def _ask_file_action(
        self, action: Any, title: str, filters: str, save_as: str | None = None
    ) -> None:
        """Ask for a file, run ``action(path)``; errors go to the status line."""
        path = ask_and_run(
            self,
            action,
            title,
            filters,
            save_as=save_as,
            errors=(CaviarError, OSError),
            on_error=self._fail,
        )
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
