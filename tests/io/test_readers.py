"""Readers: every supported format on a small file written here, and every bad-file case."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest

from caviar_napari._napari.readers import filename_patterns, get_reader
from caviar_napari.data.beam import wavelength_A
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io import readers
from caviar_napari.io.dataset import write_stem_h5
from caviar_napari.io.reader_common import make_dataset
from caviar_napari.io.readers import READERS, Reader, detect_kind, load_stem, reader_for

CAL = {
    "energy_eV": 60e3,
    "convergence_semiangle_mrad": 30.0,
    "scan_step_A": [0.3, 0.25],
    "angular_sampling_mrad": [1.5, 1.25],
}


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((3, 4, 6, 5)).astype(np.float32)


def _npy(tmp_path, data, sidecar=CAL, name="scan.npy"):
    path = tmp_path / name
    np.save(path, data)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def _check(ds: STEMDataset, data, step=(0.3, 0.25), angular=(1.5, 1.25)):
    np.testing.assert_array_equal(ds.intensities, data)
    np.testing.assert_allclose(ds.scan_step_A, step)
    np.testing.assert_allclose(ds.angular_sampling_mrad, angular, rtol=1e-9)
    assert ds.energy_eV == 60e3 and ds.convergence_semiangle_mrad == 30.0


# ------------------------------------------------------------------------------ good files
def test_spec_hdf5(tmp_path, data, caplog):
    path = tmp_path / "spec.h5"
    write_stem_h5(path, STEMDataset(data, 60e3, 30.0, (0.3, 0.25), (1.5, 1.25), defocus_A=40.0))
    ds = load_stem(path)
    _check(ds, data)
    assert ds.defocus_A == 40.0 and ds.source == "spec.h5"
    assert detect_kind(path) == "stem"
    with caplog.at_level(logging.WARNING):
        ds = load_stem(path, defocus_A=-20.0)
    assert ds.defocus_A == -20.0 and "defocus_A = 40.0 in the file overridden" in caplog.text


def test_npy_with_json_sidecar(tmp_path, data):
    side = dict(
        CAL, defocus_A=12.0, positions_A=(np.indices((3, 4)).transpose(1, 2, 0) * 0.3).tolist()
    )
    path = _npy(tmp_path, data, side)
    ds = load_stem(path)
    _check(ds, data)
    assert ds.defocus_A == 12.0
    np.testing.assert_allclose(ds.positions_A[2, 3], (0.6, 0.9))
    assert detect_kind(path) == "stem"


def test_npz_with_json_sidecar_named_or_single_array(tmp_path, data):
    named = tmp_path / "named.npz"
    np.savez(named, intensities=data, dark=np.zeros(3))
    named.with_suffix(".json").write_text(json.dumps(CAL))
    _check(load_stem(named), data)
    single = tmp_path / "single.npz"
    np.savez_compressed(single, data)
    rec = dict(CAL)
    del rec["angular_sampling_mrad"]
    rec["reciprocal_sampling_invA"] = [0.03, 0.025]
    single.with_suffix(".json").write_text(json.dumps(rec))
    lam = wavelength_A(60e3)
    _check(load_stem(single), data, angular=(0.03 * lam * 1e3, 0.025 * lam * 1e3))
    assert detect_kind(named) == detect_kind(single) == "stem"


def _write_emd(path, data, *, calibration=None, dims=None, extra_root_meta=None):
    """A py4DSTEM DataCube in EMD 1.0 layout (emdfile: root group, metadatabundle, array)."""
    with h5py.File(path, "w") as f:
        f.attrs["emd_group_type"] = "file"
        f.attrs["version_major"] = 1
        f.attrs["version_minor"] = 0
        f.attrs["authoring_program"] = "emdfile"
        root = f.create_group("experiment")
        root.attrs["emd_group_type"] = "root"
        root.attrs["python_class"] = "Root"
        if calibration is not None:
            bundle = root.create_group("metadatabundle")
            bundle.attrs["emd_group_type"] = "metadatabundle"
            md = bundle.create_group("calibration")
            md.attrs["emd_group_type"] = "metadata"
            md.attrs["python_class"] = "Calibration"
            for key, value in {**calibration, **(extra_root_meta or {})}.items():
                if isinstance(value, str):
                    ds = md.create_dataset(key, data=value.encode("utf-8"))
                    ds.attrs["type"] = b"string"
                else:
                    ds = md.create_dataset(key, data=value)
                    ds.attrs["type"] = b"number"
        cube = root.create_group("datacube")
        cube.attrs["emd_group_type"] = "array"
        cube.attrs["python_class"] = "DataCube"
        cube.create_dataset("data", data=data).attrs["units"] = "pixel intensity"
        names = ("Rx", "Ry", "Qx", "Qy")
        for n in range(data.ndim):
            vec, units = (dims or {}).get(n, ([0, 1], "pixels"))
            d = cube.create_dataset(f"dim{n}", data=np.asarray(vec, dtype=float))
            d.attrs["name"] = names[n] if n < 4 else f"dim{n}"
            d.attrs["units"] = units


def test_py4dstem_emd_calibration_mapped(tmp_path, data):
    path = tmp_path / "cube.emd"
    lam = wavelength_A(60e3)
    _write_emd(
        path,
        data,
        calibration={
            "R_pixel_size": 0.03,
            "R_pixel_units": "nm",
            "Q_pixel_size": 0.02,
            "Q_pixel_units": "A^-1",
            "QR_rotation_degrees": 0.0,
        },
    )
    assert detect_kind(path) == "stem"
    with pytest.raises(
        InputError,
        match=r"cube\.emd.*missing calibration item\(s\) energy_eV, "
        r"convergence_semiangle_mrad",
    ):
        load_stem(path)
    ds = load_stem(path, energy_eV=60e3, convergence_semiangle_mrad=30.0)
    _check(ds, data, step=(0.3, 0.3), angular=(0.02 * lam * 1e3, 0.02 * lam * 1e3))


def test_emd_dim_vectors_when_no_metadata(tmp_path, data):
    path = tmp_path / "dims.h5"
    _write_emd(
        path,
        data,
        dims={
            0: ([0, 0.3], "A"),
            1: ([0, 0.25], "A"),
            2: ([-4.5, -3.0], "mrad"),
            3: ([-3.75, -2.5], "mrad"),
        },
    )
    _check(load_stem(path, energy_eV=60e3, convergence_semiangle_mrad=30.0), data)


def test_emd_rotation_must_be_given_explicitly(tmp_path, data):
    path = tmp_path / "rot.emd"
    _write_emd(
        path,
        data,
        calibration={
            "R_pixel_size": 0.3,
            "R_pixel_units": "A",
            "Q_pixel_size": 1.5,
            "Q_pixel_units": "mrad",
            "QR_rotation_degrees": 12.0,
        },
    )
    with pytest.raises(InputError, match="QR_rotation_degrees = 12.*scan_rotation_deg"):
        load_stem(path, energy_eV=60e3, convergence_semiangle_mrad=30.0)
    ds = load_stem(path, energy_eV=60e3, convergence_semiangle_mrad=30.0, scan_rotation_deg=-12.0)
    assert ds.scan_rotation_deg == -12.0


def test_abtem_zarr_via_abtem_save(tmp_path):
    abtem = pytest.importorskip("abtem")
    import ase

    atoms = ase.Atoms("N", positions=[(2.0, 3.0, 1.0)], cell=[4.0, 5.0, 2.0], pbc=True)
    potential = abtem.Potential(atoms, gpts=(16, 20), slice_thickness=2.0)
    probe = abtem.Probe(energy=60e3, semiangle_cutoff=30)
    scan = abtem.GridScan(start=(1.0, 2.0), end=(1.9, 2.5), gpts=(3, 2), endpoint=False)
    with abtem.config.set({"diagnostics.progress_bar": False}):
        m = probe.scan(potential, scan=scan, detectors=abtem.PixelatedDetector(max_angle=None))
        m = m.compute()
        path = tmp_path / "measurement.zarr"
        m.to_zarr(str(path))
    assert detect_kind(path) == "stem"
    ds = load_stem(path)
    # abTEM (x, y, kx, ky) -> (scan_y, scan_x, ky, kx)
    np.testing.assert_allclose(ds.intensities, np.asarray(m.array).transpose(1, 0, 3, 2))
    assert ds.intensities.shape == (2, 3, 20, 16)
    np.testing.assert_allclose(ds.scan_step_A, (0.25, 0.3))
    np.testing.assert_allclose(ds.angular_sampling_mrad, m.angular_sampling[::-1], rtol=1e-6)
    np.testing.assert_allclose(ds.positions_A[1, 2], (2.0 + 0.25, 1.0 + 0.6))
    assert ds.energy_eV == 60e3 and ds.convergence_semiangle_mrad == 30


def _write_empad(folder, frames):
    """EMPAD: (scan_y, scan_x) frames of 128 x 130 float32 (2 footer rows) plus the XML."""
    sy, sx = frames.shape[:2]
    raw = np.zeros((sy, sx, 130, 128), dtype="<f4")
    raw[:, :, :128] = frames
    name = f"scan_x{sx}_y{sy}.raw"
    raw.tofile(folder / name)
    xml = folder / "empad.xml"
    xml.write_text(
        f"<root><raw_file filename='{name}'/><pix_x>{sx}</pix_x><pix_y>{sy}</pix_y></root>"
    )
    return xml


def test_empad_through_rosettasciio_asks_for_calibration(tmp_path):
    pytest.importorskip("rsciio")
    frames = np.random.default_rng(2).random((2, 3, 128, 128)).astype(np.float32)
    xml = _write_empad(tmp_path, frames)
    assert detect_kind(xml) == "stem"
    with pytest.raises(InputError) as err:
        load_stem(xml)
    msg = str(err.value)
    for item in (
        "empad.xml",
        "energy_eV",
        "convergence_semiangle_mrad",
        "scan_step_A",
        "angular_sampling_mrad",
    ):
        assert item in msg
    ds = load_stem(xml, **CAL)
    _check(ds, frames)
    raw = next(tmp_path.glob("*.raw"))  # opening the raw file finds its XML header
    assert detect_kind(raw) == "stem"
    np.testing.assert_array_equal(load_stem(raw, **CAL).intensities, frames)


def test_rosettasciio_missing_is_explained(tmp_path, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "rsciio" or m.startswith("rsciio.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rsciio", None)  # makes `import rsciio...` fail
    path = tmp_path / "scan.mib"
    path.write_bytes(b"MQ1,000001,00384,01,0256,0256,U08")
    with pytest.raises(InputError, match=r"scan\.mib.*needs rosettasciio"):
        load_stem(path, **CAL)


def test_detect_kind_reconstruction_atoms_and_others(tmp_path, data):
    recon = tmp_path / "recon.h5"
    with h5py.File(recon, "w") as f:
        f["object"] = np.ones((1, 1, 4, 4), np.complex64)
        f["probe"] = np.ones((1, 4, 4), np.complex64)
    atoms = tmp_path / "atoms.h5"
    with h5py.File(atoms, "w") as f:
        f["positions_A"] = np.zeros((1, 1, 3, 2))
        f["mean_positions_A"] = np.zeros((3, 2))
    assert detect_kind(recon) == "reconstruction"
    assert detect_kind(atoms) == "atoms"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    assert detect_kind(other) is None
    assert detect_kind(tmp_path / "absent.h5") is None
    (tmp_path / "notes.txt").write_text("hello")
    assert detect_kind(tmp_path / "notes.txt") is None
    assert detect_kind(_npy(tmp_path, data[0], name="three_d.npy")) is None
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    assert detect_kind(tmp_path / "broken.h5") is None
    (tmp_path / "folder").mkdir()
    assert detect_kind(tmp_path / "folder") is None
    np.savez(tmp_path / "three_d.npz", intensities=data[0])
    assert detect_kind(tmp_path / "three_d.npz") is None
    (tmp_path / "lonely.raw").write_bytes(b"\x00" * 64)  # no EMPAD header names it
    assert detect_kind(tmp_path / "lonely.raw") is None
    (tmp_path / "settings.xml").write_text("<config><a>1</a></config>")
    assert detect_kind(tmp_path / "settings.xml") is None


# ------------------------------------------------------------------------------ registry
def test_hdf_and_py4dstem_extensions_are_read_and_offered_to_napari(tmp_path, data):
    spec = tmp_path / "scan.hdf"
    write_stem_h5(spec, STEMDataset(data, 60e3, 30.0, (0.3, 0.25), (1.5, 1.25)))
    cube = tmp_path / "cube.py4dstem"
    _write_emd(cube, data, dims={0: ([0, 0.3], "A"), 1: ([0, 0.25], "A")})
    _check(load_stem(spec), data)
    ds = load_stem(
        cube, energy_eV=60e3, convergence_semiangle_mrad=30.0, angular_sampling_mrad=[1.5, 1.25]
    )
    _check(ds, data)
    assert detect_kind(spec) == detect_kind(cube) == "stem"
    assert get_reader(str(spec)) is not None and get_reader(str(cube)) is not None
    assert {"*.hdf", "*.py4dstem"} <= set(filename_patterns())


def test_registry_order_and_hdf5_by_content(tmp_path, data):
    odd = tmp_path / "scan.data"  # HDF5 under an extension no entry lists
    write_stem_h5(odd, STEMDataset(data, 60e3, 30.0, (0.3, 0.25), (1.5, 1.25)))
    assert reader_for(odd).name.startswith("HDF5")
    _check(load_stem(odd), data)
    assert reader_for(_npy(tmp_path, data)).extensions == (".npy",)
    assert reader_for(tmp_path) is None  # a folder that is no zarr store
    (tmp_path / "notes.txt").write_text("hello")
    assert reader_for(tmp_path / "notes.txt") is None
    extensions = [ext for r in READERS for ext in r.extensions]
    assert len(extensions) == len(set(extensions)), "an extension belongs to one entry"
    assert all(ext == ext.lower() and ext.startswith(".") for ext in extensions)


def test_lazy_entries_leave_the_data_in_the_file(tmp_path, data):
    """``lazy`` is what the loader does: a float32 ``.npy`` is memory-mapped (no copy), HDF5
    is read block by block (lazy, not mapped), an ``.npz`` is read whole (not lazy)."""
    npy = _npy(tmp_path, data)
    npz = tmp_path / "scan.npz"
    np.savez(npz, intensities=data)
    npz.with_suffix(".json").write_text(json.dumps(CAL))
    h5 = tmp_path / "scan.h5"
    write_stem_h5(h5, STEMDataset(data, 60e3, 30.0, (0.3, 0.25), (1.5, 1.25)))
    for path, lazy, mapped in ((npy, True, True), (npz, False, False), (h5, True, False)):
        ds = load_stem(path)
        assert isinstance(ds.intensities.base, np.memmap) == mapped, path.name
        assert reader_for(path).lazy == lazy, path.name
        _check(ds, data)


def test_adding_a_reader_is_one_entry(tmp_path, data, monkeypatch):
    """A new format: one registry entry (extension, sniffer, loader) reaches load_stem,
    detect_kind, the napari hook and the patterns napari.yaml must list."""
    path = tmp_path / "scan.tsv4d"
    path.write_text(json.dumps({"shape": data.shape, "values": data.ravel().tolist()}))

    def sniff(p):
        return "stem" if "shape" in p.read_text() else None

    def load(p, override, options):
        doc = json.loads(p.read_text())
        values = np.asarray(doc["values"], np.float32).reshape(doc["shape"])
        cal = readers.Calibration(**CAL).merged(override, p.name)
        return make_dataset(values, cal, p.name, options=options)

    with pytest.raises(InputError, match="unknown 4D-STEM file type"):
        load_stem(path)
    monkeypatch.setattr(readers, "READERS", (*READERS, Reader("test", (".tsv4d",), sniff, load)))
    _check(load_stem(path), data)
    assert detect_kind(path) == "stem" and get_reader(str(path)) is not None
    assert "*.tsv4d" in filename_patterns()


# ------------------------------------------------------------------------------ bad files
def test_error_missing_sidecar(tmp_path, data):
    path = _npy(tmp_path, data, sidecar=None)
    with pytest.raises(InputError, match=r"scan\.npy: JSON sidecar scan\.json not found"):
        load_stem(path)


def test_error_sidecar_missing_key_names_it(tmp_path, data):
    side = dict(CAL)
    del side["convergence_semiangle_mrad"]
    path = _npy(tmp_path, data, side)
    with pytest.raises(
        InputError,
        match=r"scan\.npy: missing calibration item\(s\) "
        r"convergence_semiangle_mrad; add them to scan\.json",
    ):
        load_stem(path)
    # ... and the same item given as a keyword completes it
    _check(load_stem(path, convergence_semiangle_mrad=30.0), data)


def test_error_sidecar_unknown_key_and_bad_json(tmp_path, data):
    path = _npy(tmp_path, data, dict(CAL, voltage_kV=60))
    with pytest.raises(
        InputError,
        match=r"scan\.json: unknown calibration item\(s\) "
        r"\['voltage_kV'\]",
    ):
        load_stem(path)
    path.with_suffix(".json").write_text("{energy_eV: 60000")
    with pytest.raises(InputError, match=r"scan\.json: cannot be read as JSON"):
        load_stem(path)


def test_error_inconsistent_samplings(tmp_path, data):
    path = _npy(tmp_path, data, dict(CAL, reciprocal_sampling_invA=[0.5, 0.5]))
    with pytest.raises(
        InputError,
        match=r"scan\.npy: inconsistent calibration: "
        r"'angular_sampling_mrad'",
    ):
        load_stem(path)
    lam = wavelength_A(60e3)
    consistent = dict(CAL, reciprocal_sampling_invA=[1.5e-3 / lam, 1.25e-3 / lam])
    _check(load_stem(_npy(tmp_path, data, consistent, name="ok.npy")), data)


def test_error_unknown_calibration_keyword(tmp_path, data):
    path = _npy(tmp_path, data)
    with pytest.raises(InputError, match=r"unknown calibration item\(s\) \['energy'\]"):
        load_stem(path, energy=60e3)


def test_error_unreadable_files(tmp_path):
    (tmp_path / "bad.h5").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match=r"bad\.h5: cannot be read as an HDF5 file"):
        load_stem(tmp_path / "bad.h5")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError, match=r"bad\.npy: cannot be read as a numpy file"):
        load_stem(tmp_path / "bad.npy")
    with pytest.raises(InputError, match=r"absent\.h5: file not found"):
        load_stem(tmp_path / "absent.h5")
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f["other"] = np.zeros(3)
    with pytest.raises(InputError, match=r"empty\.h5: no 4D-STEM data found"):
        load_stem(empty)


def test_error_wrong_rank(tmp_path, data):
    path = _npy(tmp_path, data[0])
    with pytest.raises(InputError, match=r"scan\.npy: the array must have rank 4.*rank 3"):
        load_stem(path)
    spec = tmp_path / "spec3d.h5"
    with h5py.File(spec, "w") as f:
        f["intensities"] = data[0]
        for k, v in CAL.items():
            f.attrs[k] = v
    with pytest.raises(InputError, match=r"spec3d\.h5: 'intensities' must have rank 4"):
        load_stem(spec)


def test_error_unknown_extension(tmp_path):
    path = tmp_path / "scan.tif"
    path.write_bytes(b"II*\x00")
    with pytest.raises(InputError, match=r"scan\.tif: unknown 4D-STEM file type '\.tif'"):
        load_stem(path)


def test_error_missing_calibration_names_the_item(tmp_path, data):
    path = tmp_path / "nocal.h5"
    _write_emd(
        path,
        data,
        calibration={
            "R_pixel_size": 0.3,
            "R_pixel_units": "A",
            "Q_pixel_size": 1,
            "Q_pixel_units": "pixels",
        },
    )
    with pytest.raises(InputError) as err:
        load_stem(path, energy_eV=60e3, convergence_semiangle_mrad=30.0)
    assert "nocal.h5" in str(err.value)
    assert "angular_sampling_mrad (or reciprocal_sampling_invA)" in str(err.value)
    assert "scan_step_A" not in str(err.value)


def test_error_npz_with_several_unnamed_arrays(tmp_path, data):
    path = tmp_path / "two.npz"
    np.savez(path, a=data, b=data)
    path.with_suffix(".json").write_text(json.dumps(CAL))
    with pytest.raises(
        InputError,
        match=r"two\.npz: holds arrays \['a', 'b'\]; name the "
        r"4D-STEM one 'intensities'",
    ):
        load_stem(path)
