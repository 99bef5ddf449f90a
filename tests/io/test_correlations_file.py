"""CORR file round trip and the ground-truth group of simulated 4D-STEM files."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from caviar_napari.data.correlations import (
    Estimate,
    NoiseFloor,
    TruthMetrics,
    Uncertainty,
    UniformOffset,
)
from caviar_napari.errors import InputError
from caviar_napari.io.correlations_file import (
    CorrelationsData,
    read_correlations,
    read_ground_truth,
    write_correlations,
)


def _data(n=4, with_lattice=True) -> CorrelationsData:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2 * n, 2 * n))
    green = a @ a.T * 1e-3
    green[2:4] = np.nan
    green[:, 2:4] = np.nan
    b = 8 * np.pi**2 * np.diagonal(green).reshape(n, 2).sum(1)
    return CorrelationsData(
        green_A2=green,
        b_factor_A2=b,
        slices=np.array([1, 2]),
        n_states=12,
        mean_positions_A=rng.uniform(0, 10, (n, 2)),
        excluded_atoms=np.array([1]),
        cell_index=np.array([[0, 0], [0, 0], [0, 1], [0, 1]]) if with_lattice else None,
        basis_index=np.array([0, 1, 0, 1]) if with_lattice else None,
        species=np.array(["B", "N", "B", "N"]) if with_lattice else None,
        lattice_vectors_A=np.array([[0.0, 2.5], [2.165, -1.25]]) if with_lattice else None,
        source="atoms.h5",
    )


@pytest.mark.parametrize("with_lattice", [True, False])
def test_corr_file_round_trip(tmp_path, with_lattice):
    data = _data(with_lattice=with_lattice)
    path = tmp_path / "corr.h5"
    write_correlations(path, data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corr.h5"]  # no temporary left
    back = read_correlations(path)
    np.testing.assert_array_equal(back.green_A2, data.green_A2)
    np.testing.assert_array_equal(back.b_factor_A2, data.b_factor_A2)
    np.testing.assert_array_equal(back.slices, data.slices)
    np.testing.assert_array_equal(back.excluded_atoms, data.excluded_atoms)
    np.testing.assert_array_equal(back.mean_positions_A, data.mean_positions_A)
    assert back.n_states == 12 and back.source == "atoms.h5"
    if with_lattice:
        np.testing.assert_array_equal(back.cell_index, data.cell_index)
        np.testing.assert_array_equal(back.basis_index, data.basis_index)
        assert back.species.tolist() == ["B", "N", "B", "N"]
        np.testing.assert_array_equal(back.lattice_vectors_A, data.lattice_vectors_A)
    else:
        assert back.cell_index is None and back.species is None
    with h5py.File(path) as f:
        assert "2*i + a" in f.attrs["dof_convention"]


def test_corr_file_round_trip_of_errors_offset_noise_floor_and_metrics(tmp_path):
    base = _data()
    data = dataclasses.replace(
        base,
        green_stderr_A2=np.abs(base.green_A2) * 0.1,
        b_factor_stderr_A2=np.abs(base.b_factor_A2) * 0.05,
        uncertainty=Uncertainty("bootstrap", 50, 7, 9.0),
        rho_nn=Estimate(0.42, 0.05),
        rms_displacement_A=Estimate(0.028, 0.001),
        offset=UniformOffset(np.array([1e-4, 2e-4]), np.array([1e-5, 3e-5]), 2.5, 90, True),
        truth_metrics=TruthMetrics(
            "sim.h5",
            Estimate(20.0, 2.0),
            Estimate(1.0, 0.1),
            Estimate(0.9, 0.02),
            0.41,
            10,
            20,
            "paired",
        ),
        noise_floor=NoiseFloor(np.nan, "unknown", 0.028, np.nan),
    )
    path = tmp_path / "corr.h5"
    write_correlations(path, data)
    back = read_correlations(path)
    np.testing.assert_array_equal(back.green_stderr_A2, data.green_stderr_A2)
    np.testing.assert_array_equal(back.b_factor_stderr_A2, data.b_factor_stderr_A2)
    assert back.uncertainty == data.uncertainty
    assert back.rho_nn == data.rho_nn and back.rms_displacement_A == data.rms_displacement_A
    np.testing.assert_array_equal(back.offset.offset_A2, data.offset.offset_A2)
    np.testing.assert_array_equal(back.offset.stderr_A2, data.offset.stderr_A2)
    assert back.offset.subtracted and back.offset.n_pairs == 90
    assert back.offset.min_distance_A == 2.5
    assert back.truth_metrics == data.truth_metrics
    assert np.isnan(back.noise_floor.floor_A) and back.noise_floor.method == "unknown"
    # a jackknife has no seed; a file without the items reads as before
    write_correlations(
        path, dataclasses.replace(data, uncertainty=Uncertainty("jackknife", 12, None, 11.0))
    )
    assert read_correlations(path).uncertainty.seed is None
    write_correlations(path, base)
    old = read_correlations(path)
    assert old.green_stderr_A2 is None and old.uncertainty is None and old.offset is None
    assert old.truth_metrics is None and old.rho_nn is None
    with pytest.raises(InputError, match="green_stderr_A2"):
        dataclasses.replace(base, green_stderr_A2=np.zeros((3, 3)))


def test_estimate_text():
    assert Estimate(0.1234, 0.0456).text(".3f") == "0.123 ± 0.046"
    assert Estimate(0.1234, 0.0456).text("+.3f") == "+0.123 ± 0.046"
    assert Estimate(0.028, 0.001).text(".2f", 100.0) == "2.80 ± 0.10"
    assert Estimate(1.0).text(".1f") == "1.0"


def test_corr_file_errors_name_the_item(tmp_path):
    path = tmp_path / "corr.h5"
    write_correlations(path, _data())
    with h5py.File(path, "a") as f:
        del f["b_factor_A2"]
    with pytest.raises(InputError, match="b_factor_A2"):
        read_correlations(path)
    with pytest.raises(InputError, match=r"missing\.h5: file not found"):
        read_correlations(tmp_path / "missing.h5")
    with pytest.raises(InputError, match="mean_positions_A"):
        CorrelationsData(
            green_A2=np.zeros((4, 4)),
            b_factor_A2=np.zeros(2),
            slices=np.array([0]),
            n_states=3,
            mean_positions_A=np.zeros((3, 2)),
            excluded_atoms=np.array([], dtype=int),
        )


def _write_truth(path, n_atoms=3, n_config=5, *, break_key=None):
    rng = np.random.default_rng(1)
    mean = rng.uniform(0, 10, (n_atoms, 2))
    pos = mean + rng.normal(0, 0.05, (n_config, n_atoms, 2))
    u = (pos - pos.mean(0)).reshape(n_config, -1)
    with h5py.File(path, "w") as f:
        f["intensities"] = np.zeros((2, 2, 4, 4), dtype=np.float32)
        g = f.create_group("ground_truth")
        g["positions_A"] = pos
        g["mean_positions_A"] = mean
        g["green_realised_A2"] = u.T @ u / n_config
        g["green_model_A2"] = 2.5e-3 * np.eye(2 * n_atoms)
        g["cell_index"] = np.zeros((n_atoms, 2), dtype=int)
        g["basis_index"] = np.arange(n_atoms)
        g["species"] = np.array(["B", "N", "B"][:n_atoms], dtype=object)
        g.attrs["lattice_vectors_A"] = np.eye(2) * 2.5
        if break_key == "missing":
            del g["green_realised_A2"]
        elif break_key == "shape":
            del g["green_model_A2"]
            g["green_model_A2"] = np.eye(5)
    return pos, u.T @ u / n_config


def test_read_ground_truth(tmp_path):
    path = tmp_path / "sim.h5"
    pos, realised = _write_truth(path)
    gt = read_ground_truth(path)
    np.testing.assert_array_equal(gt.positions_A, pos)
    np.testing.assert_array_equal(gt.green_realised_A2, realised)
    np.testing.assert_array_equal(gt.green_model_A2, 2.5e-3 * np.eye(6))
    assert gt.species.tolist() == ["B", "N", "B"]
    assert gt.basis_index.tolist() == [0, 1, 2]
    assert gt.lattice_vectors_A.shape == (2, 2)


def test_read_ground_truth_errors_name_the_item(tmp_path):
    path = tmp_path / "missing.h5"
    _write_truth(path, break_key="missing")
    with pytest.raises(InputError, match="green_realised_A2"):
        read_ground_truth(path)
    path = tmp_path / "shape.h5"
    _write_truth(path, break_key="shape")
    with pytest.raises(InputError, match="green_model_A2"):
        read_ground_truth(path)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["intensities"] = np.zeros((2, 2, 4, 4))
    with pytest.raises(InputError, match="ground_truth"):
        read_ground_truth(plain)


def test_corr_zranges_round_trip(tmp_path):
    """Several z-ranges in one CORR file (issue 16): each group reads back with its range and
    its comparisons with the layers; a file of one range records the range at the root."""
    from caviar_napari.data.atoms import ZRange
    from caviar_napari.data.correlations import LayerMetrics
    from caviar_napari.io.correlations_file import (
        correlations_zrange_labels,
        read_correlations_zranges,
        write_correlations_zranges,
    )

    metrics = (
        LayerMetrics("upper", True, 300.0, 1.01, 0.98, 0.40, 0.42, 64),
        LayerMetrics("lower", False, np.nan, np.nan, np.nan, np.nan, np.nan, 0),
    )
    top = dataclasses.replace(
        _data(), zrange=ZRange("top", 0, 2, (30.0, 30.0), 0.0, 4), layer_comparisons=metrics
    )
    bottom = dataclasses.replace(_data(), zrange=ZRange("bottom", 2, 4, (30.0, 30.0), 60.0, 4))
    path = tmp_path / "corr.h5"
    write_correlations_zranges(path, [top, bottom])
    assert correlations_zrange_labels(path) == ["top", "bottom"]
    back = read_correlations_zranges(path)
    assert back["top"].zrange == top.zrange and back["bottom"].zrange == bottom.zrange
    assert back["top"].layer_comparisons[0] == metrics[0]
    lower = back["top"].layer_comparisons[1]
    assert lower.layer == "lower" and not lower.matched and np.isnan(lower.csm)
    assert back["bottom"].layer_comparisons == ()
    np.testing.assert_array_equal(back["bottom"].green_A2, bottom.green_A2)
    with pytest.raises(InputError, match="choose one with --zrange LABEL"):
        read_correlations(path)
    with pytest.raises(InputError, match="unique"):
        write_correlations_zranges(tmp_path / "x.h5", [top, top])
    with pytest.raises(InputError, match="labelled zrange"):
        write_correlations_zranges(tmp_path / "x.h5", [_data()])
    assert not (tmp_path / "x.h5").exists()
    one = tmp_path / "one.h5"
    write_correlations(one, bottom)
    assert read_correlations(one, "bottom").zrange == bottom.zrange
    assert correlations_zrange_labels(one) == ["bottom"]
