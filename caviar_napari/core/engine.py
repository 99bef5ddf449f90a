"""The reconstruction engine: staged mixed-object, mixed-probe multislice ptychography.

:func:`run` is a generator: it yields a :class:`Progress` after every optimiser iteration and
returns the final :class:`ReconState` (``StopIteration.value``; :func:`run_to_end` does that for
you). It honours a :class:`RunControl` between iterations: ``stop()`` makes it return the
current state, ``pause()`` blocks it until ``resume()`` or ``stop()``.

The parts it drives
    * :mod:`caviar_napari.core.geometry` — probe window, detector padding and mask, object grid;
    * :mod:`caviar_napari.core.objective` — data loss, regularisers, probe model (partial
      coherence);
    * :mod:`caviar_napari.core.states` — what a stage change does to states, modes and slices;
    * :mod:`caviar_napari.core.optimise` — L-BFGS with per-block scaling.
    The initial probe comes from the optics (aperture, defocus) and is scaled so that its total
    power equals the data's mean total intensity per pattern (``norm="ortho"`` FFTs); the
    initial object is 1 (vacuum), one state, the first stage's slices.

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
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from caviar_napari import __version__
from caviar_napari.core import coherence, minibatch, optics
from caviar_napari.core.backend import Backend, get_backend
from caviar_napari.core.displaced_states import DisplacedStates, cells_from_sites
from caviar_napari.core.geometry import (
    Geometry,
    masked_total,
    plan_geometry,
    resample_object,
    resample_probe,
    stage_padding,
)
from caviar_napari.core.holdout import PatternSplit, holdout_fraction, split_positions
from caviar_napari.core.memory import (
    USABLE_FRACTION,
    MemoryEstimate,
    MemoryInputs,
    plan_memory,
    require_memory,
)
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.core.objective import Objective
from caviar_napari.core.optimise import LBFGS, GradientDescent, make_optimiser
from caviar_napari.core.patterns import PatternFeed
from caviar_napari.core.positions import AFFINE_SIZE, ScanPositions
from caviar_napari.core.probe_constraints import ProbeConstraint
from caviar_napari.core.separation import (
    TREND_WINDOW,
    NoiseLevel,
    SeparationReport,
    noise_level,
    separation_report,
)
from caviar_napari.core.state_penalty import PenaltyPath
from caviar_napari.core.states import (
    MODE_DECAY,
    STATE_MODEL_FALLBACK,
    adapt_state,
    orthogonal_mixing,
)
from caviar_napari.core.tilt import align_slices, estimate_tilt
from caviar_napari.data.config import ReconstructionConfig, StageConfig
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.data.lazy import LazyIntensities, pattern_mean
from caviar_napari.data.recon import ReconState
from caviar_napari.errors import InputError, WorkerError

log = logging.getLogger(__name__)

#: Called with the state at every checkpoint (see :func:`run`); must not keep the arrays.
CheckpointCallback = Callable[[ReconState], None]

#: Per-element magnitudes of blocks that start at zero (the optimiser's first step sizes):
#: tilt 1 mrad, source σ 0.1 Å, position shifts 0.05 Å, affine entries/drift 0.01.
TYPICAL = {"tilt": 1.0, "source": 0.1, "positions": 0.05, "affine": 0.01, "displacements": 0.01}

__all__ = [
    "CheckpointCallback",
    "Progress",
    "RunControl",
    "estimate_run_memory",
    "initial_state",
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
    source_fwhm_A
        Source size of a partially coherent probe (FWHM, Å); 0 for a coherent one.
    separation
        At the last iteration of a stage with several object states: that stage's
        state-separation report (:meth:`SeparationReport.to_dict`, also in
        ``state.diagnostics["separation"]``), so a live display can say at once whether the
        states separated; else None.
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
    source_fwhm_A: float = 0.0
    separation: dict[str, Any] | None = None


class RunControl:
    """Thread-safe stop / pause / resume of a running reconstruction.

    Another thread (a widget) calls :meth:`stop`, :meth:`pause` and :meth:`resume`; the engine
    calls :meth:`checkpoint` between iterations, which blocks while paused.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._stop = False
        self._pause = False
        self._held = False

    def stop(self) -> None:
        """Ask the run to return its current state at the next iteration boundary."""
        with self._lock:
            self._stop, self._pause = True, False
            self._lock.notify_all()

    def pause(self) -> None:
        """Block the run at the next iteration boundary until :meth:`resume` or :meth:`stop`."""
        with self._lock:
            self._pause = not self._stop

    def resume(self) -> None:
        """Let a paused run continue."""
        with self._lock:
            self._pause = False
            self._lock.notify_all()

    @property
    def stopped(self) -> bool:
        """Whether a stop was requested."""
        return self._stop

    @property
    def paused(self) -> bool:
        """Whether the run is (or will be) held at the next iteration boundary."""
        return self._pause

    @property
    def held(self) -> bool:
        """Whether the run is blocked at an iteration boundary now (paused, and arrived)."""
        return self._held

    def checkpoint(self, timeout: float | None = None) -> bool:
        """Block while paused (at most ``timeout`` s); return True when the run must stop."""
        with self._lock:
            self._held = self._pause
            try:
                self._lock.wait_for(lambda: not self._pause, timeout)
            finally:
                self._held = False
            return self._stop


# ---------------------------------------------------------------- setup
def initial_state(
    dataset: STEMDataset, config: ReconstructionConfig, geom: Geometry, dtype: Any
) -> ReconState:
    """Flat object (1 state of the first stage's slices) and a probe scaled to the data: the
    dataset's measured ``probe_initial`` (moved onto the padded window) when it has one, else
    the optics' probe (aperture, defocus)."""
    stage = config.stages[0]
    if dataset.probe_initial is not None:
        probe = _on_window(dataset.probe_initial, geom.window)
    else:
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
        source_fwhm_A=config.source_fwhm_A if stage.partial_coherence == "gaussian" else 0.0,
        version=__version__,
    )


