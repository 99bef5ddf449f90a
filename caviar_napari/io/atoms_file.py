"""ATOMS file (conventions §6) and CSV position lists.

ATOMS layout (HDF5)::

    positions_A        (state, slice, atom, 2) float64  (y, x) in the scan frame, Å; NaN = failed
    mean_positions_A   (atom, 2)               float64  (y, x), Å
    cell_index         (atom, 2)               int      (l1, l2)            optional
    basis_index        (atom,)                 int      κ                   optional
    species            (atom,)                 str                          optional
    status             (state, slice, atom)    int8     refinement outcome  optional
                       (caviar_napari.analysis.atoms.Status: 0 refined, 1 window outside the
                       image, 2 no positive weight, 3 moved beyond the radius, 4 no start,
                       5 not converged)
    attrs: lattice_vectors_A (2, 2) rows a1, a2 as (y, x) (optional), source, provenance_json,
           units, software, version
    z-range attrs (optional; a file of one z-range, ``caviar atoms --slices A:B``):
           slices "A:B", slice_start, slice_stop, n_slices_total, zrange_label,
           slice_thickness_A (B − A,), z_range_A (top, bottom) Å below the entrance surface

When ``cell_index`` / ``basis_index`` are present they are used as given (conventions §6);
:func:`caviar_napari.analysis.lattice.ensure_lattice_index` fills them when absent.

Several labelled z-ranges (``caviar atoms --zrange LABEL=A:B …``) go in one file as groups
``zrange/<label>``, each holding the datasets and attributes above for its own atoms (its own
lattice vectors and indices), with the root attribute ``zrange_labels`` (JSON list, in the order
given; the layout of :mod:`caviar_napari.io.zranges`, shared with CORR files).  Such a file has
no root ``positions_A``: :func:`read_atoms` asks for a label (``zrange=``) and names the labels;
:func:`read_atoms_zranges` reads them all.  Files of one range, and files written before
z-ranges existed, read unchanged.

CSV position lists have a header ``y_A,x_A`` or ``y_A,x_A,species`` and one atom per line.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence

import h5py
import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.data.atoms import AtomsData, ZRange
from caviar_napari.errors import InputError
from caviar_napari.io._h5util import (
    as_strings,
    as_text,
    json_default,
    open_h5,
    read_dataset,
    write_stamp,
)
from caviar_napari.io.atomic import atomic_h5, atomic_path
from caviar_napari.io.zranges import (
    ZRANGE_GROUP,
    ZRANGE_LABELS,
    check_unique_labels,
    read_every_zrange,
    read_zrange_attrs,
    write_zrange_attrs,
    zrange_group,
    zrange_labels,
)

__all__ = [
    "CSV_COLUMNS",
    "CSV_SPECIES",
    "AtomsData",
    "ZRange",
    "atoms_is_multi_range",
    "atoms_zrange_labels",
    "read_atoms",
    "read_atoms_zranges",
    "read_positions_csv",
    "write_atoms",
    "write_atoms_zranges",
    "write_positions_csv",
]

#: Appended to the message of a missing item.
_HINT = " (not an ATOMS file?)"

#: Column names of the CSV position list.
CSV_COLUMNS = ("y_A", "x_A")
CSV_SPECIES = "species"


def write_atoms(path: str | os.PathLike, atoms: AtomsData) -> None:
    """Write an ATOMS file atomically (temporary file, then rename).

    Parameters
    ----------
    path
        Output ``.h5`` file.
    atoms
        The data; optional items that are None are not written.
    """
    with atomic_h5(path) as f:
        _write_items(f, atoms)
        write_stamp(f, source=atoms.source, units="positions: Å, (y, x) in the scan frame")


def write_atoms_zranges(path: str | os.PathLike, ranges: Sequence[AtomsData]) -> None:
    """Write several labelled z-ranges into one ATOMS file atomically (groups ``zrange/<label>``).

    Parameters
    ----------
    path
        Output ``.h5`` file.
    ranges
        The z-ranges' contents, each with a :class:`ZRange` whose label is unique and not empty.
    """
    if any(atoms.zrange is None for atoms in ranges):
        raise InputError("every z-range of a multi-range ATOMS file needs a labelled zrange")
    labels = [atoms.zrange.label for atoms in ranges]
    check_unique_labels(labels)
    with atomic_h5(path) as f:
        top = f.create_group(ZRANGE_GROUP)
        for atoms in ranges:
            _write_items(top.create_group(atoms.zrange.label), atoms)
        f.attrs[ZRANGE_LABELS] = json.dumps(labels)
        sources = sorted({a.source for a in ranges})
        write_stamp(f, source="; ".join(sources), units="positions: Å, (y, x) in the scan frame")


def _write_items(f: h5py.Group, atoms: AtomsData) -> None:
    """The datasets and attributes of one range into the group ``f``."""
    f.create_dataset("positions_A", data=atoms.positions_A.astype(np.float64))
    f.create_dataset("mean_positions_A", data=atoms.mean_positions_A.astype(np.float64))
    if atoms.cell_index is not None:
        f.create_dataset("cell_index", data=atoms.cell_index.astype(np.int64))
    if atoms.basis_index is not None:
        f.create_dataset("basis_index", data=atoms.basis_index.astype(np.int64))
    if atoms.species is not None:
        f.create_dataset("species", data=atoms.species.astype(object), dtype=h5py.string_dtype())
    if atoms.status is not None:
        f.create_dataset("status", data=atoms.status.astype(np.int8))
    if atoms.lattice_vectors_A is not None:
        f.attrs["lattice_vectors_A"] = atoms.lattice_vectors_A.astype(np.float64)
    f.attrs["provenance_json"] = json.dumps(atoms.provenance, default=json_default)
    if atoms.zrange is not None:
        write_zrange_attrs(f.attrs, atoms.zrange)
    if f.name != "/":
        f.attrs["source"] = atoms.source


def atoms_is_multi_range(path: str | os.PathLike) -> bool:
    """True for an ATOMS file of labelled z-range groups (``caviar atoms --zrange``)."""
    with open_h5(path) as f:
        return bool(zrange_labels(f, str(path)))


def atoms_zrange_labels(path: str | os.PathLike) -> list[str]:
    """The z-range labels of an ATOMS file: those of a multi-range file, in order; for a file of
    one range its label (``[""]`` when unnamed or written before z-ranges existed)."""
    with open_h5(path) as f:
        labels = zrange_labels(f, str(path))
        if labels:
            return labels
        return [as_text(f.attrs.get("zrange_label", ""))]


def read_atoms(path: str | os.PathLike, zrange: str | None = None) -> AtomsData:
    """Read an ATOMS file (one z-range of it).

    Parameters
    ----------
    path
        ATOMS ``.h5`` file (conventions §6).
    zrange
        Label of the z-range to read.  Required for a multi-range file; for a file of one range
        it must be None or that range's label.

    Returns
    -------
    AtomsData
        Optional items that are absent are None.

    Raises
    ------
    InputError
        The file cannot be opened, a required item is missing, shapes disagree, or the z-range is
        missing or not chosen (the message names the file, the item and the labels).
    """
    with open_h5(path) as f:
        group, where = zrange_group(f, str(path), zrange)
        return _read_items(group, where)


def read_atoms_zranges(path: str | os.PathLike) -> dict[str, AtomsData]:
    """Every z-range of an ATOMS file, by label in file order (a file of one range: one entry,
    keyed by its label or ``""``)."""
    return read_every_zrange(path, atoms_zrange_labels(path), read_atoms)


def _read_items(f: h5py.Group, where: str) -> AtomsData:
    """One range's contents from the group ``f`` (the root of a file of one range)."""
    positions = read_dataset(f, where, "positions_A", hint=_HINT)
    mean = read_dataset(f, where, "mean_positions_A", hint=_HINT)
    cells = read_dataset(f, where, "cell_index", required=False)
    basis = read_dataset(f, where, "basis_index", required=False)
    species = as_strings(read_dataset(f, where, "species", required=False))
    status = read_dataset(f, where, "status", required=False)
    a = dict(f.attrs)
    lattice = a.get("lattice_vectors_A")
    try:
        provenance = json.loads(a.get("provenance_json", "{}"))
    except (TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"{where}: attribute 'provenance_json' is not valid JSON") from exc
    zrange = read_zrange_attrs(f.attrs, where)
    try:
        return AtomsData(
            positions_A=np.asarray(positions, dtype=float),
            mean_positions_A=np.asarray(mean, dtype=float),
            cell_index=None if cells is None else np.asarray(cells),
            basis_index=None if basis is None else np.asarray(basis),
            species=species,
            lattice_vectors_A=None if lattice is None else np.asarray(lattice, dtype=float),
            source=as_text(a.get("source", "")),
            status=None if status is None else np.asarray(status),
            provenance=provenance if isinstance(provenance, dict) else {},
            zrange=zrange,
        )
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: malformed ATOMS item ({exc})") from exc


