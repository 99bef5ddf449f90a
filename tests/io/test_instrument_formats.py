"""Instrument formats built from their published layouts: Nion Swift (.ndata zip, HDF5 data
item), Dectris Arina/Quadro (NeXus master + data files, gzip and bitshuffle/LZ4), and, read
through rosettasciio, Quantum Detectors Merlin (.mib frames with their 384-byte headers +
.hdr), Gatan DigitalMicrograph 4 (the tag tree) and EMPAD (128 × 130 float32 raw frames + the
XML header, current and legacy); calibrations in conventions §1 units, lazy reading, crop and
binning, the transposed-detector attribute."""

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


# ------------------------------------------------------------------------------ Dectris filters
def test_dectris_bitshuffle_lz4_frames(tmp_path, data):
    """Arina data files compressed with bitshuffle/LZ4 (HDF5 filter 32008), as the detector
    writes them, read through hdf5plugin."""
    hdf5plugin = pytest.importorskip("hdf5plugin")
    frames = data.reshape(-1, 10, 12)
    master = tmp_path / "scan_master.h5"
    with h5py.File(tmp_path / "scan_data_000001.h5", "w") as g:
        d = g.create_dataset(
            "entry/data/data", data=frames, chunks=(1, 10, 12), **hdf5plugin.Bitshuffle()
        )
        assert 32008 in [d.id.get_create_plist().get_filter(i)[0] for i in range(1)]
    with h5py.File(master, "w") as f:
        f["entry/data/data_000001"] = h5py.ExternalLink("scan_data_000001.h5", "/entry/data/data")
        det = f.create_group("entry/instrument/detector")
        for name, value in (("x_pixel_size", 75e-6), ("y_pixel_size", 75e-6)):
            det.create_dataset(name, data=value).attrs["units"] = "m"
        det.create_dataset("detector_distance", data=50.0).attrs["units"] = "mm"
    ds = load_stem(
        master, scan_shape=(4, 6), energy_eV=200e3, convergence_semiangle_mrad=20.0,
        scan_step_A=0.3,
    )  # fmt: skip
    np.testing.assert_array_equal(ds.intensities, data.astype(np.float32))
    assert ds.angular_sampling_mrad == pytest.approx((1.5, 1.5))  # 75 µm / 50 mm


def test_dectris_missing_filter_is_one_line(tmp_path, data, monkeypatch):
    """Without hdf5plugin a bitshuffle-compressed data file is refused before anything is
    read, in one line naming the filter and the plugin."""
    import sys

    frames = data.reshape(-1, 10, 12)
    with h5py.File(tmp_path / "scan_data_000001.h5", "w") as g:
        d = g.create_dataset(
            "entry/data/data", shape=frames.shape, dtype=frames.dtype, chunks=(1, 10, 12),
            compression=32008, compression_opts=(0, 2), allow_unknown_filter=True,
        )  # fmt: skip
        assert d.id.get_create_plist().get_filter(0)[0] == 32008
    master = tmp_path / "scan_master.h5"
    with h5py.File(master, "w") as f:
        f["entry/data/data_000001"] = h5py.ExternalLink("scan_data_000001.h5", "/entry/data/data")
    real = h5py.h5z.filter_avail
    monkeypatch.setattr(h5py.h5z, "filter_avail", lambda i: False if i == 32008 else real(i))
    monkeypatch.setitem(sys.modules, "hdf5plugin", None)  # `import hdf5plugin` fails
    with pytest.raises(InputError) as err:
        load_stem(master, scan_shape=(4, 6), **_CAL)
    msg = str(err.value)
    assert "\n" not in msg and "data_000001" in msg
    assert "bitshuffle (HDF5 filter 32008)" in msg and "install hdf5plugin" in msg


# ------------------------------------------------------------------------------ rosettasciio
#: A complete calibration in conventions §1 units (what a format does not record).
_CAL = {
    "energy_eV": 200e3,
    "convergence_semiangle_mrad": 20.0,
    "scan_step_A": 0.3,
    "angular_sampling_mrad": 1.5,
}


