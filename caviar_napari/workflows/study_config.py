"""What a validation study runs: its sizes, its cases, the simulation parameters and the
two-stage reconstruction recipe (validated dataclasses; :mod:`caviar_napari.workflows.study` runs
them)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.errors import InputError

if TYPE_CHECKING:
    from caviar_napari.data.config import ReconstructionConfig

__all__ = [
    "CASE_PRESETS",
    "DATA_KINDS",
    "REFERENCE_PRESET",
    "SIZES",
    "START_POSITIONS",
    "Case",
    "StudyConfig",
    "StudySize",
    "default_cases",
    "reconstruction_config",
    "replace_size",
    "select_cases",
    "simulate_argv",
    "simulate_overrides",
]

#: Presets of the study (issue 8), in the order of the paper's Fig. 2 b–e.
CASE_PRESETS: tuple[str, ...] = (
    "hbn-static",
    "hbn-einstein",
    "hbn-correlated",
    "hbn-correlated-psc",
)
#: The dataset whose realised Green's tensor plays the role of the paper's MD ground truth.
REFERENCE_PRESET = "hbn-correlated"
#: Where a case's intensities come from (see :class:`Case`).
DATA_KINDS = ("abtem", "forward-model")
#: Reconstruction recipes of a case.
RECIPES = ("recommended", "paper", "displaced")
#: Start positions: LoG on the reconstruction, or the ground-truth ideal sites.
START_POSITIONS = ("log", "truth")


def _pair(value: ArrayLike, name: str, kind: type) -> tuple:
    arr = np.asarray(value, dtype=float).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"study parameter '{name}' must be a positive (y, x) pair, got {value!r}")
    if kind is int:
        if np.any(arr != np.round(arr)):
            raise InputError(f"study parameter '{name}' must be integers, got {value!r}")
        return (int(arr[0]), int(arr[1]))
    return (float(arr[0]), float(arr[1]))


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"study parameter '{name}' must be an integer ≥ 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class StudySize:
    """Sizes of a study: simulation, reconstruction and iterations (validated on construction).

    Attributes
    ----------
    name
        Label (``test``, ``cpu``, ``gpu`` or any).
    cells
        Orthogonal hBN cells ``(ny, nx)`` of the periodic simulation box (``a√3 × a`` each).
    detector_shape
        Detector pixels ``(Ky, Kx)``; with the box this fixes the reconstruction pixel
        ``box / K`` (≈ 0.21 Å for 21 pixels per 4.34 Å cell height).
    scan_shape, scan_step_A
        Scan points ``(Sy, Sx)`` and step ``(dy, dx)`` in Å.
    n_configs
        Thermal configurations (frozen phonons) averaged in every pattern.
    object_states
        Object states of the reconstruction's second stage.
    psc_probe_modes
        Probe modes of the multi-mode reconstruction of the PSC dataset (the paper used 9).
    iterations
        ``(stage 1, stage 2)`` L-BFGS iterations.
    slices, slice_thickness_A
        Reconstruction slices and their thickness, Å (a monolayer: one slice of the box).
    temperature_K
        Specimen temperature; ``None`` keeps the presets' (300 K).
    dose_e_per_A2
        Electron dose of Poisson-noisy data (e/Å²); ``None``: noise-free.
    """

    name: str
    cells: tuple[int, int]
    detector_shape: tuple[int, int]
    scan_shape: tuple[int, int]
    scan_step_A: tuple[float, float]
    n_configs: int
    object_states: int
    psc_probe_modes: int
    iterations: tuple[int, int]
    slices: int = 1
    slice_thickness_A: float = 4.0
    temperature_K: float | None = None
    dose_e_per_A2: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise InputError(
                f"study parameter 'name' must be a non-empty string, got {self.name!r}"
            )
        set_(self, "cells", _pair(self.cells, "cells", int))
        set_(self, "detector_shape", _pair(self.detector_shape, "detector_shape", int))
        set_(self, "scan_shape", _pair(self.scan_shape, "scan_shape", int))
        set_(self, "scan_step_A", _pair(self.scan_step_A, "scan_step_A", float))
        for name in ("n_configs", "object_states", "psc_probe_modes", "slices"):
            set_(self, name, _positive_int(getattr(self, name), name))
        it = tuple(self.iterations)
        if len(it) != 2:
            raise InputError(f"study parameter 'iterations' must be (stage 1, stage 2), got {it}")
        set_(self, "iterations", tuple(_positive_int(v, "iterations") for v in it))
        t = float(self.slice_thickness_A)
        if not (math.isfinite(t) and t > 0):
            raise InputError(f"study parameter 'slice_thickness_A' must be > 0, got {t!r}")
        set_(self, "slice_thickness_A", t)
        if self.temperature_K is not None:
            tk = float(self.temperature_K)
            if not (math.isfinite(tk) and tk > 0):
                raise InputError(f"study parameter 'temperature_K' must be > 0, got {tk!r}")
            set_(self, "temperature_K", tk)
        if self.dose_e_per_A2 is not None:
            dose = float(self.dose_e_per_A2)
            if not (math.isfinite(dose) and dose > 0):
                raise InputError(f"study parameter 'dose_e_per_A2' must be > 0, got {dose!r}")
            set_(self, "dose_e_per_A2", dose)


#: Predefined sizes.  ``test``: the unit test (about 3 min for two datasets on 2 cores);
#: ``cpu``: the documented benchmark (five reconstructions in under 30 min on 2 cores);
#: ``gpu``: the paper's scale (20 configurations and states, 9 probe modes, a 32 × 32 scan).
#: Stage 1 (one state) is cheap and run until its loss levels off (padded 154 × 90 window, 16 × 16
#: scan: 1.2e-6 after 50, 5.1e-7 after 100, 3.9e-7 after 150 iterations), so that the states start
#: from a converged mean object instead of absorbing its remaining misfit; stage 2 is as long as
#: the CPU budget allows (the states still improve after 200 iterations).
SIZES: dict[str, StudySize] = {
    "test": StudySize(
        name="test",
        cells=(4, 4),
        detector_shape=(84, 48),
        scan_shape=(12, 12),
        scan_step_A=(0.5, 0.5),
        n_configs=8,
        object_states=8,
        psc_probe_modes=3,
        iterations=(100, 150),
    ),
    "cpu": StudySize(
        name="cpu",
        cells=(4, 4),
        detector_shape=(84, 48),
        scan_shape=(16, 16),
        scan_step_A=(0.5, 0.5),
        n_configs=10,
        object_states=10,
        psc_probe_modes=3,
        iterations=(120, 200),
    ),
    "gpu": StudySize(
        name="gpu",
        cells=(4, 8),
        detector_shape=(84, 96),
        scan_shape=(32, 32),
        scan_step_A=(0.4, 0.4),
        n_configs=20,
        object_states=20,
        psc_probe_modes=9,
        iterations=(300, 1000),
    ),
}


@dataclass(frozen=True)
class Case:
    """One reconstruction of the study (one row of the table).

    Attributes
    ----------
    preset
        Simulation preset (``caviar simulate PRESET``).
    probe_modes
        Probe modes of both stages of the ``paper`` recipe (1 for ``recommended``).
    recipe
        ``"recommended"`` (the default configuration: a coherent probe with a fitted source
        size, states kept from shifting rigidly, :func:`~caviar_napari.data.config.
        recommended_recipe`), ``"displaced"`` (the same with the states as displaced atoms,
        :func:`~caviar_napari.data.config.displaced_recipe`) or ``"paper"`` (free probe modes
        fitted with one state, then kept fixed,
        :func:`~caviar_napari.data.config.two_stage_preset`).
    data
        ``"abtem"``: the simulated data as they are; ``"forward-model"``: the control — the
        same configurations' intensities re-made by the engine's own forward model
        (:func:`forward_model_data`), so that no abTEM–engine model mismatch is left.
    state_penalty
        ``state_penalty`` of the states stage (:mod:`caviar_napari.core.state_penalty`): 0
        (the recipes' own), a weight, or ``"auto"`` (chosen by the held-out patterns).
    """

    preset: str
    probe_modes: int = 1
    data: str = "abtem"
    recipe: str = "recommended"
    state_penalty: float | str = 0.0

    def __post_init__(self) -> None:
        from caviar_napari.simulate.presets import PRESETS

        if self.preset not in PRESETS:
            raise InputError(f"unknown preset {self.preset!r}; known: {sorted(PRESETS)}")
        object.__setattr__(self, "probe_modes", _positive_int(self.probe_modes, "probe_modes"))
        if self.data not in DATA_KINDS:
            raise InputError(f"case data must be one of {DATA_KINDS}, got {self.data!r}")
        if self.recipe not in RECIPES:
            raise InputError(f"case recipe must be one of {RECIPES}, got {self.recipe!r}")
        if self.recipe != "paper" and self.probe_modes != 1:
            raise InputError(f"the {self.recipe} recipe has one coherent probe mode")
        from caviar_napari.data.config import check_state_penalty

        object.__setattr__(self, "state_penalty", check_state_penalty(self.state_penalty, "case"))

    @property
    def key(self) -> str:
        """File-name stem of this case: ``hbn-correlated-psc`` (recommended recipe),
        ``hbn-correlated-psc_paper-m4`` (the paper's, 4 modes)."""
        tail = "" if self.data == "abtem" else f"_{self.data}"
        recipe = {"recommended": "", "displaced": "_displaced"}.get(
            self.recipe, f"_paper-m{self.probe_modes}"
        )
        weight = self.state_penalty
        penalty = f"_penalty-{weight if weight == 'auto' else f'{weight:g}'}" if weight else ""
        return f"{self.preset}{recipe}{penalty}{tail}"

    @property
    def recipe_label(self) -> str:
        """How the case was reconstructed, for tables."""
        if self.recipe in ("recommended", "displaced"):
            return self.recipe
        return f"paper, {self.probe_modes} mode{'s' if self.probe_modes > 1 else ''}"


def default_cases(size: StudySize) -> tuple[Case, ...]:
    """The paper's datasets b–e with the recommended recipe, and the PSC data also with the
    paper's recipe of ``size.psc_probe_modes`` free modes (the offset it leaves)."""
    return (
        Case("hbn-static"),
        Case("hbn-einstein"),
        Case("hbn-correlated"),
        Case("hbn-correlated-psc"),
        Case("hbn-correlated-psc", size.psc_probe_modes, recipe="paper"),
    )


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study run needs (validated on construction).

    Attributes
    ----------
    size
        :class:`StudySize`.
    workdir
        Folder for every file the pipeline writes (data, configurations, reconstructions,
        atoms, correlations).
    cases
        The reconstructions to run (default: :func:`default_cases`).
    seed
        Seed of the simulations (configurations) and of the reconstructions (state noise).
    device
        ``cpu``, ``gpu`` or ``auto`` (the reconstruction's ``--device``).
    start_positions
        ``"log"`` (LoG on the reconstruction) or ``"truth"`` (ground-truth ideal sites).
    fov_margin_A
        Atoms are analysed inside the scan rectangle shrunk by this margin, Å.
    reference_neighbours
        Neighbours of the reference atom in the reference pair set (9 = the 3 nearest and 6
        next-nearest neighbours of hBN).
    reuse
        Skip a step whose output file exists already (a resumed study; the files carry the
        commands that made them).
    """

    size: StudySize
    workdir: Path
    cases: tuple[Case, ...] = ()
    seed: int = 0
    device: str = "cpu"
    start_positions: str = "log"
    fov_margin_A: float = 0.0
    reference_neighbours: int = 9
    reuse: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.size, StudySize):
            raise InputError(f"study parameter 'size' must be a StudySize, got {self.size!r}")
        set_(self, "workdir", Path(self.workdir))
        cases = tuple(self.cases) or default_cases(self.size)
        for c in cases:
            if not isinstance(c, Case):
                raise InputError(f"study parameter 'cases' must hold Case objects, got {c!r}")
        set_(self, "cases", cases)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"study parameter 'seed' must be an integer ≥ 0, got {self.seed!r}")
        if self.device not in ("cpu", "gpu", "auto"):
            raise InputError(f"study parameter 'device' must be cpu, gpu or auto: {self.device!r}")
        if self.start_positions not in START_POSITIONS:
            raise InputError(
                f"study parameter 'start_positions' must be one of {START_POSITIONS}, "
                f"got {self.start_positions!r}"
            )
        m = float(self.fov_margin_A)
        if not (math.isfinite(m) and m >= 0):
            raise InputError(f"study parameter 'fov_margin_A' must be ≥ 0, got {m!r}")
        set_(self, "fov_margin_A", m)
        set_(
            self,
            "reference_neighbours",
            _positive_int(self.reference_neighbours, "reference_neighbours"),
        )

    def data_path(self, preset: str, data: str = "abtem") -> Path:
        """4D-STEM file of ``preset`` (``data`` as in :class:`Case`)."""
        return self.workdir / (f"{preset}.h5" if data == "abtem" else f"{preset}_{data}.h5")


def select_cases(
    size: StudySize,
    *,
    psc_modes: Sequence[int] = (),
    control: bool = False,
    only: Sequence[str] = (),
) -> tuple[Case, ...]:
    """The cases of a study: :func:`default_cases`, changed by the options.

    Parameters
    ----------
    size
        The study size.
    psc_modes
        Probe modes of the paper-recipe reconstructions of the correlated + PSC data (replacing
        the default ``size.psc_probe_modes``; repeats dropped, order kept); the recommended
        recipe's PSC case stays.
    control
        Add the forward-model control of the reference dataset.
    only
        Keep only these cases, by preset or :attr:`Case.key`.

    Raises
    ------
    InputError
        A probe-mode count below 1, or an unknown case name.
    """
    cases = default_cases(size)
    modes = tuple(dict.fromkeys(int(m) for m in psc_modes))
    if modes:
        if min(modes) < 1:
            raise InputError(f"--psc-modes must be ≥ 1, got {list(psc_modes)}")
        psc = "hbn-correlated-psc"
        cases = tuple(c for c in cases if not (c.preset == psc and c.recipe == "paper"))
        cases += tuple(Case(psc, m, recipe="paper") for m in modes)
    if control:
        cases += (Case(REFERENCE_PRESET, 1, "forward-model"),)
    if only:
        unknown = set(only) - {c.key for c in cases} - {c.preset for c in cases}
        if unknown:
            raise InputError(f"unknown case(s) {sorted(unknown)}; known: {[c.key for c in cases]}")
        cases = tuple(c for c in cases if c.key in only or c.preset in only)
    return cases


def simulate_overrides(preset: str, size: StudySize, seed: int) -> dict[str, Any]:
    """The simulation parameters of ``preset`` at ``size`` (noise-free, as the presets, unless
    the size gives a dose)."""
    overrides: dict[str, Any] = {
        "cells": size.cells,
        "detector_shape": size.detector_shape,
        "scan_shape": size.scan_shape,
        "scan_step_A": size.scan_step_A,
        "seed": seed,
    }
    if preset != "hbn-static":
        overrides["n_configs"] = size.n_configs
    if size.temperature_K is not None:
        overrides["temperature_K"] = size.temperature_K
    if size.dose_e_per_A2 is not None:
        overrides["dose_e_per_A2"] = size.dose_e_per_A2
    return overrides


def simulate_argv(preset: str, size: StudySize, seed: int, out: Path) -> list[str]:
    """``caviar simulate`` arguments with the parameters of :func:`simulate_overrides`."""
    argv = [
        "simulate",
        preset,
        "--out",
        str(out),
        "--cells",
        *map(str, size.cells),
        "--detector-shape",
        *map(str, size.detector_shape),
        "--scan",
        *map(str, size.scan_shape),
        "--step",
        *(f"{v:g}" for v in size.scan_step_A),
        "--seed",
        str(seed),
    ]
    if preset != "hbn-static":
        argv += ["--configs", str(size.n_configs)]
    if size.temperature_K is not None:
        argv += ["--temperature", f"{size.temperature_K:g}"]
    if size.dose_e_per_A2 is not None:
        argv += ["--dose-per-A2", f"{size.dose_e_per_A2:g}"]
    return argv


def reconstruction_config(
    size: StudySize, case: Case, *, device: str, seed: int
) -> ReconstructionConfig:
    """The configuration of ``case`` at ``size``: the recommended recipe, or the paper's.

    Recommended (:func:`~caviar_napari.data.config.recommended_recipe`): stage 1 one object
    state, a coherent probe and a fitted source size; stage 2 ``size.object_states`` states
    with the probe and the source still refined and rigid shifts removed. Paper
    (:func:`~caviar_napari.data.config.two_stage_preset`): stage 1 one state and
    ``case.probe_modes`` free modes, stage 2 the states with that probe fixed. Displaced: the
    recommended recipe with the states as displaced atoms that may shift rigidly. The states
    stage has ``case.state_penalty`` when it is not 0.
    """
    from caviar_napari.data.config import displaced_recipe, recommended_recipe, two_stage_preset

    common = dict(
        object_states=size.object_states,
        slices=size.slices,
        slice_thickness_A=size.slice_thickness_A,
        iterations=size.iterations,
        device=device,
        seed=seed,
    )
    if case.recipe == "recommended":
        config = recommended_recipe(**common)
    elif case.recipe == "displaced":
        config = displaced_recipe(**common)
    else:
        config = two_stage_preset(probe_modes=case.probe_modes, **common)
    if case.state_penalty:
        config.stages[-1] = dataclasses.replace(config.stages[-1], state_penalty=case.state_penalty)
    return config.validate()


def replace_size(size: StudySize, **changes: object) -> StudySize:
    """A copy of ``size`` with fields changed (validated)."""
    return dataclasses.replace(size, **changes)
