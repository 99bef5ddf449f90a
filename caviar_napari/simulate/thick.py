"""Thick specimens with known truth (issue 16): hBN bilayers and correlated Si [110].

Geometry of the bilayers
------------------------
Two hBN monolayers (:meth:`HarmonicLattice.honeycomb` lattice, ``a = 2.504`` Å) in one orthogonal
periodic box, separated along the beam by ``gap`` Å.  The *upper* layer meets the beam first.
Each layer is a :class:`Layer`: its atoms, its own lattice vectors and origin (the lab position
of cell ``(0, 0)``'s basis atom 0), its cell and basis indices in that frame, and its own
harmonic model (:class:`~caviar_napari.simulate.box_harmonic.BoxHarmonicModel`, periodic in the
box), so that the two layers vibrate independently with their own correlation lengths.

* ``hbn-bilayer-gap``: both layers in the standard orientation (``a1`` along x), the lower one
  shifted laterally by ``shift`` so that no projected atom of one layer sits on one of the
  other (:func:`max_separation_shift_A` gives the shift that maximises the smallest projected
  distance: ``a / 3`` along a1, i.e. x, which keeps every atom 0.83 Å from the other layer's).
  The box is ``cells = (ny, nx)`` orthogonal cells of ``a√3 × a``, as for the monolayer presets.
* ``hbn-twisted-bilayer``: the lower layer turned by a commensurate angle.  For coprime
  ``(m, n)`` the vectors ``T = m b1 + n b2`` (upper layer) and ``T' = n b1 + m b2`` (lower layer;
  ``b1 = a1``, ``b2 = a1 + a2`` at 60°) have the same length ``L = a sqrt(m² + mn + n²)`` and make
  the angle θ with ``cos θ = (m² + 4mn + n²) / (2 (m² + mn + n²))``.  Turning each layer so that
  its ``T`` lies along x makes both periodic in the orthogonal box ``(√3 L ny, L nx)``: (1, 2)
  gives 21.79° (L = 6.62 Å), (2, 3) gives 13.17° (L = 10.91 Å, the default: the closest small
  cell to the paper's 11° bicrystal).  :func:`coincidence_cell` computes it.  Both layers have
  the same springs here (one material, as the paper's bicrystal), so their unit-cell-averaged
  correlations must agree, each in its own frame; their displacement fields are independent.

Depth of field
--------------
The depth of field of a probe of semi-angle α at wavelength λ is ``DOF = 2 λ / α²``
(:func:`depth_of_field_A`): 79.5 Å at 60 kV (λ = 0.0487 Å), 35 mrad.  It is also the best
depth resolution of a bright-field/ptychographic transfer: two beams of the aperture at angles
θ1, θ2 transfer the lateral frequency ``q = (θ2 − θ1)/λ`` with ``k_z = q (θ1 + θ2)/2``, so
``|k_z| ≤ q (2α − λq) / 2`` and ``Δz(q) = 2 / (q (2α − λq))``, smallest (``2λ/α²``) at ``q = α/λ``
(:func:`depth_resolution_A`).  The bilayer presets put the layers 1.5 × DOF apart (120 Å).

Simulation slices
-----------------
Each layer lies in the middle of a slab of ``MONOLAYER_BOX_A`` (4 Å) and the vacuum between the
slabs is one slice (Fresnel propagation through vacuum is exact for any thickness in the
paraxial model), so the multislice is: transmit the upper layer at z = 0, propagate the gap,
transmit the lower layer at z = gap, propagate 4 Å (:func:`layered_slice_thicknesses`).

Correlated Si [110]
-------------------
A 3D harmonic model of the diamond slab (periodic in y and x, free surfaces along the beam):
nearest-neighbour (a√3/4 = 2.352 Å) longitudinal and transverse springs and next-nearest-
neighbour (a/√2 = 3.840 Å) springs, sampled in 3D (displacements along z too).  The Green's
tensor of the truth is the in-plane ``(y, x)`` part of the exact 3D tensor, per atom
(:func:`in_plane_green`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.core.optics import wavelength_A
from caviar_napari.errors import InputError
from caviar_napari.simulate.box_harmonic import BoxHarmonicModel, in_plane_green, springs_from

__all__ = [
    "BILAYER",
    "LOWER_SPRINGS_DEFAULT",
    "SPRING_NAMES",
    "Layer",
    "coincidence_cell",
    "depth_of_field_A",
    "depth_resolution_A",
    "honeycomb_layer",
    "layered_slice_thicknesses",
    "layers_ensemble",
    "max_separation_shift_A",
    "si110_springs",
    "slab_ensemble",
    "twist_angle_deg",
]

#: Name of the layered structure (``SimulationConfig.structure``).
BILAYER = "hbn-bilayer"

#: The spring parameters of a layer, in the order of the honeycomb model.
SPRING_NAMES: tuple[str, ...] = ("k_nn", "t_nn", "k_nnn", "t_nnn")

#: Springs of the lower layer of the bilayer presets (eV/Å²): weaker nearest-neighbour and
#: stronger next-nearest-neighbour springs than the upper layer's (20, 6, 4, 0) give a shorter
#: correlation length — ρ_nn = +0.20 against +0.43 — at the same rms displacement (3.0 pm at
#: 300 K).
LOWER_SPRINGS_DEFAULT: Mapping[str, float] = MappingProxyType(
    {"k_nn": 3.0, "t_nn": 3.0, "k_nnn": 10.0, "t_nnn": 0.0}
)


def depth_of_field_A(energy_eV: float, convergence_semiangle_mrad: float) -> float:
    """Depth of field ``2 λ / α²`` (Å) of a probe of semi-angle α (mrad) at ``energy_eV``."""
    alpha = float(convergence_semiangle_mrad) * 1e-3
    if not alpha > 0:
        raise InputError(
            f"convergence semi-angle must be > 0 mrad, got {convergence_semiangle_mrad}"
        )
    return 2.0 * float(wavelength_A(energy_eV)) / alpha**2


def depth_resolution_A(
    q_invA: ArrayLike, energy_eV: float, convergence_semiangle_mrad: float
) -> np.ndarray:
    """Depth resolution ``Δz(q) = 2 / (q (2α − λq))`` (Å) of the lateral frequency q (1/Å).

    The largest ``k_z`` two beams inside the aperture transfer at lateral frequency ``q`` is
    ``q (2α − λq)/2`` (module docstring); ``Δz = 1 / k_z,max``.  Infinite where ``λq ≥ 2α``
    (no transfer).
    """
    lam = float(wavelength_A(energy_eV))
    alpha = float(convergence_semiangle_mrad) * 1e-3
    q = np.abs(np.asarray(q_invA, dtype=float))
    kz = q * (2 * alpha - lam * q) / 2.0
    with np.errstate(divide="ignore"):
        return np.where(kz > 0, 1.0 / np.where(kz > 0, kz, 1.0), np.inf)


# ------------------------------------------------------------------------------- layers
@dataclass(frozen=True, eq=False)
class Layer:
    """One monolayer of a layered specimen, with its own lattice frame and harmonic model.

    Attributes
    ----------
    name
        ``"upper"`` or ``"lower"`` (the beam meets the upper layer first).
    positions_A
        ``(atoms, 2)`` ideal positions ``(y, x)`` in the box, Å.
    z_A
        Height of the atom plane in the box (Å, along the beam from the entrance surface).
    species
        ``(atoms,)`` element symbols.
    lattice_vectors_A
        ``(2, 2)`` rows a1, a2 ``(y, x)`` of this layer (turned with it), Å.
    origin_A
        ``(2,)`` box position of cell ``(0, 0)``, basis atom 0.
    cell_index, basis_index
        Indices in this layer's own frame: ``positions = origin + l @ lattice + basis[κ]``
        modulo the box.
    rotation_deg
        Angle the layer is turned by from the standard honeycomb orientation (a1 along x),
        counter-clockwise from x towards y.
    springs
        ``{"k_nn": …, "t_nn": …, "k_nnn": …, "t_nnn": …}`` eV/Å².
    model
        Its harmonic model in the box.
    """

    name: str
    positions_A: np.ndarray
    z_A: float
    species: np.ndarray
    lattice_vectors_A: np.ndarray
    origin_A: np.ndarray
    cell_index: np.ndarray
    basis_index: np.ndarray
    rotation_deg: float
    springs: Mapping[str, float]
    model: BoxHarmonicModel

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.positions_A.shape[0])


def _rotation(angle_deg: float) -> np.ndarray:
    """``R`` acting on ``(y, x)`` column vectors: turn by the angle from x towards y."""
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    # (y, x) -> (y cos + x sin, x cos − y sin) turns x towards y
    return np.array([[c, s], [-s, c]])


def coincidence_cell(m: int, n: int, a_A: float) -> tuple[float, float, float, float]:
    """The commensurate twist ``(m, n)`` of a hexagonal lattice of constant ``a_A``.

    Returns
    -------
    length_A, twist_deg, upper_rotation_deg, lower_rotation_deg
        ``L = a sqrt(m² + mn + n²)``; θ (the lower layer relative to the upper one); and the
        angles each layer is turned by so that its coincidence vector ``T`` lies along x.
    """
    if (
        isinstance(m, bool)
        or isinstance(n, bool)
        or int(m) != m
        or int(n) != n
        or m < 0
        or n < 0
        or m + n == 0
    ):
        raise InputError(f"twist (m, n) must be non-negative integers, not both 0; got ({m}, {n})")
    m, n = int(m), int(n)
    if math.gcd(m, n) != 1:
        raise InputError(f"twist (m, n) = ({m}, {n}) must be coprime (else the cell repeats)")
    lat = HarmonicLattice.honeycomb(a_A=a_A)
    a1, a2 = lat.lattice_vectors_A
    b1, b2 = a1, a1 + a2  # 60° apart

    def angle(v: np.ndarray) -> float:
        return math.degrees(math.atan2(v[0], v[1]))  # from x towards y

    t_up, t_low = m * b1 + n * b2, n * b1 + m * b2
    length = float(np.hypot(*t_up))
    rot_up, rot_low = -angle(t_up), -angle(t_low)
    return length, rot_up - rot_low, rot_up, rot_low


def twist_angle_deg(m: int, n: int) -> float:
    """The twist angle θ of the commensurate pair ``(m, n)``, degrees."""
    return abs(coincidence_cell(m, n, 1.0)[1])


def max_separation_shift_A(a_A: float) -> np.ndarray:
    """A lateral shift ``(y, x)`` of a honeycomb layer that keeps its projected atoms furthest
    from those of the unshifted layer: ``a / 3`` along ``a1`` (x).

    Every atom of the shifted layer is then ``a / 3`` (0.83 Å for hBN) from the nearest atom of
    the other layer; no rigid shift does better (a grid search in the tests).
    """
    return np.array([0.0, a_A / 3.0])


def honeycomb_layer(
    name: str,
    *,
    a_A: float,
    box_yx_A: tuple[float, float],
    rotation_deg: float,
    shift_A: ArrayLike,
    z_A: float,
    springs: Mapping[str, float],
    masses_amu: Mapping[str, float],
    species: tuple[str, str] = ("B", "N"),
) -> Layer:
    """An hBN-like honeycomb monolayer filling the orthogonal periodic box ``box_yx_A``.

    The standard honeycomb (:meth:`HarmonicLattice.honeycomb`) is turned by ``rotation_deg``
    and shifted by ``shift_A``; the box must be a period of the turned lattice (checked).

    Raises
    ------
    InputError
        A box that is not commensurate with the turned lattice, or an unstable spring model.
    """
    missing = sorted(set(SPRING_NAMES) - set(springs))
    if missing:
        raise InputError(f"layer {name!r}: springs {missing} not given")
    lat = HarmonicLattice.honeycomb(
        a_A=a_A,
        species=species,
        masses_amu=[masses_amu[s] for s in species],
        **{k: float(springs[k]) for k in SPRING_NAMES},
    )
    R = _rotation(rotation_deg)
    A = lat.lattice_vectors_A @ R.T  # rows turned
    basis = lat.basis_A @ R.T
    box = np.asarray(box_yx_A, dtype=float)
    # the box edges must be lattice vectors of the turned lattice
    frac = np.diag(box) @ np.linalg.inv(A)
    if not np.allclose(frac, np.rint(frac), atol=1e-6):
        raise InputError(
            f"layer {name!r}: box {box.round(4).tolist()} Å is not a period of the lattice turned "
            f"by {rotation_deg:.3f}°"
        )
    n_cells = int(round(abs(np.linalg.det(np.rint(frac)))))
    reach = int(np.ceil(np.hypot(*box) / (a_A * math.sqrt(3.0) / 2.0))) + 2
    r = np.arange(-reach, reach + 1)
    l1, l2 = (v.ravel() for v in np.meshgrid(r, r, indexing="ij"))
    cells = np.column_stack([l1, l2])
    origin = np.mod(np.asarray(shift_A, dtype=float), box)
    pos_all, cell_all, kappa_all = [], [], []
    for kappa in range(2):
        p = origin + cells @ A + basis[kappa]
        inside = np.all((p >= -1e-9) & (p < box - 1e-9), axis=1)
        pos_all.append(p[inside])
        cell_all.append(cells[inside])
        kappa_all.append(np.full(int(inside.sum()), kappa))
    pos = np.concatenate(pos_all)
    cell = np.concatenate(cell_all)
    kappa = np.concatenate(kappa_all)
    if pos.shape[0] != 2 * n_cells:
        raise InputError(
            f"layer {name!r}: found {pos.shape[0]} atoms in the box, expected {2 * n_cells}"
        )
    order = np.lexsort((kappa, cell[:, 1], cell[:, 0]))
    pos, cell, kappa = pos[order], cell[order], kappa[order]
    species_arr = np.asarray(species, dtype=str)[kappa]
    model = BoxHarmonicModel(
        positions_A=pos,
        masses_amu=np.array([masses_amu[s] for s in species_arr]),
        periods_A=(float(box[0]), float(box[1])),
        springs=lat.springs,
    )
    return Layer(
        name=name,
        positions_A=pos,
        z_A=float(z_A),
        species=species_arr,
        lattice_vectors_A=A,
        origin_A=origin,
        cell_index=cell,
        basis_index=kappa,
        rotation_deg=float(rotation_deg),
        springs={k: float(springs[k]) for k in SPRING_NAMES},
        model=model,
    )


def layered_slice_thicknesses(layer_z_A: Sequence[float], slab_A: float) -> tuple[float, ...]:
    """Multislice thicknesses for layers at heights ``layer_z_A`` (ascending), Å.

    Each layer sits in the middle of a slab ``slab_A`` thick; the vacuum between two slabs is
    one slice.  The first slab starts at z = 0, so ``layer_z_A[0]`` must be ``slab_A / 2``.
    """
    z = [float(v) for v in layer_z_A]
    if not z or abs(z[0] - slab_A / 2) > 1e-9:
        raise InputError(f"the first layer must be at z = {slab_A / 2} Å, got {z[:1]}")
    out: list[float] = []
    for k, zk in enumerate(z):
        out.append(float(slab_A))
        if k + 1 < len(z):
            gap = z[k + 1] - zk - slab_A
            if gap < -1e-9:
                raise InputError(f"layers at {zk} and {z[k + 1]} Å overlap (slab {slab_A} Å)")
            if gap > 1e-9:
                out.append(gap)
    return tuple(out)


def layers_ensemble(
    layers: Sequence[Layer], temperature_K: float, n_configs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Independent correlated snapshots of each layer (drawn in layer order from ``rng``).

    Returns
    -------
    displacements_A, green_model_A2
        ``(config, atoms, 3)`` (z = 0: the honeycomb models are in-plane) with the layers'
        atoms concatenated in order, and the block-diagonal exact in-plane Green's tensor.
    """
    disp, greens = [], []
    for layer in layers:
        u = layer.model.sample_snapshots(temperature_K, n_configs, rng)
        d = np.zeros((int(n_configs), layer.n_atoms, 3))
        d[:, :, :2] = u
        disp.append(d)
        greens.append(layer.model.green_tensor(temperature_K))
    from scipy.linalg import block_diag

    return np.concatenate(disp, axis=1), block_diag(*greens)


