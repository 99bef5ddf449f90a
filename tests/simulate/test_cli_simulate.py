"""`caviar simulate`: every preset parameter is an option, and the file records the command."""

from __future__ import annotations

import argparse
import json

import h5py
import pytest

from caviar_napari.cli import simulate as cli
from caviar_napari.errors import InputError
from caviar_napari.simulate.presets import SimulationConfig


def _parse(argv):
    parser = argparse.ArgumentParser(prog="caviar")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["simulate", *argv])


def test_every_parameter_is_an_option():
    text = argparse.ArgumentParser(prog="caviar")
    sub = text.add_subparsers(dest="command")
    cli.add_parser(sub)
    help_text = sub.choices["simulate"].format_help()
    for f in SimulationConfig.__dataclass_fields__:
        if f != "preset":
            assert "--" + f.replace("_", "-") in help_text, f
    for alias in ("--temperature", "--configs", "--scan", "--step", "--dose", "--seed", "--mass"):
        assert alias in help_text
    for preset in (
        "hbn-static",
        "hbn-einstein",
        "hbn-correlated",
        "hbn-correlated-psc",
        "si110-static",
    ):
        assert preset in help_text


def test_dry_run_resolves_overrides(tmp_path, capsys):
    args = _parse(
        [
            "hbn-einstein",
            "--out",
            str(tmp_path / "x.h5"),
            "--dry-run",
            "--temperature",
            "150",
            "--configs",
            "3",
            "--scan",
            "5",
            "6",
            "--step",
            "0.3",
            "--dose",
            "1e4",
            "--seed",
            "9",
            "--mass",
            "B=11",
            "--einstein-rms-A",
            "N=0.05",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    params = json.loads(out.splitlines()[-1])
    assert params["temperature_K"] == 150.0 and params["n_configs"] == 3
    assert params["scan_shape"] == [5, 6] and params["scan_step_A"] == [0.3, 0.3]
    assert params["dose_e_per_A2"] == 1e4 and params["seed"] == 9
    assert params["masses_amu"] == {"B": 11.0} and params["einstein_rms_A"] == {"N": 0.05}
    assert params["thermal_model"] == "einstein"  # the preset's own value is kept
    assert not (tmp_path / "x.h5").exists()


def test_simulate_writes_file_with_command(tmp_path, capsys):
    pytest.importorskip("abtem")
    out = tmp_path / "tiny.h5"
    args = _parse(
        [
            "hbn-correlated",
            "--out",
            str(out),
            "--cells",
            "2",
            "--configs",
            "2",
            "--scan",
            "3",
            "3",
            "--detector-shape",
            "40",
            "24",
            "--temperature-K",
            "100",
            "--seed",
            "5",
        ]
    )
    assert args.func(args) == 0
    assert "wrote" in capsys.readouterr().out
    with h5py.File(out, "r") as f:
        assert f["intensities"].shape == (3, 3, 40, 24)
        g = f["ground_truth"]
        assert g.attrs["temperature_K"] == 100.0
        assert g["positions_A"].shape[0] == 2
        cmd = g.attrs["command"]
        assert cmd.startswith("caviar simulate hbn-correlated --out ")
        for part in (
            "--cells 2 2",
            "--n-configs 2",
            "--scan-shape 3 3",
            "--seed 5",
            "--temperature-K 100",
            "--detector-shape 40 24",
        ):
            assert part in cmd


def test_bad_option_values_name_the_parameter(tmp_path):
    args = _parse(["hbn-static", "--out", str(tmp_path / "x.h5"), "--scan", "0", "4"])
    with pytest.raises(InputError, match="'scan_shape'"):
        args.func(args)
    args = _parse(["hbn-static", "--out", str(tmp_path / "x.h5"), "--mass", "B:11"])
    with pytest.raises(InputError, match="--masses-amu expects SPECIES=VALUE"):
        args.func(args)
    args = _parse(["hbn-static", "--out", str(tmp_path / "x.h5"), "--step", "1", "2", "3"])
    with pytest.raises(InputError, match="--scan-step-A takes one value or a"):
        args.func(args)
