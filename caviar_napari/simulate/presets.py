"""Simulated 4D-STEM datasets with known truth: typed presets, structures and abTEM multislice.

abTEM (the simulator the CAVIAR paper used) computes the independent-atom-model potentials and
the multislice; this module only builds the structures and thermal ensembles, places the scan
and stores the result in the project's conventions.

Geometry and frames
-------------------
The structure fills an orthogonal periodic simulation box ``(Ly, Lx)`` (Å).  The detector is the
reciprocal of that box: ``dk = 1 / L`` (1/Å), i.e. ``angular_sampling = λ / L`` (mrad), cropped
to ``detector_shape = (Ky, Kx)`` pixels around zero angle (fft-shifted, zero at
``[Ky//2, Kx//2]``), so the reconstruction pixel ``1 / (K dk) = L / K`` and its probe window is
the whole box.  abTEM runs on a grid ``oversampling`` times finer (its 2/3 anti-aliasing aperture
then lies outside the stored detector).

Scan position ``(0, 0)`` (the first scan point) sits at ``scan_start_A`` in the box; every
ground-truth position is given in that *scan frame* (box coordinates minus ``scan_start_A``).
abTEM's arrays are ``(x, y)``-ordered and are transposed to the project's ``(y, x)`` here.

Geometry errors (for testing calibration and position refinement): the true probe positions
are the nominal raster plus a linear drift (``drift_A`` along ``drift_angle_deg``) and a
zero-mean seeded jitter (``position_jitter_A``), turned into the detector frame by the true
``scan_rotation_deg`` (:func:`scan_positions_A`).  abTEM simulates at exactly those positions;
the file states the nominal raster, ``recorded_scan_rotation_deg`` (0 unless told) and
``recorded_defocus_A`` (the true defocus unless told), and with ``detector_transposed`` stores
the patterns as ``(kx, ky)`` without saying so.  The ground truth records the true positions
(``scan_positions_A``), rotation and transposition.

Intensities are probabilities (abTEM normalises the full far field to 1; the cropped detector
holds slightly less) or, with a dose ``D`` (e/Å²), Poisson counts with mean
``D · dy_scan · dx_scan · I``.  Configurations are averaged (``I = mean over configurations``),
partial spatial coherence is a continuous Gaussian source (each pattern the weighted sum of
patterns of probes displaced by the points of a Gauss–Hermite rule,
:mod:`caviar_napari.simulate.psc`), then noise.

Signs (checked by the tests against the simulation itself)
---------------------------------------------------------
The stored phase is ``+σ V`` (positive on atoms); an atom's phase peak and its virtual-ADF spot
sit at its stored scan-frame position; the centre of mass of a pattern, in the stored ``(ky,
kx)`` frame (zero angle at ``[Ky//2, Kx//2]``, ky ∥ scan y, kx ∥ scan x), points from the probe
position towards a nearby atom (the beam is deflected towards positive phase), as in abTEM and
Kirkland.

Structures
----------
``hbn``: hBN monolayer from :meth:`HarmonicLattice.honeycomb` (``a1 = a (0, 1)``, ``a2 = a (√3/2,
−1/2)`` as ``(y, x)``); the box has ``cells = (ny, nx)`` orthogonal cells of ``a√3 × a``, i.e.
``Ly = ny a √3``, ``Lx = nx a``, and the harmonic supercell is ``gcd(nx, ny) × 2 ny`` primitive
cells (the largest one the box is periodic with; one copy when ``nx == ny``).  The presets
simulate the monolayer as one slice, so it is transmitted at the entrance surface and
``defocus_A = 0`` means the probe is focused on the monolayer.

``si110``: diamond-cubic Si viewed along [110]: x ∥ [001] (``a``), y ∥ [1−10] (``a/√2``), beam
z ∥ [110] (``a/√2``); ``cells = (ny, nx)`` in-plane and ``thickness_cells`` along the beam.  Each
orthogonal cell holds 4 atoms in 2 layers ``h/2`` apart along the beam (``h = a/√2``), at
``z = h/8 + j h/2`` so that no atom lies on a slice boundary; the basis index of an atom is
``κ + 4 · (cell along the beam)``.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari import __version__
from caviar_napari.analysis.phonons import HarmonicLattice, Supercell, standard_mass_amu
from caviar_napari.core.grid import as_pair
from caviar_napari.errors import InputError
from caviar_napari.io.dataset import STEMDataset, write_stem_h5
from caviar_napari.simulate.psc import source_average, source_offsets_A
from caviar_napari.simulate.thermal import (
    THERMAL_MODELS,
    Ensemble,
    correlated_ensemble,
    einstein_ensemble,
    matched_einstein_rms_A,
    static_ensemble,
)

__all__ = [
    "PRESETS",
    "STRUCTURES",
    "GroundTruth",
    "SimulationConfig",
    "SimulationResult",
    "Structure",
    "build_structure",
    "preset_config",
    "library_versions",
    "scan_positions_A",
    "poisson_counts",
    "simulate",
    "thermal_ensemble",
    "write_simulation",
]

log = logging.getLogger(__name__)

#: Structures this module can build.
STRUCTURES: tuple[str, ...] = ("hbn", "si110")

#: Standard lattice constants (Å): hBN a (in-plane), Si a (cubic).
LATTICE_CONSTANTS_A: Mapping[str, float] = MappingProxyType({"hbn": 2.504, "si110": 5.431})

#: Thickness (Å) of the simulation box of a monolayer (atoms at its middle).
MONOLAYER_BOX_A: float = 4.0


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _f(help_: str, default: Any = None, *, unit: str = "", **kw: Any) -> Any:
    """A dataclass field with CLI help text and unit in its metadata."""
    meta = {"help": help_, "unit": unit}
    if "default_factory" in kw:
        return field(default_factory=kw["default_factory"], metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SimulationConfig:
    """Every parameter of a simulated dataset (validated on construction).

    Attributes are documented in their field metadata (``help``/``unit``), which the command
    line exposes one option each (``caviar simulate PRESET --help``).
    """

    preset: str = _f("name of the preset these parameters came from", "custom")
    structure: str = _f(f"structure: one of {STRUCTURES}", "hbn")
    thermal_model: str = _f(f"thermal model: one of {THERMAL_MODELS}", "static")
    energy_eV: float = _f("beam energy", 60e3, unit="eV")
    convergence_semiangle_mrad: float = _f("probe convergence semi-angle α", 35.0, unit="mrad")
    defocus_A: float = _f("defocus Δf = −C10 (positive = underfocus)", 0.0, unit="Å")
    temperature_K: float = _f("temperature of the thermal models", 300.0, unit="K")
    n_configs: int = _f("number of atom configurations (frozen phonons) averaged", 1)
    scan_shape: tuple[int, int] = _f("scan points (Sy, Sx)", (16, 16))
    scan_step_A: tuple[float, float] = _f("scan step (dy, dx)", (0.5, 0.5), unit="Å")
    scan_start_A: tuple[float, float] = _f(
        "position (y, x) of the first scan point in the simulation box", (1.0, 1.0), unit="Å"
    )
    detector_shape: tuple[int, int] = _f(
        "stored detector pixels (Ky, Kx); reconstruction pixel = box / K", (84, 48)
    )
    oversampling: int = _f("abTEM grid = detector_shape × oversampling", 2)
    slice_thickness_A: float = _f("multislice slice thickness", 2.0, unit="Å")
    truth_slices: int = _f("number of equal slices of the ground-truth phase", 1)
    psc_fwhm_A: float = _f(
        "source size (FWHM) for partial spatial coherence; 0 = none", 0.0, unit="Å"
    )
    dose_e_per_A2: float | None = _f("dose for Poisson noise; none = noise-free", None, unit="e/Å²")
    seed: int = _f("random seed (configurations and noise)", 0)
    cells: tuple[int, int] = _f("orthogonal cells (ny, nx) in the box", (4, 4))
    thickness_cells: int = _f("cells along the beam (si110; 1 for the hbn monolayer)", 1)
    lattice_constant_A: float | None = _f(
        "lattice constant a (default: the structure's, hbn 2.504, si110 5.431)", None, unit="Å"
    )
    masses_amu: dict[str, float] = _f(
        "masses per species (default: standard atomic weights)", unit="amu", default_factory=dict
    )
    k_nn: float = _f("hbn: nearest-neighbour longitudinal spring", 20.0, unit="eV/Å²")
    t_nn: float = _f("hbn: nearest-neighbour transverse spring", 6.0, unit="eV/Å²")
    k_nnn: float = _f("hbn: next-nearest-neighbour longitudinal spring", 4.0, unit="eV/Å²")
    t_nnn: float = _f("hbn: next-nearest-neighbour transverse spring", 0.0, unit="eV/Å²")
    einstein_rms_A: dict[str, float] = _f(
        "einstein: rms displacement per direction per species (default for hbn: matched to the "
        "harmonic model at the temperature)",
        unit="Å",
        default_factory=dict,
    )
    scan_rotation_deg: float = _f(
        "true rotation of the scan axes relative to the detector (conventions §2 sign); the "
        "file records --recorded-scan-rotation-deg",
        0.0,
        unit="°",
    )
    recorded_scan_rotation_deg: float = _f(
        "scan rotation the file states (a calibration error when it differs from the true one)",
        0.0,
        unit="°",
    )
    recorded_defocus_A: float | None = _f(
        "defocus the file states (default: the true --defocus-A)", None, unit="Å"
    )
    detector_transposed: bool = _f(
        "store the patterns with ky and kx swapped (a transposed detector) without saying so",
        False,
    )
    position_jitter_A: float = _f(
        "rms random error of each scan position per axis (zero mean; seeded)", 0.0, unit="Å"
    )
    drift_A: float = _f(
        "total linear drift of the scan positions from the first to the last point", 0.0, unit="Å"
    )
    drift_angle_deg: float = _f("direction of the drift, from +x towards +y", 30.0, unit="°")

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> InputError:
            return InputError(f"simulation parameter '{name}' {why}, got {getattr(self, name)!r}")

        if self.structure not in STRUCTURES:
            raise bad("structure", f"must be one of {STRUCTURES}")
        if self.thermal_model not in THERMAL_MODELS:
            raise bad("thermal_model", f"must be one of {THERMAL_MODELS}")
        for name in (
            "energy_eV",
            "convergence_semiangle_mrad",
            "temperature_K",
            "slice_thickness_A",
            "lattice_constant_A",
        ):
            v = getattr(self, name)
            if name == "lattice_constant_A" and v is None:
                continue
            if not (_is_real(v) and math.isfinite(v) and v > 0):
                raise bad(name, "must be a finite positive number")
        for name in (
            "defocus_A",
            "k_nn",
            "t_nn",
            "k_nnn",
            "t_nnn",
            "psc_fwhm_A",
            "scan_rotation_deg",
            "recorded_scan_rotation_deg",
            "position_jitter_A",
            "drift_A",
            "drift_angle_deg",
        ):
            v = getattr(self, name)
            if not (_is_real(v) and math.isfinite(v)):
                raise bad(name, "must be a finite number")
        for name in (
            "k_nn",
            "t_nn",
            "k_nnn",
            "t_nnn",
            "psc_fwhm_A",
            "position_jitter_A",
            "drift_A",
        ):
            if getattr(self, name) < 0:
                raise bad(name, "must be ≥ 0")
        if self.recorded_defocus_A is not None and not (
            _is_real(self.recorded_defocus_A) and math.isfinite(self.recorded_defocus_A)
        ):
            raise bad("recorded_defocus_A", "must be a finite number or None")
        if not isinstance(self.detector_transposed, (bool, np.bool_)):
            raise bad("detector_transposed", "must be true or false")
        object.__setattr__(self, "detector_transposed", bool(self.detector_transposed))
        for name in ("n_configs", "oversampling", "truth_slices", "thickness_cells", "seed"):
            v = getattr(self, name)
            lowest = 0 if name == "seed" else 1
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lowest:
                raise bad(name, f"must be an integer ≥ {lowest}")
        for name, positive_int in (
            ("scan_shape", True),
            ("detector_shape", True),
            ("cells", True),
            ("scan_step_A", False),
            ("scan_start_A", False),
        ):
            v = getattr(self, name)
            try:
                arr = np.asarray(v, dtype=float).ravel()
            except (TypeError, ValueError):
                raise bad(name, "must be a (y, x) pair of numbers") from None
            if arr.size == 1:
                arr = np.repeat(arr, 2)
            if arr.size != 2 or not np.all(np.isfinite(arr)):
                raise bad(name, "must be a (y, x) pair of finite numbers")
            if positive_int:
                if np.any(arr < 1) or np.any(arr != np.round(arr)):
                    raise bad(name, "must be a pair of integers ≥ 1")
                object.__setattr__(self, name, (int(arr[0]), int(arr[1])))
            else:
                if name == "scan_step_A" and np.any(arr <= 0):
                    raise bad(name, "must be positive")
                object.__setattr__(self, name, (float(arr[0]), float(arr[1])))
        if min(self.detector_shape) < 8:
            raise bad("detector_shape", "must be at least 8 × 8 pixels")
        if self.dose_e_per_A2 is not None and not (
            _is_real(self.dose_e_per_A2)
            and math.isfinite(self.dose_e_per_A2)
            and self.dose_e_per_A2 > 0
        ):
            raise bad("dose_e_per_A2", "must be a positive number of e/Å² or None")
        if self.structure == "hbn" and self.thickness_cells != 1:
            raise bad("thickness_cells", "must be 1 for the hbn monolayer")
        if self.thermal_model == "static" and self.n_configs != 1:
            log.info("static model: %d identical configurations requested", self.n_configs)
        for name in ("masses_amu", "einstein_rms_A"):
            d = dict(getattr(self, name))
            for k, v in d.items():
                if not isinstance(k, str) or not (
                    _is_real(v)
                    and math.isfinite(v)
                    and v >= (0 if name == "einstein_rms_A" else 1e-9)
                ):
                    raise InputError(
                        f"simulation parameter '{name}' must map species to "
                        f"{'non-negative' if name == 'einstein_rms_A' else 'positive'} numbers, "
                        f"got {k!r}: {v!r}"
                    )
            object.__setattr__(self, name, {k: float(v) for k, v in d.items()})
        if self.thermal_model == "correlated" and self.structure != "hbn":
            raise InputError(
                f"simulation parameter 'thermal_model': the correlated (harmonic) model exists for "
                f"the hbn structure only, got structure {self.structure!r}"
            )
        if self.thermal_model == "einstein" and self.structure != "hbn" and not self.einstein_rms_A:
            raise InputError(
                "simulation parameter 'einstein_rms_A' is required for the einstein model of "
                f"{self.structure!r} (e.g. --einstein-rms-A Si=0.077 for Si at 300 K)"
            )

    # ---------------------------------------------------------------- derived quantities
    @property
    def lattice_constant(self) -> float:
        """The lattice constant in use (Å): the given one or the structure's standard value."""
        if self.lattice_constant_A is not None:
            return float(self.lattice_constant_A)
        return LATTICE_CONSTANTS_A[self.structure]

    @property
    def wavelength_A(self) -> float:
        """Relativistic electron wavelength (Å)."""
        from caviar_napari.core.optics import wavelength_A

        return float(wavelength_A(self.energy_eV))

    def to_json(self) -> str:
        """The parameters as a JSON object (recorded in the output file)."""
        values = asdict(self)
        values["lattice_constant_A"] = self.lattice_constant
        return json.dumps(values, sort_keys=True)