def _mib_header(seq: int, ky: int, kx: int, depth: str, when: str, exposure_ns: int) -> bytes:
    """One 384-byte Merlin frame header (single chip), from the Merlin manual's MQ1 layout:
    ID, sequence number, data offset, chips, pixels X, pixels Y, pixel depth, sensor layout,
    chip select, time stamp, shutter (s), counter, colour mode, gain mode, 8 thresholds (keV),
    the DAC format and values, then the extended part: MQ1A, ISO time stamp, shutter (ns),
    counter depth; padded with NUL bytes to the data offset."""
    t = ",".join(["0.000000E+0"] * 8)
    dacs = ",".join(["000"] * 27)
    text = (
        f"MQ1,{seq:06d},00384,01,{kx:04d},{ky:04d},{depth},   1x1,01,"
        f"{when.replace('T', ' ')[:26]},{exposure_ns * 1e-9:.6f},0,0,0,{t},3RX,{dacs},"
        f"MQ1A,{when}Z,{exposure_ns}ns,12,"
    )
    raw = text.encode("ascii")
    assert len(raw) < 384
    return raw + b"\x00" * (384 - len(raw))


def _write_mib(path, frames, depth="U16", hdr=True):
    """A Merlin ``.mib``: per frame its header then the pixels, big-endian; and the ``.hdr``
    acquisition header (tab-separated ``key:\\tvalue`` lines between ``HDR,`` and ``End``).
    The time stamps jump at each scan row, as a line-triggered acquisition's do."""
    sy, sx, ky, kx = frames.shape
    dtype = {"U08": ">u1", "U16": ">u2", "U32": ">u4"}[depth]
    with open(path, "wb") as fp:
        for n, frame in enumerate(frames.reshape(-1, ky, kx)):
            row, col = divmod(n, sx)
            micro = row * 500_000 + col * 1000  # 1 ms per frame, 0.5 s fly-back per row
            when = f"2024-03-05T10:{micro // 60_000_000:02d}:{micro // 1_000_000 % 60:02d}." + (
                f"{micro % 1_000_000:06d}000"
            )
            fp.write(_mib_header(n + 1, ky, kx, depth, when, 1_000_000))
            fp.write(frame.astype(dtype).tobytes())
    if hdr:
        lines = [
            "HDR,",
            "Time and Date Stamp (day, mnth, yr, hr, min, s):\t05/03/2024 10:00:00",
            "Chip ID:\tW529_F5,-,-,-",
            "Assembly Size (NX1, 2X2):\t   1x1",
            "Counter Depth (number):\t12",
            f"Frames in Acquisition (Number):\t{sy * sx}",
            f"Frames per Trigger (Number):\t{sx}",
            "Trigger Start (Positive, Negative, Internal):\tRising Edge",
            "Software Version:\t0.77.0.16",
            "End\t",
        ]
        path.with_suffix(".hdr").write_text("\r\n".join(lines) + " " * 64)


@pytest.mark.parametrize("depth", ["U08", "U16", "U32"])
def test_merlin_mib_and_hdr(tmp_path, depth):
    """Merlin frames (.mib) with their acquisition header (.hdr): the scan shape from the
    header's frames per trigger, the patterns as rosettasciio orients them (rows reversed:
    Merlin's display orientation), and the calibration — which Merlin does not record — from
    the caller, in conventions §1 units."""
    pytest.importorskip("rsciio")
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 200, size=(4, 6, 10, 12)).astype(np.uint16)
    path = tmp_path / "scan.mib"
    _write_mib(path, frames, depth=depth)
    assert detect_kind(path) == "stem" and reader_for(path).lazy
    with pytest.raises(InputError) as err:
        load_stem(path)
    for item in ("scan.mib", "energy_eV", "convergence_semiangle_mrad", "scan_step_A"):
        assert item in str(err.value)
    ds = load_stem(path, **_CAL)
    np.testing.assert_array_equal(ds.intensities, frames[:, :, ::-1, :].astype(np.float32))
    assert ds.scan_step_A == (0.3, 0.3) and ds.angular_sampling_mrad == (1.5, 1.5)
    assert ds.energy_eV == 200e3 and ds.convergence_semiangle_mrad == 20.0
    binned = load_stem(path, bin=2, **_CAL)  # the zero angle (5, 6) first of the centre bin
    want = flipped_binned = frames[:, :, ::-1][:, :, 1:9].astype(float)
    want = flipped_binned.reshape(4, 6, 4, 2, 6, 2).sum(axis=(3, 5))
    np.testing.assert_allclose(binned.intensities, want)
    assert binned.angular_sampling_mrad == (3.0, 3.0)


