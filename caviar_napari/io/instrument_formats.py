"""Instrument file formats read without rosettasciio: Nion Swift and Dectris Arina/Quadro.

**Nion Swift** (``.ndata``; ``.h5``): a data item is stored either as an uncompressed zip
archive holding ``metadata.json`` and ``data.npy`` (``.ndata``, nionswift's NDataHandler) or
as an HDF5 file with a dataset ``data`` whose attribute ``properties`` is the same JSON
(HDF5Handler).  The JSON's ``dimensional_calibrations`` give ``offset``, ``scale``, ``units``
per array axis (scan axes in nm or Å, detector axes in rad, mrad or 1/nm), with
``collection_dimension_count = 2`` and ``datum_dimension_count = 2`` for 4D-STEM;
``metadata.hardware_source.high_tension`` or ``metadata.instrument.high_tension`` is the beam
energy in eV.  The array is memory-mapped inside the zip (a stored member is contiguous).

**Dectris Arina/Quadro** (NeXus master ``*_master.h5``): ``/entry/data/data_NNNNNN`` are
external links to the data files' ``(frames, Ky, Kx)`` datasets, frames in scan order;
``/entry/instrument/detector/{x,y}_pixel_size`` (m) over ``detector_distance`` (m, the camera
length) give the angular sampling, ``/entry/instrument/beam/incident_wavelength`` (Å) the
energy.  The scan shape is not recorded: it is :class:`ReadOptions.scan_shape` or, for a
square number of frames, the square.  Data compressed with the detector's bitshuffle/LZ4
filter (HDF5 filter 32008; the Quadro also writes LZ4, 32004) need ``hdf5plugin``
(installed with the ``formats`` extra), which registers the filters when imported: every data
set's filters are checked before anything is read, and a missing one is a one-line error
naming it and the plugin.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io._h5util import as_text
from caviar_napari.io.reader_common import (
    Calibration,
    ReadOptions,
    detector_calibration,
    length_A,
    make_dataset,
)

__all__ = [
    "PLUGIN_FILTERS",
    "check_filters",
    "is_dectris_master",
    "is_nion_h5",
    "load_dectris",
    "load_nion_h5",
    "load_nion_ndata",
    "ndata_kind",
    "energy_from_wavelength_eV",
]

_HOW = "pass the calibration items the file lacks as keyword arguments (load_stem(path, ...))"


# ------------------------------------------------------------------------------ Nion Swift
def _find_key(tree: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in a nested JSON object (depth first), or None."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def _nion_calibration(props: dict[str, Any], shape: tuple[int, ...], src: str) -> Calibration:
    """Calibration of a Nion data item's properties (module docstring)."""
    coll = int(props.get("collection_dimension_count", 2))
    datum = int(props.get("datum_dimension_count", 2))
    if props.get("is_sequence") or coll != 2 or datum != 2 or len(shape) != 4:
        raise InputError(
            f"{src}: not a 4D-STEM data item (collection dims {coll}, datum dims {datum}, "
            f"sequence {bool(props.get('is_sequence'))}, shape {shape})"
        )
    cals = props.get("dimensional_calibrations") or [{}] * 4
    if len(cals) != 4:
        raise InputError(f"{src}: {len(cals)} dimensional calibrations for 4 axes")
    cal = Calibration()
    steps = [
        length_A(float(c.get("scale", 1.0)), str(c.get("units", "")), f"axis {i}", src)
        for i, c in enumerate(cals[:2])
    ]
    if all(s is not None for s in steps):
        cal.scan_step_A = (steps[0], steps[1])
    det = [
        detector_calibration(float(c.get("scale", 1.0)), str(c.get("units", "")), f"axis {i}", src)
        for i, c in enumerate(cals[2:], start=2)
    ]
    if all(d[0] is not None for d in det):
        cal.angular_sampling_mrad = (det[0][0], det[1][0])
    elif all(d[1] is not None for d in det):
        cal.reciprocal_sampling_invA = (det[0][1], det[1][1])
    energy = _find_key(props.get("metadata", {}), "high_tension")
    if energy is not None:
        cal.energy_eV = float(energy)
    return cal


