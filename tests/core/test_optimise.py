"""L-BFGS and gradient descent over dicts of complex/real blocks, on analytic functions."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.core import optimise
from caviar_napari.core.optimise import LBFGS, GradientDescent, make_optimiser
from caviar_napari.errors import InputError


def _run(opt, fun, x, n):
    f, g = fun(x)
    infos = []
    for _ in range(n):
        x, f, g, info = opt.step(fun, x, f, g)
        infos.append(info)
    return x, f, g, infos


def _badly_scaled_quadratic():
    """Complex block ~1e3 curvature, real block ~1e-3 curvature; known minimum."""
    rng = np.random.default_rng(1)
    n = 12
    a = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    h = 1e3 * (a.conj().T @ a / n + np.eye(n))  # Hermitian positive definite
    zt = rng.normal(size=n) + 1j * rng.normal(size=n)
    w = np.array([1e-3, 5e-3])
    tt = np.array([3.0, -2.0])

    def fun(x):
        dz = x["z"] - zt
        dt = x["t"] - tt
        f = float(np.real(dz.conj() @ h @ dz)) + float(np.sum(w * dt**2))
        # Wirtinger gradient of z^H H z is H z; real gradient of the real part
        return f, {"z": h @ dz, "t": 2 * w * dt}

    x0 = {"z": np.zeros(n, complex), "t": np.zeros(2)}
    return fun, x0, zt, tt


def test_lbfgs_badly_scaled_quadratic_reaches_minimum():
    fun, x0, zt, tt = _badly_scaled_quadratic()
    opt = LBFGS(memory=10, typical={"t": 1.0})
    x, f, _, infos = _run(opt, fun, x0, 30)
    assert np.max(np.abs(x["z"] - zt)) < 1e-6
    assert np.max(np.abs(x["t"] - tt)) < 1e-6
    assert f < 1e-9
    # curvature 1e6 apart between blocks, yet no fallback and ~1 evaluation per iteration
    assert all(i.method == "lbfgs" for i in infos)
    assert sum(i.n_evals for i in infos) < 40


def test_wirtinger_convention_against_finite_difference():
    """df = 2 Re<g, dz> for the complex block, the convention the optimiser relies on."""
    fun, x0, _, _ = _badly_scaled_quadratic()
    rng = np.random.default_rng(3)
    x = {"z": rng.normal(size=12) + 1j * rng.normal(size=12), "t": rng.normal(size=2)}
    dz = rng.normal(size=12) + 1j * rng.normal(size=12)
    eps = 1e-6
    fp, _ = fun({"z": x["z"] + eps * dz, "t": x["t"]})
    fm, _ = fun({"z": x["z"] - eps * dz, "t": x["t"]})
    _, g = fun(x)
    assert (fp - fm) / (2 * eps) == pytest.approx(2 * np.real(np.vdot(g["z"], dz)), rel=1e-7)


def test_rosenbrock_in_real_pairs():
    """Rosenbrock of (Re z, Im z): minimum at z = 1 + 1i."""

    def fun(x):
        z = x["z"]
        a, b = z.real, z.imag
        f = (1 - a) ** 2 + 100 * (b - a**2) ** 2
        da = -2 * (1 - a) - 400 * a * (b - a**2)
        db = 200 * (b - a**2)
        return float(f.sum()), {"z": 0.5 * (da + 1j * db)}  # ∂f/∂z* = (∂a + i∂b)/2

    x0 = {"z": np.array([-1.2 + 1.0j, 0.5 - 0.5j])}
    opt = LBFGS(memory=8)
    x, f, _, infos = _run(opt, fun, x0, 200)
    np.testing.assert_allclose(x["z"], [1 + 1j, 1 + 1j], atol=1e-6)
    evals = sum(i.n_evals for i in infos)
    assert evals < 600


def test_complex_quadratic_gd_converges_and_lbfgs_faster():
    rng = np.random.default_rng(2)
    n = 30
    d = np.linspace(1, 20, n)
    zt = rng.normal(size=(5, 6)) + 1j * rng.normal(size=(5, 6))

    def fun(x):
        r = (x["o"] - zt).ravel()
        return float(np.sum(d * np.abs(r) ** 2)), {"o": (d * r).reshape(5, 6)}

    x0 = {"o": np.ones((5, 6), complex)}
    _, f_gd, _, _ = _run(GradientDescent(), fun, x0, 40)
    _, f_lb, _, _ = _run(LBFGS(), fun, x0, 40)
    f0, _ = fun(x0)
    assert f_gd < 1e-2 * f0
    assert f_lb < 1e-12 * f0
    assert f_lb < f_gd


def test_fallback_to_gradient_descent_on_bad_memory():
    fun, x0, zt, tt = _badly_scaled_quadratic()
    opt = LBFGS(typical={"t": 1.0})
    f, g = fun(x0)
    x, f, g, _ = opt.step(fun, x0, f, g)
    # corrupt the curvature memory so that the two-loop direction points uphill
    opt.y[0] = {k: -v for k, v in opt.y[0].items()}
    x1, f1, _, info = opt.step(fun, x, f, g)
    assert info.method == "gd-fallback"
    assert f1 < f
    assert opt.s == [] or len(opt.s) == 1  # memory was cleared before the fallback step


def test_export_import_gives_identical_continuation():
    fun, x0, _, _ = _badly_scaled_quadratic()
    ref = LBFGS(memory=4, typical={"t": 1.0})
    x, f, g, _ = _run(ref, fun, x0, 5)
    state = ref.export_state()
    assert state["n_pairs"] == 4 and state["s/z"].shape == (4, 12)
    resumed = LBFGS(memory=4, typical={"t": 1.0})
    resumed.import_state(state)
    xa, fa, _, _ = _run(ref, fun, x, 5)
    f2, g2 = fun(x)
    xb, fb, _, _ = _run(resumed, fun, x, 5)
    assert fa == fb
    np.testing.assert_array_equal(xa["z"], xb["z"])
    np.testing.assert_array_equal(xa["t"], xb["t"])

    gd = GradientDescent()
    _run(gd, fun, x0, 3)
    gd2 = GradientDescent()
    gd2.import_state(gd.export_state())
    assert gd2.step_length == gd.step_length and gd2.scale == gd.scale
    with pytest.raises(InputError, match="kind 'gd', expected 'lbfgs'"):
        LBFGS().import_state(gd.export_state())


def test_per_block_scaling_balances_relative_change():
    fun, x0, _, _ = _badly_scaled_quadratic()
    x0 = {"z": np.full(12, 1 + 0j), "t": np.array([1.0, 1.0])}
    opt = GradientDescent(initial_step=0.1)
    f, g = fun(x0)
    opt._ensure_scale(x0, g)
    # a unit step along -grad in scaled variables changes each block by 10 %
    for k, factor in (("z", 2.0), ("t", 1.0)):
        dz = opt.scale[k] ** 2 * factor * g[k]
        rel = np.linalg.norm(dz) / np.linalg.norm(x0[k])
        assert rel == pytest.approx(0.1, rel=1e-12)


def test_non_finite_objective_is_backed_off():
    def fun(x):
        z = x["z"]
        if np.any(np.abs(z) > 2):
            return float("nan"), {"z": np.full_like(z, np.nan)}
        return float(np.sum(np.abs(z - 1.5) ** 2)), {"z": z - 1.5}

    opt = LBFGS(initial_step=50.0)  # first trial step far outside the finite region
    x, f, _, _ = _run(opt, fun, {"z": np.zeros(3, complex)}, 20)
    assert np.isfinite(f) and f < 1e-10


def test_make_optimiser_rejects_unknown():
    assert isinstance(make_optimiser("gd"), GradientDescent)
    assert isinstance(make_optimiser("lbfgs", memory=3), LBFGS)
    with pytest.raises(InputError, match="'adam'"):
        make_optimiser("adam")


def test_vanishing_gradient_floor_and_rescale_on_growth():
    """A block with a numerically zero gradient (a tilt over a featureless object) gets a bounded
    scale; when its gradient grows 100-fold the scales are re-estimated and the memory cleared."""
    rng = np.random.default_rng(4)
    z = np.ones(50, complex)
    gz = 0.3 * (rng.normal(size=50) + 1j * rng.normal(size=50))
    x = {"z": z, "t": np.zeros(2)}
    opt = LBFGS(typical={"t": 1.0}, initial_step=0.1)
    opt._ensure_scale(x, {"z": gz, "t": np.full(2, 1e-25)})
    leading = np.linalg.norm(z) * 2 * np.linalg.norm(gz)
    znorm_t = np.sqrt(2.0)  # typical 1 mrad per element
    bound = 0.1 * znorm_t / (optimise.GRADIENT_FLOOR * leading / znorm_t)
    assert opt.scale["t"] ** 2 == pytest.approx(bound, rel=1e-9)  # not 0.1·√2/1e-25
    assert opt.scale["z"] ** 2 == pytest.approx(0.1 * np.linalg.norm(z) / (2 * np.linalg.norm(gz)))
    old = dict(opt.scale)
    opt.s, opt.y = [{"z": gz, "t": np.ones(2)}], [{"z": gz, "t": np.ones(2)}]
    small = {"z": gz, "t": np.full(2, 50 * opt.gref["t"] / np.sqrt(2))}
    assert not opt._ensure_scale(x, small) and opt.scale == old  # 50× growth: kept
    grown = {"z": gz, "t": np.full(2, 1e-3)}

    def fun(b):
        return 1.0, grown

    opt.step(fun, x, 1.0, grown)  # 100× growth: re-estimated, memory cleared
    assert opt.scale["t"] ** 2 == pytest.approx(0.1 * znorm_t / np.linalg.norm(grown["t"]))
    assert opt.scale["z"] == pytest.approx(old["z"])
    assert opt.s == [] and opt.y == []
