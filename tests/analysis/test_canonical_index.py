"""Canonical lattice indexing: copies of one crystal turned by any angle (the z-ranges of a
twisted bilayer) number every unit-cell class alike, and their unit-cell tables agree.

Known truth: the same crystal (lattice + basis + species) turned about a point by θ, or mirrored.

* hBN (honeycomb, B and N): symmetric under 120° turns, so two turned copies can only agree
  up to that symmetry — their correlations here are a model tensor with the same symmetry
  (an isotropic function of the pair's separation and species), so the tables agree exactly;
* a square lattice with a low-symmetry two-atom basis (no point symmetry but the lattice's
  translations): the canonical indexing is unique, so the table of one *sampled* displacement
  field, turned with the crystal, agrees entry by entry, errors included.
"""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.analysis.correlation_analysis import CorrelationConfig, analyse_correlations
from caviar_napari.analysis.lattice import (
    canonical_index,
    equivalent_bases,
    index_lattice,
    species_by_strength,
)
from caviar_napari.analysis.unit_cell_table import plan_table
from caviar_napari.data.atoms import AtomsData

A_HBN = 2.504
MIRROR = np.array([[1.0, 0.0], [0.0, -1.0]])  # x → −x on (y, x) vectors


def _rotation(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])  # (y, x): x → y turns


def _crystal(lattice, basis_frac, species, n1, n2):
    """Sites of an ``n1 × n2`` patch (lab frame before turning), their species."""
    L = np.asarray(lattice, dtype=float)
    cells = np.stack(np.meshgrid(np.arange(n1), np.arange(n2), indexing="ij"), -1).reshape(-1, 2)
    sites = (cells @ L)[:, None, :] + (np.asarray(basis_frac, float) @ L)[None]
    kinds = np.tile(np.asarray(species), len(cells))
    return sites.reshape(-1, 2), kinds


def _hbn():
    lattice = [[0.0, A_HBN], [A_HBN * np.sqrt(3) / 2, -A_HBN / 2]]
    return _crystal(lattice, [[0, 0], [1 / 3, 2 / 3]], ["B", "N"], 7, 7)


def _model_green(positions: np.ndarray, species: np.ndarray) -> np.ndarray:
    """An isotropic model tensor: ``G_ij = a_ij e^(−d/ξ) I + b e^(−d/ξ) d̂ d̂ᵀ`` (Å²)."""
    n = len(positions)
    d = positions[None, :, :] - positions[:, None, :]
    r = np.hypot(d[..., 0], d[..., 1])
    unit = np.where(r[..., None] > 0, d / np.maximum(r, 1e-12)[..., None], 0.0)
    amp = np.where(species == "B", 1.2e-4, 0.9e-4)
    a = np.sqrt(np.outer(amp, amp)) * np.exp(-r / 2.0)
    b = 0.4e-4 * np.exp(-r / 2.0) * (r > 0)
    blocks = a[..., None, None] * np.eye(2) + b[..., None, None] * np.einsum(
        "ija,ijb->ijab", unit, unit
    )
    return blocks.transpose(0, 2, 1, 3).reshape(2 * n, 2 * n)


def _index(positions: np.ndarray, species: np.ndarray, strength: np.ndarray):
    """As ``caviar atoms``: estimated lattice, species by phase strength, canonical form."""
    index = index_lattice(positions)
    weakest_first = sorted(set(species.tolist()), key=lambda s: strength[species == s].mean())
    named = species_by_strength(strength, index.basis_index, weakest_first)
    np.testing.assert_array_equal(named, species)  # the species are found as built
    return canonical_index(index, named)


TURNS = [(0.0, False), (13.17, False), (21.79, False), (61.3, False), (-97.4, False),
         (13.17, True), (200.0, True)]  # fmt: skip


def _turned(sites: np.ndarray, deg: float, mirrored: bool) -> np.ndarray:
    R = _rotation(deg) @ (MIRROR if mirrored else np.eye(2))
    return (sites - sites.mean(axis=0)) @ R.T + [40.0, -7.0]


