"""Base class of the dock widgets: the viewer, its layer list and the running worker."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QWidget


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
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
