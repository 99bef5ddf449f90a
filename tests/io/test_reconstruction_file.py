"""conventions §6 reconstruction file: full round trip (with resume data) and named errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from caviar_napari import __version__
from caviar_napari.data.config import two_stage_preset
from caviar_napari.data.recon import ReconState
from caviar_napari.errors import InputError
from caviar_napari.io.reconstruction import load_reconstruction, save_reconstruction


def _state() -> ReconState:
    rng = np.random.default_rng(5)
    obj = (rng.normal(size=(3, 2, 6, 7)) + 1j * rng.normal(size=(3, 2, 6, 7))).astype(np.complex64)
    probe = (rng.normal(size=(2, 4, 4)) + 1j * rng.normal(size=(2, 4, 4))).astype(np.complex64)
    gen = np.random.default_rng(11)
    gen.standard_normal(17)
    return ReconState(
        object=obj,
        probe=probe,
        tilt_mrad=np.array([0.25, -1.5]),
        loss=[3.0, 2.0, 1.5],
        pixel_size_A=(0.21, 0.22),
        object_origin_A=(-3.5, -4.25),
        slice_thickness_A=np.array([4.0, 6.0]),
        config=two_stage_preset(object_states=3, probe_modes=2, slices=2, device="cpu"),
        stage_index=1,
        stage_iteration=1,
        iteration=3,
        optimiser_state={
            "kind": "lbfgs",
            "scale/object": 0.5,
            "scale_dev/object": 2.0,
            "gd_step": 1.0,
            "n_pairs": 1,
            "s/object": obj[None] * 0.1,
            "y/object": obj[None] * 0.2,
        },
        rng_state=gen.bit_generator.state,
        source="data.h5",
        scan_positions_A=rng.normal(size=(5, 2)),
        scan_rotation_deg=2.0,
    )


def test_round_trip_with_resume(tmp_path):
    st = _state()
    path = tmp_path / "recon.h5"
    save_reconstruction(path, st)
    back = load_reconstruction(path)
    np.testing.assert_array_equal(back.object, st.object)
    assert back.object.dtype == np.complex64
    np.testing.assert_array_equal(back.probe, st.probe)
    np.testing.assert_array_equal(back.tilt_mrad, st.tilt_mrad)
    np.testing.assert_array_equal(back.scan_positions_A, st.scan_positions_A)
    np.testing.assert_array_equal(back.slice_thickness_A, st.slice_thickness_A)
    assert back.loss == st.loss
    assert back.pixel_size_A == st.pixel_size_A and back.object_origin_A == st.object_origin_A
    assert back.config == st.config
    assert (back.stage_index, back.stage_iteration, back.iteration) == (1, 1, 3)
    assert back.source == "data.h5" and back.version == __version__
    assert back.scan_rotation_deg == 2.0
    opt = back.optimiser_state
    assert opt["kind"] == "lbfgs" and opt["n_pairs"] == 1 and opt["scale_dev/object"] == 2.0
    np.testing.assert_array_equal(opt["s/object"], st.optimiser_state["s/object"])
    # the RNG continues exactly where it was
    a, b = np.random.default_rng(), np.random.default_rng()
    a.bit_generator.state = st.rng_state
    b.bit_generator.state = back.rng_state
    np.testing.assert_array_equal(a.standard_normal(4), b.standard_normal(4))
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_spec_layout(tmp_path):
    path = tmp_path / "recon.h5"
    save_reconstruction(path, _state(), source="other.h5")
    with h5py.File(path) as f:
        assert f["object"].shape == (3, 2, 6, 7) and f["object"].dtype == np.complex64
        assert f["probe"].shape == (2, 4, 4)
        assert f["loss"].shape == (3,)
        np.testing.assert_allclose(f.attrs["pixel_size_A"], (0.21, 0.22))
        np.testing.assert_allclose(f.attrs["object_origin_A"], (-3.5, -4.25))
        np.testing.assert_allclose(f.attrs["slice_thickness_A"], (4.0, 6.0))
        cfg = json.loads(f.attrs["configuration"])
        assert cfg["stages"][1]["object_states"] == 3
        assert f.attrs["source"] == "other.h5"
        assert f.attrs["version"] == __version__


def test_finished_file_without_resume_group(tmp_path):
    path = tmp_path / "plain.h5"
    save_reconstruction(path, _state())
    with h5py.File(path, "a") as f:
        del f["resume"]
    back = load_reconstruction(path)
    assert back.optimiser_state is None and back.rng_state is None
    assert back.finished and back.iteration == 3


@pytest.mark.parametrize(
    ("item", "kind"),
    [
        ("object", "dataset"),
        ("probe", "dataset"),
        ("loss", "dataset"),
        ("pixel_size_A", "attribute"),
        ("object_origin_A", "attribute"),
        ("configuration", "attribute"),
    ],
)
def test_missing_items_are_named(tmp_path, item, kind):
    path = tmp_path / "r.h5"
    save_reconstruction(path, _state())
    with h5py.File(path, "a") as f:
        if kind == "dataset":
            del f[item]
        else:
            del f.attrs[item]
    with pytest.raises(InputError, match=rf"r\.h5: missing {kind} '{item}'"):
        load_reconstruction(path)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_reconstruction(tmp_path / "none.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00not hdf5")
    with pytest.raises(InputError, match=r"junk\.h5: cannot be read as an HDF5 file"):
        load_reconstruction(junk)
    path = tmp_path / "cfg.h5"
    save_reconstruction(path, _state())
    with h5py.File(path, "a") as f:
        f.attrs["configuration"] = "{not json"
    with pytest.raises(InputError, match="'configuration' is not valid JSON"):
        load_reconstruction(path)
    with h5py.File(path, "a") as f:
        f.attrs["configuration"] = json.dumps({"stages": [{"iterations": 1, "warp": 9}]})
    with pytest.raises(InputError, match="unknown key 'warp'"):
        load_reconstruction(path)