def _ndata_members(path: Path) -> tuple[dict[str, Any], np.memmap]:
    """Properties and memory-mapped array of a ``.ndata`` zip (stored members only)."""
    try:
        with zipfile.ZipFile(path) as zf:
            props = json.loads(zf.read("metadata.json"))
            info = zf.getinfo("data.npy")
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a Nion Swift .ndata archive ({exc})") from exc
    if info.compress_type != zipfile.ZIP_STORED:
        raise InputError(f"{path}: data.npy is compressed in the archive; cannot be mapped")
    with open(path, "rb") as fp:
        fp.seek(info.header_offset)
        local = fp.read(30)
        if local[:4] != b"PK\x03\x04":
            raise InputError(f"{path}: broken zip local header of data.npy")
        name_len, extra_len = np.frombuffer(local[26:30], dtype="<u2")
        start = info.header_offset + 30 + int(name_len) + int(extra_len)
        fp.seek(start)
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        offset = fp.tell()
    if fortran:
        raise InputError(f"{path}: data.npy is in Fortran order; not supported")
    data = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))
    return props, data


def ndata_kind(path: Path) -> str | None:
    """``"stem"`` for a ``.ndata`` archive holding a 4D data item (headers only)."""
    try:
        props, data = _ndata_members(path)
        _nion_calibration(props, data.shape, str(path))
    except InputError:
        return None
    return "stem"


def load_nion_ndata(path: Path, override: Calibration, options: ReadOptions) -> STEMDataset:
    """Read a Nion Swift ``.ndata`` 4D-STEM data item (memory-mapped)."""
    props, data = _ndata_members(path)
    cal = _nion_calibration(props, data.shape, str(path)).merged(override, str(path))
    return make_dataset(data, cal, path.name, options=options, how=_HOW)


def is_nion_h5(f: h5py.File) -> bool:
    """A Nion Swift HDF5 data item: a dataset ``data`` with a JSON ``properties`` attribute."""
    dset = f.get("data")
    return isinstance(dset, h5py.Dataset) and "properties" in dset.attrs


def load_nion_h5(
    path: Path, f: h5py.File, override: Calibration, options: ReadOptions
) -> STEMDataset:
    """Read a Nion Swift HDF5 4D-STEM data item (chunked reads)."""
    dset = f["data"]
    try:
        props = json.loads(as_text(dset.attrs["properties"]))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: data/properties is not JSON ({exc})") from exc
    cal = _nion_calibration(props, dset.shape, str(path)).merged(override, str(path))
    return make_dataset(dset, cal, path.name, options=options, how=_HOW)


# ------------------------------------------------------------------------------ Dectris
def energy_from_wavelength_eV(wavelength_A: float) -> float:
    """Beam energy (eV) of an electron of relativistic wavelength λ (Å)."""
    hc = 12398.419843320026  # eV·Å
    mc2 = 510998.95000  # eV
    pc = hc / wavelength_A
    return math.sqrt(mc2 * mc2 + pc * pc) - mc2


def is_dectris_master(f: h5py.File) -> bool:
    """A Dectris NeXus master file: ``/entry/data`` holding ``data_NNNNNN`` members."""
    group = f.get("entry/data")
    return isinstance(group, h5py.Group) and any(k.startswith("data_") for k in group)


class _FrameStack:
    """The frames of several ``(n, Ky, Kx)`` datasets as one lazy ``(Sy, Sx, Ky, Kx)`` array
    (only slices of the first axis: scan rows)."""

    def __init__(self, datasets: list[h5py.Dataset], scan_shape: tuple[int, int]) -> None:
        self.datasets = datasets
        self.counts = np.cumsum([0] + [d.shape[0] for d in datasets])
        ky, kx = datasets[0].shape[1:]
        self.shape = (scan_shape[0], scan_shape[1], ky, kx)
        self.dtype = datasets[0].dtype

    def frames(self, start: int, stop: int) -> np.ndarray:
        out = []
        for d, c0, c1 in zip(self.datasets, self.counts[:-1], self.counts[1:]):
            lo, hi = max(start, c0), min(stop, c1)
            if lo < hi:
                out.append(np.asarray(d[lo - c0 : hi - c0]))
        return np.concatenate(out, axis=0)

    def __getitem__(self, rows: slice) -> np.ndarray:
        r0, r1, _ = rows.indices(self.shape[0])
        sx = self.shape[1]
        return self.frames(r0 * sx, r1 * sx).reshape(r1 - r0, sx, *self.shape[2:])


