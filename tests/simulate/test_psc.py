"""Partial spatial coherence equals explicit Gaussian averaging of neighbouring patterns."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.errors import InputError
from caviar_napari.simulate.psc import (
    FWHM_PER_SIGMA,
    gaussian_scan_average,
    psc_margin,
    scan_weights_1d,
)


def _explicit_average(data, step, fwhm, margin):
    """Reference: loops over output points and their rectangular neighbourhood."""
    sigma = fwhm / FWHM_PER_SIGMA
    my, mx = margin
    sy, sx = data.shape[0] - 2 * my, data.shape[1] - 2 * mx
    out = np.zeros((sy, sx) + data.shape[2:])
    for i in range(sy):
        for j in range(sx):
            total = 0.0
            for a in range(-my, my + 1):
                for b in range(-mx, mx + 1):
                    w = np.exp(-((a * step[0]) ** 2 + (b * step[1]) ** 2) / (2 * sigma**2))
                    out[i, j] += w * data[i + my + a, j + mx + b]
                    total += w
            out[i, j] /= total
    return out


def test_fwhm_sigma_relation():
    assert FWHM_PER_SIGMA == pytest.approx(2.3548200450309493)


@pytest.mark.parametrize(("step", "fwhm"), [((0.3, 0.3), 0.47), ((0.25, 0.4), 0.6)])
def test_psc_equals_explicit_gaussian_average(step, fwhm):
    margin = psc_margin(step, fwhm)
    sigma = fwhm / FWHM_PER_SIGMA
    assert margin == tuple(int(np.ceil(3 * sigma / s)) for s in step)
    rng = np.random.default_rng(0)
    data = rng.random((5 + 2 * margin[0], 4 + 2 * margin[1], 3, 2))
    got = gaussian_scan_average(data, step, fwhm)
    np.testing.assert_allclose(got, _explicit_average(data, step, fwhm, margin), rtol=1e-12)


def test_psc_preserves_total_and_blurs():
    step, fwhm = (0.3, 0.3), 0.47
    my, mx = psc_margin(step, fwhm)
    data = np.zeros((2 * my + 3, 2 * mx + 3, 1, 1))
    data[my + 1, mx + 1] = 1.0  # a single bright pattern in the middle of the 3 x 3 output
    out = gaussian_scan_average(data, step, fwhm)[..., 0, 0]
    assert out[1, 1] < 1.0 and out[1, 1] == out.max()
    np.testing.assert_allclose(out, out.T)  # isotropic for equal steps
    w = scan_weights_1d(3, my, 0.3, fwhm / FWHM_PER_SIGMA)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)


def test_zero_fwhm_is_identity_and_bad_input():
    data = np.random.default_rng(1).random((3, 3, 2, 2))
    np.testing.assert_array_equal(gaussian_scan_average(data, 0.5, 0.0), data)
    assert psc_margin(0.5, 0.0) == (0, 0)
    with pytest.raises(InputError, match="psc_fwhm_A"):
        psc_margin(0.5, -1.0)
    with pytest.raises(InputError, match="rank 4"):
        gaussian_scan_average(data[0], 0.5, 0.47)
    with pytest.raises(InputError, match="too small"):
        gaussian_scan_average(data, 0.1, 0.47)


def test_continuous_source_points_and_average():
    from caviar_napari.simulate.psc import source_average, source_offsets_A

    offsets, weights = source_offsets_A(0.47)
    sigma = 0.47 / FWHM_PER_SIGMA
    assert offsets.shape == (25, 2) and weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(
        (offsets * weights[:, None]).T @ offsets, sigma**2 * np.eye(2), atol=1e-15
    )
    # the fourth moment of a Gaussian too (a scan-step stencil has the wrong one)
    assert weights @ offsets[:, 1] ** 4 == pytest.approx(3 * sigma**4)
    zero, one = source_offsets_A(0.0)
    assert zero.shape == (1, 2) and one.tolist() == [1.0]
    patterns = np.arange(2 * 25 * 3, dtype=float).reshape(50, 1, 3)
    averaged = source_average(patterns, weights)
    np.testing.assert_allclose(averaged[1], np.tensordot(weights, patterns[25:], axes=1))
