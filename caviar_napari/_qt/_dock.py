"""Base class of the dock widgets: the viewer, a scrolling body, a warning banner, the worker.

Every dock is a :class:`ViewerDock`: its controls go into :attr:`ViewerDock.body` (a vertical
layout inside a scroll area, so a dock is usable on a 1280 × 800 screen however tall its
content), and the warnings of its view-model go into the banner above the scroll area, where they
stay visible whatever part of the dock is scrolled into view.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from napari.utils.notifications import show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

#: Style of the warning banner (amber on napari's dark theme).
WARNING_STYLE = (
    "QLabel { background-color: #5c4400; color: #ffe08a; border: 1px solid #b38600; "
    "border-radius: 3px; padding: 4px; }"
)
#: Style of the banner when a result must not be used as it is (red: e.g. object states that
#: did not separate).
ALARM_STYLE = (
    "QLabel { background-color: #5c1111; color: #ffd0d0; border: 1px solid #d04040; "
    "border-radius: 3px; padding: 4px; }"
)


def _unfollow_layers(viewer: Any, callback: Callable[..., Any], *_: Any) -> None:
    """Detach a destroyed widget's layer-list callback from the viewer."""
    viewer.layers.events.inserted.disconnect(callback)
    viewer.layers.events.removed.disconnect(callback)


def follow_layers(widget: QWidget, viewer: Any, callback: Callable[..., Any]) -> None:
    """Call ``callback(event)`` whenever a layer is inserted into or removed from the viewer's
    layer list, until ``widget`` is destroyed (then the callback is detached, so the viewer never
    calls into a deleted widget)."""
    viewer.layers.events.inserted.connect(callback)
    viewer.layers.events.removed.connect(callback)
    widget.destroyed.connect(functools.partial(_unfollow_layers, viewer, callback))


class WarningBanner(QLabel):
    """A label that lists warnings (``⚠`` one per line) and hides itself when there are none;
    amber, or red when the result must not be used as it is (:attr:`alarm`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setStyleSheet(WARNING_STYLE)
        self.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.setVisible(False)
        self._warnings: list[str] = []
        self._alarm = False

    @property
    def warnings(self) -> list[str]:
        """The warnings shown."""
        return list(self._warnings)

    @property
    def alarm(self) -> bool:
        """Whether the banner is red (the result must not be used as it is)."""
        return self._alarm and bool(self._warnings)

    def show_warnings(self, warnings: Sequence[str], *, alarm: bool = False) -> None:
        """Show ``warnings`` (an empty sequence hides the banner); red when ``alarm``."""
        self._warnings = [str(w) for w in warnings]
        self._alarm = bool(alarm)
        self.setText("\n".join(f"⚠ {w}" for w in self._warnings))
        self.setStyleSheet(ALARM_STYLE if self.alarm else WARNING_STYLE)
        self.setVisible(bool(self._warnings))


class ViewerDock(QWidget):
    """Base of the caviar dock widgets.

    Parameters
    ----------
    napari_viewer
        The viewer the widget is docked in, kept as :attr:`viewer`.

    Attributes
    ----------
    viewer
        The napari viewer.
    worker
        The running background worker (see :func:`caviar_napari._qt._worker.start_worker`),
        None when the widget is idle.
    body
        Layout of the dock's controls (inside the scroll area).
    footer
        Layout below the scroll area, always in view (e.g. the run controls).
    warning_banner
        Where :meth:`show_warnings` puts the view-model's warnings.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        self.warning_banner = WarningBanner()
        outer.addWidget(self.warning_banner)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        content = QWidget()
        self.scroll.setWidget(content)
        outer.addWidget(self.scroll, 1)
        self.body = QVBoxLayout(content)
        self.body.setContentsMargins(4, 4, 4, 4)
        self.body.setSpacing(6)
        self.footer = QVBoxLayout()
        self.footer.setContentsMargins(4, 0, 4, 4)
        outer.addLayout(self.footer)

    def showEvent(self, event: Any) -> None:
        """Fit the width again once napari's style sheet has sized the controls."""
        super().showEvent(event)
        self.fit_width()

    def fit_width(self) -> None:
        """Make the dock at least as wide as its content (no horizontal scrolling)."""
        content = self.scroll.widget()
        self.setMinimumWidth(
            max(
                content.minimumSizeHint().width()
                + self.scroll.verticalScrollBar().sizeHint().width(),
                self.footer.minimumSize().width(),
            )
        )

    def show_warnings(
        self, warnings: Sequence[str], *, notify: bool = True, alarm: bool = False
    ) -> None:
        """Show the view-model's warnings in the banner (red when ``alarm``: the result must
        not be used as it is); new ones also as a napari warning notification (``notify``)."""
        new = [w for w in warnings if w not in self.warning_banner.warnings]
        self.warning_banner.show_warnings(warnings, alarm=alarm)
        if notify:
            for text in new:
                show_warning(text)
