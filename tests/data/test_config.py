"""Reconstruction configuration: YAML round trips (text and file), validation messages, presets,
overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from caviar_napari.data.config import (
    ReconstructionConfig,
    StageConfig,
    apply_overrides,
    config_from_yaml,
    config_to_yaml,
    displaced_recipe,
    recommended_recipe,
    single_stage,
    two_stage_preset,
)
from caviar_napari.errors import InputError
from caviar_napari.io.config_file import load_yaml, save_yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "resources" / "example-config.yaml"


def test_yaml_round_trip(tmp_path):
    cfg = two_stage_preset(object_states=12, probe_modes=3, slices=2, seed=7, device="cpu")
    cfg.stages[0].slice_thickness_A = [4.0, 6.0]
    cfg.stages[1].l1_absorption = 0.01
    cfg.tilt_mrad = (1.5, -0.5)
    cfg.validate()
    path = tmp_path / "c.yaml"
    save_yaml(path, cfg)
    back = load_yaml(path)
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()
    assert back.stages[0].thicknesses_A() == [4.0, 6.0]
    assert back.stages[1].thicknesses_A() == [10.0, 10.0]
    assert back.tilt_mrad == (1.5, -0.5)


def test_yaml_text_round_trip_and_file_is_that_text(tmp_path):
    cfg = two_stage_preset(object_states=4, probe_modes=2, seed=5, device="cpu")
    text = config_to_yaml(cfg)
    assert config_from_yaml(text) == cfg
    path = tmp_path / "c.yaml"
    save_yaml(path, cfg)
    assert path.read_text(encoding="utf-8") == text
    assert config_from_yaml("") == ReconstructionConfig().validate()
    with pytest.raises(InputError, match=r"^here: not valid YAML"):
        config_from_yaml("stages: [unclosed\n", source="here")


def test_example_config_loads():
    cfg = load_yaml(EXAMPLE)
    assert [s.name for s in cfg.stages] == ["mean object", "object states"]
    # the recommended recipe (also the PSC recipe), with longer stages than the default
    assert cfg.stages[0].probe_modes == 1 and cfg.stages[0].object_states == 1
    assert [s.partial_coherence for s in cfg.stages] == ["gaussian", "gaussian"]
    assert cfg.stages[1].object_states == 10
    assert cfg.stages[1].refine == ("object", "probe", "source")
    assert cfg.stages[1].remove_state_shifts and cfg.loss == "auto"
    assert cfg.total_iterations == 320
    # the same recipe with the states as displaced atoms that may move rigidly
    displaced = load_yaml(EXAMPLE.with_name("displaced-states.yaml"))
    assert displaced.stages[:1] == cfg.stages[:1]
    assert displaced.stages[1] == dataclasses.replace(
        cfg.stages[1], state_model="displacements", remove_state_shifts=False
    )
    assert displaced.to_dict() | {"stages": []} == cfg.to_dict() | {"stages": []}
    recipe = dict(object_states=10, slice_thickness_A=4.0, iterations=(120, 200))
    assert cfg.stages == recommended_recipe(**recipe).stages
    assert displaced.stages == displaced_recipe(**recipe).stages


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"seed": 1, "itterations": 5}))
    with pytest.raises(InputError, match=r"bad\.yaml: unknown key 'itterations'"):
        load_yaml(path)
    path.write_text(yaml.safe_dump({"stages": [{"iterations": 5, "modes": 2}]}))
    with pytest.raises(InputError, match=r"bad\.yaml: unknown key 'modes' in stages\[0\]"):
        load_yaml(path)


def test_yaml_file_errors(tmp_path):
    with pytest.raises(InputError, match="configuration file not found"):
        load_yaml(tmp_path / "none.yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("stages: [unclosed\n")
    with pytest.raises(InputError, match=r"broken\.yaml: not valid YAML"):
        load_yaml(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="must be a mapping"):
        load_yaml(path)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == ReconstructionConfig().validate()


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"device": "tpu"}, r"'device' must be one of auto, cpu, gpu; got 'tpu'"),
        ({"precision": "half"}, r"'precision' must be one of single, double"),
        ({"loss": "l2"}, r"'loss' must be one of auto, gaussian, poisson"),
        ({"seed": -1}, r"'seed' must be ≥ 0"),
        ({"batch_size": 0}, r"'batch_size' must be ≥ 1"),
        ({"batch_size": 2.5}, r"'batch_size' must be an integer"),
        ({"checkpoint_every": 5}, r"'checkpoint_every' is 5 but no 'checkpoint_path'"),
        ({"tilt_mrad": [1, 2, 3]}, r"'tilt_mrad' must be a \(y, x\) pair"),
        ({"detector_padding": "always"}, r"'detector_padding' must be auto, none"),
        ({"stages": []}, r"'stages' must be a non-empty list"),
        ({"stages": [{"iterations": -3}]}, r"stage 'stage'.*'iterations' must be ≥ 0"),
        ({"stages": [{"object_states": 0}]}, r"'object_states' must be ≥ 1"),
        ({"stages": [{"refine": ["object", "phase"]}]}, r"'refine' must be one of object, probe"),
        ({"stages": [{"refine": []}]}, r"'refine' is empty"),
        ({"stages": [{"slices": 3, "slice_thickness_A": [1, 2]}]}, r"has 2 values but 'slices'"),
        ({"stages": [{"slice_thickness_A": 0}]}, r"'slice_thickness_A' must be > 0"),
        ({"stages": [{"optimizer": "adam"}]}, r"'optimizer' must be one of lbfgs, gd"),
        ({"stages": [{"l1_absorption": -1}]}, r"'l1_absorption' must be ≥ 0"),
        ({"stages": [{"missing_wedge": float("nan")}]}, r"'missing_wedge' must be finite"),
        ({"stages": ["fast"]}, r"stages\[0\] must be a mapping"),
    ],
)
def test_validation_messages(data, pattern):
    with pytest.raises(InputError, match=pattern):
        ReconstructionConfig.from_dict(data, source="cfg.yaml")


def test_refine_normalised_to_canonical_order():
    st = StageConfig(refine=["tilt", "object"]).validate()
    assert st.refine == ("object", "tilt")
    assert StageConfig(refine="probe").validate().refine == ("probe",)


def test_presets():
    cfg = two_stage_preset(object_states=15, probe_modes=5, iterations=(20, 40))
    s1, s2 = cfg.stages
    assert (s1.object_states, s1.probe_modes, s1.refine) == (1, 5, ("object", "probe"))
    assert (s2.object_states, s2.probe_modes, s2.refine) == (15, 5, ("object",))
    assert cfg.total_iterations == 60
    one = single_stage(iterations=7, object_states=3, slices=2, slice_thickness_A=5.0, seed=4)
    assert len(one.stages) == 1 and one.seed == 4
    assert one.stages[0].thicknesses_A() == [5.0, 5.0]


def test_overrides_follow_documented_rules():
    cfg = two_stage_preset(object_states=10, probe_modes=4, slice_thickness_A=8.0)
    out = apply_overrides(
        cfg, iterations=3, object_states=6, probe_modes=2, slices=2, device="cpu", seed=None
    )
    assert [s.iterations for s in out.stages] == [1, 2]  # 3 in total, shared like 50:100
    assert [s.object_states for s in out.stages] == [1, 6]  # only the last stage
    displaced = apply_overrides(cfg, state_model="displacements").stages
    assert [s.state_model for s in displaced] == ["free", "displacements"]  # the last stage
    penalised = apply_overrides(cfg, state_penalty="auto").stages
    assert [s.state_penalty for s in penalised] == [0.0, "auto"]
    assert [s.probe_modes for s in out.stages] == [2, 2]
    assert [s.thicknesses_A() for s in out.stages] == [[8.0, 8.0]] * 2
    assert out.device == "cpu" and out.seed == cfg.seed  # None leaves the value
    assert cfg.stages[0].iterations == 50  # the input is not modified
    lst = single_stage(slices=2)
    lst.stages[0].slice_thickness_A = [3.0, 5.0]
    assert apply_overrides(lst, slices=4).stages[0].thicknesses_A() == [2.0] * 4  # total kept
    with pytest.raises(InputError, match="unknown configuration option 'colour'"):
        apply_overrides(cfg, colour="red")
