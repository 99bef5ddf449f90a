"""The state of a reconstruction: its result, and everything needed to continue it exactly.

:class:`ReconState` is what :func:`caviar_napari.core.engine.run` returns and takes back to
resume, and what :mod:`caviar_napari.io.reconstruction` writes and reads (the reconstruction
file and its checkpoints, conventions §6).  Arrays are host numpy arrays.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caviar_napari.data.config import ReconstructionConfig

__all__ = ["ReconState"]


@dataclass
class ReconState:
    """Everything a reconstruction is, and everything needed to continue it.

    Attributes
    ----------
    object
        ``(N, S, H, W)`` complex transmission functions (host numpy).
    probe
        ``(M, Ky, Kx)`` complex probe modes, real space, centred (host numpy).
    tilt_mrad
        ``(2,)`` crystal tilt ``(α_y, α_x)``, mrad.
    loss
        ``(iterations,)`` objective after every iteration (dimensionless, see
        :mod:`caviar_napari.core.engine`).
    pixel_size_A
        ``(dy, dx)`` object pixel, Å.
    object_origin_A
        ``(y, x)`` of object pixel ``[0, 0]`` in the frame of the scan positions, Å.
    slice_thickness_A
        ``(S,)`` slice thicknesses, Å.
    config
        The configuration that produced (or continues) the state.
    stage_index, stage_iteration, iteration
        Current stage, iterations done in it, iterations done in total.
    optimiser_state
        Exported optimiser memory of the current stage (None at a stage start).
    rng_state
        State of the seeded ``numpy.random.Generator`` (``bit_generator.state``).
    source
        Name of the input data file.
    scan_positions_A
        ``(P, 2)`` probe positions ``(y, x)`` in the object frame, Å.
    scan_rotation_deg
        Scan rotation applied to the positions, degrees.
    source_fwhm_A
        Source size (FWHM at the specimen, Å) of a partially coherent probe
        (``partial_coherence: gaussian``); 0 for a coherent one.
    positions_u, affine
        Scan-position refinement variables (:mod:`caviar_napari.core.positions`): ``(P, 2)``
        per-position variables and the six affine/drift parameters; None when never refined.
        ``scan_positions_A`` holds the refined positions they give.
    state_sites, state_displacements
        Of a stage with ``state_model: displacements``
        (:mod:`caviar_napari.core.displaced_states`): ``(A, 3)`` atom sites ``(slice, y, x)``
        (slice index; y, x in Å, object frame) found on the mean object at the stage's start,
        and ``(N, A, 2)`` displacements ``(y, x)`` of each site in each state, Å (zero mean
        over states); ``object`` holds the states they give. None otherwise.
    probe_variable
        With probe constraints (``probe_support``, ``fixed_probe_intensity``) ``probe`` holds
        the constrained modes and this the free modes behind them, so that a run stopped inside
        the stage resumes exactly; None otherwise.
    object_variable
        In a ``displacements`` stage, the mean object ``(1, S, H, W)`` the states are made from
        (the optimiser's variable: the mean of the states equals it only up to rounding), so
        that a run stopped inside the stage resumes exactly; None otherwise.
    penalty_best
        In a stage whose state penalty is chosen by the held-out patterns
        (``state_penalty: auto``, :mod:`caviar_napari.core.state_penalty`), host copies of the
        refined blocks at the best held-out loss so far, which the stage ends with; kept so
        that a run stopped inside the stage resumes exactly. None otherwise.
    diagnostics
        What the engine measured about the run (JSON-safe): ``loss`` (the data loss used, when
        ``loss: auto`` chose it), ``separation`` (one report per finished multi-state stage,
        :mod:`caviar_napari.core.separation`), ``warnings`` (plain sentences).
    version
        Version of caviar-napari that made the state (the engine, or the file it was read
        from); ``""`` when unknown.
    """

    object: np.ndarray
    probe: np.ndarray
    tilt_mrad: np.ndarray
    loss: list[float]
    pixel_size_A: tuple[float, float]
    object_origin_A: tuple[float, float]
    slice_thickness_A: np.ndarray
    config: ReconstructionConfig
    stage_index: int = 0
    stage_iteration: int = 0
    iteration: int = 0
    optimiser_state: dict[str, Any] | None = None
    rng_state: dict[str, Any] | None = None
    source: str = ""
    scan_positions_A: np.ndarray | None = None
    scan_rotation_deg: float = 0.0
    source_fwhm_A: float = 0.0
    diagnostics: dict[str, Any] = field(default_factory=dict)
    positions_u: np.ndarray | None = None
    probe_variable: np.ndarray | None = None
    object_variable: np.ndarray | None = None
    affine: np.ndarray | None = None
    state_sites: np.ndarray | None = None
    state_displacements: np.ndarray | None = None
    penalty_best: dict[str, np.ndarray] | None = None
    version: str = ""

    @property
    def finished(self) -> bool:
        """True when every stage has run all its iterations."""
        stages = self.config.stages
        if self.stage_index >= len(stages):
            return True
        return self.stage_index == len(stages) - 1 and self.stage_iteration >= stages[-1].iterations

    def copy(self) -> ReconState:
        """Deep copy (arrays, memory and configuration)."""
        return copy.deepcopy(self)
