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

When ``cell_index`` / ``basis_index`` are present they are used as given (conventions §6);
:func:`caviar_napari.analysis.lattice.ensure_lattice_index` fills them when absent.

CSV position lists have a header ``y_A,x_A`` or ``y_A,x_A,species`` and one atom per line.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike

from caviar_napari import __version__
from caviar_napari.errors import InputError
from caviar_napari.io.atomic import atomic_h5, atomic_path

#: Column names of the CSV position list.
CSV_COLUMNS = ("y_A", "x_A")
CSV_SPECIES = "species"


@dataclass
class AtomsData:
    """Contents of an ATOMS file; shapes validated on construction.

    Attributes
    ----------
    positions_A
        ``(state, slice, atom, 2)`` positions ``(y, x)`` in the scan frame, Å; NaN where the
        refinement failed.
    mean_positions_A
        ``(atom, 2)`` mean positions ``(y, x)``, Å.
    cell_index
        ``(atom, 2)`` int unit-cell index ``(l1, l2)``, or None.
    basis_index
        ``(atom,)`` int basis index κ, or None.
    species
        ``(atom,)`` species names (str), or None.
    lattice_vectors_A
        ``(2, 2)`` rows ``a1, a2`` as ``(y, x)``, Å, or None.
    source
        The file the positions were measured on (e.g. the reconstruction).
    status
        ``(state, slice, atom)`` int8 refinement status codes, or None.
    provenance
        What produced the file (method, parameters); stored as JSON.
    """

    positions_A: np.ndarray
    mean_positions_A: np.ndarray
    cell_index: np.ndarray | None = None
    basis_index: np.ndarray | None = None
    species: np.ndarray | None = None
    lattice_vectors_A: np.ndarray | None = None
    source: str = ""
    status: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions_A = np.asarray(self.positions_A, dtype=float)
        self.mean_positions_A = np.asarray(self.mean_positions_A, dtype=float)
        if self.positions_A.ndim != 4 or self.positions_A.shape[-1] != 2:
            raise InputError(
                f"positions_A must be (state, slice, atom, 2), got shape {self.positions_A.shape}"
            )
        n = self.positions_A.shape[2]
        n_states, n_slices = self.positions_A.shape[:2]
        if self.cell_index is not None:
            self.cell_index = np.asarray(self.cell_index, dtype=np.int64)
        if self.basis_index is not None:
            self.basis_index = np.asarray(self.basis_index, dtype=np.int64)
        if self.species is not None:
            self.species = np.asarray(self.species, dtype=str)
        if self.lattice_vectors_A is not None:
            self.lattice_vectors_A = np.asarray(self.lattice_vectors_A, dtype=float)
        if self.status is not None:
            self.status = np.asarray(self.status, dtype=np.int8)
        checks = {
            "mean_positions_A": (self.mean_positions_A, (n, 2)),
            "cell_index": (self.cell_index, (n, 2)),
            "basis_index": (self.basis_index, (n,)),
            "species": (self.species, (n,)),
            "lattice_vectors_A": (self.lattice_vectors_A, (2, 2)),
            "status": (self.status, (n_states, n_slices, n)),
        }
        for key, (value, want) in checks.items():
            if value is not None and value.shape != want:
                raise InputError(f"{key}: shape {value.shape} does not match {want} for {n} atoms")

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.positions_A.shape[2])

    @property
    def n_failed(self) -> int:
        """Number of NaN (state, slice, atom) positions."""
        return int(np.any(~np.isfinite(self.positions_A), axis=-1).sum())


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
        f.create_dataset("positions_A", data=atoms.positions_A.astype(np.float64))
        f.create_dataset("mean_positions_A", data=atoms.mean_positions_A.astype(np.float64))
        if atoms.cell_index is not None:
            f.create_dataset("cell_index", data=atoms.cell_index.astype(np.int64))
        if atoms.basis_index is not None:
            f.create_dataset("basis_index", data=atoms.basis_index.astype(np.int64))
        if atoms.species is not None:
            f.create_dataset(
                "species", data=atoms.species.astype(object), dtype=h5py.string_dtype()
            )
        if atoms.status is not None:
            f.create_dataset("status", data=atoms.status.astype(np.int8))
        if atoms.lattice_vectors_A is not None:
            f.attrs["lattice_vectors_A"] = atoms.lattice_vectors_A.astype(np.float64)
        f.attrs["source"] = str(atoms.source)
        f.attrs["provenance_json"] = json.dumps(atoms.provenance, default=_json_default)
        f.attrs["units"] = "positions: Å, (y, x) in the scan frame"
        f.attrs["software"] = "caviar-napari"
        f.attrs["version"] = __version__


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _read_dataset(f: h5py.File, where: str, key: str, required: bool) -> np.ndarray | None:
    if key not in f:
        if required:
            raise InputError(f"{where}: missing dataset '{key}' (not an ATOMS file?)")
        return None
    item = f[key]
    if not isinstance(item, h5py.Dataset):
        raise InputError(f"{where}: '{key}' is not a dataset")
    return item[()]


def read_atoms(path: str | os.PathLike) -> AtomsData:
    """Read an ATOMS file.

    Parameters
    ----------
    path
        ATOMS ``.h5`` file (conventions §6).

    Returns
    -------
    AtomsData
        Optional items that are absent are None.

    Raises
    ------
    InputError
        The file cannot be opened, a required item is missing, or shapes disagree (the message
        names the file and the item).
    """
    where = str(path)
    if not Path(path).is_file():
        raise InputError(f"{where}: no such ATOMS file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{where}: cannot open as HDF5 ({exc})") from exc
    with f:
        positions = _read_dataset(f, where, "positions_A", True)
        mean = _read_dataset(f, where, "mean_positions_A", True)
        cells = _read_dataset(f, where, "cell_index", False)
        basis = _read_dataset(f, where, "basis_index", False)
        species = _read_dataset(f, where, "species", False)
        status = _read_dataset(f, where, "status", False)
        lattice = f.attrs.get("lattice_vectors_A")
        source = f.attrs.get("source", "")
        prov_text = f.attrs.get("provenance_json", "{}")
    if species is not None:
        species = np.asarray(
            [s.decode() if isinstance(s, bytes) else str(s) for s in np.ravel(species)], dtype=str
        ).reshape(np.shape(species))
    try:
        provenance = json.loads(prov_text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"{where}: attribute 'provenance_json' is not valid JSON") from exc
    try:
        return AtomsData(
            positions_A=np.asarray(positions, dtype=float),
            mean_positions_A=np.asarray(mean, dtype=float),
            cell_index=None if cells is None else np.asarray(cells),
            basis_index=None if basis is None else np.asarray(basis),
            species=species,
            lattice_vectors_A=None if lattice is None else np.asarray(lattice, dtype=float),
            source=source.decode() if isinstance(source, bytes) else str(source),
            status=None if status is None else np.asarray(status),
            provenance=provenance if isinstance(provenance, dict) else {},
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
