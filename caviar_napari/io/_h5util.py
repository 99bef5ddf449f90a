"""HDF5 and JSON helpers shared by every file of :mod:`caviar_napari.io`.

Reading: every failure is an :class:`~caviar_napari.errors.InputError` whose message starts with
``where`` (the file, or ``file:group``) and names the missing or malformed item; ``hint`` (e.g.
``" (not an ATOMS file?)"``) is appended to "missing" messages.  Writing: :func:`write_stamp`
adds the attributes every output file carries, :func:`json_default` lets ``json.dumps`` store
numpy values and paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from caviar_napari import __version__
from caviar_napari.errors import InputError

__all__ = [
    "SOFTWARE",
    "as_strings",
    "as_text",
    "get_dataset",
    "json_default",
    "naming_file",
    "open_h5",
    "read_attr",
    "read_dataset",
    "write_stamp",
]

#: ``software`` attribute of the files written.
SOFTWARE = "caviar-napari"


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Open an HDF5 file for reading (use it as a context manager).

    Raises
    ------
    InputError
        ``"<path>: file not found"``, ``"<path>: not a regular file"`` (a folder), or
        ``"<path>: cannot be read as an HDF5 file (…)"``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: file not found")
    if not p.is_file():
        raise InputError(f"{path}: not a regular file")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise InputError(f"{path}: cannot be read as an HDF5 file ({exc})") from None


def get_dataset(group: h5py.Group, where: str, key: str, *, hint: str = "") -> h5py.Dataset:
    """The dataset ``group[key]``, not read (for reading part of it, or with a conversion).

    Raises
    ------
    InputError
        ``"<where>: missing dataset '<key>'<hint>"`` when absent, or
        ``"<where>: '<key>' is not a dataset"`` when it is a group.
    """
    if key not in group:
        raise InputError(f"{where}: missing dataset {key!r}{hint}")
    item = group[key]
    if not isinstance(item, h5py.Dataset):
        raise InputError(f"{where}: {key!r} is not a dataset")
    return item


def read_dataset(
    group: h5py.Group, where: str, key: str, *, required: bool = True, hint: str = ""
) -> np.ndarray | None:
    """The whole dataset ``group[key]`` (None when absent and not ``required``).

    Raises
    ------
    InputError
        As :func:`get_dataset` (absence only when ``required``).
    """
    if key not in group and not required:
        return None
    return get_dataset(group, where, key, hint=hint)[()]


def read_attr(obj: h5py.Group | h5py.Dataset, where: str, key: str, *, hint: str = "") -> Any:
    """The required attribute ``obj.attrs[key]``.

    Raises
    ------
    InputError
        ``"<where>: missing attribute '<key>'<hint>"`` when absent.
    """
    if key not in obj.attrs:
        raise InputError(f"{where}: missing attribute {key!r}{hint}")
    return obj.attrs[key]


def as_text(value: Any) -> str:
    """An HDF5 string (``bytes``, ``str`` or a 0-d array of either) as ``str``.

    Bytes are decoded as UTF-8; undecodable bytes become U+FFFD rather than an error.
    """
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def as_strings(values: np.ndarray | None) -> np.ndarray | None:
    """An HDF5 string array as a ``str`` array of the same shape; None stays None."""
    if values is None:
        return None
    values = np.asarray(values)
    return np.array([as_text(v) for v in values.ravel()], dtype=str).reshape(values.shape)


def json_default(value: Any) -> Any:
    """``default`` of ``json.dumps`` for the values the package stores as JSON.

    numpy arrays become lists, numpy scalars (integers, floats, bools, strings) their Python
    value, paths their string; anything else is a ``TypeError`` naming the type, as
    ``json.dumps`` expects.
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


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
