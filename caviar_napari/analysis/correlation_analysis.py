"""The whole correlation analysis of an ATOMS file: tensor, errors, offset, significance, LSM/CSM.

:func:`analyse_correlations` is what ``caviar correlations`` and the Correlations dock run:

1. the displacements of eq. 1 per state and used slice, and the Green's tensor of eq. 2
   (:func:`~.correlations.state_displacements`);
2. the uniform x–x / y–y offset (:mod:`.uniform_offset`), subtracted on request;
3. B factors, ρ_nn over the nearest-neighbour pairs, the rms displacement and, with a ground
   truth, LSM (eq. 3, sum and mean) and CSM (eq. 4), each with a standard error from resampling
   the object states (:mod:`.correlation_errors`; each replica repeats steps 2–3);
4. the significance of every nearest-neighbour cross block, per pair and averaged over
   identical unit-cell pairs (:mod:`.correlation_significance`);
5. the blocks averaged over identical unit-cell pairs (same ``l' − l``, κ, κ') out to the
   second neighbour shell, in the local lattice frame, each with its error (from the same
   replicas) and significance (:mod:`.unit_cell_table`);
6. the positional noise floor (:mod:`.noise_floor`).

LSM/CSM errors and the truth: the realised truth is a sample of configurations too.  When the
number of states equals the number of configurations, each state is assigned the configuration
whose displacement field it matches best (:func:`~.truth.state_recovery`, one-to-one) and the
two are resampled together ("paired"): a reconstruction that reproduces every configuration then
has LSM = CSM = 1 with zero error.  Otherwise the truth is held fixed ("truth fixed") and only
the states are resampled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.correlation_errors import (
    Resampling,
    effective_dof,
    replicate,
    weighted_green,
)
from caviar_napari.analysis.correlation_significance import (
    SIGNIFICANCE_SIGMA,
    BlockTest,
    block_significance,
    class_members,
    class_significance,
)
from caviar_napari.analysis.noise_floor import assess_noise_floor, slice_noise_A
from caviar_napari.analysis.truth import (
    NN_RADIUS_FACTOR,
    nearest_neighbour_pair_set,
    reference_pair_set,
    state_recovery,
)
from caviar_napari.analysis.uniform_offset import OffsetPairs, offset_pairs, subtract_offset
from caviar_napari.analysis.unit_cell_table import TablePlan, plan_table
from caviar_napari.data.correlations import (
    CorrelationsData,
    Estimate,
    TruthMetrics,
    Uncertainty,
    UniformOffset,
)
from caviar_napari.errors import InputError

if TYPE_CHECKING:
    from caviar_napari.data.atoms import AtomsData
    from caviar_napari.data.ground_truth import GroundTruth

__all__ = [
    "CorrelationAnalysis",
    "CorrelationConfig",
    "NeighbourSignificance",
    "TruthInput",
    "analyse_correlations",
]


@dataclass(frozen=True)
class CorrelationConfig:
    """Options of :func:`analyse_correlations` (validated on construction).

    Attributes
    ----------
    slices
        ``"A:B"`` text, indices, or None (all slices).
    resampling
        How the standard errors are obtained; None: no errors.
    subtract_offset
        Subtract the uniform x–x / y–y offset from the tensor.
    offset_min_distance_A
        Only pairs at least this far apart enter the offset (0: all pairs of distinct atoms).
    noise_floor_A
        A known positional noise floor (e.g. a static control's rms displacement), Å.
    noise_floor_source
        What ``noise_floor_A`` is, for the messages.
    """

    slices: str | Sequence[int] | None = None
    resampling: Resampling | None = field(default_factory=Resampling)
    subtract_offset: bool = False
    offset_min_distance_A: float = 0.0
    noise_floor_A: float | None = None
    noise_floor_source: str = ""

    def __post_init__(self) -> None:
        d = float(self.offset_min_distance_A)
        if not (np.isfinite(d) and d >= 0):
            raise InputError(
                f"offset minimum distance must be ≥ 0 Å, got {self.offset_min_distance_A!r}"
            )
        if self.noise_floor_A is not None:
            f = float(self.noise_floor_A)
            if not (np.isfinite(f) and f >= 0):
                raise InputError(f"noise floor must be ≥ 0 Å, got {self.noise_floor_A!r}")


@dataclass(frozen=True)
class TruthInput:
    """A ground truth to compare with, and the pairs to compare over.

    Attributes
    ----------
    truth
        The ``ground_truth`` group of a simulated file.
    label
        Name of the truth (its file).
    tolerance_A
        Atom matching tolerance, Å.
    reference_atom
        Compare over this atom and its ``neighbours`` nearest neighbours, self blocks included
        (:func:`~.truth.reference_pair_set`); None: every atom's self block and every
        nearest-neighbour pair (:func:`~.truth.nearest_neighbour_pair_set`).
    neighbours
        Nearest neighbours of the reference atom.
    """

    truth: GroundTruth
    label: str = ""
    tolerance_A: float = 0.5
    reference_atom: int | None = None
    neighbours: int = 6

    def pairs(self, positions_A: np.ndarray) -> np.ndarray:
        """The pair set over reconstructed atoms (NaN positions: excluded atoms)."""
        if self.reference_atom is None:
            return nearest_neighbour_pair_set(positions_A)
        ref = int(self.reference_atom)
        if not 0 <= ref < positions_A.shape[0] or not np.isfinite(positions_A[ref]).all():
            raise InputError(
                f"reference atom {ref}: not one of the {positions_A.shape[0]} atoms with "
                "finite correlations"
            )
        return reference_pair_set(positions_A, ref, self.neighbours)[0]


@dataclass(frozen=True)
class NeighbourSignificance:
    """Significance of the nearest-neighbour cross blocks of the tensor.

    Attributes
    ----------
    pairs
        ``(P, 2)`` nearest-neighbour pairs ``i < j``.
    test
        Their per-pair block test (:func:`~.correlation_significance.block_significance`).
    class_keys
        ``(C, 4)`` unit-cell classes ``(Δl1, Δl2, κ, κ')`` of those pairs (empty without
        lattice indices).
    class_sigma
        ``(C,)`` significance of each class's averaged block.
    class_counts
        ``(C,)`` pairs averaged per class.
    threshold_sigma
        The threshold used in :meth:`counts`.
    """

    pairs: np.ndarray
    test: BlockTest
    class_keys: np.ndarray
    class_sigma: np.ndarray
    class_counts: np.ndarray
    threshold_sigma: float = SIGNIFICANCE_SIGMA

    def counts(self) -> tuple[int, int, int, int]:
        """``(significant pairs, pairs, significant classes, classes)``."""
        sig = self.test.significant(self.threshold_sigma)
        cls = np.nan_to_num(self.class_sigma, nan=-np.inf) >= self.threshold_sigma
        return int(sig.sum()), int(sig.size), int(cls.sum()), int(cls.size)


@dataclass(frozen=True)
class CorrelationAnalysis:
    """Result of :func:`analyse_correlations`.

    Attributes
    ----------
    data
        The CORR contents: tensor, B factors and their errors, ρ_nn, rms, offset, LSM/CSM,
        noise floor.
    neighbours
        Significance of the nearest-neighbour blocks (None when there are none).
    comparison
        The full-sample comparison with the truth (matching, pairs, ρ_nn of both), or None.
    b_factor_mean_A2
        The mean B factor over the atoms used, with its error.
    """

    data: CorrelationsData
    neighbours: NeighbourSignificance | None
    comparison: corr.TruthComparison | None
    b_factor_mean_A2: Estimate


def _nn_pairs(positions: np.ndarray) -> np.ndarray:
    try:
        return corr.nearest_neighbour_pairs(positions, NN_RADIUS_FACTOR - 1.0)
    except InputError:
        return np.empty((0, 2), dtype=int)


def _to_kept(index: np.ndarray, kept: np.ndarray, n_atoms: int) -> np.ndarray:
    """Map atom indices to positions in ``kept`` (-1 where not kept)."""
    lookup = np.full(n_atoms, -1)
    lookup[kept] = np.arange(kept.size)
    return lookup[index]


class _TruthReplicas:
    """The truth's tensor of each replica over the kept atoms (paired or fixed)."""

    def __init__(self, u_states: np.ndarray, truth_u: np.ndarray, green_fixed: np.ndarray):
        self.truth_u = truth_u  # (C, 1, 2k)
        self.green_fixed = green_fixed
        self.config_of_state: np.ndarray | None = None
        n_states, n_configs = u_states.shape[0], truth_u.shape[0]
        if n_states == n_configs:
            k = truth_u.shape[2] // 2
            rec = u_states.mean(axis=1).reshape(n_states, k, 2)
            cfg = truth_u[:, 0].reshape(n_configs, k, 2)
            try:
                assign = state_recovery(rec, cfg, n_null=1).assignment
            except InputError:
                assign = None
            if assign is not None and assign.shape[0] == n_states:
                order = np.empty(n_states, dtype=int)
                order[assign[:, 0]] = assign[:, 1]
                self.config_of_state = order

    @property
    def pairing(self) -> str:
        return "paired" if self.config_of_state is not None else "truth fixed"

    def green(self, w: np.ndarray) -> np.ndarray:
        if self.config_of_state is None:
            return self.green_fixed
        wt = np.zeros(self.truth_u.shape[0])
        wt[self.config_of_state] = w
        return weighted_green(self.truth_u, wt)


def analyse_correlations(
    atoms: AtomsData, config: CorrelationConfig | None = None, truth: TruthInput | None = None
) -> CorrelationAnalysis:
    """Tensor, errors, offset, significance, noise floor and LSM/CSM (module docstring).

    With fewer than 3 states no errors are computed (``data.uncertainty`` is None).

    Parameters
    ----------
    atoms
        Per-state, per-slice positions and lattice indexing (an ATOMS file's contents).
    config
        :class:`CorrelationConfig` (default: jackknife errors, offset estimated, not
        subtracted).
    truth
        A ground truth to compare with (its realised tensor must not be all zero).

    Returns
    -------
    CorrelationAnalysis
        The CORR contents, the nearest-neighbour significance, the truth comparison.

    Raises
    ------
    InputError
        Fewer than 2 states, no atom with finite positions in every used state and slice, bad
        options, or no pair matched to the truth.
    """
    config = CorrelationConfig() if config is None else config
    positions_all = np.asarray(atoms.positions_A, dtype=float)
    slices = config.slices
    if isinstance(slices, str):
        slices = corr.parse_slice_spec(slices, positions_all.shape[1])
    disp = corr.state_displacements(positions_all, slices)
    kept, n_atoms = disp.kept_atoms, disp.n_atoms
    if kept.size == 0:
        raise InputError(
            "every atom is excluded (a non-finite position in some used state or slice); "
            "no correlations to compute"
        )
    mean_positions = np.asarray(atoms.mean_positions_A, dtype=float)
    positions = mean_positions.copy()
    positions[disp.excluded_atoms] = np.nan
    kept_positions = positions[kept]
    green_k = disp.green()
    offset_set = None
    if kept.size >= 2:
        offset_set = offset_pairs(green_k, kept_positions, config.offset_min_distance_A)
    nn_pairs = _nn_pairs(positions)
    nn_k = _to_kept(nn_pairs, kept, n_atoms).reshape(-1, 2)
    table_plan = _table_plan(atoms, kept, kept_positions)

    truth_replicas, cmp, truth_pairs_k = None, None, None
    if truth is not None:
        cmp, truth_replicas, truth_pairs_k = _prepare_truth(
            truth, disp, positions, green_k, offset_set, config
        )

    def statistic(g: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if offset_set is not None:
            c = offset_set.offset(g)
            out["offset"] = c
            if config.subtract_offset:
                g = subtract_offset(g, c)
        out["green"] = g
        out["b"] = corr.b_factors(g)
        out["b_mean"] = np.mean(out["b"])
        mean_square = np.mean(np.diagonal(g))
        out["rms"] = np.sqrt(mean_square) if mean_square >= 0 else np.nan
        if nn_k.size:
            with np.errstate(invalid="ignore", divide="ignore"):
                out["rho_nn"] = np.mean(corr.correlation_coefficients(g, nn_k))
        if truth_replicas is not None:
            out["lsm"] = _similarity(g, truth_replicas.green(w), truth_pairs_k)
        if table_plan is not None:
            out["cells"] = table_plan.local_blocks(g)
        return out

    if config.resampling is not None and disp.n_states >= 3:  # a jackknife needs 2 left
        rep = replicate(disp.u_A, config.resampling, statistic)
        values, errors = rep.values, rep.stderr
        uncertainty = Uncertainty(
            method=config.resampling.method,
            replicas=rep.n_replicas,
            seed=None if config.resampling.method == "jackknife" else config.resampling.seed,
            green_dof=effective_dof(disp.u_A),
        )
    else:
        uniform = np.full(disp.n_states, 1.0 / disp.n_states)
        values = {k: np.asarray(v, float) for k, v in statistic(green_k, uniform).items()}
        errors = {k: np.full_like(v, np.nan) for k, v in values.items()}
        uncertainty = None

    def estimate(key: str, index: int | None = None) -> Estimate | None:
        if key not in values:
            return None
        v, e = values[key], errors[key]
        if index is not None:
            v, e = v[index], e[index]
        return Estimate(float(v), float(e))

    green = disp.full_tensor(values["green"])
    b = np.full(n_atoms, np.nan)
    b[kept] = values["b"]
    green_err, b_err = None, None
    if uncertainty is not None:
        green_err = disp.full_tensor(errors["green"])
        b_err = np.full(n_atoms, np.nan)
        b_err[kept] = errors["b"]
    offset = None
    if offset_set is not None:
        offset = UniformOffset(
            offset_A2=values["offset"],
            stderr_A2=errors["offset"],
            min_distance_A=offset_set.min_distance_A,
            n_pairs=offset_set.n_pairs,
            subtracted=config.subtract_offset,
        )
    metrics = None
    if truth is not None and cmp is not None:
        metrics = TruthMetrics(
            truth=truth.label,
            lsm_sum=estimate("lsm", 0),
            lsm_mean=estimate("lsm", 1),
            csm=estimate("lsm", 2),
            rho_nn_truth=float(cmp.rho_nn_truth.mean),
            n_pairs=int(cmp.similarity.n_pairs),
            n_vectors=int(cmp.similarity.n_vectors),
            pairing=truth_replicas.pairing,
        )
    rms = estimate("rms")
    floor = assess_noise_floor(
        rms.value,
        given_A=config.noise_floor_A,
        given_source=config.noise_floor_source,
        slice_noise=slice_noise_A(disp.u_A),
    )
    data = CorrelationsData(
        green_A2=green,
        b_factor_A2=b,
        slices=disp.slices,
        n_states=disp.n_states,
        mean_positions_A=mean_positions,
        excluded_atoms=disp.excluded_atoms,
        cell_index=None if atoms.cell_index is None else np.asarray(atoms.cell_index, int),
        basis_index=None if atoms.basis_index is None else np.asarray(atoms.basis_index, int),
        species=None if atoms.species is None else np.asarray(atoms.species, dtype=str),
        lattice_vectors_A=(
            None if atoms.lattice_vectors_A is None else np.asarray(atoms.lattice_vectors_A, float)
        ),
        source=str(getattr(atoms, "source", "")),
        green_stderr_A2=green_err,
        b_factor_stderr_A2=b_err,
        uncertainty=uncertainty,
        rho_nn=estimate("rho_nn"),
        rms_displacement_A=rms,
        offset=offset,
        truth_metrics=metrics,
        noise_floor=floor,
    )
    dof = uncertainty.green_dof if uncertainty is not None else effective_dof(disp.u_A)
    if table_plan is not None:
        table = table_plan.table(values["cells"], errors["cells"], green, dof, kept)
        data = dataclasses.replace(data, unit_cell_averages=table)
    return CorrelationAnalysis(
        data=data,
        neighbours=neighbour_significance(data, nn_pairs, dof),
        comparison=cmp,
        b_factor_mean_A2=estimate("b_mean"),
    )


def _table_plan(atoms: AtomsData, kept: np.ndarray, kept_positions: np.ndarray) -> TablePlan | None:
    """The unit-cell table's classes over the kept atoms (None without lattice indices)."""
    if atoms.cell_index is None or atoms.basis_index is None:
        return None
    cells = np.asarray(atoms.cell_index, dtype=int)[kept]
    basis = np.asarray(atoms.basis_index, dtype=int)[kept]
    return plan_table(cells, basis, kept_positions)


def _similarity(green: np.ndarray, truth: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``[LSM sum, LSM mean, CSM]`` (NaN where undefined)."""
    try:
        s = corr.similarity(green, truth, pairs)
    except InputError:
        return np.full(3, np.nan)
    return np.array([s.lsm_sum, s.lsm_mean, s.csm])


def _prepare_truth(
    truth: TruthInput,
    disp: corr.StateDisplacements,
    positions: np.ndarray,
    green_k: np.ndarray,
    offset_set: OffsetPairs | None,
    config: CorrelationConfig,
) -> tuple[corr.TruthComparison, _TruthReplicas, np.ndarray]:
    """Match atoms, the full-sample comparison, and the truth's replicas over the kept atoms."""
    gt = truth.truth
    g_full = disp.full_tensor(green_k)
    if config.subtract_offset and offset_set is not None:
        g_full = disp.full_tensor(subtract_offset(green_k, offset_set.offset(green_k)))
    cmp = corr.compare_to_truth(
        g_full,
        positions,
        gt.green_realised_A2,
        gt.mean_positions_A,
        truth.pairs(positions),
        tolerance_A=truth.tolerance_A,
    )
    kept = disp.kept_atoms
    pairs_k = _to_kept(cmp.pairs, kept, disp.n_atoms).reshape(-1, 2)
    pairs_k = pairs_k[(pairs_k >= 0).all(axis=1)]
    t_index = cmp.match.truth_index[kept]  # (k,) truth atom of each kept atom, -1 if none
    fixed = corr.reindex_green(gt.green_realised_A2, t_index)
    configs = np.asarray(gt.positions_A, dtype=float)
    u = (
        configs[:, np.where(t_index < 0, 0, t_index)]
        - configs.mean(axis=0)[np.where(t_index < 0, 0, t_index)]
    )
    u[:, t_index < 0] = np.nan
    truth_u = u.reshape(configs.shape[0], 1, -1)
    return cmp, _TruthReplicas(disp.u_A, truth_u, fixed), pairs_k


def neighbour_significance(
    data: CorrelationsData, nn_pairs: ArrayLike, dof: float
) -> NeighbourSignificance | None:
    """Per-pair and unit-cell-class significance of the nearest-neighbour cross blocks."""
    pairs = np.asarray(nn_pairs, dtype=int).reshape(-1, 2)
    if pairs.shape[0] == 0:
        return None
    test = block_significance(data.green_A2, pairs, dof)
    keys = np.empty((0, 4), dtype=int)
    sigma = np.empty(0)
    counts = np.empty(0, dtype=int)
    if data.cell_index is not None and data.basis_index is not None:
        cells, basis = data.cell_index, data.basis_index

        def key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.column_stack([cells[b] - cells[a], basis[a], basis[b]])

        # a class and its reverse (j, i) hold the same pairs: count the lexicographically
        # smaller key of the two once
        forward, reverse = key(pairs[:, 0], pairs[:, 1]), key(pairs[:, 1], pairs[:, 0])
        differ = forward != reverse
        col = np.argmax(differ, axis=1)
        rows = np.arange(pairs.shape[0])
        order = ~differ.any(axis=1) | (forward[rows, col] < reverse[rows, col])
        keys = np.unique(np.where(order[:, None], forward, reverse), axis=0)
        members = class_members(cells, basis, keys, np.isfinite(data.b_factor_A2))
        sigma, _ = class_significance(data.green_A2, members, dof)
        counts = np.array([m.shape[0] for m in members], dtype=int)
    return NeighbourSignificance(
        pairs=pairs, test=test, class_keys=keys, class_sigma=sigma, class_counts=counts
    )
