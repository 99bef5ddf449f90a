"""The end-to-end validation study (issue 8): its metrics, its recorded commands, a small study.

The metrics (:mod:`caviar_napari.analysis.truth`) are checked against known answers; the
study (:mod:`caviar_napari.workflows.study`) runs the whole pipeline through the workflow
functions (abTEM → reconstruct → atoms → correlations) at the ``test`` size on fixed seeds and
asserts the ordering the paper's Fig. 2 shows: correlated vibrations are recovered with a higher
CSM than uncorrelated (Einstein) ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from caviar_napari.analysis.truth import (
    field_of_view,
    offset_A2,
    rms_displacement_A,
    state_recovery,
)
from caviar_napari.errors import InputError
from caviar_napari.workflows.study_config import (
    SIZES,
    Case,
    StudyConfig,
    reconstruction_config,
    replace_size,
    select_cases,
    simulate_argv,
    simulate_overrides,
)


# ------------------------------------------------------------------------------ metrics
def test_offset_is_the_uniform_xx_yy_offset():
    rng = np.random.default_rng(1)
    n = 7
    a = rng.normal(size=(2 * n, 2 * n))
    base = a @ a.T * 1e-4  # any symmetric positive tensor, Å²
    c = 3e-3
    shifted = base + c * np.kron(np.ones((n, n)), np.eye(2))  # c on every yy and xx entry
    assert offset_A2(shifted) - offset_A2(base) == pytest.approx(c, rel=1e-12)
    blocks = base.reshape(n, 2, n, 2)
    expected = np.mean(
        [
            (blocks[i, 0, j, 0] + blocks[i, 1, j, 1]) / 2
            for i in range(n)
            for j in range(n)
            if i != j
        ]
    )
    assert offset_A2(base) == pytest.approx(expected, rel=1e-12)
    # an excluded atom (NaN rows) is left out, not propagated
    holed = base.copy()
    holed[4:6] = np.nan
    holed[:, 4:6] = np.nan
    keep = np.r_[0:4, 6 : 2 * n]
    assert offset_A2(holed) == pytest.approx(offset_A2(base[np.ix_(keep, keep)]), rel=1e-12)


def test_rms_displacement():
    g = np.diag([4e-4, 1e-4, np.nan, np.nan, 9e-4, 2e-4])
    assert rms_displacement_A(g) == pytest.approx(np.sqrt(np.mean([4e-4, 1e-4, 9e-4, 2e-4])))


def test_state_recovery_finds_a_permutation_and_its_null_level():
    rng = np.random.default_rng(2)
    configs = rng.normal(0, 0.03, (8, 40, 2))
    perm = rng.permutation(8)
    states = configs[perm] + rng.normal(0, 0.003, configs.shape)
    rec = state_recovery(states, configs)
    assert rec.mean_r > 0.99
    np.testing.assert_array_equal(rec.assignment[:, 1], perm[rec.assignment[:, 0]])
    # unrelated fields: the assignment alone gives the null level, far below 1
    assert rec.null_r < 0.5
    unrelated = state_recovery(rng.normal(0, 0.03, configs.shape), configs)
    assert abs(unrelated.mean_r - unrelated.null_r) < 0.1


def test_field_of_view_and_bad_inputs():
    pos = np.stack(np.meshgrid(np.arange(5) * 0.5, np.arange(4) * 0.5, indexing="ij"), -1)
    np.testing.assert_allclose(field_of_view(pos), [[0, 0], [2.0, 1.5]])
    np.testing.assert_allclose(field_of_view(pos, 0.25), [[0.25, 0.25], [1.75, 1.25]])
    with pytest.raises(InputError, match="margin"):
        field_of_view(pos, 1.0)
    with pytest.raises(InputError, match="scan_shape"):
        replace_size(SIZES["test"], scan_shape=(0, 4))
    with pytest.raises(InputError, match="iterations"):
        replace_size(SIZES["test"], iterations=(10,))
    with pytest.raises(InputError, match="start_positions"):
        StudyConfig(size=SIZES["test"], workdir=".", start_positions="clicked")
    with pytest.raises(InputError, match="unknown preset"):
        Case("hbn-liquid")


def test_recorded_commands_mean_what_the_study_runs(tmp_path):
    """The recorded ``caviar simulate`` command parses to the options the study runs; the
    recipe is the paper's."""
    from caviar_napari.cli import build_parser
    from caviar_napari.cli.simulate import overrides_from_args
    from caviar_napari.simulate.presets import preset_config

    size = SIZES["test"]
    argv = simulate_argv("hbn-correlated", size, 5, tmp_path / "d.h5")
    parsed = overrides_from_args(build_parser().parse_args(argv))
    assert parsed == simulate_overrides("hbn-correlated", size, 5)
    cfg = preset_config("hbn-correlated", **parsed)
    assert cfg.cells == size.cells and cfg.detector_shape == size.detector_shape
    assert cfg.scan_shape == size.scan_shape and cfg.scan_step_A == size.scan_step_A
    assert cfg.n_configs == size.n_configs and cfg.seed == 5
    assert cfg.thermal_model == "correlated" and cfg.temperature_K == 300.0
    rc = reconstruction_config(
        size, Case("hbn-correlated", 3, recipe="paper"), device="cpu", seed=5
    )
    first, second = rc.stages
    assert (first.object_states, first.probe_modes, set(first.refine)) == (
        1,
        3,
        {"object", "probe"},
    )
    assert (second.object_states, second.probe_modes, second.refine) == (
        size.object_states,
        3,
        ("object",),
    )
    assert [first.iterations, second.iterations] == list(size.iterations)
    # a step's error reaches the study as the workflow's InputError
    from caviar_napari.workflows.correlations import CorrelationsOptions, run_correlations

    with pytest.raises(InputError):
        run_correlations(CorrelationsOptions(tmp_path / "missing.h5", tmp_path / "c.h5"))


