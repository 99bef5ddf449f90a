"""Object states: the separation report, rigid shifts kept out of the states, the automatic
loss for counts, and a partially coherent source that goes into the source size."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_engine import ALPHA, DEFOCUS, DK, E_EV, NONE, STEP, K, _forward_dataset

from caviar_napari.core import coherence, optics
from caviar_napari.core import loss as loss_mod
from caviar_napari.core.backend import get_backend
from caviar_napari.core.engine import resolve_loss, run_to_end
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.core.objective import StateShifts
from caviar_napari.core.separation import (
    MIN_GAIN,
    TREND_WINDOW,
    SeparationReport,
    expected_noise_loss,
    poisson_half_deviance,
    separation_report,
    sqrt_poisson_mse,
)
from caviar_napari.data.beam import wavelength_A
from caviar_napari.data.config import ReconstructionConfig, StageConfig
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io.reconstruction import load_reconstruction, save_reconstruction

DOUBLE = get_backend("cpu", "double")


# ------------------------------------------------------------------------ noise statistics
def test_sqrt_poisson_mse_against_sampling():
    rng = np.random.default_rng(1)
    lam = np.array([0.01, 0.3, 1.0, 4.0, 50.0])
    exact = sqrt_poisson_mse(lam)
    for value, want in zip(lam, exact, strict=True):
        n = rng.poisson(value, 400_000)
        sample = (np.sqrt(n) - np.sqrt(value)) ** 2
        assert want == pytest.approx(sample.mean(), abs=4 * sample.std() / np.sqrt(n.size))
    assert sqrt_poisson_mse(np.array([1e7]))[0] == pytest.approx(0.25, rel=1e-6)
    mask = np.array([1.0, 0.0])
    assert expected_noise_loss("gaussian", np.array([[1e6, 5.0]]), mask) == pytest.approx(0.25)
    assert expected_noise_loss("poisson", np.array([[1e6, 5.0]]), mask) == pytest.approx(0.5)


def test_poisson_half_deviance_against_sampling_and_the_loss():
    """E[n log(n/λ)] is the mean of the Poisson loss term at the truth, at any count level."""
    rng = np.random.default_rng(2)
    lam = np.array([0.01, 0.3, 1.0, 4.0, 50.0, 3e4])
    exact = poisson_half_deviance(lam)
    for value, want in zip(lam, exact, strict=True):
        n = rng.poisson(value, 400_000).astype(np.float64)
        term = (
            loss_mod.loss_and_dI(
                "poisson", np.full(n.shape, value)[None, None], np.sqrt(n)[None, None], eps=1e-300
            )[0]
            / n.size
        )
        sample = np.where(n > 0, n * np.log(np.where(n > 0, n, 1) / value), 0.0) + value - n
        assert term == pytest.approx(sample.mean(), rel=1e-9, abs=1e-12)
        assert want == pytest.approx(sample.mean(), abs=4 * sample.std() / np.sqrt(n.size))
    assert exact[-1] == pytest.approx(0.5 + 1 / (12 * 3e4), rel=1e-6)  # the asymptote
    for edge in (1e-6, 1e4):  # the asymptotes continue the table
        around = poisson_half_deviance(np.array([edge * (1 - 1e-9), edge * (1 + 1e-9)]))
        assert around == pytest.approx(poisson_half_deviance(np.array([edge]))[0], rel=1e-6)


def test_report_logic_and_warnings():
    obj = np.ones((2, 1, 4, 4), complex)
    common = dict(stage="s", n_states=2, obj=obj, region=None, loss_history=[1.0] * 30)
    good = separation_report(loss_states=0.5, loss_mean=1.0, **common)
    assert good.separated and good.converged and good.gain == pytest.approx(0.5)
    assert good.warnings == [] and math.isinf(good.noise_gain)
    weak = separation_report(loss_states=0.99, loss_mean=1.0, **common)
    assert not weak.separated and "did not separate" in weak.warnings[0]
    assert f"{100 * MIN_GAIN:.0f} %" in weak.warnings[0]
    # a decrease no larger than fitting noise with that many parameters would give
    noisy = separation_report(
        loss_states=0.5, loss_mean=1.0, noise_per_parameter=1e-3, n_parameters=400, **common
    )
    assert not noisy.separated and "noise floor" in noisy.warnings[0]
    moving = separation_report(
        loss_states=0.5, loss_mean=1.0, **{**common, "loss_history": list(np.linspace(2, 1, 30))}
    )
    assert not moving.converged and "still improving" in moving.warnings[0]
    short = separation_report(loss_states=0.5, loss_mean=1.0, **{**common, "loss_history": [2, 1]})
    assert not short.converged and math.isinf(short.trend)
    assert short.warnings == [
        "stage 's': too short to tell whether the object states stopped improving (the trend "
        f"is measured over {TREND_WINDOW} iterations): more iterations would change them"
    ]
    assert SeparationReport.from_dict(good.to_dict()) == good
    # with held-out patterns the gain is theirs, above their own floor: a mean object fitted
    # below the floor of its own patterns (it fitted part of the noise) still gets a gain
    below = dict(loss_states=0.7, loss_mean=0.8, loss_floor=1.0)
    held = separation_report(**below, held_losses=(1.2, 1.4), held_floor=1.1, **common)
    assert held.separated and held.gain == held.held_gain == pytest.approx(2 / 3)
    assert separation_report(**below, **common).gain == 0.0  # without: not measurable
    overfit = separation_report(**below, held_losses=(1.41, 1.4), **common)
    assert not overfit.separated and "fit counting noise" in overfit.warnings[0]
    short_held = separation_report(**below, held_losses=(1.39, 1.4), **common)
    assert not short_held.separated and "on the held-out patterns" in short_held.warnings[0]
    assert short_held.gain == pytest.approx(0.025)
    # a held-out gain with a fitted decrease no larger than fitting noise gives: not separated
    lucky = separation_report(
        **below, held_losses=(1.2, 1.4), noise_per_parameter=1e-3, n_parameters=400, **common
    )
    assert lucky.gain > MIN_GAIN and not lucky.separated and "noise floor" in lucky.warnings[0]
    # a stage that ended at single precision's limit says so, instead of "still improving"
    stalled = separation_report(
        loss_states=0.5,
        loss_mean=1.0,
        stalled_in="single",
        **{**common, "loss_history": list(np.linspace(2, 1, 30))},
    )
    assert len(stalled.warnings) == 1 and "limit of single precision" in stalled.warnings[0]
    assert "'precision: double'" in stalled.warnings[0]
    assert SeparationReport.from_dict(stalled.to_dict()) == stalled
    assert (
        separation_report(loss_states=0.5, loss_mean=1.0, stalled_in="double", **common).warnings
        == []
    )


# ------------------------------------------------------------------------ rigid shifts
def _smooth_object(rng, shape=(1, 40, 40)):
    phase = np.zeros(shape)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    for y, x in rng.uniform(8, 32, size=(6, 2)):
        phase[0] += 0.5 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.0)
    return np.exp(1j * phase)


def _shifted(obj, s_px):
    ky = np.fft.fftfreq(obj.shape[-2])[:, None]
    kx = np.fft.fftfreq(obj.shape[-1])[None, :]
    ramp = np.exp(-2j * np.pi * (ky * s_px[0] + kx * s_px[1]))
    return np.fft.ifft2(np.fft.fft2(obj) * ramp)


def test_state_shift_projection_removes_rigid_shifts_only():
    rng = np.random.default_rng(2)
    mean = _smooth_object(rng)
    states = np.stack([_shifted(mean, s) for s in ((0.05, -0.03), (-0.05, 0.03))])
    proj = StateShifts(DOUBLE, states.mean(axis=0), (1.0, 1.0))
    np.testing.assert_allclose(proj.shifts_A(states), [[0.05, -0.03], [-0.05, 0.03]], atol=2e-3)
    dev = states - states.mean(axis=0)
    # rigid shifts (to first order) are taken out almost entirely
    assert np.linalg.norm(proj.project(states) - states.mean(axis=0)) < 0.02 * np.linalg.norm(dev)
    # a local change (one atom moving) keeps most of its deviation
    bump = np.zeros_like(mean)
    bump[0, 18:23, 18:23] = 0.05j
    local = np.stack([mean + bump, mean - bump])
    kept = proj.project(local) - local.mean(axis=0)
    assert np.linalg.norm(kept) > 0.8 * np.linalg.norm(local - local.mean(axis=0))
    # the mean over the states is never touched
    np.testing.assert_allclose(proj.project(local).mean(axis=0), local.mean(axis=0))


# ------------------------------------------------------------------------ loss: auto
def test_auto_loss_follows_the_data():
    data, _, _ = _forward_dataset(scan=(3, 3))
    assert resolve_loss("auto", data) == "gaussian" and not data.is_counts
    counts = np.random.default_rng(0).poisson(data.intensities * 50.0).astype(np.float32)
    counted = STEMDataset(counts, E_EV, ALPHA, STEP, DK, DEFOCUS)
    assert counted.integer_valued and resolve_loss("auto", counted) == "poisson"
    assert counted.counts_scale() == 1.0
    dosed = STEMDataset(data.intensities, E_EV, ALPHA, STEP, DK, DEFOCUS, dose_e_per_A2=1e4)
    assert resolve_loss("auto", dosed) == "poisson"
    expected = 1e4 * STEP * STEP / data.mean_total_intensity
    assert dosed.counts_scale() == pytest.approx(expected)
    assert resolve_loss("gaussian", counted) == "gaussian"


# ------------------------------------------------------------------------ the engine
def _two_configurations(scan=(6, 6)):
    """Forward data of an even mixture of two objects whose atoms sit 0.4 px apart."""
    data, grid, obj = _forward_dataset(scan=scan)
    second = _shifted(obj[0], (0.0, 0.0)) * np.exp(
        1j * 0.2 * np.cos(np.linspace(0, 6 * np.pi, grid.object_shape[1]))[None, None, :]
    )
    both = np.concatenate([obj, second[None]])
    probe = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=DEFOCUS) * 100.0
    model = MultisliceModel(
        DOUBLE,
        wavelength_A=wavelength_A(E_EV),
        pixel_size_A=grid.pixel_size_A,
        slice_thickness_A=[1.0],
        positions_px=grid.positions_px,
        object_shape=grid.object_shape,
        window=(K, K),
    )
    inten = np.asarray(model.intensities(both, probe[None], (0.0, 0.0)))
    inten = np.fft.fftshift(inten, axes=(-2, -1)).reshape(*scan, K, K)
    return STEMDataset(inten, E_EV, ALPHA, STEP, DK, DEFOCUS, source="mix.h5")


def _staged(states_iterations: int) -> ReconstructionConfig:
    return ReconstructionConfig(
        stages=[
            StageConfig(name="mean", iterations=40, refine=("object", "probe")),
            StageConfig(name="states", iterations=states_iterations, object_states=2),
        ],
        **NONE,
    ).validate()


def test_separation_report_says_when_states_did_and_did_not_separate(tmp_path):
    data = _two_configurations()
    short = run_to_end(data, _staged(1))
    (report,) = short.diagnostics["separation"]
    assert not report["separated"] and report["stage"] == "states"
    assert any("did not separate" in w for w in short.diagnostics["warnings"])
    done = run_to_end(data, _staged(60))
    (report,) = done.diagnostics["separation"]
    assert report["separated"] and report["gain"] > 0.5, report
    assert report["spread_rad"] > 10 * short.diagnostics["separation"][0]["spread_rad"]
    # the report travels with the reconstruction file
    save_reconstruction(tmp_path / "r.h5", short)
    assert load_reconstruction(tmp_path / "r.h5").diagnostics == short.diagnostics


def test_a_finite_source_goes_into_the_source_size_not_into_the_states():
    """Data of a static object seen through a Gaussian source (the physics of PSC)."""
    scan = (8, 8)
    data, grid, obj = _forward_dataset(scan=scan)
    probe = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=DEFOCUS) * 100.0
    k = coherence.window_frequencies((K, K), grid.pixel_size_A)
    sigma = 0.25  # Å, FWHM 0.59 Å
    modes = coherence.expand_modes(DOUBLE, probe[None], sigma, coherence.gauss_hermite_source(7), k)
    model = MultisliceModel(
        DOUBLE,
        wavelength_A=wavelength_A(E_EV),
        pixel_size_A=grid.pixel_size_A,
        slice_thickness_A=[1.0],
        positions_px=grid.positions_px,
        object_shape=grid.object_shape,
        window=(K, K),
    )
    inten = np.fft.fftshift(np.asarray(model.intensities(obj, modes, (0.0, 0.0))), axes=(-2, -1))
    blurred = STEMDataset(inten.reshape(*scan, K, K), E_EV, ALPHA, STEP, DK, DEFOCUS)
    gaussian = dict(partial_coherence="gaussian")
    cfg = ReconstructionConfig(
        stages=[
            StageConfig(
                name="mean", iterations=60, refine=("object", "probe", "source"), **gaussian
            ),
            StageConfig(
                name="states",
                iterations=40,
                object_states=4,
                refine=("object", "probe", "source"),
                **gaussian,
            ),
        ],
        source_fwhm_A=0.3,
        **NONE,
    ).validate()
    state = run_to_end(blurred, cfg)
    truth = sigma * coherence.FWHM_PER_SIGMA
    assert state.source_fwhm_A == pytest.approx(truth, rel=0.2)

    def rigid_shifts_A(st):
        generators = StateShifts(DOUBLE, st.object.mean(axis=0), grid.pixel_size_A)
        return float(np.sqrt(np.mean(generators.shifts_A(st.object) ** 2)))

    assert rigid_shifts_A(state) < 0.01
    # the same data with free states and a coherent probe: the states take the blur as rigid
    # shifts of the whole object (the PSC offset of the correlations)
    free = ReconstructionConfig(
        stages=[
            StageConfig(name="mean", iterations=60, refine=("object", "probe")),
            StageConfig(name="states", iterations=40, object_states=4, remove_state_shifts=False),
        ],
        **NONE,
    ).validate()
    assert rigid_shifts_A(run_to_end(blurred, free)) > 0.2 * sigma


# ------------------------------------------------------------------------ probe modes
def test_probe_modes_kept_orthogonal_without_changing_the_run():
    from test_engine import _collect, _same

    from caviar_napari.core.engine import RunControl, run

    data, _, _ = _forward_dataset(scan=(4, 4))

    def config(every):
        stage = StageConfig(
            iterations=9, probe_modes=3, refine=("object", "probe"), orthogonalise_probe_every=every
        )
        return ReconstructionConfig(stages=[stage], precision="double", **NONE).validate()

    plain, kept = run_to_end(data, config(0)), run_to_end(data, config(3))
    flat = kept.probe.reshape(3, -1)
    gram = flat.conj() @ flat.T
    off = gram - np.diag(np.diag(gram))
    assert np.abs(off).max() < 1e-9 * np.abs(gram).max()
    assert np.all(np.diff(np.diag(gram).real) <= 0)  # strongest first
    # an isometric change of variables: the same iterates (the memory follows it)
    np.testing.assert_allclose(kept.loss, plain.loss, rtol=1e-9)
    # and a stopped run resumes exactly across an orthogonalisation
    control = RunControl()
    stopped, _ = _collect(run(data, config(3), control=control), 4, control)
    _same(run_to_end(data, config(3), state=stopped), kept)


def test_a_measured_starting_probe_is_used_on_the_padded_window():
    from caviar_napari.core.engine import initial_state
    from caviar_napari.core.geometry import plan_geometry

    data, grid, _ = _forward_dataset(scan=(3, 3))
    measured = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=-40.0)
    with_probe = STEMDataset(
        data.intensities, E_EV, ALPHA, STEP, DK, DEFOCUS, probe_initial=measured[None]
    )
    cfg = ReconstructionConfig(detector_padding="none", device="cpu").validate()
    geom = plan_geometry(with_probe, cfg)
    start = initial_state(with_probe, cfg, geom, np.complex128).probe[0]
    scale = np.sqrt(np.sum(np.abs(start) ** 2) / np.sum(np.abs(measured) ** 2))
    np.testing.assert_allclose(start, measured * scale, atol=1e-12 * np.abs(start).max())
    # on a padded window the probe keeps its angles: the same spectrum, zero beyond
    from caviar_napari.core.engine import _on_window

    big = _on_window(measured, (2 * K, 2 * K))
    spec = lambda a: np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(a), norm="ortho"))  # noqa: E731
    inner = spec(big)[K // 2 : K // 2 + K, K // 2 : K // 2 + K]
    np.testing.assert_allclose(inner, spec(measured), atol=1e-12)
    assert np.sum(np.abs(big) ** 2) == pytest.approx(np.sum(np.abs(measured) ** 2))


# ------------------------------------------------------------------------ held-out patterns
def test_held_out_positions_form_an_even_lattice():
    from caviar_napari.core.holdout import holdout_fraction, split_positions

    fit, held = split_positions((12, 12), 0.1)
    assert len(held) == pytest.approx(14.4, abs=2) and len(fit) + len(held) == 144
    assert not set(fit) & set(held)
    iy, ix = np.divmod(held, 12)
    assert np.ptp(iy) >= 10 and np.ptp(ix) >= 10  # spread over the whole scan
    assert holdout_fraction("auto", True) == 0.1 and holdout_fraction("auto", False) == 0.0
    assert split_positions((4, 4), 0.0)[1].size == 0


def test_held_out_patterns_stop_the_fit_before_it_learns_the_noise():
    """Low-dose counts: the held-out loss ends the stage early, and the object is closer to
    the truth than after running all iterations on every pattern."""
    data, grid, obj = _forward_dataset(scan=(10, 10))
    per_pattern = data.intensities / data.intensities.sum(axis=(2, 3), keepdims=True)
    counts = np.random.default_rng(0).poisson(per_pattern * 3e3).astype(np.float32)
    noisy = STEMDataset(counts, E_EV, ALPHA, STEP, DK, DEFOCUS)
    lo = np.floor(grid.positions_px.min(0)).astype(int)
    hi = np.ceil(grid.positions_px.max(0)).astype(int)
    inside = np.s_[lo[0] : hi[0], lo[1] : hi[1]]

    def correlation(state):
        phase = np.angle(state.object.mean(axis=0).sum(axis=0))[inside]
        return np.corrcoef(phase.ravel(), np.angle(obj[0, 0])[inside].ravel())[0, 1]

    def config(**kw):
        stage = StageConfig(iterations=300, refine=("object", "probe"), **kw)
        holdout = "auto" if kw.get("stop_patience", 1) else 0.0
        return ReconstructionConfig(stages=[stage], holdout_fraction=holdout, **NONE)

    held = run_to_end(noisy, config().validate())
    assert held.diagnostics["loss"] == "poisson" and held.diagnostics["held_out_patterns"] > 5
    assert len(held.loss) < 100
    everything = run_to_end(noisy, config(stop_patience=0).validate())
    assert len(everything.loss) == 300
    assert correlation(held) > correlation(everything) + 0.05


def test_a_stage_computes_in_its_own_precision(tmp_path):
    """A double-precision states stage after a single-precision first stage: the states stage
    is the one a resumed double-precision run of the saved first stage gives, exactly."""
    data = _two_configurations(scan=(5, 5))
    config = _staged(8)
    config.precision = "single"
    config.stages[1].precision = "double"
    config.validate()
    assert config.stage_precision(0) == "single" and config.widest_precision == "double"
    mixed = run_to_end(data, config)
    assert mixed.object.dtype == np.complex128 and mixed.object.shape[0] == 2
    # the same, in two runs: the first stage alone in single precision, then the second
    first = ReconstructionConfig.from_dict(
        {**config.to_dict(), "stages": [config.stages[0].to_dict()]}
    )
    state = run_to_end(data, first)
    assert state.object.dtype == np.complex64
    state.stage_index, state.stage_iteration, state.optimiser_state = 1, 0, None
    rest = ReconstructionConfig.from_dict({**config.to_dict(), "precision": "double"})
    rest.stages[1].precision = None
    resumed = run_to_end(data, rest, state=state)
    np.testing.assert_array_equal(resumed.object, mixed.object)
    assert resumed.loss == mixed.loss
    with pytest.raises(InputError, match="stage 'states'.*'precision'"):
        ReconstructionConfig.from_dict(
            {
                **config.to_dict(),
                "stages": [
                    config.stages[0].to_dict(),
                    {**config.stages[1].to_dict(), "precision": "half"},
                ],
            }
        )


def test_failed_line_searches_count_as_a_stall_of_their_precision():
    """Half or more of the last TREND_WINDOW line searches failed: the stage stalled in its
    precision, as when it found no decrease at all; fewer, or too short a record: it did not."""
    from types import SimpleNamespace

    from caviar_napari.core.engine import _stalled_in

    stage = SimpleNamespace(name="states")

    def state(searches, stalled=None):
        diagnostics = {"line_search": {"states": searches}}
        if stalled:
            diagnostics["stalled"] = {"states": stalled}
        return SimpleNamespace(diagnostics=diagnostics)

    half = [True, False] * (TREND_WINDOW // 2)
    assert _stalled_in(state(half), stage, "single") == "single"
    assert _stalled_in(state(half), stage, "double") == "double"
    assert _stalled_in(state([False] + half[1:-1] + [False]), stage, "single") == ""
    assert _stalled_in(state(half[:-1]), stage, "single") == ""  # fewer than the window
    assert _stalled_in(state([], stalled="single"), stage, "double") == "single"
