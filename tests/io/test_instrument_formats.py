"""Instrument formats built from their published layouts: Nion Swift (.ndata zip, HDF5 data
item) and Dectris Arina/Quadro (NeXus master + data files); calibrations in conventions §1
units, lazy reading, crop and binning, the transposed-detector attribute."""

from __future__ import annotations

import io
import json
import zipfile

import h5py
import numpy as np
import pytest

from caviar_napari.data.beam import wavelength_A
from caviar_napari.errors import InputError
from caviar_napari.io.dataset import write_stem_h5
from caviar_napari.io.instrument_formats import energy_from_wavelength_eV
from caviar_napari.io.readers import detect_kind, load_stem, reader_for


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    return rng.integers(0, 1000, size=(4, 6, 10, 12)).astype(np.uint16)


def _nion_props(shape):
    return {
        "type": "data-item",
        "version": 13,
        "collection_dimension_count": 2,
        "datum_dimension_count": 2,
        "is_sequence": False,
        "dimensional_calibrations": [
            {"offset": 0.0, "scale": 0.05, "units": "nm"},
            {"offset": 0.0, "scale": 0.04, "units": "nm"},
            {"offset": -0.01, "scale": 0.002, "units": "rad"},
            {"offset": -0.01, "scale": 0.0015, "units": "rad"},
        ],
        "metadata": {"hardware_source": {"high_tension": 60000.0}},
    }


def test_nion_ndata_zip(tmp_path, data):
    path = tmp_path / "item.ndata"
    buf = io.BytesIO()
    np.save(buf, data)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("data.npy", buf.getvalue())
        zf.writestr("metadata.json", json.dumps(_nion_props(data.shape)))
    assert detect_kind(path) == "stem" and reader_for(path).lazy
    ds = load_stem(path, convergence_semiangle_mrad=30.0)
    np.testing.assert_array_equal(ds.intensities, data.astype(np.float32))
    assert ds.scan_step_A == pytest.approx((0.5, 0.4))
    assert ds.angular_sampling_mrad == pytest.approx((2.0, 1.5))
    assert ds.energy_eV == 60000.0
    binned = load_stem(path, convergence_semiangle_mrad=30.0, bin=2)
    # the zero angle (pixel 5 of 10, 6 of 12) stays the first pixel of the centre bin: 4 × 6
    want = data[:, :, 1:9].astype(np.float64).reshape(4, 6, 4, 2, 6, 2).sum(axis=(3, 5))
    np.testing.assert_allclose(binned.intensities, want)
    assert binned.angular_sampling_mrad == pytest.approx((4.0, 3.0))
    with pytest.raises(InputError, match="convergence_semiangle_mrad"):
        load_stem(path)


def test_nion_hdf5_data_item(tmp_path, data):
    path = tmp_path / "item.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("data", data=data, chunks=(1, 1, 10, 12))
        d.attrs["properties"] = json.dumps(_nion_props(data.shape))
    assert detect_kind(path) == "stem"
    ds = load_stem(path, convergence_semiangle_mrad=30.0, crop=(6, 8))
    np.testing.assert_array_equal(ds.intensities, data[:, :, 2:8, 2:10].astype(np.float32))
    assert ds.angular_sampling_mrad == pytest.approx((2.0, 1.5))


def _dectris(tmp_path, frames, n_files=2):
    master = tmp_path / "scan_master.h5"
    per = -(-frames.shape[0] // n_files)
    with h5py.File(master, "w") as f:
        det = f.create_group("entry/instrument/detector")
        for name, value, units in (
            ("x_pixel_size", 75e-6, "m"),
            ("y_pixel_size", 75e-6, "m"),
            ("detector_distance", 0.05, "m"),
        ):
            det.create_dataset(name, data=value).attrs["units"] = units
        det.create_dataset("description", data="Dectris ARINA")
        lam = f.create_dataset("entry/instrument/beam/incident_wavelength", data=0.02508)
        lam.attrs["units"] = "A"
        group = f.create_group("entry/data")
        for i in range(n_files):
            name = f"scan_data_{i + 1:06d}.h5"
            with h5py.File(tmp_path / name, "w") as g:
                g.create_dataset(
                    "entry/data/data",
                    data=frames[i * per : (i + 1) * per],
                    chunks=(1, *frames.shape[1:]),
                    compression="gzip",
                )
            group[f"data_{i + 1:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
    return master


def test_dectris_master_and_data_files(tmp_path, data):
    frames = data.reshape(-1, 10, 12)
    master = _dectris(tmp_path, frames)
    assert detect_kind(master) == "stem"
    ds = load_stem(master, scan_shape=(4, 6), convergence_semiangle_mrad=20.0, scan_step_A=0.3)
    np.testing.assert_array_equal(ds.intensities, data.astype(np.float32))
    assert ds.angular_sampling_mrad == pytest.approx((1.5, 1.5))
    assert ds.energy_eV == pytest.approx(200e3, rel=1e-3)
    assert wavelength_A(energy_from_wavelength_eV(0.02508)) == pytest.approx(0.02508)
    with pytest.raises(InputError, match="not a square scan"):
        load_stem(master, convergence_semiangle_mrad=20.0, scan_step_A=0.3)


def test_transposed_attribute_and_centre_are_honoured(tmp_path, data):
    """A §6 file flagged ``detector_transposed`` with a pattern centre reads back swapped,
    cut to a window centred on that pixel (stored axis order in the attributes)."""
    from caviar_napari.data.dataset import STEMDataset

    ds = STEMDataset(data.astype(np.float32), 60e3, 30.0, 0.4, (1.0, 2.0))
    path = tmp_path / "t.h5"
    write_stem_h5(path, ds)
    with h5py.File(path, "r+") as f:
        f.attrs["detector_transposed"] = True
        f.attrs["pattern_centre_px"] = np.array([4.0, 7.0])  # stored (a, b)
    back = load_stem(path)
    swapped = data.astype(np.float32).transpose(0, 1, 3, 2)  # (kx, ky) → (ky, kx) = (12, 10)
    # centre (7, 4) in the swapped frame: the largest windows with it at [W//2] are 10 × 9
    np.testing.assert_array_equal(back.intensities, swapped[:, :, 2:12, 0:9])
    assert back.angular_sampling_mrad == (2.0, 1.0)
    assert back.detector_shape == (10, 9)
