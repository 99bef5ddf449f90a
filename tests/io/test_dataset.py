"""conventions §6 4D-STEM schema: round trip, calibrations and each bad input with its own error."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io.dataset import read_stem_h5, write_stem_h5


def _dataset(**kw) -> STEMDataset:
    rng = np.random.default_rng(0)
    args = dict(
        intensities=rng.random((3, 4, 8, 10)).astype(np.float32),
        energy_eV=200e3,
        convergence_semiangle_mrad=21.4,
        scan_step_A=(0.5, 0.4),
        angular_sampling_mrad=(2.0, 1.5),
        defocus_A=50.0,
        source="mem",
    )
    args.update(kw)
    return STEMDataset(**args)


def _write_raw(path, intensities, **attrs):
    with h5py.File(path, "w") as f:
        if intensities is not None:
            f.create_dataset("intensities", data=intensities)
        for k, v in attrs.items():
            if k == "positions_A":
                f.create_dataset("scan/positions_A", data=v)
            else:
                f.attrs[k] = v


GOOD_ATTRS = dict(
    energy_eV=80e3, convergence_semiangle_mrad=30.0, scan_step_A=0.3, angular_sampling_mrad=1.2
)


def test_round_trip_and_extra(tmp_path):
    ds = _dataset(scan_rotation_deg=3.0)
    path = tmp_path / "d.h5"

    def extra(f):
        f.create_dataset("ground_truth/phase", data=np.ones((2, 2)))

    write_stem_h5(path, ds, extra=extra)
    back = read_stem_h5(path)
    np.testing.assert_array_equal(back.intensities, ds.intensities)
    np.testing.assert_array_equal(back.positions_A, ds.positions_A)
    assert back.scan_step_A == (0.5, 0.4)
    assert back.angular_sampling_mrad == (2.0, 1.5)
    assert back.defocus_A == 50.0 and back.scan_rotation_deg == 3.0
    assert back.source == "d.h5"
    with h5py.File(path) as f:
        assert "ground_truth/phase" in f
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_calibration_properties():
    ds = _dataset()
    lam = ds.wavelength_A
    assert lam == pytest.approx(0.025079, rel=1e-4)  # 200 kV, Kirkland table
    dy, dx = ds.pixel_size_A
    assert dy == pytest.approx(lam / (8 * 2.0e-3))
    assert dx == pytest.approx(lam / (10 * 1.5e-3))
    # default positions: regular grid from (0, 0)
    assert ds.positions_A.shape == (3, 4, 2)
    np.testing.assert_allclose(ds.positions_A[2, 3], (1.0, 1.2))
    assert ds.mean_total_intensity == pytest.approx(ds.intensities.sum((2, 3)).mean(), rel=1e-6)


def test_scan_rotation_convention():
    ds = _dataset(scan_rotation_deg=90.0)
    rot = ds.rotated_positions_A()
    # (y, x) = (0, 1) scan-frame point goes to y' = x sin θ = 1, x' = x cos θ = 0
    np.testing.assert_allclose(rot[0, 1], (ds.positions_A[0, 1, 1], 0.0), atol=1e-12)


def test_reciprocal_sampling_instead_of_angular(tmp_path):
    lam = 0.0417572  # 80 kV
    path = tmp_path / "r.h5"
    attrs = dict(GOOD_ATTRS)
    del attrs["angular_sampling_mrad"]
    attrs["reciprocal_sampling_invA"] = 1.2e-3 / lam
    _write_raw(path, np.ones((2, 2, 4, 4), np.float32), **attrs)
    ds = read_stem_h5(path)
    np.testing.assert_allclose(ds.angular_sampling_mrad, (1.2, 1.2), rtol=1e-4)


def test_inconsistent_calibration(tmp_path):
    path = tmp_path / "c.h5"
    _write_raw(path, np.ones((2, 2, 4, 4)), reciprocal_sampling_invA=0.5, **GOOD_ATTRS)
    with pytest.raises(InputError, match=r"c\.h5.*inconsistent.*angular_sampling_mrad"):
        read_stem_h5(path)


@pytest.mark.parametrize("attr", ["energy_eV", "convergence_semiangle_mrad", "scan_step_A"])
def test_missing_attribute(tmp_path, attr):
    path = tmp_path / "m.h5"
    attrs = {k: v for k, v in GOOD_ATTRS.items() if k != attr}
    _write_raw(path, np.ones((2, 2, 4, 4)), **attrs)
    with pytest.raises(InputError, match=rf"m\.h5: missing attribute '{attr}'"):
        read_stem_h5(path)


def test_missing_sampling(tmp_path):
    path = tmp_path / "s.h5"
    attrs = {k: v for k, v in GOOD_ATTRS.items() if k != "angular_sampling_mrad"}
    _write_raw(path, np.ones((2, 2, 4, 4)), **attrs)
    with pytest.raises(InputError, match="missing attribute 'angular_sampling_mrad'"):
        read_stem_h5(path)


def test_missing_intensities(tmp_path):
    path = tmp_path / "n.h5"
    _write_raw(path, None, **GOOD_ATTRS)
    with pytest.raises(InputError, match=r"n\.h5: missing dataset 'intensities'"):
        read_stem_h5(path)


def test_wrong_rank(tmp_path):
    path = tmp_path / "w.h5"
    _write_raw(path, np.ones((4, 4, 4)), **GOOD_ATTRS)
    with pytest.raises(InputError, match=r"w\.h5: 'intensities' must have rank 4.*rank 3"):
        read_stem_h5(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite(tmp_path, bad):
    data = np.ones((2, 2, 4, 4))
    data[1, 0, 2, 3] = bad
    path = tmp_path / "f.h5"
    _write_raw(path, data, **GOOD_ATTRS)
    with pytest.raises(
        InputError, match=r"f\.h5: 'intensities' contains 1 non-finite.*\(1, 0, 2, 3\)"
    ):
        read_stem_h5(path)


def test_mismatched_positions(tmp_path):
    path = tmp_path / "p.h5"
    _write_raw(path, np.ones((2, 3, 4, 4)), positions_A=np.zeros((3, 2, 2)), **GOOD_ATTRS)
    with pytest.raises(InputError, match=r"p\.h5: 'scan/positions_A' must have shape.*\(2, 3, 2\)"):
        read_stem_h5(path)


def test_unreadable_and_missing_file(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_text("this is not HDF5")
    with pytest.raises(InputError, match=r"junk\.h5: cannot be read as an HDF5 file"):
        read_stem_h5(path)
    with pytest.raises(InputError, match=r"nope\.h5: file not found"):
        read_stem_h5(tmp_path / "nope.h5")


@pytest.mark.parametrize(
    ("attr", "value", "pattern"),
    [
        ("energy_eV", -1.0, "'energy_eV' must be positive"),
        ("energy_eV", 0.0, "'energy_eV' must be positive"),
        ("scan_step_A", (0.3, 0.0), "'scan_step_A' must be finite and positive"),
        ("scan_step_A", (0.1, 0.2, 0.3), "'scan_step_A' must be a scalar or a \\(y, x\\) pair"),
        ("angular_sampling_mrad", -2.0, "'angular_sampling_mrad' must be finite and positive"),
        ("convergence_semiangle_mrad", np.nan, "'convergence_semiangle_mrad' must be finite"),
    ],
)
def test_bad_calibration_values(tmp_path, attr, value, pattern):
    path = tmp_path / "v.h5"
    attrs = dict(GOOD_ATTRS)
    attrs[attr] = value
    _write_raw(path, np.ones((2, 2, 4, 4)), **attrs)
    with pytest.raises(InputError, match=pattern):
        read_stem_h5(path)


def test_negative_counts_clipped_with_warning(caplog):
    data = np.ones((2, 2, 4, 4), np.float32)
    data[0, 0, 0, :2] = -3.0
    with caplog.at_level(logging.WARNING, logger="caviar_napari.data.dataset"):
        ds = _dataset(intensities=data)
    assert "2 negative value(s)" in caplog.text
    assert ds.intensities.min() == 0.0
    assert data.min() == -3.0  # the caller's array is not modified


def test_all_zero_rejected():
    with pytest.raises(InputError, match="all zero"):
        _dataset(intensities=np.zeros((2, 2, 4, 4)))
