"""Nothing is lost (issue 12): no command replaces its inputs or a foreign file, finds an
unwritable output only after computing, or leaves an output behind when it fails.

Every check goes through the one mechanism of :mod:`caviar_napari.io.outputs`, so each case is
shown on one or two sub-commands and the input-identity check on all of them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil

import h5py
import pytest

from caviar_napari.cli import main
from caviar_napari.core import engine
from caviar_napari.io.atoms_file import write_positions_csv


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder) -> list[str]:
    """Temporary files a failed write might have left."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def files(data_file, tmp_path, atoms_and_truth):
    """Every kind of input in one folder: data, recon (1 iteration), config, CSV, atoms, truth."""
    shutil.copy(data_file, tmp_path / "data.h5")
    recon = tmp_path / "recon.h5"
    argv = ["reconstruct", str(tmp_path / "data.h5"), "--out", str(recon), "--device", "cpu"]
    assert main([*argv, "--iterations", "1"]) == 0
    (tmp_path / "config.yaml").write_text("stages:\n  - iterations: 1\n")
    write_positions_csv(tmp_path / "start.csv", [[3.0, 3.0], [3.0, 5.0], [5.0, 3.0]])
    return tmp_path


def no_computation(*args, **kwargs):
    """Stands in for the engine: the output checks must come before any computation."""
    raise AssertionError("the computation started before the output was checked")


def test_out_equal_to_any_input_is_refused(files, capsys, monkeypatch):
    d = files
    argvs = {
        "DATA": ["reconstruct", "data.h5", "--out", "data.h5"],
        "--config": ["reconstruct", "data.h5", "--out", "config.yaml", "--config", "config.yaml"],
        "--resume": ["reconstruct", "data.h5", "--out", "recon.h5", "--resume", "recon.h5"],
        "RECON": ["atoms", "recon.h5", "--out", "recon.h5"],
        "--positions": ["atoms", "recon.h5", "--out", "start.csv", "--positions", "start.csv"],
        "ATOMS": ["correlations", "atoms.h5", "--out", "atoms.h5"],
    }
    argvs["ATOMS "] = ["dispersion", "atoms.h5", "--out", "atoms.h5", "--temperature-K", "300"]
    monkeypatch.chdir(d)
    before = {p.name: digest(p) for p in d.iterdir() if p.is_file()}
    for name, argv in argvs.items():
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"is the {name.strip()} input of the same command" in err, err
    # the same file through another path: absolute, with '..', and a hard link (same inode)
    os.link(d / "data.h5", d / "link.h5")
    (d / "sub").mkdir()
    for out in (d / "data.h5", d / "sub" / ".." / "data.h5", d / "link.h5"):
        assert main(["reconstruct", str(d / "data.h5"), "--out", str(out)]) == 2
        assert "is the DATA input" in capsys.readouterr().err
    assert {p.name: digest(p) for p in d.iterdir() if p.name in before} == before
    assert leftovers(d) == []


