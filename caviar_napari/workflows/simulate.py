"""Simulate a 4D-STEM dataset with its ground truth (``caviar simulate``)."""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caviar_napari.io.outputs import OutputTarget
from caviar_napari.workflows.summary import StepSummary

log = logging.getLogger(__name__)

__all__ = ["SimulateOptions", "SimulateSummary", "canonical_command", "run_simulate"]


@dataclass(frozen=True)
class SimulateOptions:
    """Options of :func:`run_simulate`.

    Attributes
    ----------
    preset
        Simulation preset (``caviar_napari.simulate.presets.PRESETS``).
    out
        Output HDF5 file (conventions §6 4D-STEM schema plus ``ground_truth``).
    overrides
        :class:`~caviar_napari.simulate.presets.SimulationConfig` fields that replace the
        preset's values.
    dry_run
        Resolve the parameters and report the size; simulate and write nothing.
    overwrite
        Replace an existing ``out`` that this program did not write, or of another kind.
    """

    preset: str
    out: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    overwrite: bool = False


@dataclass(kw_only=True)
class SimulateSummary(StepSummary):
    """Result of :func:`run_simulate`.

    Attributes
    ----------
    config
        The resolved :class:`~caviar_napari.simulate.presets.SimulationConfig`.
    n_atoms
        Atoms in the simulation box.
    size_bytes
        Size of the written file (0 for a dry run).
    elapsed_s
        Wall time of simulation and writing, s.
    command
        The command line recorded in the file (``ground_truth.command``).
    """

    config: Any = None
    n_atoms: int = 0
    size_bytes: int = 0
    elapsed_s: float = 0.0
    command: str = ""


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def canonical_command(preset: str, out: str | Path, overrides: dict[str, Any]) -> str:
    """A ``caviar simulate`` command line that reproduces the simulation (recorded in the file)."""
    parts = ["caviar", "simulate", preset, "--out", str(out)]
    for name, value in sorted(overrides.items()):
        opt = _option(name)
        if isinstance(value, bool):
            parts += [opt] if value else []
        elif isinstance(value, dict):
            for k, v in sorted(value.items()):
                parts += [opt, f"{k}={v:g}"]
        elif isinstance(value, tuple):
            parts += [opt, *(f"{v:g}" if isinstance(v, float) else str(v) for v in value)]
        else:
            parts += [opt, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(parts)


def run_simulate(options: SimulateOptions) -> SimulateSummary:
    """Simulate ``options.preset`` with abTEM and write the dataset with its ground truth.

    Raises
    ------
    InputError
        Unknown preset or parameter, or an invalid value (named).
    OutputError
        The output may not or cannot be written (checked before simulating).
    """
    from caviar_napari.simulate.presets import (
        build_structure,
        preset_config,
        simulate,
        write_simulation,
    )

    config = preset_config(options.preset, **options.overrides)
    structure = build_structure(config)
    ky, kx = config.detector_shape
    sy, sx = config.scan_shape
    box = structure.box_A
    intensity_bytes = sy * sx * ky * kx * 4
    line = (
        f"{config.preset}: {structure.n_atoms} atoms in a {box[0]:.2f} × {box[1]:.2f} × "
        f"{box[2]:.2f} Å box, {config.thermal_model} model, {config.n_configs} configuration(s); "
        f"scan {sy} × {sx} at {config.scan_step_A[0]:g} × {config.scan_step_A[1]:g} Å; detector "
        f"{ky} × {kx} (pixel {box[0] / ky:.4f} × {box[1] / kx:.4f} Å); "
        f"about {intensity_bytes / 2**20:.1f} MiB of intensities"
    )
    command = canonical_command(options.preset, options.out, options.overrides)
    summary = SimulateSummary(config=config, n_atoms=structure.n_atoms, command=command)
    if options.dry_run:
        summary.lines = [line, config.to_json()]
        return summary
    target = OutputTarget.prepare(
        options.out, "stem", overwrite=options.overwrite, size_bytes=1.2 * intensity_bytes
    )
    log.info(line)
    t0 = time.perf_counter()
    result = simulate(config)
    target.write(lambda p: write_simulation(p, result, command=command))
    summary.out = target.path
    summary.size_bytes = target.path.stat().st_size
    summary.elapsed_s = time.perf_counter() - t0
    summary.lines = [
        line,
        f"wrote {options.out} ({summary.size_bytes / 2**20:.1f} MiB) in {summary.elapsed_s:.1f} s",
    ]
    return summary
