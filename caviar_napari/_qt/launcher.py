"""The ``caviar-napari`` console script: napari with the CAVIAR docks and a sample, ready to run.

``caviar-napari`` opens a napari window with the dock widgets **Reconstruction**, **Atoms**,
**Correlations**, **Dispersion** and **Diagnostics** (those whose widget classes exist) tabbed on
the right under short tab titles, the Reconstruction tab in front, the window fitted to the
screen, and the ``hbn-correlated`` sample loaded, so a first reconstruction is one click on
*Start* away.
``--file PATH`` opens the user's own data instead (or as well), ``--no-sample`` skips the sample.
Wrong arguments (a missing or unreadable file, an unknown sample) end with a one-line message
naming the file or value and exit status 2, before any window opens.

Docks come from the installed plugin (``viewer.window.add_plugin_dock_widget``); when the plugin
manifest is not registered (e.g. running from a source tree) the widget classes are built
directly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from caviar_napari import __version__
from caviar_napari.errors import CaviarError, InputError

log = logging.getLogger(__name__)

PLUGIN = "caviar-napari"
#: (tab title, module, class) of every dock, in tab order; the tab title is the widget's
#: display name in ``napari.yaml``.
DOCKS: tuple[tuple[str, str, str], ...] = (
    ("Reconstruction", "caviar_napari._qt.reconstruction_widget", "ReconstructionWidget"),
    ("Atoms", "caviar_napari._qt.atoms_widget", "AtomsWidget"),
    ("Correlations", "caviar_napari._qt.correlations_widget", "CorrelationsWidget"),
    ("Dispersion", "caviar_napari._qt.dispersion_widget", "DispersionWidget"),
    ("Diagnostics", "caviar_napari._qt.diagnostics_widget", "DiagnosticsWidget"),
)
DEFAULT_SAMPLE = "hbn-correlated"
#: Exit status of an argument error (as argparse's).
USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``caviar-napari``."""
    parser = argparse.ArgumentParser(
        prog="caviar-napari",
        description=(
            "Open napari with the CAVIAR docks (Reconstruction, Atoms, Correlations, Dispersion, "
            f"Diagnostics) and the '{DEFAULT_SAMPLE}' sample, ready to press Start."
        ),
    )
    parser.add_argument("--version", action="version", version=f"caviar-napari {__version__}")
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PATH",
        help="open this 4D-STEM, reconstruction or ATOMS file (repeatable)",
    )
    parser.add_argument(
        "--sample",
        default=DEFAULT_SAMPLE,
        metavar="KEY",
        help=f"sample data to open (default: {DEFAULT_SAMPLE}; one of {', '.join(sample_keys())})",
    )
    parser.add_argument("--no-sample", action="store_true", help="open no sample data")
    return parser


def sample_keys() -> tuple[str, ...]:
    """The keys of the plugin's samples (``hbn-static``, …)."""
    from caviar_napari._napari import sample_data

    return tuple(name.replace("_", "-") for name in sample_data.__all__ if name != "demo_path")


def check_sample(key: str) -> str:
    """``key`` if it names a sample whose data are installed (``InputError`` otherwise)."""
    from caviar_napari._napari import sample_data

    if key not in sample_keys():
        raise InputError(f"unknown sample {key!r}; choose one of {', '.join(sample_keys())}")
    sample_data.demo_path(key)  # raises when the demo file is not installed
    return key


def check_file(path: str) -> str:
    """``path`` if it exists and caviar-napari reads it (``InputError`` naming it otherwise)."""
    from caviar_napari._napari.readers import get_reader

    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if get_reader(str(p)) is None:
        raise InputError(
            f"{path}: not a file caviar-napari reads (a 4D-STEM dataset, a reconstruction "
            "or an ATOMS file)"
        )
    return str(p)


def _widget_class(module: str, cls: str) -> type | None:
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None
    except AttributeError:
        return None


def add_docks(viewer: Any) -> dict[str, tuple[Any, Any]]:
    """Dock the CAVIAR widgets that exist, tabbed on the right, Reconstruction in front.

    Each tab is titled with the dock's short name (napari titles plugin docks
    "<widget> (<plugin>)", which a tab cuts to "Reconstruction (cavia…").

    Returns
    -------
    dict
        Display name → ``(dock widget, widget instance)``, for the docks that were added.
    """
    docks: dict[str, tuple[Any, Any]] = {}
    for name, module, cls in DOCKS:
        try:
            dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        except (KeyError, ImportError, AttributeError) as exc:
            log.debug("plugin dock %r unavailable (%s); building the class directly", name, exc)
            widget_class = _widget_class(module, cls)
            if widget_class is None:
                log.info("dock %r not available yet (no %s.%s)", name, module, cls)
                continue
            widget = widget_class(viewer)
            dock = viewer.window.add_dock_widget(widget, name=name, area="right")
        dock.setWindowTitle(name)
        docks[name] = (dock, widget)
    _tabify([dock for dock, _ in docks.values()])
    return docks