def slab_ensemble(
    positions_A: ArrayLike,
    masses_amu: ArrayLike,
    periods_yx_A: tuple[float, float],
    springs: Sequence[tuple[float, float, float]],
    temperature_K: float,
    n_configs: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Correlated 3D snapshots of a crystal slab, periodic in y and x, free along the beam.

    Parameters
    ----------
    positions_A
        ``(atoms, 3)`` ideal positions ``(y, x, z)``, Å.
    masses_amu
        ``(atoms,)`` masses.
    periods_yx_A
        Box periods ``(Ly, Lx)``.
    springs
        ``(distance_A, k_long, k_trans)`` shells (eV/Å²).
    temperature_K, n_configs, rng
        Temperature, number of snapshots and the thermal stream.

    Returns
    -------
    displacements_A, green_model_A2
        ``(config, atoms, 3)`` ``(y, x, z)`` displacements and the exact in-plane
        ``(2·atoms, 2·atoms)`` Green's tensor (the ``(y, x)`` part of the 3D one).
    """
    model = BoxHarmonicModel(
        positions_A=np.asarray(positions_A, dtype=float),
        masses_amu=np.asarray(masses_amu, dtype=float),
        periods_A=(float(periods_yx_A[0]), float(periods_yx_A[1]), 0.0),
        springs=springs_from(springs),
    )
    u = model.sample_snapshots(temperature_K, n_configs, rng)
    return u, in_plane_green(model.green_tensor(temperature_K), 3)


#: (k_nn, t_nn, k_nnn) of the Si [110] model, eV/Å² (see :func:`si110_springs`).
SI_SPRINGS = (5.5, 1.3, 0.0)


def si110_springs() -> dict[str, float]:
    """Spring constants (eV/Å²) of the correlated Si [110] preset's 3D model.

    ``k_nn``/``t_nn``: nearest neighbours (a√3/4 = 2.352 Å); ``k_nnn``/``t_nnn``: next-nearest
    (a/√2 = 3.840 Å).  Chosen so that the rms displacement at 300 K is about 7.5 pm per
    direction (B ≈ 0.45 Å², the measured Debye–Waller factor of Si at room temperature).
    """
    return {"k_nn": SI_SPRINGS[0], "t_nn": SI_SPRINGS[1], "k_nnn": SI_SPRINGS[2], "t_nnn": 0.0}