def test_out_equal_to_ground_truth_is_refused(atoms_and_truth, capsys):
    atoms, truth = atoms_and_truth
    before = digest(truth)
    argv = ["correlations", str(atoms), "--out", str(truth), "--ground-truth", str(truth)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is the --ground-truth input" in err and err.count("\n") == 1
    assert digest(truth) == before
    with h5py.File(truth) as f:
        assert "ground_truth" in f


def test_existing_file_of_another_program_or_kind_is_not_replaced(atoms_and_truth, capsys):
    atoms, truth = atoms_and_truth
    folder = atoms.parent
    notes = folder / "notes.txt"
    notes.write_text("my notes\n")
    assert main(["correlations", str(atoms), "--out", str(notes)]) == 2
    err = capsys.readouterr().err
    assert "was not written by caviar-napari" in err and "--overwrite" in err
    assert notes.read_text() == "my notes\n"
    # a 4D-STEM file with a ground truth that this program did not write
    before = digest(truth)
    assert main(["dispersion", str(atoms), "--out", str(truth), "--temperature-K", "300"]) == 2
    assert "was not written by caviar-napari" in capsys.readouterr().err
    assert digest(truth) == before
    # a file of this program, but of another kind (a CORR file as the output of atoms)
    corr = folder / "corr.h5"
    assert main(["correlations", str(atoms), "--out", str(corr)]) == 0
    before = digest(corr)
    assert main(["dispersion", str(atoms), "--out", str(corr), "--temperature-K", "300"]) == 2
    assert "is a CORR file, not a DISP file" in capsys.readouterr().err
    assert digest(corr) == before
    # the same kind is replaced without a word (re-running a step); --overwrite replaces anything
    assert main(["correlations", str(atoms), "--out", str(corr), "--slices", "0"]) == 0
    assert main(["correlations", str(atoms), "--out", str(notes), "--overwrite"]) == 0
    with h5py.File(notes) as f:
        assert f.attrs["kind"] == "corr" and f.attrs["software"] == "caviar-napari"


def test_unwritable_output_is_found_before_computing(files, capsys, monkeypatch):
    d = files
    monkeypatch.setattr(engine, "run", no_computation)
    data = str(d / "data.h5")
    # the parent of --out is a regular file (root cannot write there either)
    (d / "file.txt").write_text("x")
    assert main(["reconstruct", data, "--out", str(d / "file.txt" / "recon.h5")]) == 2
    assert "file.txt is not a directory" in capsys.readouterr().err
    # --out is a directory
    assert main(["reconstruct", data, "--out", str(d)]) == 2
    assert "is a directory" in capsys.readouterr().err
    # a read-only file system (simulated: root writes through permission bits)
    import caviar_napari.io.outputs as outputs

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(outputs.tempfile, "mkstemp", read_only)
        assert main(["reconstruct", data, "--out", str(d / "new" / "recon.h5")]) == 2
    err = capsys.readouterr().err
    assert "cannot write in" in err and "read-only file system" in err
    # not enough free space for the estimated size
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 1))
    assert main(["reconstruct", data, "--out", str(d / "r.h5")]) == 2
    assert "not enough free space" in capsys.readouterr().err
    assert not (d / "new").exists() and not (d / "r.h5").exists() and leftovers(d) == []


def test_no_output_when_a_command_fails(files, capsys, monkeypatch):
    d = files
    # a wrong --ground-truth: every input is checked before the CORR file is written
    argv = ["correlations", str(d / "atoms.h5"), "--out", str(d / "corr.h5")]
    assert main([*argv, "--ground-truth", str(d / "recon.h5")]) == 2
    assert "no group 'ground_truth'" in capsys.readouterr().err
    assert not (d / "corr.h5").exists()
    # a reconstruction that fails after some iterations
    real_run = engine.run

    def failing_run(*args, **kwargs):
        gen = real_run(*args, **kwargs)
        yield next(gen)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine, "run", failing_run)
    argv = ["reconstruct", str(d / "data.h5"), "--out", str(d / "r.h5"), "--iterations", "3"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no space left on the device (disk full)" in err and "Traceback" not in err
    assert not (d / "r.h5").exists() and leftovers(d) == []


def test_os_error_while_writing_is_one_line(atoms_and_truth, capsys, monkeypatch):
    import caviar_napari.io.correlations_file as cf

    atoms, _ = atoms_and_truth

    def disk_full(path, data):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cf, "write_correlations", disk_full)
    out = atoms.parent / "corr.h5"
    assert main(["correlations", str(atoms), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"caviar correlations: error: {out}: no space left on the device (disk full)\n"
    assert not out.exists() and leftovers(atoms.parent) == []


def test_every_output_is_stamped(files, capsys):
    d = files
    argv = ["correlations", str(d / "atoms.h5"), "--out", str(d / "corr.h5")]
    assert main(argv) == 0
    printed = capsys.readouterr().err
    for name, kind in (("recon.h5", "recon"), ("corr.h5", "corr")):
        with h5py.File(d / name) as f:
            assert f.attrs["software"] == "caviar-napari" and f.attrs["kind"] == kind
            assert "version" in f.attrs
            stamped = json.loads(f.attrs["warnings_json"])  # what the command warned about
            assert all(f"warning: {w}" in printed for w in stamped), (stamped, printed)
            assert kind == "corr" or stamped == []
