"""Labelled z-ranges in HDF5 files: the layout ATOMS and CORR files share (issue 16).

A file of one depth range keeps the usual schema of its kind at the root and records the range
in root attributes (:func:`write_zrange_attrs`)::

    slices "A:B", slice_start, slice_stop, n_slices_total, zrange_label,
    slice_thickness_A (B − A,), z_range_A (top, bottom) Å below the entrance surface

A file of several ranges holds one group ``zrange/<label>`` per range (each with the schema and
the attributes above) and the root attribute ``zrange_labels`` (JSON list, in order).  It has no
root data: a reader asks for a label (:func:`zrange_group`) and names the labels when none is
given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TypeVar

import h5py
import numpy as np

from caviar_napari.data.atoms import ZRange
from caviar_napari.errors import InputError
from caviar_napari.io._h5util import as_text

T = TypeVar("T")

__all__ = [
    "ZRANGE_GROUP",
    "ZRANGE_LABELS",
    "check_unique_labels",
    "read_zrange_attrs",
    "write_zrange_attrs",
    "zrange_group",
    "zrange_labels",
]

#: Group holding the labelled z-ranges of a multi-range file, and the root attribute listing them.
ZRANGE_GROUP = "zrange"
ZRANGE_LABELS = "zrange_labels"


def write_zrange_attrs(attrs: h5py.AttributeManager, zrange: ZRange) -> None:
    """Record ``zrange`` in the attributes of a file or group."""
    attrs["slices"] = zrange.spec
    attrs["slice_start"] = zrange.start
    attrs["slice_stop"] = zrange.stop
    attrs["n_slices_total"] = zrange.n_slices_total
    attrs["zrange_label"] = zrange.label
    attrs["slice_thickness_A"] = np.asarray(zrange.slice_thickness_A, dtype=np.float64)
    attrs["z_range_A"] = np.asarray(zrange.z_extent_A, dtype=np.float64)


def read_zrange_attrs(attrs: h5py.AttributeManager, where: str) -> ZRange | None:
    """The z-range recorded by :func:`write_zrange_attrs` (None when there is none).

    Raises
    ------
    InputError
        An attribute is missing or malformed (named with ``where``).
    """
    if "slice_start" not in attrs:
        return None
    try:
        return ZRange(
            label=as_text(attrs.get("zrange_label", "")),
            start=int(attrs["slice_start"]),
            stop=int(attrs["slice_stop"]),
            slice_thickness_A=tuple(np.atleast_1d(attrs["slice_thickness_A"]).tolist()),
            z_top_A=float(np.asarray(attrs["z_range_A"]).ravel()[0]),
            n_slices_total=int(attrs["n_slices_total"]),
        )
    except KeyError as exc:
        raise InputError(f"{where}: z-range attribute {exc} missing") from None
    except (TypeError, ValueError, IndexError) as exc:
        raise InputError(f"{where}: malformed z-range attributes ({exc})") from None


def zrange_labels(f: h5py.File, where: str) -> list[str]:
    """The labels of a multi-range file, in order (empty for a file of one range).

    Raises
    ------
    InputError
        ``zrange_labels`` is not a JSON list of strings.
    """
    if ZRANGE_LABELS not in f.attrs:
        return []
    try:
        labels = json.loads(as_text(f.attrs[ZRANGE_LABELS]))
    except (TypeError, json.JSONDecodeError):
        raise InputError(f"{where}: attribute {ZRANGE_LABELS!r} is not a JSON list") from None
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        raise InputError(f"{where}: attribute {ZRANGE_LABELS!r} is not a list of labels")
    return labels


def zrange_group(f: h5py.File, where: str, zrange: str | None) -> tuple[h5py.Group, str]:
    """The group holding z-range ``zrange`` of an open file, and its name for messages.

    A file of one range is its own group (``zrange`` must then be None or that range's label);
    a multi-range file needs a label.

    Raises
    ------
    InputError
        No label given for a multi-range file (the labels and ``--zrange`` are named), or the
        label is not in the file.
    """
    labels = zrange_labels(f, where)
    if labels:
        if zrange is None:
            raise InputError(
                f"{where}: holds {len(labels)} z-ranges ({', '.join(labels)}); choose one with "
                "--zrange LABEL"
            )
        if zrange not in labels or f"{ZRANGE_GROUP}/{zrange}" not in f:
            raise InputError(f"{where}: no z-range {zrange!r}; it holds {', '.join(labels)}")
        return f[f"{ZRANGE_GROUP}/{zrange}"], f"{where}:{ZRANGE_GROUP}/{zrange}"
    if zrange is not None:
        own = as_text(f.attrs.get("zrange_label", ""))
        if zrange != own:
            raise InputError(
                f"{where}: holds one z-range{f' {own!r}' if own else ' (unnamed)'}, not {zrange!r}"
            )
    return f, where


def read_every_zrange(
    path: str | os.PathLike, labels: list[str], read: Callable[[str | os.PathLike, str | None], T]
) -> dict[str, T]:
    """Every z-range of a file by label, in file order, each read by ``read(path, label)``;
    a file of one range gives one entry, keyed by its label or ``""`` (read with None)."""
    return {label: read(path, label if label or len(labels) > 1 else None) for label in labels}


def check_unique_labels(labels: list[str]) -> None:
    """Labels of a multi-range file: at least one, none empty, all different."""
    if not labels or len(set(labels)) != len(labels) or not all(labels):
        raise InputError(f"z-range labels must be unique and not empty (one at least): {labels}")
