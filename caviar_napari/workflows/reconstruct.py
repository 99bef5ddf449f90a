"""Mixed-state multislice ptychography of a 4D-STEM file (``caviar reconstruct``).

:func:`reconstruct_steps` is a generator (the napari worker form): it checks the output, reads
the data, runs :func:`caviar_napari.core.engine.run` yielding its
:class:`~caviar_napari.core.engine.Progress`, and writes the RECON file; its return value is the
:class:`ReconstructSummary`.  :func:`run_reconstruct` drives it to the end.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from caviar_napari.errors import InputError, WorkerError
from caviar_napari.io.outputs import OutputTarget
from caviar_napari.workflows.summary import StepSummary

if TYPE_CHECKING:
    from caviar_napari.core.engine import Progress, ReconState, RunControl
    from caviar_napari.data.config import ReconstructionConfig
    from caviar_napari.io.dataset import STEMDataset

__all__ = [
    "ReconstructOptions",
    "ReconstructSummary",
    "ReconstructionInterrupted",
    "build_config",
    "checkpoint_path_for",
    "reconstruct_steps",
    "run_reconstruct",
]


class ReconstructionInterrupted(KeyboardInterrupt):
    """Ctrl-C during a reconstruction; the message says how to keep or resume the progress."""


@dataclass(frozen=True)
class ReconstructOptions:
    """Options of :func:`run_reconstruct` (None: the configuration's value).

    Attributes
    ----------
    data
        4D-STEM input (any format :func:`caviar_napari.io.readers.load_stem` reads).
    out
        Output RECON file.
    config
        Configuration file (YAML); without it the configuration stored in ``resume``, else
        the defaults.
    base_config
        A configuration object used instead of a file (the widgets); not with ``config``.
    device, precision, iterations, object_states, state_model, state_penalty, probe_modes, \
    slices, slice_thickness_A, seed
        Overrides (:func:`caviar_napari.data.config.apply_overrides`): ``iterations`` is the
        total, shared over the stages like their own iterations; ``precision``,
        ``probe_modes``, ``slices`` and ``slice_thickness_A`` set every stage,
        ``object_states``, ``state_model`` and ``state_penalty`` the last one.
    refine
        The blocks every stage refines (``object``, ``probe``, ``tilt``, ``source``,
        ``positions``, ``affine``), replacing the configuration's.
    refine_positions
        Refine the scan positions (a shift of each, a global affine map and a linear drift,
        :mod:`caviar_napari.core.positions`) in every stage that refines the object.
    resume
        A checkpoint or reconstruction file to continue exactly where it stopped.
    checkpoint_every
        Write a checkpoint every N iterations (to ``OUT.checkpoint.h5`` unless the
        configuration names ``checkpoint_path``).
    overwrite
        Replace an existing output that this program did not write, or of another kind.
    dry_run
        Print the memory plan (:meth:`MemoryEstimate.plan_text`) and stop: nothing is
        reconstructed or written.
    cluster
        Dask cluster of a distributed run (``local:N`` or ``tcp://HOST:PORT``), overriding the
        configuration's ``cluster``.
    """

    data: Path
    out: Path
    config: Path | None = None
    base_config: ReconstructionConfig | None = None
    device: str | None = None
    precision: str | None = None
    iterations: int | None = None
    object_states: int | None = None
    state_model: str | None = None
    state_penalty: float | str | None = None
    probe_modes: int | None = None
    slices: int | None = None
    slice_thickness_A: float | None = None
    seed: int | None = None
    refine: tuple[str, ...] | None = None
    refine_positions: bool = False
    resume: Path | None = None
    checkpoint_every: int | None = None
    overwrite: bool = False
    dry_run: bool = False
    cluster: str | None = None


@dataclass(kw_only=True)
class ReconstructSummary(StepSummary):
    """Result of :func:`run_reconstruct`.

    Attributes
    ----------
    state
        The final :class:`~caviar_napari.core.engine.ReconState` (host arrays).
    iterations_run
        Iterations done by this run (``state.iteration`` counts those before a resume too).
    final_loss
        Objective after the last iteration.
    elapsed_s
        Wall time, s.
    finished
        False when stopped through the run control (then nothing is written to ``out``;
        the state is in the checkpoint when checkpoints are on).
    checkpoint
        The checkpoint file, or None when checkpoints are off.
    """

    state: ReconState | None = None
    iterations_run: int = 0
    final_loss: float = math.nan
    elapsed_s: float = 0.0
    finished: bool = True
    checkpoint: Path | None = None


def checkpoint_path_for(out: str | Path) -> Path:
    """Default checkpoint file of the output ``out``: ``OUT.checkpoint.h5`` next to it."""
    out = Path(out)
    return out.with_name(out.stem + ".checkpoint.h5")


def build_config(
    options: ReconstructOptions, stored: ReconstructionConfig | None = None
) -> ReconstructionConfig:
    """The configuration: ``options.config`` (or ``base_config``, or ``stored``, or the
    defaults) with the overrides of ``options`` over it."""
    from caviar_napari.data.config import ReconstructionConfig, apply_overrides
    from caviar_napari.io.config_file import load_yaml

    if options.config is not None and options.base_config is not None:
        raise InputError("give a configuration file or a configuration object, not both")
    if options.config is not None:
        config = load_yaml(options.config)
    elif options.base_config is not None:
        config = options.base_config
    elif stored is not None:
        config = stored
    else:
        config = ReconstructionConfig().validate()
    checkpoint_path = None
    if options.checkpoint_every and not config.checkpoint_path:
        checkpoint_path = str(checkpoint_path_for(options.out))
    return apply_overrides(
        config,
        iterations=options.iterations,
        object_states=options.object_states,
        state_model=options.state_model,
        state_penalty=options.state_penalty,
        probe_modes=options.probe_modes,
        slices=options.slices,
        slice_thickness_A=options.slice_thickness_A,
        refine=options.refine,
        refine_positions=options.refine_positions,
        device=options.device,
        precision=options.precision,
        seed=options.seed,
        checkpoint_every=options.checkpoint_every,
        checkpoint_path=checkpoint_path,
        cluster=options.cluster,
    )


def _output_bytes(dataset: STEMDataset, config: ReconstructionConfig) -> float:
    """Rough size of a RECON file: object states × slices plus the L-BFGS memory, probe."""
    from caviar_napari.core.engine import plan_geometry

    geom = plan_geometry(dataset, config)
    h, w = geom.object_shape
    item = 16 if config.precision == "double" else 8
    last = config.stages[-1]
    states = max(s.object_states for s in config.stages)
    slices = max(s.slices for s in config.stages)
    obj = states * slices * h * w * item
    probe = max(s.probe_modes for s in config.stages) * geom.window[0] * geom.window[1] * item
    return (obj + probe) * (1 + 2 * last.lbfgs_memory)


def _interrupt_message(
    options: ReconstructOptions,
    config: ReconstructionConfig,
    iteration: int,
    last_checkpoint: int | None,
) -> str:
    """What Ctrl-C kept, and how to keep or resume the progress."""
    where = f"at iteration {iteration} of {config.total_iterations}"
    if not config.checkpoint_every:
        return (
            f"{where}; nothing was written and the progress is lost (no checkpoints). To keep "
            "the progress of a long run next time, add --checkpoint-every N (a checkpoint "
            f"every N iterations in {checkpoint_path_for(options.out)}), then continue it "
            "with --resume"
        )
    ckpt = Path(str(config.checkpoint_path))
    if last_checkpoint is None or not ckpt.is_file():
        return (
            f"{where}; no checkpoint was written yet (the first is due at iteration "
            f"{config.checkpoint_every}) and nothing else was written"
        )
    command = shlex.join(
        ["caviar", "reconstruct", str(options.data), "--out", str(options.out), "--resume",
         str(ckpt)]
    )  # fmt: skip
    return (
        f"{where}; the checkpoint of iteration {last_checkpoint} is in {ckpt}; continue "
        f"exactly from there with: {command}"
    )


def load_for_run(path: Path, config: ReconstructionConfig) -> STEMDataset:
    """The dataset at ``path``, its intensities left in the file (read per batch) when it is a
    conventions §6 HDF5 file larger than the host memory the run may use, or when a cluster
    evaluates it (each worker then reads its own patterns)."""
    from caviar_napari.core.backend import get_backend
    from caviar_napari.core.engine import memory_budgets
    from caviar_napari.core.memory import USABLE_FRACTION
    from caviar_napari.io.dataset import read_stem_h5, stem_h5_nbytes
    from caviar_napari.io.readers import load_stem

    size = 0
    if Path(path).suffix.lower() in (".h5", ".hdf5", ".hdf") and Path(path).is_file():
        try:
            size = stem_h5_nbytes(path)
        except InputError:
            size = 0
    if size:
        if config.cluster:  # the workers read their own patterns from the file
            return read_stem_h5(path, lazy=True)
        _device, host = memory_budgets(config, get_backend(config.device, config.precision))
        if size > USABLE_FRACTION * host / 2:  # the data may take half of what the run has
            return read_stem_h5(path, lazy=True)
    return load_stem(path)


def reconstruct_steps(
    options: ReconstructOptions, control: RunControl | None = None
) -> Generator[Progress, None, ReconstructSummary]:
    """Check, read, reconstruct (yielding the engine's progress) and write; see the module.

    Raises
    ------
    InputError
        Unreadable inputs, an inconsistent configuration, or nothing to do (zero iterations,
        or a finished reconstruction resumed without more iterations).
    OutputError
        The output (or the checkpoint file) may not or cannot be written (checked before the
        reconstruction starts).
    ReconstructionInterrupted
        Ctrl-C; the message says where the last checkpoint is and how to resume, or how to
        keep the progress next time.
    """
    from caviar_napari.core import engine
    from caviar_napari.core.positions import describe_refinement
    from caviar_napari.core.state_penalty import penalty_lines
    from caviar_napari.io.reconstruction import load_reconstruction, save_reconstruction

    inputs = {"DATA": options.data, "--config": options.config, "--resume": options.resume}
    target = None
    if not options.dry_run:
        target = OutputTarget.prepare(
            options.out, "recon", inputs=inputs, overwrite=options.overwrite
        )
    state: ReconState | None = None
    if options.resume is not None:
        state = load_reconstruction(options.resume)
    config = build_config(options, state.config if state is not None else None)
    dataset = load_for_run(options.data, config)
    if options.dry_run:
        plan = engine.estimate_run_memory(dataset, config)
        summary = ReconstructSummary(finished=False)
        summary.lines.append(plan.plan_text())
        if not plan.fits:
            summary.warnings.append(f"the plan does not fit: {plan.advice()}")
        return summary
    assert target is not None
    checkpoint: OutputTarget | None = None
    if config.checkpoint_every:
        checkpoint = OutputTarget.prepare(
            config.checkpoint_path,
            "recon",
            inputs={"DATA": options.data, "--config": options.config},
            overwrite=options.overwrite,
            option="checkpoint",
        )
    if state is not None:
        state.config = config
        if state.finished:
            raise InputError(
                f"{options.resume}: nothing to do: the reconstruction has run all "
                f"{config.total_iterations} iterations of its configuration (give more "
                "--iterations, or a --config with more stages)"
            )
    elif config.total_iterations == 0:
        raise InputError(
            "--iterations 0: nothing to reconstruct (every stage has 0 iterations); give "
            "--iterations N with N ≥ 1"
        )
    size = _output_bytes(dataset, config)
    target.require_space(size)
    if checkpoint is not None:
        checkpoint.require_space(size)

    start = state.iteration if state is not None else 0
    t0 = time.perf_counter()
    on_checkpoint = None
    if checkpoint is not None:

        def on_checkpoint(live: ReconState) -> None:
            checkpoint.write(lambda p: save_reconstruction(p, live, source=dataset.source))

    gen = engine.run(dataset, config, state=state, control=control, on_checkpoint=on_checkpoint)
    iteration, last_checkpoint = start, None
    try:
        while True:
            try:
                progress = next(gen)
            except StopIteration as stop:
                state = stop.value
                break
            iteration = progress.iteration
            if config.checkpoint_every and iteration % config.checkpoint_every == 0:
                last_checkpoint = iteration
            yield progress
    except KeyboardInterrupt:
        gen.close()
        raise ReconstructionInterrupted(
            _interrupt_message(options, config, iteration, last_checkpoint)
        ) from None
    except WorkerError as exc:  # a worker of a distributed run died: keep the last state
        kept = getattr(exc, "state", None)
        if kept is None:
            raise
        ckpt = checkpoint or OutputTarget.prepare(
            checkpoint_path_for(options.out),
            "recon",
            inputs={"DATA": options.data, "--config": options.config},
            overwrite=options.overwrite,
            option="checkpoint",
        )
        ckpt.write(lambda p: save_reconstruction(p, kept, source=dataset.source))
        command = shlex.join(
            ["caviar", "reconstruct", str(options.data), "--out", str(options.out), "--resume",
             str(ckpt.path), "--cluster", "local:1"]
        )  # fmt: skip
        raise WorkerError(
            f"{exc}; the state of iteration {kept.iteration} is in {ckpt.path}; continue with "
            f"fewer workers, e.g.: {command}"
        ) from None
    elapsed = time.perf_counter() - t0
    done = state.iteration - start
    summary = ReconstructSummary(
        state=state,
        iterations_run=done,
        final_loss=state.loss[-1] if state.loss else math.nan,
        elapsed_s=elapsed,
        finished=state.finished,
        checkpoint=None if checkpoint is None else checkpoint.path,
    )
    if not state.finished:
        kept = "nothing was kept"
        if checkpoint is not None:
            checkpoint.write(lambda p: save_reconstruction(p, state, source=dataset.source))
            kept = f"the state is in {checkpoint.path} (continue with --resume)"
        summary.warnings.append(
            f"stopped at iteration {state.iteration} of {config.total_iterations}: nothing "
            f"written to {options.out}; {kept}"
        )
        return summary
    # what the engine found wrong with the result (states that did not separate, …)
    summary.warnings.extend(state.diagnostics.get("warnings", []))
    summary.out = target.write(
        lambda p: save_reconstruction(p, state, source=dataset.source),
        warnings=summary.warnings,
    )
    summary.lines.append(
        f"caviar reconstruct: {done} iteration{'' if done == 1 else 's'} "
        f"({state.iteration} in total), final loss {summary.final_loss:.6g}, {elapsed:.1f} s, "
        f"object {tuple(state.object.shape)}, probe {tuple(state.probe.shape)} -> {options.out}"
    )
    summary.lines += penalty_lines(config.stages, state.diagnostics)
    if state.positions_u is not None or state.affine is not None:
        line, warnings = describe_refinement(
            state.positions_u, state.affine, config.position_bound_A
        )
        summary.lines.append(line)
        summary.warnings.extend(warnings)
    return summary


def run_reconstruct(
    options: ReconstructOptions,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    control: RunControl | None = None,
) -> ReconstructSummary:
    """Run :func:`reconstruct_steps` to the end, calling ``on_progress`` after every iteration.

    Returns
    -------
    ReconstructSummary
        See :func:`reconstruct_steps` for what is raised.
    """
    gen = reconstruct_steps(options, control)
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            try:
                on_progress(progress)
            except KeyboardInterrupt:
                gen.throw(KeyboardInterrupt())  # re-raised with the checkpoint advice
