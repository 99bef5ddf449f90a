"""The contents of a CORR file (conventions §6): the Green's tensor of correlated displacements.

Read and written by :mod:`caviar_napari.io.correlations_file`; computed by
:mod:`caviar_napari.analysis.correlations`.  Degrees of freedom: index ``2*i + a`` with
``a = 0`` for y and ``a = 1`` for x (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caviar_napari.data.atoms import ZRange
from caviar_napari.errors import InputError

__all__ = [
    "CorrelationsData",
    "Estimate",
    "LayerMetrics",
    "NoiseFloor",
    "TruthMetrics",
    "UniformOffset",
    "Uncertainty",
    "UnitCellTable",
]


def _finite_or_nan(value: float) -> float:
    value = float(value)
    return value if np.isfinite(value) else float("nan")


@dataclass(frozen=True)
class Estimate:
    """A number with its standard error (NaN when unknown)."""

    value: float
    stderr: float = float("nan")

    def text(self, fmt: str = ".4f", scale: float = 1.0) -> str:
        """``"value ± error"`` (``"value"`` alone when the error is unknown), both × ``scale``."""
        v = f"{self.value * scale:{fmt}}"
        if not np.isfinite(self.stderr):
            return v
        return f"{v} ± {self.stderr * scale:{fmt.lstrip('+')}}"


@dataclass(frozen=True)
class Uncertainty:
    """How the standard errors of a CORR file were obtained (issue 13, conventions §4).

    Attributes
    ----------
    method
        ``"jackknife"`` (delete-one over object states) or ``"bootstrap"`` (states drawn with
        replacement); each state is resampled with all its slices.
    replicas
        Number of replicas (the number of states for the jackknife).
    seed
        Seed of the bootstrap draws (None for the jackknife, which draws nothing).
    green_dof
        Wishart degrees of freedom of the tensor for the significance tests: ``N − 1`` for one
        slice; with several slices, ``N − 1`` times the number of effectively independent
        slices (conventions §4).
    """

    method: str
    replicas: int
    seed: int | None
    green_dof: float

    def describe(self) -> str:
        """One line for the summary."""
        if self.method == "jackknife":
            how = f"delete-one jackknife over the {self.replicas} object states"
        else:
            how = f"bootstrap over object states ({self.replicas} replicas, seed {self.seed})"
        return f"{how}, each with all its slices; Wishart dof {self.green_dof:.3g}"


@dataclass(frozen=True)
class UniformOffset:
    """The uniform x–x / y–y offset of the Green's tensor (partial spatial coherence, paper §2).

    Attributes
    ----------
    offset_A2
        ``(2,)`` ``(c_y, c_x)``: mean of ``G_ij,yy`` and of ``G_ij,xx`` over pairs of distinct
        atoms at least ``min_distance_A`` apart, Å².
    stderr_A2
        ``(2,)`` their standard errors (NaN when unknown).
    min_distance_A
        Smallest separation of the pairs averaged (0: every pair of distinct atoms).
    n_pairs
        Number of pairs averaged.
    subtracted
        True when the offset was subtracted from every y–y and x–x entry of the tensor (self
        blocks included) before anything else was computed from it.
    """

    offset_A2: np.ndarray
    stderr_A2: np.ndarray
    min_distance_A: float
    n_pairs: int
    subtracted: bool = False

    def __post_init__(self) -> None:
        for key in ("offset_A2", "stderr_A2"):
            value = np.asarray(getattr(self, key), dtype=float)
            if value.shape != (2,):
                raise InputError(f"{key}: shape {value.shape}, expected (2,) as (y, x)")
            object.__setattr__(self, key, value)

    @property
    def mean(self) -> Estimate:
        """``(c_y + c_x) / 2`` with its error (the errors of the two taken as independent)."""
        err = 0.5 * float(np.hypot(*self.stderr_A2))
        return Estimate(float(self.offset_A2.mean()), _finite_or_nan(err))


@dataclass(frozen=True)
class TruthMetrics:
    """LSM / CSM of a reconstruction against a ground truth, with standard errors.

    Attributes
    ----------
    truth
        The file of the ground truth.
    lsm_sum, lsm_mean, csm
        Eq. 3 as printed (a sum over vectors), eq. 3 as a mean per vector, eq. 4.
    rho_nn_truth
        ρ_nn of the truth over the same nearest-neighbour pairs.
    n_pairs, n_vectors
        Pairs in the CSM mean and vectors in the LSM sum.
    pairing
        How the truth entered the resampling: ``"paired"`` (each state resampled with the
        configuration assigned to it) or ``"truth fixed"``.
    """

    truth: str
    lsm_sum: Estimate
    lsm_mean: Estimate
    csm: Estimate
    rho_nn_truth: float
    n_pairs: int
    n_vectors: int
    pairing: str


@dataclass(frozen=True)
class LayerMetrics:
    """A z-range's correlations against one layer of a layered ground truth (issue 16).

    The layer's realised 2×2 blocks are carried into the range's lattice frame (atom by atom
    through the two lattices, :func:`caviar_napari.analysis.depth.compare_with_layer`), so a
    range is compared with the layer it shows and, pair for pair, with the layers it does not.

    Attributes
    ----------
    layer
        The layer's name (``ground_truth/layers/<name>``).
    matched
        True for the layer the range was matched to (by depth and lattice sites); its full
        comparison, with errors, is the CORR's ``truth_metrics``.
    lsm_sum, lsm_mean, csm
        Eq. 3 as printed, eq. 3 per vector, eq. 4, over every self block and nearest-neighbour
        pair of the matched atoms.
    rho_nn_reconstructed, rho_nn_truth
        Mean ρ_nn of the range and of the layer over the same nearest-neighbour pairs.
    n_matched
        Atoms of the range on a site of the layer.
    """

    layer: str
    matched: bool
    lsm_sum: float
    lsm_mean: float
    csm: float
    rho_nn_reconstructed: float
    rho_nn_truth: float
    n_matched: int


@dataclass(frozen=True)
class NoiseFloor:
    """The positional noise floor of the displacements and how it was found (issue 12).

    Attributes
    ----------
    floor_A
        rms positional noise per direction, Å (NaN when nothing gives an estimate).
    method
        Where the estimate comes from (plain words).
    rms_displacement_A
        rms displacement per direction of the data, Å.
    noise_fraction
        ``floor² / rms²``: the share of the measured variance the noise alone accounts for
        (NaN when the floor is unknown).
    """

    floor_A: float
    method: str
    rms_displacement_A: float
    noise_fraction: float


@dataclass(frozen=True)
class UnitCellTable:
    """Green's-tensor blocks averaged over identical unit-cell pairs (same ``l' − l``, κ, κ'),
    in the local lattice frame, with standard errors and significance (conventions §4).

    A class ``(Δl1, Δl2, κ, κ')`` holds every pair ``(i, j)`` with ``l_j − l_i = Δl``,
    ``κ_i = κ``, ``κ_j = κ'`` within the distance cut; its reverse ``(−Δl, κ', κ)`` holds the
    same pairs with the transposed block, so only one of the two is listed (the
    lexicographically smaller key).  Self classes ``(0, 0, κ, κ)`` are the mean self blocks.

    Attributes
    ----------
    keys
        ``(C, 4)`` int ``(Δl1, Δl2, κ, κ')``.
    shell
        ``(C,)`` int neighbour shell (0: self, 1: nearest neighbours, …) by separation.
    counts
        ``(C,)`` atom pairs averaged.
    separation_A
        ``(C, 2)`` mean separation ``r_j − r_i`` ``(y, x)`` in the lab frame, Å.
    blocks_A2
        ``(C, 2, 2)`` mean block ``R ⟨G_ij⟩ Rᵀ`` in the local frame, rows/columns ``(y, x)``,
        Å².
    stderr_A2
        ``(C, 2, 2)`` their standard errors (resampling the object states; NaN when unknown).
    block_sigma
        ``(C,)`` significance (σ) of each averaged cross block against zero (``+inf`` for self
        classes; :func:`~caviar_napari.analysis.correlation_significance.class_significance`).
    arrow_sigma
        ``(C, 2)`` significance of its y and x rows in the local frame.
    rotation
        ``(2, 2)`` lab → local rotation (row 0 local y, row 1 local x, in lab ``(y, x)``).
    frame_key
        ``(4,)`` the class whose mean bond sets the local x axis (the first nearest-neighbour
        class in key order).
    max_distance_A
        Pairs up to this separation were averaged, Å.
    """

    keys: np.ndarray
    shell: np.ndarray
    counts: np.ndarray
    separation_A: np.ndarray
    blocks_A2: np.ndarray
    stderr_A2: np.ndarray
    block_sigma: np.ndarray
    arrow_sigma: np.ndarray
    rotation: np.ndarray
    frame_key: np.ndarray
    max_distance_A: float

    def __post_init__(self) -> None:
        n = np.shape(self.keys)[0] if np.ndim(self.keys) == 2 else -1
        expected = {
            "keys": (np.shape(self.keys), (n, 4)),
            "shell": (np.shape(self.shell), (n,)),
            "counts": (np.shape(self.counts), (n,)),
            "separation_A": (np.shape(self.separation_A), (n, 2)),
            "blocks_A2": (np.shape(self.blocks_A2), (n, 2, 2)),
            "stderr_A2": (np.shape(self.stderr_A2), (n, 2, 2)),
            "block_sigma": (np.shape(self.block_sigma), (n,)),
            "arrow_sigma": (np.shape(self.arrow_sigma), (n, 2)),
            "rotation": (np.shape(self.rotation), (2, 2)),
            "frame_key": (np.shape(self.frame_key), (4,)),
        }
        for key, (got, want) in expected.items():
            if got != want:
                raise InputError(f"unit-cell averages: {key} has shape {got}, expected {want}")

    @property
    def n_classes(self) -> int:
        """Number of classes C."""
        return int(np.shape(self.keys)[0])

    @property
    def distance_A(self) -> np.ndarray:
        """``(C,)`` length of the mean separation, Å."""
        return np.hypot(self.separation_A[:, 0], self.separation_A[:, 1])

    @property
    def frame_angle_deg(self) -> float:
        """Angle of the local x axis from lab x (towards lab y), degrees."""
        return float(np.degrees(np.arctan2(self.rotation[1, 0], self.rotation[1, 1])))


@dataclass(frozen=True)
class CorrelationsData:
    """Contents of a CORR file; validated on construction.

    Attributes
    ----------
    green_A2
        ``(2N, 2N)`` Green's tensor (eq. 2), Å².
    b_factor_A2
        ``(N,)`` Debye–Waller B factors, Å².
    slices
        ``(s,)`` int, slices used.
    n_states
        Number of object states N.
    mean_positions_A
        ``(N, 2)`` mean positions ``(y, x)``, Å.
    excluded_atoms
        ``(k,)`` int, atoms left out of the tensor.
    cell_index, basis_index, species, lattice_vectors_A
        Lattice indexing copied from the ATOMS file (optional).
    source
        Name of the file the positions came from.
    green_stderr_A2, b_factor_stderr_A2
        Standard errors of ``green_A2`` and ``b_factor_A2`` (optional; issue 13).
    uncertainty
        How the errors were obtained and the tensor's Wishart degrees of freedom (optional).
    rho_nn, rms_displacement_A
        ρ_nn over the nearest-neighbour pairs and the rms displacement per direction (Å), with
        their errors (optional).
    offset
        The uniform x–x / y–y offset, estimated and possibly subtracted (optional).
    truth_metrics
        LSM/CSM against a ground truth, with errors (optional).
    noise_floor
        The positional noise floor of the displacements (optional).
    zrange
        The depth range of the reconstruction the atoms are from (optional; issue 16); the
        ``slices`` then count from the range's first slice.
    layer_comparisons
        Against every layer of a layered ground truth (empty without one).
    unit_cell_averages
        The blocks averaged over identical unit-cell pairs out to the second neighbour shell,
        in the local lattice frame, with errors and significance (optional: needs lattice
        indices).
    """

    green_A2: np.ndarray
    b_factor_A2: np.ndarray
    slices: np.ndarray
    n_states: int
    mean_positions_A: np.ndarray
    excluded_atoms: np.ndarray
    cell_index: np.ndarray | None = None
    basis_index: np.ndarray | None = None
    species: np.ndarray | None = None
    lattice_vectors_A: np.ndarray | None = None
    source: str = ""
    green_stderr_A2: np.ndarray | None = None
    b_factor_stderr_A2: np.ndarray | None = None
    uncertainty: Uncertainty | None = None
    rho_nn: Estimate | None = None
    rms_displacement_A: Estimate | None = None
    offset: UniformOffset | None = None
    truth_metrics: TruthMetrics | None = None
    noise_floor: NoiseFloor | None = None
    zrange: ZRange | None = None
    layer_comparisons: tuple[LayerMetrics, ...] = ()
    unit_cell_averages: UnitCellTable | None = None

    def __post_init__(self) -> None:
        n = self.b_factor_A2.shape[0] if self.b_factor_A2.ndim == 1 else -1
        checks = {
            "green_A2": (self.green_A2.shape, (2 * n, 2 * n)),
            "mean_positions_A": (self.mean_positions_A.shape, (n, 2)),
        }
        if self.cell_index is not None:
            checks["cell_index"] = (self.cell_index.shape, (n, 2))
        if self.basis_index is not None:
            checks["basis_index"] = (self.basis_index.shape, (n,))
        if self.species is not None:
            checks["species"] = (self.species.shape, (n,))
        if self.lattice_vectors_A is not None:
            checks["lattice_vectors_A"] = (self.lattice_vectors_A.shape, (2, 2))
        if self.green_stderr_A2 is not None:
            checks["green_stderr_A2"] = (self.green_stderr_A2.shape, (2 * n, 2 * n))
        if self.b_factor_stderr_A2 is not None:
            checks["b_factor_stderr_A2"] = (self.b_factor_stderr_A2.shape, (n,))
        if n < 0:
            raise InputError(f"b_factor_A2 must be (atoms,), got {self.b_factor_A2.shape}")
        for key, (got, want) in checks.items():
            if got != want:
                raise InputError(f"{key}: shape {got} does not match {want} for {n} atoms")
        if self.excluded_atoms.size and (
            self.excluded_atoms.min() < 0 or self.excluded_atoms.max() >= n
        ):
            raise InputError(f"excluded_atoms {self.excluded_atoms.tolist()} outside 0..{n - 1}")
        if self.n_states < 2:
            raise InputError(f"n_states must be at least 2, got {self.n_states}")

    @property
    def n_atoms(self) -> int:
        """Number of atoms N."""
        return self.b_factor_A2.shape[0]