def test_merlin_without_hdr(tmp_path):
    """Without the .hdr the scan's row length comes from the frames' time stamps (the jump at
    each row), or from ``scan_shape``."""
    pytest.importorskip("rsciio")
    frames = np.random.default_rng(6).integers(0, 50, size=(3, 5, 8, 8)).astype(np.uint16)
    path = tmp_path / "nohdr.mib"
    _write_mib(path, frames, hdr=False)
    flipped = frames[:, :, ::-1, :].astype(np.float32)
    np.testing.assert_array_equal(load_stem(path, **_CAL).intensities, flipped)
    given = load_stem(path, scan_shape=(5, 3), **_CAL)  # another split of the 15 frames
    np.testing.assert_array_equal(given.intensities, flipped.reshape(5, 3, 8, 8))


# --- Gatan DigitalMicrograph 4: tag tree written from the format's description (C. Boothroyd,
# "DM3/DM4 file format"): a big-endian header (version 4, the root group's length as uint64,
# i.e. the file's size less 24, byte order 1 = little-endian data), then the root tag group;
# each tag: type (20 group, 21 data), name length (uint16) and name, the tag's length (uint64,
# DM4 only), then for a group: sorted, open, the number of tags (uint64) and the tags; for
# data: "%%%%", the length of its info array and the array (uint64 each, big-endian), then the
# value in the file's byte order.  The file ends with eight zero bytes.
_DM_SIMPLE = {"h": 2, "i": 3, "H": 4, "I": 5, "f": 6, "d": 7, "?": 8, "b": 9, "B": 10}


def _dm_data(value) -> tuple[list[int], bytes]:
    """Info array and little-endian bytes of a DM tag value: a scalar (a numpy scalar keeps its
    type), text (an array of uint16 characters, as DM stores strings) or a 1D numpy array."""
    if isinstance(value, str):
        chars = np.frombuffer(value.encode("utf-16-le"), "<u2")
        return [20, 4, chars.size], chars.tobytes()
    if isinstance(value, np.ndarray):
        code = _DM_SIMPLE[value.dtype.char]
        return [20, code, value.size], value.astype(value.dtype.newbyteorder("<")).tobytes()
    value = np.asarray(value)
    if value.dtype.char == "l" or value.dtype.char == "q":
        value = value.astype(np.int32)
    return [_DM_SIMPLE[value.dtype.char]], value.astype(value.dtype.newbyteorder("<")).tobytes()


def _dm_tags(entries) -> bytes:
    """The bytes of a tag group's tags: ``entries`` is a list of ``(name, value)`` with a
    list value for a group (unnamed tags: name "")."""
    import struct

    out = b""
    for name, value in entries:
        label = name.encode("latin-1")
        if isinstance(value, list):
            body = struct.pack(">BBQ", 0, 1, len(value)) + _dm_tags(value)
            kind = 20
        else:
            info, payload = _dm_data(value)
            body = b"%%%%" + struct.pack(f">Q{len(info)}Q", len(info), *info) + payload
            kind = 21
        out += struct.pack(">BH", kind, len(label)) + label + struct.pack(">Q", len(body)) + body
    return out


