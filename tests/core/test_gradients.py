"""Hand-written Wirtinger gradients against central finite differences in float64.

Case: 2 object states, 2 probe modes, 3 slices of different thickness, a non-zero tilt,
sub-pixel scan positions, a detector mask, both losses.  With ``g = ∂L/∂z*`` the directional
derivative along ``d`` is ``2 Re Σ conj(g) d``; per element, ``∂L/∂Re z = 2 Re g`` and
``∂L/∂Im z = 2 Im g``.
"""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.core import loss as loss_mod
from caviar_napari.core import optics
from caviar_napari.core.backend import get_backend
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.data.beam import wavelength_A

DOUBLE = get_backend("cpu", "double")
K, H, W = 16, 30, 32
N, S, M = 2, 3, 2
D = 0.3
LAM = wavelength_A(200e3)
DZ = (2.0, 3.0, 2.5)
TILT = np.array([1.5, -2.0])
POS = np.array([[12.3, 11.7], [14.6, 15.2], [16.1, 13.4], [17.45, 18.55], [13.0, 16.5]])
RTOL = 1e-6


def _object(rng):
    shape = (N, S, H, W)
    amp = 1 + 0.05 * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    return amp * np.exp(0.3j * rng.standard_normal(shape))


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(7)
    probe = optics.probe_modes(optics.make_probe((K, K), D, 200e3, 25.0, 20.0), M) * 30.0
    forward = MultisliceModel(
        DOUBLE,
        wavelength_A=LAM,
        pixel_size_A=D,
        slice_thickness_A=DZ,
        positions_px=POS,
        object_shape=(H, W),
        window=(K, K),
    )
    # "measured" data from another object, probe and tilt, with noise: large residuals
    data = forward.intensities(_object(rng), probe * 1.1, (0.5, -1.0))
    amp = np.sqrt(rng.poisson(data) + 0.0)
    mask = np.ones((K, K), bool)
    mask[0, 0] = mask[3, 5] = False
    return {"rng": rng, "obj": _object(rng), "probe": probe, "amp": amp, "mask": mask}


def _model(case, kind, band_limit):
    return MultisliceModel(
        DOUBLE,
        wavelength_A=LAM,
        pixel_size_A=D,
        slice_thickness_A=DZ,
        positions_px=POS,
        object_shape=(H, W),
        amplitudes=case["amp"],
        detector_mask=case["mask"],
        loss=kind,
        batch_size=2,  # several batches, one of them partial
        object_band_limit=band_limit,
    )


def _fd(fun, base, direction, h):
    return (fun(base + h * direction) - fun(base - h * direction)) / (2 * h)


def _rel(a, b):
    return abs(a - b) / max(abs(a), abs(b))


@pytest.mark.parametrize("kind", ["gaussian", "poisson"])
def test_object_and_probe_gradients(case, kind):
    m = _model(case, kind, band_limit=False)
    obj, probe, rng = case["obj"], case["probe"], case["rng"]
    loss, g = m.loss_and_gradient(obj, probe, TILT)
    assert np.isfinite(loss) and (loss > 0 or kind == "poisson")
    assert g["object"].shape == obj.shape and g["probe"].shape == probe.shape

    def f_obj(z):
        return m.loss(z, probe, TILT)

    def f_probe(z):
        return m.loss(obj, z, TILT)

    for _ in range(2):  # random complex directions
        d = rng.standard_normal(obj.shape) + 1j * rng.standard_normal(obj.shape)
        fd = _fd(f_obj, obj, d, 1e-6)
        assert _rel(fd, 2 * np.real(np.vdot(g["object"], d))) < RTOL
        d = rng.standard_normal(probe.shape) + 1j * rng.standard_normal(probe.shape)
        fd = _fd(f_probe, probe, d, 1e-6)
        assert _rel(fd, 2 * np.real(np.vdot(g["probe"], d))) < RTOL
    # per element, at the strongest entries of each slice and state (real and imaginary parts)
    for n in range(N):
        for j in range(S):
            idx = (n, j, *np.unravel_index(np.argmax(np.abs(g["object"][n, j])), (H, W)))
            for unit, part in ((1.0, np.real), (1j, np.imag)):
                e = np.zeros(obj.shape, complex)
                e[idx] = unit
                assert _rel(_fd(f_obj, obj, e, 1e-6), 2 * part(g["object"][idx])) < RTOL
    for mode in range(M):
        idx = (mode, *np.unravel_index(np.argmax(np.abs(g["probe"][mode])), (K, K)))
        for unit, part in ((1.0, np.real), (1j, np.imag)):
            e = np.zeros(probe.shape, complex)
            e[idx] = unit
            assert _rel(_fd(f_probe, probe, e, 1e-6), 2 * part(g["probe"][idx])) < RTOL
    # pixels never inside any window get no gradient
    assert np.all(g["object"][:, :, :, -1] == 0)


