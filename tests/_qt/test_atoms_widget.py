"""The Atoms dock widget under Xvfb: Detect, manual picking, Refine in a worker, files."""

from __future__ import annotations

import re

import numpy as np
import pytest
from napari.layers import Layer
from qtpy.QtCore import Qt

from caviar_napari._napari.atoms_layers import ATOMS_METADATA_KEY, atoms_layer_data
from caviar_napari._qt.atoms_widget import AtomsWidget
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import AtomsData, read_atoms, read_positions_csv

PIXEL_A = 0.1
ORIGIN_A = np.array([1.0, -2.0])
SIGMA_PX = 1.8


def gaussians(shape, centres_px):
    yy, xx = np.arange(shape[0]), np.arange(shape[1])
    gy = np.exp(-((yy[:, None] - centres_px[..., None, :, 0]) ** 2) / (2 * SIGMA_PX**2))
    gx = np.exp(-((xx[:, None] - centres_px[..., None, :, 1]) ** 2) / (2 * SIGMA_PX**2))
    return 0.4 * np.einsum("...ya,...xa->...yx", gy, gx)


@pytest.fixture
def truth():
    """A 4 × 4 square lattice (12 px spacing), 3 states × 2 slices with known displacements."""
    rng = np.random.default_rng(8)
    cy, cx = np.meshgrid(np.arange(4) * 12.0 + 12.3, np.arange(4) * 12.0 + 11.6, indexing="ij")
    mean_px = np.stack([cy.ravel(), cx.ravel()], -1)
    disp_px = rng.normal(0, 0.5, (3, 2, len(mean_px), 2))
    phase = gaussians((60, 60), mean_px + disp_px).astype(np.float32)
    return {
        "phase": phase,
        "mean_A": ORIGIN_A + mean_px * PIXEL_A,
        "positions_A": ORIGIN_A + (mean_px + disp_px) * PIXEL_A,
    }


@pytest.fixture
def widget(make_napari_viewer, truth):
    viewer = make_napari_viewer()
    viewer.add_image(
        truth["phase"],
        name="recon phase",
        scale=(1, 1, PIXEL_A, PIXEL_A),
        translate=(0, 0, *ORIGIN_A),
        axis_labels=("state", "slice", "y", "x"),
    )
    w = AtomsWidget(viewer)
    w.detection_form["sigma_min_A"].value = 0.1
    w.detection_form["sigma_max_A"].value = 0.3
    return w


def match(found, expected):
    """Index of the nearest ``found`` for each ``expected`` point, and the distances."""
    d = np.hypot(*(found[:, None] - expected[None]).transpose(2, 0, 1))
    return d.argmin(axis=0), d.min(axis=0)


def detect(qtbot, widget):
    """Click Detect and wait for the worker (on the widget's own idle state: the worker may
    finish before a signal spy connects)."""
    qtbot.mouseClick(widget.detect_button, Qt.LeftButton)
    assert widget.worker is not None, widget.status_label.text()
    assert not widget.detect_button.isEnabled()  # busy: the buttons wait for the worker
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)
    return widget.points_layer


def refine(qtbot, widget):
    qtbot.mouseClick(widget.refine_button, Qt.LeftButton)
    assert widget.worker is not None, widget.status_label.text()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)


