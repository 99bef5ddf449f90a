import h5py
import numpy as np
import pytest

from caviar_napari.io.atomic import atomic_h5


def test_atomic_h5_appears_only_when_complete(tmp_path):
    target = tmp_path / "out.h5"
    with atomic_h5(target) as f:
        f["x"] = np.arange(3)
        assert not target.exists()
    with h5py.File(target) as f:
        np.testing.assert_array_equal(f["x"][()], [0, 1, 2])
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]


def test_atomic_h5_failure_keeps_previous_file(tmp_path):
    target = tmp_path / "out.h5"
    with atomic_h5(target) as f:
        f["x"] = 1
    with pytest.raises(ZeroDivisionError), atomic_h5(target) as f:
        f["x"] = 2
        raise ZeroDivisionError
    with h5py.File(target) as f:
        assert f["x"][()] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]


def test_atomic_output_has_ordinary_file_mode(tmp_path):
    import os

    target = tmp_path / "out.h5"
    with atomic_h5(target) as f:
        f["x"] = 1
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