def test_case_selection():
    size = SIZES["test"]
    keys = [c.key for c in select_cases(size, psc_modes=[1, 3, 3], control=True)]
    assert keys == [
        "hbn-static",
        "hbn-einstein",
        "hbn-correlated",
        "hbn-correlated-psc",
        "hbn-correlated-psc_paper-m1",
        "hbn-correlated-psc_paper-m3",
        "hbn-correlated_forward-model",
    ]
    only = select_cases(size, only=["hbn-einstein", "hbn-correlated-psc_paper-m3"])
    assert [c.key for c in only] == ["hbn-einstein", "hbn-correlated-psc_paper-m3"]
    recommended = reconstruction_config(size, Case("hbn-correlated"), device="cpu", seed=5)
    assert [st.partial_coherence for st in recommended.stages] == ["gaussian", "gaussian"]
    assert recommended.stages[1].refine == ("object", "probe", "source")
    assert recommended.stages[1].remove_state_shifts
    # the displaced recipe: the recommended one with its states as displaced atoms
    case = Case("hbn-correlated", recipe="displaced")
    displaced = reconstruction_config(size, case, device="cpu", seed=5)
    assert case.key == "hbn-correlated_displaced" and case.recipe_label == "displaced"
    assert displaced.stages[0] == recommended.stages[0]
    assert displaced.stages[1] == dataclasses.replace(
        recommended.stages[1], state_model="displacements", remove_state_shifts=False
    )
    with pytest.raises(InputError, match="one coherent probe mode"):
        Case("hbn-correlated", 3)
    with pytest.raises(InputError, match="displaced recipe has one coherent probe mode"):
        Case("hbn-correlated", 2, recipe="displaced")
    with pytest.raises(InputError, match="unknown case"):
        select_cases(size, only=["hbn-liquid"])
    with pytest.raises(InputError, match="--psc-modes"):
        select_cases(size, psc_modes=[0])


# ------------------------------------------------------------------------------ the study
@pytest.mark.slow
def test_small_study_recovers_correlated_better_than_einstein(tmp_path):
    """Whole pipeline at the ``test`` size (12 × 12 scan, 8 configurations and states), with
    the paper's two-stage recipe (one coherent probe mode): the recommended recipe's fitted
    source costs several times more per iteration, and its own end-to-end runs are
    ``tests/cli/test_mixture.py`` (default settings) and docs/validation.md (this study with
    the recommended recipe: correlated CSM nn 0.94, Einstein 0.30 against the correlated
    truth).
    """
    from caviar_napari.workflows.study import run_study

    config = StudyConfig(
        size=SIZES["test"],
        workdir=tmp_path,
        cases=(Case("hbn-einstein", recipe="paper"), Case("hbn-correlated", recipe="paper")),
        seed=0,
    )
    result = run_study(config)
    ein, cor = (result.by_key(f"{p}_paper-m1") for p in ("hbn-einstein", "hbn-correlated"))
    for r in (ein, cor):
        # the steps ran through the workflows and left their files
        assert [c.split()[1] for c in r.commands] == [
            "simulate",
            "reconstruct",
            "atoms",
            "correlations",
        ]
        assert all(p.exists() for p in r.paths.values())
        # reconstruction frame = ground-truth scan frame: every atom found, no global shift
        assert r.n_atoms >= 8 and r.n_matched == r.n_atoms
        assert np.hypot(*r.match_shift_A) < 0.02  # measured < 0.005 Å
        assert r.mean_position_error_A < 0.03  # measured 0.011-0.013 Å
        assert 0 < r.rms_rec_A and np.isfinite(r.own.csm_nn)
    # conventions agree between abTEM (caviar simulate) and the engine's forward model: the
    # true configurations' phases and probe give the simulated intensities back (measured
    # relative difference 0.17 %)
    from caviar_napari.io.dataset import read_stem_h5
    from caviar_napari.workflows.study import forward_model_data

    forward_model_data(cor.paths["data"], tmp_path / "control.h5")
    sim, control = read_stem_h5(cor.paths["data"]), read_stem_h5(tmp_path / "control.h5")
    diff = np.linalg.norm(control.intensities - sim.intensities)
    assert diff < 0.01 * np.linalg.norm(sim.intensities)
    # the correlated dataset is its own reference truth
    assert cor.reference.csm_nn == pytest.approx(cor.own.csm_nn)
    # each reconstruction recovers its own truth: the correlations and their size
    # each against its own realised truth, with margins of the sampling spread of 8 states
    # (the jackknife error of ρ_nn is about 0.1 there)
    for r in (ein, cor):
        assert r.own.csm_nn > 0.8 and r.own.csm_nn_cross > 0.7
        assert 0.6 * r.rms_truth_A < r.rms_rec_A < 1.3 * r.rms_truth_A
        assert abs(r.rho_nn_rec - r.rho_nn_truth) < 0.2
    assert cor.rho_nn_rec > ein.rho_nn_rec + 0.15
    # the claim of the paper's Fig. 2 c-d (every dataset against the correlated truth, as the
    # paper compares with the MD correlations), on a fixed seed
    assert cor.reference.csm_nn > ein.reference.csm_nn + 0.2
    assert cor.reference.csm_nn_cross > ein.reference.csm_nn_cross + 0.4
