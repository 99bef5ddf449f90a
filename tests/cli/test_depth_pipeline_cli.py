"""Depth-resolved results through the headless pipeline (issue 16): ``caviar correlations`` and
``caviar dispersion`` on a multi-range ATOMS file, with a layered ground truth.

Known truth: two independent hBN layers (the ``hbn-bilayer-gap`` springs: the lower layer
softer-bonded, ρ_nn lower, shifted by a/3), ten configurations each.  The "reconstruction" has
four 30 Å slices: the upper layer's atoms are seen in slice 0, the lower layer's in slice 3;
ten object states hold the ten configurations (plus 5 pm of positional noise), and the slices
between are vacuum where refinement fails (NaN).  The ATOMS file holds the z-ranges ``top`` (0:2)
and ``bottom`` (2:4), each indexed in its own layer's lattice.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from caviar_napari.analysis.correlations import unit_cell_averages
from caviar_napari.cli import main
from caviar_napari.data.atoms import AtomsData, ZRange
from caviar_napari.data.layers import TruthLayer
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import write_atoms_zranges
from caviar_napari.io.correlations_file import (
    correlations_zrange_labels,
    read_correlations,
    read_correlations_zranges,
)
from caviar_napari.io.dispersion_file import read_dispersion
from caviar_napari.io.truth_layers import write_truth_layers
from caviar_napari.simulate.thermal import realised_green
from caviar_napari.simulate.thick import (
    LOWER_SPRINGS_DEFAULT,
    honeycomb_layer,
    max_separation_shift_A,
)

A = 2.504
MASSES = {"B": 10.81, "N": 14.007}
UPPER = {"k_nn": 20.0, "t_nn": 6.0, "k_nnn": 4.0, "t_nnn": 0.0}
N_CONFIGS = 10
DZ = 30.0
NOISE_A = 0.005


@pytest.fixture(scope="module")
def depth_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("depth_pipeline")
    box = (4 * A * math.sqrt(3), 4 * A)
    rng = np.random.default_rng(3)
    specs = (("upper", (0.0, 0.0), UPPER, 0), ("lower", max_separation_shift_A(A),
             dict(LOWER_SPRINGS_DEFAULT), 3))  # fmt: skip
    layers, truths, configs, ranges, start = [], [], [], [], 0
    for (name, shift, springs, slice_index), label in zip(specs, ("top", "bottom")):
        layer = honeycomb_layer(
            name, a_A=A, box_yx_A=box, rotation_deg=0.0, shift_A=shift, z_A=slice_index * DZ,
            springs=springs, masses_amu=MASSES,
        )  # fmt: skip
        pos = layer.positions_A[None] + layer.model.sample_snapshots(300.0, N_CONFIGS, rng)
        atoms = np.arange(start, start + layer.n_atoms)
        start += layer.n_atoms
        truths.append(
            TruthLayer(
                name=name, atoms=atoms, z_A=slice_index * DZ + 2.0,
                entrance_z_A=slice_index * DZ, truth_slices=[slice_index],
                lattice_vectors_A=layer.lattice_vectors_A, origin_A=layer.origin_A,
                cell_index=layer.cell_index, basis_index=layer.basis_index,
                rotation_deg=0.0, green_model_A2=layer.model.green_tensor(300.0),
                green_realised_A2=realised_green(pos), phase=np.zeros((4, 4)),
                springs=dict(springs),
            )
        )  # fmt: skip
        configs.append(pos)
        # the range's view: states = configurations + noise in the layer's own slice, NaN in
        # the other slice of the range (vacuum: refinement failed)
        seen = np.full((N_CONFIGS, 2, layer.n_atoms, 2), np.nan)
        own = slice_index % 2
        seen[:, own] = pos + rng.normal(0.0, NOISE_A, pos.shape)
        first = 2 * (slice_index // 2)
        ranges.append(
            AtomsData(
                positions_A=seen,
                mean_positions_A=seen[:, own].mean(axis=0),
                cell_index=layer.cell_index,
                basis_index=layer.basis_index,
                species=np.asarray(layer.species),
                lattice_vectors_A=layer.lattice_vectors_A,
                source="recon.h5",
                zrange=ZRange(label, first, first + 2, (DZ, DZ), first * DZ, 4),
            )
        )
        layers.append(layer)
    atoms_path, data_path = folder / "atoms.h5", folder / "data.h5"
    write_atoms_zranges(atoms_path, ranges)
    positions = np.concatenate(configs, axis=1)
    with h5py.File(data_path, "w") as f:
        f["intensities"] = np.zeros((2, 2, 4, 4), dtype=np.float32)
        g = f.create_group("ground_truth")
        g["positions_A"] = positions
        g["mean_positions_A"] = np.concatenate([la.positions_A for la in layers])
        g["green_realised_A2"] = realised_green(positions)
        g["species"] = np.concatenate([la.species for la in layers]).astype(object)
        g.attrs["box_A"] = np.array([box[0], box[1], 4 * DZ])
        write_truth_layers(g, truths)
    return atoms_path, data_path, truths


def test_correlations_per_zrange_against_their_layers(depth_files, tmp_path, capsys):
    atoms, data, truths = depth_files
    out = tmp_path / "corr.h5"
    assert main(["correlations", str(atoms), "--out", str(out), "--ground-truth", str(data)]) == 0
    text = capsys.readouterr().out
    assert "z-range 'top' ↔ layer 'upper': 100% of its atoms" in text
    assert "z-range 'bottom' ↔ layer 'lower': 100% of its atoms" in text
    assert "slices used: 1 of the range (slice 3 of the reconstruction)" in text
    assert correlations_zrange_labels(out) == ["top", "bottom"]
    ranges = read_correlations_zranges(out)
    own_rho = {}
    for (label, corr), layer, other in zip(ranges.items(), truths, truths[::-1]):
        assert corr.zrange.label == label and corr.n_states == N_CONFIGS
        assert corr.slices.tolist() == ([0] if label == "top" else [1])
        assert corr.excluded_atoms.size == 0
        m = corr.truth_metrics
        assert m.truth.endswith(f"ground_truth/layers/{layer.name}") and m.pairing == "paired"
        assert m.csm.value > 0.97
        by_layer = {c.layer: c for c in corr.layer_comparisons}
        assert by_layer[layer.name].matched and not by_layer[other.name].matched
        assert by_layer[layer.name].csm == pytest.approx(m.csm.value, abs=0.02)
        # the other layer's independent field: measurably lower (self blocks still agree)
        assert by_layer[other.name].csm < by_layer[layer.name].csm - 0.1
        own_rho[label] = by_layer[layer.name]
    # ρ_nn of the two ranges differs in the direction the truth says (upper stiffer-bonded)
    assert own_rho["top"].rho_nn_truth > own_rho["bottom"].rho_nn_truth + 0.05
    assert own_rho["top"].rho_nn_reconstructed > own_rho["bottom"].rho_nn_reconstructed + 0.05
    # unit-cell averages per range, printed and in each range's group
    assert text.count("unit-cell averages (pairs with the same l' − l, κ, κ'") == 2
    assert "x along the B → N bond" in text


def test_unit_cell_averages_per_zrange_match_their_layers(depth_files, tmp_path, capsys):
    """Each range's unit-cell table is its own layer's realised class averages in the same
    frame, within the errors (the states are the configurations plus 5 pm of noise)."""
    atoms, data, truths = depth_files
    out = tmp_path / "corr.h5"
    assert main(["correlations", str(atoms), "--out", str(out)]) == 0
    capsys.readouterr()
    nn_xx = {}
    for (label, corr), layer in zip(read_correlations_zranges(out).items(), truths):
        table = corr.unit_cell_averages
        assert table.shell.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2]  # 2 self, 3 nn, 6 nnn
        truth = unit_cell_averages(
            layer.green_realised_A2, layer.cell_index, layer.basis_index,
            corr.mean_positions_A, table.rotation, max_distance_A=table.max_distance_A,
        )  # fmt: skip
        rows = [np.flatnonzero((truth.keys == k).all(axis=1))[0] for k in table.keys]
        diff = table.blocks_A2 - truth.blocks_A2[rows]
        assert np.all(np.abs(diff[table.shell > 0]) < 3 * table.stderr_A2[table.shell > 0])
        # self blocks: the noise adds its variance (5 pm)² to the diagonal
        noise = np.diagonal(diff[table.shell == 0], axis1=1, axis2=2)
        np.testing.assert_allclose(noise, NOISE_A**2, atol=3e-5)
        nn_xx[label] = table.blocks_A2[table.shell == 1].trace(axis1=1, axis2=2).mean()
    # the stiffer-bonded upper layer's neighbours move together more
    assert nn_xx["top"] > 1.5 * nn_xx["bottom"]
    with pytest.raises(InputError, match=r"holds 2 z-ranges \(top, bottom\); choose one with "):
        read_correlations(out)


def test_correlations_of_one_zrange(depth_files, tmp_path, capsys):
    atoms, data, _ = depth_files
    out = tmp_path / "bottom.h5"
    argv = ["correlations", str(atoms), "--out", str(out), "--zrange", "bottom",
            "--ground-truth", str(data)]  # fmt: skip
    assert main(argv) == 0
    corr = read_correlations(out)  # a file of one range: no label needed
    assert corr.zrange.label == "bottom" and corr.zrange.spec == "2:4"
    assert corr.truth_metrics.truth.endswith("layers/lower")
    capsys.readouterr()
    bad = ["correlations", str(atoms), "--out", str(tmp_path / "x.h5"), "--zrange", "middle"]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip()
    assert "no z-range 'middle'; it holds top, bottom" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()


def test_dispersion_needs_a_zrange_and_works_on_one(depth_files, tmp_path, capsys):
    atoms, _, _ = depth_files
    out = tmp_path / "disp.h5"
    base = ["dispersion", str(atoms), "--out", str(out), "--temperature-K", "300",
            "--bootstrap", "0"]  # fmt: skip
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "holds 2 z-ranges (top, bottom); choose one with --zrange LABEL" in err
    assert not out.exists()
    assert main([*base, "--zrange", "top"]) == 0
    text = capsys.readouterr().out
    assert "z-range 'top': slices 0:2 of 4" in text
    result = read_dispersion(out)
    assert result.slices.tolist() == [0] and result.n_states == N_CONFIGS
    assert "z-range 'top'" in result.source