def write_positions_csv(
    path: str | os.PathLike, positions_A: ArrayLike, species: ArrayLike | None = None
) -> None:
    """Write positions as CSV (``y_A,x_A[,species]``), atomically.

    Parameters
    ----------
    path
        Output ``.csv`` file.
    positions_A
        ``(atom, 2)`` positions ``(y, x)``, Å (NaN rows are written as ``nan``).
    species
        Optional ``(atom,)`` names.
    """
    pos = np.asarray(positions_A, dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise InputError(f"positions must be (atom, 2) as (y, x), got shape {pos.shape}")
    names = None if species is None else np.asarray(species, dtype=str)
    if names is not None and names.shape != (len(pos),):
        raise InputError(f"species: shape {names.shape} does not match ({len(pos)},)")
    header = [*CSV_COLUMNS] + ([CSV_SPECIES] if names is not None else [])
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        rows = [[repr(float(y)), repr(float(x))] for y, x in pos.tolist()]
        if names is not None:
            rows = [[*r, n] for r, n in zip(rows, names.tolist())]
        writer.writerows(rows)


def read_positions_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a CSV position list written by :func:`write_positions_csv` (or by hand).

    The header must contain ``y_A`` and ``x_A`` (any order, extra columns ignored) and may
    contain ``species``.

    Returns
    -------
    positions_A
        ``(atom, 2)`` float64 ``(y, x)``, Å.
    species
        ``(atom,)`` str, or None when the file has no species column.
    """
    where = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise InputError(f"{where}: cannot read CSV file ({exc})") from exc
    rows = [r for r in rows if r and any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(f"{where}: empty CSV file (expected header y_A,x_A[,species])")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"{where}: CSV header {header} lacks column(s) {missing} (expected y_A,x_A[,species])"
        )
    iy, ix = header.index("y_A"), header.index("x_A")
    isp = header.index(CSV_SPECIES) if CSV_SPECIES in header else None
    pos = np.empty((len(rows) - 1, 2))
    names: list[str] = []
    for line, row in enumerate(rows[1:], start=2):  # parsing text: one row per line
        try:
            pos[line - 2] = float(row[iy]), float(row[ix])
        except (IndexError, ValueError) as exc:
            raise InputError(f"{where}: line {line}: bad y_A/x_A values {row}") from exc
        if isp is not None:
            names.append(row[isp].strip() if isp < len(row) else "")
    return pos, (np.asarray(names, dtype=str) if isp is not None else None)
