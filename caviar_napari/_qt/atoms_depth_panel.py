"""The depth panel of the Atoms dock: z-ranges on the slice axis, and a side view (issue 16).

A labelled range slider picks slices ``A … B`` of the phase layer; ticked, *show the range
summed* makes the viewer show the phase summed over them (napari's slab projection on the
slice axis: the dims slider of the slice axis then spans the range), which is the image atoms
are detected on.  *Add range* names the picked slices; the range list chooses the range that
Detect, Refine and the exports work on ("all slices": no range).  Below, the side view: the
phase (mean over states) in the x–z plane along the line ``y`` chosen beside it (drawn in the
viewer as a line), with the rms phase of every slice and the ranges marked
(:mod:`caviar_napari.viewmodels.atoms_depth`).  The dock (:mod:`caviar_napari._qt.atoms_widget`)
owns the logic; this panel holds the controls and applies the slab to the viewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QGroupBox, QLineEdit, QVBoxLayout, QWidget
from superqt import QLabeledRangeSlider

from caviar_napari._qt._forms import check_box, double_spin, hrow, push_button, text_label
from caviar_napari._qt._plot import FigureView
from caviar_napari.viewmodels.atoms_depth import ALL_SLICES, RangeChoice

#: Text of the range list's entry that stands for every slice.
ALL_SLICES_TEXT = "all slices (no z-range)"
#: Name of the Shapes layer marking the side view's line.
SIDE_LINE_NAME = "side view line"


class DepthPanel(QGroupBox):
    """Group box "Depth (z-ranges)": slab slider, range list, side view.

    Signals
    -------
    slab_changed
        The slider moved (``(first, last)`` slices, inclusive).
    active_changed
        Another range was chosen in the list (its label; ``""``: all slices).
    side_view_changed
        The side view's line moved.
    """

    slab_changed = Signal(int, int)
    active_changed = Signal(str)
    side_view_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Depth (z-ranges)", parent)
        self._n_slices = 1
        layout = QVBoxLayout(self)
        self.slider = QLabeledRangeSlider(Qt.Horizontal)
        self.slider.setToolTip(
            "First and last slice of a depth range (inclusive). With a range chosen below, "
            "moving the handles moves that range."
        )
        self.slider.valueChanged.connect(self._on_slider)
        layout.addWidget(self.slider)
        self.span_label = text_label(hint=True)
        layout.addWidget(self.span_label)
        self.show_check = check_box(
            "show the range summed in the viewer",
            False,
            "The phase layer shows the sum over the picked slices (the image atoms are detected "
            "on); the slice slider of the viewer then spans the range.",
        )
        layout.addWidget(self.show_check)
        self.range_combo = QComboBox()
        self.range_combo.setToolTip(
            "The range Detect, Refine and the exports work on: detection on the phase summed "
            "over its slices, refinement in each of its states and slices, its own lattice."
        )
        self.range_combo.currentIndexChanged.connect(self._on_active)
        self.label_edit = QLineEdit()
        self.label_edit.setPlaceholderText("label, e.g. upper")
        self.label_edit.setToolTip("Name of the range to add (letters, digits; no '/').")
        self.add_button = push_button("Add range", None, "Name the picked slices as a range.")
        self.remove_button = push_button("Remove", None, "Forget the chosen range.")
        layout.addLayout(hrow((self.range_combo, 1), self.remove_button))
        layout.addLayout(hrow((self.label_edit, 1), self.add_button))
        self.all_button = push_button(
            "Detect and refine every range",
            None,
            "For every range: LoG detection on its slices' sum (in the scanned area), "
            "refinement in each of its states and slices, indexing in its own lattice — as "
            "caviar atoms --zrange LABEL=A:B. Needs a reconstruction's phase layer.",
        )
        layout.addWidget(self.all_button)
        self.y_spin = double_spin(
            -1e4, 1e4, 0.0, step=0.1, decimals=2, suffix=" Å", tooltip="Line of the side view."
        )
        self.y_spin.valueChanged.connect(lambda *_: self.side_view_changed.emit())
        layout.addLayout(hrow(text_label("side view (x–z) at y ="), (self.y_spin, 1)))
        self.plot = FigureView(self, height_px=200)
        self.plot.setToolTip(
            "The phase (mean over states) along the line y, against x and the depth z (down); "
            "right: the rms phase of each slice. The ranges are marked; the chosen one bold."
        )
        self.plot.resized.connect(self.side_view_changed.emit)
        layout.addWidget(self.plot)
        self.set_ranges([], ALL_SLICES)

    # ------------------------------------------------------------------ state
    @property
    def n_slices(self) -> int:
        """Slices of the phase layer."""
        return self._n_slices

    def set_slices(self, n_slices: int) -> None:
        """The phase layer has ``n_slices`` slices: the slider's range (all of them picked)."""
        self._n_slices = max(int(n_slices), 1)
        self.slider.blockSignals(True)
        self.slider.setRange(0, self._n_slices - 1)
        self.slider.setValue((0, self._n_slices - 1))
        self.slider.blockSignals(False)
        self.setEnabled(self._n_slices > 1)
        self.setToolTip("" if self._n_slices > 1 else "The phase layer has one slice: no depth.")

    def slab(self) -> tuple[int, int]:
        """The picked slices ``(first, last)``, inclusive (within the phase layer's slices:
        a slider of one slice keeps its old handles)."""
        top = self._n_slices - 1
        lo, hi = (min(max(int(round(v)), 0), top) for v in self.slider.value())
        return min(lo, hi), max(lo, hi)

    def set_slab(self, first: int, last: int) -> None:
        """Move the handles without emitting :attr:`slab_changed`."""
        self.slider.blockSignals(True)
        self.slider.setValue((int(first), int(last)))
        self.slider.blockSignals(False)

    def set_span_text(self, text: str) -> None:
        """Say which slices (and depths) the handles pick."""
        self.span_label.setText(text)

    def set_ranges(self, ranges: Sequence[RangeChoice], active: str) -> None:
        """List ``ranges`` (after "all slices") and choose ``active``, without signals."""
        self.range_combo.blockSignals(True)
        self.range_combo.clear()
        self.range_combo.addItem(ALL_SLICES_TEXT, ALL_SLICES)
        for r in ranges:
            self.range_combo.addItem(f"{r.label} ({r.spec})", r.label)
        index = self.range_combo.findData(active)
        self.range_combo.setCurrentIndex(max(index, 0))
        self.range_combo.blockSignals(False)
        self.remove_button.setEnabled(active != ALL_SLICES)
        self.all_button.setEnabled(bool(ranges))

    def active(self) -> str:
        """Label of the chosen range (``""``: all slices)."""
        return str(self.range_combo.currentData() or ALL_SLICES)

    def _on_slider(self, value: Any) -> None:
        lo, hi = (int(round(v)) for v in value)
        self.slab_changed.emit(lo, hi)

    def _on_active(self, *_: Any) -> None:
        self.remove_button.setEnabled(self.active() != ALL_SLICES)
        self.active_changed.emit(self.active())

    # ------------------------------------------------------------------ viewer
    def apply_slab(self, viewer: Any, layer: Any) -> None:
        """Show ``layer`` (dims ``(state, slice, y, x)``) summed over the picked slices when
        *show the range summed* is ticked, else one slice as usual."""
        if layer is None or layer.ndim < 3:
            return
        axis = viewer.dims.ndim - 3  # the layer's slice axis (its dims are the last ones)
        left, right = list(viewer.dims.margin_left), list(viewer.dims.margin_right)
        if self.show_check.isChecked() and self.isEnabled():
            lo, hi = self.slab()
            layer.projection_mode = "sum"
            viewer.dims.set_current_step(axis, lo)
            left[axis], right[axis] = 0.0, float(hi - lo)
        else:
            layer.projection_mode = "none"
            left[axis], right[axis] = 0.0, 0.0
        if (tuple(left), tuple(right)) != (viewer.dims.margin_left, viewer.dims.margin_right):
            viewer.dims.margin_left = tuple(left)
            viewer.dims.margin_right = tuple(right)
