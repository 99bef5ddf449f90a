"""Readers for the 4D-STEM formats microscopists have, all converted to :class:`STEMDataset`.

:data:`READERS` is the registry of formats: one :class:`Reader` entry per format (extensions,
a sniffing function, a loader, lazy or not).  :func:`load_stem` reads a file with the first
entry that claims it, :func:`detect_kind` says what a file holds with that entry's sniffing
function, and the napari reader (``caviar_napari._napari.readers``, napari.yaml) offers exactly
the registry's extensions.  The formats:

==========================  =================================================================
conventions §6 HDF5         ``.h5``/``.hdf5``/``.hdf``/``.emd``/``.py4dstem`` (or any HDF5
                            file) with a root dataset ``intensities``
                            (:func:`caviar_napari.io.dataset.read_stem_h5`)
numpy + JSON sidecar        ``DATA.npy`` (memory-mapped) or ``DATA.npz`` (array
                            ``intensities``, or its only array) with ``DATA.json`` holding the
                            conventions §6 attributes (``energy_eV``,
                            ``convergence_semiangle_mrad``, ``scan_step_A``,
                            ``angular_sampling_mrad`` or ``reciprocal_sampling_invA``, optional
                            ``defocus_A``, ``scan_rotation_deg``, ``positions_A``)
EMD 1.0 / py4DSTEM          HDF5 with an EMD ``array`` group holding a 4D ``data`` set (py4DSTEM
                            ``DataCube``); calibrations from py4DSTEM's root ``calibration``
                            metadata (``R_pixel_size``/``R_pixel_units``, ``Q_pixel_size``/
                            ``Q_pixel_units``) or the ``dim`` vectors
abTEM measurement (zarr)    a ``.zarr`` folder written by ``DiffractionPatterns.to_zarr`` (needs
                            abTEM): energy, α and samplings from its metadata
raw detector formats        via rosettasciio (optional extra ``formats``,
                            :mod:`caviar_napari.io.rsciio_formats`): EMPAD ``.xml`` (+ ``.raw``),
                            Merlin ``.mib`` (+ ``.hdr``), Digital Micrograph ``.dm3``/``.dm4``,
                            ``.blo``; calibrations they lack must be given
==========================  =================================================================

Calibration keyword arguments (``energy_eV=…``, ``convergence_semiangle_mrad=…``,
``scan_step_A=…``, ``angular_sampling_mrad=…`` or ``reciprocal_sampling_invA=…``,
``defocus_A=…``, ``scan_rotation_deg=…``) fill in what a file lacks and override what it holds
(an override of a stored value is logged).  Nothing is guessed: a missing calibration is an
:class:`~caviar_napari.errors.InputError` naming the file and every missing item.

Axis order: py4DSTEM's ``(Rx, Ry, Qx, Qy)`` is numpy row/column order, i.e. the project's
``(scan_y, scan_x, ky, kx)``; abTEM's ``(x, y, kx, ky)`` is transposed; rosettasciio's axes are
read by their navigate flag (navigation first, in array order).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io._h5util import as_text, open_h5
from caviar_napari.io.dataset import read_stem_h5
from caviar_napari.io.instrument_formats import (
    is_dectris_master,
    is_nion_h5,
    load_dectris,
    load_nion_h5,
    load_nion_ndata,
    ndata_kind,
)
from caviar_napari.io.reader_common import (
    _REQUIRED,
    CALIBRATION_KEYS,
    Calibration,
    Kind,
    ReadOptions,
    detector_calibration,
    length_A,
    make_dataset,
)
from caviar_napari.io.rsciio_formats import (
    DIGITAL_MICROGRAPH,
    MERLIN,
    RsciioFormat,
    empad_kind,
    load_empad,
    load_rsciio,
    rsciio_kind,
)

__all__ = [
    "CALIBRATION_KEYS",
    "READERS",
    "Calibration",
    "Kind",
    "ReadOptions",
    "Reader",
    "detect_kind",
    "load_stem",
    "reader_extensions",
    "reader_for",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ numpy + JSON
def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _read_sidecar(path: Path) -> tuple[Calibration, np.ndarray | None]:
    side = _sidecar(path)
    if not side.is_file():
        raise InputError(
            f"{path}: JSON sidecar {side.name} not found; it must hold the calibration "
            f"{list(_REQUIRED) + ['angular_sampling_mrad']} (conventions §6 attribute names)"
        )
    try:
        values = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{side}: cannot be read as JSON ({exc})") from exc
    if not isinstance(values, dict):
        raise InputError(f"{side}: must hold a JSON object of calibration items")
    positions = values.pop("positions_A", None)
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    return Calibration.from_mapping(values, str(side)), (
        None if positions is None else np.asarray(positions, dtype=float)
    )


def _npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in an ``.npz`` file, read from their headers (no data loaded)."""
    import zipfile

    shapes: dict[str, tuple[int, ...]] = {}
    with zipfile.ZipFile(path) as zf:
        for member in zf.namelist():
            if not member.endswith(".npy"):
                continue
            with zf.open(member) as fp:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    shape = np.lib.format.read_array_header_1_0(fp)[0]
                else:
                    shape = np.lib.format.read_array_header_2_0(fp)[0]
            shapes[member[: -len(".npy")]] = tuple(shape)
    return shapes


