"""Resolution diagnostics (paper Fig. 3) on synthetic phases whose resolution is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from caviar_napari.analysis import diagnostics as dg
from caviar_napari.cli import main
from caviar_napari.data.config import ReconstructionConfig
from caviar_napari.data.recon import ReconState
from caviar_napari.io.diagnostics_file import read_diagnostics
from caviar_napari.io.reconstruction import save_reconstruction

PIXEL = (0.1, 0.1)


def lattice_phase(shape, spacing=1.3, sigma=0.12):
    """A square lattice of sharp Gaussian atoms (rich in high frequencies)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]] * PIXEL[0]
    py = np.mod(yy, spacing) - spacing / 2
    px = np.mod(xx, spacing) - spacing / 2
    return np.exp(-(py**2 + px**2) / (2 * sigma**2))


def low_pass(img, k_max):
    ky = np.fft.fftfreq(img.shape[0], PIXEL[0])
    kx = np.fft.fftfreq(img.shape[1], PIXEL[1])
    mask = np.hypot(ky[:, None], kx[None, :]) <= k_max
    return np.real(np.fft.ifft2(np.fft.fft2(img) * mask))


def test_optics_limits():
    o = dg.optics_limits(60e3, 35.0, 117.0)
    assert o.wavelength_A == pytest.approx(0.04866, abs=1e-4)
    assert o.double_aperture_A == pytest.approx(0.04866 / 0.07, rel=1e-3)  # 69.5 pm
    assert o.detector_A == pytest.approx(0.04866 / 0.152, rel=1e-3)
    assert o.depth_of_field_A == pytest.approx(79.45, abs=0.05)
    assert o.depth_resolution_A(0.035 / o.wavelength_A) == pytest.approx(o.depth_of_field_A)


@pytest.mark.parametrize(("k_cut", "noise"), [(1.2, 0.1), (2.0, 0.1), (2.0, 0.5)])
def test_information_limit_finds_the_cut_of_a_noisy_image(k_cut, noise):
    """A lattice low-passed at k_cut plus white noise: the limit is the highest Bragg ring
    below k_cut (square lattice of 1.3 Å: |k| = sqrt(h² + k²) / 1.3), within two rings."""
    rng = np.random.default_rng(0)
    shape = (128, 128)
    stack = np.stack(
        [low_pass(lattice_phase(shape), k_cut) + noise * rng.standard_normal(shape)
         for _ in range(6)]
    ).reshape(2, 3, *shape)  # fmt: skip
    spec = dg.power_spectrum(stack, PIXEL)
    info = dg.information_limit(spec, 0.0487)
    ring = spec.k_invA[1]
    hk = np.hypot(*np.mgrid[0:4, 0:4]).ravel() / 1.3
    expected = hk[hk <= k_cut].max()
    assert info.bound == ""
    assert info.k_invA == pytest.approx(expected, abs=2.01 * ring)  # Hann main lobe: ±2 px
    assert info.d_A == pytest.approx(1 / info.k_invA)
    assert info.d_over_wavelength == pytest.approx(info.d_A / 0.0487)


def test_information_limit_without_noise_plateau_is_a_bound():
    """No noise: the power keeps falling up to the band limit, which then bounds d."""
    shape = (128, 128)
    img = np.real(np.fft.ifft2(np.fft.fft2(lattice_phase(shape, sigma=0.2))))
    spec = dg.power_spectrum(img[None, None], PIXEL)
    info = dg.information_limit(spec, 0.0487)
    assert info.bound == "at least"
    assert info.k_invA == pytest.approx(0.85 * spec.band_limit_invA)


def test_depth_resolution_of_a_gaussian_depth_profile():
    """Columns whose phase has a Gaussian z-profile of σ: the k_z power of every ring falls to
    one half at sqrt(ln 2)/(2πσ), so Δz = 1/k_z,half = 2πσ/sqrt(ln 2)."""
    n_slices, dz, sigma = 32, 4.0, 10.0
    z = (np.arange(n_slices) - n_slices / 2) * dz
    prof = np.exp(-(z**2) / (2 * sigma**2))
    img = lattice_phase((96, 96))
    phase = prof[None, :, None, None] * img[None, None]
    kz = dg.kz_power(phase, [dz] * n_slices, PIXEL)
    optics = dg.optics_limits(200e3, 30.0)
    res = dg.depth_resolution(kz, 1 / 1.3, optics)
    assert res.bound == ""
    assert res.dz_A == pytest.approx(2 * math.pi * sigma / math.sqrt(math.log(2)), rel=0.05)
    assert abs(res.q_invA - 1 / 1.3) <= kz.k_r_invA[1] / 2  # the nearest ring
    assert res.optics_dz_A == pytest.approx(optics.depth_resolution_A(res.q_invA))
    assert res.single_scattering_dz_A == pytest.approx(
        2 / (res.q_invA * (2 * 0.030 + optics.wavelength_A * res.q_invA))
    )
    # a profile one slice thick does not fall within the sampled k_z: only a bound
    thin = np.zeros(n_slices)
    thin[3] = 1.0
    kz = dg.kz_power(thin[None, :, None, None] * img[None, None], [dz] * n_slices, PIXEL)
    res = dg.depth_resolution(kz, 1 / 1.3, optics)
    assert res.bound == "at most" and res.dz_A == 2 * dz