@pytest.mark.parametrize("kind", ["gaussian", "poisson"])
def test_tilt_gradient(case, kind):
    m = _model(case, kind, band_limit=True)
    _, g = m.loss_and_gradient(case["obj"], case["probe"], TILT)
    assert g["tilt"].shape == (2,)
    for a in range(2):
        e = np.zeros(2)
        e[a] = 1.0
        fd = _fd(lambda t: m.loss(case["obj"], case["probe"], t), TILT, e, 1e-3)
        assert _rel(fd, g["tilt"][a]) < RTOL


@pytest.mark.parametrize("kind", ["gaussian", "poisson"])
def test_band_limited_object_gradient_is_exact_on_band_limited_updates(case, kind):
    """With object_band_limit the gradient is the projection of the full one onto the 2/3
    band limit: exact for directions inside it, and it has no power outside it."""
    full = _model(case, kind, band_limit=False)
    bl = _model(case, kind, band_limit=True)
    obj, probe, rng = case["obj"], case["probe"], case["rng"]
    _, g_full = full.loss_and_gradient(obj, probe, TILT, want={"object"})
    _, g_bl = bl.loss_and_gradient(obj, probe, TILT, want={"object"})
    mask = optics.band_limit_mask((H, W), D)
    np.testing.assert_allclose(
        g_bl["object"], np.fft.ifft2(np.fft.fft2(g_full["object"]) * mask), atol=1e-12
    )
    assert np.abs(np.fft.fft2(g_bl["object"]) * (1 - mask)).max() < 1e-10
    d = rng.standard_normal(obj.shape) + 1j * rng.standard_normal(obj.shape)
    d = np.fft.ifft2(np.fft.fft2(d) * mask)
    fd = _fd(lambda z: bl.loss(z, probe, TILT), obj, d, 1e-6)
    assert _rel(fd, 2 * np.real(np.vdot(g_bl["object"], d))) < RTOL


def test_requested_blocks_only(case):
    m = _model(case, "gaussian", band_limit=True)
    obj, probe = case["obj"], case["probe"]
    loss, g_all = m.loss_and_gradient(obj, probe, TILT)
    for want in ({"object"}, {"probe"}, {"tilt"}, {"object", "tilt"}):
        loss_w, g = m.loss_and_gradient(obj, probe, TILT, want=frozenset(want))
        assert set(g) == want and loss_w == pytest.approx(loss, rel=1e-13)
        for key in want:
            np.testing.assert_allclose(g[key], g_all[key], rtol=1e-12, atol=1e-15)
    assert m.loss_and_gradient(obj, probe, TILT, want=frozenset())[1] == {}
    assert m.loss(obj, probe, TILT) == pytest.approx(loss, rel=1e-13)


