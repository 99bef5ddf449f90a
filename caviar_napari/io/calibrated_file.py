"""The calibrated 4D-STEM file written by ``caviar calibrate`` (conventions §6, kind ``stem``).

It is an ordinary conventions §6 input: ``caviar reconstruct`` reads it as it is.  The found
values are its attributes (``scan_rotation_deg``, ``defocus_A``, the detector attributes
``detector_transposed``, ``pattern_centre_px`` and optionally ``descan_px_per_A``, see
:mod:`caviar_napari.io.dataset`), ``probe_initial`` is written when a vacuum pattern was given,
and the group ``calibration`` records the report (attribute ``report_json``) and the source.

The intensities are either **linked** — an HDF5 external link ``intensities →
SOURCE:/key``, with ``SOURCE`` relative to the calibrated file's folder (HDF5 resolves it from
there), so a 10 GB file is neither copied nor changed; keep the two files together — or
**copied** (chunked by pattern, float32).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from caviar_napari.data.dataset import STEMDataset
from caviar_napari.io._h5util import json_default
from caviar_napari.io.atomic import atomic_h5

__all__ = ["IntensityLink", "write_calibrated_h5"]


@dataclass(frozen=True)
class IntensityLink:
    """Where the stored intensities are: an HDF5 file and the path of its 4D dataset."""

    file: Path
    key: str


def write_calibrated_h5(
    path: str | os.PathLike,
    dataset: STEMDataset,
    *,
    attrs: Mapping[str, Any],
    report: Mapping[str, Any],
    link: IntensityLink | None = None,
    probe_initial: np.ndarray | None = None,
) -> None:
    """Write the calibrated file atomically (module docstring).

    Parameters
    ----------
    path
        Output file.
    dataset
        The data as read; copied unless ``link`` is given (then only its scan positions are
        written).
    attrs
        Root attributes: the conventions §6 calibration and the detector attributes.
    report
        The calibration's values and confidences (JSON-able), stored in ``calibration``.
    link
        Link the intensities instead of copying them.
    probe_initial
        ``(mode, Ky', Kx')`` complex probe, or None.
    """
    out = Path(path)
    with atomic_h5(out) as f:
        if link is None:
            chunks = (1, 1, *dataset.detector_shape)
            dset = f.create_dataset(
                "intensities", shape=dataset.intensities.shape, dtype=np.float32, chunks=chunks
            )
            for row in range(dataset.scan_shape[0]):
                dset[row] = np.asarray(dataset.intensities[row], dtype=np.float32)
        else:
            target = os.path.relpath(link.file.resolve(), out.resolve().parent)
            f["intensities"] = h5py.ExternalLink(target, link.key)
        f.create_dataset("scan/positions_A", data=np.asarray(dataset.positions_A, np.float64))
        for key, value in attrs.items():
            f.attrs[key] = value
        if probe_initial is not None:
            f.create_dataset("probe_initial", data=np.asarray(probe_initial, np.complex64))
        group = f.create_group("calibration")
        group.attrs["report_json"] = json.dumps(dict(report), default=json_default)
        group.attrs["source"] = str(dataset.source)
        group.attrs["intensities"] = (
            "copied" if link is None else f"linked to {link.file}:{link.key}"
        )
