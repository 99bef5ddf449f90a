"""Multislice forward model: windows, definitions, conservation laws and the conventions of §2."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from caviar_napari.core import kernels, optics
from caviar_napari.core.backend import get_backend
from caviar_napari.core.multislice import MultisliceModel, window_corners
from caviar_napari.data.beam import interaction_constant, wavelength_A
from caviar_napari.errors import InputError

E_EV = 200e3
LAM = wavelength_A(E_EV)
SIGMA = interaction_constant(E_EV)
D = 0.2  # Å per pixel
DOUBLE = get_backend("cpu", "double")


def model(positions, shape, window=None, dz=(2.0,), backend=DOUBLE, **kw) -> MultisliceModel:
    return MultisliceModel(
        backend,
        wavelength_A=LAM,
        pixel_size_A=D,
        slice_thickness_A=dz,
        positions_px=np.asarray(positions, dtype=float),
        object_shape=shape,
        window=window,
        **kw,
    )


def random_phase_object(rng, shape, strength=0.4):
    return np.exp(1j * strength * rng.standard_normal(shape))


def test_window_corners_and_remainders():
    corners, rem = window_corners([[10.49, 3.5], [10.5, 4.2], [7.0, 5.75]], (8, 7))
    np.testing.assert_array_equal(corners, [[6, 1], [7, 1], [3, 3]])  # floor(p + ½) − K//2
    np.testing.assert_allclose(rem, [[0.49, -0.5], [-0.5, 0.2], [0.0, -0.25]], atol=1e-12)
    m = model([[10.49, 3.5]], (20, 20), (8, 7))
    np.testing.assert_array_equal(m.corners, [[6, 1]])
    assert m.window_corners is window_corners


def test_windows_leaving_the_object_are_input_errors():
    with pytest.raises(InputError, match=r"positions_px\[1\].*leaves the 20×20 object"):
        model([[10.0, 10.0], [10.0, 17.0]], (20, 20), (8, 8))
    with pytest.raises(InputError, match="positions_px"):
        model([[np.nan, 1.0]], (20, 20), (8, 8))


def test_shape_and_input_errors():
    m = model([[10.0, 10.0]], (20, 20), (8, 8), dz=(1.0, 1.0))
    probe = np.ones((1, 8, 8), complex)
    with pytest.raises(InputError, match=r"object must be \(N, 2, 20, 20\)"):
        m.intensities(np.ones((1, 1, 20, 20)), probe)
    with pytest.raises(InputError, match="probe must be"):
        m.intensities(np.ones((1, 2, 20, 20)), np.ones((1, 6, 8)))
    with pytest.raises(InputError, match="tilt_mrad"):
        m.intensities(np.ones((1, 2, 20, 20)), probe, (1.0, 2.0, 3.0))
    with pytest.raises(InputError, match="amplitudes"):
        m.loss_and_gradient(np.ones((1, 2, 20, 20)), probe)
    with pytest.raises(InputError, match="slice_thickness_A"):
        model([[10.0, 10.0]], (20, 20), (8, 8), dz=(1.0, -1.0))
    with pytest.raises(InputError, match="loss"):
        model([[10.0, 10.0]], (20, 20), (8, 8), loss="l3")
    with pytest.raises(InputError, match="data have 2 patterns"):
        MultisliceModel(
            DOUBLE,
            wavelength_A=LAM,
            pixel_size_A=D,
            slice_thickness_A=[1.0],
            positions_px=[[10.0, 10.0]],
            object_shape=(20, 20),
            amplitudes=np.ones((2, 8, 8)),
        )


def test_parseval_pure_phase_object():
    """Σ_k I = probe power for a pure-phase object (unitary FFTs, unitary shifts)."""
    rng = np.random.default_rng(0)
    k = 32
    probe = optics.probe_modes(optics.make_probe((k, k), D, E_EV, 20.0, 30.0), 3) * 5.0
    # higher Hermite modes reach beyond the band limit: project them onto it first
    probe = np.fft.ifft2(np.fft.fft2(probe) * optics.band_limit_mask((k, k), D))
    power = np.sum(np.abs(probe) ** 2)
    pos = rng.uniform(17, 23, size=(6, 2))
    # one slice: exact for any phase
    m1 = model(pos, (40, 40), (k, k))
    obj = random_phase_object(rng, (2, 1, 40, 40), 1.0)
    i1 = m1.intensities(obj, probe, (1.0, -2.0))
    assert i1.shape == (6, k, k) and i1.dtype == np.float64
    np.testing.assert_allclose(i1.sum(axis=(1, 2)), power, rtol=1e-12)
    # three slices, smooth weak phase, probe well inside the band limit: almost nothing is
    # scattered beyond the band limit (only the cut of the object at the window's edges leaks)
    base = 5.0 * optics.make_probe((k, k), D, E_EV, 15.0, 30.0)[None]
    ky, kx = optics.spatial_frequencies((40, 40), D)
    low = (np.sqrt(ky**2 + kx**2) < 0.05 / D).astype(float)
    phase = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((2, 3, 40, 40))) * low))
    obj3 = np.exp(1j * 0.2 * phase / np.abs(phase).max())
    m3 = model(pos, (40, 40), (k, k), dz=(2.0, 3.0, 1.5))
    i3 = m3.intensities(obj3, base, (1.0, -2.0))
    np.testing.assert_allclose(i3.sum(axis=(1, 2)), 25.0, rtol=1e-5)
    # FFT (unshifted) order: in vacuum the bright-field disc sits at pixel [0, 0]
    vac = m1.intensities(np.ones((1, 1, 40, 40)), probe[:1])
    shifted = np.fft.fftshift(vac[0])
    assert vac[0][0, 0] == pytest.approx(vac[0].max(), rel=1e-6)
    np.testing.assert_allclose(
        shifted, shifted[::-1, ::-1][np.ix_(range(-1, k - 1), range(-1, k - 1))], atol=1e-12
    )


def test_mean_over_states_sum_over_modes():
    rng = np.random.default_rng(1)
    k, shape = 16, (24, 24)
    pos = rng.uniform(10, 14, size=(5, 2))
    probe = optics.probe_modes(optics.make_probe((k, k), D, E_EV, 25.0, 20.0), 2)
    obj = random_phase_object(rng, (3, 2, *shape)) * (1 - 0.1 * rng.random((3, 2, *shape)))
    m = model(pos, shape, (k, k), dz=(2.0, 2.5))
    full = m.intensities(obj, probe, (0.5, 1.0))
    parts = np.array(
        [
            [m.intensities(obj[n : n + 1], probe[j : j + 1], (0.5, 1.0)) for j in range(2)]
            for n in range(3)
        ]
    )
    np.testing.assert_allclose(full, parts.sum(axis=1).mean(axis=0), rtol=1e-12, atol=1e-15)
    waves = m.exit_waves(obj, probe, (0.5, 1.0))
    assert waves.shape == (3, 5, 2, k, k)
    np.testing.assert_allclose(full, (np.abs(waves) ** 2).sum(axis=(0, 2)) / 3, rtol=1e-12)


def test_batching_and_indices_do_not_change_results():
    rng = np.random.default_rng(2)
    k, shape = 16, (30, 30)
    pos = rng.uniform(9, 21, size=(7, 2))
    probe = optics.probe_modes(optics.make_probe((k, k), D, E_EV, 25.0, 20.0), 2)
    obj = random_phase_object(rng, (2, 2, *shape))
    amp = rng.random((7, k, k))
    kw = dict(dz=(2.0, 3.0), amplitudes=amp)
    ref = model(pos, shape, batch_size=7, **kw)
    i_ref = ref.intensities(obj, probe, (1.0, 0.5))
    l_ref, g_ref = ref.loss_and_gradient(obj, probe, (1.0, 0.5))
    for bs in (1, 3, None):
        m = model(pos, shape, batch_size=bs, **kw)
        np.testing.assert_allclose(m.intensities(obj, probe, (1.0, 0.5)), i_ref, rtol=1e-12)
        loss, g = m.loss_and_gradient(obj, probe, (1.0, 0.5))
        assert loss == pytest.approx(l_ref, rel=1e-12)
        for key in ("object", "probe", "tilt"):
            np.testing.assert_allclose(
                g[key], g_ref[key], rtol=1e-10, atol=1e-14 * np.abs(g_ref[key]).max()
            )
    sub = ref.intensities(obj, probe, (1.0, 0.5), indices=[4, 0])
    np.testing.assert_allclose(sub, i_ref[[4, 0]], rtol=1e-12)
    # the loss over a subset is that subset's share of the total
    parts = sum(ref.loss(obj, probe, (1.0, 0.5), indices=[i]) for i in range(7))
    assert parts == pytest.approx(l_ref, rel=1e-12)


def test_threads_give_the_same_deterministic_result():
    """CPU threads (one run of consecutive batches each) change neither values nor, between
    calls, a single bit: chunk sums are added in a fixed order."""
    rng = np.random.default_rng(4)
    k, shape = 16, (34, 34)
    pos = rng.uniform(9, 25, size=(11, 2))
    probe = optics.probe_modes(optics.make_probe((k, k), D, E_EV, 25.0, 20.0), 2)
    obj = random_phase_object(rng, (3, 2, *shape))
    amp = rng.random((11, k, k))
    serial = model(
        pos,
        shape,
        dz=(2.0, 3.0),
        amplitudes=amp,
        batch_size=2,
        backend=dataclasses.replace(DOUBLE, workers=1),
    )
    threaded = model(
        pos,
        shape,
        dz=(2.0, 3.0),
        amplitudes=amp,
        batch_size=2,
        backend=dataclasses.replace(DOUBLE, workers=3),
    )
    l1, g1 = serial.loss_and_gradient(obj, probe, (0.4, 0.2))
    l3, g3 = threaded.loss_and_gradient(obj, probe, (0.4, 0.2))
    l3b, g3b = threaded.loss_and_gradient(obj, probe, (0.4, 0.2))
    assert l3 == pytest.approx(l1, rel=1e-13) and l3 == l3b
    for key in ("object", "probe", "tilt"):
        np.testing.assert_allclose(g3[key], g1[key], rtol=1e-11, atol=1e-14 * np.abs(g1[key]).max())
        np.testing.assert_array_equal(g3[key], g3b[key])
    np.testing.assert_allclose(
        threaded.intensities(obj, probe, (0.4, 0.2)),
        serial.intensities(obj, probe, (0.4, 0.2)),
        rtol=1e-13,
    )


def test_single_precision_agrees_with_double():
    rng = np.random.default_rng(3)
    k, shape = 16, (26, 26)
    pos = rng.uniform(9, 17, size=(4, 2))
    probe = optics.probe_modes(optics.make_probe((k, k), D, E_EV, 25.0, 20.0), 2)
    obj = random_phase_object(rng, (2, 2, *shape))
    amp = rng.random((4, k, k))
    md = model(pos, shape, dz=(2.0, 2.0), amplitudes=amp)
    ms = model(pos, shape, dz=(2.0, 2.0), amplitudes=amp, backend=get_backend("cpu"))
    i_s = ms.intensities(obj, probe, (1.0, 0.0))
    assert i_s.dtype == np.float32
    np.testing.assert_allclose(i_s, md.intensities(obj, probe, (1.0, 0.0)), rtol=1e-4, atol=1e-7)
    ls, gs = ms.loss_and_gradient(obj, probe, (1.0, 0.0))
    ld, gd = md.loss_and_gradient(obj, probe, (1.0, 0.0))
    assert gs["object"].dtype == np.complex64 and gs["probe"].dtype == np.complex64
    assert ls == pytest.approx(ld, rel=1e-4)
    for key in ("object", "probe", "tilt"):
        scale = np.abs(gd[key]).max()
        np.testing.assert_allclose(gs[key], gd[key], atol=1e-4 * scale)


def test_defocused_probe_focuses_after_defocus_of_vacuum_slices():
    """Probe with Δf > 0 through two vacuum slices: the exit wave is sharpest when dz = Δf."""
    k, df = 64, 60.0
    probe = optics.make_probe((k, k), D, E_EV, 25.0, defocus_A=df)[None]
    peaks = {}
    for dz in (0.0, 20.0, 40.0, 50.0, 55.0, 60.0, 65.0, 70.0, 80.0, 100.0):
        m = model([[40.0, 40.0]], (80, 80), (k, k), dz=(max(dz, 1e-9), 1.0))
        psi = np.fft.ifft2(m.exit_waves(np.ones((1, 2, 80, 80)), probe)[0, 0, 0], norm="ortho")
        peaks[dz] = np.max(np.abs(psi) ** 2)
    assert max(peaks, key=peaks.get) == 60.0
    assert peaks[60.0] > 4 * peaks[0.0]


def _gaussian_bump(shape, centre, sigma):
    y, x = np.indices(shape, dtype=float)
    return np.exp(-((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / (2 * sigma**2))


def test_positive_phase_bump_attracts_the_beam_and_lights_the_adf_at_its_position():
    """O = exp(iσV), V > 0 on the atom: the beam is deflected towards it (centre of mass of the
    pattern points to the atom) and a virtual ADF map peaks at the atom's (y, x)."""
    k, shape = 32, (48, 56)
    y0, x0 = 22.3, 29.6  # atom position in object pixels (deliberately not symmetric)
    potential = 600.0 * _gaussian_bump(shape, (y0, x0), 1.2)  # V·Å, peak σV ≈ 0.44 rad
    obj = np.exp(1j * SIGMA * potential)[None, None]
    assert np.angle(obj[0, 0, round(y0), round(x0)]) > 0.4  # phase positive on the atom
    ys, xs = np.arange(16.0, 33.0), np.arange(16.0, 41.0)
    grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    probe = optics.make_probe((k, k), D, E_EV, 25.0)[None]
    m = model(grid, shape, (k, k))
    inten = m.intensities(obj, probe).reshape(ys.size, xs.size, k, k)
    ky, kx = np.fft.fftfreq(k)[:, None], np.fft.fftfreq(k)[None, :]
    total = inten.sum(axis=(2, 3))
    com_y = (inten * ky).sum(axis=(2, 3)) / total
    com_x = (inten * kx).sum(axis=(2, 3)) / total
    # on the row through the atom, the x deflection points to the atom; likewise y on its column
    row = int(np.argmin(np.abs(ys - y0)))
    col = int(np.argmin(np.abs(xs - x0)))
    far_x = np.abs(xs - x0) > 1.5
    far_y = np.abs(ys - y0) > 1.5
    assert np.all(np.sign(com_x[row, far_x]) == np.sign(x0 - xs[far_x]))
    assert np.all(np.sign(com_y[far_y, col]) == np.sign(y0 - ys[far_y]))
    # virtual ADF detector beyond the bright field disc
    angle = LAM * np.sqrt((ky / D) ** 2 + (kx / D) ** 2) * 1e3
    adf = (angle > 35.0) & (angle < 60.0)
    adf_map = (inten * adf).sum(axis=(2, 3))
    iy, ix = np.unravel_index(np.argmax(adf_map), adf_map.shape)
    assert abs(ys[iy] - y0) <= 1.0 and abs(xs[ix] - x0) <= 1.0
    # the sub-pixel remainder is honoured: a finer scan centres the ADF peak within 0.25 px
    fine = np.stack(
        np.meshgrid(y0 + np.arange(-1, 1.01, 0.25), x0 + np.arange(-1, 1.01, 0.25), indexing="ij"),
        axis=-1,
    ).reshape(-1, 2)
    mf = model(fine, shape, (k, k))
    fmap = (mf.intensities(obj, probe) * adf).sum(axis=(1, 2)).reshape(9, 9)
    fy, fx = np.unravel_index(np.argmax(fmap), fmap.shape)
    assert (fy, fx) == (4, 4)
    assert math.isclose(fmap[4, 3], fmap[4, 5], rel_tol=0.02)  # symmetric about the atom


