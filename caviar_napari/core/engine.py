"""The reconstruction engine: staged mixed-object, mixed-probe multislice ptychography.

:func:`run` is a generator: it yields a :class:`Progress` after every optimiser iteration and
returns the final :class:`ReconState` (``StopIteration.value``; :func:`run_to_end` does that for
you). It honours a :class:`RunControl` between iterations: ``stop()`` makes it return the
current state, ``pause()`` blocks it until ``resume()`` or ``stop()``.

Setup (:func:`plan_geometry`)
    * Detector data are padded (if needed) and ``ifftshift``-ed once into FFT order; the model
      works on amplitudes ``sqrt(I)``.
    * The probe window is the detector. When more than ``PAD_TOLERANCE`` of the mean pattern's
      intensity lies beyond the 2/3-Nyquist band limit of that window (the model's waves cannot
      reach it), the detector is zero-padded in reciprocal space to the smallest FFT-friendly
      even size whose band limit contains the data (``detector_padding: auto``). Padded pixels,
      and any measured pixel beyond the band limit, are excluded from the loss by the detector
      mask. The reconstruction pixel is ``1 / (K_padded · dk)``.
    * Scan positions are rotated into the detector frame by ``scan_rotation_deg``
      (:meth:`STEMDataset.rotated_positions_A`: ``y' = y cos θ + x sin θ``,
      ``x' = x cos θ − y sin θ``); the object lives in that frame, which is the scan frame when
      θ = 0. The object grid covers every probe window (scan extent + half a window on each side)
      plus ``object_padding_px`` (rounded up to FFT-friendly sizes on the far side);
      ``object_origin_A`` is the position of pixel ``[0, 0]``.
    * The initial probe comes from the optics (aperture, defocus) and is scaled so that its total
      power equals the data's mean total intensity per pattern (``norm="ortho"`` FFTs).
    * The initial object is 1 (vacuum), one state, the stage's slices.

Objective
    ``f = L_data / C + R_l1 + R_mw`` with ``C`` the total measured intensity inside the detector
    mask, so the reported loss is dimensionless (the relative squared amplitude error for the
    Gaussian loss) and regulariser weights are comparable across datasets. The losses are those
    of :mod:`caviar_napari.core.loss`; the data term is paper eq. S8 divided by ``C``.

Regularisers (object only, when the object is refined)
    * l1 absorption, :func:`l1_absorption`: ``λ₁ · mean_pixels sqrt(a² + ε²)`` with
      ``a = −log|O|`` (the absorption), a smoothed ``|a|`` (``ε = 1e-3``) so that L-BFGS sees a
      differentiable objective. It pulls the amplitude towards 1.
    * Missing wedge, :func:`missing_wedge` (multislice only): applied as a *penalty*, not as a
      filter, so the optimiser minimises one consistent objective:
      ``w · mean_pixels Σ_k W(k) |F₃O(k)|²`` with the 3-D unitary FFT over (slice, y, x) of each
      state and ``W = 1 − (2/π) arctan(β² k_r² / k_z²)`` (``W = 0`` at ``k_z = 0``), which is ~1
      in the cone ``|k_z| ≫ β k_r`` that a single projection cannot measure and → 0 outside it.
      The projected (slice-summed) structure, ``k_z = 0``, is never penalised.
    Regulariser gradients are projected onto the object band limit, as the data gradient is.

Stages
    Each stage starts from the previous stage's result. A change of the number of object states
    replaces all states by the previous mean object × ``exp(i·noise)`` with seeded, band-limited
    Gaussian phase noise of standard deviation ``state_noise_rad`` (one state: the mean itself).
    A change of probe modes keeps the first modes and adds Hermite–Gauss modes orthogonalised
    against them, total power preserved. A change of slices redistributes the total
    transmission evenly: each new slice is ``exp(Σ_j log O_j / S_new)``.

Convergence
    A stage ends early when an iteration finds no decrease at all (L-BFGS and the
    gradient-descent fallback both fail: converged to the arithmetic's precision).

Resume
    The :class:`ReconState` carries the optimiser memory and the RNG state; running from a
    stopped or checkpointed state continues exactly where it left off (same iterates, to the bit
    on the same machine and backend).

Checkpoints
    Every ``config.checkpoint_every`` iterations the engine hands the synchronised state to the
    ``on_checkpoint`` callback of :func:`run`; it does not write files itself (core imports
    nothing of io).  Whoever starts a run passes the writer, e.g.
    ``on_checkpoint=caviar_napari.io.reconstruction.checkpoint_writer(config.checkpoint_path)``.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft

from caviar_napari import __version__
from caviar_napari.core import optics
from caviar_napari.core.backend import Backend, get_backend
from caviar_napari.core.memory import MemoryEstimate, estimate_memory, require_memory
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.core.optics import BAND_LIMIT
from caviar_napari.core.optimise import make_optimiser
from caviar_napari.data.config import ReconstructionConfig, StageConfig, config_json
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.data.recon import ReconState
from caviar_napari.errors import InputError

log = logging.getLogger(__name__)

#: Called with the state at every checkpoint (see :func:`run`); must not keep the arrays.
CheckpointCallback = Callable[[ReconState], None]

#: Largest fraction of the mean pattern's intensity allowed beyond the band limit unpadded (and
#: left beyond the band limit of the padded window).  It must be far below the thermal diffuse
#: signal the object states are fitted to: on the hBN validation data (60 kV, 35 mrad, 300 K) the
#: whole incoherent part of the data is worth about 2e-7 of the loss, and with 1e-3 (84 × 48
#: unpadded, 2e-4 of the intensity beyond the band limit) the band-limited object could not
#: represent the data to better than 3e-6: the states then fitted that misfit instead of the
#: vibrations (docs/validation.md).
PAD_TOLERANCE = 1e-6
#: Smoothing of the l1 absorption penalty, ``sqrt(a² + ε²)``.
L1_EPS = 1e-3
#: Relative power of the probe modes added at a stage change (ratio of successive modes).
MODE_DECAY = 0.3

__all__ = [
    "BAND_LIMIT",
    "CheckpointCallback",
    "Geometry",
    "config_json",
    "initial_state",
    "measured_amplitudes",
    "Progress",
    "ReconState",
    "RunControl",
    "estimate_run_memory",
    "l1_absorption",
    "missing_wedge",
    "plan_geometry",
    "run",
    "run_to_end",
]


# ---------------------------------------------------------------- records
@dataclass
class Progress:
    """Report after one iteration.

    Attributes
    ----------
    stage_name, stage_index, n_stages
        Which stage runs.
    iteration
        Iterations done in total (1-based count); ``total_iterations`` of all stages.
    stage_iteration, stage_iterations
        Iterations done in this stage, of how many.
    loss
        Objective after this iteration.
    elapsed_s, eta_s
        Seconds since this run started, and estimated seconds left.
    method, n_evals
        Optimiser step kind and objective evaluations it used.
    object, probe
        Host numpy copies every ``config.update_every`` iterations (and at a stage's last
        iteration), else None.
    """

    stage_name: str
    stage_index: int
    n_stages: int
    iteration: int
    total_iterations: int
    stage_iteration: int
    stage_iterations: int
    loss: float
    elapsed_s: float
    eta_s: float
    method: str = ""
    n_evals: int = 0
    object: np.ndarray | None = None
    probe: np.ndarray | None = None


class RunControl:
    """Thread-safe stop / pause / resume of a running reconstruction.

    Another thread (a widget) calls :meth:`stop`, :meth:`pause` and :meth:`resume`; the engine
    calls :meth:`checkpoint` between iterations, which blocks while paused.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def stop(self) -> None:
        """Ask the run to return its current state at the next iteration boundary."""
        self._stop.set()
        self._running.set()

    def pause(self) -> None:
        """Block the run at the next iteration boundary until :meth:`resume` or :meth:`stop`."""
        if not self._stop.is_set():
            self._running.clear()

    def resume(self) -> None:
        """Let a paused run continue."""
        self._running.set()

    @property
    def stopped(self) -> bool:
        """Whether a stop was requested."""
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        """Whether the run is (or will be) held at the next iteration boundary."""
        return not self._running.is_set()

    def checkpoint(self, timeout: float | None = None) -> bool:
        """Block while paused; return True when the run must stop."""
        self._running.wait(timeout)
        return self._stop.is_set()