def _on_window(probe: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """A centred real-space probe on the detector grid, zero-padded in reciprocal space onto a
    (larger) probe window: the same angles, a finer real-space pixel."""
    p = np.asarray(probe)
    if p.ndim == 3:
        p = p[0]  # the strongest mode; the engine makes the others
    ky0, kx0 = p.shape
    ky, kx = window
    spectrum = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(p), norm="ortho"))
    padded = np.zeros((ky, kx), complex)
    oy, ox = ky // 2 - ky0 // 2, kx // 2 - kx0 // 2
    padded[oy : oy + ky0, ox : ox + kx0] = spectrum
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(padded), norm="ortho"))


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


def memory_budgets(config: ReconstructionConfig, backend: Backend) -> tuple[int, int]:
    """``(device, host)`` bytes the run may use: what is free, or the configured caps."""
    host = _host_available(backend)
    device = backend.free_memory_bytes()
    if config.host_memory_MB is not None:
        host = min(host, int(config.host_memory_MB * 1e6))
    if config.device_memory_MB is not None:
        device = min(device, int(config.device_memory_MB * 1e6))
    if backend.name == "cpu":
        device = min(device, host)  # the CPU's device is the host
        host = device
    return device, host


def _host_available(backend: Backend) -> int:
    from caviar_napari.core.backend import _host_available_bytes

    return _host_available_bytes() if backend.name == "gpu" else backend.free_memory_bytes()


