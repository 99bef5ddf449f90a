"""Reconstruction configuration: typed, validated dataclasses with YAML/JSON text round trips.

A reconstruction is a list of :class:`StageConfig` run in order, each starting from the result of
the previous one (paper, "staged reconstruction"). The default is :func:`recommended_stages`:
(1) one object state with a coherent probe seen through a Gaussian source of fitted size, (2)
the object states, with the probe and the source still refined and the states kept from
shifting rigidly. :func:`two_stage_preset` is the paper's variant with free probe modes,
:func:`single_stage` a one-stage configuration.

Reading and writing configuration *files* is :mod:`caviar_napari.io.config_file`
(``load_yaml``/``save_yaml``); this module converts to and from text only.

YAML layout (the keys are the dataclass fields; unknown keys are an error naming the key)::

    device: auto            # auto | cpu | gpu
    precision: single       # single (complex64) | double (complex128)
    loss: auto              # auto (Poisson for counts) | gaussian | poisson
    seed: 0
    stages:
      - name: mean object
        iterations: 120
        partial_coherence: gaussian
        refine: [object, probe, source]
      - name: object states
        iterations: 200
        object_states: 10
        partial_coherence: gaussian
        refine: [object, probe, source]
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from caviar_napari.data.checks import check_choice as _check_choice
from caviar_napari.data.checks import check_float as _check_float
from caviar_napari.data.checks import check_int as _check_int
from caviar_napari.data.checks import where as _where
from caviar_napari.data.padding import check_cluster, check_detector_padding
from caviar_napari.errors import InputError

__all__ = [
    "DEVICES",
    "LOSSES",
    "LOSS_CHOICES",
    "OPTIMIZERS",
    "PADDINGS",
    "PRECISIONS",
    "PARTIAL_COHERENCE",
    "REFINABLE",
    "STATE_MODELS",
    "ReconstructionConfig",
    "StageConfig",
    "apply_overrides",
    "check_state_penalty",
    "config_from_yaml",
    "config_json",
    "config_to_yaml",
    "single_stage",
    "state_penalty_from_text",
    "recommended_recipe",
    "recommended_stages",
    "two_stage_preset",
]

#: Blocks a stage may refine: ``source`` the source size of a partially coherent probe;
#: ``positions`` a shift of every scan position; ``affine`` a global affine map of the scan and
#: a linear drift (:mod:`caviar_napari.core.positions`).
REFINABLE = ("object", "probe", "tilt", "source", "positions", "affine")
#: Probe constraints in Fourier space: ``aperture`` keeps the modes inside the condenser
#: aperture (:mod:`caviar_napari.core.probe_constraints`).
PROBE_SUPPORT = ("none", "aperture")
#: Models of the probe's spatial coherence: ``none`` (each mode coherent) or ``gaussian`` (a
#: Gaussian source of fitted size, :mod:`caviar_napari.core.coherence`).
PARTIAL_COHERENCE = ("none", "gaussian")
#: Optimisers: L-BFGS, gradient descent.
OPTIMIZERS = ("lbfgs", "gd")
#: Compute devices.
DEVICES = ("auto", "cpu", "gpu")
#: Floating-point precisions (complex64, complex128).
PRECISIONS = ("single", "double")
#: How the object states of a stage are parametrised (``StageConfig.state_model``).
STATE_MODELS = ("free", "displacements")
#: Data losses (:mod:`caviar_napari.core.loss`): Gaussian amplitude (paper eq. S8), Poisson.
LOSSES = ("gaussian", "poisson")
#: Loss choices of a configuration: ``auto`` picks Poisson for counts, else Gaussian.
LOSS_CHOICES = ("auto", *LOSSES)
#: Detector padding modes with a name; a window ``"NxM"`` or a pixel size (Å) is also accepted
#: (:mod:`caviar_napari.data.padding`).
PADDINGS = ("auto", "none")


def check_state_penalty(value: Any, where: str) -> float | str:
    """A ``state_penalty`` value: ``"auto"`` or a number ≥ 0 (as ``float``); InputError naming
    ``where`` otherwise."""
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        raise InputError(f"{where}: 'state_penalty' must be a number ≥ 0 or auto, got {value!r}")
    return _check_float(value, "state_penalty", where, minimum=0.0)


def state_penalty_from_text(text: str) -> float | str:
    """A ``state_penalty`` typed as text (a form field, a command-line value): ``auto`` or the
    number written (empty: 0); any other text is returned as it is, for
    :func:`check_state_penalty` to name.

    Examples
    --------
    >>> state_penalty_from_text(" 0.01"), state_penalty_from_text("auto")
    (0.01, 'auto')
    """
    text = str(text).strip() or "0"
    try:
        return text if text == "auto" else float(text)
    except ValueError:
        return text


@dataclass
class StageConfig:
    """One stage of a staged reconstruction.

    Attributes
    ----------
    name
        Label shown in progress reports.
    iterations
        Optimiser iterations (each one a full pass over all patterns: one loss/gradient
        evaluation plus line-search evaluations).
    object_states
        N, number of object states (thermal snapshots of equal weight). If it differs from the
        previous stage, new states are the previous mean object × exp(i·noise).
    probe_modes
        M, number of probe modes (incoherent, powers = occupancies). Modes are added (Hermite–
        Gauss-like, small power) or removed keeping the first ones.
    slices
        S, number of multislice slices. On a change the total transmission is redistributed
        evenly over the new slices.
    slice_thickness_A
        Thickness of each slice (Å): a number for all slices or a list of ``slices`` values.
    refine
        Which blocks the optimiser changes: a subset of ``("object", "probe", "tilt",
        "source", "positions", "affine")``; ``source`` (the source size) needs
        ``partial_coherence: gaussian``; ``positions`` refines a shift of every scan position
        and ``affine`` a global affine map of the scan plus a linear drift
        (:mod:`caviar_napari.core.positions`). The refined positions carry over to the next
        stages and into the reconstruction file.
    partial_coherence
        ``"none"``: the probe modes are coherent. ``"gaussian"``: partial spatial coherence of a
        Gaussian source whose size (FWHM at the specimen, Å) is one fitted parameter; every
        probe mode becomes ``coherence_order²`` incoherent shifted copies, propagated as the
        few orthogonal modes that carry them (:mod:`caviar_napari.core.coherence`).
    coherence_order
        Gauss–Hermite points per axis of the source quadrature (5: 25 shifted copies per mode,
        compressed to the few orthogonal modes that carry them).
    l1_absorption
        Weight λ₁ of the l1 absorption penalty ``λ₁ Σ |log|O||`` per object pixel, which pulls the
        amplitude towards 1 (weak absorber). Units: data units (the loss's units) per pixel.
    missing_wedge
        Weight of the missing-wedge penalty (multislice only, ignored for one slice): penalises
        the power of the object's 3D Fourier transform (over slices, y, x) in the cone
        ``|k_z| > β |k_r|`` that a single projection direction cannot measure.
    missing_wedge_beta
        Cone parameter β of the missing wedge (dimensionless, slope ``|k_z| / |k_r|``).
    optimizer
        ``"lbfgs"`` (default) or ``"gd"`` (gradient descent with backtracking).
    lbfgs_memory
        Number of (s, y) pairs kept by L-BFGS.
    state_noise_rad
        Standard deviation (rad) of the random phase given to new object states. It only has
        to break the symmetry of identical states; the thermal phase differences between states
        are a few 0.01 rad at atoms (3 pm displacements), so large noise (0.05 rad everywhere)
        must first be fitted away and slows the states down (on exact-model hBN data, 300
        iterations: nearest-neighbour CSM 0.99 from 0.005 rad, 0.94 from 0.05 rad).
    stop_patience, stop_tolerance
        The stopping rule (``iterations`` is then the most a stage may run; ``stop_patience:
        0`` runs them all). With held-out patterns (``holdout_fraction``) the stage ends when
        their loss has not reached a new minimum for ``stop_patience`` iterations: past that
        point the fit learns the counting noise. Without, it ends when the misfit (the loss
        above the counting-noise floor) fell by less than ``stop_tolerance`` (a fraction) over
        the last ``stop_patience`` iterations.
    orthogonalise_probe_every
        Every how many iterations the refined probe modes are made orthogonal again (0:
        never; they always are at a stage's start): a unitary mixing that leaves the intensity
        unchanged, with the optimiser's memory mixed alike (so nothing is lost), and the modes
        ordered by decreasing power. Each costs one extra evaluation.
    tilt_estimate
        At the stage's start, estimate the crystal tilt by cross-correlating adjacent slices of
        the current object (the paper's estimate, :mod:`caviar_napari.core.tilt`), move the
        slices back into line, and use the tilted propagator from then on (fixed, unless
        ``tilt`` is refined too). Needs a multislice object from an earlier stage. Slices
        near the depth resolution ``λ/α²`` are not fully resolved, so one estimate gives part
        of the tilt (about 60 %, tests/core/test_tilt_and_probe_constraints.py); a few short
        stages with the estimate close most of what is left (within 0.5 mrad after four).
    probe_support
        ``"none"`` or ``"aperture"``: the probe modes are kept inside the condenser aperture in
        Fourier space (a disc of 1.1 × the convergence angle, soft-edged), a constraint
        built into the probe the forward model sees (its gradient is masked alike).
    fixed_probe_intensity
        Keep the probe's total intensity (all modes) at the data's mean pattern total: the
        forward model sees the modes scaled to it, so the object cannot trade absorption for
        probe power.
    remove_state_shifts
        Keep the object states from moving rigidly against each other (default true). A state
        that is the mean object shifted by ``s`` gives exactly the intensity of a probe shifted
        by ``−s``: rigid shifts between states are the same thing as partial spatial coherence
        (a finite source) or scan jitter, so the data cannot tell them from the source, and
        states left free take up the source blur as a uniform offset of the x–x / y–y
        correlations (the paper's PSC offset). With this on, the states' deviations from the
        mean object are kept orthogonal to the two translations of the mean object (the
        object gradient is projected), so the blur goes where it belongs (the source size of
        ``partial_coherence: gaussian``, or the probe modes). The displacements of a state are
        then measured relative to its own centre, as the uniform part of thermal motion in the
        field of view cannot be measured anyway.
    minibatch_epochs
        The first iterations of the stage that are stochastic mini-batch epochs (one
        preconditioned gradient step per mini-batch, :mod:`caviar_napari.core.minibatch`)
        before L-BFGS takes over; 0: none. For large scans far from the solution.
    minibatch_size
        Patterns per mini-batch of those epochs.
    detector_padding
        This stage's detector padding (see ``ReconstructionConfig.detector_padding``); None:
        the configuration's. A stage that pads differently from the one before it starts
        from the previous result resampled onto its grid (object: Fourier interpolation of the
        band-limited object; probe: the far field kept at the frequencies both windows hold).
    precision
        This stage's floating-point precision (``"single"`` or ``"double"``); None: the
        configuration's. The object states are fitted to an incoherent signal a few 1e-7 of the
        loss; in single precision their line searches can stall (no decrease along the
        gradient) before the states reach their full amplitude, which shortens every
        displacement and weakens every correlation. In double precision such a stage goes
        further (docs/benchmarks/state-convergence.md: loss 5.7e-8 against 7.5e-8 on abTEM hBN
        data, LSM 0.69 against 0.66) at about the same cost per iteration here.
    state_model
        How the object states are parametrised (docs/conventions.md §2):

        * ``"free"`` (the paper's): every state is a free complex object.
        * ``"displacements"``: every state is the mean object with its atoms displaced,
          ``O_k = Ō − u_k(r)·∇Ō`` with ``u_k`` constant on each atom's cell
          (:mod:`caviar_napari.core.displaced_states`). The atoms are found on the mean object
          at the stage's start (LoG peaks of each slice's phase inside the scanned field). The
          stage fits the mean object and two numbers per atom and state instead of a whole
          object per state: the states reach the thermal amplitude in tens of iterations where
          free states need hundreds, and counting noise has far fewer ways in. What it cannot
          hold (changes of an atom's shape between states) a later ``free`` stage, which starts
          from these states instead of from identical ones, can add. With one state (the mean
          object) or without atoms in the scanned field the stage's states are free, and the
          run's warnings say the latter.
    state_displacement_A
        Standard deviation (Å) of the random displacements that start a ``displacements``
        stage from identical states; like ``state_noise_rad`` it only breaks the symmetry.
    state_penalty
        Weight λ of a penalty on the object states' deviations from their mean,
        ``λ Σ_k |O_k − Ō|² / (N A)`` (A: pixels of the scanned field), which keeps the states
        from fitting counting noise (:mod:`caviar_napari.core.state_penalty`; λ is a ratio to
        the data's curvature: 1 pins the states as firmly as the data pin the mean object).
        A number ≥ 0 (0: none), or ``"auto"``: the weight is chosen from the data by the
        held-out patterns (``holdout_fraction``): the stage runs unpenalised until the held-out
        loss stops improving, then tries λ = 0.001, 0.01, 0.1 in turn from the best held-out
        variables, and ends with the variables, and the weight, of the best held-out loss.
        Without held-out patterns (noise-free data by default) ``auto`` is 0.
    """

    name: str = "stage"
    iterations: int = 50
    object_states: int = 1
    probe_modes: int = 1
    slices: int = 1
    slice_thickness_A: float | list[float] = 10.0
    refine: tuple[str, ...] = ("object", "probe")
    partial_coherence: str = "none"
    coherence_order: int = 5
    l1_absorption: float = 0.0
    missing_wedge: float = 0.0
    missing_wedge_beta: float = 1.0
    optimizer: str = "lbfgs"
    lbfgs_memory: int = 10
    state_noise_rad: float = 0.005
    remove_state_shifts: bool = True
    tilt_estimate: bool = False
    probe_support: str = "none"
    fixed_probe_intensity: bool = False
    orthogonalise_probe_every: int = 10
    stop_patience: int = 20
    stop_tolerance: float = 0.01
    minibatch_epochs: int = 0
    minibatch_size: int = 256
    detector_padding: str | float | None = None
    precision: str | None = None
    state_model: str = "free"
    state_displacement_A: float = 0.005
    state_penalty: float | str = 0.0

    def validate(self, source: str = "") -> StageConfig:
        """Check every field; return ``self`` normalised (types, tuples). Raises InputError."""
        where = f"{source} stage '{self.name}'" if source else f"stage '{self.name}'"
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"{_where(source)}stage 'name' must be a non-empty string")
        self.iterations = _check_int(self.iterations, "iterations", 0, where)
        self.object_states = _check_int(self.object_states, "object_states", 1, where)
        self.probe_modes = _check_int(self.probe_modes, "probe_modes", 1, where)
        self.slices = _check_int(self.slices, "slices", 1, where)
        if isinstance(self.slice_thickness_A, list | tuple):
            if len(self.slice_thickness_A) != self.slices:
                raise InputError(
                    f"{where}: 'slice_thickness_A' has {len(self.slice_thickness_A)} values but "
                    f"'slices' is {self.slices}"
                )
            self.slice_thickness_A = [
                _check_float(v, "slice_thickness_A", where, minimum=0.0, strict=True)
                for v in self.slice_thickness_A
            ]
        else:
            self.slice_thickness_A = _check_float(
                self.slice_thickness_A, "slice_thickness_A", where, minimum=0.0, strict=True
            )
        if isinstance(self.refine, str):
            self.refine = (self.refine,)
        if not isinstance(self.refine, list | tuple):
            raise InputError(f"{where}: 'refine' must be a list, got {self.refine!r}")
        for item in self.refine:
            _check_choice(item, "refine", REFINABLE, where)
        if not self.refine:
            raise InputError(f"{where}: 'refine' is empty: nothing to optimise")
        self.refine = tuple(r for r in REFINABLE if r in self.refine)
        self.partial_coherence = _check_choice(
            self.partial_coherence, "partial_coherence", PARTIAL_COHERENCE, where
        )
        self.coherence_order = _check_int(self.coherence_order, "coherence_order", 1, where)
        if "source" in self.refine and self.partial_coherence == "none":
            raise InputError(
                f"{where}: 'refine' has 'source' but 'partial_coherence' is 'none': the source "
                "size is a parameter of partial_coherence: gaussian"
            )
        self.l1_absorption = _check_float(self.l1_absorption, "l1_absorption", where, minimum=0.0)
        self.missing_wedge = _check_float(self.missing_wedge, "missing_wedge", where, minimum=0.0)
        self.missing_wedge_beta = _check_float(
            self.missing_wedge_beta, "missing_wedge_beta", where, minimum=0.0, strict=True
        )
        self.optimizer = _check_choice(self.optimizer, "optimizer", OPTIMIZERS, where)
        self.lbfgs_memory = _check_int(self.lbfgs_memory, "lbfgs_memory", 1, where)
        self.stop_patience = _check_int(self.stop_patience, "stop_patience", 0, where)
        self.stop_tolerance = _check_float(
            self.stop_tolerance, "stop_tolerance", where, minimum=0.0
        )
        self.orthogonalise_probe_every = _check_int(
            self.orthogonalise_probe_every, "orthogonalise_probe_every", 0, where
        )
        for name in ("remove_state_shifts", "tilt_estimate", "fixed_probe_intensity"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(
                    f"{where}: '{name}' must be true or false, got {getattr(self, name)!r}"
                )
        self.probe_support = _check_choice(
            self.probe_support, "probe_support", PROBE_SUPPORT, where
        )
        if self.tilt_estimate and self.slices < 2:
            raise InputError(f"{where}: 'tilt_estimate' needs slices ≥ 2, got {self.slices}")
        self.state_noise_rad = _check_float(
            self.state_noise_rad, "state_noise_rad", where, minimum=0.0
        )
        self.minibatch_epochs = _check_int(self.minibatch_epochs, "minibatch_epochs", 0, where)
        self.minibatch_size = _check_int(self.minibatch_size, "minibatch_size", 1, where)
        if self.detector_padding is not None:
            self.detector_padding = check_detector_padding(self.detector_padding, source=where)
        if self.precision is not None:
            self.precision = _check_choice(self.precision, "precision", PRECISIONS, where)
        self.state_model = _check_choice(self.state_model, "state_model", STATE_MODELS, where)
        self.state_displacement_A = _check_float(
            self.state_displacement_A, "state_displacement_A", where, minimum=0.0, strict=True
        )
        self.state_penalty = check_state_penalty(self.state_penalty, where)
        if self.state_model == "displacements" and "object" not in self.refine:
            raise InputError(
                f"{where}: 'state_model: displacements' fits the object states, so 'refine' "
                f"must include 'object', got {list(self.refine)}"
            )
        return self

    @property
    def model_modes(self) -> int:
        """Incoherent modes the forward model propagates: ``probe_modes``, times
        ``coherence_order²`` shifted copies with a Gaussian source."""
        if self.partial_coherence == "gaussian":
            return self.probe_modes * self.coherence_order**2
        return self.probe_modes

    def thicknesses_A(self) -> list[float]:
        """Per-slice thickness (Å), a list of ``slices`` values."""
        if isinstance(self.slice_thickness_A, list | tuple):
            return [float(v) for v in self.slice_thickness_A]
        return [float(self.slice_thickness_A)] * self.slices

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python (YAML/JSON-safe) dictionary of the fields."""
        d = dataclasses.asdict(self)
        d["refine"] = list(self.refine)
        if isinstance(self.slice_thickness_A, list | tuple):
            d["slice_thickness_A"] = list(self.slice_thickness_A)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "", index: int = 0) -> StageConfig:
        """Build from a mapping; unknown keys are an InputError naming the key (and file)."""
        if not isinstance(data, Mapping):
            raise InputError(f"{_where(source)}stages[{index}] must be a mapping, got {data!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in names:
                raise InputError(
                    f"{_where(source)}unknown key '{key}' in stages[{index}]; "
                    f"allowed: {', '.join(sorted(names))}"
                )
        kw = dict(data)
        if "refine" in kw and isinstance(kw["refine"], list):
            kw["refine"] = tuple(kw["refine"])
        return cls(**kw).validate(source)


@dataclass
class ReconstructionConfig:
    """Global settings of a reconstruction and its list of stages.

    Attributes
    ----------
    device
        ``"auto"`` (GPU when usable, else CPU with a logged notice), ``"cpu"`` or ``"gpu"``.
    precision
        ``"single"`` (complex64, default) or ``"double"`` (complex128).
    loss
        ``"auto"`` (default): ``"poisson"`` when the intensities are electron counts (whole
        numbers, or a dose is given), ``"gaussian"`` otherwise; the choice is logged and
        recorded in the reconstruction's diagnostics. ``"gaussian"``: the amplitude loss (paper
        eq. S8). ``"poisson"``: the Poisson negative log-likelihood, the right one for counts
        (on hBN at 1e5 e/Å² it gives a phase correlation of 0.94 with the truth where the
        amplitude loss gives 0.88).
    seed
        Seed of every random choice (new object states' phase noise).
    batch_size
        Number of scan positions per forward/adjoint batch (bounds the working memory);
        None (``auto`` in YAML) lets the model size it: cache-sized batches, one per core in
        flight, on the CPU; half the free device memory on the GPU.
    update_every
        Every how many iterations a :class:`~caviar_napari.core.engine.Progress` carries host
        copies of the object and probe (0: never).
    checkpoint_every
        Write a checkpoint every N iterations (0: never): the engine hands the state to the
        ``on_checkpoint`` callback of :func:`caviar_napari.core.engine.run` (the CLI's writes
        ``checkpoint_path`` with :func:`caviar_napari.io.reconstruction.checkpoint_writer`).
    checkpoint_path
        Checkpoint file (conventions §6 reconstruction file with a ``resume`` group).
    tilt_mrad
        Initial crystal tilt ``(α_y, α_x)`` in mrad.
    defocus_A
        Probe defocus Δf (Å) overriding the dataset's ``defocus_A``; ``None`` keeps the dataset's.
    object_padding_px
        Extra object pixels beyond the scanned area plus half a probe window, on every side.
    source_fwhm_A
        Starting source size (FWHM at the specimen, Å) of stages with ``partial_coherence:
        gaussian``; it must not be 0 when the size is refined (the intensity is even in it, so
        its gradient vanishes at 0). A cold field-emission gun at 60–300 kV gives 0.3–0.6 Å.
    position_bound_A, position_penalty
        Scan-position refinement (stages with ``positions`` in ``refine``): no position moves
        further than ``position_bound_A`` (Å) from its nominal place, and a penalty of
        ``position_penalty · mean |shift|²`` (per Å², in the units of the normalised loss)
        pulls the shifts towards the nominal grid where the data say nothing.
    holdout_fraction
        Fraction of the scan positions left out of the fit and scored (:mod:`~caviar_napari.
        core.holdout`): they stop each stage when the fit starts learning the noise, and show
        whether object states capture signal. ``"auto"`` (default): 0.1 for counts, 0 for
        noise-free data.
    detector_padding
        ``"auto"``: zero-pad the detector in reciprocal space when the data reach beyond the
        2/3-Nyquist band limit of the unpadded window (padding excluded from the loss);
        ``"none"``: never pad (pixels beyond the band limit are then excluded from the loss);
        ``"NxM"``: pad to that window; a number: the reconstruction pixel size in Å
        (:mod:`caviar_napari.data.padding`).
    host_memory_MB, device_memory_MB
        Memory the run may use on the host and on the compute device (MB = 10⁶ bytes); None:
        what is free. The memory plan (:mod:`caviar_napari.core.memory`) keeps data or the
        L-BFGS history off a device that is short, and data larger than the host in their file.
    lbfgs_history
        Where the L-BFGS pairs live: ``auto`` (the memory plan chooses), ``device``, ``host``
        (GPU: page-locked host memory, streamed) or ``half`` (half precision).
    data_placement
        Where the measured data live: ``auto``, ``device``, ``host`` (GPU: copied per batch) or
        ``file`` (read per batch from a chunked HDF5 file: out-of-core).
    cluster
        None (one process) or a Dask cluster for data-parallel evaluation: ``local:N`` (N
        worker processes on this machine) or a scheduler address ``tcp://HOST:PORT``
        (:mod:`caviar_napari.core.distributed`).
    stages
        The stages, run in order.
    """

    device: str = "auto"
    precision: str = "single"
    loss: str = "auto"
    seed: int = 0
    batch_size: int | None = None
    update_every: int = 10
    checkpoint_every: int = 0
    checkpoint_path: str | None = None
    tilt_mrad: tuple[float, float] = (0.0, 0.0)
    defocus_A: float | None = None
    object_padding_px: int = 4
    source_fwhm_A: float = 0.2
    holdout_fraction: float | str = "auto"
    position_bound_A: float = 1.0
    position_penalty: float = 1e-8
    detector_padding: str | float = "auto"
    host_memory_MB: float | None = None
    device_memory_MB: float | None = None
    lbfgs_history: str = "auto"
    data_placement: str = "auto"
    cluster: str | None = None
    stages: list[StageConfig] = field(default_factory=lambda: recommended_stages())

    def validate(self, source: str = "") -> ReconstructionConfig:
        """Check every field (and every stage); return ``self`` normalised. Raises InputError."""
        self.device = _check_choice(self.device, "device", DEVICES, source)
        self.precision = _check_choice(self.precision, "precision", PRECISIONS, source)
        self.loss = _check_choice(self.loss, "loss", LOSS_CHOICES, source)
        self.seed = _check_int(self.seed, "seed", 0, source)
        if self.batch_size in (None, "auto"):
            self.batch_size = None
        else:
            self.batch_size = _check_int(self.batch_size, "batch_size", 1, source)
        self.update_every = _check_int(self.update_every, "update_every", 0, source)
        self.checkpoint_every = _check_int(self.checkpoint_every, "checkpoint_every", 0, source)
        if self.checkpoint_path is not None and not isinstance(self.checkpoint_path, str | Path):
            raise InputError(f"{_where(source)}'checkpoint_path' must be a path string")
        if self.checkpoint_path is not None:
            self.checkpoint_path = str(self.checkpoint_path)
        if self.checkpoint_every and not self.checkpoint_path:
            raise InputError(
                f"{_where(source)}'checkpoint_every' is {self.checkpoint_every} but no "
                "'checkpoint_path' is set"
            )
        tilt = self.tilt_mrad
        if isinstance(tilt, int | float) and not isinstance(tilt, bool):
            tilt = (tilt, tilt)
        if not isinstance(tilt, list | tuple) or len(tilt) != 2:
            raise InputError(f"{_where(source)}'tilt_mrad' must be a (y, x) pair, got {tilt!r}")
        self.tilt_mrad = tuple(_check_float(v, "tilt_mrad", source) for v in tilt)
        if self.defocus_A is not None:
            self.defocus_A = _check_float(self.defocus_A, "defocus_A", source)
        self.object_padding_px = _check_int(self.object_padding_px, "object_padding_px", 0, source)
        self.source_fwhm_A = _check_float(self.source_fwhm_A, "source_fwhm_A", source, minimum=0.0)
        self.position_bound_A = _check_float(
            self.position_bound_A, "position_bound_A", source, minimum=0.0, strict=True
        )
        self.position_penalty = _check_float(
            self.position_penalty, "position_penalty", source, minimum=0.0
        )
        if self.holdout_fraction != "auto":
            self.holdout_fraction = _check_float(
                self.holdout_fraction, "holdout_fraction", source, minimum=0.0
            )
            if self.holdout_fraction > 0.5:
                raise InputError(
                    f"{_where(source)}'holdout_fraction' must be 'auto' or in [0, 0.5], got "
                    f"{self.holdout_fraction!r}"
                )
        self.detector_padding = check_detector_padding(self.detector_padding, source=source)
        for name in ("host_memory_MB", "device_memory_MB"):
            if getattr(self, name) is not None:
                value = _check_float(getattr(self, name), name, source, minimum=0.0, strict=True)
                setattr(self, name, value)
        self.lbfgs_history = _check_choice(
            self.lbfgs_history, "lbfgs_history", ("auto", "device", "host", "half"), source
        )
        self.data_placement = _check_choice(
            self.data_placement, "data_placement", ("auto", "device", "host", "file"), source
        )
        if self.cluster is not None:
            self.cluster = check_cluster(self.cluster, source)
        if not isinstance(self.stages, list | tuple) or not self.stages:
            raise InputError(f"{_where(source)}'stages' must be a non-empty list")
        stages = []
        for i, st in enumerate(self.stages):
            if isinstance(st, Mapping):
                st = StageConfig.from_dict(st, source, i)
            if not isinstance(st, StageConfig):
                raise InputError(f"{_where(source)}stages[{i}] is not a stage: {st!r}")
            stages.append(st.validate(source))
        self.stages = stages
        return self

    @property
    def total_iterations(self) -> int:
        """Sum of the iterations of all stages."""
        return sum(s.iterations for s in self.stages)

    def stage_precision(self, index: int) -> str:
        """The precision stage ``index`` computes in: its own, else the configuration's."""
        return self.stages[index].precision or self.precision

    @property
    def widest_precision(self) -> str:
        """``"double"`` when any stage computes in double precision (the memory plan's)."""
        used = {self.stage_precision(i) for i in range(len(self.stages))}
        return "double" if "double" in used else "single"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python (YAML/JSON-safe) dictionary, stages as a list of dictionaries."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "stages"}
        d["tilt_mrad"] = [float(v) for v in self.tilt_mrad]
        d["stages"] = [s.to_dict() for s in self.stages]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "") -> ReconstructionConfig:
        """Build and validate from a mapping; unknown keys are an InputError naming the key."""
        if not isinstance(data, Mapping):
            raise InputError(f"{_where(source)}the configuration must be a mapping, got {data!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in names:
                raise InputError(
                    f"{_where(source)}unknown key '{key}'; allowed: {', '.join(sorted(names))}"
                )
        kw = dict(data)
        if "stages" in kw:
            if not isinstance(kw["stages"], list | tuple):
                raise InputError(f"{_where(source)}'stages' must be a list")
            kw["stages"] = [StageConfig.from_dict(s, source, i) for i, s in enumerate(kw["stages"])]
        if isinstance(kw.get("tilt_mrad"), list):
            kw["tilt_mrad"] = tuple(kw["tilt_mrad"])
        return cls(**kw).validate(source)


def config_from_yaml(text: str, source: str = "") -> ReconstructionConfig:
    """Parse and validate a configuration from YAML text (``yaml.safe_load``; empty: defaults).

    Parameters
    ----------
    text
        The YAML document.
    source
        Where the text came from (a file name), for the messages.

    Raises
    ------
    InputError
        Unparsable YAML, unknown key (named, with the source) or invalid value.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{_where(source)}not valid YAML ({exc})") from exc
    if data is None:
        data = {}
    return ReconstructionConfig.from_dict(data, source=source)


def config_to_yaml(config: ReconstructionConfig) -> str:
    """The configuration as YAML text (readable back with :func:`config_from_yaml`)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def config_json(config: ReconstructionConfig) -> str:
    """The configuration as a JSON string (recorded in every output; keys sorted)."""
    return json.dumps(config.to_dict(), sort_keys=True)


def single_stage(
    *,
    iterations: int = 50,
    object_states: int = 1,
    probe_modes: int = 1,
    slices: int = 1,
    slice_thickness_A: float = 10.0,
    refine: Sequence[str] = ("object", "probe"),
    **global_options: Any,
) -> ReconstructionConfig:
    """One-stage configuration, as the CLI flags describe it.

    ``global_options`` are :class:`ReconstructionConfig` fields (device, seed, …).
    """
    stage = StageConfig(
        name="reconstruction",
        iterations=iterations,
        object_states=object_states,
        probe_modes=probe_modes,
        slices=slices,
        slice_thickness_A=slice_thickness_A,
        refine=tuple(refine),
    )
    return ReconstructionConfig(stages=[stage], **global_options).validate()


def recommended_stages(
    *,
    object_states: int = 1,
    slices: int = 1,
    slice_thickness_A: float | list[float] = 10.0,
    iterations: tuple[int, int] = (50, 100),
) -> list[StageConfig]:
    """The recommended staged recipe (the default of every configuration).

    Stage 1, "mean object": one object state and one coherent probe mode seen through a
    Gaussian source of fitted size (``partial_coherence: gaussian``), object, probe and source
    refined. Stage 2, "object states": ``object_states`` states, still with the probe and the
    source refined, and the states kept from shifting rigidly against each other
    (``remove_state_shifts``). A coherent probe cannot take up the states' incoherence (so
    refining it with the states is safe, unlike free probe modes, which share a mixture with
    the states), and the source size is one physical number that takes up partial spatial
    coherence instead of the states. Each stage stops by its rule (``stop_patience``) or at its
    ``iterations``.
    """
    common = dict(
        slices=slices,
        slice_thickness_A=slice_thickness_A,
        partial_coherence="gaussian",
        refine=("object", "probe", "source"),
    )
    return [
        StageConfig(name="mean object", iterations=iterations[0], **common),
        StageConfig(
            name="object states",
            iterations=iterations[1],
            object_states=object_states,
            **common,
        ),
    ]


def recommended_recipe(
    *,
    object_states: int = 10,
    slices: int = 1,
    slice_thickness_A: float | list[float] = 10.0,
    iterations: tuple[int, int] = (50, 100),
    **global_options: Any,
) -> ReconstructionConfig:
    """:func:`recommended_stages` as a configuration (``global_options`` are its fields)."""
    stages = recommended_stages(
        object_states=object_states,
        slices=slices,
        slice_thickness_A=slice_thickness_A,
        iterations=iterations,
    )
    return ReconstructionConfig(stages=stages, **global_options).validate()


def displaced_recipe(**options: Any) -> ReconstructionConfig:
    """:func:`recommended_recipe` (same arguments) with its states stage as displaced atoms.

    The last stage has ``state_model: displacements`` (every state is the mean object with each
    atom moved by its own displacement, docs/conventions.md §2) and may shift rigidly
    (``remove_state_shifts`` off); the rest is the recommended recipe.
    ``resources/displaced-states.yaml`` is this recipe with longer stages.
    """
    config = recommended_recipe(**options)
    config.stages[-1] = dataclasses.replace(
        config.stages[-1], state_model="displacements", remove_state_shifts=False
    )
    return config.validate()


def two_stage_preset(
    *,
    object_states: int = 10,
    probe_modes: int = 4,
    slices: int = 1,
    slice_thickness_A: float = 10.0,
    iterations: tuple[int, int] = (50, 100),
    **global_options: Any,
) -> ReconstructionConfig:
    """The paper's staged recipe, with free probe modes.

    Stage 1 ("mean object"): one object state, ``probe_modes`` probe modes, object and probe
    refined. Stage 2 ("object states"): the probe of stage 1 is kept fixed and ``object_states``
    states (the stage-1 object plus seeded phase noise) are fitted. On data with thermal
    diffuse scattering the free modes of stage 1 take up part of the incoherence the states
    should fit; :func:`recommended_recipe` is the default.
    """
    common = dict(probe_modes=probe_modes, slices=slices, slice_thickness_A=slice_thickness_A)
    stages = [
        StageConfig(
            name="mean object",
            iterations=iterations[0],
            object_states=1,
            refine=("object", "probe"),
            **common,
        ),
        StageConfig(
            name="object states",
            iterations=iterations[1],
            object_states=object_states,
            refine=("object",),
            **common,
        ),
    ]
    return ReconstructionConfig(stages=stages, **global_options).validate()


def share_iterations(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` iterations over stages in proportion to ``weights`` (largest remainders;
    every stage gets at least one when there are enough).

    Examples
    --------
    >>> share_iterations(150, [50, 100]), share_iterations(4, [50, 100])
    ([50, 100], [1, 3])
    >>> share_iterations(3, [0, 0]), share_iterations(2, [1, 99])
    ([2, 1], [1, 1])
    """
    total = _check_int(total, "iterations", 0, "")
    w = np.asarray([max(int(v), 0) for v in weights], dtype=float)
    if not w.sum():
        w = np.ones(len(w))
    exact = total * w / w.sum()
    share = np.floor(exact).astype(int)
    order = np.argsort(-(exact - share), kind="stable")
    share[order[: total - int(share.sum())]] += 1
    while total >= len(share) and share.min() == 0:  # a stage with 0 would be skipped
        share[int(np.argmax(share))] -= 1
        share[int(np.argmin(share))] += 1
    return [int(v) for v in share]


def apply_overrides(
    config: ReconstructionConfig,
    *,
    iterations: int | None = None,
    object_states: int | None = None,
    state_model: str | None = None,
    state_penalty: float | str | None = None,
    probe_modes: int | None = None,
    slices: int | None = None,
    slice_thickness_A: float | None = None,
    refine: Sequence[str] | None = None,
    refine_positions: bool = False,
    precision: str | None = None,
    **global_options: Any,
) -> ReconstructionConfig:
    """Return a copy of ``config`` with command-line values put over it.

    ``iterations`` is the total over the stages, shared in proportion to the stages' own
    iterations (:func:`share_iterations`); ``probe_modes``, ``slices`` and
    ``slice_thickness_A`` set every stage; ``object_states``, ``state_model`` and
    ``state_penalty`` set the last stage only (earlier stages of a staged recipe fit the mean
    object with one state);
    ``refine`` sets every stage's refined blocks; ``refine_positions`` adds the scan positions
    and their affine map/drift (``positions``, ``affine``) to every stage that refines the
    object; ``precision`` is the precision of every stage (the configuration's, with the
    stages' own cleared). ``global_options`` that are not ``None``
    replace global fields.
    """
    data = config.to_dict()
    shares = None
    if iterations is not None:
        shares = share_iterations(iterations, [st["iterations"] for st in data["stages"]])
    for key, value in global_options.items():
        if value is not None:
            if key not in data or key == "stages":
                raise InputError(f"unknown configuration option '{key}'")
            data[key] = value
    if precision is not None:
        data["precision"] = precision
    for i, st in enumerate(data["stages"]):
        if precision is not None:
            st["precision"] = None
        if shares is not None:
            st["iterations"] = shares[i]
        if probe_modes is not None:
            st["probe_modes"] = probe_modes
        if slices is not None:
            st["slices"] = slices
            if isinstance(st["slice_thickness_A"], list) and len(st["slice_thickness_A"]) != slices:
                st["slice_thickness_A"] = float(sum(st["slice_thickness_A"]) / slices)
        if slice_thickness_A is not None:
            st["slice_thickness_A"] = slice_thickness_A
        if refine is not None:
            st["refine"] = list(refine)
        if refine_positions and "object" in st["refine"]:
            st["refine"] = [
                *st["refine"],
                *(b for b in ("positions", "affine") if b not in st["refine"]),
            ]
    if object_states is not None:
        data["stages"][-1]["object_states"] = object_states
    if state_model is not None:
        data["stages"][-1]["state_model"] = state_model
    if state_penalty is not None:
        data["stages"][-1]["state_penalty"] = state_penalty
    return ReconstructionConfig.from_dict(data)
