"""What the screenshot scripts share: a virtual screen of a given size, the ``caviar-napari``
window on it, waiting without blocking the GUI, and the screenshot itself.

A script calls :func:`run_in_screen` with a function ``shoot(args)``: without ``--inside`` the
script starts itself again under ``xvfb-run`` with a screen of ``--size`` (default 1280 × 800),
so the window is laid out exactly as on such a screen; inside, ``shoot`` runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
DEFAULT_SIZE = "1280x800"


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` → ``(W, H)``."""
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def run_in_screen(
    description: str,
    shoot: Callable[[argparse.Namespace], None],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse the arguments; run ``shoot`` inside a virtual screen of ``--size``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--size", default=DEFAULT_SIZE, metavar="WxH", help="screen size")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    if args.inside:
        shoot(args)
        return 0
    w, h = parse_size(args.size)
    command = [
        "xvfb-run",
        "-a",
        "-s",
        f"-screen 0 {w}x{h}x24",
        sys.executable,
        str(Path(sys.argv[0]).resolve()),
        *sys.argv[1:],
        "--inside",
    ]
    python_path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": python_path}
    return subprocess.run(command, env=env, check=False).returncode


def open_window() -> tuple[Any, dict[str, Any]]:
    """The ``caviar-napari`` window (the four docks tabbed, fitted to the screen), without a
    sample and without notification toasts; returns the viewer and name → dock widget."""
    os.environ["NAPARI_CONFIG"] = os.path.join(tempfile.mkdtemp(), "settings.yaml")
    import napari
    from napari.settings import get_settings

    from caviar_napari._qt import launcher

    get_settings().application.gui_notification_level = "none"
    viewer = napari.Viewer(title="CAVIAR — napari")
    widgets = launcher.open_window(viewer, sample=None)
    return viewer, widgets


def process_events() -> None:
    """One turn of the event loop, as ``app.exec()`` would run it.

    ``processEvents`` alone leaves the widgets that ``deleteLater`` removed on screen (deferred
    deletes wait for the event loop proper): napari's slider rows of the axes a removed layer
    had would then stay visible over the new ones in the screenshots.
    """
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    app.processEvents()
    app.sendPostedEvents(None, QEvent.DeferredDelete)


def wait(condition: Callable[[], bool], seconds: float) -> bool:
    """Process events until ``condition()`` or ``seconds`` passed; returns ``condition()``."""
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        process_events()
        time.sleep(0.01)
    return bool(condition())


def settle(seconds: float = 0.5) -> None:
    """Process events for ``seconds`` (repaints, debounced renders)."""
    wait(lambda: False, seconds)


def raise_dock(widget: Any) -> None:
    """Bring the dock tab holding ``widget`` to the front."""
    dock = widget
    while dock is not None and type(dock).__name__ != "QtViewerDockWidget":
        dock = dock.parent()
    if dock is not None:
        dock.show()
        dock.raise_()
    settle(0.3)


def close_toasts(window: Any) -> None:
    """Close napari's notification toasts (they would cover the canvas)."""
    from qtpy.QtWidgets import QWidget

    for toast in window.findChildren(QWidget):
        if type(toast).__name__ == "NapariQtNotification":
            toast.close()


def save(viewer: Any, window: Any, out: Path) -> None:
    """Save the whole window as ``out`` and say whether it fits the screen."""
    close_toasts(window)
    settle(0.8)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    frame = window.frameGeometry()
    screen = window.screen().availableGeometry()
    fits = frame.width() <= screen.width() and frame.height() <= screen.height()
    print(
        f"{out}: window {frame.width()}×{frame.height()} on a {screen.width()}×"
        f"{screen.height()} screen ({'fits' if fits else 'DOES NOT FIT'})"
    )