def _load_numpy(path: Path, override: Calibration, options: ReadOptions) -> STEMDataset:
    try:
        if path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False, mmap_mode="r")
        else:
            with np.load(path, allow_pickle=False) as npz:
                keys = list(npz.keys())
                if "intensities" in keys:
                    data = npz["intensities"]
                elif len(keys) == 1:
                    data = npz[keys[0]]
                else:
                    raise InputError(
                        f"{path}: holds arrays {keys}; name the 4D-STEM one 'intensities'"
                    )
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: cannot be read as a numpy file ({exc})") from exc
    if data.ndim != 4:
        raise InputError(
            f"{path}: the array must have rank 4 (scan_y, scan_x, ky, kx), got rank "
            f"{data.ndim} with shape {data.shape}"
        )
    calibration, positions = _read_sidecar(path)
    calibration = calibration.merged(override, str(path))
    return make_dataset(
        data,
        calibration,
        path.name,
        options=options,
        positions_A=positions,
        how=f"add them to {_sidecar(path).name} or pass them as keyword arguments",
    )


def _npy_kind(path: Path) -> Kind | None:
    """``"stem"`` for a 4D ``.npy`` array (header only)."""
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError, EOFError):
        return None
    return "stem" if len(shape) == 4 else None


def _npz_kind(path: Path) -> Kind | None:
    """``"stem"`` for an ``.npz`` whose ``intensities`` (or only) array is 4D (headers only)."""
    try:
        shapes = _npz_shapes(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    key = (
        "intensities"
        if "intensities" in shapes
        else (next(iter(shapes)) if len(shapes) == 1 else None)
    )
    return "stem" if key is not None and len(shapes[key]) == 4 else None


# ------------------------------------------------------------------------------ EMD / py4DSTEM
def _emd_arrays(f: h5py.File) -> list[h5py.Group]:
    """EMD ``array`` groups (EMD 1.0) or data groups (``emd_group_type == 1``) with 4D data."""
    found: list[h5py.Group] = []

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Group):
            return
        kind = obj.attrs.get("emd_group_type")
        if kind is None:
            return
        kind = as_text(kind)
        if kind in ("array", "1") and "data" in obj and getattr(obj["data"], "ndim", 0) == 4:
            found.append(obj)

    f.visititems(visit)
    return found


def _emd_metadata(group: h5py.Group) -> dict[str, Any]:
    """Flatten EMD metadata datasets under ``group/metadatabundle/*`` to a dict."""
    out: dict[str, Any] = {}
    bundle = group.get("metadatabundle")
    if not isinstance(bundle, h5py.Group):
        return out
    for md in bundle.values():
        if not isinstance(md, h5py.Group):
            continue
        for key, dset in md.items():
            if isinstance(dset, h5py.Dataset):
                value = dset[()]
                out[key] = as_text(value) if isinstance(value, bytes) else value
    return out


