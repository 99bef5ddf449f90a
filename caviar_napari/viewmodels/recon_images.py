"""Images of a reconstruction ready to become napari layers (Qt-free, meant for a worker).

A reconstruction is shown as three Image layers whose world coordinates are Å in the scan frame
(docs/ARCHITECTURE.md):

* ``<name> phase``: ``np.angle(object)``, dims ``(state, slice, y, x)``, ``scale (1, 1, dy, dx)``,
  ``translate (0, 0, y0, x0)`` with ``(y0, x0)`` the object origin, so it overlays the scan;
* ``<name> amplitude``: ``|object|``, same geometry, hidden by default;
* ``<name> probe modes``: the probe-mode intensities side by side (2D, mode 0 on the left), each
  mode scaled to its own maximum so weak modes stay visible (their power fractions are in the
  layer metadata), placed to the right of the object on the same Å scale with the first mode's
  lens axis at the scan-frame ``y`` of the object centre;

and a hidden Points layer ``<name> scan positions`` (the nominal ones when the positions were
refined; the refined positions and the arrows from the nominal ones are then two more layers,
:mod:`caviar_napari.viewmodels.recon_positions`).  Everything a layer needs, contrast limits
and their range included, is computed here, so the main thread only assigns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from caviar_napari.core.grid import as_pair
from caviar_napari.errors import InputError
from caviar_napari.viewmodels.layer_keys import RECON_ROLE_KEY
from caviar_napari.viewmodels.recon_positions import (
    ScanRefinement,
    refinement_layer_tuples,
    typical_step_A,
)

OBJECT_AXES = ("state", "slice", "y", "x")
LayerDataTuple = tuple[Any, dict[str, Any], str]


@dataclass(frozen=True)
class ReconImages:
    """Host images of a reconstruction, ready to become napari layers.

    Attributes
    ----------
    phase
        ``(state, slice, y, x)`` float32 object phase in rad.
    amplitude
        ``(state, slice, y, x)`` float32 object amplitude ``|O|``.
    probe_montage
        ``(Ky, M*Kx + (M-1)*gap)`` float32 probe-mode intensities, each scaled to its maximum.
    probe_powers
        ``(M,)`` float64 fraction of the total probe power in each mode.
    pixel_size_A
        ``(dy, dx)`` object pixel in Å.
    object_origin_A
        ``(y0, x0)`` position of object pixel ``[0, 0]`` in the scan frame (Å).
    probe_origin_A
        ``(y, x)`` position of the montage's pixel ``[0, 0]`` in the scan frame (Å).
    scan_positions_A
        ``(P, 2)`` probe positions ``(y, x)`` in the object frame (Å), or None.
    phase_limits, amplitude_limits
        Display contrast limits: the 0.5 and 99.5 percentiles inside the scanned area (over
        all states and slices), where the data constrain the object; the unconstrained border
        would otherwise set the contrast. The whole array when no positions are known.
    phase_range, amplitude_range
        ``(min, max)`` of the whole arrays: the range of the layers' contrast sliders.
    refinement
        The nominal and refined scan positions when a stage refined them (None otherwise, and
        in live images).
    """

    phase: np.ndarray
    amplitude: np.ndarray
    probe_montage: np.ndarray
    probe_powers: np.ndarray
    pixel_size_A: tuple[float, float]
    object_origin_A: tuple[float, float]
    probe_origin_A: tuple[float, float]
    scan_positions_A: np.ndarray | None = None
    phase_limits: tuple[float, float] | None = None
    amplitude_limits: tuple[float, float] | None = None
    phase_range: tuple[float, float] | None = None
    amplitude_range: tuple[float, float] | None = None
    refinement: ScanRefinement | None = None


def probe_montage(probe: np.ndarray, gap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lay the probe-mode intensities side by side, each scaled to its own maximum.

    Parameters
    ----------
    probe
        ``(M, Ky, Kx)`` complex probe modes (real space).
    gap
        Empty columns between modes; default ``max(2, Kx // 8)``.

    Returns
    -------
    montage
        ``(Ky, M*Kx + (M-1)*gap)`` float32 in ``[0, 1]``.
    powers
        ``(M,)`` float64 fraction of the total power in each mode.
    """
    probe = np.asarray(probe)
    if probe.ndim != 3:
        raise InputError(f"probe must have shape (mode, y, x), got {probe.shape}")
    m, ky, kx = probe.shape
    gap = max(2, kx // 8) if gap is None else int(gap)
    intensity = probe.real.astype(np.float64) ** 2 + probe.imag.astype(np.float64) ** 2
    power = intensity.sum(axis=(1, 2))
    total = power.sum()
    powers = power / total if total > 0 else np.zeros_like(power)
    peak = intensity.max(axis=(1, 2), keepdims=True)
    scaled = np.divide(intensity, peak, out=np.zeros_like(intensity), where=peak > 0)
    padded = np.zeros((m, ky, kx + gap), dtype=np.float32)
    padded[:, :, :kx] = scaled
    montage = padded.transpose(1, 0, 2).reshape(ky, m * (kx + gap))[:, : m * (kx + gap) - gap]
    return np.ascontiguousarray(montage), powers


def reconstruction_images(
    obj: np.ndarray,
    probe: np.ndarray,
    pixel_size_A: float | tuple[float, float],
    object_origin_A: tuple[float, float],
    scan_positions_A: np.ndarray | None = None,
    *,
    states_shown: int | None = None,
    refinement: ScanRefinement | None = None,
) -> ReconImages:
    """Compute the phase, amplitude and probe images of a reconstruction (host, float32).

    Parameters
    ----------
    obj
        ``(state, slice, H, W)`` complex object (host numpy).
    probe
        ``(mode, Ky, Kx)`` complex probe (host numpy, real space, centred).
    pixel_size_A
        ``(dy, dx)`` object pixel in Å (scalar for both).
    object_origin_A
        ``(y0, x0)`` position of object pixel ``[0, 0]`` in the scan frame (Å).
    scan_positions_A
        ``(P, 2)`` probe positions in the object frame (Å), shown as a Points layer.
    states_shown
        Show a single-state object in this many state slots (a read-only broadcast, no copy):
        a live display keeps its layers' shape through a run whose first stage has one state,
        so napari's dims never change mid-run.  None: the object's own states.
    refinement
        Refined scan positions (:func:`~caviar_napari.viewmodels.recon_positions.scan_refinement`),
        shown as their own layers.
    """
    obj = np.asarray(obj)
    if obj.ndim != 4:
        raise InputError(f"object must have shape (state, slice, y, x), got {obj.shape}")
    dy, dx = as_pair(pixel_size_A, "pixel_size_A")
    y0, x0 = as_pair(object_origin_A, "object_origin_A")
    montage, powers = probe_montage(probe)
    height, width = obj.shape[-2:]
    ky = np.asarray(probe).shape[1]
    gap_px = max(4, width // 20)
    probe_origin = (y0 + (height // 2 - ky // 2) * dy, x0 + (width + gap_px) * dx)
    phase = np.angle(obj).astype(np.float32)
    amplitude = np.abs(obj).astype(np.float32)
    positions = (
        None
        if scan_positions_A is None
        else np.asarray(scan_positions_A, dtype=np.float64).reshape(-1, 2)
    )
    window = scanned_window(positions, (dy, dx), (y0, x0), (height, width))
    limits = {
        "phase_limits": display_limits(phase[..., window[0], window[1]]),
        "amplitude_limits": display_limits(amplitude[..., window[0], window[1]]),
        "phase_range": value_range(phase),
        "amplitude_range": value_range(amplitude),
    }
    if states_shown is not None and obj.shape[0] == 1 and states_shown > 1:
        phase = np.broadcast_to(phase, (int(states_shown), *phase.shape[1:]))
        amplitude = np.broadcast_to(amplitude, (int(states_shown), *amplitude.shape[1:]))
    return ReconImages(
        phase=phase,
        amplitude=amplitude,
        probe_montage=montage,
        probe_powers=powers,
        pixel_size_A=(dy, dx),
        object_origin_A=(y0, x0),
        probe_origin_A=probe_origin,
        scan_positions_A=positions,
        refinement=refinement,
        **limits,
    )


def scanned_window(
    positions_A: np.ndarray | None,
    pixel_size_A: tuple[float, float],
    origin_A: tuple[float, float],
    shape: tuple[int, int],
) -> tuple[slice, slice]:
    """``(rows, cols)`` slices of the object pixels inside the bounding box of the scan.

    The whole object when ``positions_A`` is None or the box holds less than one pixel.
    """
    if positions_A is None or len(positions_A) == 0:
        return slice(None), slice(None)
    px = (positions_A - np.asarray(origin_A)) / np.asarray(pixel_size_A)
    lo = np.clip(np.floor(px.min(axis=0)).astype(int), 0, np.asarray(shape) - 1)
    hi = np.clip(np.ceil(px.max(axis=0)).astype(int) + 1, lo + 1, np.asarray(shape))
    return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))


def display_limits(values: np.ndarray, percent: float = 0.5) -> tuple[float, float]:
    """Contrast limits: the ``percent`` and ``100 − percent`` percentiles of ``values``."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [percent, 100.0 - percent])
    return _widen(float(lo), float(hi))


def value_range(values: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of the finite ``values`` (a non-empty interval; ``(0, 1)`` if none)."""
    finite = np.asarray(values)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    return _widen(float(finite.min()), float(finite.max()))


def _widen(lo: float, hi: float) -> tuple[float, float]:
    """``(lo, hi)``, with ``hi`` moved just above ``lo`` when they coincide."""
    if hi <= lo:
        hi = lo + max(abs(lo), 1.0) * 1e-6
    return lo, hi


def layer_tuples(
    images: ReconImages,
    *,
    name: str = "reconstruction",
    metadata: dict[str, Any] | None = None,
) -> list[LayerDataTuple]:
    """napari layer-data tuples (phase, amplitude, probe modes, scan positions) for ``images``.

    The scan positions (when known) are a hidden Points layer ``"<name> scan positions"``
    in the same Å frame, which shows where the probe was on the object; when they were
    refined it holds the nominal ones, and the refined positions and the arrows from the
    nominal ones follow (:func:`~caviar_napari.viewmodels.recon_positions.refinement_layer_tuples`).

    Parameters
    ----------
    images
        Output of :func:`reconstruction_images`.
    name
        Prefix of the layer names: ``"<name> phase"``, ``"<name> amplitude"``,
        ``"<name> probe modes"``.
    metadata
        Extra metadata of the phase layer (e.g. the reconstruction state under ``STATE_KEY``).
    """
    dy, dx = images.pixel_size_A
    y0, x0 = images.object_origin_A
    geometry = {
        "scale": (1.0, 1.0, dy, dx),
        "translate": (0.0, 0.0, y0, x0),
        "axis_labels": OBJECT_AXES,
        "units": ("pixel", "pixel", "Å", "Å"),
    }
    phase_meta = {RECON_ROLE_KEY: "phase", **(metadata or {})}
    powers = [round(float(p), 6) for p in images.probe_powers]
    tuples: list[LayerDataTuple] = [
        (
            images.phase,
            {
                "name": f"{name} phase",
                "colormap": "gray",
                "contrast_limits": images.phase_limits,
                "metadata": phase_meta,
                **geometry,
            },
            "image",
        ),
        (
            images.amplitude,
            {
                "name": f"{name} amplitude",
                "colormap": "gray",
                "contrast_limits": images.amplitude_limits,
                "visible": False,
                "metadata": {RECON_ROLE_KEY: "amplitude"},
                **geometry,
            },
            "image",
        ),
        (
            images.probe_montage,
            {
                "name": f"{name} probe modes",
                "colormap": "magma",
                "contrast_limits": (0.0, 1.0),
                "scale": (dy, dx),
                "translate": images.probe_origin_A,
                "axis_labels": ("y", "x"),
                "units": ("Å", "Å"),
                "metadata": {RECON_ROLE_KEY: "probe", "caviar_probe_powers": powers},
            },
            "image",
        ),
    ]
    if images.scan_positions_A is not None and len(images.scan_positions_A):
        positions = images.scan_positions_A
        if images.refinement is not None:
            positions = images.refinement.nominal_A
        spacing = typical_step_A(positions)
        tuples.append(
            (
                positions,
                {
                    "name": f"{name} scan positions",
                    "size": 0.3 * spacing if spacing > 0 else 3 * dy,
                    "face_color": "#4fc3f7",
                    "border_width": 0.0,
                    "opacity": 0.7,
                    "visible": False,
                    "axis_labels": ("y", "x"),
                    "units": ("Å", "Å"),
                    "metadata": {RECON_ROLE_KEY: "scan"},
                },
                "points",
            )
        )
    if images.refinement is not None:
        tuples += refinement_layer_tuples(images.refinement, name)
    return tuples


def contrast_ranges(images: ReconImages) -> dict[str, tuple[float, float]]:
    """Contrast-slider range of each image layer of :func:`layer_tuples`, by role."""
    return {
        "phase": images.phase_range or value_range(images.phase),
        "amplitude": images.amplitude_range or value_range(images.amplitude),
        "probe": (0.0, 1.0),
    }