def test_detect_manual_pick_and_refine(qtbot, widget, truth):
    """Detect → Points in Å; a point added by hand is refined; Refine fills every state;
    failures are counted; bad input is shown."""
    assert widget.refine() is None  # no points yet: an error message, no exception
    assert "no atoms to refine" in widget.status_label.text()
    assert widget.layer_combo.currentText() == "recon phase"
    assert widget.image_combo.count() == 3  # Σ slices, slice 0, slice 1
    layer = detect(qtbot, widget)
    assert layer is not None and layer.ndim == 2
    assert len(layer.data) == 16
    _, dist = match(np.asarray(layer.data), truth["mean_A"])
    assert dist.max() < 1.0 * PIXEL_A  # LoG: pixel precision, in Å world coordinates
    assert "16 atoms detected" in widget.status_label.text()

    # manual picking: delete atom 0's point, click 1.5 px off the atom instead
    i, _ = match(np.asarray(layer.data), truth["mean_A"][:1])
    layer.selected_data = {int(i[0])}
    layer.remove_selected()
    layer.add(truth["mean_A"][0] + [0.12, -0.09])
    assert len(layer.data) == 16

    refine(qtbot, widget)
    atoms = widget.atoms
    assert isinstance(atoms, AtomsData) and atoms.positions_A.shape == (3, 2, 16, 2)
    order, _ = match(atoms.mean_positions_A, truth["mean_A"])
    assert sorted(order.tolist()) == list(range(16))
    assert order[0] == 15  # the hand-placed point, refined onto atom 0
    np.testing.assert_allclose(widget.points_layer.data[15], atoms.mean_positions_A[15])
    err_px = np.abs(atoms.positions_A[:, :, order] - truth["positions_A"]).max() / PIXEL_A
    assert err_px < 0.05, err_px
    # the 4D layer: one point per (state, slice, atom), each on its own state's phase
    states = widget.states_layer
    assert states.ndim == 4 and len(states.data) == 3 * 2 * 16
    for n in range(3):  # loop over the 3 states of the test case
        sel = (states.data[:, 0] == n) & (states.data[:, 1] == 1)
        _, d = match(states.data[sel, 2:], truth["positions_A"][n, 1])
        assert d.max() < 0.05 * PIXEL_A
    # colour = spread in pm, as the truth's
    spread = np.asarray(widget.points_layer.features["spread_pm"])
    disp = truth["positions_A"] - truth["positions_A"].mean(axis=0)
    true_spread_pm = 100 * np.sqrt((disp**2).sum(-1).mean(axis=(0, 1)))
    np.testing.assert_allclose(spread[order], true_spread_pm, atol=0.5)
    assert widget.points_layer.metadata[ATOMS_METADATA_KEY] is atoms
    text = widget.status_label.text()
    assert "16 atoms" in text and "96 of 96 refined, 0 failed" in text
    lattice = widget.lattice_layer
    assert lattice is not None and lattice.data.shape == (2, 2, 2)
    lengths = np.sort(np.hypot(*lattice.data[:, 1].T))
    np.testing.assert_allclose(lengths, [1.2, 1.2], rtol=1e-2)
    assert re.search(r"\|a1\| = 1\.\d{3} Å .*angle 9\d\.\d°, 1 basis", widget.lattice_label.text())

    # editing the points afterwards drops the refinement
    widget.points_layer.add([3.0, 0.0])
    assert widget.atoms is None
    assert ATOMS_METADATA_KEY not in widget.points_layer.metadata
    assert "Refine again" in widget.status_label.text()

    # failures: an atom at the image corner is NaN in every state and counted
    widget.set_positions(np.vstack([truth["mean_A"], [ORIGIN_A + 0.05]]))
    widget.refine_form["radius_A"].value = 0.4
    widget.refine_form["lattice"].value = False
    refine(qtbot, widget)
    text = widget.status_label.text()
    assert "17 atoms" in text and "16 refined, 1 failed" in text
    assert "96 of 102 refined, 6 failed (NaN): no start position 6" in text
    border = widget.points_layer.border_color
    np.testing.assert_allclose(border[16], [1.0, 48 / 255, 48 / 255, 1.0])  # red: failed
    np.testing.assert_allclose(border[0], [0.0, 0.0, 0.0, 0.0])  # none: refined
    assert len(widget.states_layer.data) == 96 and widget.lattice_layer is None

    # bad input is reported in the widget, not raised
    widget.refine_form["vectors"].value = "1 2 3"
    assert widget.refine() is None
    assert "4 numbers" in widget.status_label.text()
    widget.viewer.layers.remove("recon phase")
    assert widget.layer_combo.count() == 0
    assert widget.detect() is None
    assert "choose a phase layer" in widget.status_label.text()


