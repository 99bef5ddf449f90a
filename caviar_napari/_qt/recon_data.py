"""Input panel of the Reconstruction widget: which 4D-STEM data to reconstruct.

Sources, in the list: 4D-STEM layers opened by the plugin's reader (their metadata hold the
:class:`~caviar_napari.io.dataset.STEMDataset`), files opened here (read in a worker), and data
"kept here" after their layers left the view (see :meth:`DataPanel.park_selected_layer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.utils.notifications import show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QGridLayout, QGroupBox, QLabel, QSizePolicy

from caviar_napari._napari.stem_layers import DATASET_KEY, PATH_KEY
from caviar_napari._qt._worker import error_message, start_worker
from caviar_napari._qt.recon_run import load_job
from caviar_napari._qt.recon_settings import button
from caviar_napari.io.dataset import STEMDataset

NO_DATA = "no 4D-STEM data: open a file or a sample (File ▸ Open Sample)"
FILE_FILTER = "4D-STEM data (*.h5 *.hdf5 *.emd *.npy *.npz *.zarr *.mib *.dm4 *.raw);;All files (*)"


def describe(dataset: STEMDataset) -> str:
    """One line: source, scan and detector size, reconstruction pixel, wavelength."""
    sy, sx = dataset.scan_shape
    ky, kx = dataset.detector_shape
    dy, dx = dataset.pixel_size_A
    return (
        f"{dataset.source or 'data'}: scan {sy}×{sx}, detector {ky}×{kx} px, "
        f"object pixel {dy:.4g}×{dx:.4g} Å, λ = {dataset.wavelength_A * 100:.4g} pm"
    )


class DataPanel(QGroupBox):
    """Group box "Data": the list of 4D-STEM sources and an Open… button.

    Signals
    -------
    selection_changed
        Another dataset was selected (or none is left).
    message
        A one-line status text (reading a file, reading failed).
    """

    selection_changed = Signal()
    message = Signal(str)

    def __init__(self, viewer: Any) -> None:
        super().__init__("Data")
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        self.viewer = viewer
        self._files: dict[str, STEMDataset] = {}
        self._kept: dict[str, STEMDataset] = {}
        self.combo = QComboBox()
        self.combo.setToolTip(
            "4D-STEM data to reconstruct: a layer opened with the caviar-napari reader, "
            "or a file opened with the button."
        )
        self.combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.combo.currentIndexChanged.connect(self._on_index_changed)
        self.open_button = button("Open…", "Open a 4D-STEM file (HDF5, npy/npz + json, EMD…).")
        self.open_button.clicked.connect(self._choose_file)
        self.info = QLabel(NO_DATA)
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: #9ba0a8;")
        layout = QGridLayout(self)
        layout.addWidget(self.combo, 0, 0)
        layout.addWidget(self.open_button, 0, 1)
        layout.addWidget(self.info, 1, 0, 1, 2)
        layout.setColumnStretch(0, 1)

    # ------------------------------------------------------------------ sources
    def _stem_layers(self) -> list[Any]:
        return [layer for layer in self.viewer.layers if DATASET_KEY in layer.metadata]

    def refresh(self) -> None:
        """Refill the list from the viewer's layers and the files; keep the selection."""
        current = self.combo.currentData()
        self.combo.blockSignals(True)
        self.combo.clear()
        for layer in self._stem_layers():
            self.combo.addItem(f"layer: {layer.name}", f"layer:{layer.name}")
        for path in self._files:
            self.combo.addItem(f"file: {Path(path).name}", f"file:{path}")
        for name in self._kept:
            self.combo.addItem(f"data: {name} (kept here)", f"kept:{name}")
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
        data = self.combo.currentData()
        if data is None:
            return None
        kind, key = str(data).split(":", 1)
        if kind == "file":
            return self._files.get(key)
        if kind == "kept":
            return self._kept.get(key)
        for layer in self.viewer.layers:
            if layer.name == key and DATASET_KEY in layer.metadata:
                return layer.metadata[DATASET_KEY]
        return None

    def _on_index_changed(self, *_: Any) -> None:
        dataset = self.dataset()
        self.info.setText(NO_DATA if dataset is None else describe(dataset))
        self.selection_changed.emit()

    # ------------------------------------------------------------------ files
    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open 4D-STEM data", "", FILE_FILTER)
        if path:
            self.open_file(path)

    def open_file(self, path: str) -> Any:
        """Read a 4D-STEM file in a worker, then select it; returns the worker."""
        self.open_button.setEnabled(False)
        name = Path(path).name
        self.message.emit(f"reading {name}…")

        def loaded(dataset: STEMDataset) -> None:
            self._files[str(path)] = dataset
            self.refresh()
            self.select(f"file:{path}")
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
        """Take the selected 4D-STEM layer (and its virtual BF) out of the viewer; keep the data.

        napari aligns layers by position: the 4D-STEM layers' ``(scan_y, scan_x, ky, kx)``
        axes would take the place of a reconstruction's ``(state, slice, y, x)`` (wrong slider
        labels and steps, diffraction patterns in mrad filling the canvas). ``dataset`` (the
        calibration in use) stays selectable as "data: <name> (kept here)".

        Returns
        -------
        list of str
            Names of the layers taken out (empty when the selection is not a 4D layer).
        """
        data = self.combo.currentData()
        if data is None or not str(data).startswith("layer:"):
            return []
        name = str(data).split(":", 1)[1]
        layer = next((la for la in self.viewer.layers if la.name == name), None)
        if layer is None or layer.ndim != 4:
            return []
        path = layer.metadata.get(PATH_KEY) or None
        labels = tuple(layer.axis_labels)
        parked = [
            la
            for la in self.viewer.layers
            if la is layer
            or (
                path is not None
                and la.metadata.get(PATH_KEY) == path
                and la.ndim == 4
                and tuple(la.axis_labels) == labels
            )
        ]
        self._kept[name] = dataset
        names = [la.name for la in parked]
        for la in parked:
            self.viewer.layers.remove(la)
        self.refresh()
        self.select(f"kept:{name}")
        listed = ", ".join(f"'{n}'" for n in names)
        show_info(
            f"caviar: {listed} moved out of the view for the reconstruction's (state, slice, "
            "y, x) axes; the data stay selected in the Reconstruction dock"
        )
        return names
