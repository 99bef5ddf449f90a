"""Sample data and 4D-STEM layers open in a napari viewer with the expected geometry."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from caviar_napari._napari.sample_data import demo_path
from caviar_napari._napari.stem_layers import (
    DATASET_KEY,
    PATH_KEY,
    STEM_AXIS_LABELS,
    stem_layer_data,
    virtual_bright_field,
)
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.io.dataset import read_stem_h5

PRESETS = (
    "hbn-static",
    "hbn-einstein",
    "hbn-correlated",
    "hbn-correlated-psc",
    "si110-static",
    "hbn-bilayer-gap",
    "hbn-twisted-bilayer",
)


@pytest.fixture
def caviar_plugin(npe2pm):
    """Register this package's manifest (napari's test plugin manager discovers nothing)."""
    from npe2 import PluginManifest

    if "caviar-napari" not in npe2pm:
        npe2pm.register(PluginManifest.from_distribution("caviar-napari"))
    return npe2pm


@pytest.mark.parametrize("key", PRESETS)
def test_sample_opens_in_napari_with_expected_layers(make_napari_viewer, caviar_plugin, key):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("caviar-napari", key)
    path = demo_path(key)
    ds = read_stem_h5(path)
    assert [layer.name for layer in layers] == [f"{key} 4D-STEM", f"{key} virtual BF"]
    four_d, bf = layers
    sy, sx, ky, kx = ds.intensities.shape
    assert four_d.data.shape == (sy, sx, ky, kx)
    assert tuple(four_d.axis_labels) == STEM_AXIS_LABELS
    assert tuple(str(u) for u in four_d.units) == (
        "angstrom",
        "angstrom",
        "milliradian",
        "milliradian",
    )
    np.testing.assert_allclose(four_d.scale, (*ds.scan_step_A, *ds.angular_sampling_mrad))
    # scan axes in Å of the scan frame, zero scattering angle at 0 mrad
    np.testing.assert_allclose(
        four_d.data_to_world((2, 3, ky // 2, kx // 2)), (*ds.positions_A[2, 3], 0.0, 0.0), atol=1e-9
    )
    meta_ds = four_d.metadata[DATASET_KEY]
    assert isinstance(meta_ds, STEMDataset) and meta_ds.energy_eV == ds.energy_eV
    assert four_d.metadata[PATH_KEY] == str(path)
    # the virtual BF on the same scan grid: identical world position of every scan point
    assert bf.data.shape == (sy, sx, 1, 1)
    np.testing.assert_allclose(bf.data_to_world((2, 3, 0, 0))[:2], ds.positions_A[2, 3])
    np.testing.assert_allclose(bf.data[..., 0, 0], virtual_bright_field(ds), rtol=1e-6)
    # its single detector pixel spans the whole detector (visible whatever the ky, kx slider):
    # centred on the detector's centre and K pixels wide
    centre = four_d.extent.world[:, 2:].mean(axis=0)
    np.testing.assert_allclose(bf.extent.world[:, 2:], [centre, centre], atol=1e-9)
    np.testing.assert_allclose(bf.scale[2:], np.array((ky, kx)) * ds.angular_sampling_mrad)
    with h5py.File(path, "r") as f:  # the demo carries its ground truth
        assert f["ground_truth"].attrs["preset"] == key


def test_virtual_bright_field_is_the_disc_sum():
    data = np.zeros((2, 3, 9, 9), np.float32)
    data[..., 4, 4] = 1.0  # zero angle at [K//2, K//2]
    data[0, 0, 4, 6] = 5.0  # 2 px = 20 mrad: outside a 15 mrad disc
    data[1, 2, 5, 5] = 2.0  # sqrt(2) * 10 = 14.1 mrad: inside
    ds = STEMDataset(data, 60e3, 15.0, (0.5, 0.5), (10.0, 10.0))
    np.testing.assert_allclose(virtual_bright_field(ds), [[1, 1, 1], [1, 1, 3]])


def test_stem_layer_data_of_an_npy_file(tmp_path):
    import json

    data = np.random.default_rng(0).random((2, 3, 8, 6)).astype(np.float32)
    np.save(tmp_path / "scan.npy", data)
    (tmp_path / "scan.json").write_text(
        json.dumps(
            {
                "energy_eV": 200e3,
                "convergence_semiangle_mrad": 20.0,
                "scan_step_A": [0.4, 0.3],
                "angular_sampling_mrad": 2.0,
                "positions_A": (
                    np.indices((2, 3)).transpose(1, 2, 0) * [0.4, 0.3] + [5.0, -2.0]
                ).tolist(),
            }
        )
    )
    (data_layer, kw, kind), (bf, bf_kw, bf_kind) = stem_layer_data(tmp_path / "scan.npy")
    assert kind == bf_kind == "image"
    assert kw["name"] == "scan 4D-STEM" and bf_kw["name"] == "scan virtual BF"
    np.testing.assert_allclose(kw["scale"], (0.4, 0.3, 2.0, 2.0))
    np.testing.assert_allclose(kw["translate"], (5.0, -2.0, -8.0, -6.0))
    assert kw["axis_labels"] == STEM_AXIS_LABELS