def test_rz_map_of_columns_in_one_slice():
    shape = (80, 80)
    cols = np.array([[2.0 + 1.3 * i, 2.0 + 1.3 * j] for i in range(4) for j in range(4)])
    yy, xx = np.mgrid[: shape[0], : shape[1]] * PIXEL[0]
    img = sum(np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 0.15**2)) for y, x in cols)
    phase = np.zeros((2, 5, *shape))
    phase[:, 2] = img
    rz = dg.rz_map(phase, [8.0] * 5, PIXEL, (0.0, 0.0), cols, r_max_A=0.6)
    assert rz.n_columns == 16
    assert int(np.argmax(rz.column_profile)) == 2
    assert rz.z_A.tolist() == [0.0, 8.0, 16.0, 24.0, 32.0]
    assert np.all(np.diff(rz.phase[2]) < 0)  # falls off with r
    assert rz.column_profile[2] == pytest.approx(1.0, abs=0.02)
    np.testing.assert_allclose(rz.r_A[:2], [0.0, 0.1 + 0.1 * (np.sqrt(2) - 1) / 2], atol=1e-12)
    # columns between pixels (all at the same half-pixel offset): the innermost ring still holds
    # the four nearest pixels, 0.07 Å from the centre: exp(-0.07² / (2 · 0.15²)) of the peak
    yy, xx = yy - 0.05, xx - 0.05  # pixel [0, 0] at (−0.05, −0.05) Å
    phase[:, 2] = sum(np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 0.15**2)) for y, x in cols)
    rz = dg.rz_map(phase, [8.0] * 5, PIXEL, (-0.05, -0.05), cols, r_max_A=0.6)
    assert rz.r_A[0] == pytest.approx(0.05 * np.sqrt(2))
    assert rz.column_profile[2] == pytest.approx(np.exp(-0.005 / 0.045), abs=0.02)


def test_cli_writes_diag_json_and_figures(tmp_path, capsys):
    shape = (96, 96)
    img = lattice_phase(shape)
    obj = np.zeros((2, 4, *shape))
    obj[:, 0] = img
    obj[:, 3] = np.roll(img, 5, axis=1)
    state = ReconState(
        object=np.exp(1j * 0.3 * obj).astype(np.complex64),
        probe=np.ones((1, 8, 8), np.complex64),
        tilt_mrad=np.zeros(2),
        loss=[1.0],
        pixel_size_A=PIXEL,
        object_origin_A=(0.0, 0.0),
        slice_thickness_A=np.full(4, 30.0),
        config=ReconstructionConfig(),
        scan_positions_A=np.array([[1.0, 1.0], [8.0, 8.0]]),
    )
    recon = tmp_path / "recon.h5"
    save_reconstruction(recon, state, source="missing.h5")
    out = tmp_path / "diag.h5"
    argv = ["diagnostics", str(recon), "--out", str(out), "--json"]
    assert main(argv) == 2  # no calibration: the source data is missing
    assert "--energy-eV and --alpha-mrad" in capsys.readouterr().err
    argv += ["--energy-eV", "60000", "--alpha-mrad", "35", "--reflection-invA", "0.769"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "depth of field 2λ/α² = 79.4 Å" in text and "depth resolution at q = 0.7" in text
    for name in ("diag.json", "diag_power.png", "diag_kz.png"):
        assert (tmp_path / name).stat().st_size > 0
    numbers = json.loads((tmp_path / "diag.json").read_text())
    assert numbers["n_slices"] == 4 and numbers["depth_of_field_formula"] == "2 λ / α²"
    back = read_diagnostics(out)
    assert back.numbers["wavelength_A"] == pytest.approx(numbers["wavelength_A"])
    assert back.kz_power.shape == (4, back.kz_k_r_invA.size)
    assert len(back.reflections) == 1
    # its own outputs (stamped) are replaced by a rerun; a figure it did not write is not
    assert json.loads((tmp_path / "diag.json").read_text())["kind"] == "diag"
    assert main(argv) == 0
    capsys.readouterr()
    (tmp_path / "diag_rz.png").write_bytes(b"someone else's figure")
    before = out.stat().st_mtime_ns
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "diag_rz.png: exists and was not written by caviar-napari" in err
    assert out.stat().st_mtime_ns == before  # checked before anything was written
    assert main([*argv, "--overwrite"]) == 0
