"""``io.outputs``: the one mechanism that every workflow's output goes through."""

from __future__ import annotations

import errno
import json

import h5py
import numpy as np
import pytest

from caviar_napari.core.engine import ReconState
from caviar_napari.data.config import ReconstructionConfig
from caviar_napari.io.atoms_file import AtomsData, write_atoms
from caviar_napari.io.outputs import (
    OutputError,
    OutputTarget,
    describe_os_error,
    existing_kind,
    read_warnings,
)
from caviar_napari.io.reconstruction import save_reconstruction


def write_h5(path, **attrs):
    def writer(p):
        with h5py.File(p, "w") as f:
            f["x"] = np.arange(3)
            f.attrs.update(attrs)

    return writer


def test_write_stamps_kind_version_and_warnings(tmp_path):
    out = tmp_path / "a.h5"
    target = OutputTarget.prepare(out, "corr")
    assert target.write(write_h5(out), warnings=["states not separated"]) == out
    with h5py.File(out) as f:
        assert f.attrs["software"] == "caviar-napari" and f.attrs["kind"] == "corr"
        assert json.loads(f.attrs["warnings_json"]) == ["states not separated"]
        np.testing.assert_array_equal(f["x"][()], [0, 1, 2])
    assert read_warnings(out) == ["states not separated"] and existing_kind(out) == "corr"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]


def test_failing_writer_changes_nothing(tmp_path):
    out = tmp_path / "a.h5"
    OutputTarget.prepare(out, "atoms").write(write_h5(out))
    before = out.read_bytes()

    def broken(p):
        with h5py.File(p, "w") as f:
            f["half"] = np.zeros(10)
        raise ValueError("writer failed half-way")

    with pytest.raises(ValueError, match="half-way"):
        OutputTarget.prepare(out, "atoms").write(broken)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]


def test_files_of_earlier_versions_are_recognised_by_content(tmp_path):
    state = ReconState(
        object=np.ones((1, 1, 4, 4), np.complex64),
        probe=np.ones((1, 4, 4), np.complex64),
        tilt_mrad=np.zeros(2),
        loss=[1.0],
        pixel_size_A=(0.1, 0.1),
        object_origin_A=(0.0, 0.0),
        slice_thickness_A=np.array([1.0]),
        config=ReconstructionConfig(),
    )
    save_reconstruction(tmp_path / "r.h5", state)  # as the engine writes checkpoints
    atoms = AtomsData(positions_A=np.zeros((2, 1, 3, 2)), mean_positions_A=np.zeros((3, 2)))
    write_atoms(tmp_path / "a.h5", atoms)
    with h5py.File(tmp_path / "sim.h5", "w") as f:  # caviar simulate before 'kind' existed
        f["intensities"] = np.zeros((1, 1, 2, 2))
        f.create_group("ground_truth").attrs["caviar_napari_version"] = "0.1"
    with h5py.File(tmp_path / "other.h5", "w") as f:  # somebody else's 4D-STEM file
        f["intensities"] = np.zeros((1, 1, 2, 2))
    (tmp_path / "t.txt").write_text("text")
    kinds = {
        n: existing_kind(tmp_path / n) for n in ("r.h5", "a.h5", "sim.h5", "other.h5", "t.txt")
    }
    assert kinds == {"r.h5": "recon", "a.h5": "atoms", "sim.h5": "stem", "other.h5": None,
                     "t.txt": None}  # fmt: skip
    # a checkpoint or an old reconstruction may be replaced by a new one, not by an ATOMS file
    OutputTarget.prepare(tmp_path / "r.h5", "recon")
    with pytest.raises(OutputError, match="is a reconstruction, not an ATOMS file"):
        OutputTarget.prepare(tmp_path / "r.h5", "atoms")


def test_inputs_are_recognised_through_links(tmp_path):
    data = tmp_path / "data.h5"
    write_h5(data)(data)
    (tmp_path / "sym.h5").symlink_to(data)
    for out in (tmp_path / "sym.h5", tmp_path / "." / "data.h5"):
        with pytest.raises(OutputError, match="is the DATA input"):
            OutputTarget.prepare(out, "recon", inputs={"DATA": data, "--config": None})
    OutputTarget.prepare(tmp_path / "new.h5", "recon", inputs={"DATA": data})


def test_a_file_appearing_after_the_checks_is_not_replaced(tmp_path):
    out = tmp_path / "late.txt"
    target = OutputTarget.prepare(out, "disp")
    out.write_text("written by someone else meanwhile")
    with pytest.raises(OutputError, match="not written by caviar-napari"):
        target.write(write_h5(out))
    assert out.read_text() == "written by someone else meanwhile"


def test_os_error_reasons():
    assert describe_os_error(OSError(errno.EROFS, "x")) == "read-only file system"
    assert (
        describe_os_error(OSError(errno.ENOSPC, "x")) == "no space left on the device (disk full)"
    )
    assert describe_os_error(OSError(errno.EISDIR, "x")) == "is a directory"
    # h5py reports the system error inside its message
    h5 = OSError("Can't write data (file write failed: errno = 28, error message = 'No space')")
    assert describe_os_error(h5) == "no space left on the device (disk full)"
    with pytest.raises(ValueError, match="unknown output kind"):
        OutputTarget.prepare("x.h5", "pictures")
