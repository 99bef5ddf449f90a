"""The Atoms dock per z-range (issue 16) under Xvfb: ranges on the slice axis, the slab shown
summed in the viewer, detection and refinement per range (by hand and by ``caviar atoms``'s
workflow), multi-range ATOMS files, the side view; and the ATOMS reader hook of such files."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from caviar_napari._napari.atoms_layers import atoms_layer_data
from caviar_napari._qt.atoms_depth_panel import SIDE_LINE_NAME
from caviar_napari._qt.atoms_widget import AtomsWidget
from caviar_napari.data import config as cfg
from caviar_napari.data.recon import ReconState
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import atoms_zrange_labels
from caviar_napari.viewmodels.layer_keys import STATE_KEY
from caviar_napari.viewmodels.recon_images import layer_tuples, reconstruction_images

PIXEL_A = 0.1
SHAPE = (80, 80)
DZ_A = 40.0
SPACING_A = 1.6
WAIT_MS = 30000


def _sites(offset_A: float) -> np.ndarray:
    g = np.arange(5) * SPACING_A + offset_A
    yy, xx = np.meshgrid(g, g, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], -1)


def _phase(sites_A: np.ndarray) -> np.ndarray:
    """``(..., y, x)`` Gaussian atoms (σ 0.18 Å, 0.3 rad) at ``sites_A`` ``(..., atom, 2)``."""
    px = sites_A / PIXEL_A
    yy, xx = np.arange(SHAPE[0]), np.arange(SHAPE[1])
    s = 0.18 / PIXEL_A
    gy = np.exp(-((yy[:, None] - px[..., None, :, 0]) ** 2) / (2 * s**2))
    gx = np.exp(-((xx[:, None] - px[..., None, :, 1]) ** 2) / (2 * s**2))
    return 0.3 * np.einsum("...ya,...xa->...yx", gy, gx)


@pytest.fixture
def bilayer():
    """A 3-state, 4-slice reconstruction: an upper square lattice in slice 0, a lower one
    shifted by half a cell in slice 3, vacuum (weak noise) between."""
    rng = np.random.default_rng(5)
    upper, lower = _sites(0.8), _sites(1.6)
    phase = 0.002 * rng.standard_normal((3, 4, *SHAPE))
    phase[:, 0] += _phase(upper + rng.normal(0, 0.02, (3, *upper.shape)))
    phase[:, 3] += _phase(lower + rng.normal(0, 0.02, (3, *lower.shape)))
    grid = np.stack(np.meshgrid(np.arange(1.2, 7.0, 0.5), np.arange(1.2, 7.0, 0.5)), -1)
    state = ReconState(
        object=np.exp(1j * phase).astype(np.complex64),
        probe=np.ones((1, 8, 8), np.complex64),
        tilt_mrad=np.zeros(2),
        loss=[1.0],
        pixel_size_A=(PIXEL_A, PIXEL_A),
        object_origin_A=(0.0, 0.0),
        slice_thickness_A=np.full(4, DZ_A),
        config=cfg.ReconstructionConfig(
            stages=[cfg.StageConfig(object_states=3, slices=4, slice_thickness_A=DZ_A)]
        ).validate(),
        scan_positions_A=grid.reshape(-1, 2),
    )
    return {"state": state, "upper": upper, "lower": lower}


@pytest.fixture
def widget(make_napari_viewer, bilayer):
    viewer = make_napari_viewer()
    state = bilayer["state"]
    images = reconstruction_images(
        state.object, state.probe, state.pixel_size_A, state.object_origin_A,
        state.scan_positions_A,
    )  # fmt: skip
    for data, kwargs, kind in layer_tuples(images, name="bilayer", metadata={STATE_KEY: state}):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    w = AtomsWidget(viewer)
    w.set_phase_layer("bilayer phase")
    w.detection_form["sigma_min_A"].value = 0.1
    w.detection_form["sigma_max_A"].value = 0.3
    w.detection_form["exclude_border_A"].value = 0.3
    return w


def _wait(qtbot, widget):
    assert widget.worker is not None, widget.status_label.text()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)


def _near(found, sites, tol=0.1):
    """Whether every found position lies within ``tol`` Å of one of ``sites``."""
    d = np.hypot(*(np.asarray(found)[:, None] - sites[None]).transpose(2, 0, 1)).min(axis=1)
    return bool(np.all(d < tol))


def test_ranges_found_by_the_workflow_each_in_its_own_slices_and_written_to_one_file(
    qtbot, widget, bilayer, tmp_path
):
    depth, viewer = widget.depth, widget.viewer
    assert depth.isEnabled() and depth.n_slices == 4 and depth.slab() == (0, 3)
    assert "z = 0.0 … 160.0 Å" in depth.span_label.text()
    # the slab: the viewer shows the phase summed over the picked slices
    phase_layer = viewer.layers["bilayer phase"]
    depth.set_slab(2, 3)
    depth.slab_changed.emit(2, 3)
    depth.show_check.setChecked(True)
    axis = viewer.dims.ndim - 3
    assert phase_layer.projection_mode == "sum"
    assert viewer.dims.current_step[axis] == 2 and viewer.dims.margin_right[axis] == 1.0
    assert "slices 2:4 picked — z = 80.0 … 160.0 Å" in depth.span_label.text()
    depth.show_check.setChecked(False)
    assert phase_layer.projection_mode == "none" and viewer.dims.margin_right[axis] == 0.0
    # two ranges, named from the picked slices
    depth.label_edit.setText("lower")
    qtbot.mouseClick(depth.add_button, Qt.LeftButton)
    assert widget.add_range("upper", 0, 1) == "upper"
    with pytest.raises(InputError, match="exists already"):
        widget.add_range("upper", 0, 0)
    assert [(r.label, r.spec) for r in widget.vm.ranges] == [("lower", "2:4"), ("upper", "0:2")]
    assert depth.active() == "upper" and depth.slab() == (0, 1)
    # every range by the workflow of caviar atoms --zrange, on the layer's reconstruction
    widget.refine_all_ranges()
    _wait(qtbot, widget)
    results = widget.vm.results
    assert set(results) == {"lower", "upper"}, widget.status_label.text()
    for label, sites, first in (("upper", bilayer["upper"], 0), ("lower", bilayer["lower"], 2)):
        atoms = results[label].atoms
        assert atoms.zrange.label == label and atoms.zrange.start == first
        assert atoms.positions_A.shape[:2] == (3, 2) and atoms.n_atoms >= 9
        assert _near(atoms.mean_positions_A, sites)  # each range found its own layer
        assert atoms.lattice_vectors_A is not None
    # the chosen range is drawn; its per-state points sit on its slices of the phase layer
    np.testing.assert_allclose(widget.points_layer.data, results["upper"].atoms.mean_positions_A)
    assert set(np.unique(widget.states_layer.data[:, 1])) == {0.0, 1.0}
    widget.set_active_range("lower")
    assert depth.slab() == (2, 3)
    np.testing.assert_allclose(widget.points_layer.data, results["lower"].atoms.mean_positions_A)
    assert set(np.unique(widget.states_layer.data[:, 1])) == {2.0, 3.0}
    # one labelled file with both ranges; read back, every range is in the dock again
    widget.export_atoms(tmp_path / "ranges.h5")
    assert atoms_zrange_labels(tmp_path / "ranges.h5") == ["lower", "upper"]
    widget.remove_range("lower")
    widget.remove_range("upper")
    assert widget.vm.ranges == [] and depth.active() == ""
    widget.import_atoms(tmp_path / "ranges.h5")
    assert [r.label for r in widget.vm.ranges] == ["lower", "upper"]
    assert depth.active() == "lower" and "2 z-ranges" in widget.status_label.text()
    np.testing.assert_allclose(widget.points_layer.data, results["lower"].atoms.mean_positions_A)
    # the reader hook gives each range's layers, named by label
    names = [kw["name"] for _, kw, _ in atoms_layer_data(tmp_path / "ranges.h5")]
    assert names[:2] == ["ranges [lower] atoms", "ranges [lower] atoms per state"]
    assert "ranges [upper] atoms" in names
    states = next(
        d for d, kw, _ in atoms_layer_data(tmp_path / "ranges.h5") if "per state" in kw["name"]
    )
    assert set(np.unique(states[:, 1])) == {2.0, 3.0}


def test_detect_and_refine_by_hand_in_the_chosen_range(qtbot, widget, bilayer, tmp_path):
    widget.add_range("lower", 2, 3)
    qtbot.mouseClick(widget.detect_button, Qt.LeftButton)
    _wait(qtbot, widget)
    points = widget.points_layer.data
    assert len(points) >= 16 and _near(points, bilayer["lower"])  # not the upper layer's atoms
    qtbot.mouseClick(widget.refine_button, Qt.LeftButton)
    _wait(qtbot, widget)
    atoms = widget.atoms
    assert atoms.zrange.spec == "2:4" and atoms.positions_A.shape[:2] == (3, 2)
    assert "z-range 'lower': slices 2:4 of 4, z = 80.0 … 160.0 Å" in widget.status_label.text()
    # a slice outside the range for detection is refused, naming the range
    widget.image_combo.setCurrentIndex(1)  # slice 0
    widget.detect()
    assert widget.worker is None and "outside the z-range 'lower'" in widget.status_label.text()
    # moving the range's handles moves the range and drops its atoms
    widget.depth.set_slab(1, 3)
    widget.depth.slab_changed.emit(1, 3)
    assert widget.vm.range("lower").spec == "1:4" and widget.atoms is None
    assert widget.states_layer is None and "Refine it again" in widget.status_label.text()
    # all slices again: the dock works as before ranges existed
    widget.set_active_range("")
    assert widget.active_zrange() is None
    with pytest.raises(InputError, match="Refine first"):
        widget.export_atoms(tmp_path / "none.h5")


def test_the_side_view_shows_the_slices_that_hold_atoms(qtbot, widget, bilayer):
    widget.add_range("upper", 0, 0)
    qtbot.waitUntil(lambda: widget.depth.plot.figure is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not widget._side_view.busy, timeout=WAIT_MS)
    line = widget.viewer.layers[SIDE_LINE_NAME]
    y = widget.depth.y_spin.value()
    np.testing.assert_allclose(line.data[0][:, 0], y)
    assert abs(y - 4.05) < 0.1  # the middle of the scan
    figure = widget.depth.plot.figure
    ax, profile = figure.axes
    assert ax.get_ylabel() == "z (Å)" and ax.get_ylim() == (160.0, 0.0)  # depth downwards
    rms = profile.lines[0].get_xdata()
    assert rms.argmax() in (0, 3) and min(rms[0], rms[3]) > 10 * max(rms[1], rms[2])
    assert [t.get_text() for t in profile.texts] == ["upper"]
    widget.depth.y_spin.setValue(2.4)
    qtbot.waitUntil(
        lambda: abs(widget.viewer.layers[SIDE_LINE_NAME].data[0][0, 0] - 2.4) < 1e-9,
        timeout=WAIT_MS,
    )
