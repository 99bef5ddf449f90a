"""The one set of form helpers of the dock widgets: spin boxes, labels, buttons, rows, and
magicgui parameter forms bound to the view-models' typed dataclasses.

Each builder returns a configured widget and does nothing else, so a dock's ``_build_ui`` reads
as a list of controls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from magicgui.widgets import Container, create_widget
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from caviar_napari.viewmodels.tables import Table

_SpinBox = TypeVar("_SpinBox", QSpinBox, QDoubleSpinBox)

#: Colour of secondary (hint) text on napari's dark theme.
HINT_STYLE = "color: #9ba0a8;"
#: Colour of an error text.
ERROR_STYLE = "color: #ff6b6b;"
#: A spin box inside a table cell: as narrow as its column (napari's style asks for 90 px).
BARE_SPIN_STYLE = "QAbstractSpinBox { min-width: 0px; padding: 1px 3px; }"


# ==================================================================================== spin boxes
def double_spin(
    lo: float,
    hi: float,
    value: float | None = None,
    *,
    step: float = 1.0,
    decimals: int = 2,
    suffix: str = "",
    special: str = "",
    tooltip: str = "",
    bare: bool = False,
) -> QDoubleSpinBox:
    """A ``QDoubleSpinBox`` on ``[lo, hi]`` showing ``value`` (None: ``lo``).

    Parameters
    ----------
    lo, hi, value
        Range and initial value, in the unit named by ``suffix``.
    step
        Arrow-key step (Qt's default is 1).
    decimals
        Digits after the decimal point (set before the value, so the value is not rounded
        to Qt's default of 2).
    suffix
        Unit shown after the number, e.g. ``" Å"``.
    special
        Text shown instead of the minimum value (e.g. ``"auto"``).
    tooltip
        Tooltip.
    bare
        No arrow buttons, no frame, right-aligned: an editor inside a table or a compact row.
    """
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    return _finish(box, value, suffix=suffix, special=special, tooltip=tooltip, bare=bare)


def int_spin(
    lo: int,
    hi: int,
    value: int | None = None,
    *,
    suffix: str = "",
    prefix: str = "",
    special: str = "",
    tooltip: str = "",
    bare: bool = False,
) -> QSpinBox:
    """A ``QSpinBox`` on ``[lo, hi]`` (initial ``value``, else ``lo``), with optional
    ``suffix``/``prefix``, ``special`` text shown at the minimum, and the ``bare`` look of
    :func:`double_spin`."""
    box = QSpinBox()
    box.setRange(lo, hi)
    return _finish(
        box, value, suffix=suffix, prefix=prefix, special=special, tooltip=tooltip, bare=bare
    )


def _finish(
    box: _SpinBox,
    value: float | None,
    *,
    suffix: str = "",
    prefix: str = "",
    special: str = "",
    tooltip: str = "",
    bare: bool = False,
) -> _SpinBox:
    """Set the value (unless None) and the optional texts of a spin box whose range is set."""
    if value is not None:
        box.setValue(value)
    if suffix:
        box.setSuffix(suffix)
    if prefix:
        box.setPrefix(prefix)
    if special:
        box.setSpecialValueText(special)
    if tooltip:
        box.setToolTip(tooltip)
    if bare:
        box.setButtonSymbols(QAbstractSpinBox.NoButtons)
        box.setFrame(False)
        box.setAlignment(Qt.AlignRight)
        box.setStyleSheet(BARE_SPIN_STYLE)
    return box


def exact_value(box: QDoubleSpinBox, original: float) -> float:
    """The value of ``box``, or ``original`` exactly when the box only shows it rounded."""
    if abs(box.value() - round(original, box.decimals())) < 0.5 * 10.0 ** -box.decimals():
        return float(original)
    return float(box.value())


# ==================================================================================== others
def text_label(text: str = "", *, selectable: bool = False, hint: bool = False) -> QLabel:
    """A word-wrapped ``QLabel`` for status and result text (``selectable``: can be copied;
    ``hint``: secondary colour)."""
    label = QLabel(text)
    label.setWordWrap(True)
    if selectable:
        label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    if hint:
        label.setStyleSheet(HINT_STYLE)
    return label


def push_button(
    text: str, slot: Callable[..., Any] | None = None, tooltip: str = ""
) -> QPushButton:
    """A ``QPushButton`` whose ``clicked`` signal calls ``slot`` (with no arguments)."""
    button = QPushButton(text)
    if tooltip:
        button.setToolTip(tooltip)
    if slot is not None:
        button.clicked.connect(lambda *_: slot())
    return button


def hrow(*items: QWidget | tuple[QWidget, int], margins: bool = False) -> QHBoxLayout:
    """A horizontal row of widgets; an item ``(widget, stretch)`` gets that stretch factor."""
    row = QHBoxLayout()
    if not margins:
        row.setContentsMargins(0, 0, 0, 0)
    for item in items:
        widget, stretch = item if isinstance(item, tuple) else (item, 0)
        row.addWidget(widget, stretch)
    return row


def row_widget(*items: QWidget | tuple[QWidget, int]) -> QWidget:
    """:func:`hrow` in a widget of its own (e.g. one field of a form)."""
    holder = QWidget()
    holder.setLayout(hrow(*items))
    return holder


def centred(widget: QWidget) -> QWidget:
    """``widget`` centred in a holder (e.g. a check box in a table cell)."""
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setAlignment(Qt.AlignCenter)
    layout.addWidget(widget)
    return holder


def combo(items: Sequence[str], tooltip: str = "", *, current: str = "") -> QComboBox:
    """A ``QComboBox`` of ``items`` (``current`` selected when given) that may be narrower
    than its longest item (the list shows the whole texts)."""
    box = QComboBox()
    box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(14)
    box.addItems(list(items))
    if current:
        box.setCurrentText(current)
    if tooltip:
        box.setToolTip(tooltip)
    return box


def check_box(text: str, checked: bool = False, tooltip: str = "") -> QCheckBox:
    """A ``QCheckBox``."""
    box = QCheckBox(text)
    box.setChecked(checked)
    if tooltip:
        box.setToolTip(tooltip)
    return box


def replace_items(combo: QComboBox, names: Sequence[str], select: str) -> None:
    """Replace the items of ``combo`` by ``names`` without emitting its signals; ``select``
    becomes the current item if it is one of them (else the first item is current)."""
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(list(names))
    if select in names:
        combo.setCurrentText(select)
    combo.blockSignals(False)


# ==================================================================================== magicgui
@dataclass(frozen=True)
class ParamField:
    """One control of a magicgui parameter form, bound to a dataclass field.

    Attributes
    ----------
    name
        The dataclass field.
    label
        Row label.
    options
        magicgui widget options (``min``, ``max``, ``step``, ``widget_type`` …).
    suffix
        Unit shown after a number.
    tooltip
        Tooltip of the control.
    special
        Text a spin box shows at its minimum (e.g. ``"auto"``).
    placeholder
        Text a line edit shows while empty.
    shown, stored
        Conversions between the dataclass value and the control's (e.g. ``None`` ↔ an empty
        line edit); None: the same value.
    """

    name: str
    label: str
    options: Mapping[str, Any] = field(default_factory=dict)
    suffix: str = ""
    tooltip: str = ""
    special: str = ""
    placeholder: str = ""
    shown: Callable[[Any], Any] | None = None
    stored: Callable[[Any], Any] | None = None

    def to_control(self, value: Any) -> Any:
        """The control's value of the dataclass value ``value``."""
        return value if self.shown is None else self.shown(value)

    def from_control(self, value: Any) -> Any:
        """The dataclass value of the control's value ``value``."""
        return value if self.stored is None else self.stored(value)


class ParamForm:
    """A magicgui :class:`~magicgui.widgets.Container` editing some fields of a dataclass.

    Parameters
    ----------
    fields
        The controls, in order.
    values
        The dataclass instance (or mapping) the controls start from.

    Attributes
    ----------
    container
        The magicgui container (``container.native`` is the Qt widget to add to a layout).
    """

    def __init__(self, fields: Sequence[ParamField], values: Any) -> None:
        self.fields = list(fields)
        start = values if isinstance(values, Mapping) else dataclasses.asdict(values)
        widgets = []
        for f in self.fields:
            options = dict(f.options)
            widget_type = options.pop("widget_type", None)
            widget = create_widget(
                value=f.to_control(start[f.name]),
                name=f.name,
                label=f.label,
                widget_type=widget_type,
                options=options,
            )
            native = widget.native
            if f.tooltip:
                widget.tooltip = f.tooltip
            # magicgui's integer box (superqt's QLargeIntSpinBox) shows neither a suffix nor a
            # special text: the label says them instead
            if f.suffix:
                if isinstance(native, QSpinBox | QDoubleSpinBox):
                    native.setSuffix(f.suffix)
                else:
                    widget.label = f"{f.label} ({f.suffix.strip()})"
            if f.special:
                if isinstance(native, QSpinBox | QDoubleSpinBox):
                    native.setSpecialValueText(f.special)
                else:
                    widget.label = f"{widget.label} ({options.get('min', 0)} = {f.special})"
            if f.placeholder and hasattr(native, "setPlaceholderText"):
                native.setPlaceholderText(f.placeholder)
            widgets.append(widget)
        self.container = Container(widgets=widgets)
        self.container.margins = (0, 0, 0, 0)

    @property
    def native(self) -> QWidget:
        """The Qt widget of the form."""
        return self.container.native

    def __getitem__(self, name: str) -> Any:
        """The magicgui widget of field ``name``."""
        return self.container[name]

    def values(self) -> dict[str, Any]:
        """Field name → value as shown (converted back to the dataclass's)."""
        return {f.name: f.from_control(self.container[f.name].value) for f in self.fields}

    def value(self, name: str) -> Any:
        """The value of field ``name`` as shown (converted back to the dataclass's)."""
        f = next(f for f in self.fields if f.name == name)
        return f.from_control(self.container[name].value)

    def apply_to(self, instance: Any) -> Any:
        """``dataclasses.replace(instance, **values)`` (the dataclass validates them)."""
        return dataclasses.replace(instance, **self.values())

    def set_values(self, values: Any) -> None:
        """Show the fields of a dataclass instance (or mapping) without emitting changes."""
        source = values if isinstance(values, Mapping) else dataclasses.asdict(values)
        with self.container.changed.blocked():
            for f in self.fields:
                widget = self.container[f.name]
                with widget.changed.blocked():
                    widget.value = f.to_control(source[f.name])

    def connect(self, slot: Callable[[], Any]) -> None:
        """Call ``slot()`` whenever a control changes."""
        self.container.changed.connect(lambda *_: slot())

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable every control."""
        self.container.enabled = enabled


# ==================================================================================== tables
def read_only_table(tooltip: str) -> QTableWidget:
    """A read-only table without row numbers (filled by :func:`fill_table`)."""
    table = QTableWidget(0, 0)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    table.setToolTip(tooltip)
    return table


def fill_table(
    table: QTableWidget, content: Table, *, colours: Sequence[str] | None = None
) -> None:
    """Show ``content`` in ``table``, as tall as its rows: the first column stretched and
    left-aligned (in ``colours``, row by row, cycling, when given), the others centred and as
    wide as their texts."""
    table.clear()
    table.setColumnCount(len(content.headers))
    table.setHorizontalHeaderLabels(list(content.headers))
    table.setRowCount(len(content.rows))
    for r, cells in enumerate(content.rows):
        for c, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setTextAlignment(Qt.AlignCenter if c else Qt.AlignLeft | Qt.AlignVCenter)
            table.setItem(r, c, item)
        if colours:
            table.item(r, 0).setForeground(QColor(colours[r % len(colours)]))
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.Stretch)
    if content.tooltip:
        table.setToolTip(content.tooltip)
    rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
    table.setFixedHeight(header.sizeHint().height() + rows + 2 * table.frameWidth() + 2)
