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


def test_initial_hessian_has_one_gamma_per_part():
    """H₀ = ⊕ γ_b I: the mean and deviation parts of a state block and every other block get
    γ_b = |s_bᵀy_b| / y_bᵀy_b of the newest pair (negative curvature: its magnitude)."""
    rng = np.random.default_rng(4)
    opt = LBFGS(state_blocks=("obj",))
    n_states, n = 3, 5
    mean_y = rng.normal(size=(1, n)) + 1j * rng.normal(size=(1, n))
    dev_y = rng.normal(size=(n_states, n)) + 1j * rng.normal(size=(n_states, n))
    dev_y -= dev_y.mean(axis=0, keepdims=True)
    y_obj = mean_y + dev_y
    s_obj = 2.0 * mean_y - 0.01 * dev_y  # stiff mean (γ = 2), negative curvature (|γ| = 0.01)
    y_t = rng.normal(size=2)
    opt.s, opt.y = [{"obj": s_obj, "t": 7.0 * y_t}], [{"obj": y_obj, "t": y_t}]
    q = {"obj": rng.normal(size=(n_states, n)) + 0j, "t": rng.normal(size=2)}
    r = opt._initial_hessian(q)
    q_mean = q["obj"].mean(axis=0, keepdims=True)
    np.testing.assert_allclose(r["obj"], 2.0 * q_mean + 0.01 * (q["obj"] - q_mean), rtol=1e-12)
    np.testing.assert_allclose(r["t"], 7.0 * q["t"], rtol=1e-12)


class _ScalarGammaLBFGS(LBFGS):
    """The textbook H₀ = γI with one γ over all variables (for comparison)."""

    def _initial_hessian(self, q):
        if not self.s:
            return dict(q)
        gamma = self._dot(self.s[-1], self.y[-1]) / self._dot(self.y[-1], self.y[-1])
        return {k: gamma * v for k, v in q.items()}


def _mixed_state_toy(n_states=4, n=40, seed=5):
    """The structure of the object-state stage: a stiff mean and state deviations that must
    grow out of a saddle to match a covariance,
    ``f = K‖m − m₀‖² + ‖(1/N) Σ_s d_s d_sᴴ − C‖_F²`` (``m`` mean state, ``d_s`` deviations)."""
    rng = np.random.default_rng(seed)
    m0 = rng.normal(size=n) + 1j * rng.normal(size=n)
    modes = (rng.normal(size=(n, n_states - 1)) + 1j * rng.normal(size=(n, n_states - 1))) * 0.01
    c = modes @ modes.conj().T / n_states  # rank N − 1, like N equal-weight states
    k = 1e5

    def fun(x):
        z = x["obj"]
        m = z.mean(axis=0)
        d = z - m
        e = d.T @ d.conj() / n_states - c
        f = k * float(np.sum(np.abs(m - m0) ** 2)) + float(np.sum(np.abs(e) ** 2))
        g = k * (m - m0)[None] / n_states + (2.0 / n_states) * (e @ d.T).T
        return f, {"obj": g}

    z0 = m0[None] * (1 + 0.5 * rng.normal(size=(1, n))) + 1e-4 * rng.normal(size=(n_states, n))
    return fun, {"obj": z0.astype(complex)}, c


def test_state_deviations_escape_the_identical_states_saddle():
    def error(opt):
        fun, x0, c = _mixed_state_toy()
        x, *_ = _run(opt, fun, x0, 60)
        d = x["obj"] - x["obj"].mean(axis=0)
        return np.linalg.norm(d.T @ d.conj() / len(d) - c) / np.linalg.norm(c)

    new = error(LBFGS(state_blocks=("obj",)))
    old = error(_ScalarGammaLBFGS(state_blocks=("obj",)))
    assert new < 1e-6  # the covariance of the states is matched (measured 2e-12)
    assert old > 0.1  # one γ for all variables: the deviations crawl (measured 0.37)
