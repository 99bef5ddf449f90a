"""The "atoms source" selector of the Correlations and Dispersion widgets.

A source is any napari Points layer whose ``metadata["caviar_atoms"]`` holds an
:class:`~caviar_napari.io.atoms_file.AtomsData` (the Atoms widget's ``atoms`` layer after a
refinement, or a layer added here from an ATOMS file).  :class:`AtomsSourcePicker` is the row
"combo of such layers + z-range + *Open ATOMS file…*": a file of several z-ranges (``caviar
atoms --zrange``) becomes one source layer per range, and the z-range combo (shown when the
chosen source is a range) picks among the ranges of its file; :class:`AtomsAnalysisDock` is the
base of the docks that analyse such a source: the public methods ``atoms_source``,
``set_source_layer`` and ``open_atoms_file``, and one background computation at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QLabel, QVBoxLayout, QWidget

from caviar_napari._qt._dock import ViewerDock, follow_layers
from caviar_napari._qt._file_dialogs import HDF5_FILTER, ask_and_run
from caviar_napari._qt._forms import hrow, push_button, replace_items
from caviar_napari._qt._worker import start_worker
from caviar_napari.errors import InputError
from caviar_napari.viewmodels.layer_keys import ATOMS_METADATA_KEY, PATH_KEY

#: Marker size of a source layer opened from a file, relative to the nearest-neighbour distance.
MARKER_SIZE_FACTOR = 0.3
#: Marker size, Å, when there are fewer than two atoms to measure a distance.
FALLBACK_MARKER_SIZE_A = 0.5


def marker_size_A(mean_positions_A: ArrayLike) -> float:
    """Marker diameter of a source layer, Å.

    Parameters
    ----------
    mean_positions_A
        ``(atom, 2)`` mean positions ``(y, x)``, Å; atoms with a NaN coordinate are ignored.

    Returns
    -------
    float
        :data:`MARKER_SIZE_FACTOR` × the median distance from each finite atom to its nearest
        other one; :data:`FALLBACK_MARKER_SIZE_A` with fewer than two finite atoms.
    """
    from scipy.spatial import cKDTree

    mean = np.asarray(mean_positions_A, dtype=float).reshape(-1, 2)
    finite = mean[np.isfinite(mean).all(axis=1)]
    if len(finite) < 2:
        return FALLBACK_MARKER_SIZE_A
    distances, _ = cKDTree(finite).query(finite, k=2)
    return MARKER_SIZE_FACTOR * float(np.median(distances[:, 1]))


class AtomsSourcePicker(QWidget):
    """Combo of the viewer's source Points layers and an *Open ATOMS file…* button.

    The combo follows the viewer's layer list.  :attr:`changed` is emitted whenever the list
    or the choice changes.

    Parameters
    ----------
    viewer
        The napari viewer whose layers are listed (new layers from files are added to it).
    marker_size
        ``f(mean_positions_A (atom, 2)) -> diameter (Å)`` of the markers of a layer opened from
        a file; it may raise :class:`~caviar_napari.errors.InputError` to refuse the file.
    opacity
        Opacity of those markers.
    """

    #: The list of sources or the chosen one changed.
    changed = Signal()

    def __init__(
        self,
        viewer: Any,
        *,
        marker_size: Callable[[np.ndarray], float] = marker_size_A,
        opacity: float = 0.7,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._marker_size = marker_size
        self._opacity = opacity
        self.combo = QComboBox()
        self.combo.setToolTip(
            f"Points layers carrying an AtomsData in metadata['{ATOMS_METADATA_KEY}']"
        )
        self.combo.currentIndexChanged.connect(self._on_index_changed)
        self.range_combo = QComboBox()
        self.range_combo.setToolTip(
            "z-range of the chosen source: each range of an ATOMS file (caviar atoms --zrange) "
            "is analysed on its own, in its own lattice frame, over its slices"
        )
        self.range_combo.currentIndexChanged.connect(self._on_range_chosen)
        self.range_combo.setVisible(False)
        for box in (self.combo, self.range_combo):  # long layer names: not wider than the dock
            box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(8)
        self.open_button = push_button("Open ATOMS file…", self._ask_atoms_file)
        rows = QVBoxLayout(self)
        rows.setContentsMargins(0, 0, 0, 0)
        rows.addLayout(hrow((self.combo, 1), self.open_button))
        rows.addWidget(self.range_combo)  # shown for a source of a z-range
        self.refresh()
        follow_layers(self, viewer, self.refresh)

    def layers(self) -> list:
        """The viewer's Points layers that carry an AtomsData, in layer-list order."""
        return [
            layer
            for layer in self.viewer.layers
            if layer.__class__.__name__ == "Points" and ATOMS_METADATA_KEY in layer.metadata
        ]

    def refresh(self, *_: Any) -> None:
        """Re-list the source layers, keeping the current choice if it is still there."""
        names = [layer.name for layer in self.layers()]
        replace_items(self.combo, names, self.combo.currentText())
        self._show_ranges()
        self.changed.emit()

    def atoms_source(self) -> Any:
        """The AtomsData of the chosen source layer (None if there is none)."""
        name = self.combo.currentText()
        for layer in self.layers():
            if layer.name == name:
                return layer.metadata[ATOMS_METADATA_KEY]
        return None

    def source_path(self) -> str | None:
        """The ATOMS file the chosen source was read from (None: made in the viewer)."""
        name = self.combo.currentText()
        for layer in self.layers():
            if layer.name == name:
                return layer.metadata.get(PATH_KEY) or None
        return None

    def set_source_layer(self, name: str) -> None:
        """Choose the source Points layer by name (InputError if it is not a source)."""
        if name not in [layer.name for layer in self.layers()]:
            raise InputError(f"no Points layer {name!r} with metadata[{ATOMS_METADATA_KEY!r}]")
        self.combo.setCurrentText(name)
        self.changed.emit()

    def open_atoms_file(self, path: str | os.PathLike) -> Any:
        """Read an ATOMS file, add it as a source Points layer and select it; returns the layer.

        The layer ``atoms (<file stem>)`` shows the finite mean positions (feature ``atom``:
        their index in the file) and carries the whole AtomsData.  A file of several z-ranges
        gives one layer per range, ``atoms (<file stem>) [<label>]``; the first is selected,
        the z-range combo picks the others.
        """
        from caviar_napari.io.atoms_file import read_atoms_zranges

        ranges = read_atoms_zranges(path)
        layers = []
        for label, atoms in ranges.items():
            mean = np.asarray(atoms.mean_positions_A, dtype=float)
            finite = np.flatnonzero(np.isfinite(mean).all(axis=1))
            name = f"atoms ({Path(path).stem})" + (f" [{label}]" if len(ranges) > 1 else "")
            layers.append(
                self.viewer.add_points(
                    mean[finite],
                    name=name,
                    size=self._marker_size(mean),
                    face_color="#d0d0d0",
                    border_width=0,
                    opacity=self._opacity,
                    features={"atom": finite},
                    units=("Å", "Å"),
                    metadata={ATOMS_METADATA_KEY: atoms, PATH_KEY: str(path)},
                )
            )
        self.set_source_layer(layers[0].name)
        return layers[0]

    def zrange_sources(self) -> list[tuple[str, str, str]]:
        """``(label, slices "A:B", layer name)`` of the z-ranges the chosen source's file holds
        (only itself for a source made in the viewer); empty when the chosen source has no
        z-range."""
        chosen = next((la for la in self.layers() if la.name == self.combo.currentText()), None)
        zrange = getattr(chosen.metadata[ATOMS_METADATA_KEY], "zrange", None) if chosen else None
        if zrange is None:
            return []
        path = chosen.metadata.get(PATH_KEY)
        out = []
        for layer in self.layers():
            z = getattr(layer.metadata[ATOMS_METADATA_KEY], "zrange", None)
            same = layer is chosen or (path and layer.metadata.get(PATH_KEY) == path)
            if same and z is not None:
                out.append((z.label, z.spec, layer.name))
        return out

    def zrange_atoms(self) -> dict[str, Any]:
        """The AtomsData of the z-ranges the chosen source's file holds, by label (see
        :meth:`zrange_sources`)."""
        by_name = {layer.name: layer for layer in self.layers()}
        return {
            label: by_name[name].metadata[ATOMS_METADATA_KEY]
            for label, _spec, name in self.zrange_sources()
        }

    def set_zrange(self, label: str) -> None:
        """Choose the source layer of z-range ``label`` of the chosen source's file."""
        for z_label, _spec, name in self.zrange_sources():
            if z_label == label:
                self.set_source_layer(name)
                return
        raise InputError(f"the chosen source's file holds no z-range {label!r}")

    def _show_ranges(self) -> None:
        sources = self.zrange_sources()
        self.range_combo.blockSignals(True)
        self.range_combo.clear()
        for label, spec, name in sources:
            self.range_combo.addItem(f"z-range {label} ({spec})" if label else spec, name)
        index = self.range_combo.findData(self.combo.currentText())
        self.range_combo.setCurrentIndex(max(index, 0))
        self.range_combo.blockSignals(False)
        self.range_combo.setVisible(bool(sources))

    def _on_range_chosen(self, *_: Any) -> None:
        name = self.range_combo.currentData()
        if name and name != self.combo.currentText():
            self.set_source_layer(name)

    def _ask_atoms_file(self) -> None:
        ask_and_run(self, self.open_atoms_file, "Open ATOMS file", HDF5_FILTER)

    def _on_index_changed(self, *_: Any) -> None:
        self._show_ranges()
        self.changed.emit()