def _load_emd(path: Path, f: h5py.File, override: Calibration, options: ReadOptions) -> STEMDataset:
    arrays = _emd_arrays(f)
    if not arrays:
        raise InputError(
            f"{path}: no 4D-STEM data found: neither a conventions §6 'intensities' dataset nor an "
            "EMD array group with 4D 'data'"
        )
    if len(arrays) > 1:
        cubes = [g for g in arrays if as_text(g.attrs.get("python_class", "")) == "DataCube"]
        if len(cubes) != 1:
            raise InputError(
                f"{path}: several 4D arrays {[g.name for g in arrays]}; keep only one in the file"
            )
        arrays = cubes
    group = arrays[0]
    src = f"{path}:{group.name}"
    # calibration: py4DSTEM root metadata, then the array's own metadata, then the dim vectors
    meta: dict[str, Any] = {}
    root_name = group.name.strip("/").split("/")[0]
    root = f.get(root_name)
    if isinstance(root, h5py.Group):
        meta.update(_emd_metadata(root))
    meta.update(_emd_metadata(group))
    cal = Calibration()
    step_y = step_x = None
    ang = [None, None]
    rec = [None, None]
    if "R_pixel_size" in meta:
        r = np.ravel(np.asarray(meta["R_pixel_size"], dtype=float))
        units = as_text(meta.get("R_pixel_units", "pixels"))
        step_y = length_A(r[0], units, "R_pixel_size", src)
        step_x = length_A(r[-1], units, "R_pixel_size", src)
    if "Q_pixel_size" in meta:
        q = np.ravel(np.asarray(meta["Q_pixel_size"], dtype=float))
        units = as_text(meta.get("Q_pixel_units", "pixels"))
        for i, v in enumerate((q[0], q[-1])):
            ang[i], rec[i] = detector_calibration(v, units, "Q_pixel_size", src)
    # dim vectors: dim0..dim3 with 'units' attributes
    for axis in range(4):
        dset = group.get(f"dim{axis}")
        if not isinstance(dset, h5py.Dataset) or dset.size < 2:
            continue
        vec = np.asarray(dset[()], dtype=float).ravel()
        units = as_text(dset.attrs.get("units", "pixels"))
        step = float(vec[1] - vec[0])
        if axis < 2:
            value = length_A(step, units, f"dim{axis}", src)
            if axis == 0 and step_y is None:
                step_y = value
            if axis == 1 and step_x is None:
                step_x = value
        else:
            i = axis - 2
            if ang[i] is None and rec[i] is None:
                ang[i], rec[i] = detector_calibration(step, units, f"dim{axis}", src)
    if step_y is not None and step_x is not None:
        cal.scan_step_A = (step_y, step_x)
    if ang[0] is not None and ang[1] is not None:
        cal.angular_sampling_mrad = (ang[0], ang[1])
    elif rec[0] is not None and rec[1] is not None:
        cal.reciprocal_sampling_invA = (rec[0], rec[1])
    for key in ("energy_eV", "convergence_semiangle_mrad", "defocus_A"):
        if key in meta:
            setattr(cal, key, float(np.asarray(meta[key], dtype=float)))
    rotation = float(np.asarray(meta.get("QR_rotation_degrees", 0.0) or 0.0, dtype=float))
    flip = bool(np.asarray(meta.get("QR_flip", False)))
    if rotation != 0.0 and override.scan_rotation_deg is None:
        raise InputError(
            f"{src}: py4DSTEM calibration has QR_rotation_degrees = {rotation:g}; its sign "
            "convention is not the project's: pass scan_rotation_deg explicitly (conventions §6, "
            "see STEMDataset.rotated_positions_A), or run caviar calibrate"
        )
    if flip:  # the detector's axes are (Qy, Qx): swap them, and their calibrations
        cal.angular_sampling_mrad = _swapped(cal.angular_sampling_mrad)
        cal.reciprocal_sampling_invA = _swapped(cal.reciprocal_sampling_invA)
    cal = cal.merged(override, src)
    dset = group["data"]
    if not np.issubdtype(dset.dtype, np.number):
        raise InputError(f"{src}: 'data' is not numeric ({dset.dtype})")
    return make_dataset(dset, cal, path.name, options=options, transposed=flip)


def _swapped(pair: Any) -> Any:
    """``(a, b) → (b, a)`` for a calibration pair (scalars and None unchanged)."""
    if pair is None or np.ndim(pair) == 0:
        return pair
    values = np.ravel(np.asarray(pair, dtype=float))
    return (float(values[-1]), float(values[0]))


def _load_hdf5(path: Path, override: Calibration, options: ReadOptions) -> STEMDataset:
    with open_h5(path) as f:
        if "intensities" not in f:
            if is_dectris_master(f):
                return load_dectris(path, f, override, options)
            if is_nion_h5(f):
                return load_nion_h5(path, f, override, options)
            return _load_emd(path, f, override, options)
    ds = read_stem_h5(path, crop=options.crop, bin=options.bin)
    if all(getattr(override, fl.name) is None for fl in fields(override)):
        return ds
    stored = Calibration(
        energy_eV=ds.energy_eV,
        convergence_semiangle_mrad=ds.convergence_semiangle_mrad,
        scan_step_A=ds.scan_step_A,
        angular_sampling_mrad=np.asarray(ds.angular_sampling_mrad) / options.bin,
        defocus_A=ds.defocus_A,
        scan_rotation_deg=ds.scan_rotation_deg,
    )
    cal = stored.merged(override, str(path))
    positions = ds.positions_A if override.scan_step_A is None else None
    # the patterns are already cropped and binned: only the calibration is rebuilt
    binned = ReadOptions(bin=1)
    out = make_dataset(ds.intensities, cal, ds.source, options=binned, positions_A=positions)
    if options.bin > 1:
        out.angular_sampling_mrad = tuple(v * options.bin for v in out.angular_sampling_mrad)
    return out


