"""Exception types of caviar-napari.

Every error raised on purpose by the package derives from :class:`CaviarError`, so the CLI and
the widgets can show its message as it is.  None of them derives from :class:`RuntimeError`:
napari's generator workers swallow ``RuntimeError`` (see ``docs/NAPARI.md``), so worker code
re-raises unexpected runtime errors as :class:`WorkerError`.
"""

from __future__ import annotations


class CaviarError(Exception):
    """Base class of every error the package raises on purpose."""


class InputError(CaviarError, ValueError):
    """Bad input: a file, key, attribute or parameter is missing, malformed or inconsistent.

    The message names the file and the item (key, attribute, parameter) at fault.
    """


class DeviceError(CaviarError):
    """The requested compute device (GPU) is unavailable or failed."""


class MemoryBudgetError(CaviarError):
    """A computation would not fit in the available memory of the chosen device."""


class WorkerError(CaviarError):
    """An unexpected error inside a background worker, re-raised with its cause kept."""


class StoppedError(CaviarError):
    """Raised by long computations that honour a stop request and have no result to return."""
