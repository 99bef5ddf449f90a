"""Input panel of the Reconstruction dock: which 4D-STEM data to reconstruct.

Sources, in the list: 4D-STEM layers opened by the plugin's reader (their metadata hold the
:class:`~caviar_napari.io.dataset.STEMDataset`), files opened here (read in a worker), and data
"kept here" after their layers left the view (see :meth:`DataPanel.park_selected_layer`); the
list itself is the view-model's :class:`~caviar_napari.viewmodels.reconstruction.DataSources`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.utils.notifications import show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QGridLayout, QGroupBox, QSizePolicy

from caviar_napari._qt._file_dialogs import STEM_FILTER, ask_path
from caviar_napari._qt._forms import push_button, text_label
from caviar_napari._qt._worker import error_message, start_worker
from caviar_napari.io.dataset import STEMDataset
from caviar_napari.viewmodels.layer_keys import DATASET_KEY, PATH_KEY
from caviar_napari.viewmodels.reconstruction import NO_DATA, DataSources, describe, load_job


class DataPanel(QGroupBox):
    """Group box "Data": the list of 4D-STEM sources and an Open… button.

    Parameters
    ----------
    viewer
        The napari viewer (its 4D-STEM layers are sources).
    sources
        The view-model's files and kept data.

    Signals
    -------
    selection_changed
        Another dataset was selected (or none is left).
    message
        A one-line status text (reading a file, reading failed).
    """

    selection_changed = Signal()
    message = Signal(str)

    def __init__(self, viewer: Any, sources: DataSources) -> None:
        super().__init__("Data")
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        self.viewer = viewer
        self.sources = sources
        self.combo = QComboBox()
        self.combo.setToolTip(
            "4D-STEM data to reconstruct: a layer opened with the caviar-napari reader, "
            "or a file opened with the button."
        )
        self.combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.combo.currentIndexChanged.connect(self._on_index_changed)
        self.open_button = push_button(
            "Open…", self._choose_file, "Open a 4D-STEM file (HDF5, npy/npz + json, EMD…)."
        )
        self.info = text_label(NO_DATA, hint=True)
        layout = QGridLayout(self)
        layout.addWidget(self.combo, 0, 0)
        layout.addWidget(self.open_button, 0, 1)
        layout.addWidget(self.info, 1, 0, 1, 2)
        layout.setColumnStretch(0, 1)

    # ------------------------------------------------------------------ sources
    def _stem_layers(self) -> dict[str, STEMDataset]:
        return {
            layer.name: layer.metadata[DATASET_KEY]
            for layer in self.viewer.layers
            if DATASET_KEY in layer.metadata
        }

    def refresh(self) -> None:
        """Refill the list from the viewer's layers and the sources; keep the selection."""
        current = self.combo.currentData()
        self.combo.blockSignals(True)
        self.combo.clear()
        for label, key in self.sources.entries(self._stem_layers()):
            self.combo.addItem(label, key)
        index = self.combo.findData(current) if current is not None else -1
        self.combo.setCurrentIndex(index if index >= 0 else 0)
        self.combo.blockSignals(False)
        if self.combo.currentData() != current:
            self._on_index_changed()

    def select(self, key: str) -> None:
        """Select the source ``key`` (``"layer:<name>"``, ``"file:<path>"``, ``"kept:<name>"``)."""
        self.combo.setCurrentIndex(self.combo.findData(key))

    def dataset(self) -> STEMDataset | None:
        """The selected dataset as stored, or None."""
        return self.sources.dataset(self.combo.currentData(), self._stem_layers())

    def key(self) -> str | None:
        """The key of the selected source (see :class:`DataSources`)."""
        return self.combo.currentData()

    def source_path(self) -> str | None:
        """The file the selected data were read from, None when unknown."""
        paths = {
            layer.name: layer.metadata.get(PATH_KEY)
            for layer in self.viewer.layers
            if DATASET_KEY in layer.metadata and layer.metadata.get(PATH_KEY)
        }
        return self.sources.path(self.combo.currentData(), paths)

    def _on_index_changed(self, *_: Any) -> None:
        dataset = self.dataset()
        self.info.setText(NO_DATA if dataset is None else describe(dataset))
        self.selection_changed.emit()

    # ------------------------------------------------------------------ files
    def _choose_file(self) -> None:
        path = ask_path(self, "Open 4D-STEM data", STEM_FILTER)
        if path:
            self.open_file(path)

    def open_file(self, path: str) -> Any:
        """Read a 4D-STEM file in a worker, then select it; returns the worker."""
        self.open_button.setEnabled(False)
        name = Path(path).name
        self.message.emit(f"reading {name}…")

        def loaded(dataset: STEMDataset) -> None:
            key = self.sources.add_file(str(path), dataset)
            self.refresh()
            self.select(key)
            self.message.emit(f"read {name}")

        def failed(exc: BaseException) -> None:
            self.message.emit(f"could not read {name}: {error_message(exc)}")

        return start_worker(
            load_job,
            str(path),
            on_return=loaded,
            on_error=failed,
            on_done=lambda: self.open_button.setEnabled(True),
        )

    # ------------------------------------------------------------------ parking
    def park_selected_layer(self, dataset: STEMDataset) -> list[str]:
        """Take the selected data's 4D-STEM layer (and its virtual BF) out of the viewer; keep
        the data.

        napari aligns layers by position: the 4D-STEM layers' ``(scan_y, scan_x, ky, kx)``
        axes would take the place of a reconstruction's ``(state, slice, y, x)`` (wrong slider
        labels and steps, diffraction patterns in mrad filling the canvas). A selected layer's
        ``dataset`` (the calibration in use) stays selectable as "data: <name> (kept here)";
        for data kept here or calibrated here, the 4D layers of the file they came from leave
        the view too, their data kept the same way.

        Returns
        -------
        list of str
            Names of the layers taken out (empty when there are none).
        """
        key = self.combo.currentData()
        if key is None:
            return []
        if str(key).startswith("layer:"):
            name = str(key).split(":", 1)[1]
            layer = next((la for la in self.viewer.layers if la.name == name), None)
            if layer is None or layer.ndim != 4:
                return []
            path = layer.metadata.get(PATH_KEY) or None
            anchors = [layer]
        else:
            path = self.source_path()
            anchors = [
                la
                for la in self.viewer.layers
                if path is not None
                and la.ndim == 4
                and DATASET_KEY in la.metadata
                and la.metadata.get(PATH_KEY) == path
            ]
            if not anchors:
                return []
        parked = []
        for anchor in anchors:
            labels = tuple(anchor.axis_labels)
            parked += [
                la
                for la in self.viewer.layers
                if la not in parked
                and (
                    la is anchor
                    or (
                        path is not None
                        and la.metadata.get(PATH_KEY) == path
                        and la.ndim == 4
                        and tuple(la.axis_labels) == labels
                    )
                )
            ]
        for la in anchors:
            kept = dataset if str(key) == f"layer:{la.name}" else la.metadata[DATASET_KEY]
            new_key = self.sources.keep(la.name, kept, path=path)
            if str(key) == f"layer:{la.name}":
                key = new_key
        names = [la.name for la in parked]
        for la in parked:
            self.viewer.layers.remove(la)
        self.refresh()
        self.select(key)
        listed = ", ".join(f"'{n}'" for n in names)
        show_info(
            f"caviar: {listed} moved out of the view for the reconstruction's (state, slice, "
            "y, x) axes; the data stay selectable in the Reconstruction dock"
        )
        return names
