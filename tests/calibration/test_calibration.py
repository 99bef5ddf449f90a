"""Calibration from the data (issue 15): on abTEM simulations with known geometry errors the
calibration finds the scan rotation within 0.5° (its half-turn included), the detector
transpose, in focus and at 60–100 Å underfocus, and the defocus within 10 Å from a start
60–100 Å off; the calibrated file reads back in the project's frame."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from caviar_napari.analysis.calibration import CalibrationOptions, calibrate
from caviar_napari.analysis.calibration.com import fit_rotation, idpc_phase, integrate_gradient
from caviar_napari.analysis.calibration.defocus import BrightFieldParallax, skewness
from caviar_napari.analysis.calibration.halfturn import choose_half_turn, dark_field_correlation
from caviar_napari.cli import main
from caviar_napari.io.dataset import read_probe_initial, read_stem_h5
from caviar_napari.io.readers import load_stem

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
def rotated_transposed(tmp_path_factory):
    """Scan rotated by 15° and a transposed detector (the file says neither), in focus."""
    return _simulate(
        tmp_path_factory, "rotated_t", scan_rotation_deg=15.0, detector_transposed=True
    )


@pytest.fixture(scope="module")
def rotated_defocused(tmp_path_factory):
    """Scan rotated by 15°, 60 Å underfocus stated as 0 Å: the case where the skewness of the
    integrated phase picks the wrong half-turn (and then the defocus of the wrong sign)."""
    return _simulate(
        tmp_path_factory,
        "rotated_defocused",
        scan_rotation_deg=15.0,
        defocus_A=60.0,
        recorded_defocus_A=0.0,
    )


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


@pytest.mark.parametrize("case", ["rotated", "rotated_transposed"])
def test_rotation_found_within_half_a_degree(case, request):
    ds = read_stem_h5(request.getfixturevalue(case))
    result = calibrate(ds, CalibrationOptions(defocus=False))
    assert abs(result.rotation_deg - 15.0) < 0.5
    assert result.geometry.transposed == (case == "rotated_transposed")
    assert result.rotation.transpose_ratio > 10
    h = result.half_turn
    assert h.decided_by == "dark field" and h.confidence > 0.5 and h.idpc_skewness > 0.3
    centre = (24, 24)
    np.testing.assert_allclose(result.disc.centre_px, centre, atol=0.05)
    assert abs(result.disc.radius_mrad - 35.0) < 1.0
    assert result.warnings == []


def test_half_turn_under_defocus(rotated_defocused):
    """60 Å underfocus stated as 0: the rotation within 0.5° with the right half-turn, by the
    dark field, and the bright-field phase agreeing; the defocus within 10 Å and positive."""
    ds = read_stem_h5(rotated_defocused)
    result = calibrate(ds)
    assert abs(result.rotation_deg - 15.0) < 0.5
    assert not result.geometry.transposed
    h = result.half_turn
    assert h.decided_by == "dark field" and h.dark_field_correlation > 0.5
    assert h.phase_skewness > 0.5  # the SSB phase is positive on atoms at the right half-turn
    assert h.idpc_skewness < 0  # the old criterion alone would have turned the scan by 180°
    assert abs(result.defocus_A - 60.0) < 10.0
    assert result.defocus.phase_skewness > 0.5
    assert result.warnings == []
    # without the dark field the bright-field phase decides the same, with the same defocus
    phase_only = calibrate(ds, CalibrationOptions(dark_field=False))
    assert phase_only.half_turn.decided_by == "bright-field phase"
    assert phase_only.half_turn.dark_field_correlation is None
    assert phase_only.rotation_deg == pytest.approx(result.rotation_deg)
    assert phase_only.defocus_A == pytest.approx(result.defocus_A, abs=0.5)
    # a stated defocus 100 Å off on either side
    for stated in (160.0, -40.0):
        off = calibrate(load_stem(rotated_defocused, defocus_A=stated))
        assert abs(off.defocus_A - 60.0) < 10.0 and abs(off.rotation_deg - 15.0) < 0.5


@pytest.fixture(scope="module")
def noisy_defocused(tmp_path_factory):
    """Scan rotated by 15°, 60 Å underfocus stated as 0 Å, 3·10⁵ e/Å² (2700 electrons per
    pattern): the centre of mass is mostly noise."""
    return _simulate(
        tmp_path_factory,
        "noisy",
        scan_rotation_deg=15.0,
        defocus_A=60.0,
        recorded_defocus_A=0.0,
        dose_e_per_A2=3e5,
    )


def test_noisy_rotation_from_the_parallax(noisy_defocused):
    """Where the centre of mass is too noisy (its curl-free fit is 50° off and cannot tell the
    transpose), the rotation and transpose come from the bright-field parallax, which keeps
    the signal of every bright-field pixel; the half-turn and the defocus follow."""
    from caviar_napari.analysis.calibration.com import fit_rotation, pattern_signals

    ds = read_stem_h5(noisy_defocused)
    result = calibrate(ds)
    com, _ = pattern_signals(ds.intensities, result.disc.centre_px)
    com_only = fit_rotation((com - com.mean(axis=(0, 1))) * ds.angular_sampling_mrad, (0.3, 0.3))
    assert com_only.uncertain and abs(com_only.rotation_deg - 15.0) > 20.0
    assert result.rotation.method == "bright-field parallax"
    assert abs(result.rotation_deg - 15.0) < 0.5 and not result.geometry.transposed
    assert result.parallax_rotation.transpose_ratio > 2.0
    assert result.half_turn.confidence > 0.4  # by the bright-field phase
    assert abs(result.defocus_A - 60.0) < 10.0
    assert any("bright-field parallax" in w for w in result.warnings)


def test_transpose_rotation_and_defocus_found(transposed_defocused):
    ds = read_stem_h5(transposed_defocused)
    result = calibrate(ds)
    assert result.geometry.transposed
    assert abs(result.rotation_deg + 40.0) < 0.5
    assert abs(result.defocus_A - 100.0) < 10.0  # from a start 100 Å off
    assert result.half_turn.decided_by == "dark field" and result.half_turn.confidence > 0.5
    # the samplings follow the transpose
    assert result.angular_sampling_mrad == tuple(ds.angular_sampling_mrad[::-1])


def _peaks(shape=(24, 24), step=0.3):
    y, x = np.mgrid[: shape[0], : shape[1]] * step
    centres = [(2.1, 2.4), (4.3, 1.2), (3.3, 5.1), (5.6, 4.2), (1.1, 5.9)]
    return sum(np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.3) for cy, cx in centres)


def test_half_turn_from_the_dark_field():
    """A gradient field of positive peaks turned by θ or θ + 180° gives the same curl fit
    (modulo 180°); the dark-field image (here the peaks squared, sign-blind) picks the right
    one, and the phase's negative would be picked for a negative object."""
    phi = _peaks()
    grad = np.stack(np.gradient(phi, 0.3, 0.3), axis=-1) * 0.05 / (2 * np.pi) * 1e3  # mrad
    for theta in (20.0, -160.0):  # scan → detector: C = R(θ) ∇φ
        t = np.deg2rad(theta)
        c, s = np.cos(t), np.sin(t)
        com = np.stack(
            [c * grad[..., 0] + s * grad[..., 1], -s * grad[..., 0] + c * grad[..., 1]], -1
        )
        fit = fit_rotation(com, (0.3, 0.3))
        assert abs(fit.rotation_deg - 20.0) < 0.5 and not fit.transposed  # modulo 180°
        idpc = idpc_phase(fit.field_mrad, fit.rotation_deg, (0.3, 0.3), 0.05)
        rho = dark_field_correlation(phi**2, idpc)
        h = choose_half_turn(
            fit.rotation_deg, dark_correlation=rho, phase_skewness=None,
            idpc_skewness=-skewness(idpc),  # a misleading skewness does not decide
        )  # fmt: skip
        assert h.decided_by == "dark field" and h.confidence > 0.9
        assert abs((h.rotation_deg - theta + 180) % 360 - 180) < 0.5
        assert h.flipped == (theta < 0)
    # a weak dark field leaves the decision to the next indicator, and says so
    h = choose_half_turn(20.0, dark_correlation=0.1, phase_skewness=-0.8, idpc_skewness=0.5)
    assert h.decided_by == "bright-field phase" and h.rotation_deg == -160.0
    assert h.dark_field_correlation == -0.1 and h.idpc_skewness == -0.5
    h = choose_half_turn(20.0, dark_correlation=None, phase_skewness=0.05, idpc_skewness=0.1)
    assert h.decided_by == "iDPC skewness" and len(h.warnings()) == 1
    # none reaching its threshold: the nearest decides (0.12 of 0.3 beats 0.05 of 0.2)
    h = choose_half_turn(20.0, dark_correlation=-0.12, phase_skewness=0.05, idpc_skewness=0.05)
    assert h.decided_by == "dark field" and h.flipped and "uncertain" in h.warnings()[0]
    # a bright-field phase that contradicts the dark field is warned of
    h = choose_half_turn(20.0, dark_correlation=0.6, phase_skewness=-0.9, idpc_skewness=0.1)
    assert h.rotation_deg == 20.0 and any("bright-field phase" in w for w in h.warnings())
    # and the integration inverts the gradient
    back = integrate_gradient(np.stack(np.gradient(phi, 0.3, 0.3), axis=-1), (0.3, 0.3))
    assert np.corrcoef(back.ravel(), phi.ravel())[0, 1] > 0.99


