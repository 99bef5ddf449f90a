"""Thermal models: ensembles of atom configurations that a simulation sums incoherently.

Three models (issue 3; the paper's datasets 1–3):

* **static** — no motion: every configuration is the ideal structure;
* **einstein** — independent Gaussian displacements, isotropic, with a per-species standard
  deviation (rms displacement per Cartesian direction); no correlation between different atoms
  or directions;
* **correlated** — exact classical thermal snapshots of a harmonic lattice
  (:mod:`caviar_napari.analysis.phonons`: nearest- and next-nearest-neighbour springs, periodic
  supercell, temperature, per-species masses), drawn through a Cholesky factor of the
  supercell's dynamical matrix (no eigenvector gauge, reproducible on any machine), so the
  Green's tensor and the dispersion are known exactly.  The harmonic model is in-plane: the
  out-of-plane displacement is 0.

Displacements are ``(config, atom, 3)`` ordered ``(y, x, z)`` in Å (conventions §1 order, z last).
Green's tensors are in-plane, ``(2·atoms, 2·atoms)`` with dof ``2 i + a`` (``a = 0`` y, 1 x).

The *realised* Green's tensor of an ensemble is eq. 2 of the paper over its configurations,
``G = (1/N) Σ_n u_n u_nᵀ`` with ``u_n = R_n − mean_n R`` (eq. 1), the quantity a reconstruction
must be compared with (conventions §4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.phonons import Supercell
from caviar_napari.errors import InputError

__all__ = [
    "THERMAL_MODELS",
    "Ensemble",
    "correlated_ensemble",
    "einstein_ensemble",
    "matched_einstein_rms_A",
    "realised_green",
    "static_ensemble",
]

#: Names of the thermal models.
THERMAL_MODELS: tuple[str, ...] = ("static", "einstein", "correlated")


def realised_green(displacements_A: ArrayLike) -> np.ndarray:
    """Realised in-plane Green's tensor of an ensemble (paper eqs. 1–2).

    Parameters
    ----------
    displacements_A
        ``(config, atom, 2)`` in-plane positions or displacements ``(y, x)`` in Å (a z column,
        if present as a third component, is ignored).

    Returns
    -------
    numpy.ndarray
        ``(2·atoms, 2·atoms)`` float64 ``(1/N) Σ_n u_n u_nᵀ`` with ``u = R − mean over configs``,
        dof ``2 i + a``.
    """
    d = np.asarray(displacements_A, dtype=np.float64)
    if d.ndim != 3 or d.shape[2] < 2:
        raise InputError(f"displacements must be (config, atom, 2 or 3), got shape {d.shape}")
    u = d[:, :, :2] - d[:, :, :2].mean(axis=0, keepdims=True)
    u = u.reshape(d.shape[0], -1)
    return (u.T @ u) / d.shape[0]


@dataclass(frozen=True)
class Ensemble:
    """Configurations of a thermal model around the ideal structure.

    Attributes
    ----------
    displacements_A
        ``(config, atom, 3)`` float64 displacements ``(y, x, z)`` from the ideal sites, Å.
    green_model_A2
        ``(2·atoms, 2·atoms)`` the model's exact in-plane Green's tensor ⟨u uᵀ⟩ (Å²).
    model
        One of :data:`THERMAL_MODELS`.
    """

    displacements_A: np.ndarray
    green_model_A2: np.ndarray
    model: str

    def __post_init__(self) -> None:
        d = np.asarray(self.displacements_A, dtype=np.float64)
        if d.ndim != 3 or d.shape[2] != 3 or d.shape[0] < 1:
            raise InputError(f"displacements_A must be (config, atom, 3), got shape {d.shape}")
        g = np.asarray(self.green_model_A2, dtype=np.float64)
        n = 2 * d.shape[1]
        if g.shape != (n, n):
            raise InputError(
                f"green_model_A2 must be ({n}, {n}) for {d.shape[1]} atoms, got {g.shape}"
            )
        if self.model not in THERMAL_MODELS:
            raise InputError(f"thermal model must be one of {THERMAL_MODELS}, got {self.model!r}")
        object.__setattr__(self, "displacements_A", d)
        object.__setattr__(self, "green_model_A2", g)

    @property
    def n_configs(self) -> int:
        """Number of configurations N."""
        return int(self.displacements_A.shape[0])

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.displacements_A.shape[1])

    @property
    def green_realised_A2(self) -> np.ndarray:
        """``(2·atoms, 2·atoms)`` realised Green's tensor of these configurations (eq. 2)."""
        return realised_green(self.displacements_A)


def _check_configs(n_configs: int) -> int:
    n = int(n_configs)
    if n < 1 or n != n_configs:
        raise InputError(f"n_configs must be an integer ≥ 1, got {n_configs!r}")
    return n