def _preset_table() -> dict[str, Callable[[], SimulationConfig]]:
    hbn = {
        "structure": "hbn",
        "energy_eV": 60e3,
        "convergence_semiangle_mrad": 35.0,
        "slice_thickness_A": MONOLAYER_BOX_A,  # the monolayer in one slice
    }
    return {
        "hbn-static": lambda: SimulationConfig(
            preset="hbn-static", thermal_model="static", n_configs=1, **hbn
        ),
        "hbn-einstein": lambda: SimulationConfig(
            preset="hbn-einstein", thermal_model="einstein", n_configs=10, **hbn
        ),
        "hbn-correlated": lambda: SimulationConfig(
            preset="hbn-correlated", thermal_model="correlated", n_configs=10, **hbn
        ),
        "hbn-correlated-psc": lambda: SimulationConfig(
            preset="hbn-correlated-psc",
            thermal_model="correlated",
            n_configs=10,
            psc_fwhm_A=0.47,
            **hbn,
        ),
        "si110-static": lambda: SimulationConfig(
            preset="si110-static",
            structure="si110",
            thermal_model="static",
            n_configs=1,
            energy_eV=200e3,
            convergence_semiangle_mrad=30.0,
            cells=(5, 3),
            thickness_cells=12,
            detector_shape=(96, 80),
            slice_thickness_A=5.431 / math.sqrt(2.0) / 2.0,
            truth_slices=6,
            scan_shape=(16, 16),
            scan_step_A=(0.4, 0.4),
        ),
    }