def test_parallax_half_turn_symmetry():
    """``F(θ + 180°, Δf) = F(θ, −Δf)`` and the SSB phase changes sign, for any data: the
    parallax alone cannot decide the half-turn (module docstrings of .defocus, .halfturn)."""
    rng = np.random.default_rng(3)
    patterns = rng.random((10, 12, 16, 16)) + 5.0
    model = BrightFieldParallax(
        patterns, centre_px=(8.0, 8.0), radius_px=(5.0, 5.5), sampling_mrad=(4.0, 3.6),
        wavelength_A=0.0487, scan_step_A=(0.3, 0.35),
    )  # fmt: skip
    for theta, df in ((12.0, 40.0), (-70.0, -25.0)):
        assert model.explained(df, theta + 180.0) == pytest.approx(model.explained(-df, theta))
        np.testing.assert_allclose(
            model.phase(df, theta + 180.0), -model.phase(-df, theta), atol=1e-12
        )
        assert model.explained(df, theta) != pytest.approx(model.explained(-df, theta))
    # the recurrence over a defocus grid is the direct sum
    grid = np.arange(-200.0, 200.0, 12.5)
    for n_q in (20, 512):
        direct = [model.explained(d, 33.0, n_q) for d in grid]
        np.testing.assert_allclose(model.explained_grid(grid, 33.0, n_q), direct, rtol=1e-10)


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