@pytest.mark.parametrize("kind", ["gaussian", "poisson"])
def test_loss_derivative_in_intensity(kind):
    rng = np.random.default_rng(5)
    intensity = rng.random((3, 4, 4)) * 5
    intensity[0, 0, 0] = 0.0  # the regularised loss stays differentiable at I = 0
    amp = np.sqrt(rng.poisson(3.0, size=(3, 4, 4)).astype(float))
    mask = rng.random((4, 4)) > 0.2
    loss, dl = loss_mod.loss_and_dI(kind, intensity, amp, mask, eps=1e-3)
    for idx in [(0, 0, 0), (1, 2, 3), (2, 1, 1)]:
        e = np.zeros_like(intensity)
        e[idx] = 1.0
        h = 1e-7

        def f(i, kind=kind):
            return loss_mod.loss_value(kind, i, amp, mask, eps=1e-3)

        fd = (f(intensity + h * e) - f(np.maximum(intensity - h * e, 0))) / (
            2 * h if intensity[idx] > 0 else h
        )
        tol = 1e-6 if intensity[idx] > 0 else 1e-3  # one-sided at the boundary
        assert abs(fd - dl[idx]) <= tol * max(1.0, abs(dl[idx]))
    # explicit formulas; Poisson: the negative log-likelihood minus its value at I = y
    s = np.sqrt(intensity + 1e-3)
    y = amp**2
    nll = intensity - y * np.log(intensity + 1e-3)
    saturated = y - y * np.log(y + 1e-3)
    expected = (
        np.sum(mask * (amp - s) ** 2) if kind == "gaussian" else np.sum(mask * (nll - saturated))
    )
    assert loss == pytest.approx(expected, rel=1e-12)
    if kind == "poisson":  # at the data the loss is ~0 (ε only), and never below
        at_data = loss_mod.loss_value(kind, y, amp, mask, eps=1e-3)
        assert abs(at_data) < 1e-3 and loss > at_data
    assert np.all(dl[:, ~mask] == 0)


@pytest.mark.parametrize("kind", ["gaussian", "poisson"])
def test_scan_position_shift_gradient(case, kind):
    """∂L/∂s of every pattern's shift (position refinement), at shifts beyond half a pixel."""
    m = _model(case, kind, band_limit=True)
    obj, probe, rng = case["obj"], case["probe"], case["rng"]
    shifts = rng.uniform(-0.8, 0.8, size=(len(POS), 2))
    loss, g = m.loss_and_gradient(obj, probe, TILT, shifts_px=shifts)
    assert g["shifts"].shape == (len(POS), 2)
    # the shift moves the probe: a zero shift is the model at its positions
    assert m.loss(obj, probe, TILT, shifts_px=np.zeros((len(POS), 2))) == pytest.approx(
        m.loss(obj, probe, TILT), rel=1e-12
    )
    for p in range(len(POS)):
        for a in range(2):
            e = np.zeros_like(shifts)
            e[p, a] = 1.0
            fd = _fd(lambda s: m.loss(obj, probe, TILT, shifts_px=s), shifts, e, 1e-5)
            assert _rel(fd, g["shifts"][p, a]) < RTOL
    # with indices, only those patterns have a gradient, and it is theirs
    _, gi = m.loss_and_gradient(obj, probe, TILT, want={"shifts"}, indices=[1, 3], shifts_px=shifts)
    np.testing.assert_allclose(gi["shifts"][[1, 3]], g["shifts"][[1, 3]], rtol=1e-12)
    assert not gi["shifts"][[0, 2, 4]].any()


@pytest.mark.parametrize("jit", [False, True])
def test_poisson_loss_keeps_its_precision_in_float32_at_high_counts(jit):
    """At 1e6 counts per pixel a 1e-4 change of the model intensity changes the loss by ~5e-3
    per pixel, below the rounding of a term ``y log I`` (≈1.4e7) in float32; half the deviance
    keeps it (the states' signal at high dose lives at this level)."""
    from caviar_napari.core import kernels

    if jit and not kernels.has_jit():
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(3)
    lam = np.full((2, 32, 32), 1e6)
    amp = np.sqrt(rng.poisson(lam).astype(np.float64))
    bump = 1 + 1e-4 * rng.standard_normal(lam.shape)

    def change(dtype):
        def value(i):
            i, a = i.astype(dtype), amp.astype(dtype)
            return kernels.loss_and_dI("poisson", i, a, None, 1e-6, np, jit=jit)[0]

        return value(lam * bump) - value(lam)

    exact = change(np.float64)
    assert exact > 0  # moving away from the fit at I = λ costs, on average
    assert change(np.float32) == pytest.approx(exact, rel=0.02)
