"""Electron optics against known values, analytic cases and conventions §2 sign conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caviar_napari.core import optics
from caviar_napari.data.beam import wavelength_A
from caviar_napari.errors import InputError


def test_spatial_frequencies_fft_order():
    ky, kx = optics.spatial_frequencies((6, 5), (0.5, 0.25))
    assert ky.shape == (6, 1) and kx.shape == (1, 5)
    np.testing.assert_allclose(ky[:, 0], np.fft.fftfreq(6, 0.5))
    np.testing.assert_allclose(kx[0], np.fft.fftfreq(5, 0.25))


def test_band_limit_mask_is_two_thirds_disc():
    n, d = 96, 0.2
    mask = optics.band_limit_mask((n, n), d)
    ky, kx = optics.spatial_frequencies((n, n), d)
    k = np.sqrt(ky**2 + kx**2)
    cutoff = (2 / 3) * 0.5 / d
    assert np.all(mask[k <= cutoff * 0.999] == 1)
    assert np.all(mask[k > cutoff * 1.001] == 0)
    assert set(np.unique(mask)) == {0.0, 1.0}
    # area of the disc, in Fourier pixels: π (2/3 · n/2)²
    assert mask.sum() == pytest.approx(math.pi * (n / 3) ** 2, rel=0.02)
    # anisotropic pixels: the disc fits the coarser axis
    m2 = optics.band_limit_mask((64, 64), (0.2, 0.4))
    ky, kx = optics.spatial_frequencies((64, 64), (0.2, 0.4))
    assert np.all(m2[np.sqrt(ky**2 + kx**2) > (2 / 3) * 0.5 / 0.4 * 1.001] == 0)


def test_aperture_soft_edge():
    n, d, lam, alpha = 128, 0.1, wavelength_A(200e3), 20.0
    a = optics.aperture((n, n), d, lam, alpha)
    assert a[0, 0] == 1.0
    ky, kx = optics.spatial_frequencies((n, n), d)
    angle = lam * np.sqrt(ky**2 + kx**2) * 1e3  # mrad
    dalpha = lam / (n * d) * 1e3  # one Fourier pixel in mrad
    assert np.all(a[angle < alpha - dalpha / 2] == 1.0)
    assert np.all(a[angle > alpha + dalpha / 2] == 0.0)
    soft = (a > 0) & (a < 1)
    assert soft.any() and np.all(np.abs(angle[soft] - alpha) < dalpha / 2 + 1e-9)
    # area ≈ π r² in Fourier pixels with r = α / dα (the linear ramp is area preserving)
    assert a.sum() == pytest.approx(math.pi * (alpha / dalpha) ** 2, rel=0.01)
    hard = optics.aperture((n, n), d, lam, alpha, edge_px=0)
    assert set(np.unique(hard)) == {0.0, 1.0}


def test_chi_defocus_sign_and_aberration_terms():
    lam = wavelength_A(300e3)
    k = (np.array([[0.0], [0.3]]), np.array([[0.0, 0.4]]))
    k2 = k[0] ** 2 + k[1] ** 2
    chi = optics.aberration_chi(k, lam, defocus_A=100.0)
    np.testing.assert_allclose(chi, -math.pi * lam * k2 * 100.0)  # χ = πλk²C10, C10 = −Δf
    np.testing.assert_allclose(optics.aberration_chi(k, lam, aberrations={"C10": -100.0}), chi)
    # spherical aberration: (π/2) Cs λ³ k⁴, alias "Cs" = C30
    cs = optics.aberration_chi(k, lam, aberrations={"Cs": 1e7})
    np.testing.assert_allclose(cs, 0.5 * math.pi * 1e7 * lam**3 * k2**2)
    # two-fold astigmatism: largest along φ12 (φ measured from +x towards +y)
    phi12 = 0.4
    kk = 0.5
    phis = np.linspace(-math.pi, math.pi, 721)
    ky, kx = kk * np.sin(phis), kk * np.cos(phis)
    a = optics.aberration_chi((ky, kx), lam, aberrations={"C12": 50.0, "phi12": phi12})
    best = phis[np.argmax(a)]
    assert min(abs(best - phi12), abs(best - phi12 + math.pi), abs(best - phi12 - math.pi)) < 0.01
    np.testing.assert_allclose(a.max(), math.pi / lam * 50.0 * (lam * kk) ** 2, rtol=1e-5)


def test_chi_rejects_unknown_names():
    with pytest.raises(InputError, match="C99"):
        optics.aberration_chi((np.zeros(1), np.zeros(1)), 0.02, aberrations={"C99": 1.0})
    with pytest.raises(InputError, match="phi10"):
        optics.aberration_chi((np.zeros(1), np.zeros(1)), 0.02, aberrations={"phi10": 1.0})


def _centroid(img: np.ndarray) -> tuple[float, float]:
    y, x = np.indices(img.shape)
    return float((img * y).sum() / img.sum()), float((img * x).sum() / img.sum())


def test_probe_is_centred_normalised_and_has_the_aperture_spectrum():
    n, d = 64, 0.2
    p = optics.make_probe((n, n), d, 200e3, 25.0, defocus_A=30.0)
    assert p.shape == (n, n) and p.dtype == np.complex128
    assert np.sum(np.abs(p) ** 2) == pytest.approx(1.0, abs=1e-12)
    # point symmetric about [K//2, K//2] (periodic window): ψ(c + r) = ψ(c − r)
    i = (2 * (n // 2) - np.arange(n)) % n
    np.testing.assert_allclose(p[np.ix_(i, i)], p, atol=1e-14)
    assert np.unravel_index(np.argmax(np.abs(p)), p.shape) == (n // 2, n // 2)
    # odd window: still centred on [K//2]
    po = optics.make_probe((63, 65), d, 200e3, 25.0)
    assert np.unravel_index(np.argmax(np.abs(po)), po.shape) == (31, 32)
    spectrum = np.abs(np.fft.fft2(np.fft.ifftshift(p), norm="ortho"))
    amp = optics.aperture((n, n), d, wavelength_A(200e3), 25.0)
    np.testing.assert_allclose(spectrum, amp / np.sqrt(np.sum(amp**2)), atol=1e-12)


def test_defocused_probe_comes_to_focus_after_defocus_of_vacuum():
    """conventions §2: Δf = −C10 > 0 puts the crossover Δf below the entrance surface."""
    n, d, e, alpha, df = 128, 0.1, 200e3, 30.0, 80.0
    lam = wavelength_A(e)
    probe = optics.make_probe((n, n), d, e, alpha, defocus_A=df)
    pk = np.fft.fft2(probe, norm="ortho")
    dzs = np.arange(0.0, 160.1, 4.0)
    peaks = []
    for dz in dzs:
        prop = optics.fresnel_propagator((n, n), d, lam, dz, band_limit=None)
        peaks.append(np.max(np.abs(np.fft.ifft2(pk * prop, norm="ortho")) ** 2))
    best = dzs[int(np.argmax(peaks))]
    assert best == pytest.approx(df, abs=4.0)
    # the opposite sign would defocus further: propagating by −Δf does not focus
    assert peaks[int(np.argmax(peaks))] > 5 * peaks[0]


def test_probe_modes_orthogonal_decreasing_power_preserved():
    p = optics.make_probe((48, 48), 0.2, 200e3, 25.0, defocus_A=40.0) * 3.0  # power 9
    modes = optics.probe_modes(p, 5)
    assert modes.shape == (5, 48, 48)
    gram = np.einsum("iyx,jyx->ij", modes.conj(), modes)
    powers = np.real(np.diag(gram))
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-10)
    assert powers.sum() == pytest.approx(9.0, rel=1e-12)
    assert np.all(np.diff(powers) < 0) and powers[0] > 0.5 * powers.sum()
    # mode 0 is the base probe (same shape and phase, rescaled)
    np.testing.assert_allclose(modes[0] / np.sqrt(powers[0]), p / 3.0, atol=1e-12)
    # Hermite character: mode 1 ~ probe·H1(y) has a nodal line along y = centre (row),
    # mode 2 ~ probe·H1(x) a nodal column: not transposed
    c = 24
    i1 = np.abs(modes[1]) ** 2
    i2 = np.abs(modes[2]) ** 2
    assert i1[c, :].max() < 1e-3 * i1.max() and i1[:, c].max() > 0.1 * i1.max()
    assert i2[:, c].max() < 1e-3 * i2.max() and i2[c, :].max() > 0.1 * i2.max()


def test_probe_modes_input_errors():
    p = optics.make_probe((16, 16), 0.2, 200e3, 25.0)
    with pytest.raises(InputError, match="n_modes"):
        optics.probe_modes(p, 0)
    with pytest.raises(InputError, match="decay"):
        optics.probe_modes(p, 2, decay=1.5)


def test_fresnel_propagator_composition_and_band_limit():
    n, d, lam = 32, 0.25, wavelength_A(200e3)
    p1 = optics.fresnel_propagator((n, n), d, lam, 3.0, (1.0, -2.0))
    p2 = optics.fresnel_propagator((n, n), d, lam, 5.0, (1.0, -2.0))
    p12 = optics.fresnel_propagator((n, n), d, lam, 8.0, (1.0, -2.0))
    mask = optics.band_limit_mask((n, n), d)
    np.testing.assert_allclose(np.abs(p1), mask, atol=1e-14)
    np.testing.assert_allclose(p1 * p2, p12, atol=1e-12)
    stack = optics.fresnel_propagator((n, n), d, lam, [3.0, 5.0], (1.0, -2.0))
    assert stack.shape == (2, n, n)
    np.testing.assert_allclose(stack[1], p2)
    # formula at one frequency (no band-limit cut there)
    ky, kx = optics.spatial_frequencies((n, n), d)
    i, j = 2, 29
    arg = lam * (ky[i, 0] ** 2 + kx[0, j] ** 2) + 2 * (
        ky[i, 0] * math.tan(1e-3) + kx[0, j] * math.tan(-2e-3)
    )
    assert p1[i, j] == pytest.approx(np.exp(-1j * math.pi * 3.0 * arg), abs=1e-12)


@pytest.mark.parametrize("axis,shift_px", [(0, 10), (1, -6)])
def test_tilt_shifts_the_wave_by_dz_tan_alpha(axis, shift_px):
    """A tilt (α_y, α_x) moves the wave by dz·tan α along (y, x): here a whole-pixel roll."""
    n, d, lam, dz = 64, 0.2, wavelength_A(200e3), 100.0
    alpha_mrad = math.atan(shift_px * d / dz) * 1e3
    tilt = (alpha_mrad, 0.0) if axis == 0 else (0.0, alpha_mrad)
    probe = optics.make_probe((n, n), d, 200e3, 20.0)
    untilted = np.fft.ifft2(np.fft.fft2(probe) * optics.fresnel_propagator((n, n), d, lam, dz))
    tilted = np.fft.ifft2(np.fft.fft2(probe) * optics.fresnel_propagator((n, n), d, lam, dz, tilt))
    np.testing.assert_allclose(tilted, np.roll(untilted, shift_px, axis=axis), atol=1e-12)
