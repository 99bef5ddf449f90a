"""Parametric partial spatial coherence: quadrature, the shifted-probe physics and gradients."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.core import coherence, optics
from caviar_napari.core.backend import get_backend
from caviar_napari.core.multislice import MultisliceModel

DOUBLE = get_backend("cpu", "double")
K, H, W = 48, 72, 72
D = 0.25
LAM = optics.wavelength_A(60e3)
POS = np.array([[34.3, 33.7], [36.6, 37.2], [38.1, 35.4]])


def _model(amplitudes=None):
    return MultisliceModel(
        DOUBLE,
        wavelength_A=LAM,
        pixel_size_A=D,
        slice_thickness_A=(3.0, 2.0),
        positions_px=POS,
        object_shape=(H, W),
        amplitudes=amplitudes,
        window=(K, K),
        batch_size=2,
    )


def _object(rng):
    shape = (2, 2, H, W)
    return (1 + 0.03 * rng.standard_normal(shape)) * np.exp(0.4j * rng.standard_normal(shape))


def test_quadrature_moments():
    for order in (1, 2, 3, 5):
        q = coherence.gauss_hermite_source(order)
        assert q.n_points == order**2
        assert q.weights.sum() == pytest.approx(1.0, abs=1e-14)
        np.testing.assert_allclose(q.weights @ q.nodes, 0.0, atol=1e-14)
        if order > 1:
            cov = (q.nodes * q.weights[:, None]).T @ q.nodes
            np.testing.assert_allclose(cov, np.eye(2), atol=1e-13)
    with pytest.raises(Exception, match="order"):
        coherence.gauss_hermite_source(0)


def test_expanded_modes_are_shifted_copies_and_keep_the_power():
    big = 96  # a window that holds the probe's tails, so that the centroid is meaningful
    probe = optics.make_probe((big, big), D, 60e3, 35.0, 0.0)[None]
    k = coherence.window_frequencies((big, big), (D, D))
    quad = coherence.gauss_hermite_source(3)
    sigma = 0.5
    modes = coherence.expand_modes(DOUBLE, probe, sigma, quad, k)
    assert modes.shape == (9, big, big)
    assert np.sum(np.abs(modes) ** 2) == pytest.approx(np.sum(np.abs(probe) ** 2), rel=1e-12)
    # node (+√3 σ, 0) is the probe moved by +√3 σ along y: its intensity centroid moves so
    yy = (np.arange(big) * D)[:, None]
    centroid = lambda a: float(np.sum(np.abs(a) ** 2 * yy) / np.sum(np.abs(a) ** 2))  # noqa: E731
    j = int(np.flatnonzero((quad.nodes[:, 0] > 1) & (quad.nodes[:, 1] == 0))[0])
    shift = centroid(modes[j]) - centroid(probe[0])
    assert shift == pytest.approx(np.sqrt(3) * sigma, abs=0.02)


def test_source_equals_averaging_over_shifted_scan_positions():
    """A Gaussian source is the scan-position average of coherent patterns (the PSC physics)."""
    rng = np.random.default_rng(3)
    obj = _object(rng)[:1]
    probe = optics.make_probe((K, K), D, 60e3, 35.0, 20.0)[None]
    k = coherence.window_frequencies((K, K), (D, D))
    sigma_px = 0.8
    model = _model()
    fine = coherence.gauss_hermite_source(9)
    reference = 0.0
    for node, w in zip(fine.nodes, fine.weights, strict=True):
        moved = MultisliceModel(
            DOUBLE,
            wavelength_A=LAM,
            pixel_size_A=D,
            slice_thickness_A=(3.0, 2.0),
            positions_px=POS + sigma_px * node,
            object_shape=(H, W),
            window=(K, K),
        )
        reference = reference + w * moved.intensities(obj, probe, (0.0, 0.0))
    modes = coherence.expand_modes(
        DOUBLE, probe, sigma_px * D, coherence.gauss_hermite_source(3), k
    )
    # moving the probe by +d in the window is the probe sitting at r_p + d on the object
    got = model.intensities(obj, modes, (0.0, 0.0))
    rel = lambda a: np.abs(a - reference).sum() / np.abs(reference).sum()  # noqa: E731
    # the two differ only where the probe's tails wrap in the window (a shifted probe wraps,
    # a moved window does not): 0.4 % here, against 6 % without the source
    assert rel(got) < 1e-2
    assert rel(model.intensities(obj, probe, (0.0, 0.0))) > 5 * rel(got)

    # the quadrature error alone converges with the order (this random object varies on the
    # pixel scale, far faster than a crystal's potential: 0.4 % at order 3 here)
    def quadrature_error(order):
        modes = coherence.expand_modes(
            DOUBLE, probe, sigma_px * D, coherence.gauss_hermite_source(order), k
        )
        return np.abs(model.intensities(obj, modes, (0.0, 0.0)) - exact).sum() / exact.sum()

    exact = model.intensities(
        obj,
        coherence.expand_modes(DOUBLE, probe, sigma_px * D, coherence.gauss_hermite_source(9), k),
        (0.0, 0.0),
    )
    assert quadrature_error(3) < 6e-3
    assert quadrature_error(5) < quadrature_error(3) / 3


def test_gradients_of_probe_and_source_size_against_finite_differences():
    rng = np.random.default_rng(5)
    obj = _object(rng)
    probe = optics.probe_modes(optics.make_probe((K, K), D, 60e3, 35.0, 25.0), 2) * 20.0
    k = coherence.window_frequencies((K, K), (D, D))
    quad = coherence.gauss_hermite_source(3)
    truth = coherence.expand_modes(DOUBLE, probe * 1.05, 0.3, quad, k)
    amp = np.sqrt(_model().intensities(obj * 0.98, truth, (0.0, 0.0)))
    model = _model(amp)
    sigma0 = 0.2

    def loss(p, s):
        return model.loss(obj, coherence.expand_modes(DOUBLE, p, s, quad, k), (0.0, 0.0))

    _, grads = model.loss_and_gradient(
        obj, coherence.expand_modes(DOUBLE, probe, sigma0, quad, k), (0.0, 0.0), want={"probe"}
    )
    g_probe, g_sigma = coherence.contract_gradient(DOUBLE, probe, sigma0, quad, k, grads["probe"])
    h = 1e-5
    fd_sigma = (loss(probe, sigma0 + h) - loss(probe, sigma0 - h)) / (2 * h)
    assert g_sigma == pytest.approx(fd_sigma, rel=1e-6)
    d = rng.standard_normal(probe.shape) + 1j * rng.standard_normal(probe.shape)
    fd_probe = (loss(probe + h * d, sigma0) - loss(probe - h * d, sigma0)) / (2 * h)
    assert 2 * np.real(np.vdot(g_probe, d)) == pytest.approx(fd_probe, rel=1e-6)


def test_compressed_modes_give_the_same_intensity_with_fewer_modes():
    rng = np.random.default_rng(8)
    obj = _object(rng)
    probe = optics.probe_modes(optics.make_probe((K, K), D, 60e3, 35.0, 25.0), 2) * 20.0
    k = coherence.window_frequencies((K, K), (D, D))
    modes = coherence.expand_modes(DOUBLE, probe, 0.15, coherence.gauss_hermite_source(3), k)
    model = _model()
    exact = model.intensities(obj, modes, (0.0, 0.0))
    lossless, _ = coherence.compress_modes(DOUBLE, modes, 0.0)
    np.testing.assert_allclose(model.intensities(obj, lossless, (0.0, 0.0)), exact, rtol=1e-9)
    compact, mixing = coherence.compress_modes(DOUBLE, modes, 1e-5)
    assert mixing.shape == (modes.shape[0], compact.shape[0])
    assert compact.shape[0] < modes.shape[0]
    flat = compact.reshape(compact.shape[0], -1)
    gram = flat.conj() @ flat.T
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-9 * gram[0, 0].real)
    err = np.abs(model.intensities(obj, compact, (0.0, 0.0)) - exact).sum() / exact.sum()
    assert err < 1e-5


def _objective_case(compression):
    from caviar_napari.core.objective import Objective
    from caviar_napari.data.config import StageConfig

    rng = np.random.default_rng(11)
    obj = _object(rng)
    probe = optics.make_probe((K, K), D, 60e3, 35.0, 25.0)[None] * 20.0
    k = coherence.window_frequencies((K, K), (D, D))
    truth = coherence.expand_modes(DOUBLE, probe * 1.05, 0.3, coherence.gauss_hermite_source(5), k)
    amp = np.sqrt(_model().intensities(obj * 0.98, truth, (0.0, 0.0)))
    stage = StageConfig(
        object_states=2,
        slices=2,
        slice_thickness_A=[3.0, 2.0],
        refine=("object", "probe", "source"),
        partial_coherence="gaussian",
        remove_state_shifts=False,  # the exact gradient (the projection is tested apart)
    ).validate()
    fixed = {"tilt": np.zeros(2)}
    fun = Objective(_model(amp), DOUBLE, stage, fixed, 1.0, (D, D), compression=compression)
    x = {"object": obj, "probe": probe, "source": np.array([0.2])}
    return fun, x, rng


def test_objective_gradients_with_a_gaussian_source():
    """Object, coherent probe and source size through expansion and (lossless) compression."""
    fun, x, rng = _objective_case(compression=0.0)
    f0, g = fun(x)
    h = 1e-6
    for name in ("object", "probe", "source"):
        base = x[name]
        if np.iscomplexobj(base):
            d = rng.standard_normal(base.shape) + 1j * rng.standard_normal(base.shape)
            if name == "object":  # the object gradient lives in the band-limited subspace
                d = np.fft.ifft2(np.fft.fft2(d) * optics.band_limit_mask((H, W), (D, D)))
            analytic = 2 * np.real(np.vdot(g[name], d))
        else:
            d = np.ones_like(base)
            analytic = float(np.sum(g[name] * d))
        plus = fun({**x, name: base + h * d})[0]
        minus = fun({**x, name: base - h * d})[0]
        assert analytic == pytest.approx((plus - minus) / (2 * h), rel=1e-6), name


def test_compression_changes_the_loss_and_gradient_by_little():
    exact_fun, x, _ = _objective_case(compression=0.0)
    fun, _, _ = _objective_case(compression=coherence.COMPRESSION_TOLERANCE)
    f_exact, g_exact = exact_fun(x)
    f, g = fun(x)
    assert fun.model_probe(x)[0].shape[0] < exact_fun.model_probe(x)[0].shape[0]
    assert f == pytest.approx(f_exact, rel=5e-3)
    for name in ("probe", "source"):
        err = np.linalg.norm(g[name] - g_exact[name]) / np.linalg.norm(g_exact[name])
        assert err < 2e-2, name
