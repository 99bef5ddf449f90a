"""What happens to the object and probe when a stage changes the number of states, modes or
slices.

* A change of the number of object states replaces all states by the previous mean object ×
  ``exp(i·noise)`` with seeded, band-limited Gaussian phase noise of standard deviation
  ``state_noise_rad`` (one state: the mean itself).
* A ``state_model: displacements`` stage finds the atom sites of the mean object
  (:func:`~caviar_napari.core.displaced_states.find_cells`) and starts every state as the mean
  with its atoms displaced: by seeded Gaussian displacements of standard deviation
  ``state_displacement_A`` when it starts from identical states, or by the least-squares
  displacements of the previous stage's states when there are as many. Without atoms inside
  the scanned field (no atomic resolution) the stage's states are free, and
  ``diagnostics[STATE_MODEL_FALLBACK]`` says so.
* A change of probe modes keeps the first modes and adds Hermite–Gauss modes orthogonalised
  against them, total power preserved.
* A change of slices redistributes the total transmission evenly: each new slice is
  ``exp(Σ_j log O_j / S_new)``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np

from caviar_napari.core import optics
from caviar_napari.core.backend import get_backend
from caviar_napari.core.displaced_states import (
    DisplacedStates,
    find_cells,
    project_displacements,
)
from caviar_napari.core.optics import BAND_LIMIT
from caviar_napari.data.config import StageConfig
from caviar_napari.data.recon import ReconState

__all__ = [
    "MODE_DECAY",
    "STATE_MODEL_FALLBACK",
    "adapt_object",
    "adapt_probe",
    "adapt_state",
    "band_limited_noise",
    "start_displacements",
    "orthogonal_mixing",
]

#: Relative power of the probe modes added at a stage change (ratio of successive modes).
MODE_DECAY = 0.3
#: The ``diagnostics`` key of the stages whose ``displacements`` model fell back to free states
#: (stage name → the warning).
STATE_MODEL_FALLBACK = "state_model_fallback"


def band_limited_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: float, pixel: tuple[float, float]
) -> np.ndarray:
    """Gaussian noise ``(…, H, W)`` filtered to the object band limit, std ``sigma``."""
    white = rng.standard_normal(shape)
    mask = optics.band_limit_mask(shape[-2:], pixel, BAND_LIMIT)
    noise = np.fft.ifft2(np.fft.fft2(white) * mask).real
    std = float(noise.std())
    return noise * (sigma / std) if std > 0 else noise


def adapt_object(
    obj: np.ndarray, stage: StageConfig, rng: np.random.Generator, pixel: tuple[float, float]
) -> np.ndarray:
    n_old, s_old = obj.shape[:2]
    if s_old != stage.slices:
        total = np.log(obj).sum(axis=1, keepdims=True)  # per-slice logs: no phase wrapping
        obj = np.repeat(np.exp(total / stage.slices), stage.slices, axis=1).astype(obj.dtype)
    if n_old != stage.object_states:
        mean = obj.mean(axis=0, keepdims=True)
        if stage.object_states == 1:
            obj = mean
        elif stage.state_model == "displacements":  # displaced by start_displacements
            obj = np.repeat(mean, stage.object_states, axis=0)
        else:
            shape = (stage.object_states, *obj.shape[1:])
            noise = band_limited_noise(rng, shape, stage.state_noise_rad, pixel)
            obj = (mean * np.exp(1j * noise)).astype(obj.dtype)
    return np.ascontiguousarray(obj)


def adapt_probe(probe: np.ndarray, n_modes: int) -> np.ndarray:
    m_old = probe.shape[0]
    if m_old == n_modes:
        return probe
    power = float(np.sum(np.abs(probe) ** 2))
    if n_modes < m_old:
        kept = probe[:n_modes]
    else:
        cand = optics.probe_modes(probe[0], n_modes, decay=MODE_DECAY)[m_old:]
        old = probe.reshape(m_old, -1).astype(np.complex128)
        new = cand.reshape(n_modes - m_old, -1)
        # orthogonalise the new modes against the kept ones, keep their powers
        basis = np.linalg.qr(old.T)[0]  # (K², m_old) orthonormal
        new_norm = np.linalg.norm(new, axis=1, keepdims=True)
        new = new - (new @ basis.conj()) @ basis.T
        q = np.linalg.qr(new.T)[0].T  # orthonormal among themselves
        new = q * new_norm
        kept = np.concatenate([old, new]).reshape(n_modes, *probe.shape[1:])
    kept = kept * math.sqrt(power / float(np.sum(np.abs(kept) ** 2)))
    return kept.astype(probe.dtype)


def start_displacements(
    state: ReconState,
    stage: StageConfig,
    rng: np.random.Generator,
    previous: np.ndarray,
    region: tuple[slice, slice] | None = None,
) -> bool:
    """Sites and starting displacements of a ``state_model: displacements`` stage, in place.

    ``previous`` are the states before the stage (several: their least-squares displacements
    are kept; identical ones: seeded random displacements); ``region`` the scanned field's
    pixels (None: the whole object). Returns False, changing nothing, when the mean object
    has no atom inside the region (nothing to displace).
    """
    mean = np.asarray(state.object).mean(axis=0)
    region = region or (slice(0, mean.shape[-2]), slice(0, mean.shape[-1]))
    cells = find_cells(mean, state.pixel_size_A, state.object_origin_A, region)
    if cells.n_sites == 0:
        return False
    backend = get_backend("cpu", "double")
    model = DisplacedStates(
        backend, cells, state.pixel_size_A, remove_shifts=stage.remove_state_shifts
    )
    n = stage.object_states
    u = None
    if previous.shape[0] == n:
        _, u = model.fit(np.asarray(previous, dtype=np.complex128))
    if u is None or not np.any(u):
        u = rng.standard_normal((n, cells.n_sites, 2)) * stage.state_displacement_A
        u = project_displacements(np, u, stage.remove_state_shifts)
    state.state_sites = cells.sites
    state.state_displacements = np.asarray(u, dtype=np.float64)
    states = model.states(mean[None].astype(np.complex128), state.state_displacements)
    state.object = states.astype(state.object.dtype)
    return True


def adapt_state(
    state: ReconState,
    stage: StageConfig,
    rng: np.random.Generator,
    source_fwhm_A: float,
    region: tuple[slice, slice] | None = None,
) -> None:
    """Adapt ``state`` in place to the start of ``stage`` (states, modes, slices, source).

    A stage with a Gaussian source starts from the previous stage's source size, or from
    ``source_fwhm_A`` (the configuration's start value) after a coherent stage; a coherent stage
    sets the size to 0. ``region``: the scanned field's pixels, where a ``displacements`` stage
    looks for atoms (:func:`start_displacements`).
    """
    previous = state.object
    state.object = adapt_object(state.object, stage, rng, state.pixel_size_A)
    state.state_sites = state.state_displacements = None
    state.diagnostics.get(STATE_MODEL_FALLBACK, {}).pop(stage.name, None)
    if stage.state_model == "displacements" and stage.object_states > 1:
        if not start_displacements(state, stage, rng, previous, region):
            state.diagnostics.setdefault(STATE_MODEL_FALLBACK, {})[stage.name] = (
                f"stage '{stage.name}': no atom found in the phase of the mean object inside "
                "the scanned field, so the object states are free objects, not displaced atoms "
                "('state_model: displacements' needs atomic resolution)"
            )
            free = dataclasses.replace(stage, state_model="free")
            state.object = adapt_object(previous, free, rng, state.pixel_size_A)
    state.probe = adapt_probe(state.probe, stage.probe_modes)
    if stage.partial_coherence == "gaussian":
        state.source_fwhm_A = state.source_fwhm_A or float(source_fwhm_A)
    else:
        state.source_fwhm_A = 0.0
    state.slice_thickness_A = np.asarray(stage.thicknesses_A(), dtype=np.float64)
    state.optimiser_state = None
    state.rng_state = copy.deepcopy(rng.bit_generator.state)


def orthogonal_mixing(xp: Any, probe: Any) -> Any:
    """``(M, M)`` unitary W such that ``W @ probe`` has orthogonal modes, strongest first.

    From the eigenvectors of the modes' Gram matrix ``G = P* Pᵀ`` (``M × M``): with
    ``G = V Λ V^H``, ``W = V^H`` reordered by decreasing Λ makes ``W P`` the eigenmodes of the
    mutual intensity ``Σ_m |p_m⟩⟨p_m|``, which the intensity depends on alone.
    """
    m = probe.shape[0]
    flat = probe.reshape(m, -1)
    gram = (flat.conj() @ flat.T).astype(np.complex128)
    lam, vec = xp.linalg.eigh(gram)
    order = xp.argsort(-lam)
    return vec[:, order].T.astype(probe.dtype)
