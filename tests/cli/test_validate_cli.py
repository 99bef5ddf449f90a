"""``caviar validate``: the options and the checks that come before the (long) study."""

from __future__ import annotations

import shlex

from caviar_napari.cli import build_parser, main
from caviar_napari.cli.validate import command_line


def test_bad_cases_and_unwritable_document_fail_before_the_study(tmp_path, capsys):
    work = tmp_path / "work"
    argv = ["validate", "--size", "test", "--workdir", str(work)]
    assert main([*argv, "--cases", "hbn-liquid"]) == 2
    assert "unknown case(s) ['hbn-liquid']" in capsys.readouterr().err
    assert main([*argv, "--psc-modes", "0"]) == 2
    assert "--psc-modes must be ≥ 1" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main([*argv, "--doc", str(tmp_path / "file" / "v.md")]) == 2
    assert "file is not a directory" in capsys.readouterr().err
    assert not work.exists()  # nothing was simulated


def test_recorded_command_reproduces_the_options():
    argv = ["validate", "--size", "test", "--seed", "3", "--psc-modes", "1", "3", "--control"]
    args = build_parser().parse_args(argv)
    again = build_parser().parse_args(shlex.split(command_line(args))[1:])
    assert vars(again) == vars(args)