#: Preset names (fixed by issue 3) → factory of their default :class:`SimulationConfig`.
PRESETS: Mapping[str, Callable[[], SimulationConfig]] = _preset_table()


def preset_config(name: str, **overrides: Any) -> SimulationConfig:
    """The configuration of preset ``name`` with any field overridden.

    Raises
    ------
    InputError
        Unknown preset or parameter name, or an invalid value (named in the message).
    """
    if name not in PRESETS:
        raise InputError(f"unknown simulation preset {name!r}; known: {sorted(PRESETS)}")
    names = {f.name for f in fields(SimulationConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise InputError(f"unknown simulation parameter(s) {unknown}; known: {sorted(names)}")
    return replace(PRESETS[name](), **overrides)


# -------------------------------------------------------------------------------- structures
@dataclass(frozen=True)
class Structure:
    """Ideal structure in the simulation box (box frame, before the scan-frame shift).

    Attributes
    ----------
    positions_A
        ``(atom, 3)`` ideal positions ``(y, x, z)`` in Å, inside the box.
    species
        ``(atom,)`` element symbols.
    cell_index
        ``(atom, 2)`` int ``(l1, l2)`` with ``positions[:, :2] = l @ lattice_vectors + basis``.
    basis_index
        ``(atom,)`` int.
    lattice_vectors_A
        ``(2, 2)`` rows a1, a2 as ``(y, x)``.
    box_A
        ``(Ly, Lx, Lz)`` box edges in Å.
    supercell
        The harmonic supercell (hbn) or None.
    atom_map
        ``(atom,)`` index of the harmonic supercell atom each atom is an image of (hbn) or None.
    """

    positions_A: np.ndarray
    species: np.ndarray
    cell_index: np.ndarray
    basis_index: np.ndarray
    lattice_vectors_A: np.ndarray
    box_A: tuple[float, float, float]
    supercell: Supercell | None = None
    atom_map: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.positions_A.shape[0])


def _masses(config: SimulationConfig, species: tuple[str, ...]) -> dict[str, float]:
    return {s: float(config.masses_amu.get(s, standard_mass_amu(s))) for s in species}


def _hbn_structure(config: SimulationConfig) -> Structure:
    a = config.lattice_constant
    ny, nx = config.cells
    masses = _masses(config, ("B", "N"))
    lattice = HarmonicLattice.honeycomb(
        a_A=a,
        species=("B", "N"),
        masses_amu=[masses["B"], masses["N"]],
        k_nn=config.k_nn,
        k_nnn=config.k_nnn,
        t_nn=config.t_nn,
        t_nnn=config.t_nnn,
    )
    L1, L2 = math.gcd(nx, ny), 2 * ny
    sc = lattice.supercell(L1, L2)
    box = (ny * a * math.sqrt(3.0), nx * a, MONOLAYER_BOX_A)
    # all atoms of the box: (nx / L1) periodic copies of the supercell along a1
    copies = nx // L1
    base = sc.positions_A  # (n_sc, 2)
    shift = np.arange(copies)[:, None, None] * (L1 * lattice.lattice_vectors_A[0])[None, None, :]
    pos = (base[None] + shift).reshape(-1, 2)
    atom_map = np.tile(np.arange(sc.n_atoms), copies)
    basis_index = sc.basis_index[atom_map]
    pos = np.mod(pos, np.array(box[:2]))
    pos[np.isclose(pos, np.array(box[:2]), atol=1e-9)] = 0.0
    A = lattice.lattice_vectors_A
    cell = np.rint((pos - lattice.basis_A[basis_index]) @ np.linalg.inv(A)).astype(int)
    if not np.allclose(cell @ A + lattice.basis_A[basis_index], pos, atol=1e-8):
        raise InputError(f"internal: hbn box {config.cells} is not commensurate with the lattice")
    if np.unique(np.round(pos, 6), axis=0).shape[0] != pos.shape[0]:
        raise InputError(f"internal: hbn box {config.cells} has overlapping atoms")
    xyz = np.column_stack([pos, np.full(pos.shape[0], box[2] / 2.0)])
    return Structure(
        positions_A=xyz,
        species=np.asarray(lattice.species, dtype=str)[basis_index],
        cell_index=cell,
        basis_index=basis_index,
        lattice_vectors_A=np.array(A),
        box_A=box,
        supercell=sc,
        atom_map=atom_map,
    )


#: Diamond-cubic Si: fractional positions in the conventional cell.
_DIAMOND_FRAC = np.array(
    [
        [0, 0, 0],
        [0, 0.5, 0.5],
        [0.5, 0, 0.5],
        [0.5, 0.5, 0],
        [0.25, 0.25, 0.25],
        [0.25, 0.75, 0.75],
        [0.75, 0.25, 0.75],
        [0.75, 0.75, 0.25],
    ]
)


def _si110_structure(config: SimulationConfig) -> Structure:
    a = config.lattice_constant
    h = a / math.sqrt(2.0)
    ny, nx = config.cells
    nz = config.thickness_cells
    # conventional cell, replicated so that one orthogonal [110] cell is covered, then rotated:
    # y' = (X − Y)/√2, x' = Z, z' = (X + Y)/√2 in the cubic frame (X, Y, Z)
    rep = np.stack(np.meshgrid(np.arange(2), np.arange(2), np.arange(1), indexing="ij"), -1)
    cart = ((_DIAMOND_FRAC[None] + rep.reshape(-1, 1, 3)) * a).reshape(-1, 3)
    y = (cart[:, 0] - cart[:, 1]) / math.sqrt(2.0)
    z = (cart[:, 0] + cart[:, 1]) / math.sqrt(2.0)
    x = cart[:, 2]
    cell_pos = np.mod(np.column_stack([y, x, z]), [h, a, h])
    cell_pos[np.isclose(cell_pos, [h, a, h], atol=1e-9)] = 0.0
    basis = np.unique(np.round(cell_pos, 9), axis=0)
    if basis.shape[0] != 4:
        raise InputError(f"internal: Si [110] cell has {basis.shape[0]} atoms, expected 4")
    basis = basis[np.lexsort((basis[:, 1], basis[:, 0], basis[:, 2]))]  # by z, then y, then x
    iy, ix, iz, k = np.meshgrid(
        np.arange(ny), np.arange(nx), np.arange(nz), np.arange(4), indexing="ij"
    )
    iy, ix, iz, k = iy.ravel(), ix.ravel(), iz.ravel(), k.ravel()
    # atomic layers sit every h/2 along the beam; shifting them by h/8 keeps every atom inside
    # a slice (never on a boundary) for slice thicknesses h/4, h/2, h, 2h, ...
    xyz = basis[k] + np.column_stack([iy * h, ix * a, iz * h + h / 8.0])
    return Structure(
        positions_A=xyz,
        species=np.full(xyz.shape[0], "Si"),
        cell_index=np.column_stack([iy, ix]),
        basis_index=k + 4 * iz,
        lattice_vectors_A=np.array([[h, 0.0], [0.0, a]]),
        box_A=(ny * h, nx * a, nz * h),
    )


def build_structure(config: SimulationConfig) -> Structure:
    """Build the ideal structure of ``config`` in its simulation box."""
    if config.structure == "hbn":
        return _hbn_structure(config)
    return _si110_structure(config)


def _random_streams(config: SimulationConfig) -> tuple[np.random.Generator, np.random.Generator]:
    """The two independent streams of a simulation: thermal configurations, then noise."""
    thermal, noise = np.random.SeedSequence(config.seed).spawn(2)
    return np.random.default_rng(thermal), np.random.default_rng(noise)


def thermal_ensemble(config: SimulationConfig, structure: Structure | None = None) -> Ensemble:
    """The atom configurations of ``config`` (exactly those :func:`simulate` uses; no abTEM).

    Parameters
    ----------
    config
        Validated parameters.
    structure
        Its ideal structure (default: :func:`build_structure` of ``config``).

    Returns
    -------
    Ensemble
        Displacements ``(config, atom, 3)`` from the ideal sites (Å) and the model Green's
        tensor.  The same seed gives the same displacements on every machine, BLAS and thread
        count, to within rounding (the samplers use no eigenvector; tests pin them to 1e-9 Å).
    """
    if structure is None:
        structure = build_structure(config)
    return _ensemble(config, structure, _random_streams(config)[0])


def _ensemble(config: SimulationConfig, structure: Structure, rng: np.random.Generator) -> Ensemble:
    if config.thermal_model == "static":
        return static_ensemble(structure.n_atoms, config.n_configs)
    if config.thermal_model == "einstein":
        rms = dict(config.einstein_rms_A)
        if structure.supercell is not None:
            matched = matched_einstein_rms_A(structure.supercell, config.temperature_K)
            rms = {**matched, **rms}
        return einstein_ensemble(structure.species, rms, config.n_configs, rng)
    assert structure.supercell is not None  # validated in SimulationConfig
    return correlated_ensemble(
        structure.supercell, config.temperature_K, config.n_configs, rng, structure.atom_map
    )


def poisson_counts(mean: ArrayLike, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts with the given means, by inversion: one uniform number per pixel.

    ``k = F⁻¹(v; mean)`` with ``v`` uniform in (0, 1) and ``F`` the Poisson distribution
    function.  Unlike a rejection sampler, which draws a variable number of random numbers per
    pixel, this consumes exactly one per pixel, so a last-bit difference in one mean (FFT
    rounding on another machine) can change at most that pixel's count, by one, and never shifts
    the stream for the others.

    Parameters
    ----------
    mean
        Expected counts (≥ 0), any shape.
    rng
        The noise stream.

    Returns
    -------
    numpy.ndarray
        float64 counts, the shape of ``mean``.
    """
    from scipy import stats

    lam = np.asarray(mean, dtype=np.float64)
    v = rng.random(lam.shape)
    v = np.where(v > 0.0, v, 0.5 * np.finfo(np.float64).eps)  # (0, 1): F⁻¹(0) is −1
    counts = stats.poisson.ppf(v, lam)
    return np.where(lam > 0, counts, 0.0).astype(np.float64)


def library_versions() -> dict[str, str]:
    """Versions of the software that made a simulated dataset (recorded in ``ground_truth``).

    Returns
    -------
    dict
        ``{"python": …, "numpy": …, "scipy": …, "h5py": …, "abtem": …, "ase": …,
        "caviar_napari": …}``; a library that is not installed is recorded as
        ``"not installed"``.
    """
    import importlib
    import platform

    versions = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "h5py", "abtem", "ase"):
        try:
            versions[name] = str(importlib.import_module(name).__version__)
        except ImportError:  # pragma: no cover - all are dependencies of a simulation
            versions[name] = "not installed"
    versions["caviar_napari"] = __version__
    return versions


# ------------------------------------------------------------------------------ ground truth
@dataclass(frozen=True)
class GroundTruth:
    """Everything known about a simulated dataset (schema: docs/ARCHITECTURE.md).

    Positions are in the scan frame (Å, ``(y, x)``); Green's tensors in-plane (Å², dof
    ``2 i + a``); the phase is ``σ V_projected`` per slice on the reconstruction grid, pixel
    ``[iy, ix]`` at ``phase_origin_A + (iy dy, ix dx)``.
    """

    positions_A: np.ndarray
    positions_z_A: np.ndarray
    mean_positions_A: np.ndarray
    species: np.ndarray
    cell_index: np.ndarray
    basis_index: np.ndarray
    lattice_vectors_A: np.ndarray
    green_model_A2: np.ndarray
    green_realised_A2: np.ndarray
    probe: np.ndarray
    phase: np.ndarray
    phase_configs: np.ndarray
    phase_origin_A: tuple[float, float]
    phase_pixel_size_A: tuple[float, float]
    slice_thickness_A: np.ndarray
    q_frac: np.ndarray | None
    frequencies_THz: np.ndarray | None
    temperature_K: float
    masses_amu: dict[str, float]
    thermal_model: str
    preset: str
    box_A: tuple[float, float, float]
    scan_start_A: tuple[float, float]
    psc_fwhm_A: float
    dose_e_per_A2: float | None
    config_json: str
    scan_positions_A: np.ndarray | None = None
    scan_rotation_deg: float = 0.0
    detector_transposed: bool = False
    versions: dict[str, str] = field(default_factory=library_versions)


@dataclass(frozen=True)
class SimulationResult:
    """A simulated dataset (conventions §6 input) and its ground truth."""

    dataset: STEMDataset
    truth: GroundTruth


def _abtem() -> Any:
    try:
        import abtem
    except ImportError as exc:  # pragma: no cover - abTEM is a test dependency
        raise InputError(
            "simulation needs abTEM: install the 'sim' extra (pip install caviar-napari[sim])"
        ) from exc
    return abtem


def _ase_atoms(symbols: np.ndarray, positions_yxz: np.ndarray, box: tuple[float, float, float]):
    from ase import Atoms

    xyz = positions_yxz[:, [1, 0, 2]]  # ASE/abTEM order (x, y, z)
    return Atoms(symbols=list(symbols), positions=xyz, cell=[box[1], box[0], box[2]], pbc=True)


def scan_positions_A(config: SimulationConfig) -> np.ndarray:
    """The true probe positions of ``config`` in the object (detector) frame, Å.

    The nominal raster ``(iy dy, ix dx)`` (what the file states), plus a linear drift of total
    size ``drift_A`` along ``drift_angle_deg`` (from 0 at the first scan point to ``drift_A``
    at the last, in raster order), plus a zero-mean Gaussian jitter of rms
    ``position_jitter_A`` per axis (its own random stream of the seed), all in the scan frame;
    then turned into the detector frame by the true ``scan_rotation_deg`` (conventions §2).
    The frame's origin is the first nominal scan point (the ground truth's frame).

    Returns
    -------
    numpy.ndarray
        ``(Sy, Sx, 2)`` float64 ``(y, x)``.
    """
    from caviar_napari.data.dataset import regular_positions_A, rotate_positions_A

    sy, sx = config.scan_shape
    pos = regular_positions_A((sy, sx), config.scan_step_A)
    if config.drift_A > 0:
        t = np.arange(sy * sx, dtype=np.float64).reshape(sy, sx) / max(sy * sx - 1, 1)
        phi = math.radians(config.drift_angle_deg)
        direction = np.array([math.sin(phi), math.cos(phi)])
        pos = pos + config.drift_A * t[..., None] * direction
    if config.position_jitter_A > 0:
        rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(3)[2])
        jitter = rng.standard_normal((sy, sx, 2)) * config.position_jitter_A
        pos = pos + (jitter - jitter.mean(axis=(0, 1)))
    return rotate_positions_A(pos, config.scan_rotation_deg)


def _phase_window(
    config: SimulationConfig, pixel: tuple[float, float], positions_A: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Box pixel indices covering the scan positions (object frame) plus the probe window,
    and the window's origin."""
    out_idx = []
    origin = []
    for ax in range(2):
        d, k = pixel[ax], config.detector_shape[ax]
        start = config.scan_start_A[ax]
        lo, hi = float(positions_A[..., ax].min()), float(positions_A[..., ax].max())
        n0 = math.floor((start + lo - (k // 2) * d) / d + 1e-9)
        org = n0 * d - start  # scan frame
        end = hi + (k - k // 2) * d
        n = int(math.ceil((end - org) / d - 1e-9)) + 1
        out_idx.append(np.mod(n0 + np.arange(n), k))
        origin.append(org)
    return out_idx[0], out_idx[1], (origin[0], origin[1])


def fourier_crop(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Real ``values`` ``(…, N0, N1)`` sampled on a fine periodic grid, band-limited to the
    frequencies of a coarser ``shape`` grid of the same box and sampled on it (pixel ``[0, 0]``
    at the same point): the Fourier coefficients ``−n//2 … n − n//2 − 1`` of each axis."""
    v = np.asarray(values)
    spec = np.fft.fft2(v, axes=(-2, -1))
    rows, cols = (
        np.mod(np.fft.fftfreq(n, 1.0 / n).round().astype(int), n_fine)
        for n, n_fine in zip(shape, v.shape[-2:])
    )
    coarse = spec[..., rows[:, None], cols[None, :]]
    ratio = (shape[0] * shape[1]) / (v.shape[-2] * v.shape[-1])
    return np.fft.ifft2(coarse, axes=(-2, -1)).real * ratio


def simulate(config: SimulationConfig) -> SimulationResult:
    """Simulate the 4D-STEM dataset and ground truth of ``config`` with abTEM.

    Parameters
    ----------
    config
        Validated parameters (see :func:`preset_config`).

    Returns
    -------
    SimulationResult
        ``dataset.intensities`` ``(Sy, Sx, Ky, Kx)`` float32 and the :class:`GroundTruth`.
    """
    abtem = _abtem()
    from abtem.core.energy import energy2sigma

    rng_thermal, rng_noise = _random_streams(config)
    structure = build_structure(config)
    ensemble = _ensemble(config, structure, rng_thermal)
    box = structure.box_A
    ky, kx = config.detector_shape
    pixel = (box[0] / ky, box[1] / kx)
    lam = config.wavelength_A
    angular = (lam / box[0] * 1e3, lam / box[1] * 1e3)
    os_ = config.oversampling
    conf_pos = structure.positions_A[None] + ensemble.displacements_A  # (config, atom, 3)
    atoms_list = [_ase_atoms(structure.species, p, box) for p in conf_pos]

    # scan, box frame, raster order; a finite source adds, around every scan point, the probe
    # positions of its Gauss–Hermite rule (a continuous Gaussian source, simulate.psc)
    sy, sx = config.scan_shape
    true_positions = scan_positions_A(config)  # object frame, (0, 0) = first nominal point
    scan_box = (np.asarray(config.scan_start_A) + true_positions).reshape(-1, 2)
    offsets, weights = source_offsets_A(config.psc_fwhm_A)
    scan_box = (scan_box[:, None, :] + offsets[None, :, :]).reshape(-1, 2)

    n_slices = max(1, int(math.ceil(box[2] / config.slice_thickness_A - 1e-9)))
    log.info(
        "simulating %s: %d configuration(s) × %d positions × %d slice(s) on a %d × %d grid",
        config.preset,
        len(atoms_list),
        scan_box.shape[0],
        n_slices,
        ky * os_,
        kx * os_,
    )
    settings = {
        "diagnostics.progress_bar": False,
        "precision": "float32",
        "fftw.planning_effort": "FFTW_ESTIMATE",
    }
    with abtem.config.set(settings):
        potential = abtem.Potential(
            abtem.AtomsEnsemble(atoms_list, ensemble_mean=True),
            gpts=(kx * os_, ky * os_),
            slice_thickness=box[2] / n_slices,
            projection="infinite",
            parametrization="lobato",
        )
        probe = abtem.Probe(
            energy=config.energy_eV,
            semiangle_cutoff=config.convergence_semiangle_mrad,
            defocus=config.defocus_A,
        )
        measurement = probe.scan(
            potential,
            scan=abtem.CustomScan(scan_box[:, ::-1].copy()),
            detectors=abtem.PixelatedDetector(max_angle=None),
        ).compute()
        arr = np.asarray(measurement.array, dtype=np.float64)  # (n, Nx, Ny), fft-shifted
        if not measurement.fftshift:
            arr = np.fft.fftshift(arr, axes=(-2, -1))
        nxs, nys = arr.shape[-2:]
        cx, cy = nxs // 2 - kx // 2, nys // 2 - ky // 2
        arr = arr[:, cx : cx + kx, cy : cy + ky].transpose(0, 2, 1)

        # ground truth on the reconstruction grid: the potential of the simulation's own grid,
        # band-limited to the reconstruction grid (abTEM's potential computed directly on the
        # coarse grid is not that: it correlates only 0.988 with it on hBN, docs/benchmarks)
        truth_dz = box[2] / config.truth_slices
        truth_potential = abtem.Potential(
            abtem.AtomsEnsemble(atoms_list, ensemble_mean=False),
            gpts=(kx * os_, ky * os_),
            slice_thickness=(truth_dz,) * config.truth_slices,
            projection="infinite",
            parametrization="lobato",
        )
        v_configs = np.asarray(truth_potential.build().compute().array)
        mean_atoms = _ase_atoms(structure.species, structure.positions_A, box)
        v_mean = np.asarray(
            abtem.Potential(
                mean_atoms,
                gpts=(kx * os_, ky * os_),
                slice_thickness=(truth_dz,) * config.truth_slices,
                projection="infinite",
                parametrization="lobato",
            )
            .build()
            .compute()
            .array
        )
        true_probe = (
            abtem.Probe(
                energy=config.energy_eV,
                semiangle_cutoff=config.convergence_semiangle_mrad,
                defocus=config.defocus_A,
                gpts=(kx, ky),
                extent=(box[1], box[0]),
            )
            .build()
            .compute()
            .array
        )
    intensities = source_average(arr, weights).reshape(sy, sx, ky, kx)
    scale = 1.0
    if config.dose_e_per_A2 is not None:
        scale = config.dose_e_per_A2 * config.scan_step_A[0] * config.scan_step_A[1]
        intensities = poisson_counts(np.clip(intensities, 0, None) * scale, rng_noise)
    else:
        intensities = np.clip(intensities, 0, None)

    sigma = energy2sigma(config.energy_eV)
    v_configs = fourier_crop(v_configs, (kx, ky)).reshape(
        len(atoms_list), config.truth_slices, kx, ky
    )
    v_mean = fourier_crop(v_mean, (kx, ky)).reshape(config.truth_slices, kx, ky)
    wy, wx, origin = _phase_window(config, pixel, true_positions)
    phase_configs = (sigma * v_configs).transpose(0, 1, 3, 2)[..., wy[:, None], wx[None, :]]
    phase = (sigma * v_mean).transpose(0, 2, 1)[..., wy[:, None], wx[None, :]]
    psi = np.asarray(true_probe).reshape(kx, ky).T
    psi = psi * np.sqrt(scale / np.sum(np.abs(psi) ** 2))

    start = np.asarray(config.scan_start_A)
    positions = conf_pos[:, :, :2] - start
    frequencies = q_frac = None
    if structure.supercell is not None and config.thermal_model == "correlated":
        q_frac = structure.supercell.q_frac
        frequencies = structure.supercell.lattice.frequencies_THz(q_frac)
    species_set = tuple(sorted(set(structure.species.tolist())))
    truth = GroundTruth(
        positions_A=positions,
        positions_z_A=conf_pos[:, :, 2],
        mean_positions_A=structure.positions_A[:, :2] - start,
        species=structure.species,
        cell_index=structure.cell_index,
        basis_index=structure.basis_index,
        lattice_vectors_A=structure.lattice_vectors_A,
        green_model_A2=ensemble.green_model_A2,
        green_realised_A2=ensemble.green_realised_A2,
        probe=psi[None].astype(np.complex64),
        phase=phase.astype(np.float32),
        phase_configs=phase_configs.astype(np.float32),
        phase_origin_A=origin,
        phase_pixel_size_A=pixel,
        slice_thickness_A=np.full(config.truth_slices, truth_dz),
        q_frac=q_frac,
        frequencies_THz=frequencies,
        temperature_K=config.temperature_K,
        masses_amu=_masses(config, species_set),
        thermal_model=config.thermal_model,
        preset=config.preset,
        box_A=box,
        scan_start_A=config.scan_start_A,
        psc_fwhm_A=config.psc_fwhm_A,
        dose_e_per_A2=config.dose_e_per_A2,
        config_json=config.to_json(),
        scan_positions_A=true_positions,
        scan_rotation_deg=config.scan_rotation_deg,
        detector_transposed=config.detector_transposed,
    )
    if config.detector_transposed:  # stored (kx, ky): the file does not say so
        intensities = intensities.transpose(0, 1, 3, 2)
        angular = (angular[1], angular[0])
    dataset = STEMDataset(
        intensities=np.ascontiguousarray(intensities, dtype=np.float32),
        energy_eV=config.energy_eV,
        convergence_semiangle_mrad=config.convergence_semiangle_mrad,
        scan_step_A=config.scan_step_A,
        angular_sampling_mrad=angular,
        defocus_A=(
            config.defocus_A if config.recorded_defocus_A is None else config.recorded_defocus_A
        ),
        scan_rotation_deg=config.recorded_scan_rotation_deg,
        source=f"caviar simulate {config.preset}",
    )
    return SimulationResult(dataset=dataset, truth=truth)


def _write_truth(group: Any, truth: GroundTruth, command: str) -> None:
    """Write ``truth`` into the open HDF5 group ``group`` (ARCHITECTURE 'Ground truth')."""
    import h5py

    gz = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    group.create_dataset("positions_A", data=truth.positions_A, **gz)
    group.create_dataset("positions_z_A", data=truth.positions_z_A, **gz)
    group.create_dataset("mean_positions_A", data=truth.mean_positions_A)
    group.create_dataset(
        "species", data=np.asarray(truth.species, dtype=object), dtype=h5py.string_dtype()
    )
    group.create_dataset("cell_index", data=truth.cell_index.astype(np.int64))
    group.create_dataset("basis_index", data=truth.basis_index.astype(np.int64))
    group.create_dataset("green_model_A2", data=truth.green_model_A2, **gz)
    group.create_dataset("green_realised_A2", data=truth.green_realised_A2, **gz)
    group.create_dataset("probe", data=truth.probe)
    group.create_dataset("phase", data=truth.phase, **gz)
    group.create_dataset("phase_configs", data=truth.phase_configs, **gz)
    if truth.q_frac is not None and truth.frequencies_THz is not None:
        disp = group.create_group("dispersion")
        disp.create_dataset("q_frac", data=truth.q_frac)
        disp.create_dataset("frequencies_THz", data=truth.frequencies_THz)
    a = group.attrs
    a["lattice_vectors_A"] = truth.lattice_vectors_A
    a["phase_origin_A"] = np.asarray(truth.phase_origin_A)
    a["phase_pixel_size_A"] = np.asarray(truth.phase_pixel_size_A)
    a["slice_thickness_A"] = truth.slice_thickness_A
    a["temperature_K"] = float(truth.temperature_K)
    a["masses_amu"] = json.dumps(truth.masses_amu, sort_keys=True)
    a["thermal_model"] = truth.thermal_model
    a["preset"] = truth.preset
    a["box_A"] = np.asarray(truth.box_A)
    a["scan_start_A"] = np.asarray(truth.scan_start_A)
    a["psc_fwhm_A"] = float(truth.psc_fwhm_A)
    a["dose_e_per_A2"] = float(truth.dose_e_per_A2) if truth.dose_e_per_A2 is not None else np.nan
    if truth.scan_positions_A is not None:
        group.create_dataset("scan_positions_A", data=truth.scan_positions_A)
    a["scan_rotation_deg"] = float(truth.scan_rotation_deg)
    a["detector_transposed"] = bool(truth.detector_transposed)
    a["parameters"] = truth.config_json
    a["command"] = command
    a["frame"] = (
        "scan frame: (0, 0) is the first scan point; positions (y, x) in Å; with a scan "
        "rotation, the detector-aligned (object) frame of conventions §2; scan_positions_A are "
        "the true probe positions in it (the file states the nominal raster)"
    )
    a["intensity_model"] = (
        "mean over configurations of abTEM multislice patterns (full far field sums to 1), then "
        "Gaussian PSC average, then Poisson noise with mean dose*dy*dx*I when a dose is given"
    )
    for name, version in truth.versions.items():
        a[f"{name}_version"] = version


def write_simulation(path: Any, result: SimulationResult, command: str = "") -> None:
    """Write a simulated dataset and its ``ground_truth`` group to ``path`` atomically.

    Parameters
    ----------
    path
        Output HDF5 file (conventions §6 4D-STEM schema plus ``ground_truth``).
    result
        The output of :func:`simulate`.
    command
        The command line that made it (recorded as the attribute ``ground_truth.command``).
    """
    truth = result.truth

    def extra(f: Any) -> None:
        _write_truth(f.create_group("ground_truth"), truth, command)

    write_stem_h5(path, result.dataset, extra=extra)


def pixel_size_A(config: SimulationConfig) -> tuple[float, float]:
    """Reconstruction pixel ``(dy, dx)`` = box / detector pixels (Å)."""
    box = build_structure(config).box_A
    return as_pair((box[0] / config.detector_shape[0], box[1] / config.detector_shape[1]))
