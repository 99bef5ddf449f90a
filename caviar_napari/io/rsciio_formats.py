"""Detector formats read through rosettasciio (optional extra ``formats``).

rosettasciio returns, for each signal in a file, its array (lazy: a memory map or a dask
array), its axes (``scale``, ``units``, ``navigate``), its metadata and the file's own
metadata (``original_metadata``), and for some formats a ``mapping`` from the file's metadata
to HyperSpy's that HyperSpy, not rosettasciio, applies.  Here the mapping is applied, the
navigation axes are put first, and the calibration is read into conventions §1 units:

* scan axes (``nm``, ``µm`` …) → ``scan_step_A``; detector axes in ``rad``/``mrad`` →
  ``angular_sampling_mrad``, in ``1/nm``/``1/Å`` → ``reciprocal_sampling_invA``;
* ``Acquisition_instrument.TEM.beam_energy`` (keV) → ``energy_eV``;
  ``…TEM.convergence_angle`` (mrad) → ``convergence_semiangle_mrad``;

plus what each format records that rosettasciio leaves in its own metadata
(:class:`RsciioFormat`):

==================  ===========================================================================
Merlin ``.mib``     frames of a 384-byte (one chip) or 768-byte (quad) ASCII header and the
                    big-endian pixels; the ``.hdr`` beside it gives the scan (``Frames per
                    Trigger`` is the row length).  No beam or detector calibration is recorded.
                    rosettasciio reverses the detector rows (Merlin's display orientation);
                    ``scan_shape=(Sy, Sx)`` reads a file without its ``.hdr``.
Gatan ``.dm3/.dm4``  the tag tree's ``ImageData/Calibrations/Dimension`` (scale and units per
                    axis, fastest first) and ``ImageTags/Microscope Info/Voltage`` (V).
EMPAD ``.xml``      the XML header names the raw file of 128 × 130 float32 frames (2 footer
                    rows dropped); ``iom_measurements/high_voltage`` (V) → ``energy_eV``,
                    ``…/calibrated_diffraction_angle`` (rad per pixel, EMPAD 2) →
                    ``angular_sampling_mrad``; the scan field of view and the legacy
                    ``calibrated_pixelsize`` are read by rosettasciio.
==================  ===========================================================================
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io.reader_common import (
    Calibration,
    Kind,
    ReadOptions,
    detector_calibration,
    length_A,
    make_dataset,
)

__all__ = [
    "DIGITAL_MICROGRAPH",
    "EMPAD",
    "MERLIN",
    "RsciioFormat",
    "empad_header",
    "empad_kind",
    "load_empad",
    "load_rsciio",
    "rsciio_kind",
]

log = logging.getLogger(__name__)


def _no_options(options: ReadOptions) -> dict[str, Any]:
    return {}


def _no_calibration(original: Mapping[str, Any], source: str) -> Calibration:
    return Calibration()


@dataclass(frozen=True)
class RsciioFormat:
    """A rosettasciio plugin and what this reader adds to it.

    Attributes
    ----------
    plugin
        The ``rsciio`` sub-module (``"quantumdetector"``, ``"digitalmicrograph"`` …).
    read_arguments
        ``read_arguments(options) -> dict``: keyword arguments of the plugin's
        ``file_reader`` from the :class:`ReadOptions`.
    calibration
        ``calibration(original_metadata, source) -> Calibration``: the items the format
        records that rosettasciio does not map (conventions §1 units).
    """

    plugin: str
    read_arguments: Callable[[ReadOptions], dict[str, Any]] = _no_options
    calibration: Callable[[Mapping[str, Any], str], Calibration] = _no_calibration


def _merlin_arguments(options: ReadOptions) -> dict[str, Any]:
    """rosettasciio's ``navigation_shape`` is ``(x, y)``: the scan shape reversed."""
    if options.scan_shape is None:
        return {}
    return {"navigation_shape": (options.scan_shape[1], options.scan_shape[0])}


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) and out > 0 else None


