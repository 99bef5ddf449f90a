"""The ``caviar-napari`` console script: napari with the CAVIAR docks and a sample, ready to run.

``caviar-napari`` opens a napari window with the dock widgets **Reconstruction**, **Atoms**,
**Correlations** and **Dispersion** (those whose widget classes exist) tabbed on the right, the
Reconstruction tab in front, and the ``hbn-correlated`` sample loaded, so a first reconstruction
is one click on *Start* away. ``--file PATH`` opens the user's own data instead (or as well),
``--no-sample`` skips the sample.

Docks come from the installed plugin (``viewer.window.add_plugin_dock_widget``); when the plugin
manifest is not registered (e.g. running from a source tree) the widget classes are built
directly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Sequence
from typing import Any

from caviar_napari import __version__

log = logging.getLogger(__name__)

PLUGIN = "caviar-napari"
#: (display name, module, class) of every dock, in tab order.
DOCKS: tuple[tuple[str, str, str], ...] = (
    ("Reconstruction", "caviar_napari._qt.reconstruction_widget", "ReconstructionWidget"),
    ("Atoms", "caviar_napari._qt.atoms_widget", "AtomsWidget"),
    ("Correlations", "caviar_napari._qt.correlations_widget", "CorrelationsWidget"),
    ("Dispersion", "caviar_napari._qt.dispersion_widget", "DispersionWidget"),
)
DEFAULT_SAMPLE = "hbn-correlated"


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``caviar-napari``."""
    parser = argparse.ArgumentParser(
        prog="caviar-napari",
        description=(
            "Open napari with the CAVIAR docks (Reconstruction, Atoms, Correlations, Dispersion) "
            f"and the '{DEFAULT_SAMPLE}' sample, ready to press Start."
        ),
    )
    parser.add_argument("--version", action="version", version=f"caviar-napari {__version__}")
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PATH",
        help="open this 4D-STEM or reconstruction file (repeatable)",
    )
    parser.add_argument(
        "--sample",
        default=DEFAULT_SAMPLE,
        metavar="KEY",
        help=f"sample data to open (default: {DEFAULT_SAMPLE}; e.g. hbn-static, si110-static)",
    )
    parser.add_argument("--no-sample", action="store_true", help="open no sample data")
    return parser


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
    if function is None:
        from caviar_napari.errors import InputError

        raise InputError(f"unknown sample {key!r}")
    return _add_layer_tuples(viewer, function())


def open_file(viewer: Any, path: str) -> list[Any]:
    """Open ``path`` with the plugin's reader (registered plugin, else the reader itself)."""
    try:
        return list(viewer.open(path, plugin=PLUGIN))
    except (KeyError, ValueError, ImportError) as exc:
        log.debug("plugin reader unavailable for %s (%s); calling it directly", path, exc)
    from caviar_napari._napari.readers import get_reader
    from caviar_napari.errors import InputError

    reader = get_reader(path)
    if reader is None:
        raise InputError(f"{path}: not a file caviar-napari can read")
    return _add_layer_tuples(viewer, reader(path))


def open_window(
    viewer: Any, *, sample: str | None = DEFAULT_SAMPLE, files: Sequence[str] = ()
) -> dict[str, Any]:
    """Set up ``viewer`` as ``caviar-napari`` does: docks, then the sample and the files.

    Returns
    -------
    dict
        Display name → dock widget instance.
    """
    widgets = {name: widget for name, (_dock, widget) in add_docks(viewer).items()}
    if sample:
        open_sample(viewer, sample)
    for path in files:
        open_file(viewer, path)
    viewer.reset_view()
    return widgets


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``caviar-napari`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import napari

    viewer = napari.Viewer(title="CAVIAR — napari")
    open_window(viewer, sample=None if args.no_sample else args.sample, files=args.file)
    napari.run()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
