"""Green's tensor, its errors, B factors, ρ_nn, offset and significance of an ATOMS file; LSM/CSM
against a truth (``caviar correlations``).

Everything is computed by :func:`caviar_napari.analysis.correlation_analysis.analyse_correlations`:
standard errors by resampling the object states (jackknife by default, or a seeded bootstrap),
the uniform x–x / y–y offset (subtracted with ``subtract_offset``), the significance of the
nearest-neighbour cross blocks, the unit-cell averages out to the second neighbours with their
errors and significance (:func:`unit_cell_lines` prints them; CORR ``unit_cell_averages``), and
the positional noise floor.  With a ground truth (a file
written by ``caviar simulate``) the reconstruction is compared with the *realised* Green's tensor
of the simulated configurations: LSM as printed in the paper (a sum over vectors), LSM as a mean,
CSM, each ± its error, and ρ_nn of both over the same pairs.  Every input, the ground truth
included, is read and checked before the CORR file is written.

Depth-resolved ATOMS files (issue 16; ``caviar atoms --slices A:B`` / ``--zrange LABEL=A:B``):
every z-range is analysed on its own, in its own lattice frame, averaged over its slices; by
default over the slices where at least half of the range's atoms refined in every state
(:func:`~caviar_napari.analysis.depth.occupied_slices`: a range that spans vacuum or part of
another layer would otherwise lose every atom).  A multi-range file gives a multi-range CORR file
(:mod:`caviar_napari.io.zranges`); ``zrange`` picks one range.  With a *layered* ground truth
(``ground_truth/layers``) the z-ranges are matched to the layers (by depth and lattice sites,
:func:`~caviar_napari.analysis.depth.match_layers`); each range is compared, with errors, with
the realised tensor of its own layer, and with every layer in its own lattice frame (CSM, LSM,
ρ_nn: the other layer's CSM shows whether the fields are mixed).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis import depth
from caviar_napari.analysis.correlation_analysis import (
    CorrelationAnalysis,
    CorrelationConfig,
    TruthInput,
    analyse_correlations,
)
from caviar_napari.analysis.correlation_errors import RESAMPLING_METHODS, Resampling
from caviar_napari.analysis.correlation_significance import SIGNIFICANCE_SIGMA
from caviar_napari.analysis.noise_floor import (
    noise_floor_lines,
    noise_floor_warnings,
    physical_floor_warnings,
)
from caviar_napari.analysis.phonons import STANDARD_ATOMIC_WEIGHTS_AMU
from caviar_napari.analysis.uniform_offset import offset_warnings
from caviar_napari.errors import InputError
from caviar_napari.io.outputs import OutputTarget
from caviar_napari.workflows.inputs import index_list, range_slices, read_checked_atoms
from caviar_napari.workflows.noise_floor import separation_report_check
from caviar_napari.workflows.summary import StepSummary

if TYPE_CHECKING:
    from caviar_napari.data.atoms import AtomsData
    from caviar_napari.data.correlations import LayerMetrics, UnitCellTable
    from caviar_napari.data.layers import TruthLayer
    from caviar_napari.io.correlations_file import CorrelationsData, GroundTruth
    from caviar_napari.workflows.inputs import CheckedAtoms

__all__ = [
    "ERROR_CHOICES",
    "CorrelationsOptions",
    "CorrelationsSummary",
    "LayeredTruth",
    "TruthChoice",
    "basis_labels",
    "comparison_lines",
    "layer_lines",
    "layered_truth",
    "match_lines",
    "range_truth_input",
    "run_correlations",
    "summary_lines",
    "truth_lines",
    "unit_cell_lines",
    "with_layer_comparisons",
]

#: ``errors`` choices: a resampling method, or none.
ERROR_CHOICES = (*RESAMPLING_METHODS, "none")


@dataclass(frozen=True)
class CorrelationsOptions:
    """Options of :func:`run_correlations`.

    Attributes
    ----------
    atoms
        ATOMS file.
    out
        Output CORR file.
    slices
        Slices to average (``"A:B"``, one index, or None: all; for a z-range, counted from its
        first slice, and None: the slices where at least half of its atoms refined).
    zrange
        Label of the one z-range of a multi-range ATOMS file to analyse (None: every range).
    ground_truth
        Simulated 4D-STEM file whose ``ground_truth`` group to compare with, or None.
    reference_atom
        Compare over this atom and its ``neighbours`` nearest neighbours (default: every self
        block and every nearest-neighbour pair); only with ``ground_truth``.
    neighbours
        Nearest neighbours of the reference atom.
    match_tolerance_A
        Largest distance when matching atoms to the ground truth, Å.
    errors
        ``"jackknife"`` (default), ``"bootstrap"`` or ``"none"``: how standard errors are
        obtained (resampling the object states, each with all its slices).
    bootstrap
        Bootstrap replicas (with ``errors="bootstrap"``).
    seed
        Seed of the bootstrap draws.
    subtract_offset
        Subtract the uniform x–x / y–y offset (partial spatial coherence) from the tensor.
    offset_min_distance_A
        Only pairs of atoms at least this far apart enter the offset (0: all distinct pairs).
    noise_floor_A
        A known positional noise floor per direction (e.g. the rms displacement of a static
        control analysed the same way), Å; None: estimated where the data allow.
    overwrite
        Replace an existing output that this program did not write, or of another kind.
    """

    atoms: Path
    out: Path
    slices: str | None = None
    zrange: str | None = None
    ground_truth: Path | None = None
    reference_atom: int | None = None
    neighbours: int = 6
    match_tolerance_A: float = 0.5
    errors: str = "jackknife"
    bootstrap: int = 200
    seed: int = 0
    subtract_offset: bool = False
    offset_min_distance_A: float = 0.0
    noise_floor_A: float | None = None
    overwrite: bool = False

    def analysis_config(self) -> CorrelationConfig:
        """The analysis options (validated)."""
        if self.errors not in ERROR_CHOICES:
            raise InputError(
                f"--errors must be one of {', '.join(ERROR_CHOICES)}, got {self.errors!r}"
            )
        resampling = None
        if self.errors != "none":
            resampling = Resampling(self.errors, int(self.bootstrap), int(self.seed))
        return CorrelationConfig(
            slices=self.slices,
            resampling=resampling,
            subtract_offset=self.subtract_offset,
            offset_min_distance_A=self.offset_min_distance_A,
            noise_floor_A=self.noise_floor_A,
            noise_floor_source="--noise-floor-A" if self.noise_floor_A is not None else "",
        )


@dataclass(kw_only=True)
class CorrelationsSummary(StepSummary):
    """Result of :func:`run_correlations`.

    Attributes
    ----------
    data
        The CORR contents written.
    comparison
        The comparison with the ground truth (None without one, or for a static truth).
    analysis
        Everything computed (significance of the nearest-neighbour blocks included).
    n_infinite
        Atoms excluded for an infinite position (besides the NaN ones of failed refinements).
    ranges
        Every z-range's analysis by label (one entry, keyed by its label or ``""``, for a file
        of one range); ``data``, ``comparison`` and ``analysis`` are those of the first.
    layer_matches
        The z-ranges matched to the layers of a layered ground truth (empty otherwise).
    """

    data: CorrelationsData | None = None
    comparison: corr.TruthComparison | None = None
    analysis: CorrelationAnalysis | None = None
    n_infinite: int = 0
    ranges: dict[str, CorrelationAnalysis] = field(default_factory=dict)
    layer_matches: list[depth.LayerMatch] = field(default_factory=list)


def _pm2(values: np.ndarray) -> str:
    return ", ".join(f"{100**2 * v:+.2f}" for v in values)


def summary_lines(analysis: CorrelationAnalysis) -> list[str]:
    """Human-readable summary of a correlation analysis: atoms, exclusions, errors, B, rms,
    ρ_nn, offset, significance and noise floor, each ``value ± error``."""
    data = analysis.data
    valid = np.isfinite(data.b_factor_A2)
    lines = [
        f"atoms: {data.n_atoms} ({valid.sum()} used), states: {data.n_states}, "
        f"slices: {index_list(data.slices)}",
        "excluded atoms (a NaN position, or the same position in every state): "
        f"{index_list(data.excluded_atoms) or 'none'}",
    ]
    if data.uncertainty is not None:
        lines.append(f"errors (±): {data.uncertainty.describe()}")
    else:
        lines.append("errors: none computed (--errors none)")
    if valid.any():
        b = data.b_factor_A2[valid]
        lines.append(
            f"B factor 8π²(<u_y²> + <u_x²>): mean {analysis.b_factor_mean_A2.text('.4f')} Å², "
            f"min {b.min():.4f}, max {b.max():.4f} Å² (per-atom errors in the file)"
        )
    if data.rms_displacement_A is not None:
        lines.append(
            f"rms displacement: {data.rms_displacement_A.text('.2f', 100.0)} pm per direction"
        )
    if data.rho_nn is not None and np.isfinite(data.rho_nn.value):
        rho = corr.correlation_coefficients(data.green_A2, analysis.neighbours.pairs)
        lines.append(
            f"rho_nn: {data.rho_nn.text('+.3f')} (mean over {rho.size} nearest-neighbour "
            f"pairs; spread between pairs {np.nanstd(rho):.3f})"
        )
    else:
        lines.append("rho_nn: n/a (no nearest-neighbour pairs among the atoms used)")
    o = data.offset
    if o is not None:
        pairs = (
            "every pair of distinct atoms"
            if o.min_distance_A == 0
            else f"distinct atoms at least {o.min_distance_A:g} Å apart"
        )
        err = (
            f" ± ({_pm2(o.stderr_A2).replace('+', '')})" if np.all(np.isfinite(o.stderr_A2)) else ""
        )
        lines.append(
            f"uniform offset (c_y, c_x): ({_pm2(o.offset_A2)}){err} pm² over {o.n_pairs} pairs "
            f"({pairs}); "
            + (
                "subtracted from the tensor"
                if o.subtracted
                else "not subtracted (--subtract-offset)"
            )
        )
    nb = analysis.neighbours
    if nb is not None:
        sig, n, csig, nc = nb.counts()
        dof = data.uncertainty.green_dof if data.uncertainty is not None else float("nan")
        text = (
            f"nearest-neighbour cross blocks significant at {SIGNIFICANCE_SIGMA:g}σ: {sig} of "
            f"{n} pairs (exact test of zero correlation, Wishart dof {dof:.3g}; 4.6 % expected "
            "by chance)"
        )
        if nc:
            text += f"; averaged over identical unit-cell pairs: {csig} of {nc} classes"
        lines.append(text)
    if data.unit_cell_averages is not None:
        lines += unit_cell_lines(data.unit_cell_averages, basis_labels(data))
    if data.noise_floor is not None:
        lines += noise_floor_lines(data.noise_floor)
    return lines


def basis_labels(data: CorrelationsData) -> list[str]:
    """The species of each basis atom κ (κ itself where the species are unknown or mixed)."""
    if data.basis_index is None:
        return []
    n_basis = int(np.max(data.basis_index, initial=-1)) + 1
    labels = [str(k) for k in range(n_basis)]
    if data.species is not None:
        for k in range(n_basis):  # κ basis atoms
            kinds = set(np.asarray(data.species, dtype=str)[data.basis_index == k].tolist())
            if len(kinds) == 1:
                labels[k] = kinds.pop()
    return labels


def _pm2_error(value_A2: float, error_A2: float) -> str:
    text = f"{1e4 * value_A2:+8.2f}"
    return text + (f" ± {1e4 * error_A2:6.2f}" if np.isfinite(error_A2) else " ±    n/a")


def unit_cell_lines(table: UnitCellTable, labels: list[str]) -> list[str]:
    """The unit-cell averages as a compact table: per class its shell, ``Δl``, ``κ → κ'``,
    separation, pairs, ``G_xx``, ``G_yy``, ``G_xy`` in pm² ± error (local frame) and the
    significance of the averaged block."""

    def name(k: int) -> str:
        return labels[k] if 0 <= k < len(labels) else str(k)

    f1, f2, fk1, fk2 = (int(v) for v in table.frame_key)
    lines = [
        f"unit-cell averages (pairs with the same l' − l, κ, κ' within {table.max_distance_A:.2f}"
        f" Å), pm² ± standard error, local frame: x along the {name(fk1)} → {name(fk2)} bond "
        f"Δl = ({f1}, {f2}) ({table.frame_angle_deg:+.1f}° from lab x); σ: significance of the "
        f"averaged block (* at ≥ {SIGNIFICANCE_SIGMA:g}σ):",
        "  shell   Δl1  Δl2  κ → κ'      r (Å)  pairs        G_xx              G_yy            "
        "  G_xy         σ",
    ]
    distance = table.distance_A
    for c in range(table.n_classes):  # a few classes per shell
        d1, d2, k1, k2 = (int(v) for v in table.keys[c])
        b, e = table.blocks_A2[c], table.stderr_A2[c]
        sigma = table.block_sigma[c]
        if np.isinf(sigma):
            sig = "self"
        elif np.isfinite(sigma):
            sig = f"{sigma:5.1f}" + (" *" if sigma >= SIGNIFICANCE_SIGMA else "")
        else:
            sig = "n/a"
        pair = f"{name(k1)} → {name(k2)}"
        lines.append(
            f"  {int(table.shell[c]):5d}  {d1:4d} {d2:4d}  {pair:<10s} {distance[c]:6.3f} "
            f"{int(table.counts[c]):6d}  {_pm2_error(b[1, 1], e[1, 1])}  "
            f"{_pm2_error(b[0, 0], e[0, 0])}  {_pm2_error(b[1, 0], e[1, 0])}  {sig}"
        )
    return lines


def comparison_lines(
    analysis: CorrelationAnalysis, truth: GroundTruth, truth_path: str | Path, pair_set: str
) -> list[str]:
    """The comparison of a reconstruction with its realised ground truth, ``value ± error``."""
    cmp, m = analysis.comparison, analysis.data.truth_metrics
    match = cmp.match
    matched = int((match.truth_index >= 0).sum())
    return [
        f"ground truth: {truth_path} (realised Green's tensor of {truth.positions_A.shape[0]} "
        "configurations)",
        f"matched atoms: {matched} of {analysis.data.n_atoms} (truth has "
        f"{truth.mean_positions_A.shape[0]}), global shift "
        f"({match.shift_A[0]:+.3f}, {match.shift_A[1]:+.3f}) Å (y, x), unmatched "
        f"reconstructed: {index_list(match.unmatched_reconstructed) or 'none'}",
        f"pairs: {pair_set}: {m.n_pairs} pairs, {m.n_vectors} vectors; errors: {m.pairing} "
        "(states resampled with the configuration assigned to each)"
        if m.pairing == "paired"
        else f"pairs: {pair_set}: {m.n_pairs} pairs, {m.n_vectors} vectors; errors: truth fixed, "
        "states resampled",
        f"LSM (eq. 3 as printed, sum over {m.n_vectors} vectors): {m.lsm_sum.text('.4f')}",
        f"LSM (mean per vector, 1 = equal length): {m.lsm_mean.text('.4f')}",
        f"CSM (eq. 4, mean over {m.n_pairs} pairs): {m.csm.text('+.4f')}",
        f"rho_nn over the same {cmp.rho_nn_reconstructed.values.size} nearest-neighbour pairs: "
        f"reconstruction {cmp.rho_nn_reconstructed.mean:+.3f}, "
        f"truth (realised) {m.rho_nn_truth:+.3f}",
    ]


def _static_truth_lines(analysis: CorrelationAnalysis, truth_path: str | Path, n: int) -> list[str]:
    # a static truth: eq. 3-4 divide by the truth's vectors, so they have no value here; what
    # the reconstruction shows is then all artefact, and its size is what matters
    rms = analysis.data.rms_displacement_A
    return [
        f"ground truth: {truth_path} (realised Green's tensor of {n} configurations)",
        "LSM/CSM undefined: the ground truth has no displacements (static); every correlation "
        "in the reconstruction is an artefact",
        f"reconstruction: rms displacement {rms.text('.2f', 100.0)} pm per direction",
    ]


def _masses(data: CorrelationsData) -> list[float]:
    """Standard atomic weights of the species of the atoms used (unknown species left out)."""
    if data.species is None:
        return []
    used = data.species[np.isfinite(data.b_factor_A2)]
    return [
        STANDARD_ATOMIC_WEIGHTS_AMU[s]
        for s in set(used.tolist())
        if s in STANDARD_ATOMIC_WEIGHTS_AMU
    ]


def layer_lines(metrics: tuple[LayerMetrics, ...]) -> list[str]:
    """A z-range against every layer of a layered truth, one line per layer."""
    lines = [
        "against every layer (its realised blocks carried into this range's lattice frame; "
        "self blocks and nearest-neighbour pairs of the atoms on its sites):"
    ]
    for m in metrics:
        own = " (matched)" if m.matched else ""
        if m.n_matched == 0:
            lines.append(f"  layer {m.layer!r}{own}: fewer than two atoms on its sites")
            continue
        lines.append(
            f"  layer {m.layer!r}{own}: CSM {m.csm:+.3f}, LSM (mean) {m.lsm_mean:.3f}, rho_nn "
            f"reconstruction {m.rho_nn_reconstructed:+.3f} vs layer {m.rho_nn_truth:+.3f} "
            f"({m.n_matched} atoms on its sites)"
        )
    return lines


@dataclass(frozen=True)
class LayeredTruth:
    """A layered ground truth and the match of the z-ranges to its layers.

    Attributes
    ----------
    truth
        The whole ground truth.
    layers
        Its layers.
    box_yx_A
        The periodic simulation box ``(Ly, Lx)``, Å.
    layer_of
        The layer each matched z-range (by label) shows.
    """

    truth: GroundTruth
    layers: tuple[TruthLayer, ...]
    box_yx_A: tuple[float, float]
    layer_of: dict[str, TruthLayer]


def layered_truth(
    path: str | os.PathLike, truth: GroundTruth, ranges: Mapping[str, AtomsData]
) -> tuple[LayeredTruth | None, list[depth.LayerMatch]]:
    """The layers of the ground truth of ``path`` matched to depth-resolved ``ranges``.

    Parameters
    ----------
    path
        The simulated file whose ``ground_truth/layers`` are read.
    truth
        Its ground truth (:func:`~caviar_napari.io.correlations_file.read_ground_truth`).
    ranges
        The z-ranges of one ATOMS file by label (matched together, one-to-one:
        :func:`~caviar_napari.analysis.depth.match_layers`).

    Returns
    -------
    tuple
        The :class:`LayeredTruth` (None when the truth has no layers or no range has a
        z-range record) and the matches.
    """
    from caviar_napari.io.truth_layers import read_truth_box_A, read_truth_layers

    if all(atoms.zrange is None for atoms in ranges.values()):
        return None, []
    layers = read_truth_layers(path)
    if not layers:
        return None, []
    box = read_truth_box_A(path)
    matches = depth.match_layers(dict(ranges), layers, truth.mean_positions_A, box)
    by_name = {layer.name: layer for layer in layers}
    layer_of = {m.zrange: by_name[m.layer] for m in matches}
    return LayeredTruth(truth, tuple(layers), box, layer_of), matches


@dataclass(frozen=True)
class TruthChoice:
    """How one analysis is compared with a ground truth.

    Attributes
    ----------
    path
        The simulated file (named in the comparison's records).
    tolerance_A
        Largest distance when matching atoms to the truth, Å.
    reference_atom
        Compare over this atom and its ``neighbours`` nearest neighbours; None: every self
        block and every nearest-neighbour pair.
    neighbours
        Nearest neighbours of the reference atom.
    """

    path: str
    tolerance_A: float = 0.5
    reference_atom: int | None = None
    neighbours: int = 6

    @property
    def pair_set(self) -> str:
        """The pairs compared, in words."""
        if self.reference_atom is None:
            return "every atom's self block and every nearest-neighbour pair"
        return (
            f"reference atom {self.reference_atom} and its {self.neighbours} nearest neighbours "
            "(self blocks included)"
        )


def range_truth_input(
    choice: TruthChoice,
    truth: GroundTruth | None,
    layered: LayeredTruth | None,
    label: str,
) -> tuple[TruthInput | None, TruthLayer | None]:
    """What the range ``label`` is compared with: its own layer's truth, the whole truth, or
    nothing (no truth, a static one, or a range matched to no layer)."""
    if truth is None:
        return None, None
    layer = None
    if layered is not None:
        layer = layered.layer_of.get(label)
        if layer is None:
            return None, None
        truth = depth.layer_ground_truth(truth, layer)
    if not np.any(truth.green_realised_A2):
        return None, layer
    name = choice.path
    return (
        TruthInput(
            truth=truth,
            label=name if layer is None else f"{name}:ground_truth/layers/{layer.name}",
            tolerance_A=choice.tolerance_A,
            reference_atom=choice.reference_atom,
            neighbours=choice.neighbours,
        ),
        layer,
    )


def with_layer_comparisons(
    analysis: CorrelationAnalysis, layered: LayeredTruth | None, layer: TruthLayer | None
) -> CorrelationAnalysis:
    """The analysis of a range matched to ``layer`` with its comparison against every layer
    (CORR ``layer_comparison``; unchanged without a layer)."""
    if layered is None or layer is None:
        return analysis
    data = analysis.data
    metrics = depth.layer_metrics(
        data, layer, layered.layers, layered.truth.mean_positions_A, layered.box_yx_A
    )
    return dataclasses.replace(analysis, data=dataclasses.replace(data, layer_comparisons=metrics))


def _choice(options: CorrelationsOptions) -> TruthChoice:
    return TruthChoice(
        str(options.ground_truth),
        options.match_tolerance_A,
        options.reference_atom,
        options.neighbours,
    )


@dataclass
class _RangeResult:
    """One range's analysis, report lines and warnings."""

    analysis: CorrelationAnalysis
    lines: list[str]
    warnings: list[str]


def _analyse_range(
    options: CorrelationsOptions,
    config: CorrelationConfig,
    checked: CheckedAtoms,
    truth: GroundTruth | None,
    layered: LayeredTruth | None,
    label: str,
) -> _RangeResult:
    """The whole analysis of one z-range (or of a file without z-ranges)."""
    atoms = checked.atoms
    truth_input, layer = range_truth_input(_choice(options), truth, layered, label)
    try:
        slices, slice_lines = range_slices(atoms, options.slices)
        chosen = dataclasses.replace(config, slices=slices)
        analysis = analyse_correlations(atoms, chosen, truth_input)
    except InputError as exc:
        where = f"{options.atoms}" + (f" z-range {label!r}" if label else "")
        raise InputError(f"{where}: {exc}") from None
    data = dataclasses.replace(analysis.data, source=str(options.atoms), zrange=atoms.zrange)
    analysis = with_layer_comparisons(dataclasses.replace(analysis, data=data), layered, layer)
    data = analysis.data
    lines = summary_lines(analysis)
    lines[2:2] = checked.exclusion_lines()
    if atoms.zrange is not None:
        lines[0:0] = [atoms.zrange.describe(), *slice_lines]
    warnings = list(checked.exclusion_lines())
    recon_lines, recon_warnings = separation_report_check(atoms, options.atoms)
    lines += recon_lines
    warnings += recon_warnings
    if data.noise_floor is not None:
        warnings += noise_floor_warnings(data.noise_floor)
    if data.rms_displacement_A is not None:
        warnings += physical_floor_warnings(data.rms_displacement_A.value, _masses(data))
    warnings += offset_warnings(data)
    if data.uncertainty is None and config.resampling is not None:
        warnings.append(
            f"only {data.n_states} object states: no standard errors (at least 3 are needed)"
        )
    if data.n_states < 5:
        warnings.append(
            f"only {data.n_states} object states: the significance of the correlations cannot "
            "be tested (at least 5 states are needed)"
        )
    if truth is not None:
        lines += truth_lines(_choice(options), analysis, truth, truth_input, layered, label)
    return _RangeResult(analysis, lines, warnings)


def truth_lines(
    choice: TruthChoice,
    analysis: CorrelationAnalysis,
    truth: GroundTruth,
    truth_input: TruthInput | None,
    layered: LayeredTruth | None,
    label: str,
) -> list[str]:
    """The comparison lines of one range: with its layer (and every layer) or the whole truth
    (``analysis`` made with ``truth_input``, :func:`range_truth_input`)."""
    n_configs = truth.positions_A.shape[0]
    if layered is not None and label not in layered.layer_of:
        return [f"ground truth: {choice.path}: this z-range matches no layer of it"]
    if truth_input is None:
        return _static_truth_lines(analysis, choice.path, n_configs)
    lines = comparison_lines(analysis, truth_input.truth, truth_input.label, choice.pair_set)
    if analysis.data.layer_comparisons:
        lines += layer_lines(analysis.data.layer_comparisons)
    return lines


def run_correlations(options: CorrelationsOptions) -> CorrelationsSummary:
    """Analyse the correlations of an ATOMS file (each of its z-ranges), compare them with a
    truth (each range with its own layer of a layered one), write the CORR file.

    Raises
    ------
    InputError
        Unreadable inputs (ATOMS, ground truth), an ATOMS file with no atoms, bad options, an
        unknown z-range label.
    OutputError
        The output may not or cannot be written (checked first; e.g. it is the ground truth).
    """
    from caviar_napari.io.atoms_file import atoms_is_multi_range, atoms_zrange_labels
    from caviar_napari.io.correlations_file import (
        read_ground_truth,
        write_correlations,
        write_correlations_zranges,
    )

    if options.reference_atom is not None and options.ground_truth is None:
        raise InputError("--reference-atom is only used with --ground-truth")
    if options.neighbours < 1:
        raise InputError(f"--neighbours must be at least 1, got {options.neighbours}")
    config = options.analysis_config()
    target = OutputTarget.prepare(
        options.out,
        "corr",
        inputs={"ATOMS": options.atoms, "--ground-truth": options.ground_truth},
        overwrite=options.overwrite,
    )
    labels = atoms_zrange_labels(options.atoms) if options.zrange is None else [options.zrange]
    ranges = {label: read_checked_atoms(options.atoms, label or None) for label in labels}
    truth, layered = None, None
    summary = CorrelationsSummary()
    if options.ground_truth is not None:
        truth = read_ground_truth(options.ground_truth)
        layered, summary.layer_matches = layered_truth(
            options.ground_truth, truth, {label: c.atoms for label, c in ranges.items()}
        )
    several = options.zrange is None and atoms_is_multi_range(options.atoms)
    for label, checked in ranges.items():
        result = _analyse_range(options, config, checked, truth, layered, label)
        summary.ranges[label] = result.analysis
        summary.n_infinite += int(checked.infinite_atoms.size)
        prefix = f"z-range {label!r}: " if several else ""
        summary.lines += result.lines
        summary.warnings += [prefix + w for w in result.warnings]
    summary.lines[0:0] = match_lines(summary.layer_matches, options.ground_truth)
    first = next(iter(summary.ranges.values()))
    summary.analysis, summary.data, summary.comparison = first, first.data, first.comparison
    datas = [a.data for a in summary.ranges.values()]
    if several:
        summary.out = target.write(
            lambda p: write_correlations_zranges(p, datas), warnings=summary.warnings
        )
    else:
        summary.out = target.write(
            lambda p: write_correlations(p, datas[0]), warnings=summary.warnings
        )
    summary.lines.append(f"wrote {options.out}")
    return summary


def match_lines(matches: list[depth.LayerMatch], truth_path: str | os.PathLike | None) -> list[str]:
    """How the z-ranges were matched to the layers of a layered truth."""
    if not matches:
        return []
    lines = [f"layered ground truth {truth_path}: z-ranges matched to its layers by depth and "
             "lattice sites"]  # fmt: skip
    for m in matches:
        where = "inside the range" if m.depth_offset_A == 0 else f"{m.depth_offset_A:.1f} Å off"
        lines.append(
            f"  z-range {m.zrange!r} ↔ layer {m.layer!r}: {m.site_fraction:.0%} of its atoms on "
            f"the layer's sites, lattice angle {m.angle_deg:.1f}°, layer plane {where}"
        )
    return lines