def _empad_calibration(original: Mapping[str, Any], source: str) -> Calibration:
    """Beam energy and (EMPAD 2) detector sampling from the XML's ``iom_measurements``."""
    iom = original.get("root", {}).get("iom_measurements", {})
    cal = Calibration()
    if not isinstance(iom, Mapping):
        return cal
    volts = _number(iom.get("high_voltage", iom.get("ColumnSourceHighVoltage")))
    if volts is not None:
        cal.energy_eV = volts
    angle = _number(iom.get("calibrated_diffraction_angle"))
    if angle is not None:
        cal.angular_sampling_mrad = (angle * 1e3, angle * 1e3)
    return cal


MERLIN = RsciioFormat("quantumdetector", read_arguments=_merlin_arguments)
DIGITAL_MICROGRAPH = RsciioFormat("digitalmicrograph")
EMPAD = RsciioFormat("empad", calibration=_empad_calibration)


def _reader(plugin: str, path: Path) -> Any:
    """The ``file_reader`` of rosettasciio's ``plugin`` (InputError when it is not installed)."""
    try:
        module = importlib.import_module(f"rsciio.{plugin}")
    except ImportError as exc:
        raise InputError(
            f"{path}: reading {path.suffix.lower()} files needs rosettasciio "
            "(pip install caviar-napari[formats])"
        ) from exc
    return module.file_reader


def _axis_units(axis: Mapping[str, Any]) -> str:
    units = axis.get("units")
    if units is None or type(units).__name__ == "_UndefinedType":
        return ""
    return str(units).replace("μ", "µ")  # Greek mu → micro sign


def _lookup(tree: Any, path: list[str]) -> Any:
    """The value at a dotted ``path`` of nested mappings (a key's spaces may be written as
    underscores, as HyperSpy's mappings do); None where absent."""
    node = tree
    for key in path:
        if not isinstance(node, Mapping):
            return None
        if key in node:
            node = node[key]
        elif key.replace("_", " ") in node:
            node = node[key.replace("_", " ")]
        else:
            return None
    return node


def _mapped_metadata(signal: Mapping[str, Any]) -> dict[str, Any]:
    """The signal's metadata with rosettasciio's ``mapping`` applied (what HyperSpy does on
    loading): ``{source path in original_metadata: (target path, function or None)}``."""
    import copy

    meta: dict[str, Any] = copy.deepcopy(dict(signal.get("metadata") or {}))
    original = signal.get("original_metadata") or {}
    for source, (target, func) in (signal.get("mapping") or {}).items():
        value = _lookup(original, source.split("."))
        if value is None or isinstance(value, Mapping):
            continue
        if func is not None:
            try:
                value = func(value)
            except Exception:  # a third-party converter; the item is simply not mapped
                log.debug("metadata mapping %s → %s failed", source, target)
                continue
        node = meta
        *parents, leaf = target.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return meta


def rsciio_kind(path: Path, *, fmt: RsciioFormat) -> Kind | None:
    """``"stem"`` when rosettasciio finds a 4D signal (lazy: headers only), or when
    rosettasciio is missing (:func:`load_rsciio` then explains that it is needed)."""
    try:
        reader = _reader(fmt.plugin, path)
    except InputError:
        return "stem"
    try:
        signals = reader(str(path), lazy=True)
    except Exception:  # a file rosettasciio cannot parse is not ours to claim
        return None
    return "stem" if any(np.ndim(s.get("data")) == 4 for s in signals) else None


