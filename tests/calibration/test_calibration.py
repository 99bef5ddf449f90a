"""Calibration from the data (issue 15): on abTEM simulations with known geometry errors the
calibration finds the scan rotation within 0.5°, the detector transpose, and the defocus within
10 Å from a start 100 Å off; the calibrated file reads back in the project's frame."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from caviar_napari.analysis.calibration import CalibrationOptions, calibrate
from caviar_napari.analysis.calibration.com import fit_rotation, integrate_gradient
from caviar_napari.cli import main
from caviar_napari.io.dataset import read_probe_initial, read_stem_h5

pytest.importorskip("abtem")

#: A small hBN scan, sampled finely enough (0.3 Å) for the centre-of-mass derivatives.
SMALL = {
    "cells": (4, 6),
    "detector_shape": (48, 48),
    "scan_shape": (20, 20),
    "scan_step_A": (0.3, 0.3),
}


def _simulate(tmp_path_factory, name, **kw):
    from caviar_napari.simulate.presets import preset_config, simulate, write_simulation

    path = tmp_path_factory.mktemp("cal") / f"{name}.h5"
    write_simulation(path, simulate(preset_config("hbn-static", **{**SMALL, **kw})))
    return path


@pytest.fixture(scope="module")
def rotated(tmp_path_factory):
    """Scan rotated by 15° (the file says 0°), in focus."""
    return _simulate(tmp_path_factory, "rotated", scan_rotation_deg=15.0)


@pytest.fixture(scope="module")
def transposed_defocused(tmp_path_factory):
    """Transposed detector, scan rotated by −40°, 100 Å underfocus stated as 0 Å."""
    return _simulate(
        tmp_path_factory,
        "transposed",
        scan_shape=(24, 24),
        scan_rotation_deg=-40.0,
        detector_transposed=True,
        defocus_A=100.0,
        recorded_defocus_A=0.0,
    )


def test_simulated_geometry_is_recorded(rotated, transposed_defocused):
    with h5py.File(rotated) as f:
        assert f.attrs["scan_rotation_deg"] == 0.0  # the file states 0
        g = f["ground_truth"]
        assert g.attrs["scan_rotation_deg"] == 15.0 and not g.attrs["detector_transposed"]
        true = g["scan_positions_A"][()]
    theta = np.deg2rad(15.0)
    # the last point of the first row: (0, 19 · 0.3) turned by +15° into the detector frame
    np.testing.assert_allclose(true[0, -1], 5.7 * np.array([np.sin(theta), np.cos(theta)]))
    with h5py.File(transposed_defocused) as f:
        assert f.attrs["defocus_A"] == 0.0
        assert f["intensities"].shape == (24, 24, 48, 48)
        assert f["ground_truth"].attrs["detector_transposed"]


def test_rotation_found_within_half_a_degree(rotated):
    ds = read_stem_h5(rotated)
    result = calibrate(ds, CalibrationOptions(defocus=False))
    assert abs(result.rotation_deg - 15.0) < 0.5
    assert not result.geometry.transposed
    assert result.rotation.transpose_ratio > 10 and result.rotation.sign_contrast > 0.3
    np.testing.assert_allclose(result.disc.centre_px, (24, 24), atol=0.05)
    assert abs(result.disc.radius_mrad - 35.0) < 1.0
    assert result.warnings == []


def test_transpose_rotation_and_defocus_found(transposed_defocused):
    ds = read_stem_h5(transposed_defocused)
    result = calibrate(ds)
    assert result.geometry.transposed
    assert abs(result.rotation_deg + 40.0) < 0.5
    assert abs(result.defocus_A - 100.0) < 10.0  # from a start 100 Å off
    # the samplings follow the transpose
    assert result.angular_sampling_mrad == tuple(ds.angular_sampling_mrad[::-1])


def test_sign_check_resolves_the_half_turn():
    """A gradient field of positive peaks turned by θ + 180° is found at θ + 180°, not θ."""
    y, x = np.mgrid[:24, :24] * 0.3
    centres = [(2.1, 2.4), (4.3, 1.2), (3.3, 5.1), (5.6, 4.2), (1.1, 5.9)]
    phi = sum(np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.3) for cy, cx in centres)
    grad = np.stack(np.gradient(phi, 0.3, 0.3), axis=-1)
    for theta in (20.0, -160.0):  # scan → detector: C = R(θ) ∇φ
        t = np.deg2rad(theta)
        c, s = np.cos(t), np.sin(t)
        com = np.stack(
            [c * grad[..., 0] + s * grad[..., 1], -s * grad[..., 0] + c * grad[..., 1]], -1
        )
        fit = fit_rotation(com, (0.3, 0.3), 0.05)
        assert abs((fit.rotation_deg - theta + 180) % 360 - 180) < 0.5
        assert not fit.transposed and fit.sign_contrast > 0.5
    # and the integration inverts the gradient
    back = integrate_gradient(grad, (0.3, 0.3))
    assert np.corrcoef(back.ravel(), phi.ravel())[0, 1] > 0.99


def test_cli_writes_a_reconstructable_file(transposed_defocused, tmp_path, capsys):
    out = tmp_path / "cal.h5"
    args = [str(transposed_defocused), "--out", str(out), "--json", "--link"]
    assert main(["calibrate", *args, "--vacuum-region", "0:2,0:2"]) == 0
    values = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert values["detector_transposed"] and values["linked"]
    assert abs(values["scan_rotation_deg"] + 40.0) < 0.5
    with h5py.File(out) as f:
        assert isinstance(f.get("intensities", getlink=True), h5py.ExternalLink)
        assert f.attrs["detector_transposed"] and f.attrs["kind"] == "stem"
    ds = read_stem_h5(out)  # the reader honours the transpose: back in the true frame
    raw = read_stem_h5(transposed_defocused)
    np.testing.assert_array_equal(ds.intensities, raw.intensities.transpose(0, 1, 3, 2))
    assert ds.angular_sampling_mrad == raw.angular_sampling_mrad[::-1]
    assert abs(ds.defocus_A - 100.0) < 10.0 and abs(ds.scan_rotation_deg + 40.0) < 0.5
    probe = read_probe_initial(out)
    assert probe.shape == (1, 48, 48)
    assert np.sum(np.abs(probe) ** 2) == pytest.approx(ds.mean_total_intensity, rel=1e-5)
    # copying gives the same dataset
    copy = tmp_path / "copy.h5"
    assert main(["calibrate", str(transposed_defocused), "--out", str(copy), "--copy",
                 "--no-defocus"]) == 0  # fmt: skip
    np.testing.assert_array_equal(read_stem_h5(copy).intensities, ds.intensities)
    # the input is never the output
    assert main(["calibrate", str(out), "--out", str(out)]) == 2
