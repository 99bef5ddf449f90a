"""``caviar atoms --slices A:B`` / ``--zrange LABEL=A:B`` on a small reconstruction file."""

from __future__ import annotations

import pytest
from scipy.spatial import cKDTree
from test_atoms_cli import recon_file  # noqa: F401  (fixture: 3 states × 2 slices)

from caviar_napari.cli import atoms as atoms_cli
from caviar_napari.cli import main
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import atoms_zrange_labels, read_atoms


def test_parse_zranges():
    assert atoms_cli.parse_zranges(["up=0:2", " low = 2: "]) == (("up", "0:2"), ("low", "2:"))
    assert atoms_cli.parse_zranges(None) == ()
    with pytest.raises(InputError, match="LABEL=A:B"):
        atoms_cli.parse_zranges(["0:2"])


def test_slices_writes_one_zrange(recon_file, tmp_path, capsys):  # noqa: F811
    path = recon_file[0]
    out = tmp_path / "a.h5"
    assert main(["atoms", str(path), "--out", str(out), "--slices", "1:2",
                 "--sigma-min-A", "0.1", "--sigma-max-A", "0.3"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "z-range: slices 1:2 of 2, z = 5.0 … 10.0 Å" in text
    atoms = read_atoms(out)
    assert atoms.positions_A.shape[:2] == (3, 1)
    assert atoms.zrange.spec == "1:2" and atoms.zrange.z_extent_A == (5.0, 10.0)


def test_zranges_write_labelled_groups(recon_file, tmp_path, capsys):  # noqa: F811
    path, _, positions, _ = recon_file
    out = tmp_path / "a.h5"
    argv = ["atoms", str(path), "--out", str(out), "--zrange", "a=0:1", "--zrange", "b=1:2",
            "--sigma-min-A", "0.1", "--sigma-max-A", "0.3"]  # fmt: skip
    assert main(argv) == 0
    assert atoms_zrange_labels(out) == ["a", "b"]
    a, b = read_atoms(out, "a"), read_atoms(out, "b")
    # each range finds its slice's atoms on its own (mean over its states)
    for j, got in enumerate((a, b)):
        d, _ = cKDTree(positions[:, j].mean(axis=0)).query(got.mean_positions_A)
        assert len(got.mean_positions_A) == 25 and d.max() < 0.02
    capsys.readouterr()
    both = ["--slices", "0:1", "--zrange", "a=0:1"]
    assert main(["atoms", str(path), "--out", str(tmp_path / "c.h5"), *both]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(["atoms", str(path), "--out", str(tmp_path / "c.h5"), "--slices", "5:7"]) == 2
    assert "selects no slice" in capsys.readouterr().err
    assert not (tmp_path / "c.h5").exists()