def _hdf5_kind(path: Path) -> Kind | None:
    """A reconstruction (``object`` and ``probe``), an ATOMS file (``positions_A`` and
    ``mean_positions_A``) or 4D-STEM data (conventions §6 or EMD); None for other HDF5."""
    try:
        f = open_h5(path)
    except InputError:
        return None
    with f:
        if "object" in f and "probe" in f:
            return "reconstruction"
        if "positions_A" in f and "mean_positions_A" in f:
            return "atoms"
        dset = f.get("intensities")
        if isinstance(dset, h5py.Dataset) and dset.ndim == 4:
            return "stem"
        if _emd_arrays(f) or is_dectris_master(f):
            return "stem"
        if is_nion_h5(f) and f["data"].ndim == 4:
            return "stem"
    return None


# ------------------------------------------------------------------------------ abTEM zarr
def _zarr_attributes(path: Path) -> dict[str, Any] | None:
    """Root attributes of a zarr store (v3 ``zarr.json`` or v2 ``.zattrs``), or None."""
    try:
        if (path / "zarr.json").is_file():
            return json.loads((path / "zarr.json").read_text()).get("attributes", {})
        if (path / ".zattrs").is_file():
            return json.loads((path / ".zattrs").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return None


def _zarr_kind(path: Path) -> Kind | None:
    return "stem" if _is_abtem_diffraction(path) else None


def _is_abtem_diffraction(path: Path) -> bool:
    attrs = _zarr_attributes(path)
    if not attrs:
        return False
    return any(
        isinstance(v, dict) and v.get("type") == "DiffractionPatterns" for v in attrs.values()
    )


def _load_abtem_zarr(path: Path, override: Calibration, options: ReadOptions) -> STEMDataset:
    if not _is_abtem_diffraction(path):
        raise InputError(
            f"{path}: not an abTEM DiffractionPatterns zarr store (no 'type': "
            "'DiffractionPatterns' in its attributes)"
        )
    try:
        import abtem
    except ImportError as exc:
        raise InputError(
            f"{path}: reading abTEM measurements needs abTEM (pip install caviar-napari[sim])"
        ) from exc
    try:
        m = abtem.from_zarr(str(path)).compute()
    except Exception as exc:  # abTEM/zarr raise many types for a broken store
        raise InputError(
            f"{path}: abTEM could not read the store ({type(exc).__name__}: {exc})"
        ) from exc
    axes = m.axes_metadata
    if len(m.shape) != 4:
        labels = [getattr(a, "label", "?") for a in axes]
        raise InputError(
            f"{path}: the abTEM measurement must have rank 4 (scan x, scan y, kx, ky), got "
            f"shape {m.shape} with axes {labels}; reduce the extra ensemble axes first"
        )
    scan_axes = axes[:2]
    for ax in scan_axes:
        if type(ax).__name__ != "ScanAxis":
            raise InputError(
                f"{path}: axis {getattr(ax, 'label', '?')!r} is not a scan axis; expected a "
                "4D-STEM (GridScan) measurement"
            )
    arr = np.asarray(m.array)
    if not m.fftshift:
        arr = np.fft.fftshift(arr, axes=(-2, -1))
    data = arr.transpose(1, 0, 3, 2)  # (x, y, kx, ky) -> (y, x, ky, kx)
    sx, sy = float(scan_axes[0].sampling), float(scan_axes[1].sampling)
    ox, oy = float(scan_axes[0].offset), float(scan_axes[1].offset)
    md = m.metadata
    cal = Calibration(
        energy_eV=md.get("energy"),
        convergence_semiangle_mrad=md.get("semiangle_cutoff"),
        scan_step_A=(sy, sx),
        reciprocal_sampling_invA=(float(m.sampling[1]), float(m.sampling[0])),
    )
    if override.defocus_A is None:
        log.warning(
            "%s: abTEM does not store the probe's aberrations; defocus_A = 0 is assumed "
            "(pass defocus_A=... if the simulation used one)",
            path,
        )
    cal = cal.merged(override, str(path))
    iy, ix = np.meshgrid(np.arange(data.shape[0]), np.arange(data.shape[1]), indexing="ij")
    positions = None
    if override.scan_step_A is None:
        positions = np.stack([oy + iy * sy, ox + ix * sx], axis=-1)
    return make_dataset(
        data,
        cal,
        path.name,
        options=options,
        positions_A=positions,
        how="pass them as keyword arguments (abTEM did not record them)",
    )


# ------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class Reader:
    """One 4D-STEM file format: an entry of :data:`READERS`.

    Attributes
    ----------
    name
        What the format is (shown in messages and docs).
    extensions
        Lower-case file extensions with the dot (``".h5"``); napari.yaml offers exactly the
        extensions of all entries (``tests/test_layers.py`` checks it).
    sniff
        ``sniff(path) -> Kind | None``: what the file holds, from its content; only opens the
        file (headers, metadata), never reads the data; None when it is not this format's.
    load
        ``load(path, override, options) -> STEMDataset``: read the dataset, with the
        caller's :class:`Calibration` filling in or overriding the file's and the
        :class:`ReadOptions` (detector crop and binning, scan shape) applied while reading.
    lazy
        True when ``load`` reads the file block by block (memory-mapped, chunked HDF5 or
        dask) into the output, never holding the whole stored data in memory besides it; a
        float32 memory map with nothing to crop or bin is returned without a copy.
    directory
        True for a format stored as a folder (a zarr store), False for a file.
    by_content
        Optional ``by_content(path) -> bool``: claims a file or folder whatever its extension
        (e.g. any HDF5 file).
    """

    name: str
    extensions: tuple[str, ...]
    sniff: Callable[[Path], Kind | None]
    load: Callable[[Path, Calibration, ReadOptions], STEMDataset]
    lazy: bool = False
    directory: bool = False
    by_content: Callable[[Path], bool] | None = None


def _rsciio(name: str, extensions: tuple[str, ...], fmt: RsciioFormat) -> Reader:
    """A rosettasciio format (optional extra ``formats``; :mod:`.rsciio_formats`)."""
    return Reader(
        name=f"{name} (rosettasciio)",
        extensions=extensions,
        sniff=functools.partial(rsciio_kind, fmt=fmt),
        load=functools.partial(load_rsciio, fmt=fmt),
        lazy=True,
    )


#: The 4D-STEM formats, in the order they are tried: the first entry whose ``extensions``
#: holds the path's extension, or whose ``by_content`` claims it, reads it.  Adding a format
#: is one entry here plus its ``sniff`` and ``load`` functions (docs/ARCHITECTURE.md).
READERS: tuple[Reader, ...] = (
    Reader("numpy array + JSON sidecar", (".npy",), _npy_kind, _load_numpy, lazy=True),
    Reader("numpy archive + JSON sidecar", (".npz",), _npz_kind, _load_numpy),
    Reader("Nion Swift data item (zip)", (".ndata",), ndata_kind, load_nion_ndata, lazy=True),
    Reader(
        "HDF5: conventions §6, EMD 1.0, py4DSTEM, Nion Swift, Dectris Arina/Quadro master",
        (".h5", ".hdf5", ".hdf", ".emd", ".py4dstem"),
        _hdf5_kind,
        _load_hdf5,
        lazy=True,
        by_content=h5py.is_hdf5,
    ),
    Reader(
        "abTEM zarr store",
        (".zarr",),
        _zarr_kind,
        _load_abtem_zarr,
        directory=True,
        by_content=lambda path: _zarr_attributes(path) is not None,
    ),
    _rsciio("Merlin", (".mib",), MERLIN),
    _rsciio("Digital Micrograph", (".dm3", ".dm4"), DIGITAL_MICROGRAPH),
    Reader("EMPAD (rosettasciio)", (".xml", ".raw"), empad_kind, load_empad, lazy=True),
    _rsciio("NanoMegas blockfile", (".blo",), RsciioFormat("blockfile")),
)


def reader_for(path: str | os.PathLike) -> Reader | None:
    """The entry of :data:`READERS` that reads ``path`` (an existing file or folder), or None."""
    p = Path(path)
    ext = p.suffix.lower()
    is_dir = p.is_dir()
    for reader in READERS:
        if reader.directory != is_dir:
            continue
        if ext in reader.extensions or (reader.by_content is not None and reader.by_content(p)):
            return reader
    return None


def reader_extensions() -> tuple[str, ...]:
    """Every extension of :data:`READERS`, sorted (what napari.yaml offers)."""
    return tuple(sorted({ext for reader in READERS for ext in reader.extensions}))


# ------------------------------------------------------------------------------ dispatch
def load_stem(
    path: str | os.PathLike,
    *,
    crop: tuple[int, int] | int | None = None,
    bin: int = 1,
    scan_shape: tuple[int, int] | None = None,
    **calibration: Any,
) -> STEMDataset:
    """Read a 4D-STEM dataset in any supported format (see the module docstring).

    Parameters
    ----------
    path
        File (or ``.zarr`` folder) to read.
    crop
        Largest detector window ``(Wy, Wx)`` (stored pixels) kept around the zero angle.
    bin
        Detector binning factor (``bin × bin`` pixels summed; the sampling grows with it).
    scan_shape
        ``(Sy, Sx)`` for formats that do not record it.
    **calibration
        Calibration items (:data:`CALIBRATION_KEYS`) that fill in or override the file's, in
        the project's detector axis order, for the stored (unbinned) pixels.

    Returns
    -------
    STEMDataset
        Validated, ``intensities`` ``(Sy, Sx, Ky, Kx)`` float32 with zero angle at
        ``[Ky//2, Kx//2]``.

    Raises
    ------
    InputError
        Unreadable or unknown file, wrong rank, or a missing calibration item (named).
    """
    p = Path(path)
    name = str(p)
    if not p.exists():
        raise InputError(f"{name}: file not found")
    override = Calibration.from_mapping(calibration, name)
    options = ReadOptions(crop=crop, bin=bin, scan_shape=scan_shape)
    reader = reader_for(p)
    if reader is not None:
        return reader.load(p, override, options)
    if p.is_dir():
        folders = ", ".join(r.name for r in READERS if r.directory)
        raise InputError(f"{name}: is a folder but not a 4D-STEM store caviar reads ({folders})")
    raise InputError(
        f"{name}: unknown 4D-STEM file type {p.suffix.lower()!r}; supported: "
        f"{list(reader_extensions())}"
    )


def detect_kind(path: str | os.PathLike) -> Kind | None:
    """What a file holds, for the napari reader dispatcher.

    Returns
    -------
    str or None
        ``"reconstruction"`` for an HDF5 file with datasets ``object`` and ``probe``; ``"atoms"``
        for one with ``positions_A`` and ``mean_positions_A``; ``"stem"`` for any 4D-STEM format
        :func:`load_stem` reads (conventions §6 or EMD HDF5, a 4D ``.npy``/``.npz``, an abTEM zarr
        store, a rosettasciio detector format); None for anything else or an unreadable file.
        The kind is decided by content, not only the extension; files are only opened, not read.
    """
    p = Path(path)
    if not p.exists():
        return None
    reader = reader_for(p)
    return None if reader is None else reader.sniff(p)


def stored_intensities(path: str | os.PathLike) -> tuple[str, bool] | None:
    """Where an HDF5 file keeps the 4D data that :func:`load_stem` returns unchanged.

    Returns
    -------
    tuple or None
        ``(key, as_read)``: the HDF5 path of the stored 4D dataset and whether
        :func:`load_stem` (without crop or binning) returns it as stored (no detector
        attributes, no py4DSTEM ``QR_flip``); None for a file that is not HDF5 or has no such
        dataset (e.g. another format, or data behind an external link).
    """
    p = Path(path)
    if not p.is_file() or not h5py.is_hdf5(p):
        return None
    from caviar_napari.io.dataset import DETECTOR_ATTRS

    with open_h5(p) as f:
        link = f.get("intensities", getlink=True)
        if link is not None:
            if not isinstance(link, h5py.HardLink):
                return None
            dset = f["intensities"]
            if not isinstance(dset, h5py.Dataset) or dset.ndim != 4:
                return None
            return "/intensities", not any(k in f.attrs for k in DETECTOR_ATTRS)
        arrays = _emd_arrays(f)
        if len(arrays) != 1:
            return None
        group = arrays[0]
        root = f.get(group.name.strip("/").split("/")[0])
        meta = _emd_metadata(root) if isinstance(root, h5py.Group) else {}
        meta.update(_emd_metadata(group))
        flip = bool(np.asarray(meta.get("QR_flip", False)))
        return f"{group.name}/data", not flip
