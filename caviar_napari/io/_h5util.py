"""Small HDF5 helpers shared by the CORR and DISP files.

Reading: every failure is an :class:`~caviar_napari.errors.InputError` whose message starts with
``where`` (the file, or ``file:group``) and names the missing or malformed item.  Writing:
:func:`write_stamp` adds the attributes every output file carries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h5py
import numpy as np

from caviar_napari import __version__
from caviar_napari.errors import InputError

#: ``software`` attribute of the files written.
SOFTWARE = "caviar-napari"


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Open an HDF5 file for reading.

    Raises
    ------
    InputError
        ``"<path>: no such file"``, or ``"<path>: not a readable HDF5 file (…)"``.
    """
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None


def read_dataset(
    group: h5py.Group, where: str, key: str, *, required: bool = True
) -> np.ndarray | None:
    """The whole dataset ``group[key]`` (None when absent and not ``required``).

    Raises
    ------
    InputError
        ``"<where>: missing dataset '<key>'"`` when required and absent, or
        ``"<where>: '<key>' is not a dataset"`` when it is a group.
    """
    if key not in group:
        if required:
            raise InputError(f"{where}: missing dataset {key!r}")
        return None
    item = group[key]
    if not isinstance(item, h5py.Dataset):
        raise InputError(f"{where}: {key!r} is not a dataset")
    return item[()]


def read_attr(obj: h5py.Group | h5py.Dataset, where: str, key: str) -> Any:
    """The required attribute ``obj.attrs[key]`` (InputError ``"<where>: missing attribute
    '<key>'"`` when absent)."""
    if key not in obj.attrs:
        raise InputError(f"{where}: missing attribute {key!r}")
    return obj.attrs[key]


def as_text(value: Any) -> str:
    """An HDF5 string (``bytes`` or ``str``) as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def as_strings(values: np.ndarray | None) -> np.ndarray | None:
    """An HDF5 string array (any shape) as a flat ``str`` array; None stays None."""
    if values is None:
        return None
    return np.array([as_text(v) for v in values.ravel()])


@contextmanager
def naming_file(where: str | os.PathLike) -> Iterator[None]:
    """Prefix the message of an :class:`InputError` raised inside with ``"<where>: "``.

    For the validation of a data class built from a file: its messages name the item, this adds
    the file.
    """
    try:
        yield
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def write_stamp(f: h5py.File, *, source: str, units: str) -> None:
    """Write the attributes every output file carries: ``source`` (the input it was computed
    from), ``units`` (a human-readable summary), ``software`` and ``version``."""
    f.attrs["source"] = str(source)
    f.attrs["units"] = units
    f.attrs["software"] = SOFTWARE
    f.attrs["version"] = __version__
