"""States that did not separate are said so plainly: in the CLI's output and in the RECON
file (issue 12, must-show 4), from a real run with too few state iterations."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "core"))

from test_separation import _staged, _two_configurations

from caviar_napari.cli import main
from caviar_napari.io.config_file import save_yaml
from caviar_napari.io.dataset import write_stem_h5
from caviar_napari.io.reconstruction import load_reconstruction


def test_unseparated_states_are_reported_in_the_cli_and_the_file(tmp_path, capsys):
    write_stem_h5(tmp_path / "mix.h5", _two_configurations())
    argv = ["reconstruct", str(tmp_path / "mix.h5")]
    for iterations, name in ((1, "short"), (60, "long")):
        save_yaml(tmp_path / f"{name}.yaml", _staged(iterations))
        out = tmp_path / f"{name}.h5"
        assert main([*argv, "--out", str(out), "--config", str(tmp_path / f"{name}.yaml")]) == 0
        err = capsys.readouterr().err
        stored = load_reconstruction(out).diagnostics.get("warnings", [])
        said = [line for line in err.splitlines() if "did not separate" in line]
        if name == "short":
            assert said and all(line.startswith("caviar reconstruct: warning:") for line in said)
            assert any("did not separate" in w for w in stored)
        else:  # the same data with enough iterations: no such warning
            assert not said and not any("did not separate" in w for w in stored)
