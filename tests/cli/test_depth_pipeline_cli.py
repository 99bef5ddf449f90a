"""Depth-resolved results through the headless pipeline (issue 16): ``caviar correlations`` and
``caviar dispersion`` on a multi-range ATOMS file, with a layered ground truth.

Known truth: two independent hBN layers (the ``hbn-bilayer-gap`` springs: the lower layer
softer-bonded, ρ_nn lower, shifted by a/3), ten configurations each.  The "reconstruction" has
four 30 Å slices: the upper layer's atoms are seen in slice 0, the lower layer's in slice 3;
ten object states hold the ten configurations (plus 5 pm of positional noise), and the slices
between are vacuum where refinement fails (NaN).  The ATOMS file holds the z-ranges ``top`` (0:2)
and ``bottom`` (2:4), each indexed in its own layer's lattice (the ``depth_files`` fixture of
tests/conftest.py, shared with the Correlations view-model tests).
"""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.analysis.correlations import unit_cell_averages
from caviar_napari.cli import main
from caviar_napari.errors import InputError
from caviar_napari.io.correlations_file import (
    correlations_zrange_labels,
    read_correlations,
    read_correlations_zranges,
)
from caviar_napari.io.dispersion_file import read_dispersion

N_CONFIGS = 10
NOISE_A = 0.005  # the depth_files fixture's (tests/conftest.py) positional noise, Å


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
