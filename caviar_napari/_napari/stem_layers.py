"""napari layers of a 4D-STEM file: the 4D data and its virtual bright-field image.

World coordinates: the scan axes are in Å of the scan frame (scan point ``[0, 0]`` at its stored
position), the detector axes in mrad with zero scattering angle at 0 mrad.  The 4D layer's
metadata carries the :class:`~caviar_napari.io.dataset.STEMDataset` (``"caviar_dataset"``) and
the file path (``"caviar_path"``) for the Reconstruction widget.

Qt-free; the functions only read files and compute arrays.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from caviar_napari.io.dataset import STEMDataset
from caviar_napari.viewmodels.layer_keys import DATASET_KEY, PATH_KEY

__all__ = [
    "DATASET_KEY",
    "PATH_KEY",
    "STEM_AXIS_LABELS",
    "stem_layer_data",
    "stem_layers_from_dataset",
    "virtual_bright_field",
]

#: Axis labels of the 4D layer.
STEM_AXIS_LABELS = ("scan_y", "scan_x", "ky", "kx")

LayerDataTuple = tuple[Any, dict[str, Any], str]


def _detector_angles_mrad(dataset: STEMDataset) -> tuple[np.ndarray, np.ndarray]:
    ky, kx = dataset.detector_shape
    dky, dkx = dataset.angular_sampling_mrad
    return (np.arange(ky) - ky // 2) * dky, (np.arange(kx) - kx // 2) * dkx


def virtual_bright_field(dataset: STEMDataset) -> np.ndarray:
    """Virtual bright-field image: the intensity inside the convergence disc at each scan point.

    Parameters
    ----------
    dataset
        The 4D-STEM dataset.

    Returns
    -------
    numpy.ndarray
        ``(Sy, Sx)`` float32 sum over detector pixels with scattering angle ≤ α.
    """
    ay, ax = _detector_angles_mrad(dataset)
    inside = ay[:, None] ** 2 + ax[None, :] ** 2 <= dataset.convergence_semiangle_mrad**2
    if not inside.any():  # α smaller than one pixel: the central pixel
        inside[dataset.detector_shape[0] // 2, dataset.detector_shape[1] // 2] = True
    return np.tensordot(dataset.intensities, inside.astype(np.float32), axes=([2, 3], [0, 1]))


def _contrast(data: np.ndarray) -> list[float]:
    """Contrast limits from a subsample of patterns: 0 (or the minimum) to the maximum."""
    sample = data[:: max(1, data.shape[0] // 8), :: max(1, data.shape[1] // 8)]
    lo = min(float(sample.min()), 0.0)
    hi = float(sample.max())
    return [lo, hi if hi > lo else lo + 1.0]


def stem_layers_from_dataset(
    dataset: STEMDataset, name: str, path: str = ""
) -> list[LayerDataTuple]:
    """The 4D layer and the virtual bright-field layer of ``dataset``.

    Parameters
    ----------
    dataset
        The 4D-STEM dataset.
    name
        Base layer name (usually the file stem).
    path
        File path recorded in the 4D layer's metadata.

    Returns
    -------
    list of LayerDataTuple
        ``[(intensities, kwargs, "image"), (vbf, kwargs, "image")]``; the virtual BF is
        ``(Sy, Sx, 1, 1)`` on the same scan grid (hidden; shown with the scan axes displayed).
    """
    dy, dx = dataset.scan_step_A
    dky, dkx = dataset.angular_sampling_mrad
    ky, kx = dataset.detector_shape
    y0, x0 = (float(v) for v in np.asarray(dataset.positions_A)[0, 0])
    k0 = (-(ky // 2) * dky, -(kx // 2) * dkx)
    meta = {
        DATASET_KEY: dataset,
        PATH_KEY: path,
        "energy_eV": dataset.energy_eV,
        "convergence_semiangle_mrad": dataset.convergence_semiangle_mrad,
        "scan_rotation_deg": dataset.scan_rotation_deg,
    }
    four_d = (
        dataset.intensities,
        {
            "name": f"{name} 4D-STEM",
            "axis_labels": STEM_AXIS_LABELS,
            "units": ("Å", "Å", "mrad", "mrad"),
            "scale": (dy, dx, dky, dkx),
            "translate": (y0, x0, *k0),
            "colormap": "inferno",
            "contrast_limits": _contrast(dataset.intensities),
            # diffraction patterns span decades: a low gamma shows the dark field and the disc
            "gamma": 0.3,
            "metadata": meta,
        },
        "image",
    )
    # napari aligns layers by their trailing dimensions, so a 2D image would land on the detector
    # axes; the virtual BF is therefore a (Sy, Sx, 1, 1) layer on the scan axes whose single
    # detector pixel spans the whole detector: it appears when the scan axes are displayed.
    vbf = virtual_bright_field(dataset)[:, :, None, None]
    bf = (
        vbf,
        {
            "name": f"{name} virtual BF",
            "axis_labels": STEM_AXIS_LABELS,
            "units": ("Å", "Å", "mrad", "mrad"),
            "scale": (dy, dx, ky * dky, kx * dkx),
            "translate": (y0, x0, k0[0] + (ky - 1) * dky / 2, k0[1] + (kx - 1) * dkx / 2),
            "colormap": "gray",
            "visible": False,
            "metadata": {
                PATH_KEY: path,
                "detector": f"|θ| ≤ {dataset.convergence_semiangle_mrad:g} mrad",
                "how_to_view": "display the scan axes (roll dims) to see the image",
            },
        },
        "image",
    )
    return [four_d, bf]


def stem_layer_data(path: str | os.PathLike) -> list[LayerDataTuple]:
    """Read a 4D-STEM file (any format :func:`~caviar_napari.io.readers.load_stem` reads).

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    list of LayerDataTuple
        The 4D layer (axis labels ``("scan_y", "scan_x", "ky", "kx")``, scale Å/Å/mrad/mrad,
        translate putting the scan in the scan frame and zero angle at 0 mrad) and the virtual
        bright-field image on the same scan grid.
    """
    from caviar_napari.io.readers import load_stem

    p = Path(path)
    dataset = load_stem(p)
    return stem_layers_from_dataset(dataset, p.stem, str(p))