def test_export_import_round_trip_and_reader(qtbot, widget, tmp_path):
    detect(qtbot, widget)
    with pytest.raises(InputError, match="Refine first"):
        widget.export_atoms(tmp_path / "x.h5")
    refine(qtbot, widget)
    before = widget.atoms
    widget.export_atoms(tmp_path / "sample.h5")
    widget.export_csv(tmp_path / "atoms.csv")
    back = read_atoms(tmp_path / "sample.h5")
    np.testing.assert_array_equal(back.positions_A, before.positions_A)
    np.testing.assert_array_equal(back.cell_index, before.cell_index)
    layer = widget.import_csv(tmp_path / "atoms.csv")
    np.testing.assert_array_equal(layer.data, before.mean_positions_A)
    assert widget.atoms is None and widget.states_layer is None
    imported = widget.import_atoms(tmp_path / "sample.h5")
    np.testing.assert_array_equal(imported.positions_A, before.positions_A)
    np.testing.assert_array_equal(widget.points_layer.data, before.mean_positions_A)
    assert len(widget.states_layer.data) == 96 and widget.lattice_layer is not None
    widget.export_atoms(tmp_path / "again.h5")
    np.testing.assert_array_equal(read_atoms(tmp_path / "again.h5").positions_A, back.positions_A)

    # napari reader hook: the same file as layers
    tuples = atoms_layer_data(tmp_path / "sample.h5")
    names = [t[1]["name"] for t in tuples]
    assert names == ["sample atoms", "sample atoms per state", "sample lattice"]
    layers = [Layer.create(data, kwargs, kind) for data, kwargs, kind in tuples]
    assert isinstance(layers[0].metadata[ATOMS_METADATA_KEY], AtomsData)
    np.testing.assert_allclose(layers[0].data, before.mean_positions_A)
    assert layers[1].data.shape == (96, 4) and layers[1].ndim == 4
    np.testing.assert_allclose(layers[2].data[:, 1], before.lattice_vectors_A)


def test_file_buttons_export_and_import(qtbot, widget, tmp_path, click, answer_dialogs):
    """Export CSV…, Export ATOMS…, Import CSV…, Import ATOMS… write and read what they say."""
    detect(qtbot, widget)
    refine(qtbot, widget)
    refined = widget.atoms
    csv, h5 = tmp_path / "clicked.csv", tmp_path / "clicked.h5"
    asked = answer_dialogs(csv)
    click(widget.export_csv_button)
    positions, _species = read_positions_csv(csv)
    np.testing.assert_allclose(positions, refined.mean_positions_A)
    answer_dialogs(h5)
    click(widget.export_atoms_button)
    np.testing.assert_array_equal(read_atoms(h5).positions_A, refined.positions_A)

    answer_dialogs(csv)
    click(widget.import_csv_button)
    assert widget.atoms is None and widget.states_layer is None  # positions only
    np.testing.assert_allclose(widget.points_layer.data, refined.mean_positions_A)
    assert "16 atoms read from clicked.csv" in widget.status_label.text()
    answer_dialogs(h5)
    click(widget.import_atoms_button)
    np.testing.assert_array_equal(widget.atoms.positions_A, refined.positions_A)
    assert len(widget.states_layer.data) == 96
    assert asked == [
        "Export positions (CSV)",
        "Export ATOMS file",
        "Import positions (CSV)",
        "Import ATOMS file",
    ]

    # a cancelled dialog changes nothing; a failing import is reported, not raised
    answer_dialogs("")
    click(widget.import_atoms_button)
    assert widget.atoms is not None
    (tmp_path / "broken.h5").write_text("not hdf5")
    answer_dialogs(tmp_path / "broken.h5")
    click(widget.import_atoms_button)
    assert widget.status_label.text().startswith("Error:") and "broken.h5" in (
        widget.status_label.text()
    )


def test_result_warnings_show_in_the_banner(qtbot, widget, tmp_path):
    """Warnings a result carries (here an ATOMS file's provenance) appear above the dock."""
    from caviar_napari.io.atoms_file import write_atoms

    detect(qtbot, widget)
    refine(qtbot, widget)
    atoms = widget.atoms
    warned = AtomsData(
        positions_A=atoms.positions_A,
        mean_positions_A=atoms.mean_positions_A,
        provenance={"warnings": ["displacements at the noise floor (test)"]},
    )
    write_atoms(tmp_path / "warned.h5", warned)
    assert not widget.warning_banner.isVisibleTo(widget)
    widget.import_atoms(tmp_path / "warned.h5")
    assert widget.warning_banner.isVisibleTo(widget)
    assert "displacements at the noise floor (test)" in widget.warning_banner.text()
    widget.points_layer.add([3.0, 0.0])  # edited points: the result and its warnings go
    assert not widget.warning_banner.isVisibleTo(widget)
