"""The penalty on the object states' deviations, and its weight chosen by held-out patterns."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_engine import ALPHA, DEFOCUS, DK, E_EV, NONE, STEP, _collect, _fd_check, _same
from test_separation import _two_configurations

from caviar_napari.core.engine import RunControl, run, run_to_end
from caviar_napari.core.state_penalty import (
    PENALTY_LADDER,
    PenaltyPath,
    state_deviation_penalty,
)
from caviar_napari.data.config import ReconstructionConfig, StageConfig
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io.reconstruction import checkpoint_writer, load_reconstruction
from caviar_napari.viewmodels.recon_report import result_report


def test_state_penalty_gradient_and_effect():
    rng = np.random.default_rng(4)
    shape = (3, 2, 6, 5)
    obj = np.exp(1j * rng.normal(scale=0.2, size=shape)) * (1 + 0.1 * rng.normal(size=shape))
    _fd_check(lambda o: state_deviation_penalty(o, 0.7, 13.0), obj, rng)
    # zero for identical states; descending it alone pulls the states onto their mean and
    # leaves the mean where it was
    same = np.repeat(obj[:1], 3, axis=0)
    assert state_deviation_penalty(same, 1.0, 13.0)[0] < 1e-28
    o = obj.copy()
    step = 3 * 13.0  # a step of N·A / λ along −∂R/∂O* reaches the quadratic's minimum
    _, g = state_deviation_penalty(o, 1.0, 13.0)
    o = o - step * g
    np.testing.assert_allclose(o, np.repeat(obj.mean(axis=0, keepdims=True), 3, axis=0))


def _held(losses, path, start=1):
    """Feed ``losses`` to ``path``; returns the (improved, changed) flags."""
    return [path.update(start + i, v) for i, v in enumerate(losses)]


def test_penalty_path_tries_each_weight_from_the_best_state():
    # patience 4 without a penalty, 2 for each weight after it
    record: dict = {}
    path = PenaltyPath(record, patience=4, weights=(0.0, 0.01, 0.1))
    assert path.weight == 0.0 and not path.ended
    # unpenalised: best at iteration 3, then 4 iterations without a new minimum
    flags = _held([5, 4, 3, 3.5, 3.6, 3.7, 3.8], path)
    assert [f for f, _ in flags] == [True, True, True, False, False, False, False]
    assert flags[-1][1] and path.weight == 0.01 and record["rung_start"] == 7
    # λ = 0.01 finds new minima (iterations 8, 9), then none for 2 iterations
    flags = _held([2.9, 2.8, 2.85, 2.9], path, start=8)
    assert [f for f, _ in flags] == [True, True, False, False] and flags[-1][1]
    assert path.weight == 0.1 and record["best_weight"] == 0.01 and record["best_iteration"] == 9
    # λ = 0.1 finds nothing better: the path ends, best at λ = 0.01
    flags = _held([3.0, 3.1], path, start=12)
    assert flags[-1] == (False, True) and path.ended
    assert record["rung_best"] == [3, 2.8, 3.0] and record["best"] == 2.8
    assert record["ended"] == "best at λ = 0.01 of 0, 0.01, 0.1"
    # a record continues where it left off (a resumed run decides the same way)
    again = PenaltyPath(dict(record), patience=4)
    assert again.weights == (0.0, 0.01, 0.1) and again.ended and again.weight == 0.1


def test_penalty_path_first_scored_iteration_and_no_patience():
    record: dict = {}
    path = PenaltyPath(record, patience=2, weights=(0.0, 1.0))
    flags = _held([3, 2, 2.5, 2.6], path, start=7)  # first scored iteration 7 (after epochs)
    assert flags[-1] == (False, True) and path.weight == 1.0 and record["rung_start"] == 10
    # without patience the unpenalised fit runs on: no weight is tried
    never = PenaltyPath({}, patience=0)
    assert not any(c for _, c in _held([1, 2, 3, 4, 5, 6], never)) and never.weight == 0.0
    assert PENALTY_LADDER[0] == 0.0 and list(PENALTY_LADDER) == sorted(PENALTY_LADDER)


def test_state_penalty_configuration():
    stage = StageConfig(object_states=2, state_penalty="auto").validate()
    assert stage.state_penalty == "auto"
    assert StageConfig(state_penalty=1).validate().state_penalty == 1.0
    with pytest.raises(InputError, match="'state_penalty' must be a number ≥ 0 or auto, got 'a"):
        StageConfig(state_penalty="automatic").validate()
    with pytest.raises(InputError, match="'state_penalty' must be ≥ 0"):
        StageConfig(state_penalty=-1.0).validate()
    cfg = ReconstructionConfig(stages=[StageConfig(object_states=2, state_penalty="auto")])
    assert ReconstructionConfig.from_dict(cfg.validate().to_dict()).stages[0].state_penalty == (
        "auto"
    )


def _counts(data: STEMDataset, per_pattern: float, seed: int = 0) -> STEMDataset:
    scale = per_pattern / data.intensities.sum(axis=(2, 3)).mean()
    counts = np.random.default_rng(seed).poisson(data.intensities * scale).astype(np.float32)
    return STEMDataset(counts, E_EV, ALPHA, STEP, DK, DEFOCUS, source="counts.h5")


def _states_config(penalty, iterations=24, **kw) -> ReconstructionConfig:
    stage = StageConfig(
        name="states", iterations=iterations, object_states=2, refine=("object",),
        state_noise_rad=0.02, state_penalty=penalty, stop_patience=4,
    )  # fmt: skip
    return ReconstructionConfig(stages=[stage], precision="double", seed=1, **NONE, **kw)


def _spread_of(obj) -> float:
    return float(np.linalg.norm(obj - obj.mean(axis=0)))


def _spread(state) -> float:
    return _spread_of(state.object)


def test_a_fixed_weight_holds_the_states_together():
    data = _counts(_two_configurations(), 2e5)
    free = run_to_end(data, _states_config(0.0, iterations=10).validate())
    held = run_to_end(data, _states_config(10.0, iterations=10).validate())
    assert _spread(held) < 0.5 * _spread(free)


def _objects_by_iteration(data, cfg, **kw):
    """Run ``cfg`` with a checkpoint every iteration; returns the state and the objects."""
    seen = {}
    cfg = ReconstructionConfig.from_dict({**cfg.to_dict(), "checkpoint_every": 1})
    state = run_to_end(
        data, cfg, on_checkpoint=lambda st: seen.__setitem__(st.iteration, st.object.copy()), **kw
    )
    return state, seen


def test_auto_weight_is_chosen_by_held_out_patterns_and_resumes_exactly(tmp_path):
    data = _counts(_two_configurations(), 2e4)
    cfg = _states_config("auto", iterations=40, checkpoint_path=str(tmp_path / "unused.h5"))
    ref, objects = _objects_by_iteration(data, cfg.validate())
    record = ref.diagnostics["state_penalty"]["states"]
    chosen = ref.diagnostics["state_penalty_chosen"]["states"]
    # every weight of the ladder ran; a penalised rung had the lowest held-out loss here
    assert record["weights"] == list(PENALTY_LADDER) and len(record["rung_best"]) == 4
    assert chosen == record["best_weight"] > 0 and "best at λ" in record["ended"]
    assert record["best"] == min(record["rung_best"]) < record["rung_best"][0]
    assert len(record["held"]) == len(ref.loss) < 40 and ref.penalty_best is None
    # the stage ends with the variables of the best held-out loss
    np.testing.assert_array_equal(ref.object, objects[record["best_iteration"]])
    # a rung's weight is applied: from the best state, λ = 0.1 pulls the states together
    last = record["rung_start"]
    assert _spread_of(objects[last + 1]) < _spread_of(objects[last])
    # what the CLI and the dock say
    line = f"state penalty of 'states': λ = {chosen:g}, chosen by the held-out patterns ("
    assert any(s.startswith(line) for s in result_report(ref).lines)
    # stopped inside a penalised rung and resumed from its checkpoint file: the same run
    ckpt = tmp_path / "ck.h5"
    with_ckpt = ReconstructionConfig.from_dict(
        {**cfg.to_dict(), "checkpoint_every": 1, "checkpoint_path": str(ckpt)}
    )
    control = RunControl()
    running = run(data, with_ckpt, control=control, on_checkpoint=checkpoint_writer(ckpt))
    _collect(running, last + 1, control)
    state = load_reconstruction(ckpt)
    assert state.stage_iteration == last + 1 and state.penalty_best is not None
    assert state.diagnostics["state_penalty"]["states"]["rung"] == 3
    resumed = run_to_end(data, with_ckpt, state=state, on_checkpoint=lambda st: None)
    _same(resumed, ref)
    assert resumed.diagnostics["state_penalty"]["states"] == record
    # resumed with more iterations after the ladder's end: nothing is left to choose
    more = ReconstructionConfig.from_dict(
        {**with_ckpt.to_dict(), "checkpoint_every": 0, "stages": [{**cfg.stages[0].to_dict(),
                                                                   "iterations": 60}]}
    )  # fmt: skip
    again = run_to_end(data, more, state=ref.copy())
    _same(again, ref)


def test_a_stage_that_ran_out_of_iterations_goes_on_when_resumed_with_more():
    data = _counts(_two_configurations(), 2e4)
    short = _states_config("auto", iterations=16).validate()
    first = run_to_end(data, short)
    record = first.diagnostics["state_penalty"]["states"]
    assert record["stage_end"] and record["rung"] == 0  # still unpenalised at iteration 16
    assert "end of the stage's iterations" in record["ended"]
    longer = _states_config("auto", iterations=40).validate()
    resumed = run_to_end(data, longer, state=first.copy())
    record = resumed.diagnostics["state_penalty"]["states"]
    assert not record["stage_end"] and record["ended"].startswith("best at λ")
    assert len(record["rung_best"]) == 4 and len(resumed.loss) > len(first.loss)
    assert resumed.loss[: len(first.loss)] == first.loss
    assert record["best"] <= first.diagnostics["state_penalty"]["states"]["best"]


def test_auto_without_held_out_patterns_is_no_penalty():
    data = _counts(_two_configurations(), 2e5)
    auto = run_to_end(data, _states_config("auto", iterations=6, holdout_fraction=0.0).validate())
    zero = run_to_end(data, _states_config(0.0, iterations=6, holdout_fraction=0.0).validate())
    _same(auto, zero)
    assert "state_penalty" not in auto.diagnostics
    assert "state penalty of 'states': auto, 0 (no held-out patterns to choose it)" in (
        result_report(auto).lines
    )
    fixed = run_to_end(data, _states_config(0.5, iterations=1, holdout_fraction=0.0).validate())
    assert "state penalty of 'states': λ = 0.5 (fixed)" in result_report(fixed).lines
    assert math.isfinite(auto.loss[-1])