class AtomsAnalysisDock(ViewerDock):
    """Base of the dock widgets that analyse an atoms source (Correlations, Dispersion).

    A subclass creates its :class:`AtomsSourcePicker` as :attr:`source_picker` while building
    its controls and implements :meth:`_set_enabled`.

    Parameters
    ----------
    napari_viewer
        The viewer the widget is docked in; its source Points layers are listed.
    """

    source_picker: AtomsSourcePicker

    def atoms_source(self) -> Any:
        """The AtomsData of the chosen source layer (None if there is none)."""
        return self.source_picker.atoms_source()

    def source_path(self) -> str | None:
        """The ATOMS file the chosen source was read from (None: made in the viewer)."""
        return self.source_picker.source_path()

    def set_source_layer(self, name: str) -> None:
        """Choose the source Points layer by name."""
        self.source_picker.set_source_layer(name)

    def open_atoms_file(self, path: str | os.PathLike) -> Any:
        """Read an ATOMS file, add it as a source Points layer and select it; returns the layer."""
        return self.source_picker.open_atoms_file(path)

    def _set_enabled(self) -> None:
        """Enable the controls that apply to the current source, result and worker."""
        raise NotImplementedError

    def _run_in_worker(
        self,
        label: QLabel,
        busy_text: str,
        job: Callable[..., Generator],
        *args: Any,
        on_return: Callable[[Any], None],
    ) -> Any:
        """Run ``job(*args)`` in :attr:`worker`; ``label`` shows ``busy_text`` meanwhile and
        ``failed: <error>`` if it fails; the controls are disabled until it ends.  Returns the
        worker."""
        label.setText(busy_text)
        self.worker = start_worker(
            job,
            *args,
            on_return=on_return,
            on_done=self._on_worker_done,
            on_error=lambda exc: label.setText(f"failed: {exc}"),
        )
        self._set_enabled()
        return self.worker

    def _on_worker_done(self) -> None:
        self.worker = None
        self._set_enabled()