# ---------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Geometry:
    """Grids of a reconstruction derived from a dataset.

    Attributes
    ----------
    window
        ``(Ky, Kx)`` probe window (the detector, possibly zero-padded).
    pad_offset
        ``(oy, ox)`` where the measured detector sits inside the (fft-shifted) window.
    pixel_size_A
        ``(dy, dx)`` object pixel, Å.
    detector_mask
        ``(Ky, Kx)`` bool, FFT order: pixels in the loss (measured and inside the band limit).
    positions_A
        ``(P, 2)`` probe positions in the object frame (rotated), Å.
    positions_px
        ``(P, 2)`` probe positions in object pixel coordinates.
    object_shape
        ``(H, W)``.
    object_origin_A
        ``(y, x)`` of pixel ``[0, 0]``, Å.
    """

    window: tuple[int, int]
    pad_offset: tuple[int, int]
    pixel_size_A: tuple[float, float]
    detector_mask: np.ndarray
    positions_A: np.ndarray
    positions_px: np.ndarray
    object_shape: tuple[int, int]
    object_origin_A: tuple[float, float]


def _fast_even(n: int) -> int:
    n = int(n)
    while True:
        m = scipy.fft.next_fast_len(n)
        if m % 2 == 0:
            return m
        n = m + 1


def _padded_window(dataset: STEMDataset, mode: str) -> tuple[int, int]:
    ky, kx = dataset.detector_shape
    if mode == "none":
        return ky, kx
    dky, dkx = dataset.reciprocal_sampling_invA
    mean = dataset.intensities.mean(axis=(0, 1), dtype=np.float64)
    qy = (np.arange(ky) - ky // 2)[:, None] * dky
    qx = (np.arange(kx) - kx // 2)[None, :] * dkx
    q = np.sqrt(qy**2 + qx**2)
    cutoff = BAND_LIMIT * min(ky * dky, kx * dkx) / 2.0
    total = float(mean.sum())
    outside = float(mean[q > cutoff * (1 + 1e-12)].sum()) / total
    if outside <= PAD_TOLERANCE:
        return ky, kx
    order = np.argsort(q, axis=None)
    cum = np.cumsum(mean.ravel()[order]) / total
    r_data = float(q.ravel()[order][min(np.searchsorted(cum, 1 - PAD_TOLERANCE), q.size - 1)])
    new = (
        max(ky, _fast_even(math.ceil(r_data * 2 / (BAND_LIMIT * dky) - 1e-9))),
        max(kx, _fast_even(math.ceil(r_data * 2 / (BAND_LIMIT * dkx) - 1e-9))),
    )
    log.info(
        "%.2g %% of the intensity lies beyond the 2/3 band limit of the %d×%d detector: "
        "zero-padding it to %d×%d (padding excluded from the loss)",
        100 * outside,
        ky,
        kx,
        *new,
    )
    return new


def plan_geometry(dataset: STEMDataset, config: ReconstructionConfig) -> Geometry:
    """Probe window, pixel size, detector mask, positions and object grid for ``dataset``."""
    ky0, kx0 = dataset.detector_shape
    ky, kx = _padded_window(dataset, config.detector_padding)
    dky, dkx = dataset.reciprocal_sampling_invA
    pixel = (1.0 / (ky * dky), 1.0 / (kx * dkx))
    oy, ox = ky // 2 - ky0 // 2, kx // 2 - kx0 // 2
    measured = np.zeros((ky, kx), bool)
    measured[oy : oy + ky0, ox : ox + kx0] = True
    band = optics.band_limit_mask((ky, kx), pixel, BAND_LIMIT) > 0  # FFT order
    mask = np.fft.ifftshift(measured) & band

    pos = dataset.rotated_positions_A().reshape(-1, 2)
    d = np.asarray(pixel)
    half = np.array([ky // 2, kx // 2]) + config.object_padding_px
    origin = pos.min(axis=0) - half * d
    pos_px = (pos - origin) / d
    far = np.floor(pos_px.max(axis=0) + 0.5).astype(int)
    # FFT-friendly sizes (band-limit projections of the object run every evaluation)
    shape = (
        scipy.fft.next_fast_len(int(far[0] + (ky - ky // 2) + config.object_padding_px)),
        scipy.fft.next_fast_len(int(far[1] + (kx - kx // 2) + config.object_padding_px)),
    )
    return Geometry(
        window=(ky, kx),
        pad_offset=(oy, ox),
        pixel_size_A=(float(pixel[0]), float(pixel[1])),
        detector_mask=mask,
        positions_A=pos,
        positions_px=pos_px,
        object_shape=shape,
        object_origin_A=(float(origin[0]), float(origin[1])),
    )


def measured_amplitudes(dataset: STEMDataset, geom: Geometry) -> np.ndarray:
    """``(P, Ky, Kx)`` float32 amplitudes ``sqrt(I)``, zero-padded, in FFT (unshifted) order."""
    sy, sx = dataset.scan_shape
    ky0, kx0 = dataset.detector_shape
    ky, kx = geom.window
    oy, ox = geom.pad_offset
    padded = np.zeros((sy * sx, ky, kx), np.float32)
    padded[:, oy : oy + ky0, ox : ox + kx0] = dataset.intensities.reshape(sy * sx, ky0, kx0)
    padded = np.fft.ifftshift(padded, axes=(-2, -1))
    return np.sqrt(padded, out=padded)


def _masked_total(dataset: STEMDataset, geom: Geometry) -> float:
    """Total measured intensity inside the detector mask (all patterns), the loss normaliser."""
    ky0, kx0 = dataset.detector_shape
    oy, ox = geom.pad_offset
    summed = np.zeros(geom.window)
    summed[oy : oy + ky0, ox : ox + kx0] = dataset.intensities.sum(axis=(0, 1), dtype=np.float64)
    total = float(np.sum(np.fft.ifftshift(summed) * geom.detector_mask))
    if not total > 0:
        raise InputError(
            f"{dataset.source or 'dataset'}: no measured intensity inside the band-limited "
            "detector area"
        )
    return total


# ---------------------------------------------------------------- regularisers
def l1_absorption(obj: Any, weight: float, xp: Any = np, eps: float = L1_EPS) -> tuple[float, Any]:
    """Smoothed l1 penalty on the absorption ``a = −log|O|`` and its Wirtinger gradient.

    ``R = weight · mean(sqrt(a² + ε²) − ε)``;
    ``∂R/∂O* = weight/n · (a / sqrt(a² + ε²)) · ∂a/∂O*`` with ``∂a/∂O* = −O / (2|O|²)``.

    Parameters
    ----------
    obj
        ``(N, S, H, W)`` complex transmission.
    weight
        λ₁ (dimensionless, relative to the normalised data loss).

    Returns
    -------
    penalty, gradient
        Float and ``∂R/∂O*`` of the shape and dtype of ``obj``.
    """
    n = obj.size
    mag2 = obj.real**2 + obj.imag**2
    mag2 = xp.maximum(mag2, np.finfo(mag2.dtype).tiny)
    a = -0.5 * xp.log(mag2)
    root = xp.sqrt(a * a + eps * eps)
    value = weight * float(xp.sum(root - eps, dtype=np.float64)) / n
    coef = (-(weight / n) * 0.5) * (a / root) / mag2
    return value, (coef * obj).astype(obj.dtype, copy=False)


def wedge_weight(
    n_slices: int,
    object_shape: tuple[int, int],
    pixel_size_A: tuple[float, float],
    dz_A: float,
    beta: float,
) -> np.ndarray:
    """``(S, H, W)`` missing-wedge weight ``1 − (2/π) arctan(β² k_r² / k_z²)`` (0 at k_z = 0)."""
    kz = np.fft.fftfreq(n_slices, dz_A)[:, None, None]
    ky = np.fft.fftfreq(object_shape[0], pixel_size_A[0])[None, :, None]
    kx = np.fft.fftfreq(object_shape[1], pixel_size_A[1])[None, None, :]
    kr2 = ky**2 + kx**2
    with np.errstate(divide="ignore", invalid="ignore"):
        w = 1.0 - (2.0 / np.pi) * np.arctan(beta**2 * kr2 / kz**2)
    return np.where(kz == 0, 0.0, w)


def missing_wedge(obj: Any, weight: float, wedge: Any, backend: Backend) -> tuple[float, Any]:
    """Missing-wedge penalty ``weight · mean_pixels Σ W |F₃O|²`` and its Wirtinger gradient.

    Parameters
    ----------
    obj
        ``(N, S, H, W)`` complex transmission.
    weight
        Penalty weight (dimensionless, relative to the normalised data loss).
    wedge
        ``(S, H, W)`` weight from :func:`wedge_weight` (backend array).

    Returns
    -------
    penalty, gradient
        ``R`` and ``∂R/∂O* = weight/n · F₃⁻¹(W · F₃O)`` (unitary transforms).
    """
    xp = backend.xp
    n = obj.size
    spec = xp.fft.fft(backend.fft2(obj), axis=1, norm="ortho")
    weighted = spec * wedge
    value = weight * float(xp.sum((weighted * spec.conj()).real, dtype=np.float64)) / n
    grad = backend.ifft2(xp.fft.ifft(weighted, axis=1, norm="ortho"), overwrite=True)
    grad *= weight / n
    return value, grad.astype(obj.dtype, copy=False)


# ---------------------------------------------------------------- stage changes
def _band_limited_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: float, pixel: tuple[float, float]
) -> np.ndarray:
    """Gaussian noise ``(…, H, W)`` filtered to the object band limit, std ``sigma``."""
    white = rng.standard_normal(shape)
    mask = optics.band_limit_mask(shape[-2:], pixel, BAND_LIMIT)
    noise = np.fft.ifft2(np.fft.fft2(white) * mask).real
    std = float(noise.std())
    return noise * (sigma / std) if std > 0 else noise


def _adapt_object(
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
        else:
            shape = (stage.object_states, *obj.shape[1:])
            noise = _band_limited_noise(rng, shape, stage.state_noise_rad, pixel)
            obj = (mean * np.exp(1j * noise)).astype(obj.dtype)
    return np.ascontiguousarray(obj)


def _adapt_probe(probe: np.ndarray, n_modes: int) -> np.ndarray:
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


def _adapt_state(state: ReconState, stage: StageConfig, rng: np.random.Generator) -> None:
    state.object = _adapt_object(state.object, stage, rng, state.pixel_size_A)
    state.probe = _adapt_probe(state.probe, stage.probe_modes)
    state.slice_thickness_A = np.asarray(stage.thicknesses_A(), dtype=np.float64)
    state.optimiser_state = None
    state.rng_state = copy.deepcopy(rng.bit_generator.state)


# ---------------------------------------------------------------- setup
def initial_state(
    dataset: STEMDataset, config: ReconstructionConfig, geom: Geometry, dtype: Any
) -> ReconState:
    """Flat object (1 state of the first stage's slices), optics probe scaled to the data."""
    stage = config.stages[0]
    defocus = dataset.defocus_A if config.defocus_A is None else config.defocus_A
    probe = optics.make_probe(
        geom.window,
        geom.pixel_size_A,
        dataset.energy_eV,
        dataset.convergence_semiangle_mrad,
        defocus_A=defocus,
    )
    probe = probe * math.sqrt(dataset.mean_total_intensity / float(np.sum(np.abs(probe) ** 2)))
    probe = optics.probe_modes(probe, stage.probe_modes, decay=MODE_DECAY)
    obj = np.ones((1, stage.slices, *geom.object_shape), dtype=dtype)
    return ReconState(
        object=obj,
        probe=np.asarray(probe, dtype=dtype),
        tilt_mrad=np.asarray(config.tilt_mrad, dtype=np.float64),
        loss=[],
        pixel_size_A=geom.pixel_size_A,
        object_origin_A=geom.object_origin_A,
        slice_thickness_A=np.asarray(stage.thicknesses_A(), dtype=np.float64),
        config=config,
        source=dataset.source,
        scan_positions_A=geom.positions_A.copy(),
        scan_rotation_deg=dataset.scan_rotation_deg,
        version=__version__,
    )


def _check_state(state: ReconState, geom: Geometry) -> None:
    obj = np.asarray(state.object)
    if obj.ndim != 4 or tuple(obj.shape[2:]) != geom.object_shape:
        raise InputError(
            f"the starting state's object {obj.shape} does not fit this dataset's grid "
            f"(…, {geom.object_shape[0]}, {geom.object_shape[1]})"
        )
    if tuple(np.asarray(state.probe).shape[1:]) != geom.window:
        raise InputError(
            f"the starting state's probe {np.shape(state.probe)} does not match the "
            f"{geom.window[0]}×{geom.window[1]} probe window of this dataset"
        )
    if not np.allclose(state.pixel_size_A, geom.pixel_size_A, rtol=1e-6) or not np.allclose(
        state.object_origin_A, geom.object_origin_A, rtol=0, atol=1e-6 * max(geom.pixel_size_A)
    ):
        raise InputError(
            f"the starting state's grid (pixel {state.pixel_size_A} Å, origin "
            f"{state.object_origin_A} Å) differs from this dataset's (pixel {geom.pixel_size_A} Å, "
            f"origin {geom.object_origin_A} Å)"
        )


def estimate_run_memory(
    dataset: STEMDataset,
    config: ReconstructionConfig,
    backend: Backend | None = None,
    geom: Geometry | None = None,
) -> MemoryEstimate:
    """Memory estimate of ``config`` on ``dataset`` (see :mod:`caviar_napari.core.memory`)."""
    backend = backend or get_backend(config.device, config.precision)
    geom = geom or plan_geometry(dataset, config)

    def batch_plan(stage: StageConfig) -> tuple[int, int]:
        # the same model the stage will build (forward-only: no data needed to size it)
        model = MultisliceModel(
            backend,
            wavelength_A=dataset.wavelength_A,
            pixel_size_A=geom.pixel_size_A,
            slice_thickness_A=stage.thicknesses_A(),
            positions_px=geom.positions_px,
            object_shape=geom.object_shape,
            window=geom.window,
            batch_size=config.batch_size,
        )
        want = frozenset(stage.refine)
        n, m = stage.object_states, stage.probe_modes
        return model.batch_size_for(n, m, want), model.working_bytes(n, m, want)

    return estimate_memory(
        n_patterns=geom.positions_px.shape[0],
        window=geom.window,
        object_shape=geom.object_shape,
        stages=config.stages,
        batch_size=config.batch_size or 1,
        complex_itemsize=np.dtype(backend.complex_dtype).itemsize,
        available_bytes=backend.free_memory_bytes(),
        device=backend.name,
        batch_plan=batch_plan,
    )


# ---------------------------------------------------------------- objective
class _Objective:
    """``f(x) = L_data/C + regularisers`` over the refined blocks of one stage."""

    def __init__(
        self,
        model: MultisliceModel,
        backend: Backend,
        stage: StageConfig,
        fixed: dict[str, Any],
        norm: float,
        pixel: tuple[float, float],
    ) -> None:
        self.model = model
        self.backend = backend
        self.stage = stage
        self.fixed = fixed
        self.inv_norm = 1.0 / norm
        self.want = frozenset(stage.refine)
        xp = backend.xp
        shape = model.object_shape
        self.obj_band = xp.asarray(
            optics.band_limit_mask(shape, pixel, BAND_LIMIT), dtype=backend.real_dtype
        )
        self.wedge = None
        if stage.missing_wedge > 0 and stage.slices > 1:
            dz = float(np.mean(stage.thicknesses_A()))
            w = wedge_weight(stage.slices, shape, pixel, dz, stage.missing_wedge_beta)
            self.wedge = xp.asarray(
                w * optics.band_limit_mask(shape, pixel, BAND_LIMIT)[None], dtype=backend.real_dtype
            )

    def blocks(self, x: dict[str, Any]) -> tuple[Any, Any, Any]:
        get = lambda k: x[k] if k in x else self.fixed[k]  # noqa: E731
        return get("object"), get("probe"), get("tilt")

    def __call__(self, x: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        be = self.backend
        obj, probe, tilt = self.blocks(x)
        loss, grads = self.model.loss_and_gradient(obj, probe, tilt, want=self.want)
        f = loss * self.inv_norm
        out = {k: grads[k] * self.inv_norm for k in self.want}
        if "object" in self.want:
            reg = None
            if self.stage.l1_absorption > 0:
                v, reg = l1_absorption(obj, self.stage.l1_absorption, be.xp)
                f += v
                reg = be.ifft2(be.fft2(reg) * self.obj_band, overwrite=True)
            if self.wedge is not None:
                v, g = missing_wedge(obj, self.stage.missing_wedge, self.wedge, be)
                f += v
                reg = g if reg is None else reg + g
            if reg is not None:
                out["object"] = out["object"] + reg.astype(out["object"].dtype, copy=False)
        return f, out


# ---------------------------------------------------------------- the run
def _host_copy(backend: Backend, a: Any) -> np.ndarray:
    return np.array(backend.to_host(a), copy=True)


def run(
    dataset: STEMDataset,
    config: ReconstructionConfig,
    *,
    state: ReconState | None = None,
    control: RunControl | None = None,
    on_checkpoint: CheckpointCallback | None = None,
) -> Generator[Progress, None, ReconState]:
    """Run (or continue) a staged reconstruction.

    Parameters
    ----------
    dataset
        The 4D-STEM data.
    config
        The configuration (validated again here).
    state
        None to start from a flat object and the optics probe; a :class:`ReconState` (e.g. a
        stopped run or a checkpoint) to continue from its stage and iteration, with its
        optimiser memory and RNG state — the continuation equals an uninterrupted run. A state
        at ``stage_index = stage_iteration = 0`` is a starting guess, adapted to stage 0.
    control
        Stop / pause / resume requests from another thread.
    on_checkpoint
        Called with the state (host arrays, optimiser memory and RNG state synchronised) every
        ``config.checkpoint_every`` iterations, e.g. a writer of the reconstruction file
        (:func:`caviar_napari.io.reconstruction.checkpoint_writer`).  The state is the live one:
        the callback must write or copy what it needs before it returns.  Required when
        ``config.checkpoint_every`` > 0.

    Yields
    ------
    Progress
        After every iteration.

    Returns
    -------
    ReconState
        The final (or stopped) state, host arrays.

    Raises
    ------
    MemoryBudgetError
        The estimate exceeds the device's free memory (message: needed vs available, advice).
    InputError
        Inconsistent configuration, state or dataset, or checkpoints asked for without an
        ``on_checkpoint`` callback.
    """
    config = ReconstructionConfig.from_dict(config.to_dict())
    if config.checkpoint_every and on_checkpoint is None:
        raise InputError(
            f"'checkpoint_every' is {config.checkpoint_every} but the run was given no "
            f"checkpoint writer for '{config.checkpoint_path}' (engine.run(on_checkpoint=...))"
        )
    backend = get_backend(config.device, config.precision)
    xp = backend.xp
    geom = plan_geometry(dataset, config)
    require_memory(estimate_run_memory(dataset, config, backend, geom))
    cdt = backend.complex_dtype
    if state is None:
        state = initial_state(dataset, config, geom, cdt)
    else:
        _check_state(state, geom)
        state = state.copy()
        state.object = np.asarray(state.object, dtype=cdt)
        state.probe = np.asarray(state.probe, dtype=cdt)
        state.config = config
    rng = np.random.default_rng(config.seed)
    if state.rng_state is not None:
        rng.bit_generator.state = copy.deepcopy(state.rng_state)

    amplitudes_dev = xp.asarray(measured_amplitudes(dataset, geom))
    norm = _masked_total(dataset, geom)
    n_stages = len(config.stages)
    start_iteration = state.iteration
    t0 = time.perf_counter()

    if state.stage_index >= n_stages:
        raise InputError(
            f"the starting state is at stage {state.stage_index}, but the configuration has "
            f"only {n_stages} stage(s)"
        )
    while True:
        stage = config.stages[state.stage_index]
        if state.stage_iteration == 0 and state.optimiser_state is None:
            _adapt_state(state, stage, rng)
        if state.stage_iteration < stage.iterations:
            stopped = yield from _run_stage(
                state,
                stage,
                config,
                dataset,
                geom,
                backend,
                amplitudes_dev,
                norm,
                control,
                on_checkpoint,
                start_iteration,
                t0,
            )
            if stopped:
                return state
        if state.stage_index == n_stages - 1:
            return state
        state.stage_index += 1
        state.stage_iteration = 0
        state.optimiser_state = None


def _run_stage(
    state: ReconState,
    stage: StageConfig,
    config: ReconstructionConfig,
    dataset: STEMDataset,
    geom: Geometry,
    backend: Backend,
    amplitudes: Any,
    norm: float,
    control: RunControl | None,
    on_checkpoint: CheckpointCallback | None,
    start_iteration: int,
    t0: float,
) -> Generator[Progress, None, bool]:
    """Iterate one stage from ``state.stage_iteration``; returns True when stopped."""
    cdt = backend.complex_dtype
    model = MultisliceModel(
        backend,
        wavelength_A=dataset.wavelength_A,
        pixel_size_A=geom.pixel_size_A,
        slice_thickness_A=state.slice_thickness_A,
        positions_px=geom.positions_px,
        object_shape=geom.object_shape,
        amplitudes=amplitudes,
        detector_mask=geom.detector_mask,
        loss=config.loss,
        batch_size=config.batch_size,
    )
    blocks = {
        "object": backend.asarray(state.object, dtype=cdt),
        "probe": backend.asarray(state.probe, dtype=cdt),
        "tilt": backend.asarray(state.tilt_mrad, dtype=backend.real_dtype),
    }
    x = {k: v for k, v in blocks.items() if k in stage.refine}
    fixed = {k: v for k, v in blocks.items() if k not in stage.refine}
    fun = _Objective(model, backend, stage, fixed, norm, geom.pixel_size_A)
    opt = make_optimiser(
        stage.optimizer,
        memory=stage.lbfgs_memory,
        xp=backend.xp,
        typical={"tilt": 1.0},
        state_blocks=("object",),
    )
    if state.optimiser_state is not None:
        opt.import_state(state.optimiser_state)

    def sync(x: dict[str, Any]) -> None:
        obj, probe, tilt = fun.blocks(x)
        state.object = _host_copy(backend, obj)
        state.probe = _host_copy(backend, probe)
        state.tilt_mrad = np.asarray(backend.to_host(tilt), dtype=np.float64).copy()
        state.optimiser_state = opt.export_state()

    n_stages = len(config.stages)
    total_iterations = config.total_iterations
    f, g = fun(x)
    while state.stage_iteration < stage.iterations:
        if control is not None and control.checkpoint():
            sync(x)
            return True
        x, f, g, info = opt.step(fun, x, f, g)
        state.stage_iteration += 1
        state.iteration += 1
        state.loss.append(float(f))
        if info.method == "stalled":
            # no decrease along the gradient either: converged to the arithmetic's precision;
            # further iterations would repeat the same failed search
            log.info(
                "stage '%s': no further decrease at iteration %d (converged); ending the stage",
                stage.name,
                state.stage_iteration,
            )
            state.stage_iteration = stage.iterations
        last = state.stage_iteration == stage.iterations
        due_update = config.update_every and (state.iteration % config.update_every == 0 or last)
        due_ckpt = config.checkpoint_every and state.iteration % config.checkpoint_every == 0
        if due_ckpt or last:
            sync(x)
        if due_ckpt and on_checkpoint is not None:
            on_checkpoint(state)
            log.debug("checkpoint at iteration %d", state.iteration)
        elapsed = time.perf_counter() - t0
        done = state.iteration - start_iteration
        obj_copy = probe_copy = None
        if due_update:
            obj, probe, _ = fun.blocks(x)
            obj_copy, probe_copy = _host_copy(backend, obj), _host_copy(backend, probe)
        yield Progress(
            stage_name=stage.name,
            stage_index=state.stage_index,
            n_stages=n_stages,
            iteration=state.iteration,
            total_iterations=total_iterations,
            stage_iteration=state.stage_iteration,
            stage_iterations=stage.iterations,
            loss=float(f),
            elapsed_s=elapsed,
            eta_s=elapsed / done * (total_iterations - state.iteration) if done else math.nan,
            method=info.method,
            n_evals=info.n_evals,
            object=obj_copy,
            probe=probe_copy,
        )
    return False


def run_to_end(
    dataset: STEMDataset,
    config: ReconstructionConfig,
    *,
    state: ReconState | None = None,
    control: RunControl | None = None,
    on_checkpoint: CheckpointCallback | None = None,
) -> ReconState:
    """Drive :func:`run` to its end and return the final :class:`ReconState`."""
    gen = run(dataset, config, state=state, control=control, on_checkpoint=on_checkpoint)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
