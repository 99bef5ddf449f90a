"""Screenshots of the whole ``caviar-napari`` window on small screens (for docs/images/).

For each screen size (default 1280 × 800 and 1600 × 1000) the script starts a virtual display of
that size (``xvfb-run``), opens the window as ``caviar-napari`` does (the five docks tabbed,
the window fitted to the screen, the ``hbn-correlated`` sample), runs a short reconstruction
from the Reconstruction dock, and saves ``docs/images/window-<W>x<H>.png`` with
``viewer.screenshot(canvas_only=False)``.  It checks that the window fits the screen and that
each dock tab shows its whole title.

Run (Xvfb and xvfb-run installed)::

    python scripts/screenshot_window.py [--sizes 1280x800 1600x1000] [--out-dir docs/images]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from screenshot_common import close_toasts, settle, wait

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = ("1280x800", "1600x1000")


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def shoot(
    size: tuple[int, int], out: Path, iterations: tuple[int, int], all_tabs: bool = False
) -> None:
    """Inside a display of ``size``: open the window, run, save ``out`` (and, with
    ``all_tabs``, ``out`` with each other tab in front, as ``<stem>-<tab>.png``)."""
    # a throw-away settings file: no saved window geometry, no notification toasts
    os.environ["NAPARI_CONFIG"] = os.path.join(tempfile.mkdtemp(), "settings.yaml")
    import napari
    from napari.settings import get_settings
    from qtpy.QtWidgets import QTabBar

    from caviar_napari._qt import launcher
    from caviar_napari.data import config as cfg

    get_settings().application.gui_notification_level = "none"
    viewer = napari.Viewer(title="CAVIAR — napari")
    widgets = launcher.open_window(viewer, sample=launcher.DEFAULT_SAMPLE)
    widget = widgets["Reconstruction"]
    window = widget.window()

    wait(lambda: widget.dataset() is not None, 30)
    widget.set_config(  # the dock's default recipe, short
        cfg.recommended_recipe(object_states=4, iterations=iterations, update_every=2, device="cpu")
    )
    wait(lambda: "needs" in widget.memory_label.text(), 30)
    if widget.start() is None:
        raise SystemExit(f"the run did not start: {widget.status_label.text()}")
    wait(lambda: not widget.is_running, 900)
    close_toasts(window)  # notifications would cover the canvas
    settle(1.0)
    frame = window.frameGeometry()
    screen = window.screen().availableGeometry()
    fits = frame.width() <= screen.width() and frame.height() <= screen.height()
    tabs = [
        (
            bar.tabText(i),
            bar.tabRect(i).width(),
            bar.fontMetrics().horizontalAdvance(bar.tabText(i)),
        )
        for bar in window.findChildren(QTabBar)
        for i in range(bar.count())
        if bar.isVisible()
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    if all_tabs:
        for name, dock_widget in widgets.items():
            dock = dock_widget.parent()
            while dock is not None and type(dock).__name__ != "QtViewerDockWidget":
                dock = dock.parent()
            if dock is not None and name != "Reconstruction":
                dock.raise_()
                settle(0.5)
                viewer.screenshot(
                    str(out.with_name(f"{out.stem}-{name.lower()}.png")), canvas_only=False
                )
        widget.parent().raise_()
        dock = widget
        while dock is not None and type(dock).__name__ != "QtViewerDockWidget":
            dock = dock.parent()
        dock.raise_()
        settle(0.5)
    viewer.screenshot(str(out), canvas_only=False)
    print(
        f"{out}: window {frame.width()}×{frame.height()} on a {screen.width()}×{screen.height()} "
        f"screen ({'fits' if fits else 'DOES NOT FIT'}); tabs "
        + ", ".join(f"{t!r} ({'whole' if w >= a else 'CUT'})" for t, w, a in tabs)
    )
    viewer.close()
    if not fits:
        raise SystemExit(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), metavar="WxH")
    parser.add_argument("--out-dir", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--iterations", type=int, nargs=2, default=(8, 12), metavar=("S1", "S2"))
    parser.add_argument(
        "--all-tabs", action="store_true", help="also save the window with each other tab in front"
    )
    parser.add_argument("--inside", metavar="WxH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        size = _size(args.inside)
        out = Path(args.out_dir) / f"window-{size[0]}x{size[1]}.png"
        shoot(size, out, tuple(args.iterations), args.all_tabs)
        return 0
    status = 0
    for text in args.sizes:
        w, h = _size(text)
        command = [
            "xvfb-run",
            "-a",
            "-s",
            f"-screen 0 {w}x{h}x24",
            sys.executable,
            str(Path(__file__).resolve()),
            "--inside",
            f"{w}x{h}",
            "--out-dir",
            args.out_dir,
            "--iterations",
            *map(str, args.iterations),
            *(["--all-tabs"] if args.all_tabs else []),
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        status |= subprocess.run(command, env=env, check=False).returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main())
