"""Small builders for the controls of the dock widgets: spin boxes, labels, buttons, form rows.

Each returns a configured Qt object and does nothing else, so the widgets' ``_build_ui`` reads
as a list of controls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

_SpinBox = TypeVar("_SpinBox", QSpinBox, QDoubleSpinBox)


def double_spin(
    lo: float,
    hi: float,
    value: float,
    *,
    step: float = 1.0,
    decimals: int = 2,
    suffix: str = "",
    special: str = "",
) -> QDoubleSpinBox:
    """A ``QDoubleSpinBox`` on ``[lo, hi]`` showing ``value``.

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
    """
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    return _finish(box, value, suffix=suffix, special=special)


def int_spin(
    lo: int,
    hi: int,
    value: int | None = None,
    *,
    suffix: str = "",
    prefix: str = "",
    special: str = "",
) -> QSpinBox:
    """A ``QSpinBox`` on ``[lo, hi]`` (initial ``value``, else ``lo``), with optional
    ``suffix``/``prefix`` and ``special`` text shown at the minimum."""
    box = QSpinBox()
    box.setRange(lo, hi)
    return _finish(box, value, suffix=suffix, prefix=prefix, special=special)


def _finish(
    box: _SpinBox,
    value: float | None,
    *,
    suffix: str = "",
    prefix: str = "",
    special: str = "",
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
    return box


def text_label(text: str = "", *, selectable: bool = False) -> QLabel:
    """A word-wrapped ``QLabel`` for status and result text (``selectable``: can be copied)."""
    label = QLabel(text)
    label.setWordWrap(True)
    if selectable:
        label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return label


def push_button(text: str, slot: Callable[..., Any], tooltip: str = "") -> QPushButton:
    """A ``QPushButton`` whose ``clicked`` signal calls ``slot``."""
    button = QPushButton(text)
    if tooltip:
        button.setToolTip(tooltip)
    button.clicked.connect(slot)
    return button


def hrow(*items: QWidget | tuple[QWidget, int]) -> QHBoxLayout:
    """A horizontal row of widgets; an item ``(widget, stretch)`` gets that stretch factor."""
    row = QHBoxLayout()
    for item in items:
        widget, stretch = item if isinstance(item, tuple) else (item, 0)
        row.addWidget(widget, stretch)
    return row


def replace_items(combo: QComboBox, names: Sequence[str], select: str) -> None:
    """Replace the items of ``combo`` by ``names`` without emitting its signals; ``select``
    becomes the current item if it is one of them (else the first item is current)."""
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(list(names))
    if select in names:
        combo.setCurrentText(select)
    combo.blockSignals(False)