def _write_dm4(path, data, calibrations, voltage_V):
    """A DM4 file holding a thumbnail and one 4D image ``data`` ``(Sy, Sx, Ky, Kx)`` float32;
    ``calibrations`` ``[(scale, units)]`` per C axis.  DM lists dimensions fastest first, so
    both lists are written reversed."""
    import struct

    def image(array, cal, tags):
        dims = [("", np.uint32(n)) for n in array.shape[::-1]]
        dimension = [
            ("", [("Origin", np.float32(0.0)), ("Scale", np.float32(s)), ("Units", u)])
            for s, u in cal[::-1]
        ]
        return [
            ("ImageData", [
                ("Calibrations", [
                    ("Brightness", [("Origin", np.float32(0.0)), ("Scale", np.float32(1.0)),
                                    ("Units", "counts")]),
                    ("Dimension", dimension),
                    ("DisplayCalibratedUnits", np.uint8(1)),
                ]),
                ("Data", np.ascontiguousarray(array, dtype=np.float32).ravel()),
                ("DataType", np.int32(2)),  # real4
                ("Dimensions", dims),
                ("PixelDepth", np.uint32(4)),
            ]),
            ("ImageTags", tags),
            ("Name", "4D STEM"),
            ("UniqueID", [("", np.uint32(7)), ("", np.uint32(1)), ("", np.uint32(2)),
                          ("", np.uint32(3))]),
        ]  # fmt: skip

    thumb = np.zeros((8, 8), np.float32)
    microscope = [
        ("Microscope Info", [
            ("Voltage", np.float64(voltage_V)),
            ("Illumination Mode", "STEM"),
            ("STEM Camera Length", np.float32(115.0)),
        ]),
    ]  # fmt: skip
    root = [
        ("ApplicationBounds", [("", np.int32(v)) for v in (0, 0, 800, 1200)]),
        ("ImageList", [
            ("", image(thumb, [(1.0, ""), (1.0, "")], [])),
            ("", image(data, calibrations, microscope)),
        ]),
        ("Thumbnails", [("", [("ImageIndex", np.uint32(0)),
                              ("SourceSize_Pixels", np.array([8, 8], np.int32))])]),
    ]  # fmt: skip
    body = struct.pack(">BBQ", 1, 0, len(root)) + _dm_tags(root)
    with open(path, "wb") as fp:
        fp.write(struct.pack(">IQI", 4, len(body), 1) + body + b"\x00" * 8)


def test_gatan_dm4(tmp_path):
    """A DM4 file built from the format's tag structure: the 4D image (not the thumbnail),
    its axes' calibrations (scan in nm, detector in 1/nm) and the voltage read into Å, 1/Å
    → mrad (with λ) and eV."""
    pytest.importorskip("rsciio")
    rng = np.random.default_rng(7)
    data = rng.random((4, 6, 10, 12)).astype(np.float32)
    path = tmp_path / "scan.dm4"
    cal = [(0.04, "nm"), (0.05, "nm"), (0.2, "1/nm"), (0.25, "1/nm")]
    _write_dm4(path, data, cal, voltage_V=200e3)
    assert detect_kind(path) == "stem"
    with pytest.raises(InputError) as err:  # α is not recorded
        load_stem(path)
    assert "missing calibration item(s) convergence_semiangle_mrad;" in str(err.value)
    ds = load_stem(path, convergence_semiangle_mrad=20.0)
    np.testing.assert_array_equal(ds.intensities, data)
    assert ds.scan_step_A == pytest.approx((0.4, 0.5))
    assert ds.energy_eV == pytest.approx(200e3)
    lam = wavelength_A(200e3)
    assert ds.angular_sampling_mrad == pytest.approx((0.02 * lam * 1e3, 0.025 * lam * 1e3))
    cropped = load_stem(path, convergence_semiangle_mrad=20.0, crop=(6, 8))
    np.testing.assert_array_equal(cropped.intensities, data[:, :, 2:8, 2:10])


# --- EMPAD: frames of 128 × 130 float32, little-endian (the last 2 rows per frame are the
# detector's metadata), and the XML header naming the raw file
def _write_empad_raw(folder, frames):
    sy, sx = frames.shape[:2]
    raw = np.zeros((sy, sx, 130, 128), dtype="<f4")
    raw[:, :, :128] = frames
    raw[:, :, 128:] = 1e9  # footer rows: must not show in the patterns
    name = f"scan_x{sx}_y{sy}.raw"
    raw.tofile(folder / name)
    return name