def _tabify(docks: list[Any]) -> None:
    """Put ``docks`` in one tab group (in order) and bring the first to the front."""
    if len(docks) < 2:
        return
    main_window = docks[0].window()  # the QMainWindow holding the docks (public Qt API)
    for dock in docks[1:]:
        main_window.tabifyDockWidget(docks[0], dock)
    docks[0].show()
    docks[0].raise_()


def fit_to_screen(window: Any) -> tuple[int, int]:
    """Resize a top-level window to the available area of its screen and move it there.

    The frame the window manager adds (if any) is kept inside the screen.  Returns the new
    ``(width, height)`` of the window's contents.
    """
    from qtpy.QtGui import QGuiApplication

    screen = window.screen() if hasattr(window, "screen") else None
    screen = screen or QGuiApplication.primaryScreen()
    available = screen.availableGeometry()
    frame, inner = window.frameGeometry(), window.geometry()
    extra_w = max(frame.width() - inner.width(), 0)
    extra_h = max(frame.height() - inner.height(), 0)
    width = available.width() - extra_w
    height = available.height() - extra_h
    window.setMinimumSize(min(window.minimumWidth(), width), min(window.minimumHeight(), height))
    window.resize(width, height)
    window.move(available.x(), available.y())
    return width, height


def _add_layer_tuples(viewer: Any, tuples: list) -> list[Any]:
    layers = []
    for data, kwargs, layer_type in tuples:
        layers.append(getattr(viewer, f"add_{layer_type}")(data, **(kwargs or {})))
    return layers


def open_sample(viewer: Any, key: str) -> list[Any]:
    """Open the plugin's sample ``key`` (registered plugin, else the sample function itself)."""
    try:
        return list(viewer.open_sample(PLUGIN, key))
    except (KeyError, ValueError, ImportError) as exc:
        log.debug("plugin sample %r unavailable (%s); calling the sample function", key, exc)
    from caviar_napari._napari import sample_data

    function = getattr(sample_data, key.replace("-", "_"), None)
    if function is None or key not in sample_keys():
        raise InputError(f"unknown sample {key!r}; choose one of {', '.join(sample_keys())}")
    return _add_layer_tuples(viewer, function())


def open_file(viewer: Any, path: str) -> list[Any]:
    """Open ``path`` with the plugin's reader (registered plugin, else the reader itself)."""
    try:
        return list(viewer.open(path, plugin=PLUGIN))
    except (KeyError, ValueError, ImportError) as exc:
        log.debug("plugin reader unavailable for %s (%s); calling it directly", path, exc)
    from caviar_napari._napari.readers import get_reader

    reader = get_reader(path)
    if reader is None:
        raise InputError(f"{path}: not a file caviar-napari reads")
    return _add_layer_tuples(viewer, reader(path))


def open_window(
    viewer: Any, *, sample: str | None = DEFAULT_SAMPLE, files: Sequence[str] = ()
) -> dict[str, Any]:
    """Set up ``viewer`` as ``caviar-napari`` does: docks, the window fitted to the screen,
    then the sample and the files.

    Returns
    -------
    dict
        Display name → dock widget instance.
    """
    docks = add_docks(viewer)
    if docks:
        fit_to_screen(next(iter(docks.values()))[0].window())
    if sample:
        open_sample(viewer, sample)
    for path in files:
        open_file(viewer, path)
    viewer.reset_view()
    return {name: widget for name, (_dock, widget) in docks.items()}


def _fail(message: str) -> int:
    print(f"caviar-napari: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``caviar-napari`` console script; returns the exit status.

    Argument errors (a missing or unreadable ``--file``, an unknown ``--sample``) and files that
    fail to read print ``caviar-napari: error: <one line>`` and return 2.
    """
    args = build_parser().parse_args(argv)
    try:
        sample = None if args.no_sample else check_sample(args.sample)
        files = [check_file(path) for path in args.file]
    except CaviarError as exc:
        return _fail(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import napari

    viewer = napari.Viewer(title="CAVIAR — napari")
    try:
        open_window(viewer, sample=sample, files=files)
    except (CaviarError, OSError, ValueError) as exc:
        viewer.close()
        cause = exc.__cause__ if isinstance(exc.__cause__, CaviarError | OSError) else exc
        return _fail(str(cause).splitlines()[0] if str(cause) else type(cause).__name__)
    napari.run()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
