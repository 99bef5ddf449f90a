"""The plan of a reconstruction before it starts: the dock's dry run (Qt-free).

What ``caviar reconstruct --dry-run`` prints, and what a microscopist wants to see before
pressing Start: the probe window and object pixel each stage gets from its detector padding
(conventions §1), the data loss ``auto`` will choose, how many scan positions are held out, and
the memory plan of the most demanding stage (:meth:`~caviar_napari.core.memory.MemoryEstimate.
plan_text`: where the data and the L-BFGS history go, bytes per part and pool).
:func:`plan_job` makes it in a worker; :func:`check_dock_run` refuses what the dock cannot run.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from caviar_napari.core import engine
from caviar_napari.core.geometry import plan_geometry, stage_padding
from caviar_napari.core.holdout import holdout_fraction, split_positions
from caviar_napari.core.memory import MemoryEstimate
from caviar_napari.data import config as cfg
from caviar_napari.data.lazy import LazyIntensities, pattern_mean
from caviar_napari.errors import CaviarError, InputError
from caviar_napari.io.dataset import STEMDataset

__all__ = ["RunPlan", "StageGrid", "check_dock_run", "padding_text", "plan_job", "run_plan"]


def padding_text(padding: str | float) -> str:
    """A detector padding as the dock writes it: ``auto``, ``none``, ``128x128``, ``0.11 Å``."""
    return f"{padding:g} Å pixel" if isinstance(padding, float) else str(padding)


@dataclass(frozen=True)
class StageGrid:
    """The grid one stage reconstructs on.

    Attributes
    ----------
    stage
        The stage's name.
    padding
        Its detector padding (its own or the configuration's, normalised).
    window
        ``(Ky, Kx)`` probe window, pixels.
    pixel_A
        ``(dy, dx)`` object pixel, Å.
    model_modes
        Incoherent modes the forward model propagates (probe modes × source points).
    """

    stage: str
    padding: str | float
    window: tuple[int, int]
    pixel_A: tuple[float, float]
    model_modes: int

    @property
    def pixel_text(self) -> str:
        """``"0.1042 Å"``, or ``"0.1127×0.1113 Å"`` when ``dy ≠ dx``."""
        dy, dx = self.pixel_A
        return f"{dy:.4g} Å" if f"{dy:.4g}" == f"{dx:.4g}" else f"{dy:.4g}×{dx:.4g} Å"

    @property
    def text(self) -> str:
        """``"stage 'x': 96×96 window (padding auto), pixel 0.1042 Å, 1 model mode"``."""
        return (
            f"stage '{self.stage}': {self.window[0]}×{self.window[1]} window (padding "
            f"{padding_text(self.padding)}), pixel {self.pixel_text}, {self.model_modes} model "
            "mode" + ("s" if self.model_modes != 1 else "")
        )


@dataclass(frozen=True)
class RunPlan:
    """Everything known about a run before it starts (the dock's dry run).

    Attributes
    ----------
    estimate
        The memory plan of the most demanding stage.
    grids
        The grid of every stage, in order.
    detector
        ``(ky, kx)`` measured detector pixels.
    n_patterns, held_out
        Scan positions, and how many of them the run leaves out of the fit.
    loss
        The data loss the run will use (``auto`` resolved).
    loss_setting
        The configuration's ``loss``.
    """

    estimate: MemoryEstimate
    grids: tuple[StageGrid, ...]
    detector: tuple[int, int]
    n_patterns: int
    held_out: int
    loss: str
    loss_setting: str

    @property
    def grid_text(self) -> str:
        """The stages' windows and pixels, one short line (the same grid for all: once)."""
        if len({(g.window, g.pixel_A) for g in self.grids}) == 1:
            g = self.grids[0]
            return (
                f"grid: {g.window[0]}×{g.window[1]} window from the {self.detector[0]}×"
                f"{self.detector[1]} detector, pixel {g.pixel_text} (every stage)"
            )
        return "grid: " + "; ".join(
            f"'{g.stage}' {g.window[0]}×{g.window[1]}, {g.pixel_text}" for g in self.grids
        )

    @property
    def lines(self) -> list[str]:
        """The dry-run summary: data, loss, held-out positions, each stage's grid, the memory
        plan (as ``caviar reconstruct --dry-run`` prints it)."""
        auto = " (chosen by auto)" if self.loss_setting == "auto" else ""
        held = (
            f"{self.held_out} of {self.n_patterns} scan positions held out of the fit"
            if self.held_out
            else f"all {self.n_patterns} scan positions fitted (none held out)"
        )
        return [
            f"data: {self.n_patterns} patterns of {self.detector[0]}×{self.detector[1]} px; "
            f"loss {self.loss}{auto}; {held}",
            *(g.text for g in self.grids),
            *self.estimate.plan_text().splitlines(),
        ]


def check_dock_run(dataset: STEMDataset, config: cfg.ReconstructionConfig) -> None:
    """Refuse what the dock cannot run (``InputError`` naming the setting)."""
    lazy = isinstance(dataset.intensities, LazyIntensities)
    if config.data_placement == "file" and not lazy:
        raise InputError(
            "'data_placement' is 'file' (out-of-core), but the dock holds these data in "
            "memory: choose auto, device or host, or run caviar reconstruct on the file"
        )


def run_plan(dataset: STEMDataset, config: cfg.ReconstructionConfig) -> RunPlan:
    """The plan of ``config`` on ``dataset`` (one pass over the data for ``auto`` padding).

    Raises
    ------
    CaviarError
        A setting the run would refuse (bad padding, unavailable GPU, ``data_placement``).
    """
    check_dock_run(dataset, config)
    mean = None
    geometries = {}
    grids = []
    for index, stage in enumerate(config.stages):
        padding = stage_padding(config, index)
        if padding not in geometries:
            if padding == "auto" and mean is None:
                mean = pattern_mean(dataset.intensities)
            geometries[padding] = plan_geometry(dataset, config, padding=padding, mean_pattern=mean)
        geom = geometries[padding]
        grids.append(
            StageGrid(
                stage=stage.name,
                padding=padding,
                window=tuple(int(v) for v in geom.window),
                pixel_A=tuple(float(v) for v in geom.pixel_size_A),
                model_modes=int(stage.model_modes),
            )
        )
    largest = max(geometries.values(), key=lambda g: g.window[0] * g.window[1])
    estimate = engine.estimate_run_memory(dataset, config, geom=largest)
    fraction = holdout_fraction(config.holdout_fraction, dataset.is_counts)
    if config.cluster and config.holdout_fraction == "auto":
        fraction = 0.0  # a distributed run fits every pattern
    _fit, held = split_positions(dataset.scan_shape, fraction)
    sy, sx = dataset.scan_shape
    return RunPlan(
        estimate=estimate,
        grids=tuple(grids),
        detector=tuple(int(v) for v in dataset.detector_shape),
        n_patterns=int(sy * sx),
        held_out=int(held.size),
        loss=engine.resolve_loss(config.loss, dataset),
        loss_setting=config.loss,
    )


def plan_job(
    dataset: STEMDataset, config: cfg.ReconstructionConfig
) -> Generator[RunPlan | CaviarError, None, None]:
    """Yield the :class:`RunPlan` of ``config`` on ``dataset``, or the error that prevents it.

    A :class:`~caviar_napari.errors.CaviarError` (bad configuration, unavailable GPU) is yielded
    rather than raised, so the dock can show it as the reason why the run cannot start.
    """
    try:
        plan = run_plan(dataset, config)
    except CaviarError as exc:
        yield exc
        return
    yield plan