def test_empad_v1_2_header(tmp_path):
    """EMPAD 1.2 (the XML as the acquisition software writes it, one line): the scan shape
    from the raw file's name, the scan step from the field of view (stored × scale_factor, for
    the larger scan axis), the energy from high_voltage (V); the detector sampling is not
    recorded and must be given."""
    pytest.importorskip("rsciio")
    frames = np.random.default_rng(8).random((4, 6, 128, 128)).astype(np.float32)
    name = _write_empad_raw(tmp_path, frames)
    fov = 6 * 0.25e-10 * 0.72  # 6 positions of 0.25 Å, as stored (× scale_factor)
    xml = tmp_path / "scan.xml"
    xml.write_text(
        '<root name="scan"><timestamp timestamp="1709632800.0" '
        'isoformat="2024-03-05T10:00:00.000000"/><software_version>1.2.2  (2021-08-20)'
        f'</software_version><raw_file filename="{name}"/><exposure_time>1</exposure_time>'
        '<scan_parameters mode="acquire"><scan_size>0.6</scan_size><scan_resolution_y>4'
        "</scan_resolution_y><scan_resolution_x>6</scan_resolution_x></scan_parameters>"
        "<iom_measurements><scan_rotation>0.0</scan_rotation><full_scan_field_of_view>"
        f"<scale_factor>0.72</scale_factor><x>{fov!r}</x><y>{fov!r}</y>"
        "</full_scan_field_of_view><nominal_camera_length>0.369</nominal_camera_length>"
        "<high_voltage_state>True</high_voltage_state><high_voltage>300000.0</high_voltage>"
        "</iom_measurements></root>"
    )
    assert detect_kind(xml) == "stem" and reader_for(xml).lazy
    with pytest.raises(InputError) as err:
        load_stem(xml)
    assert (  # energy and scan step are recorded
        "missing calibration item(s) convergence_semiangle_mrad, angular_sampling_mrad (or "
        "reciprocal_sampling_invA);" in str(err.value)
    )
    ds = load_stem(xml, convergence_semiangle_mrad=25.0, angular_sampling_mrad=0.4)
    np.testing.assert_array_equal(ds.intensities, frames)
    assert ds.scan_step_A == pytest.approx((0.25, 0.25))
    assert ds.energy_eV == 300e3 and ds.angular_sampling_mrad == (0.4, 0.4)
    raw = tmp_path / name  # the raw file is read through the header that names it
    np.testing.assert_array_equal(
        load_stem(raw, convergence_semiangle_mrad=25.0, angular_sampling_mrad=0.4).intensities,
        frames,
    )


def test_empad_legacy_header(tmp_path):
    """The older EMPAD XML: scan shape in pix_x/pix_y, the field of view per axis (m) in
    optics.get_full_scan_field_of_view, and calibrated_pixelsize (× 1e9 = 1/nm) for the
    detector: read into Å and 1/Å → mrad."""
    pytest.importorskip("rsciio")
    frames = np.random.default_rng(9).random((4, 6, 128, 128)).astype(np.float32)
    name = _write_empad_raw(tmp_path, frames)
    xml = tmp_path / "legacy.xml"
    xml.write_text(
        f'<root><raw_file filename="{name}"/><pix_x>6</pix_x><pix_y>4</pix_y>'
        "<iom_measurements><optics.get_full_scan_field_of_view>(1.6e-09, 1.8e-09)"
        "</optics.get_full_scan_field_of_view><calibrated_pixelsize>1.826537e-10"
        "</calibrated_pixelsize></iom_measurements></root>"
    )
    ds = load_stem(xml, energy_eV=300e3, convergence_semiangle_mrad=25.0)
    np.testing.assert_array_equal(ds.intensities, frames)
    assert ds.scan_step_A == pytest.approx((4.0, 3.0))  # 16 Å / 4 rows, 18 Å / 6 columns
    lam = wavelength_A(300e3)
    assert ds.angular_sampling_mrad == pytest.approx((0.01826537 * lam * 1e3,) * 2)
