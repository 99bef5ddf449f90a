"""File dialogs of the dock widgets: ask for a path, then run an import or export on it.

The actions themselves (``export_…(path)``, ``import_…(path)``, ``open_…(path)``) are public
methods of the widgets and are what the tests call; the helpers here only add the dialog and
turn the expected errors into a notification instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QFileDialog, QWidget

from caviar_napari.errors import CaviarError

#: Name filters of the dialogs.
HDF5_FILTER = "HDF5 (*.h5 *.hdf5)"
CSV_FILTER = "CSV (*.csv)"
FIGURE_FILTER = "PNG (*.png);;SVG (*.svg);;PDF (*.pdf)"
YAML_FILTER = "YAML (*.yaml *.yml)"
STEM_FILTER = (
    "4D-STEM data (*.h5 *.hdf5 *.hdf *.emd *.npy *.npz *.zarr *.py4dstem *.mib *.dm3 *.dm4 *.raw "
    "*.xml *.blo);;All files (*)"
)


def ask_path(parent: QWidget, title: str, filters: str, *, save_as: str | None = None) -> str:
    """Ask for a file name: an *open* dialog, or with ``save_as`` a *save* dialog proposing
    that name.  Returns ``""`` when the user cancels."""
    if save_as is None:
        path, _ = QFileDialog.getOpenFileName(parent, title, "", filters)
    else:
        path, _ = QFileDialog.getSaveFileName(parent, title, save_as, filters)
    return path


def show_message(exc: BaseException) -> None:
    """Report an expected error as a napari error notification."""
    show_error(str(exc))


def run_guarded(
    action: Callable[..., Any],
    *args: Any,
    errors: tuple[type[BaseException], ...] = (CaviarError, OSError),
    on_error: Callable[[BaseException], None] = show_message,
) -> bool:
    """Call ``action(*args)``; an exception of type ``errors`` goes to ``on_error`` instead.

    Returns True when the action completed.
    """
    try:
        action(*args)
    except errors as exc:
        on_error(exc)
        return False
    return True


def ask_and_run(
    parent: QWidget,
    action: Callable[[str], Any],
    title: str,
    filters: str,
    *,
    save_as: str | None = None,
    errors: tuple[type[BaseException], ...] = (CaviarError, OSError),
    on_error: Callable[[BaseException], None] = show_message,
) -> str:
    """Ask for a path (see :func:`ask_path`) and run ``action(path)`` guarded by
    :func:`run_guarded`.

    Returns the path when the action completed, ``""`` when cancelled or failed.
    """
    path = ask_path(parent, title, filters, save_as=save_as)
    if path and run_guarded(action, path, errors=errors, on_error=on_error):
        return path
    return ""
