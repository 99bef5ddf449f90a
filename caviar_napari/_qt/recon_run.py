"""Worker-side generators of the Reconstruction widget (no Qt, no napari layers).

:func:`reconstruction_job` drives the engine's :func:`~caviar_napari.core.engine.run` and turns
each :class:`~caviar_napari.core.engine.Progress` into a small :class:`RunUpdate`: the heavy
work of an update (phase, amplitude and probe images from the complex arrays) happens here, in
the worker thread, so the main-thread slot only assigns arrays to layers.

The engine is looked up as ``caviar_napari.core.engine.run`` at call time (tests replace it).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Generator
from dataclasses import dataclass

from caviar_napari._napari.reconstruction_layers import ReconImages, reconstruction_images
from caviar_napari.core import engine
from caviar_napari.core.config import ReconstructionConfig
from caviar_napari.core.memory import MemoryEstimate
from caviar_napari.errors import CaviarError
from caviar_napari.io.dataset import STEMDataset

#: Nice increment of the reconstruction thread (Linux): the GUI thread keeps priority.
WORKER_NICENESS = 10


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
        Layer images every ``update_every`` iterations, else None.
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


@dataclass(frozen=True)
class RunResult:
    """The final (or stopped) state of a run and its layer images."""

    state: engine.ReconState
    images: ReconImages
    stopped: bool


def reconstruction_job(
    dataset: STEMDataset,
    config: ReconstructionConfig,
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
        cleared when they are yielded; the display sets it again once it has shown them.
        ``None``: images at every update.
    """
    lower_thread_priority()
    geometry = engine.plan_geometry(dataset, config)
    pixel, origin = geometry.pixel_size_A, geometry.object_origin_A
    gen = engine.run(dataset, config, state=state, control=control)
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
                progress.object, progress.probe, pixel, origin, geometry.positions_A
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
        )
    positions = geometry.positions_A if final.scan_positions_A is None else final.scan_positions_A
    images = reconstruction_images(
        final.object, final.probe, final.pixel_size_A, final.object_origin_A, positions
    )
    stopped = bool(control is not None and control.stopped and not final.finished)
    return RunResult(state=final, images=images, stopped=stopped)


def estimate_job(
    dataset: STEMDataset, config: ReconstructionConfig
) -> Generator[MemoryEstimate | CaviarError, None, None]:
    """Yield the memory estimate of ``config`` on ``dataset``, or the error that prevents it.

    A :class:`~caviar_napari.errors.CaviarError` (bad configuration, unavailable GPU) is yielded
    rather than raised, so the widget can show it as the reason why the run cannot start.
    """
    try:
        estimate = engine.estimate_run_memory(dataset, config)
    except CaviarError as exc:
        yield exc
        return
    yield estimate


def detect_job() -> Generator[str, None, None]:
    """Yield the one-line summary of the compute devices (may import cupy: off the main thread)."""
    from caviar_napari.core.backend import detect_devices

    yield detect_devices()


def load_job(path: str) -> Generator[None, None, STEMDataset]:
    """Read a 4D-STEM file (any format the project reads) and return the dataset."""
    from caviar_napari.io.readers import load_stem

    yield None
    return load_stem(path)