def load_rsciio(
    path: Path,
    override: Calibration,
    options: ReadOptions,
    *,
    fmt: RsciioFormat,
    target: Path | None = None,
) -> STEMDataset:
    """Read ``target`` (default ``path``) with rosettasciio (module docstring); messages
    name ``path``."""
    target = path if target is None else target
    reader = _reader(fmt.plugin, target)
    arguments = fmt.read_arguments(options)
    try:
        try:  # lazy (dask, memory-mapped) where the plugin can
            signals = reader(str(target), lazy=True, **arguments)
        except NotImplementedError:
            signals = reader(str(target), **arguments)
    except InputError:
        raise
    except Exception as exc:  # rosettasciio raises many types for malformed files
        raise InputError(
            f"{path}: rosettasciio could not read the file ({type(exc).__name__}: {exc})"
        ) from exc
    four_d = [s for s in signals if np.ndim(s.get("data")) == 4]
    if not four_d:
        shapes = [np.shape(s.get("data")) for s in signals]
        hint = " (give scan_shape=(Sy, Sx))" if fmt is MERLIN else ""
        raise InputError(
            f"{path}: no 4D-STEM data (rank 4) in the file; found shapes {shapes}{hint}"
        )
    sig = four_d[0]
    data = sig["data"]
    axes = sorted(sig["axes"], key=lambda a: a.get("index_in_array", 0))
    nav = [a for a in axes if a.get("navigate", False)]
    det = [a for a in axes if not a.get("navigate", False)]
    if len(nav) != 2 or len(det) != 2:
        raise InputError(
            f"{path}: expected 2 navigation and 2 signal axes, got {len(nav)} and {len(det)}"
        )
    order = [axes.index(a) for a in nav + det]
    if order != [0, 1, 2, 3]:
        data = np.transpose(data, order)
    cal = Calibration()
    steps = [
        length_A(float(a.get("scale", 1.0)), _axis_units(a), f"axis {a.get('name')}", str(path))
        for a in nav
    ]
    if all(s is not None for s in steps):
        cal.scan_step_A = (steps[0], steps[1])
    dets = [
        detector_calibration(
            float(a.get("scale", 1.0)), _axis_units(a), f"axis {a.get('name')}", str(path)
        )
        for a in det
    ]
    if all(d[0] is not None for d in dets):
        cal.angular_sampling_mrad = (dets[0][0], dets[1][0])
    elif all(d[1] is not None for d in dets):
        cal.reciprocal_sampling_invA = (dets[0][1], dets[1][1])
    tem = _mapped_metadata(sig).get("Acquisition_instrument", {}).get("TEM", {})
    if _number(tem.get("beam_energy")) is not None:  # keV in HyperSpy's metadata convention
        cal.energy_eV = float(tem["beam_energy"]) * 1e3
    if _number(tem.get("convergence_angle")) is not None:  # mrad
        cal.convergence_semiangle_mrad = float(tem["convergence_angle"])
    recorded = fmt.calibration(sig.get("original_metadata") or {}, str(path))
    cal = cal.merged(recorded, str(path)).merged(override, str(path))
    return make_dataset(
        data,
        cal,
        path.name,
        options=options,
        how=f"the {target.suffix.lower()} file does not record them: pass them as keyword "
        "arguments (e.g. load_stem(path, energy_eV=..., convergence_semiangle_mrad=..., "
        "scan_step_A=..., angular_sampling_mrad=...))",
    )


# ------------------------------------------------------------------------------ EMPAD
def empad_header(raw: Path) -> Path | None:
    """The EMPAD XML header in the same folder that names ``raw``, if exactly one does."""
    matching = []
    for xml in sorted(raw.parent.glob("*.xml")):
        try:
            if raw.name in xml.read_text(errors="replace"):
                matching.append(xml)
        except OSError:
            continue
    return matching[0] if len(matching) == 1 else None


def empad_kind(path: Path) -> Kind | None:
    """An EMPAD XML header that names its raw file, or a raw file one header names."""
    if path.suffix.lower() == ".raw":
        header = empad_header(path)
        return None if header is None else empad_kind(header)
    try:
        head = path.read_text(errors="replace")[:4096]
    except OSError:
        return None
    if "raw_file" not in head:
        return None
    return rsciio_kind(path, fmt=EMPAD)


def load_empad(path: Path, override: Calibration, options: ReadOptions) -> STEMDataset:
    """EMPAD: rosettasciio reads the XML header; a raw file is read through the header that
    names it."""
    target = path
    if path.suffix.lower() == ".raw":
        target = empad_header(path)
        if target is None:
            raise InputError(
                f"{path}: EMPAD raw data need their XML header (an .xml file in the same folder "
                "naming this file); open that .xml file"
            )
    return load_rsciio(path, override, options, fmt=EMPAD, target=target)
