"""End-to-end validation of CAVIAR on simulated data (issue 8; the logic of the paper's Fig. 2).

For every case of a study this module runs the whole pipeline through the same workflow
functions as the ``caviar`` command line (:mod:`caviar_napari.workflows`), so the files it leaves
behind are exactly what a user typing the recorded ``caviar`` commands gets:

1. ``caviar simulate PRESET`` — abTEM data with the ground truth inside (one file per preset,
   shared by the cases that reconstruct it);
2. ``caviar reconstruct DATA --config RECON.yaml`` — the case's recipe
   (:func:`~caviar_napari.workflows.study_config.reconstruction_config`): the recommended one
   (one state with a coherent probe and a fitted source size, then ``object_states`` states with
   the probe and source refined and rigid shifts removed), or the paper's (one state with
   ``probe_modes`` free modes, then the states with that probe fixed);
3. ``caviar atoms RECON --positions START.csv`` — start positions (see below), refined by the
   phase-weighted centre of mass in every state and slice;
4. ``caviar correlations ATOMS --ground-truth DATA`` — Green's tensor, B factors, ρ_nn, and the
   comparison with the *realised* Green's tensor of the simulated configurations.

Start positions
    The paper picks atoms by hand.  Here they come from Laplacian-of-Gaussian detection on the
    reconstructed phase (:func:`caviar_napari.analysis.atoms.detect_atoms` on
    :func:`~caviar_napari.analysis.atoms.detection_image`, exactly what ``caviar atoms`` does
    without ``--positions``), keeping only the atoms inside the scanned field of view (the
    rectangle spanned by the scan positions, shrunk by ``fov_margin_A``): outside it the object
    is constrained by the tails of the probe only, and LoG finds noise there.  The alternative
    ``start_positions="truth"`` uses the ground-truth ideal sites in the same field of view
    (the reconstruction's frame *is* the scan frame of the ground truth; the global shift found
    by the atom matching is reported as a check).  Either way the refinement never sees the
    truth beyond its starting point.

Metrics (:mod:`caviar_napari.analysis.truth`)
    * LSM (eq. 3, reported as the mean over vectors: 1 = equal lengths) and CSM (eq. 4) over
      two pair sets, as ``caviar correlations --ground-truth`` chooses them: the reference atom
      (the matched atom nearest the centre of the field of view) with its ``reference_neighbours``
      nearest neighbours, self blocks included; and every atom's self block plus every
      nearest-neighbour pair.  The CSM of the nearest-neighbour *cross* blocks alone is also
      given: the self blocks of any vibrating dataset are near-isotropic diagonals, so they make
      every CSM high; the cross blocks are where correlated and uncorrelated motion differ.
    * Against two truths: the realised tensor of the configurations that made the dataset
      ("own"), and the realised tensor of the reference dataset (``hbn-correlated``, the role of
      the paper's MD ground truth in Fig. 2 b–e, where every dataset is compared with the MD
      correlations).  A static dataset's own truth is identically zero: its LSM/CSM are
      undefined and reported as such.
    * ρ_nn of reconstruction and truth over the same nearest-neighbour pairs (conventions §4).
    * The uniform x–x / y–y offset: the mean over all pairs of distinct atoms of
      ``(G_ij,yy + G_ij,xx) / 2`` (Å²), reconstruction and truth.  Partial spatial coherence
      absorbed by the object states appears as a positive offset of the reconstruction.
    * rms displacement per direction, ``sqrt(mean diag G)``, of reconstruction and truth.
    * State recovery: object states are unordered, so each state's displacement field (mean
      over slices, matched atoms) is assigned one-to-one to a configuration by maximum total
      Pearson correlation (Hungarian algorithm); reported are the mean correlation of the
      assigned pairs and the same after randomly permuting the atoms of the configurations
      (the level the one-to-one selection reaches on unrelated fields).

Control
    A case with ``data="forward-model"`` reconstructs the same configurations' intensities
    re-made by the engine's own forward model (:func:`forward_model_data`): what remains wrong
    there is the optimisation's, not an abTEM–engine model mismatch.

Nothing in the metrics is fitted or tuned to the data; the pair sets are fixed by geometry.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caviar_napari.analysis import truth as tm
from caviar_napari.analysis.truth import Comparison, StateRecovery
from caviar_napari.errors import InputError
from caviar_napari.workflows.study_config import (
    REFERENCE_PRESET,
    Case,
    StudyConfig,
    StudySize,
    reconstruction_config,
    simulate_argv,
    simulate_overrides,
)
from caviar_napari.workflows.summary import StepSummary

if TYPE_CHECKING:
    from caviar_napari.data.config import ReconstructionConfig
    from caviar_napari.io.correlations_file import GroundTruth as GroundTruthData

log = logging.getLogger(__name__)

__all__ = ["CaseResult", "StudyResult", "forward_model_data", "run_case", "run_study"]


def forward_model_data(source: Path, out: Path, *, overwrite: bool = False) -> None:
    """Re-make a simulated file's intensities with the engine's own forward model (a control).

    Every configuration's true phase (``ground_truth/phase_configs``, summed over its slices, on
    the reconstruction grid) becomes one object state ``exp(iφ)`` and the true probe
    (``ground_truth/probe``) is used; the intensities are the mean over configurations of
    :meth:`~caviar_napari.core.multislice.MultisliceModel.intensities` (double precision) at the
    dataset's scan positions.  A reconstruction of these data meets no abTEM–engine model
    mismatch (potential parametrisation, oversampling, slicing, probe aperture): what it misses
    is the optimisation's.  Partial spatial coherence and noise are not applied.

    Parameters
    ----------
    source
        A file written by ``caviar simulate`` (with its ``ground_truth`` group), without PSC.
    out
        Output 4D-STEM file; the ``ground_truth`` group is copied, with the attribute
        ``intensity_model`` describing the control.
    overwrite
        Replace an existing ``out`` that this program did not write, or of another kind.
    """
    import h5py

    from caviar_napari.core.backend import get_backend
    from caviar_napari.core.multislice import MultisliceModel
    from caviar_napari.io.dataset import read_stem_h5, write_stem_h5
    from caviar_napari.io.outputs import OutputTarget

    target = OutputTarget.prepare(out, "stem", inputs={"source": source}, overwrite=overwrite)
    ds = read_stem_h5(source)
    try:
        with h5py.File(source, "r") as f:
            g = f["ground_truth"]
            phase = np.asarray(g["phase_configs"], dtype=np.float64).sum(axis=1, keepdims=True)
            probe = np.asarray(g["probe"], dtype=np.complex128)
            origin = np.asarray(g.attrs["phase_origin_A"], dtype=np.float64)
            pixel = tuple(float(v) for v in g.attrs["phase_pixel_size_A"])
            psc = float(g.attrs.get("psc_fwhm_A", 0.0))
    except (OSError, KeyError) as exc:
        raise InputError(
            f"{source}: not a simulated file with a full ground truth ({exc})"
        ) from exc
    if psc > 0:
        raise InputError(f"{source}: the forward-model control does not model PSC ({psc} Å)")
    positions = ds.rotated_positions_A().reshape(-1, 2)
    model = MultisliceModel(
        get_backend("cpu", "double"),
        wavelength_A=ds.wavelength_A,
        pixel_size_A=pixel,
        slice_thickness_A=[1.0],
        positions_px=(positions - origin) / np.asarray(pixel),
        object_shape=phase.shape[-2:],
        window=ds.detector_shape,
        object_band_limit=False,
    )
    intensities = np.asarray(model.intensities(np.exp(1j * phase), probe))
    intensities = np.fft.fftshift(intensities, axes=(-2, -1)).reshape(ds.intensities.shape)
    control = dataclasses.replace(
        ds,
        intensities=intensities.astype(np.float32),
        source=f"forward-model control of {Path(source).name}",
    )

    def copy_truth(f: h5py.File) -> None:
        with h5py.File(source, "r") as src:
            src.copy("ground_truth", f)
        f["ground_truth"].attrs["intensity_model"] = (
            "control: mean over configurations of the caviar forward model (one slice, "
            "exp(i·phase_configs summed over slices), ground_truth/probe), no PSC, no noise"
        )
        f["ground_truth"].attrs["control_of"] = Path(source).name

    target.write(lambda p: write_stem_h5(p, control, extra=copy_truth))


@dataclass
class CaseResult:
    """Everything one case produced.

    Attributes
    ----------
    case
        The :class:`Case`.
    paths
        Files written: ``data``, ``config``, ``recon``, ``start``, ``atoms``, ``corr``.
    commands
        The ``caviar`` command lines run (or reused), in order.
    timings_s
        Wall time of every step that ran, s.
    final_loss
        Objective after the last iteration.
    n_atoms, n_matched
        Atoms analysed (in the field of view) and matched to the truth.
    match_shift_A
        Global ``(y, x)`` shift between reconstructed and true mean positions, Å.
    mean_position_error_A
        rms distance of matched mean positions to the true sites after that shift, Å.
    reference_atom, reference_neighbours
        Reference atom (reconstructed index) and its neighbours.
    own, reference
        :class:`Comparison` against the own realised truth and against the reference truth.
    rho_nn_rec, rho_nn_truth
        ρ_nn of reconstruction and own truth over the same nearest-neighbour pairs.
    rms_rec_A, rms_truth_A
        rms displacement per direction, Å.
    offset_rec_A2, offset_truth_A2
        Uniform x–x / y–y offset (:func:`offset_A2`), Å².
    recovery
        :class:`StateRecovery` (None for a static dataset: no displacements to recover).
    green_rec_A2, green_truth_A2
        Reconstructed tensor and own truth re-indexed to the reconstructed atoms (NaN for
        unmatched atoms), for figures.
    green_reference_A2
        Reference truth re-indexed likewise (None if there is no reference).
    positions_A
        ``(atom, 2)`` reconstructed mean positions (NaN outside the analysis).
    phase, phase_origin_A, pixel_size_A
        Mean reconstructed phase (sum over slices, mean over states) and its grid.
    fov_A
        ``(2, 2)`` analysed field of view.
    cli_output
        The commands and what their workflows reported (the ``caviar`` output).
    warnings
        The warnings of every step, each prefixed by its command.
    """

    case: Case
    paths: dict[str, Path] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    final_loss: float = math.nan
    n_atoms: int = 0
    n_matched: int = 0
    match_shift_A: np.ndarray = field(default_factory=lambda: np.zeros(2))
    mean_position_error_A: float = math.nan
    reference_atom: int = -1
    reference_neighbours: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    own: Comparison | None = None
    reference: Comparison | None = None
    rho_nn_rec: float = math.nan
    rho_nn_truth: float = math.nan
    rms_rec_A: float = math.nan
    rms_truth_A: float = math.nan
    offset_rec_A2: float = math.nan
    offset_truth_A2: float = math.nan
    recovery: StateRecovery | None = None
    green_rec_A2: np.ndarray | None = None
    green_truth_A2: np.ndarray | None = None
    green_reference_A2: np.ndarray | None = None
    positions_A: np.ndarray | None = None
    phase: np.ndarray | None = None
    phase_origin_A: tuple[float, float] = (0.0, 0.0)
    pixel_size_A: tuple[float, float] = (1.0, 1.0)
    fov_A: np.ndarray | None = None
    cli_output: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class StudyResult:
    """The results of all cases and how long the study took."""

    config: StudyConfig
    cases: list[CaseResult]
    elapsed_s: float

    def by_key(self, key: str) -> CaseResult:
        """The case result of :attr:`Case.key` ``key``."""
        for r in self.cases:
            if r.case.key == key:
                return r
        raise KeyError(key)


# ------------------------------------------------------------------------------ the pipeline
def _simulation_matches(path: Path, preset: str, overrides: dict[str, Any]) -> bool:
    """Whether ``path`` holds a simulation with exactly the parameters asked for."""
    import h5py

    from caviar_napari.simulate.presets import preset_config

    want = json.loads(preset_config(preset, **overrides).to_json())
    try:
        with h5py.File(path, "r") as f:
            have = json.loads(f["ground_truth"].attrs["parameters"])
    except (OSError, KeyError, ValueError, TypeError):
        return False
    return have == want


def _reconstruction_matches(path: Path, config: ReconstructionConfig, data: Path) -> bool:
    """Whether ``path`` is a finished reconstruction of ``data`` with configuration ``config``."""
    from caviar_napari.io.reconstruction import load_reconstruction

    try:
        state = load_reconstruction(path)
    except (OSError, InputError):
        return False
    return (
        state.finished
        and state.config.to_dict() == config.to_dict()
        and Path(state.source).name == data.name
    )


def _step(
    result: CaseResult,
    name: str,
    argv: list[str],
    run: Callable[[], StepSummary] | None,
    report: Callable[[str], None],
) -> bool:
    """Run one workflow (``run``; None: reuse its output); record the equivalent ``caviar``
    command, its report, warnings and time.  True if it ran."""
    command = shlex.join(["caviar", *argv])
    result.commands.append(command)
    if run is None:
        report(f"  {name}: reusing {argv[argv.index('--out') + 1]}")
        return False
    t0 = time.perf_counter()
    summary = run()
    result.timings_s[name] = time.perf_counter() - t0
    result.cli_output += f"$ {command}\n{summary.text}\n"
    result.warnings += [f"caviar {name}: {w}" for w in summary.warnings]
    report(f"  {name}: {result.timings_s[name]:.1f} s")
    for warning in summary.warnings:
        report(f"  {name}: warning: {warning}")
    return True


def _simulate(preset: str, size: StudySize, seed: int, out: Path) -> Callable[[], StepSummary]:
    from caviar_napari.workflows.simulate import SimulateOptions, run_simulate

    options = SimulateOptions(preset, out, simulate_overrides(preset, size, seed))
    return lambda: run_simulate(options)


def _start_positions(
    recon_path: Path, truth_mean_A: np.ndarray, mode: str, margin_A: float
) -> tuple[np.ndarray, np.ndarray]:
    """Start positions in the field of view and the field of view itself."""
    from caviar_napari.analysis import atoms as am
    from caviar_napari.io.reconstruction import load_reconstruction

    state = load_reconstruction(recon_path)
    if state.scan_positions_A is None:
        raise InputError(f"{recon_path}: no scan_positions_A (needed for the field of view)")
    fov = tm.field_of_view(state.scan_positions_A, margin_A)
    if mode == "truth":
        start = truth_mean_A
    else:
        phase = np.angle(np.asarray(state.object)).astype(np.float32)
        image = am.detection_image(phase)
        start = am.detect_atoms(image, state.pixel_size_A, state.object_origin_A)
    start = start[tm.inside_field_of_view(start, fov)]
    if len(start) < 3:
        raise InputError(
            f"{recon_path}: only {len(start)} start position(s) ({mode}) inside the field of "
            f"view {fov.tolist()} Å; enlarge the scan"
        )
    return start, fov


def run_case(
    case: Case,
    config: StudyConfig,
    reference_data: Path | None = None,
    report: Callable[[str], None] = log.info,
    simulated: set[Path] | None = None,
) -> CaseResult:
    """Run one case: simulate (unless the data exist), reconstruct, atoms, correlations.

    Parameters
    ----------
    case
        The dataset and probe modes.
    config
        The study.
    reference_data
        Simulated file whose realised tensor is the reference truth (None: no reference
        comparison).
    report
        Called with one line per step.
    simulated
        Data files made earlier in this study (reused when their parameters match); the
        case's data file is added to it.
    """
    from caviar_napari.io.atoms_file import write_positions_csv
    from caviar_napari.io.config_file import save_yaml
    from caviar_napari.io.correlations_file import read_ground_truth
    from caviar_napari.workflows.atoms import AtomsOptions, run_atoms
    from caviar_napari.workflows.correlations import CorrelationsOptions, run_correlations
    from caviar_napari.workflows.reconstruct import ReconstructOptions, run_reconstruct

    size, wd = config.size, config.workdir
    simulated = set() if simulated is None else simulated
    wd.mkdir(parents=True, exist_ok=True)
    data = config.data_path(case.preset, case.data)
    paths = {
        "data": data,
        "config": wd / f"{case.key}.yaml",
        "recon": wd / f"{case.key}_recon.h5",
        "start": wd / f"{case.key}_start_{config.start_positions}.csv",
        "atoms": wd / f"{case.key}_atoms_{config.start_positions}.h5",
        "corr": wd / f"{case.key}_corr_{config.start_positions}.h5",
    }
    result = CaseResult(case=case, paths=paths)
    report(f"{case.key}:")
    # 1. simulate: data made earlier in this study (or, with reuse, before) with the same
    #    parameters are used as they are (the simulation is deterministic for a seed)
    abtem_data = config.data_path(case.preset)
    overrides = simulate_overrides(case.preset, size, config.seed)
    reuse = (
        abtem_data.exists()
        and (abtem_data in simulated or config.reuse)
        and _simulation_matches(abtem_data, case.preset, overrides)
    )
    argv = simulate_argv(case.preset, size, config.seed, abtem_data)
    run = None if reuse else _simulate(case.preset, size, config.seed, abtem_data)
    fresh = _step(result, "simulate", argv, run, report)
    simulated.add(abtem_data)
    if case.data == "forward-model" and (fresh or not data.exists() or not config.reuse):
        t0 = time.perf_counter()
        forward_model_data(abtem_data, data)
        result.timings_s["forward model"] = time.perf_counter() - t0
        report(f"  forward-model control data: {result.timings_s['forward model']:.1f} s")
        fresh = True
    if case.data == "forward-model":
        result.commands.append(
            f"# {data.name}: intensities of {abtem_data.name} re-made by the engine's forward "
            "model (caviar_napari.workflows.study.forward_model_data)"
        )
    # 2. reconstruct
    rcfg = reconstruction_config(size, case, device=config.device, seed=config.seed)
    save_yaml(paths["config"], rcfg)
    argv = ["reconstruct", str(data), "--out", str(paths["recon"])]
    argv += ["--config", str(paths["config"])]
    reuse = (
        config.reuse
        and not fresh
        and paths["recon"].exists()
        and _reconstruction_matches(paths["recon"], rcfg, data)
    )
    recon_options = ReconstructOptions(data=data, out=paths["recon"], config=paths["config"])
    _step(result, "reconstruct", argv, None if reuse else lambda: run_reconstruct(recon_options),
          report)  # fmt: skip
    # 3. atoms from start positions in the field of view
    truth = read_ground_truth(data)
    start, fov = _start_positions(
        paths["recon"], truth.mean_positions_A, config.start_positions, config.fov_margin_A
    )
    write_positions_csv(paths["start"], start)
    argv = ["atoms", str(paths["recon"]), "--out", str(paths["atoms"])]
    argv += ["--positions", str(paths["start"])]
    atoms_options = AtomsOptions(recon=paths["recon"], out=paths["atoms"], positions=paths["start"])
    _step(result, "atoms", argv, lambda: run_atoms(atoms_options), report)
    # 4. correlations (the comparison over every nearest-neighbour pair; a static dataset's
    #    truth is zero, which has no LSM/CSM: its comparison is left out)
    argv = ["correlations", str(paths["atoms"]), "--out", str(paths["corr"])]
    compare = bool(np.any(truth.green_realised_A2))
    if compare:
        argv += ["--ground-truth", str(data)]
    corr_options = CorrelationsOptions(
        atoms=paths["atoms"], out=paths["corr"], ground_truth=data if compare else None
    )
    _step(result, "correlations", argv, lambda: run_correlations(corr_options), report)
    _measure(result, truth, fov, reference_data, config.reference_neighbours)
    report(
        f"  CSM nn (own) {_fmt(result.own.csm_nn)}, ρ_nn rec {result.rho_nn_rec:+.3f} / truth "
        f"{result.rho_nn_truth:+.3f}, rms {100 * result.rms_rec_A:.2f} / "
        f"{100 * result.rms_truth_A:.2f} pm"
    )
    return result


def _measure(
    result: CaseResult,
    truth: GroundTruthData,
    fov: np.ndarray,
    reference_data: Path | None,
    n_neighbours: int,
) -> None:
    """Fill the metrics of ``result`` from the files the workflows wrote (``result.paths``)."""
    from caviar_napari.analysis import correlations as corr
    from caviar_napari.io.atoms_file import read_atoms
    from caviar_napari.io.correlations_file import read_correlations, read_ground_truth
    from caviar_napari.io.reconstruction import load_reconstruction

    paths = result.paths
    state = load_reconstruction(paths["recon"])
    atoms = read_atoms(paths["atoms"])
    cdata = read_correlations(paths["corr"])
    green = np.asarray(cdata.green_A2, dtype=float)
    positions = np.array(cdata.mean_positions_A, dtype=float)
    positions[cdata.excluded_atoms] = np.nan
    match = corr.match_atoms(positions, truth.mean_positions_A)
    positions[match.truth_index < 0] = np.nan
    matched = match.truth_index >= 0
    result.final_loss = float(state.loss[-1]) if len(state.loss) else math.nan
    result.n_atoms = int(cdata.n_atoms)
    result.n_matched = int(matched.sum())
    result.match_shift_A = np.asarray(match.shift_A, dtype=float)
    result.mean_position_error_A = float(np.sqrt(np.nanmean(match.distance_A[matched] ** 2)))
    result.fov_A = fov
    result.positions_A = positions
    phase = np.angle(np.asarray(state.object))
    result.phase = phase.sum(axis=1).mean(axis=0)
    result.phase_origin_A = tuple(state.object_origin_A)
    result.pixel_size_A = tuple(state.pixel_size_A)

    centre = fov.mean(axis=0)
    dist = np.linalg.norm(positions - centre, axis=1)
    ref_atom = int(np.nanargmin(dist))
    ref_pairs, nbrs = tm.reference_pair_set(positions, ref_atom, n_neighbours)
    nn_pairs = tm.nearest_neighbour_pair_set(positions)
    result.reference_atom, result.reference_neighbours = ref_atom, nbrs

    args = (ref_pairs, nn_pairs)
    result.own = tm.compare_pair_sets(
        green, positions, truth.green_realised_A2, truth.mean_positions_A, *args, "own"
    )
    green_truth = corr.reindex_green(truth.green_realised_A2, match.truth_index)
    result.green_rec_A2, result.green_truth_A2 = green, green_truth
    if reference_data is not None:
        ref_truth = read_ground_truth(reference_data)
        result.reference = tm.compare_pair_sets(
            green,
            positions,
            ref_truth.green_realised_A2,
            ref_truth.mean_positions_A,
            *args,
            reference_data.stem,
        )
        ref_match = corr.match_atoms(positions, ref_truth.mean_positions_A)
        result.green_reference_A2 = corr.reindex_green(
            ref_truth.green_realised_A2, ref_match.truth_index
        )
    rho_rec = corr.nearest_neighbour_correlation(green, positions)
    result.rho_nn_rec = rho_rec.mean
    with np.errstate(invalid="ignore", divide="ignore"):
        rho_truth = corr.correlation_coefficients(green_truth, rho_rec.pairs)
    result.rho_nn_truth = float(np.mean(rho_truth)) if np.all(np.isfinite(rho_truth)) else math.nan
    keep = np.isfinite(positions).all(axis=1)
    g_keep = green[np.repeat(keep, 2)][:, np.repeat(keep, 2)]
    t_keep = green_truth[np.repeat(keep, 2)][:, np.repeat(keep, 2)]
    result.rms_rec_A = tm.rms_displacement_A(g_keep)
    result.rms_truth_A = tm.rms_displacement_A(t_keep)
    result.offset_rec_A2, result.offset_truth_A2 = tm.offset_A2(g_keep), tm.offset_A2(t_keep)

    # state recovery: per-state displacement fields (mean over slices) vs configurations
    if truth.positions_A.shape[0] > 1 and np.any(truth.green_realised_A2):
        # (N, A, 2); an atom that failed in any slice is NaN and left out
        per_state = np.asarray(atoms.positions_A, dtype=float).mean(axis=1)
        sel = np.flatnonzero(keep)
        u_rec = per_state[:, sel] - per_state[:, sel].mean(axis=0, keepdims=True)
        cfg = truth.positions_A[:, match.truth_index[sel]]
        u_true = cfg - cfg.mean(axis=0, keepdims=True)
        result.recovery = tm.state_recovery(u_rec, u_true)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def run_study(config: StudyConfig, report: Callable[[str], None] = log.info) -> StudyResult:
    """Run every case of ``config`` (the reference dataset first when it is among them).

    The reference truth (:data:`REFERENCE_PRESET`) is simulated when no case uses it, so that
    every case can be compared with it.
    """
    from caviar_napari.workflows.simulate import SimulateOptions, run_simulate

    t0 = time.perf_counter()
    simulated: set[Path] = set()
    ref_data = config.data_path(REFERENCE_PRESET)
    if REFERENCE_PRESET not in {c.preset for c in config.cases}:
        config.workdir.mkdir(parents=True, exist_ok=True)
        overrides = simulate_overrides(REFERENCE_PRESET, config.size, config.seed)
        if not (
            config.reuse
            and ref_data.exists()
            and _simulation_matches(ref_data, REFERENCE_PRESET, overrides)
        ):
            argv = simulate_argv(REFERENCE_PRESET, config.size, config.seed, ref_data)
            report(f"reference truth: {shlex.join(['caviar', *argv])}")
            run_simulate(SimulateOptions(REFERENCE_PRESET, ref_data, overrides))
        simulated.add(ref_data)
    # the reference dataset first, so that its truth exists for every comparison
    cases = sorted(config.cases, key=lambda c: c.preset != REFERENCE_PRESET)
    done = {id(c): run_case(c, config, ref_data, report, simulated) for c in cases}
    results = [done[id(c)] for c in config.cases]
    return StudyResult(config=config, cases=results, elapsed_s=time.perf_counter() - t0)