def test_hbn_turned_or_mirrored_indexes_every_class_alike():
    sites, species = _hbn()
    strength = np.where(species == "B", 0.5, 0.8)
    tables = []
    for deg, mirrored in TURNS:
        positions = _turned(sites, deg, mirrored)
        index = _index(positions, species, strength)
        # right-handed 120° basis, κ = 0 is B (first species), N at (1/3, 2/3)
        a1, a2 = index.lattice_vectors_A
        assert a1[1] * a2[0] - a1[0] * a2[1] > 0
        assert a1 @ a2 == pytest.approx(-(A_HBN**2) / 2, rel=1e-9)
        assert set(species[index.basis_index == 0]) == {"B"}
        frac = index.basis_A[1] @ np.linalg.inv(index.lattice_vectors_A)
        np.testing.assert_allclose(frac, [1 / 3, 2 / 3], atol=1e-9)
        np.testing.assert_allclose(index.ideal_positions_A(), positions, atol=1e-9)
        plan = plan_table(index.cell_index, index.basis_index, positions)
        tables.append((plan, plan.local_blocks(_model_green(positions, species))))
    keys0, blocks0 = tables[0][0].classes.keys[tables[0][0].listed], tables[0][1]
    assert len(keys0) == 11  # each once: self B, self N; 3 B → N bonds; 3 B → B, 3 N → N
    for (plan, blocks), (deg, mirrored) in zip(tables, TURNS):
        keys = plan.classes.keys[plan.listed]
        np.testing.assert_array_equal(keys, keys0, err_msg=f"{deg}° mirrored={mirrored}")
        np.testing.assert_allclose(blocks, blocks0, atol=1e-15, err_msg=f"{deg}°")
        assert plan.classes.keys[plan.frame_class].tolist() == [-1, -1, 0, 1]


def test_square_lattice_with_low_symmetry_basis_sampled_field_turned():
    lattice = [[0.0, 3.0], [3.0, 0.0]]
    sites, species = _crystal(lattice, [[0, 0], [0.5, 0.25]], ["Mo", "S"], 6, 6)
    strength = np.where(species == "Mo", 1.0, 0.4)
    rng = np.random.default_rng(5)
    n_states = 12
    u = 0.03 * rng.standard_normal((n_states, len(sites), 2))
    u[:, 1::2] += 0.5 * u[:, 0::2]  # each S follows its cell's Mo: the classes differ
    results = []
    for deg in (0.0, 13.17, 21.79, 61.3, 143.0):
        R = _rotation(deg)
        positions = _turned(sites, deg, False)
        index = _index(positions, species, strength)
        assert set(species[index.basis_index == 0]) == {"Mo"}
        atoms = AtomsData(
            positions_A=(positions + u @ R.T)[:, None],
            mean_positions_A=positions,
            cell_index=index.cell_index,
            basis_index=index.basis_index,
            species=species,
            lattice_vectors_A=index.lattice_vectors_A,
        )
        results.append(analyse_correlations(atoms, CorrelationConfig()).data.unit_cell_averages)
    first = results[0]
    assert first.n_classes > 4
    for table in results[1:]:
        np.testing.assert_array_equal(table.keys, first.keys)
        np.testing.assert_array_equal(table.frame_key, first.frame_key)
        np.testing.assert_allclose(table.blocks_A2, first.blocks_A2, atol=1e-14)
        np.testing.assert_allclose(table.stderr_A2, first.stderr_A2, atol=1e-14)


def test_without_species_a_honeycomb_still_has_one_numbering():
    """Geometry alone (graphene): both sites alike, the classes still agree between turns."""
    sites, _ = _hbn()
    keys = []
    for deg in (0.0, 13.17, 47.0):
        positions = _turned(sites, deg, False)
        index = index_lattice(positions)
        plan = plan_table(index.cell_index, index.basis_index, positions)
        keys.append(plan.classes.keys[plan.listed])
    for k in keys[1:]:
        np.testing.assert_array_equal(k, keys[0])


def test_equivalent_bases_counts_and_given_vectors_are_kept():
    hexagonal = [[0.0, 2.0], [np.sqrt(3), -1.0]]
    assert len(equivalent_bases(hexagonal)) == 6
    assert len(equivalent_bases([[0.0, 2.0], [2.0, 0.0]])) == 4
    assert len(equivalent_bases([[0.0, 2.0], [3.0, 0.0]])) == 2
    for M in equivalent_bases(hexagonal):
        assert abs(round(np.linalg.det(M))) == 1
    sites, species = _hbn()
    positions = _turned(sites, 30.0, False)
    given = np.array([[0.0, 1.0], [1.0, 0.0]]) @ np.array(hexagonal) * A_HBN / 2
    index = index_lattice(positions, given @ _rotation(30.0).T)
    kept = canonical_index(index, species, keep_vectors=True)
    np.testing.assert_array_equal(kept.lattice_vectors_A, index.lattice_vectors_A)
    assert set(species[kept.basis_index == 0]) == {"B"}
    np.testing.assert_allclose(kept.ideal_positions_A(), positions, atol=1e-9)
