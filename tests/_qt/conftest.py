"""Helpers of the dock-widget tests: real mouse clicks and answered file dialogs."""

from __future__ import annotations

import pytest
from qtpy.QtCore import QPoint, Qt
from qtpy.QtWidgets import QCheckBox, QFileDialog, QStyle, QStyleOptionButton


@pytest.fixture
def click(qtbot):
    """``click(button)``: a left mouse click on an enabled button (a check box: on its box)."""

    def _click(button) -> None:
        assert button.isEnabled(), f"button {button.text()!r} is disabled"
        if isinstance(button, QCheckBox):  # on its box, not on the empty space beside its text
            option = QStyleOptionButton()
            button.initStyleOption(option)
            box = button.style().subElementRect(QStyle.SE_CheckBoxIndicator, option, button)
            pos = box.center() if box.isValid() else QPoint(6, button.height() // 2)
            qtbot.mouseClick(button, Qt.LeftButton, pos=pos)
        else:
            qtbot.mouseClick(button, Qt.LeftButton)

    return _click


@pytest.fixture
def answer_dialogs(monkeypatch):
    """``answer_dialogs(path)``: every following open/save file dialog returns ``path``
    (``""``: the user cancels).  Returns the list of dialog titles asked."""
    asked: list[str] = []

    def _answer(path) -> list[str]:
        def dialog(parent, title, *args, **kwargs):
            asked.append(title)
            return str(path), ""

        monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(dialog))
        monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(dialog))
        return asked

    return _answer