def test_window_sums_equal_the_scatter_plan_layout():
    """The CPU sums the object gradient window by window (states first); the GPU layout
    (states last, one scatter-add per batch) gives the same gradient, checked here on the CPU
    through its sparse scatter plan."""
    rng = np.random.default_rng(8)
    k, shape = 16, (34, 36)
    pos = rng.uniform(9, 25, size=(9, 2))
    probe = optics.probe_modes(optics.make_probe((k, k), D, E_EV, 25.0, 20.0), 2)
    obj = random_phase_object(rng, (3, 2, *shape))
    amp = rng.random((9, k, k))
    windows = model(pos, shape, dz=(2.0, 3.0), amplitudes=amp, batch_size=4)
    scatter = model(pos, shape, dz=(2.0, 3.0), amplitudes=amp, batch_size=4)
    assert windows._window_sums
    scatter._window_sums = False
    lw, gw = windows.loss_and_gradient(obj, probe, (0.4, 0.2))
    ls, gs = scatter.loss_and_gradient(obj, probe, (0.4, 0.2))
    assert lw == ls
    for key in ("object", "probe", "tilt"):
        np.testing.assert_allclose(gw[key], gs[key], rtol=1e-12, atol=1e-14 * np.abs(gs[key]).max())


@pytest.mark.skipif(not kernels.has_jit(), reason="needs numba")
def test_numba_kernels_equal_the_numpy_path():
    """The CPU model with its numba kernels (the default when numba is installed) and with the
    plain numpy definitions give the same loss and gradients, and repeat bit for bit."""
    rng = np.random.default_rng(9)
    k, shape = 16, (34, 36)
    pos = rng.uniform(9, 25, size=(9, 2))
    probe = optics.probe_modes(optics.make_probe((k, k), D, E_EV, 25.0, 20.0), 2)
    obj = random_phase_object(rng, (3, 3, *shape))
    amp = rng.random((9, k, k))
    runs = {}
    for jit in (False, True):
        backend = dataclasses.replace(DOUBLE, jit=jit)
        m = model(pos, shape, dz=(2.0, 3.0, 1.0), amplitudes=amp, batch_size=4, backend=backend)
        runs[jit] = m.loss_and_gradient(obj, probe, (0.4, 0.2))
        again = m.loss_and_gradient(obj, probe, (0.4, 0.2))
        assert again[0] == runs[jit][0]
        for key in ("object", "probe", "tilt"):
            np.testing.assert_array_equal(again[1][key], runs[jit][1][key])
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-13)
    for key in ("object", "probe", "tilt"):
        ref = runs[False][1][key]
        np.testing.assert_allclose(
            runs[True][1][key], ref, rtol=1e-11, atol=1e-13 * np.abs(ref).max()
        )