def estimate_run_memory(
    dataset: STEMDataset,
    config: ReconstructionConfig,
    backend: Backend | None = None,
    geom: Geometry | None = None,
) -> MemoryEstimate:
    """The memory plan of ``config`` on ``dataset`` (see :mod:`caviar_napari.core.memory`):
    placements of the data and the L-BFGS history, bytes by part and pool.  ``geom``: the
    geometry to plan for; None: the one :func:`run` plans for (the stage with the largest probe
    window when stages pad the detector differently)."""
    # planned for the widest precision any stage computes in
    backend = (backend or get_backend(config.device)).with_precision(config.widest_precision)
    if geom is None:
        if any(stage.detector_padding is not None for stage in config.stages):
            geom = _largest_geometry(dataset, config, pattern_mean(dataset.intensities))
        else:
            geom = plan_geometry(dataset, config)
    device_bytes, host_bytes = memory_budgets(config, backend)
    workers = _cluster_workers(config)

    # a GPU batch takes the room the rest of the plan leaves (sized in a second pass)
    gpu_auto = backend.name == "gpu" and config.batch_size is None
    gpu_batch = [1]

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
            batch_size=gpu_batch[0] if gpu_auto else config.batch_size,
        )
        want = frozenset(stage.refine)
        n, m = stage.object_states, stage.model_modes
        return model.batch_size_for(n, m, want), model.working_bytes(n, m, want)

    inputs = MemoryInputs(
        n_patterns=geom.positions_px.shape[0],
        detector_shape=dataset.detector_shape,
        window=geom.window,
        object_shape=geom.object_shape,
        complex_itemsize=np.dtype(backend.complex_dtype).itemsize,
        device=backend.name,
        device_bytes=device_bytes,
        host_bytes=host_bytes,
        lazy=isinstance(dataset.intensities, LazyIntensities),
        workers=workers,
        batch_plan=batch_plan,
        batch_size=config.batch_size or 1,
    )
    plan = plan_memory(inputs, config.stages, config.lbfgs_history, config.data_placement)
    if gpu_auto and plan.fits:
        itemsize = np.dtype(backend.complex_dtype).itemsize
        per = max(
            MultisliceModel.bytes_per_pattern(
                geom.window,
                st.object_states,
                st.model_modes,
                st.slices,
                itemsize,
                tilt="tilt" in st.refine,
            )
            + geom.window[0] * geom.window[1] * itemsize // 2
            for st in config.stages
        )
        room = USABLE_FRACTION * plan.available_bytes - plan.needed_bytes
        local = -(-geom.positions_px.shape[0] // workers)
        gpu_batch[0] = int(max(1, min(local, 1 + room // per)))
        plan = plan_memory(inputs, config.stages, plan.history, plan.data)
    return plan


def _cluster_workers(config: ReconstructionConfig) -> int:
    """Worker processes of ``config.cluster`` as far as known before connecting (local:N)."""
    if config.cluster and config.cluster.startswith("local:"):
        return int(config.cluster.split(":")[1])
    return 1


# ---------------------------------------------------------------- the data
@dataclass
class _DataSource:
    """The measured data of a run and how every stage's forward model reaches them."""

    dataset: STEMDataset
    config: ReconstructionConfig
    backend: Backend
    geom: Geometry
    plan: MemoryEstimate
    feed: PatternFeed | None
    loss_eps: float
    evaluator: Any = None  # a distributed evaluator (core.distributed), or None
    mean: np.ndarray | None = None  # the mean pattern (per-stage geometries and norms)
    loss: str = "gaussian"  # the data loss in use (``loss: auto`` resolved)
    fit: np.ndarray | None = None  # fitted pattern indices (None: all)
    held: np.ndarray | None = None  # held-out pattern indices (None: none)

    def stage(self, index: int) -> tuple[Geometry, PatternSplit, NoiseLevel]:
        """Geometry, fitted/held-out patterns with their loss normalisers, and the counting
        noise of stage ``index`` (its own detector padding); the source then serves that
        stage's window."""
        padding = stage_padding(self.config, index)
        if padding == stage_padding(self.config, 0) or self.mean is None:
            geom = self.geom0
        else:
            geom = plan_geometry(self.dataset, self.config, padding=padding, mean_pattern=self.mean)
        if geom.window != self.geom.window:
            if self.evaluator is not None:
                raise InputError(
                    f"stage '{self.config.stages[index].name}': a per-stage detector_padding "
                    "needs a single-process run (no cluster)"
                )
            self.geom = geom
            self.feed = PatternFeed(
                self.backend, self.dataset.intensities, geom.window, geom.pad_offset,
                self.plan.data,
            )  # fmt: skip
            per_pixel = float(self.mean.sum()) / (geom.window[0] * geom.window[1])
            self.loss_eps = max(1e-6 * per_pixel, 1e-30)
        total = masked_total(self.dataset, self.geom, self.mean)
        n = self.dataset.scan_shape[0] * self.dataset.scan_shape[1]
        fit = np.arange(n) if self.fit is None else self.fit
        held = fit[:0] if self.held is None else self.held
        # the patterns' totals are near the mean's: each set's normaliser is its share
        split = PatternSplit(
            fit=fit,
            held=held,
            fit_norm=total * fit.size / n,
            held_norm=total * held.size / n if held.size else 1.0,
        )
        noise = noise_level(
            self.loss,
            _on_window_fft(self.mean, self.geom),
            self.geom.detector_mask,
            fit.size,
            split.fit_norm,
            self.dataset.is_counts,
            n_held=held.size,
            held_norm=split.held_norm,
        )
        return self.geom, split, noise

    def use_precision(self, precision: str, stage_name: str) -> None:
        """Compute from now on in ``precision`` (a stage's own): a new backend of the same
        device, and the patterns fed in its dtype."""
        if self.backend.precision == precision:
            return
        if self.evaluator is not None:
            raise InputError(
                f"stage '{stage_name}': a per-stage precision needs a single-process run (no "
                "cluster); set the configuration's 'precision' instead"
            )
        self.backend = self.backend.with_precision(precision)
        self.feed = PatternFeed(
            self.backend, self.dataset.intensities, self.geom.window, self.geom.pad_offset,
            self.plan.data,
        )  # fmt: skip
        log.info("stage '%s': computing in %s precision", stage_name, precision)

    def model(self, slice_thickness_A: Any, object_band_limit: bool = True) -> Any:
        """The stage's forward model: in this process, or spread over the cluster."""
        kw = dict(
            object_band_limit=object_band_limit,
            wavelength_A=self.dataset.wavelength_A,
            pixel_size_A=self.geom.pixel_size_A,
            slice_thickness_A=slice_thickness_A,
            positions_px=self.geom.positions_px,
            object_shape=self.geom.object_shape,
            detector_mask=self.geom.detector_mask,
            loss=self.loss,
            batch_size=self.config.batch_size or _plan_batch(self.backend, self.plan),
            loss_eps=self.loss_eps,
        )
        if self.evaluator is not None:
            return self.evaluator.model(window=self.geom.window, **kw)
        # batch index data are kept between evaluations in half the room the plan leaves
        room = USABLE_FRACTION * self.plan.available_bytes - self.plan.needed_bytes
        kw["batch_cache_bytes"] = int(min(256 << 20, max(0.0, room / 2)))
        return MultisliceModel(self.backend, patterns=self.feed, **kw)

    def __post_init__(self) -> None:
        self.geom0 = self.geom

    def close(self) -> None:
        """Release the cluster of a distributed run."""
        if self.evaluator is not None:
            self.evaluator.close()


def _on_window_fft(pattern: np.ndarray, geom: Geometry) -> np.ndarray:
    """A stored (fft-shifted, unpadded) detector pattern on the probe window, FFT order."""
    ky0, kx0 = pattern.shape
    oy, ox = geom.pad_offset
    padded = np.zeros(geom.window)
    padded[oy : oy + ky0, ox : ox + kx0] = pattern
    return np.fft.ifftshift(padded)


def _plan_batch(backend: Backend, plan: MemoryEstimate) -> int | None:
    """The GPU batch the memory plan left room for (None: the model sizes CPU batches)."""
    return plan.batch_size if backend.name == "gpu" else None


def _data_source(
    dataset: STEMDataset,
    config: ReconstructionConfig,
    backend: Backend,
    geom: Geometry,
    plan: MemoryEstimate,
    mean: np.ndarray,
    loss: str,
) -> _DataSource:
    per_pixel = float(mean.sum()) / (geom.window[0] * geom.window[1])
    eps = max(1e-6 * per_pixel, 1e-30)  # the model's default, from the whole dataset
    fraction = holdout_fraction(config.holdout_fraction, dataset.is_counts)
    if config.cluster and fraction:
        if config.holdout_fraction != "auto":
            raise InputError(
                "'holdout_fraction' needs a single-process run: a distributed run fits every "
                "pattern (set holdout_fraction: 0 with --cluster)"
            )
        log.info("distributed run: no scan positions held out")
        fraction = 0.0
    fit, held = split_positions(dataset.scan_shape, fraction)
    split = dict(fit=fit if held.size else None, held=held if held.size else None)
    if held.size:
        log.info("%d of %d scan positions held out of the fit", held.size, fit.size + held.size)
    if config.cluster:
        from caviar_napari.core.distributed import DistributedEvaluator

        evaluator = DistributedEvaluator(config, dataset, geom, plan)
        return _DataSource(
            dataset, config, backend, geom, plan, None, eps, evaluator, mean, loss, **split
        )
    feed = PatternFeed(backend, dataset.intensities, geom.window, geom.pad_offset, plan.data)
    return _DataSource(dataset, config, backend, geom, plan, feed, eps, None, mean, loss, **split)


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
    # the precision of the stage the run starts in (the patterns are fed in its dtype once)
    first = 0 if state is None else min(state.stage_index, len(config.stages) - 1)
    backend = get_backend(config.device, config.stage_precision(first))
    scale = dataset.counts_scale()
    if scale != 1.0:  # a dose is known for data in other units: fit expected counts
        if isinstance(dataset.intensities, LazyIntensities):
            raise InputError(
                f"{dataset.source}: a dose for intensities that are not counts needs the data "
                "in memory (data_placement other than 'file')"
            )
        dataset = dataclasses.replace(dataset, intensities=dataset.intensities * np.float32(scale))
    mean = pattern_mean(dataset.intensities)  # one pass over the data (streamed when lazy)
    geom = plan_geometry(dataset, config, padding=stage_padding(config, 0), mean_pattern=mean)
    plan = require_memory(
        estimate_run_memory(dataset, config, backend, _largest_geometry(dataset, config, mean))
    )
    log.info("%s", plan.plan_text())
    cdt = backend.complex_dtype
    if state is None:
        state = initial_state(dataset, config, geom, cdt)
    else:
        index = min(state.stage_index, len(config.stages) - 1)
        _check_state(
            state,
            plan_geometry(dataset, config, padding=stage_padding(config, index), mean_pattern=mean),
        )
        state = state.copy()
        state.object = np.asarray(state.object, dtype=cdt)
        state.probe = np.asarray(state.probe, dtype=cdt)
        state.config = config
    rng = np.random.default_rng(config.seed)
    if state.rng_state is not None:
        rng.bit_generator.state = copy.deepcopy(state.rng_state)

    n_stages = len(config.stages)
    start_iteration = state.iteration
    t0 = time.perf_counter()

    if state.stage_index >= n_stages:
        raise InputError(
            f"the starting state is at stage {state.stage_index}, but the configuration has "
            f"only {n_stages} stage(s)"
        )
    loss = resolve_loss(config.loss, dataset)
    if config.loss == "auto":
        state.diagnostics["loss"] = loss
    data = _data_source(dataset, config, backend, geom, plan, mean, loss)
    if data.held is not None:
        state.diagnostics["held_out_patterns"] = int(data.held.size)
    run_ctx = _RunContext(
        config=config,
        dataset=dataset,
        backend=backend,
        data=data,
        control=control,
        on_checkpoint=on_checkpoint,
        start_iteration=start_iteration,
        t0=t0,
    )
    try:
        return (yield from _run_stages(state, run_ctx, rng))
    finally:
        data.close()


def resolve_loss(loss: str, dataset: STEMDataset) -> str:
    """The data loss of ``loss: auto``: Poisson for counts, Gaussian (amplitudes) otherwise.

    Counts are integer intensities or a dataset with a known dose (``dose_e_per_A2``); the
    choice is logged. A named loss is returned as it is.
    """
    if loss != "auto":
        return loss
    if dataset.is_counts:
        log.info("loss: auto -> poisson (the intensities are counts)")
        return "poisson"
    log.info("loss: auto -> gaussian (the intensities are not counts)")
    return "gaussian"


@dataclass(frozen=True)
class _RunContext:
    """What every stage of one run shares."""

    config: ReconstructionConfig
    dataset: STEMDataset
    backend: Backend
    data: _DataSource
    control: RunControl | None
    on_checkpoint: CheckpointCallback | None
    start_iteration: int
    t0: float


@dataclass(frozen=True)
class _StageContext:
    """One stage's grid, patterns and noise, with the run's context."""

    run: _RunContext
    geom: Geometry
    split: PatternSplit
    noise: NoiseLevel


def _run_stages(
    state: ReconState, ctx: _RunContext, rng: np.random.Generator
) -> Generator[Progress, None, ReconState]:
    """The stages from ``state`` on (see :func:`run`)."""
    config, data = ctx.config, ctx.data
    n_stages = len(config.stages)
    while True:
        stage = config.stages[state.stage_index]
        previous = data.geom
        geom, split, noise = data.stage(state.stage_index)
        data.use_precision(config.stage_precision(state.stage_index), stage.name)
        cdt = data.backend.complex_dtype  # a stage starts in its own precision
        state.object = np.asarray(state.object, dtype=cdt)
        state.probe = np.asarray(state.probe, dtype=cdt)
        if geom.window != tuple(np.shape(state.probe)[1:]):  # this stage pads differently
            _move_to_grid(state, previous, geom)
        if state.stage_iteration == 0 and state.optimiser_state is None:
            # a new stage starts from the reported probe and states
            state.probe_variable = state.object_variable = state.penalty_best = None
            adapt_state(state, stage, rng, config.source_fwhm_A, region=_scanned_region(geom))
            if stage.name in state.diagnostics.get(STATE_MODEL_FALLBACK, {}):
                log.info("%s", state.diagnostics[STATE_MODEL_FALLBACK][stage.name])
                _collect_warnings(state)
            if stage.tilt_estimate:
                _estimate_tilt(state, stage, geom)
        if state.stage_iteration < stage.iterations:
            stage_ctx = _StageContext(run=ctx, geom=geom, split=split, noise=noise)
            stopped = yield from _run_stage(state, stage, stage_ctx)
            if stopped:
                return state
        if state.stage_index == n_stages - 1:
            return state
        state.stage_index += 1
        state.stage_iteration = 0
        state.optimiser_state = None


def _run_stage(
    state: ReconState, stage: StageConfig, ctx: _StageContext
) -> Generator[Progress, None, bool]:
    """Iterate one stage from ``state.stage_iteration``; returns True when stopped."""
    run = ctx.run
    config, data, geom = run.config, run.data, ctx.geom
    backend = data.backend  # the stage's precision (ReconstructionConfig.stage_precision)
    for record in ("stalled", "line_search"):  # a continued stage starts them again
        state.diagnostics.get(record, {}).pop(stage.name, None)
    control, on_checkpoint = run.control, run.on_checkpoint
    start_iteration, t0 = run.start_iteration, run.t0
    cdt = backend.complex_dtype
    displaced = _displaced_states(state, stage, backend, geom)
    model = data.model(state.slice_thickness_A, object_band_limit=displaced is None)
    probe = state.probe if state.probe_variable is None else state.probe_variable
    obj = state.object
    if displaced is not None:
        mean = state.object_variable  # set when resumed inside the stage
        obj = obj.mean(axis=0, keepdims=True) if mean is None else mean
    blocks = {
        "object": backend.asarray(obj, dtype=cdt),
        "probe": backend.asarray(probe, dtype=cdt),
        "tilt": backend.asarray(state.tilt_mrad, dtype=backend.real_dtype),
        "source": backend.asarray(
            [state.source_fwhm_A / coherence.FWHM_PER_SIGMA], dtype=backend.real_dtype
        ),
    }
    if displaced is not None:
        blocks["displacements"] = backend.asarray(state.state_displacements, backend.real_dtype)
    scan = _scan_positions(state, stage, config, geom)
    if scan is not None:
        blocks.update(_scan_blocks(state, backend, scan))
    refined = set(stage.refine) | ({"displacements"} if displaced is not None else set())
    x = {k: v for k, v in blocks.items() if k in refined}
    fixed = {k: v for k, v in blocks.items() if k not in refined}
    fun = Objective(
        model, backend, stage, fixed, ctx.split.fit_norm, geom.pixel_size_A, split=ctx.split,
        scan=scan, probe_constraint=_probe_constraint(stage, data.dataset, geom, backend),
        displaced=displaced,
        scanned_area=_region_area(_scanned_region(geom)),
    )  # fmt: skip
    path = _penalty_path(state, stage, ctx, fun)
    if path is not None and path.ended and not path.record.get("stage_end"):
        # resumed with more iterations after the ladder's end: nothing left to choose
        log.info(
            "stage '%s': its state penalty was chosen already (%s): the stage is complete",
            stage.name,
            path.record["ended"],
        )
        fun.state_weight = float(path.record["best_weight"])
        state.stage_iteration = stage.iterations
        return False
    opt = make_optimiser(
        stage.optimizer,
        memory=stage.lbfgs_memory,
        xp=backend.xp,
        typical=TYPICAL,
        state_blocks=("object",),
        history=data.plan.history,
    )
    resumed_minibatch = None
    if state.optimiser_state is not None:
        if state.stage_iteration < stage.minibatch_epochs:  # stopped inside the epochs
            resumed_minibatch = state.optimiser_state
        else:
            opt.import_state(state.optimiser_state)

    def sync(x: dict[str, Any]) -> None:
        obj, probe, tilt = fun.blocks(x)
        state.object = _host_copy(backend, obj)
        state.probe = _host_copy(backend, fun.probe_modes(x))
        # the free modes behind constrained ones, for an exact resume inside the stage
        state.probe_variable = None if fun.constraint is None else _host_copy(backend, probe)
        state.tilt_mrad = np.asarray(backend.to_host(tilt), dtype=np.float64).copy()
        if stage.partial_coherence == "gaussian":
            state.source_fwhm_A = abs(fun.sigma_A(x)) * coherence.FWHM_PER_SIGMA
        if scan is not None:
            _sync_scan(state, backend, fun, x)
        if displaced is not None:
            state.state_displacements = _host_copy(backend, x["displacements"]).astype(np.float64)
            state.object_variable = _host_copy(backend, x["object"])
        state.optimiser_state = opt.export_state()

    n_stages = len(config.stages)
    total_iterations = config.total_iterations
    if state.stage_iteration < stage.minibatch_epochs:
        x = yield from _minibatch_epochs(
            state, stage, config, model, fun, x, control, sync, start_iteration, t0,
            resumed_minibatch, on_checkpoint,
        )  # fmt: skip
        if state.stage_iteration < stage.minibatch_epochs:
            return True  # stopped
    try:
        f, g = fun(x)
    except WorkerError as exc:
        _save_on_failure(state, sync, x, on_checkpoint, exc)
        raise
    if path is not None and path.record["best"] == math.inf:  # score the starting point
        path.start(state.stage_iteration, fun.held_out_loss(x))
        _keep_best(state, backend, x)
    elif path is not None and path.reopen():  # ran out of iterations, resumed with more: go
        _keep_best(state, backend, x)  # on from the best (the variables it ended with)
    while state.stage_iteration < stage.iterations:
        if control is not None and control.checkpoint():
            sync(x)
            return True
        try:
            x, f, g, info = opt.step(fun, x, f, g)
        except WorkerError as exc:  # a worker of a distributed run died: keep the last state
            _save_on_failure(state, sync, x, on_checkpoint, exc)
            raise
        state.stage_iteration += 1
        state.iteration += 1
        state.loss.append(float(f))
        # failed line searches of the last iterations (the separation report's precision test)
        searches = state.diagnostics.setdefault("line_search", {}).setdefault(stage.name, [])
        searches.append(info.method != "lbfgs")
        del searches[:-TREND_WINDOW]
        every = stage.orthogonalise_probe_every
        if every and state.stage_iteration % every == 0 and _orthogonalise_probe(backend, x, opt):
            f, g = fun(x)  # as a resumed run computes it, so that resuming stays exact
        if info.method == "stalled":
            # no decrease along the gradient either: converged to the arithmetic's precision;
            # further iterations would repeat the same failed search (with a path of state
            # penalties: the rung ends, and the next starts from the best variables)
            log.info(
                "stage '%s': no further decrease at iteration %d in %s precision (converged to "
                "the arithmetic); ending the %s",
                stage.name,
                state.stage_iteration,
                backend.precision,
                "stage" if path is None else "rung of the state penalty",
            )
            if path is not None:
                x, f, g = _follow_path(state, stage, fun, path, (x, f, g), opt, end_rung=True)
            if path is None or path.ended:
                state.diagnostics.setdefault("stalled", {})[stage.name] = backend.precision
                state.stage_iteration = stage.iterations
        elif path is not None:
            x, f, g = _follow_path(state, stage, fun, path, (x, f, g), opt)
        elif _stopping_rule(state, stage, fun, x, ctx):
            state.stage_iteration = stage.iterations
        last = state.stage_iteration == stage.iterations
        due_update = config.update_every and (state.iteration % config.update_every == 0 or last)
        due_ckpt = config.checkpoint_every and state.iteration % config.checkpoint_every == 0
        if due_ckpt or last:
            sync(x)
        if due_ckpt and on_checkpoint is not None:
            on_checkpoint(state)
            log.debug("checkpoint at iteration %d", state.iteration)
        separation = None
        if last and stage.object_states > 1 and "object" in stage.refine:
            _report_separation(state, stage, fun, x, ctx)
            separation = dict(state.diagnostics["separation"][-1])
        elapsed = time.perf_counter() - t0
        done = state.iteration - start_iteration
        obj_copy = probe_copy = None
        if due_update:
            obj_copy = _host_copy(backend, fun.blocks(x)[0])
            probe_copy = _host_copy(backend, fun.probe_modes(x))
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
            source_fwhm_A=abs(fun.sigma_A(x)) * coherence.FWHM_PER_SIGMA,
            separation=separation,
        )
    return False


def _collect_warnings(state: ReconState) -> None:
    """``diagnostics["warnings"]``: the state-separation reports' warnings and those of the
    stages whose displaced states fell back to free ones."""
    reports = state.diagnostics.get("separation", [])
    state.diagnostics["warnings"] = [
        *(w for r in reports for w in SeparationReport.from_dict(r).warnings),
        *state.diagnostics.get(STATE_MODEL_FALLBACK, {}).values(),
    ]


def _displaced_states(
    state: ReconState, stage: StageConfig, backend: Backend, geom: Geometry
) -> DisplacedStates | None:
    """The states map of a ``state_model: displacements`` stage (None for free states), from
    the sites and displacements the stage started with (:func:`adapt_state`)."""
    if stage.state_model != "displacements" or state.state_sites is None:
        return None  # free states (one state, or no atoms: STATE_MODEL_FALLBACK)
    cells = cells_from_sites(
        state.state_sites, state.object.shape[1:], geom.pixel_size_A, geom.object_origin_A
    )
    log.info(
        "stage '%s': object states as displaced atoms: %d sites in %d of %d slices",
        stage.name,
        cells.n_sites,
        len(np.unique(np.round(cells.sites[:, 0]))),
        stage.slices,
    )
    return DisplacedStates(
        backend, cells, geom.pixel_size_A, remove_shifts=stage.remove_state_shifts
    )


def _probe_constraint(
    stage: StageConfig, dataset: STEMDataset, geom: Geometry, backend: Backend
) -> ProbeConstraint | None:
    """The stage's probe constraints (aperture support, fixed total intensity), or None."""
    if stage.probe_support == "none" and not stage.fixed_probe_intensity:
        return None
    return ProbeConstraint(
        backend,
        geom.window,
        geom.pixel_size_A,
        dataset.wavelength_A,
        convergence_mrad=(
            dataset.convergence_semiangle_mrad if stage.probe_support == "aperture" else None
        ),
        intensity=dataset.mean_total_intensity if stage.fixed_probe_intensity else None,
    )


def _estimate_tilt(state: ReconState, stage: StageConfig, geom: Geometry) -> None:
    """The paper's tilt estimate at the start of ``stage`` (``tilt_estimate``): the tilt from
    adjacent slices of the current object, which is moved back into line (diagnostics)."""
    if np.shape(state.object)[1] < 2:
        raise InputError(
            f"stage '{stage.name}': tilt_estimate needs a multislice object from an earlier stage"
        )
    estimate = estimate_tilt(
        state.object,
        state.slice_thickness_A,
        geom.pixel_size_A,
        tilt_used_mrad=tuple(state.tilt_mrad),
        region=_scanned_region(geom),
    )
    state.object = align_slices(state.object, estimate.shift_per_gap_A, geom.pixel_size_A)
    state.tilt_mrad = np.asarray(estimate.tilt_mrad, dtype=np.float64)
    state.diagnostics.setdefault("tilt_estimate", {})[stage.name] = estimate.to_dict()
    log.info(
        "stage '%s': tilt from adjacent slices (%.2f, %.2f) mrad ± (%.2g, %.2g) over %d gaps",
        stage.name, *estimate.tilt_mrad, *estimate.spread_mrad, estimate.n_gaps,
    )  # fmt: skip


def _region_area(region: tuple[slice, slice]) -> int:
    """Pixels of a ``(y, x)`` region of slices."""
    return (region[0].stop - region[0].start) * (region[1].stop - region[1].start)


def _scanned_region(geom: Geometry) -> tuple[slice, slice]:
    """Object pixels the probe positions span."""
    lo = np.floor(geom.positions_px.min(axis=0)).astype(int)
    hi = np.ceil(geom.positions_px.max(axis=0)).astype(int) + 1
    return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))


def _scan_positions(
    state: ReconState, stage: StageConfig, config: ReconstructionConfig, geom: Geometry
) -> ScanPositions | None:
    """The scan-position map of a stage that refines the positions or inherits refined ones."""
    refines = {"positions", "affine"} & set(stage.refine)
    if not refines and state.positions_u is None and state.affine is None:
        return None
    return ScanPositions(geom.positions_A, config.position_bound_A, config.position_penalty)


def _scan_blocks(state: ReconState, backend: Backend, scan: ScanPositions) -> dict[str, Any]:
    """The ``positions`` and ``affine`` blocks (zero where never refined)."""
    u = np.zeros((scan.n_positions, 2)) if state.positions_u is None else state.positions_u
    affine = np.zeros(AFFINE_SIZE) if state.affine is None else state.affine
    if np.shape(u) != (scan.n_positions, 2) or np.shape(affine) != (AFFINE_SIZE,):
        raise InputError(
            f"the starting state's scan-position variables {np.shape(u)}, {np.shape(affine)} do "
            f"not fit this dataset's {scan.n_positions} positions"
        )
    real = backend.real_dtype
    return {"positions": backend.asarray(u, dtype=real), "affine": backend.asarray(affine, real)}


def _sync_scan(state: ReconState, backend: Backend, fun: Objective, x: dict[str, Any]) -> None:
    """Copy the scan-position variables and the positions they give into ``state``."""
    state.positions_u = _host_copy(backend, x.get("positions", fun.fixed.get("positions")))
    state.affine = _host_copy(backend, x.get("affine", fun.fixed.get("affine")))
    state.scan_positions_A = fun.scan.nominal_A + fun.scan_shifts_A(x)


def _stopping_rule(
    state: ReconState, stage: StageConfig, fun: Objective, x: dict[str, Any], ctx: _StageContext
) -> bool:
    """Whether ``stage`` should end now (``stop_patience``, ``stop_tolerance``; see
    :class:`~caviar_napari.data.config.StageConfig`); logs why. The held-out record lives in
    ``state.diagnostics["held_out"]`` so that a resumed run decides as an uninterrupted one."""
    patience = stage.stop_patience
    k = state.stage_iteration
    if ctx.split.holds_out:
        held = fun.held_out_loss(x)
        record = state.diagnostics.setdefault("held_out", {}).setdefault(stage.name, {})
        record.setdefault("loss", []).append(held)
        if held < record.get("best", math.inf):
            record["best"], record["best_iteration"] = held, k
        if patience and k - record["best_iteration"] >= patience:
            log.info(
                "stage '%s': held-out loss has not improved for %d iterations (best at %d): "
                "ending the stage at iteration %d",
                stage.name,
                patience,
                record["best_iteration"],
                k,
            )
            return True
        return False
    if not patience or k <= patience:
        return False
    losses = state.loss[-patience - 1 :]
    old, new = losses[0] - ctx.noise.floor, losses[-1] - ctx.noise.floor
    if old > 0 and (old - new) / old < stage.stop_tolerance:
        log.info(
            "stage '%s': the misfit fell by %.2g %% over the last %d iterations (< %.2g %%): "
            "ending the stage at iteration %d",
            stage.name,
            100 * (old - new) / old,
            patience,
            100 * stage.stop_tolerance,
            k,
        )
        return True
    return False


def _penalty_path(
    state: ReconState, stage: StageConfig, ctx: _StageContext, fun: Objective
) -> PenaltyPath | None:
    """The regularisation path of a ``state_penalty: auto`` stage (its weight set on ``fun``);
    None when the stage has a fixed weight, or nothing to choose it with (no held-out
    patterns, one state, the object not refined: the weight is then 0, and the log says so)."""
    if stage.state_penalty != "auto":
        return None
    if not (ctx.split.holds_out and stage.object_states > 1 and "object" in stage.refine):
        if stage.object_states > 1 and "object" in stage.refine and state.stage_iteration == 0:
            log.info(
                "stage '%s': state_penalty auto is 0: no held-out patterns to choose a weight "
                "with (holdout_fraction)",
                stage.name,
            )
        return None
    record = state.diagnostics.setdefault("state_penalty", {}).setdefault(stage.name, {})
    path = PenaltyPath(record, stage.stop_patience)
    fun.state_weight = path.weight
    if not record["held"]:
        log.info(
            "stage '%s': choosing the state penalty by the held-out patterns: λ = %s in turn",
            stage.name,
            ", ".join(f"{w:g}" for w in path.weights),
        )
    return path


def _keep_best(state: ReconState, backend: Backend, x: dict[str, Any]) -> None:
    """Keep host copies of the refined blocks as the path's best variables."""
    state.penalty_best = {k: _host_copy(backend, v) for k, v in x.items()}


def _follow_path(
    state: ReconState,
    stage: StageConfig,
    fun: Objective,
    path: PenaltyPath,
    step: tuple[dict[str, Any], float, dict[str, Any]],
    opt: LBFGS | GradientDescent,
    *,
    end_rung: bool = False,
) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """One iteration of the path of weights (:class:`PenaltyPath`) after the optimiser's
    ``step`` (``x, f, g``) of stage iteration ``state.stage_iteration``: score the held-out
    patterns and keep the best variables; at a new rung (or ``end_rung``, a stalled one) go
    back to them with the next weight (the optimiser's memory cleared); at the path's end, or
    the stage's, end the stage with them. Returns ``x, f, g`` to go on from."""
    x, f, g = step
    backend = fun.backend
    final = state.stage_iteration >= stage.iterations
    improved, changed = path.update(
        state.stage_iteration, fun.held_out_loss(x), end_rung=end_rung, final=final
    )
    if improved:
        _keep_best(state, backend, x)
    if not changed:
        return x, f, g
    if state.penalty_best is not None:  # copies: the kept variables stay as they are
        x = {
            k: backend.asarray(np.array(v), dtype=x[k].dtype) for k, v in state.penalty_best.items()
        }
    opt.reset()
    record = path.record
    if not path.ended:
        fun.state_weight = path.weight
        log.info(
            "stage '%s': from the best held-out state (iteration %d) on with the state penalty "
            "λ = %g, from iteration %d",
            stage.name,
            record["best_iteration"],
            path.weight,
            state.stage_iteration,
        )
        f, g = fun(x)
        return x, f, g
    fun.state_weight = float(record["best_weight"])
    state.penalty_best = None
    state.diagnostics.setdefault("state_penalty_chosen", {})[stage.name] = fun.state_weight
    log.info(
        "stage '%s': state penalty chosen by the held-out patterns: λ = %g (%s); ending the "
        "stage with the variables of iteration %d",
        stage.name,
        fun.state_weight,
        record["ended"],
        record["best_iteration"],
    )
    state.stage_iteration = stage.iterations
    f, g = fun(x)
    state.loss[-1] = float(f)  # the history ends with the objective of the state it returns
    return x, f, g


def _orthogonalise_probe(backend: Backend, x: dict[str, Any], opt: LBFGS | GradientDescent) -> bool:
    """Make refined probe modes orthogonal again, in place, with the optimiser's memory
    following the same unitary change of variables; False when there is nothing to do."""
    if "probe" not in x or x["probe"].shape[0] < 2:
        return False
    probe = x["probe"]
    w = orthogonal_mixing(backend.xp, probe)

    def mix(a: Any) -> Any:
        return (w @ a.reshape(w.shape[0], -1)).reshape(a.shape).astype(a.dtype, copy=False)

    x["probe"] = mix(probe)
    opt.change_variables("probe", mix)
    return True


def _stalled_in(state: ReconState, stage: StageConfig, precision: str) -> str:
    """The precision in which ``stage``'s line search stalled: it found no decrease at all
    (the stage ended there), or failed in at least half of the last :data:`TREND_WINDOW`
    iterations (gradient-descent fallbacks that barely move); ``""`` otherwise."""
    stalled = state.diagnostics.get("stalled", {}).get(stage.name, "")
    searches = state.diagnostics.get("line_search", {}).get(stage.name, [])
    if not stalled and len(searches) >= TREND_WINDOW and 2 * sum(searches) >= TREND_WINDOW:
        stalled = precision
    return stalled


def _report_separation(
    state: ReconState, stage: StageConfig, fun: Objective, x: dict[str, Any], ctx: _StageContext
) -> None:
    """Measure whether the states of the finished ``stage`` separated (into diagnostics)."""
    geom = ctx.geom
    loss_states, loss_mean = fun.data_losses(x)
    region = _scanned_region(geom)
    band = optics.band_limit_mask(geom.object_shape, geom.pixel_size_A, optics.BAND_LIMIT)
    area = _region_area(region) * float(np.mean(band))
    report = separation_report(
        stage=stage.name,
        n_states=stage.object_states,
        obj=state.object,
        region=region,
        loss_history=state.loss[-stage.iterations :],
        loss_states=loss_states,
        loss_mean=loss_mean,
        loss_floor=ctx.noise.floor,
        noise_per_parameter=ctx.noise.per_parameter,
        n_parameters=(
            int(2 * area * stage.slices * (stage.object_states - 1))
            if fun.displaced is None
            else 2 * fun.displaced.cells.n_sites * (stage.object_states - 1)
        ),
        held_losses=fun.data_losses(x, held=True) if ctx.split.holds_out else None,
        held_floor=ctx.noise.held_floor,
        stalled_in=_stalled_in(state, stage, ctx.run.data.backend.precision),
    )
    reports = [r for r in state.diagnostics.get("separation", []) if r["stage"] != stage.name]
    state.diagnostics["separation"] = [*reports, report.to_dict()]
    _collect_warnings(state)
    for line in report.warnings:  # the workflows say them as the run's warnings
        log.info("%s", line)
    log.info(
        "stage '%s': states spread %.3g rad, explain %.1f %% of the mean object's misfit",
        stage.name,
        report.spread_rad,
        100 * report.gain,
    )


def _minibatch_epochs(
    state: ReconState,
    stage: StageConfig,
    config: ReconstructionConfig,
    model: Any,
    fun: Objective,
    x: dict[str, Any],
    control: RunControl | None,
    sync: Callable[[dict[str, Any]], None],
    start_iteration: int,
    t0: float,
    resumed: dict[str, Any] | None,
    on_checkpoint: CheckpointCallback | None,
) -> Generator[Progress, None, dict[str, Any]]:
    """The stage's first ``minibatch_epochs`` iterations as mini-batch epochs
    (:mod:`caviar_napari.core.minibatch`); returns the point L-BFGS starts from.  The
    gradient-descent state is the state's ``optimiser_state`` while the epochs last."""
    if not isinstance(model, MultisliceModel):
        raise InputError(
            f"stage '{stage.name}': minibatch_epochs needs a single-process run (no cluster)"
        )
    gd = make_optimiser("gd", xp=model.xp, typical=TYPICAL, state_blocks=("object",))
    if resumed is not None:
        gd.import_state(resumed)

    def keep(x: dict[str, Any]) -> None:
        sync(x)
        # after the last epoch L-BFGS starts afresh, as in an uninterrupted run
        done = state.stage_iteration >= stage.minibatch_epochs
        state.optimiser_state = None if done else gd.export_state()

    def objective(sub: Any) -> Objective:
        restricted = copy.copy(fun)  # the same objective (masks, regularisers) on the subset
        restricted.model = sub
        return restricted

    while state.stage_iteration < stage.minibatch_epochs:
        if control is not None and control.checkpoint():
            keep(x)
            return x
        batches = minibatch.epoch_batches(
            model.n_patterns, stage.minibatch_size, config.seed, state.stage_index,
            state.stage_iteration,
        )  # fmt: skip
        x, f, info = minibatch.run_epoch(objective, model, x, gd, batches)
        state.stage_iteration += 1
        state.iteration += 1
        state.loss.append(float(f))
        if config.checkpoint_every and state.iteration % config.checkpoint_every == 0:
            keep(x)
            if on_checkpoint is not None:
                on_checkpoint(state)
        elapsed = time.perf_counter() - t0
        done = state.iteration - start_iteration
        yield Progress(
            stage_name=stage.name,
            stage_index=state.stage_index,
            n_stages=len(config.stages),
            iteration=state.iteration,
            total_iterations=config.total_iterations,
            stage_iteration=state.stage_iteration,
            stage_iterations=stage.iterations,
            loss=float(f),
            elapsed_s=elapsed,
            eta_s=elapsed / done * (config.total_iterations - state.iteration),
            method=info.method,
            n_evals=info.n_evals,
        )
    return x


def _largest_geometry(
    dataset: STEMDataset, config: ReconstructionConfig, mean: np.ndarray
) -> Geometry:
    """The geometry of the stage with the largest probe window (the memory plan's)."""
    geoms = {}
    for i in range(len(config.stages)):
        padding = stage_padding(config, i)
        if padding not in geoms:
            geoms[padding] = plan_geometry(dataset, config, padding=padding, mean_pattern=mean)
    return max(geoms.values(), key=lambda g: g.window[0] * g.window[1])


def _move_to_grid(state: ReconState, old: Geometry, new: Geometry) -> None:
    """Resample the state's object and probe from ``old``'s grid onto ``new``'s (a stage with
    another detector padding)."""
    log.info(
        "stage %d: probe window %d×%d -> %d×%d (pixel %.4f -> %.4f Å); object and probe resampled",
        state.stage_index, *old.window, *new.window, old.pixel_size_A[0], new.pixel_size_A[0],
    )  # fmt: skip
    state.object = resample_object(state.object, old, new)
    state.probe = resample_probe(state.probe, new.window)
    state.pixel_size_A = new.pixel_size_A
    state.object_origin_A = new.object_origin_A
    refined = np.zeros_like(old.positions_A)  # refined shifts carry over to the new frame
    if state.scan_positions_A is not None and np.shape(state.scan_positions_A) == refined.shape:
        refined = np.asarray(state.scan_positions_A) - old.positions_A
    state.scan_positions_A = new.positions_A + refined


def _save_on_failure(
    state: ReconState,
    sync: Callable[[dict[str, Any]], None],
    x: dict[str, Any],
    on_checkpoint: CheckpointCallback | None,
    exc: WorkerError,
) -> None:
    """Bring ``state`` to the last accepted iterate, hand it to the checkpoint writer, and
    attach it to ``exc`` (``exc.state``) for the caller to keep."""
    sync(x)
    if on_checkpoint is not None:
        on_checkpoint(state)
    exc.state = state  # type: ignore[attr-defined]


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