def _scalar(f: h5py.File, key: str, units_to: dict[str, float]) -> float | None:
    dset = f.get(key)
    if not isinstance(dset, h5py.Dataset):
        return None
    value = float(np.ravel(dset[()])[0])
    units = as_text(dset.attrs.get("units", "")).strip().lower()
    return value * units_to.get(units, 1.0)


#: Registered HDF5 filters that detector files use and ``hdf5plugin`` provides.
PLUGIN_FILTERS = {
    32001: "Blosc",
    32004: "LZ4",
    32008: "bitshuffle",
    32015: "Zstandard",
    32026: "Blosc2",
}


def _filters(dset: h5py.Dataset) -> list[int]:
    """The HDF5 filter ids of a data set's pipeline."""
    plist = dset.id.get_create_plist()
    return [int(plist.get_filter(i)[0]) for i in range(plist.get_nfilters())]


def check_filters(dset: h5py.Dataset, where: str) -> None:
    """Raise a one-line InputError when ``dset`` needs a filter this HDF5 cannot apply, after
    importing ``hdf5plugin`` (which registers the detector filters) if it is installed."""
    missing = [i for i in _filters(dset) if not h5py.h5z.filter_avail(i)]
    if not missing:
        return
    try:
        import hdf5plugin  # noqa: F401  (registers its filters with HDF5 on import)
    except ImportError:
        pass
    missing = [i for i in missing if not h5py.h5z.filter_avail(i)]
    if missing:
        names = ", ".join(f"{PLUGIN_FILTERS.get(i, 'unknown')} (HDF5 filter {i})" for i in missing)
        raise InputError(
            f"{where} is compressed with {names}, which this installation cannot decompress: "
            "install hdf5plugin (pip install hdf5plugin, or caviar-napari[formats])"
        )


def load_dectris(
    path: Path, f: h5py.File, override: Calibration, options: ReadOptions
) -> STEMDataset:
    """Read a Dectris Arina/Quadro master file and its data files (chunked reads)."""
    group = f["entry/data"]
    datasets = []
    for key in sorted(k for k in group if k.startswith("data_")):
        try:
            dset = group[key]
        except KeyError as exc:
            raise InputError(f"{path}: /entry/data/{key} links to a missing data file") from exc
        if not isinstance(dset, h5py.Dataset) or dset.ndim != 3:
            raise InputError(f"{path}: /entry/data/{key} is not a (frames, Ky, Kx) dataset")
        check_filters(dset, f"{path}: /entry/data/{key}")
        datasets.append(dset)
    n = sum(d.shape[0] for d in datasets)
    scan = options.scan_shape
    if scan is None:
        side = math.isqrt(n)
        if side * side != n:
            raise InputError(f"{path}: {n} frames are not a square scan; give scan_shape=(Sy, Sx)")
        scan = (side, side)
    if scan[0] * scan[1] != n:
        raise InputError(f"{path}: scan_shape {scan} does not hold the {n} frames")
    metres = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "nm": 1e-9}
    det = "entry/instrument/detector/"
    px_y = _scalar(f, det + "y_pixel_size", metres)
    px_x = _scalar(f, det + "x_pixel_size", metres)
    dist = _scalar(f, det + "detector_distance", metres)
    lam = _scalar(f, "entry/instrument/beam/incident_wavelength", {"a": 1.0, "nm": 10.0})
    cal = Calibration()
    if px_y and px_x and dist:
        cal.angular_sampling_mrad = (px_y / dist * 1e3, px_x / dist * 1e3)
    if lam:
        cal.energy_eV = energy_from_wavelength_eV(lam)
    cal = cal.merged(override, str(path))
    stack = _FrameStack(datasets, scan)
    try:
        return make_dataset(stack, cal, path.name, options=options, how=_HOW)
    except OSError as exc:  # a filter that is registered but fails: broken data
        raise InputError(f"{path}: the frames cannot be read ({exc})") from exc
