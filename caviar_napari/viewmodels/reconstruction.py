"""View-model of the **Reconstruction** dock (Qt-free).

State: the selected 4D-STEM dataset and its editable :class:`Calibration`, the engine's
:class:`~caviar_napari.data.config.ReconstructionConfig` (the recommended recipe by default,
:data:`PRESETS`), the memory estimate, the run's :class:`~caviar_napari.core.engine.RunControl`
and the last result with its report (:func:`result_report`: the data loss ``auto`` chose, the
held-out positions, the fitted source size, whether the object states separated).  Jobs for a
worker thread: :func:`reconstruction_job` (the run; the layer images are computed in the
worker), :func:`prepare_job` (the images the run's layers are created with before the run
starts), :func:`detect_job`, :func:`load_job` (the plan of a run before it starts is
:mod:`caviar_napari.viewmodels.recon_plan`, the calibration from the data
:mod:`caviar_napari.viewmodels.calibration`).  A multi-state stage that ends during a run hands
its state-separation report over at once (:meth:`ReconstructionViewModel.accept_separation`),
so the dock says whether the states separated before the run is over.  :class:`LivePacer`
decides what a live display shows at each of its ticks, so that the main thread does a bounded
amount of work however fast the reconstruction iterates (see ``benchmarks/bench_gui_stall.py``).

The engine is looked up as ``caviar_napari.core.engine.run`` at call time (tests replace it).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from caviar_napari.core import engine
from caviar_napari.core.memory import MemoryEstimate
from caviar_napari.data import config as cfg
from caviar_napari.errors import CaviarError, InputError
from caviar_napari.io.config_file import load_yaml, save_yaml
from caviar_napari.io.dataset import STEMDataset
from caviar_napari.viewmodels.recon_images import ReconImages, reconstruction_images
from caviar_napari.viewmodels.recon_plan import RunPlan, check_dock_run
from caviar_napari.viewmodels.recon_positions import scan_refinement
from caviar_napari.viewmodels.recon_report import (
    ResultReport,
    live_report,
    result_report,
    separation_warnings,
    state_warnings,
)

#: Prefix of the layers of a run.
RUN_LAYER_NAME = "reconstruction"
#: Entry of the "Start from" list that starts a new reconstruction.
NEW_START = "new reconstruction (flat object)"
#: The configuration the dock opens with: the recommended recipe (the default of every
#: configuration, ``caviar reconstruct`` without ``--config``) with ten object states.
DEFAULT_CONFIG = {"object_states": 10, "iterations": (50, 100), "update_every": 5}
#: The recommended recipe: a mean object seen through a Gaussian source of fitted size, then the
#: object states with the probe and the source refined (also the PSC recipe, issue 13); each
#: stage ends by its stopping rule or at these iterations.
PRESET_RECOMMENDED = "Recommended"
#: The paper's recipe with free probe modes: stage 1 fits them with the mean object, stage 2
#: keeps them and fits the states; at the validation study's iterations (docs/validation.md).
PRESET_PAPER = "Paper (free probe modes)"
#: Stage iterations of each preset as the dock offers it (stage 1, stage 2).
PRESET_ITERATIONS = {PRESET_RECOMMENDED: (50, 100), PRESET_PAPER: (120, 200)}
PRESETS = (PRESET_RECOMMENDED, PRESET_PAPER)
#: Shown when no 4D-STEM data are selected.
NO_DATA = "no 4D-STEM data: open a file or a sample (File ▸ Open Sample)"
#: Nice increment of the reconstruction thread (Linux): the GUI thread keeps priority.
WORKER_NICENESS = 10


# ==================================================================================== texts
def format_seconds(seconds: float | None) -> str:
    """``m:ss`` (or ``h:mm:ss``) of ``seconds``; ``–`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe(dataset: STEMDataset) -> str:
    """One line: source, scan and detector size, reconstruction pixel, wavelength."""
    sy, sx = dataset.scan_shape
    ky, kx = dataset.detector_shape
    dy, dx = dataset.pixel_size_A
    return (
        f"{dataset.source or 'data'}: scan {sy}×{sx}, detector {ky}×{kx} px, "
        f"object pixel {dy:.4g}×{dx:.4g} Å, λ = {dataset.wavelength_A * 100:.4g} pm"
    )


# ==================================================================================== inputs
@dataclass(frozen=True)
class Calibration:
    """Beam and scan calibration of a dataset, as the user may edit it (conventions §1).

    Attributes
    ----------
    energy_eV
        Beam energy, eV.
    convergence_semiangle_mrad
        Convergence semi-angle α, mrad.
    angular_sampling_mrad
        Detector pixel ``(ky, kx)`` in scattering angle, mrad.
    scan_step_A
        Scan step ``(y, x)``, Å.
    defocus_A
        Probe defocus Δf = −C10, Å (positive: underfocus).
    scan_rotation_deg
        Rotation of the scan axes relative to the detector axes, degrees.
    """

    energy_eV: float
    convergence_semiangle_mrad: float
    angular_sampling_mrad: tuple[float, float]
    scan_step_A: tuple[float, float]
    defocus_A: float
    scan_rotation_deg: float

    @classmethod
    def of(cls, dataset: STEMDataset) -> Calibration:
        """The calibration stored in ``dataset``."""
        return cls(
            energy_eV=float(dataset.energy_eV),
            convergence_semiangle_mrad=float(dataset.convergence_semiangle_mrad),
            angular_sampling_mrad=tuple(float(v) for v in dataset.angular_sampling_mrad),
            scan_step_A=tuple(float(v) for v in dataset.scan_step_A),
            defocus_A=float(dataset.defocus_A),
            scan_rotation_deg=float(dataset.scan_rotation_deg),
        )

    def apply(self, dataset: STEMDataset) -> STEMDataset:
        """``dataset`` with this calibration (validated by the dataset); intensities shared.

        The probe positions are rescaled about the first scan position by the ratio of the new
        to the old scan step, per axis, so a regular grid stays the regular grid of the new step.
        """
        positions = np.asarray(dataset.positions_A, dtype=np.float64)
        ratio = np.asarray(self.scan_step_A) / np.asarray(dataset.scan_step_A)
        if not np.allclose(ratio, 1.0, rtol=1e-12, atol=0.0):
            p0 = positions[:1, :1, :]
            positions = p0 + (positions - p0) * ratio
        return dataclasses.replace(
            dataset,
            energy_eV=self.energy_eV,
            convergence_semiangle_mrad=self.convergence_semiangle_mrad,
            angular_sampling_mrad=self.angular_sampling_mrad,
            scan_step_A=self.scan_step_A,
            defocus_A=self.defocus_A,
            scan_rotation_deg=self.scan_rotation_deg,
            positions_A=positions,
        )


class DataSources:
    """The 4D-STEM data the dock can reconstruct besides the viewer's 4D-STEM layers.

    Keys are ``"layer:<name>"`` (a layer of the viewer), ``"file:<path>"`` (a file opened in
    the dock) and ``"kept:<name>"`` (data whose layers left the view at a run's start, see
    :meth:`keep`, or data calibrated in the dock).
    """

    def __init__(self) -> None:
        self._files: dict[str, STEMDataset] = {}
        self._kept: dict[str, STEMDataset] = {}
        self._notes: dict[str, str] = {}
        self._paths: dict[str, str] = {}

    def add_file(self, path: str, dataset: STEMDataset) -> str:
        """Record a file read in the dock; returns its key."""
        self._files[str(path)] = dataset
        return f"file:{path}"

    def keep(
        self, name: str, dataset: STEMDataset, *, path: str | None = None, note: str = "kept here"
    ) -> str:
        """Keep data under ``name`` (shown as ``data: <name> (<note>)``; ``path``: the file
        they were read from); returns its key."""
        self._kept[name] = dataset
        self._notes[name] = note
        if path:
            self._paths[name] = str(path)
        return f"kept:{name}"

    def entries(self, layer_names: Iterable[str]) -> list[tuple[str, str]]:
        """``(label, key)`` of every source: the given 4D-STEM layers, files, kept data."""
        out = [(f"layer: {name}", f"layer:{name}") for name in layer_names]
        out += [(f"file: {Path(path).name}", f"file:{path}") for path in self._files]
        out += [
            (
                f"data: {name}" + (f" ({self._notes[name]})" if self._notes[name] else ""),
                f"kept:{name}",
            )
            for name in self._kept
        ]
        return out

    def dataset(self, key: str | None, layers: Mapping[str, STEMDataset]) -> STEMDataset | None:
        """The dataset of ``key`` (``layers``: layer name → dataset), None if unknown."""
        if key is None:
            return None
        kind, name = str(key).split(":", 1)
        if kind == "file":
            return self._files.get(name)
        if kind == "kept":
            return self._kept.get(name)
        return layers.get(name)

    def path(self, key: str | None, layer_paths: Mapping[str, str] | None = None) -> str | None:
        """The file the data of ``key`` were read from (``layer_paths``: layer name → file),
        None when unknown."""
        if key is None:
            return None
        kind, name = str(key).split(":", 1)
        if kind == "file":
            return name
        if kind == "kept":
            return self._paths.get(name)
        return (layer_paths or {}).get(name)

    @staticmethod
    def name(key: str) -> str:
        """A short name of the data of ``key`` (a layer's or kept name, a file's name)."""
        kind, name = str(key).split(":", 1)
        return Path(name).name if kind == "file" else name


# ==================================================================================== jobs
def lower_thread_priority(increment: int = WORKER_NICENESS) -> bool:
    """Lower the scheduling priority of the calling thread (and the threads it starts).

    On Linux the nice value is per thread and inherited by threads created later (the FFT
    thread pool), so the reconstruction yields the CPU to napari's main thread whenever that
    needs it, and still uses all of it otherwise. Elsewhere this does nothing.

    Returns
    -------
    bool
        Whether the priority was lowered.
    """
    if not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(current + increment, 19))
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class RunUpdate:
    """What the main thread needs after one iteration.

    Attributes
    ----------
    iteration, total_iterations
        Iterations done in total, of how many (all stages).
    stage_index, n_stages, stage_name
        The running stage.
    stage_iteration, stage_iterations
        Iterations done in this stage, of how many.
    loss
        Objective after this iteration (dimensionless).
    elapsed_s, eta_s
        Seconds since the run started and estimated seconds left (NaN when unknown).
    images
        Layer images when the display asked for them, else None.
    source_fwhm_A
        Fitted source size of a partially coherent probe (FWHM, Å); 0 for a coherent one.
    separation
        At the last iteration of a multi-state stage, its state-separation report (a
        :meth:`~caviar_napari.core.separation.SeparationReport.to_dict` dictionary); else None.
    """

    iteration: int
    total_iterations: int
    stage_index: int
    n_stages: int
    stage_name: str
    stage_iteration: int
    stage_iterations: int
    loss: float
    elapsed_s: float
    eta_s: float
    images: ReconImages | None = None
    source_fwhm_A: float = 0.0
    separation: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunResult:
    """The final (or stopped) state of a run, its layer images and its warnings."""

    state: engine.ReconState
    images: ReconImages
    stopped: bool
    warnings: tuple[str, ...] = ()


def states_shown(config: cfg.ReconstructionConfig, state: engine.ReconState | None) -> int:
    """The number of state slots a live display shows during a run: the most object states
    of the stages still to run (and of the start state), so the layers keep one shape."""
    first = 0 if state is None else min(state.stage_index, len(config.stages) - 1)
    counts = [stage.object_states for stage in config.stages[first:]]
    if state is not None:
        counts.append(int(np.shape(state.object)[0]))
    return max(counts)


def reconstruction_job(
    dataset: STEMDataset,
    config: cfg.ReconstructionConfig,
    *,
    state: engine.ReconState | None = None,
    control: engine.RunControl | None = None,
    images_wanted: threading.Event | None = None,
) -> Generator[RunUpdate, None, RunResult]:
    """Run the engine, yielding a :class:`RunUpdate` per iteration; return a :class:`RunResult`.

    Parameters
    ----------
    dataset, config, state, control
        As for :func:`caviar_napari.core.engine.run`.
    images_wanted
        Back-pressure from the display: images are computed (from the engine's host copies,
        every ``config.update_every`` iterations) only while this event is set, and it is
        cleared when they are yielded; the display sets it again when it wants new ones.
        ``None``: images at every update.

    The live images of a one-state stage fill :func:`states_shown` state slots (the layers
    keep their shape through the run); the result's images have the result's own states.
    """
    lower_thread_priority()
    shown = states_shown(config, state)
    geometry = engine.plan_geometry(dataset, config)
    pixel, origin = geometry.pixel_size_A, geometry.object_origin_A
    from caviar_napari.io.reconstruction import checkpoint_writer

    extra = {}
    if config.checkpoint_every:
        extra["on_checkpoint"] = checkpoint_writer(config.checkpoint_path)
    gen = engine.run(dataset, config, state=state, control=control, **extra)
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            final = stop.value
            break
        images = None
        due = progress.object is not None and progress.probe is not None
        if due and (images_wanted is None or images_wanted.is_set()):
            if images_wanted is not None:
                images_wanted.clear()
            images = reconstruction_images(
                progress.object,
                progress.probe,
                pixel,
                origin,
                geometry.positions_A,
                states_shown=shown,
            )
        yield RunUpdate(
            iteration=int(progress.iteration),
            total_iterations=int(progress.total_iterations),
            stage_index=int(progress.stage_index),
            n_stages=int(progress.n_stages),
            stage_name=str(progress.stage_name),
            stage_iteration=int(progress.stage_iteration),
            stage_iterations=int(progress.stage_iterations),
            loss=float(progress.loss),
            elapsed_s=float(progress.elapsed_s),
            eta_s=float(progress.eta_s),
            images=images,
            source_fwhm_A=float(getattr(progress, "source_fwhm_A", 0.0) or 0.0),
            separation=getattr(progress, "separation", None),
        )
    positions = geometry.positions_A if final.scan_positions_A is None else final.scan_positions_A
    images = reconstruction_images(
        final.object,
        final.probe,
        final.pixel_size_A,
        final.object_origin_A,
        positions,
        refinement=scan_refinement(final),
    )
    stopped = bool(control is not None and control.stopped and not final.finished)
    return RunResult(
        state=final, images=images, stopped=stopped, warnings=tuple(state_warnings(final))
    )


def prepare_job(
    dataset: STEMDataset, config: cfg.ReconstructionConfig, state: engine.ReconState | None
) -> Generator[None, None, ReconImages]:
    """The images the run's layers are created with before the run starts.

    A continued run shows its start state; a new run a flat object (phase 0, amplitude 1) of
    the first stage's slices on the run's grid, and an empty probe montage; both in
    :func:`states_shown` state slots.
    """
    yield None
    geometry = engine.plan_geometry(dataset, config)
    shown = states_shown(config, state)
    if state is not None:
        positions = geometry.positions_A if state.scan_positions_A is None else None
        return reconstruction_images(
            state.object,
            state.probe,
            state.pixel_size_A,
            state.object_origin_A,
            state.scan_positions_A if positions is None else positions,
            states_shown=shown,
            refinement=scan_refinement(state),
        )
    first = config.stages[0]
    h, w = geometry.object_shape
    flat = np.ones((1, first.slices, h, w), np.complex64)
    probe = np.zeros((first.probe_modes, *geometry.window), np.complex64)
    return reconstruction_images(
        flat,
        probe,
        geometry.pixel_size_A,
        geometry.object_origin_A,
        geometry.positions_A,
        states_shown=shown,
    )


def detect_job() -> Generator[str, None, None]:
    """Yield the one-line summary of the compute devices (may import cupy: off the main thread)."""
    from caviar_napari.core.backend import detect_devices

    yield detect_devices()


def load_job(path: str) -> Generator[None, None, STEMDataset]:
    """Read a 4D-STEM file (any format the project reads) and return the dataset."""
    from caviar_napari.io.readers import load_stem

    yield None
    return load_stem(path)


def history_starts(state: Any) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Loss history of a state and the first iteration of each stage it went through."""
    stages = state.config.stages
    starts, first = [], 1
    for stage in stages[: state.stage_index + 1]:
        if first <= max(len(state.loss), 1):
            starts.append((first, stage.name))
        first += stage.iterations
    return np.asarray(state.loss, dtype=float), starts


def device_summary_text(summary: str) -> tuple[str, str]:
    """``(short text, full text)`` of a device summary (the reason for no GPU only in full)."""
    short = summary.split(" (no GPU")[0]
    if short != summary:
        short += "; no usable GPU (hover for why)"
    return f"detected: {short}", summary


# ==================================================================================== the run
@dataclass(frozen=True)
class ButtonStates:
    """Which run buttons apply now."""

    start: bool
    pause: bool
    resume: bool
    stop: bool
    save: bool


@dataclass(frozen=True)
class RunRequest:
    """Everything a run needs, fixed when Start was pressed."""

    dataset: STEMDataset
    config: cfg.ReconstructionConfig
    state: engine.ReconState | None
    control: engine.RunControl
    start_iteration: int

    @property
    def iterations_left(self) -> int:
        """Iterations this run will do (all stages)."""
        return max(self.config.total_iterations - self.start_iteration, 0)


class ReconstructionViewModel:
    """State of the Reconstruction dock between the user's controls and the engine.

    Attributes
    ----------
    sources
        Files opened in the dock and data kept after their layers left the view.
    dataset
        The selected dataset as stored (None: none selected).
    calibration
        Its calibration as edited (None with no dataset).
    config
        The configuration (validated when set).
    estimate
        Memory estimate of the current inputs (None: unknown or not computable).
    plan
        The dry run of the current inputs (grids, loss, held-out positions, memory plan;
        None: unknown or not computable).
    estimate_error
        Why no estimate could be made ("" when there is one).
    request
        The running (or preparing) run, None when idle.
    result
        The last finished or stopped state (what Save… writes).
    result_source
        The source file name of :attr:`result`.
    report
        What the last result says about itself (loss, held-out positions, source size, state
        separation), or, during a run, the separation of its multi-state stages finished so
        far; None before the first.
    warnings
        Warnings of the last result, or of the stages of the running run finished so far
        (shown by the dock).
    live_separation
        The separation reports of the running run's finished multi-state stages.
    calibrations
        Source key → the calibration that made the data of that source (Calibrate).
    """

    def __init__(self) -> None:
        self.sources = DataSources()
        self.dataset: STEMDataset | None = None
        self.calibration: Calibration | None = None
        self.config = cfg.recommended_recipe(**DEFAULT_CONFIG)
        self.estimate: MemoryEstimate | None = None
        self.plan: RunPlan | None = None
        self.estimate_error = ""
        self.request: RunRequest | None = None
        self.result: engine.ReconState | None = None
        self.result_source = ""
        self.report: ResultReport | None = None
        self.warnings: list[str] = []
        self.live_separation: list[dict[str, Any]] = []
        self.calibrations: dict[str, Any] = {}

    # ------------------------------------------------------------------ inputs
    def select(self, dataset: STEMDataset | None) -> None:
        """Select a dataset (its stored calibration becomes the edited one)."""
        self.dataset = dataset
        self.calibration = None if dataset is None else Calibration.of(dataset)

    def set_config(self, config: cfg.ReconstructionConfig) -> cfg.ReconstructionConfig:
        """Validate and keep ``config`` (``InputError`` naming the field); returns it."""
        self.config = cfg.ReconstructionConfig.from_dict(config.to_dict())
        return self.config

    def calibrated_dataset(self) -> STEMDataset:
        """The selected dataset with the edited calibration (``InputError`` if none)."""
        if self.dataset is None or self.calibration is None:
            raise InputError("no 4D-STEM data selected: open a file or a 4D-STEM layer")
        return self.calibration.apply(self.dataset)

    @staticmethod
    def preset_stages(
        name: str, slices: int, slice_thickness_A: float | list[float]
    ) -> list[cfg.StageConfig]:
        """The stages of preset ``name`` (:data:`PRESETS`) with ten object states, at
        :data:`PRESET_ITERATIONS`, with the given slicing."""
        if name == PRESET_RECOMMENDED:
            return cfg.recommended_stages(
                object_states=10,
                slices=slices,
                slice_thickness_A=slice_thickness_A,
                iterations=PRESET_ITERATIONS[name],
            )
        if name == PRESET_PAPER:
            thickness = slice_thickness_A
            if isinstance(thickness, list):
                thickness = float(np.mean(thickness))
            return cfg.two_stage_preset(
                object_states=10,
                probe_modes=4,
                slices=slices,
                slice_thickness_A=thickness,
                iterations=PRESET_ITERATIONS[name],
            ).stages
        raise InputError(f"unknown preset {name!r}; one of {', '.join(PRESETS)}")

    def load_config(self, path: str | os.PathLike) -> cfg.ReconstructionConfig:
        """Read a configuration YAML (the CLI's format) and keep it."""
        return self.set_config(load_yaml(path))

    def save_config(self, path: str | os.PathLike) -> None:
        """Write the configuration as YAML (the CLI's format)."""
        save_yaml(path, self.config)

    # ------------------------------------------------------------------ memory estimate
    def accept_estimate(self, estimate: RunPlan | MemoryEstimate | CaviarError) -> tuple[str, bool]:
        """Keep a run's plan or memory estimate (or the error that prevented it); returns
        ``(text, ok)``."""
        self.plan = estimate if isinstance(estimate, RunPlan) else None
        if isinstance(estimate, RunPlan):
            estimate = estimate.estimate
        if isinstance(estimate, MemoryEstimate):
            self.estimate, self.estimate_error = estimate, ""
            text = f"memory: {estimate.describe()}"
            if not estimate.fits:
                text += f" — does not fit: {estimate.advice()}"
            return text, bool(estimate.fits)
        self.estimate, self.estimate_error = None, str(estimate)
        return f"cannot start: {estimate}", False

    # ------------------------------------------------------------------ run control
    @property
    def is_running(self) -> bool:
        """Whether a run is being prepared, runs, or is paused."""
        return self.request is not None

    @property
    def paused(self) -> bool:
        """Whether the running run is (or will be) held."""
        return self.request is not None and self.request.control.paused

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested for the running run."""
        return self.request is not None and self.request.control.stopped

    def buttons(self) -> ButtonStates:
        """Which of Start, Pause, Resume, Stop and Save apply now."""
        running, paused, stopping = self.is_running, self.paused, self.stopping
        fits = self.estimate is None or self.estimate.fits
        return ButtonStates(
            start=not running and self.dataset is not None and fits,
            pause=running and not paused and not stopping,
            resume=paused and not stopping,
            stop=running and not stopping,
            save=not running and self.result is not None,
        )

    def begin(self, start_state: engine.ReconState | None) -> RunRequest:
        """Fix the inputs of a run (``InputError`` with the reason when it cannot start)."""
        if self.is_running:
            raise InputError("a reconstruction is already running")
        dataset = self.calibrated_dataset()
        config = self.set_config(self.config)
        check_dock_run(dataset, config)
        if self.estimate is not None and not self.estimate.fits:
            raise InputError(f"the run {self.estimate.describe()}; {self.estimate.advice()}")
        start = start_state.iteration if start_state is not None else 0
        self.request = RunRequest(dataset, config, start_state, engine.RunControl(), start)
        self.live_separation = []
        self.warnings = []
        return self.request

    def accept_separation(self, item: dict[str, Any]) -> ResultReport:
        """A multi-state stage of the running run ended: keep its separation report (a
        ``Progress.separation`` dictionary); :attr:`report` and :attr:`warnings` now say
        whether the states of the stages finished so far separated.  Returns the report."""
        self.live_separation.append(dict(item))
        self.warnings = separation_warnings(self.live_separation)
        self.report = live_report(self.live_separation)
        return self.report

    @property
    def unseparated(self) -> tuple[str, ...]:
        """The stages of the last (or running) run whose object states did not separate."""
        return () if self.report is None else self.report.unseparated

    def pause(self) -> None:
        """Hold the run after the current iteration."""
        if self.request is not None and not self.stopping:
            self.request.control.pause()

    def resume(self) -> None:
        """Continue a paused run."""
        if self.request is not None:
            self.request.control.resume()

    def stop(self) -> None:
        """Stop after the current iteration; the state reached becomes the result."""
        if self.request is not None:
            self.request.control.stop()

    def accept_result(self, result: RunResult) -> str:
        """Keep a run's result and warnings; returns the status line."""
        self.result = result.state
        self.result_source = self.request.dataset.source if self.request is not None else ""
        self.warnings = list(result.warnings)
        self.report = result_report(result.state)
        state = result.state
        loss = f"{state.loss[-1]:.4g}" if state.loss else "–"
        if result.stopped:
            text = f"stopped at iteration {state.iteration}; loss {loss}"
        else:
            text = f"finished: {state.iteration} iterations; loss {loss}"
        return f"{text} — result in '{RUN_LAYER_NAME} phase'; Save result… keeps it"

    def end(self) -> None:
        """The run is over (finished, stopped or failed)."""
        self.request = None

    def save_result(self, path: str | os.PathLike) -> str:
        """Save the last result to ``path`` (conventions §6); returns the path."""
        from caviar_napari.io.reconstruction import save_reconstruction

        if self.result is None:
            raise InputError("no reconstruction to save yet: run or stop a reconstruction first")
        save_reconstruction(path, self.result, source=self.result_source)
        return str(path)

    @staticmethod
    def continue_text(name: str, state: engine.ReconState) -> str:
        """Where a run started from the layer ``name`` holding ``state`` continues."""
        if state.finished:
            return f"{name}: finished: add iterations or a stage to continue"
        return (
            f"{name}: continues at stage {state.stage_index + 1}/{len(state.config.stages)}, "
            f"iteration {state.iteration}"
        )


def status_text(update: RunUpdate, paused: bool = False) -> str:
    """The status line of ``update``: stage, iteration, loss, the fitted source size (when the
    probe is partially coherent), elapsed time and ETA."""
    source = f" · source {update.source_fwhm_A:.3f} Å FWHM" if update.source_fwhm_A > 0 else ""
    return (
        ("paused — " if paused else "")
        + f"stage {update.stage_index + 1}/{update.n_stages} '{update.stage_name}' "
        f"({update.stage_iteration}/{update.stage_iterations}) · iteration "
        f"{update.iteration}/{update.total_iterations} · loss {update.loss:.4g}{source} · "
        f"{format_seconds(update.elapsed_s)} elapsed · ETA {format_seconds(update.eta_s)}"
    )


# ==================================================================================== live display
class LossHistory:
    """Loss per global iteration and the stage starts, in growing buffers (O(1) append)."""

    def __init__(self) -> None:
        self._iterations = np.empty(64, dtype=np.int64)
        self._losses = np.empty(64, dtype=np.float64)
        self._count = 0
        self.stage_starts: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return self._count

    @property
    def iterations(self) -> np.ndarray:
        """Global iteration numbers so far, shape ``(n,)`` (a view)."""
        return self._iterations[: self._count]

    @property
    def losses(self) -> np.ndarray:
        """Losses so far, shape ``(n,)`` (a view)."""
        return self._losses[: self._count]

    def clear(self) -> None:
        """Forget everything."""
        self._count = 0
        self.stage_starts = []

    def set(self, losses: np.ndarray, stage_starts: list[tuple[int, str]]) -> None:
        """Replace the history by ``losses`` (iterations ``1..n``) and the given stage starts."""
        losses = np.asarray(losses, dtype=np.float64).ravel()
        size = max(64, 2 * losses.size)
        self._iterations = np.empty(size, dtype=np.int64)
        self._losses = np.empty(size, dtype=np.float64)
        self._iterations[: losses.size] = np.arange(1, losses.size + 1)
        self._losses[: losses.size] = losses
        self._count = losses.size
        self.stage_starts = list(stage_starts)

    def append(self, iteration: int, loss: float, stage_name: str) -> None:
        """Add one point; a new ``stage_name`` starts a stage at ``iteration``."""
        if not self.stage_starts or self.stage_starts[-1][1] != stage_name:
            self.stage_starts.append((int(iteration), str(stage_name)))
        if self._count == self._iterations.size:
            self._iterations = np.resize(self._iterations, 2 * self._count)
            self._losses = np.resize(self._losses, 2 * self._count)
        self._iterations[self._count] = iteration
        self._losses[self._count] = loss
        self._count += 1


def log_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """Ticks of a log axis on ``[lo, hi]`` (``0 < lo < hi``): 1, 2, 5 per decade, thinned
    to at most 8, as ``(value, label)``."""
    if not (0 < lo < hi and math.isfinite(hi)):
        return []
    ticks = [
        m * 10.0**e
        for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for m in (1.0, 2.0, 5.0)
    ]
    ticks = [t for t in ticks if lo <= t <= hi]
    if len(ticks) > 8:
        ticks = [t for t in ticks if f"{t:.0e}".startswith("1")] or ticks[:: len(ticks) // 8 + 1]
    return [(t, f"{t:.3g}") for t in ticks]


def linear_ticks(lo: float, hi: float, count: int = 6) -> list[int]:
    """At most about ``count`` integer ticks on ``[lo, hi]`` at 1, 2, 5 × 10ⁿ steps."""
    span = max(hi - lo, 1.0)
    raw = span / max(count, 1)
    base = 10.0 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    step = max(int(round(step)), 1)
    first = int(math.ceil(lo / step) * step)
    return list(range(first, int(hi) + 1, step))


@dataclass(frozen=True)
class PacerSettings:
    """How often a live display shows what (seconds).

    A layer update makes napari redraw its canvas: a few ms with hardware OpenGL, about 100 ms
    on software OpenGL (Xvfb, VNC, remote desktops), where it stalls the event loop; even a
    status-line update repaints the whole window there (tens of ms, more on a busy machine).
    So each kind of update comes at its fast interval while the display's measured cost of
    one stays under ``cheap_update_s``, and at its slow interval when it is above: the eye then
    gets a fresh image every few seconds and the GUI stays responsive.  A status update joins
    each layer update (one repaint for both).

    Attributes
    ----------
    text_interval_s, slow_text_interval_s
        Shortest time between two updates of the status line, progress bar and loss plot, on a
        fast and on a slow display.
    image_interval_s, slow_image_interval_s
        Shortest time between two live layer updates on a fast display (≤ 4 Hz) and on a slow
        one.
    cheap_update_s
        An update costing the main thread more than this (its slot and the repaint that
        follows) makes the display slow.
    """

    text_interval_s: float = 0.5
    slow_text_interval_s: float = 1.5
    image_interval_s: float = 0.25
    slow_image_interval_s: float = 2.5
    cheap_update_s: float = 0.04


@dataclass(frozen=True)
class Frame:
    """What the display shows at one tick (None / False: nothing new)."""

    update: RunUpdate | None = None
    images: ReconImages | None = None


class LivePacer:
    """Decides, at each tick of a display timer, what a live display shows (Qt-free).

    The worker's yielded slot hands every :class:`RunUpdate` to :meth:`offer` (O(1)); the
    display timer calls :meth:`tick`, which returns at most the newest update (status line,
    progress, loss plot: at most every ``text_interval_s``) and the newest images (layers: at
    most every :attr:`image_interval_s`, which follows the measured cost of the display's
    updates, see :class:`PacerSettings`), so the main thread's work per second is bounded
    however fast the run iterates.  Images are asked from the worker (:attr:`images_wanted`)
    half an image interval after the previous ones were shown, so they are at most one
    iteration old when shown.

    Parameters
    ----------
    settings
        The intervals.
    clock
        Seconds, monotonic (tests pass their own).
    """

    def __init__(
        self, settings: PacerSettings | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or PacerSettings()
        self.clock = clock
        self.history = LossHistory()
        self.images_wanted = threading.Event()
        self.images_shown = 0
        #: cost (s) of the last layer update as measured by the display
        self.last_update_cost_s = 0.0
        #: cost (s) of the last status-only update as measured by the display
        self.last_text_cost_s = 0.0
        self._latest: RunUpdate | None = None
        self._shown: RunUpdate | None = None
        self._images: ReconImages | None = None
        self._text_t = -math.inf
        self._images_t = -math.inf

    @property
    def image_interval_s(self) -> float:
        """The current shortest time between two layer updates."""
        s = self.settings
        if self.last_update_cost_s > s.cheap_update_s:
            return max(s.slow_image_interval_s, s.image_interval_s)
        return s.image_interval_s

    @property
    def text_interval_s(self) -> float:
        """The current shortest time between two status updates."""
        s = self.settings
        if self.last_text_cost_s > s.cheap_update_s:
            return max(s.slow_text_interval_s, s.text_interval_s)
        return s.text_interval_s

    def begin(self) -> threading.Event:
        """Start a run; returns a fresh ``images_wanted`` event (set) for the worker."""
        self._latest = self._shown = self._images = None
        self._text_t = self._images_t = -math.inf
        self.images_shown = 0
        self.images_wanted = threading.Event()  # a fresh one: an old worker keeps its own
        self.images_wanted.set()
        return self.images_wanted

    @property
    def latest(self) -> RunUpdate | None:
        """The newest update received."""
        return self._latest

    def offer(self, update: RunUpdate) -> None:
        """Record a worker update (O(1))."""
        self.history.append(update.iteration, update.loss, update.stage_name)
        self._latest = update
        if update.images is not None:
            self._images = update.images

    def tick(self, *, force: bool = False) -> Frame:
        """What to show now (``force``: everything new, whatever the intervals)."""
        now = self.clock()
        interval = self.image_interval_s
        images = None
        if self._images is not None and (force or now - self._images_t >= interval):
            images, self._images = self._images, None
        elif self._images is None and now - self._images_t >= interval / 2:
            self.images_wanted.set()
        update = None
        due = force or images is not None or now - self._text_t >= self.text_interval_s
        if self._latest is not self._shown and due:
            update = self._shown = self._latest
            self._text_t = now
        return Frame(update=update, images=images)

    def text_done(self, cost_s: float) -> None:
        """The display showed a status-only frame at a main-thread cost of ``cost_s``."""
        self.last_text_cost_s = float(cost_s)

    def images_done(self, cost_s: float = 0.0) -> None:
        """The display put the images of the last frame into the layers, at a main-thread
        cost of ``cost_s`` (its slot and the repaint that followed)."""
        self.images_shown += 1
        self._images_t = self.clock()
        self.last_update_cost_s = float(cost_s)

    def drop_images(self) -> None:
        """Forget pending images (superseded by a result)."""
        self._images = None
