"""Geometry errors of ``caviar simulate`` (issue 15): options, true positions, validation."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.cli import main
from caviar_napari.errors import InputError
from caviar_napari.simulate.presets import preset_config, scan_positions_A


def test_options_reach_the_configuration(tmp_path, capsys):
    args = ["simulate", "hbn-static", "--out", str(tmp_path / "d.h5"), "--dry-run"]
    extra = "--scan-rotation-deg 15 --detector-transposed --position-jitter-A 0.05 --drift-A 0.3"
    extra = [*extra.split(), "--defocus-A", "50", "--recorded-defocus-A", "0"]
    assert main([*args, *extra]) == 0
    text = capsys.readouterr().out
    expected = (
        '"scan_rotation_deg": 15.0',
        '"detector_transposed": true',
        '"position_jitter_A": 0.05',
        '"drift_A": 0.3',
        '"recorded_defocus_A": 0.0',
    )
    for item in expected:
        assert item in text


def test_true_positions_drift_jitter_rotation():
    base = {"scan_shape": (8, 10), "scan_step_A": (0.5, 0.4)}
    nominal = scan_positions_A(preset_config("hbn-static", **base))
    iy, ix = np.meshgrid(np.arange(8), np.arange(10), indexing="ij")
    np.testing.assert_allclose(nominal, np.stack([iy * 0.5, ix * 0.4], -1))
    drift = scan_positions_A(preset_config("hbn-static", drift_A=0.3, drift_angle_deg=90, **base))
    np.testing.assert_allclose(drift[0, 0], (0, 0))
    np.testing.assert_allclose(drift[-1, -1] - nominal[-1, -1], (0.3, 0.0), atol=1e-12)
    cfg = preset_config("hbn-static", position_jitter_A=0.05, seed=4, **base)
    jit = scan_positions_A(cfg) - nominal
    np.testing.assert_allclose(jit.mean(axis=(0, 1)), 0, atol=1e-12)  # no global shift
    assert 0.03 < jit.std() < 0.07
    np.testing.assert_array_equal(scan_positions_A(cfg), scan_positions_A(cfg))  # seeded
    rot = scan_positions_A(preset_config("hbn-static", scan_rotation_deg=90, **base))
    np.testing.assert_allclose(rot[0, 1], (0.4, 0.0), atol=1e-12)  # +x turns to +y


def test_source_and_jitter_combine_but_negative_jitter_is_refused():
    # a finite source displaces the probe around each true position, jittered or not
    assert preset_config("hbn-correlated-psc", position_jitter_A=0.05).position_jitter_A == 0.05
    with pytest.raises(InputError, match="position_jitter_A"):
        preset_config("hbn-static", position_jitter_A=-1.0)