def static_ensemble(n_atoms: int, n_configs: int = 1) -> Ensemble:
    """The static model: ``n_configs`` identical ideal configurations, zero Green's tensor."""
    n = _check_configs(n_configs)
    if int(n_atoms) < 1:
        raise InputError(f"n_atoms must be ≥ 1, got {n_atoms!r}")
    return Ensemble(
        displacements_A=np.zeros((n, int(n_atoms), 3)),
        green_model_A2=np.zeros((2 * int(n_atoms), 2 * int(n_atoms))),
        model="static",
    )


def einstein_ensemble(
    species: Sequence[str],
    rms_A: Mapping[str, float],
    n_configs: int,
    rng: np.random.Generator | int | None = None,
) -> Ensemble:
    """The Einstein model: independent isotropic Gaussian displacements.

    Parameters
    ----------
    species
        ``(atoms,)`` species label of every atom.
    rms_A
        Species → rms displacement per Cartesian direction σ (Å), the same along y, x and z.
    n_configs
        Number of configurations.
    rng
        numpy Generator or seed.

    Returns
    -------
    Ensemble
        Displacements ~ N(0, σ_species²) independently per atom and direction; the model Green's
        tensor is ``diag(σ²)``.
    """
    n = _check_configs(n_configs)
    labels = np.asarray(species, dtype=str)
    missing = sorted(set(labels.tolist()) - set(rms_A))
    if missing:
        raise InputError(
            f"einstein model: no rms displacement given for species {missing} "
            f"(give e.g. --einstein-rms-A {missing[0]}=0.07)"
        )
    for s, v in rms_A.items():
        if not (np.isfinite(v) and v >= 0):
            raise InputError(f"einstein rms displacement of {s!r} must be ≥ 0 Å, got {v!r}")
    sigma = np.array([float(rms_A[s]) for s in labels])  # per atom (a handful of species)
    rng = np.random.default_rng(rng)
    d = rng.standard_normal((n, labels.size, 3)) * sigma[None, :, None]
    return Ensemble(
        displacements_A=d, green_model_A2=np.diag(np.repeat(sigma**2, 2)), model="einstein"
    )


def correlated_ensemble(
    supercell: Supercell,
    temperature_K: float,
    n_configs: int,
    rng: np.random.Generator | int | None = None,
    atom_map: ArrayLike | None = None,
) -> Ensemble:
    """Correlated thermal snapshots of a harmonic supercell (exact, gauge-independent sampling).

    Parameters
    ----------
    supercell
        The periodic harmonic supercell (:class:`~caviar_napari.analysis.phonons.Supercell`).
    temperature_K
        Temperature (K).
    n_configs
        Number of snapshots.
    rng
        numpy Generator or seed.
    atom_map
        Optional ``(atoms,)`` index of the supercell atom that each simulated atom is (a
        periodic image of); default: the supercell's atoms in their own order.

    Returns
    -------
    Ensemble
        In-plane displacements from :meth:`Supercell.sample_snapshots` (z = 0) and the exact
        Green's tensor :meth:`Supercell.green_tensor`, both mapped through ``atom_map``.
    """
    n = _check_configs(n_configs)
    idx = np.arange(supercell.n_atoms) if atom_map is None else np.asarray(atom_map, dtype=int)
    if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= supercell.n_atoms:
        raise InputError(
            f"atom_map must index the {supercell.n_atoms} supercell atoms, got shape {idx.shape}"
        )
    u = supercell.sample_snapshots(temperature_K, n, rng)  # (n, atoms_sc, 2)
    d = np.zeros((n, idx.size, 3))
    d[:, :, :2] = u[:, idx, :]
    g = supercell.green_tensor(temperature_K).reshape(supercell.n_atoms, 2, supercell.n_atoms, 2)
    g = g[idx][:, :, idx].reshape(2 * idx.size, 2 * idx.size)
    return Ensemble(displacements_A=d, green_model_A2=g, model="correlated")


def matched_einstein_rms_A(supercell: Supercell, temperature_K: float) -> dict[str, float]:
    """Per-species rms displacement (per direction) of the harmonic model at ``temperature_K``.

    The Einstein dataset of the paper used "displacements sampled from a normal distribution with
    standard deviation matched to the average one" of the correlated data; this returns
    ``σ_s = sqrt(mean over atoms of species s of (G_yy + G_xx) / 2)`` from the exact Green's
    tensor, so the Einstein and correlated presets differ only in the correlations.
    """
    g = np.diag(supercell.green_tensor(temperature_K)).reshape(-1, 2).mean(axis=1)
    species = supercell.species
    return {str(s): float(np.sqrt(g[species == s].mean())) for s in np.unique(species)}
