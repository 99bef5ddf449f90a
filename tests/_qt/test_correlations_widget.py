"""Correlations dock widget: arrows, reference picking, scale slider, comparison, export."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from qtpy.QtCore import Qt

from caviar_napari._qt.correlations_widget import (
    ARROW_COLOURS,
    ATOMS_METADATA_KEY,
    PAIRS_NN,
    SELF_ALL,
    SELF_NONE,
    SIG_ALL,
    SIG_HIDE,
    CorrelationsWidget,
)
from caviar_napari.analysis import correlations as corr
from caviar_napari.io.atoms_file import AtomsData, write_atoms
from caviar_napari.io.correlations_file import read_correlations

MEANS = np.array([[1.0, 1.0], [1.0, 3.0], [4.0, 1.5]])

EXCLUDED = "excluded atoms (a NaN position, or the same position in every state): "


def _three_atoms(n_states=8, seed=0) -> AtomsData:
    rng = np.random.default_rng(seed)
    u = rng.normal(0, 0.05, (n_states, 1, 3, 2))
    u[:, :, 1] += 0.5 * u[:, :, 0]  # atom 1 follows atom 0
    return AtomsData(positions_A=MEANS + u, mean_positions_A=MEANS)


def _lattice_atoms(L=4, n_states=10, seed=1) -> AtomsData:
    a = np.array([[0.0, 2.5], [2.5 * np.sqrt(3) / 2, -1.25]])
    basis = np.array([[0.0, 0.0], (2 * a[0] + a[1]) / 3])
    l1, l2 = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    cells = np.repeat(np.stack([l1.ravel(), l2.ravel()], 1), 2, axis=0)
    kappa = np.tile([0, 1], L * L)
    sites = cells @ a + basis[kappa] + [2.0, 6.0]
    rng = np.random.default_rng(seed)
    u = rng.normal(0, 0.05, (n_states, 2, len(sites), 2))
    return AtomsData(
        positions_A=sites + u,
        mean_positions_A=sites,
        cell_index=cells,
        basis_index=kappa,
        lattice_vectors_A=a,
        species=np.where(kappa == 0, "B", "N"),
    )


def _settle(qtbot, widget) -> None:
    """Wait until the computation and the drawings it started are done."""
    qtbot.waitUntil(lambda: widget.worker is None and not widget.is_drawing, timeout=15000)


def _widget(make_napari_viewer, qtbot, atoms: AtomsData) -> tuple:
    viewer = make_napari_viewer()
    viewer.add_points(atoms.mean_positions_A, name="atoms", metadata={ATOMS_METADATA_KEY: atoms})
    widget = CorrelationsWidget(viewer)
    qtbot.addWidget(widget)
    widget.set_source_layer("atoms")
    qtbot.mouseClick(widget.compute_button, Qt.LeftButton)
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None and widget.result is not None, timeout=15000)
    _settle(qtbot, widget)
    return viewer, widget


def _arrow_layer(viewer):
    return viewer.layers["correlations: arrows"]


def test_arrows_slider_and_export_on_a_hand_made_three_atom_case(
    make_napari_viewer, qtbot, tmp_path
):
    atoms = _three_atoms()
    viewer, widget = _widget(make_napari_viewer, qtbot, atoms)
    u = atoms.positions_A[:, 0] - atoms.positions_A[:, 0].mean(0)
    g = np.cov(u.reshape(len(u), -1).T, bias=True)  # eq. 2 by numpy
    np.testing.assert_allclose(widget.result.data.green_A2, g, atol=1e-15)

    widget.self_combo.setCurrentText(SELF_ALL)
    widget.n_nearest_spin.setValue(2)
    widget.set_reference(0)
    widget.set_scale_pm2_per_A(20.0)
    _settle(qtbot, widget)
    layer = _arrow_layer(viewer)
    s = widget.scale_pm2_per_A()
    scale = 1e4 / s  # Å on screen per Å²
    # by hand: self rows of G_jj at every atom, then rows of G_0j at neighbours 1, 2
    expected = [
        (0, "self_y", g[0, 0:2]), (0, "self_x", g[1, 0:2]),
        (1, "self_y", g[2, 2:4]), (1, "self_x", g[3, 2:4]),
        (2, "self_y", g[4, 4:6]), (2, "self_x", g[5, 4:6]),
        (1, "ref_y", g[0, 2:4]), (1, "ref_x", g[1, 2:4]),
        (2, "ref_y", g[0, 4:6]), (2, "ref_x", g[1, 4:6]),
    ]  # fmt: skip
    assert layer.data.shape == (10, 2, 2)
    for k, (atom, kind, row) in enumerate(expected):
        np.testing.assert_allclose(layer.data[k, 0], MEANS[atom])  # starts at its atom
        np.testing.assert_allclose(layer.data[k, 1], row * scale, rtol=1e-12)
        np.testing.assert_allclose(layer.edge_color[k, :3], to_rgba(ARROW_COLOURS[kind])[:3])
        assert layer.features["kind"][k] == kind
        # opacity by significance: self arrows and significant ones opaque, others faded
        sigma = layer.features["sigma"][k]
        assert (layer.edge_color[k, 3] == 1.0) == (kind.startswith("self") or sigma >= 2.0)
    assert layer.vector_style == "arrow"

    # B factors on the atoms
    b_layer = viewer.layers["correlations: B factor (Å²)"]
    np.testing.assert_allclose(
        b_layer.features["b_factor_A2"], 8 * np.pi**2 * np.diag(g).reshape(3, 2).sum(1)
    )
    # rho_nn reported
    assert "ρ_nn" in widget.summary_label.text()
    # the Green's tensor image
    image = widget.plot.figure.axes[0].images[0].get_array()
    np.testing.assert_allclose(image, g * 1e4)

    # the slider: one decade of S per 50 steps, arrows scale inversely, the label follows
    widget.scale_slider.setValue(100)
    _settle(qtbot, widget)
    s1 = widget.scale_pm2_per_A()
    v1 = layer.data[:, 1].copy()
    assert f"{s1:.3g} pm² per Å" in widget.scale_label.text()
    widget.scale_slider.setValue(150)
    _settle(qtbot, widget)
    s2 = widget.scale_pm2_per_A()
    assert s2 == pytest.approx(s1 / 10)
    np.testing.assert_allclose(layer.data[:, 1], v1 * 10, rtol=1e-12)
    assert f"{s2:.3g} pm² per Å" in widget.scale_label.text()

    # export: CORR file and the figure as PNG and SVG
    viewer.add_image(np.random.default_rng(0).random((50, 40)), scale=(0.1, 0.1))
    widget.export_correlations(tmp_path / "corr.h5")
    back = read_correlations(tmp_path / "corr.h5")
    np.testing.assert_array_equal(back.green_A2, widget.result.data.green_A2)
    np.testing.assert_array_equal(back.b_factor_A2, widget.result.data.b_factor_A2)
    widget.export_figure(tmp_path / "fig.png", dpi=40)
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"


def test_click_or_index_selects_the_reference(make_napari_viewer, qtbot):
    viewer, widget = _widget(make_napari_viewer, qtbot, _three_atoms())
    widget.n_nearest_spin.setValue(1)
    widget.set_reference(0)
    _settle(qtbot, widget)
    layer = _arrow_layer(viewer)
    ref_rows = layer.features["kind"].isin(["ref_y", "ref_x"]).to_numpy()
    assert np.allclose(layer.data[ref_rows, 0], MEANS[1])  # 0's nearest neighbour is 1

    # a click (press and release, no move) near atom 2 makes it the reference
    event = SimpleNamespace(position=(4.1, 2.2), type="mouse_press")
    gen = widget._on_mouse_drag(viewer, event)
    next(gen)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)
    assert widget.reference() == 2
    _settle(qtbot, widget)
    g = widget.result.data.green_A2
    ref_rows = layer.features["kind"].isin(["ref_y", "ref_x"]).to_numpy()
    assert np.allclose(layer.data[ref_rows, 0], MEANS[0])  # 2's nearest is 0
    np.testing.assert_allclose(
        widget.arrows().values_A2[-2:], g[4:6, 0:2], rtol=1e-12
    )  # rows of G_20
    markers = viewer.layers["correlations: reference and neighbours"]
    np.testing.assert_allclose(markers.data[0], MEANS[2])

    # a drag (pan) does not pick
    event = SimpleNamespace(position=(1.0, 3.0), type="mouse_press")
    gen = widget._on_mouse_drag(viewer, event)
    next(gen)
    event.type = "mouse_move"
    next(gen)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)
    assert widget.reference() == 2

    # the index spin box
    widget.reference_spin.setValue(1)
    assert widget.reference() == 1
    _settle(qtbot, widget)
    np.testing.assert_allclose(markers.data[0], MEANS[1])


def test_file_source_unit_cell_averages_and_truth_comparison(make_napari_viewer, qtbot, tmp_path):
    atoms = _lattice_atoms()
    atoms.positions_A[:, 1] = atoms.positions_A[:, 0]  # two slices imaging the same atoms
    atoms.positions_A[3, 1, 5] = np.nan  # atom 5 fails in one state of slice 1
    write_atoms(tmp_path / "atoms.h5", atoms)
    viewer = make_napari_viewer()
    widget = CorrelationsWidget(viewer)
    qtbot.addWidget(widget)
    widget.open_atoms_file(tmp_path / "atoms.h5")
    widget.slices_edit.setText("0:2")
    widget.compute()
    qtbot.waitUntil(lambda: widget.worker is None and widget.result is not None, timeout=15000)
    _settle(qtbot, widget)
    data = widget.result.data
    assert data.excluded_atoms.tolist() == [5]
    assert EXCLUDED + "5" in widget.summary_label.text()

    # unit-cell averaged arrows: blocks averaged over identical cell pairs
    widget.set_reference(10)
    widget.averaged_check.setChecked(True)
    _settle(qtbot, widget)
    arrows = widget.arrows()
    avg = corr.unit_cell_averages(
        data.green_A2, data.cell_index, data.basis_index, widget._positions()
    )
    nbrs = widget.neighbour_atoms()
    cls = avg.class_of(data.cell_index, data.basis_index, np.c_[np.full_like(nbrs, 10), nbrs])
    ref = arrows.kind >= 2
    np.testing.assert_allclose(
        arrows.values_A2[ref], avg.lab_blocks_A2[cls].reshape(-1, 2), rtol=1e-10
    )
    counts = avg.counts[np.r_[avg.class_of(data.cell_index, data.basis_index, [[10, 10]]), cls]]
    assert counts.max() == 16 and counts.min() < 16  # Δl = 0 in all 4×4 cells; fewer otherwise
    assert f"means of {counts.min()}–16 atom pairs" in widget.average_label.text()
    # the local frame: arrows are rows of R G
    widget.frame_combo.setCurrentText("local lattice (x → neighbour)")
    _settle(qtbot, widget)
    rot = corr.local_frame(widget._positions(), 10, int(nbrs[0]))
    np.testing.assert_allclose(
        widget.arrows().values_A2[widget.arrows().kind >= 2],
        np.einsum("ab,pbc->pac", rot, avg.lab_blocks_A2[cls]).reshape(-1, 2),
        rtol=1e-10,
    )
    assert "local frame" in widget.frame_label.text()

    # ground truth = the same positions: LSM mean 1, CSM 1
    truth = tmp_path / "sim.h5"
    pos = atoms.positions_A[:, 0]
    u = (pos - pos.mean(0)).reshape(len(pos), -1)
    with h5py.File(truth, "w") as f:
        g = f.create_group("ground_truth")
        g["positions_A"] = pos
        g["mean_positions_A"] = atoms.mean_positions_A
        g["green_realised_A2"] = corr.green_tensor(atoms.positions_A, [0, 1]).green_A2
        g["green_model_A2"] = u.T @ u / len(u)
    widget.averaged_check.setChecked(False)
    widget.truth_edit.setText(str(truth))
    qtbot.mouseClick(widget.compare_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget.worker is None and widget.metrics is not None, timeout=15000)
    assert widget.metrics.csm.value == pytest.approx(1.0)
    assert widget.metrics.lsm_mean.value == pytest.approx(1.0)
    assert "CSM (eq. 4, mean over " in widget.truth_label.text()
    assert "pairs): +1.0000 ± 0.0000" in widget.truth_label.text()
    widget.pairs_combo.setCurrentText(PAIRS_NN)
    _settle(qtbot, widget)
    assert widget.metrics.n_pairs > 20


def test_buttons_open_compute_compare_and_save(
    make_napari_viewer, qtbot, tmp_path, click, answer_dialogs
):
    """Open ATOMS file…, Compute, Browse…, Compare, Save CORR… and Save figure… by clicks."""
    atoms = _lattice_atoms(L=3)
    atoms.positions_A[:, 1] = atoms.positions_A[:, 0]  # two slices imaging the same atoms
    write_atoms(tmp_path / "atoms.h5", atoms)
    viewer = make_napari_viewer()
    widget = CorrelationsWidget(viewer)
    qtbot.addWidget(widget)
    assert not widget.compute_button.isEnabled()  # no source yet
    asked = answer_dialogs(tmp_path / "atoms.h5")
    click(widget.source_picker.open_button)
    assert widget.source_picker.combo.currentText() == "atoms (atoms)"
    click(widget.compute_button)
    qtbot.waitUntil(lambda: widget.result is not None, timeout=15000)
    _settle(qtbot, widget)
    assert "atoms: 18 (18 used)" in widget.summary_label.text()
    assert len(viewer.layers["correlations: arrows"].data) > 0
    assert widget.plot.figure is not None  # the Green's tensor, rendered in the worker

    compare_empty = widget.compare_button
    widget.truth_edit.setText("")
    click(compare_empty)  # no file given: said so, nothing started
    assert widget.worker is None and "choose a ground-truth file" in widget.truth_label.text()

    truth = tmp_path / "sim.h5"
    with h5py.File(truth, "w") as f:
        g = f.create_group("ground_truth")
        g["positions_A"] = atoms.positions_A[:, 0]
        g["mean_positions_A"] = atoms.mean_positions_A
        g["green_realised_A2"] = corr.green_tensor(atoms.positions_A, [0, 1]).green_A2
    answer_dialogs(truth)
    click(widget.browse_button)
    assert widget.truth_edit.text() == str(truth)
    click(widget.compare_button)
    qtbot.waitUntil(lambda: widget.metrics is not None, timeout=15000)
    assert widget.metrics.csm.value == pytest.approx(1.0)

    answer_dialogs(tmp_path / "clicked-corr.h5")
    click(widget.save_corr_button)
    back = read_correlations(tmp_path / "clicked-corr.h5")
    np.testing.assert_array_equal(back.green_A2, widget.result.data.green_A2)
    answer_dialogs(tmp_path / "clicked.svg")
    click(widget.save_figure_button)
    assert (tmp_path / "clicked.svg").read_text().lstrip().startswith("<?xml")
    assert asked == [
        "Open ATOMS file",
        "Ground truth (simulated 4D-STEM file)",
        "Save CORR file",
        "Save figure",
    ]
    _settle(qtbot, widget)


def test_result_warnings_show_in_the_banner(make_napari_viewer, qtbot, monkeypatch):
    """A warning the computed correlations carry appears above the dock."""
    from caviar_napari.viewmodels import correlations as cvm

    atoms = _three_atoms()
    real = cvm.compute_job

    def warned(*args):
        result = yield from real(*args)
        return dataclasses.replace(
            result, warnings=("displacements at the noise floor: 0.3 pm rms (test)",)
        )

    monkeypatch.setattr(cvm, "compute_job", warned)
    _viewer, widget = _widget(make_napari_viewer, qtbot, atoms)
    assert widget.warning_banner.isVisibleTo(widget)
    assert "noise floor" in widget.warning_banner.text()


def test_error_offset_noise_floor_and_significance_controls(make_napari_viewer, qtbot, click):
    """Errors, subtract-offset, noise floor and the significance display, by the controls."""
    from caviar_napari.io.correlations_file import read_ground_truth

    gt = read_ground_truth("caviar_napari/resources/hbn-correlated.h5")
    atoms = AtomsData(
        positions_A=gt.positions_A[:, None],
        mean_positions_A=gt.mean_positions_A,
        cell_index=gt.cell_index,
        basis_index=gt.basis_index,
        species=gt.species,
        lattice_vectors_A=gt.lattice_vectors_A,
    )
    viewer, widget = _widget(make_napari_viewer, qtbot, atoms)
    assert widget.result.data.uncertainty.method == "jackknife"
    assert "± " in widget.summary_label.text() and "not subtracted" in widget.summary_label.text()
    offset = widget.result.data.offset.offset_A2.copy()
    green = widget.result.data.green_A2.copy()

    # ticking "subtract the uniform offset" computes again without the offset
    click(widget.subtract_check)
    assert widget.subtract_check.isChecked()
    qtbot.waitUntil(lambda: widget.result.data.offset.subtracted, timeout=15000)
    _settle(qtbot, widget)
    np.testing.assert_allclose(
        green[0::2, 0::2] - widget.result.data.green_A2[0::2, 0::2], offset[0]
    )
    assert "subtracted from the tensor" in widget.summary_label.text()
    # bootstrap errors
    widget.errors_combo.setCurrentText("bootstrap")
    qtbot.waitUntil(lambda: widget.result.data.uncertainty.method == "bootstrap", timeout=15000)
    _settle(qtbot, widget)
    assert widget.result.data.offset.subtracted  # the other options kept
    # a noise floor near the displacements: said in the summary and in the banner
    widget.noise_floor_spin.setValue(2.7)  # pm
    qtbot.waitUntil(lambda: widget.result.data.noise_floor.method != "unknown", timeout=15000)
    _settle(qtbot, widget)
    assert widget.result.data.noise_floor.floor_A == pytest.approx(0.027)
    assert "noise floor: 2.70 pm per direction, given" in widget.summary_label.text()
    assert "at the noise floor" in widget.warning_banner.text()

    # significance: unit-cell averages, faded below 2σ; hide; show all; threshold
    click(widget.subtract_check)
    qtbot.waitUntil(lambda: not widget.result.data.offset.subtracted, timeout=15000)
    widget.set_reference(0)
    widget.averaged_check.setChecked(True)
    widget.self_combo.setCurrentText(SELF_NONE)
    _settle(qtbot, widget)
    layer = _arrow_layer(viewer)
    sigma = layer.features["sigma"].to_numpy()
    assert len(sigma) == 6 and (sigma < 2).any() and (sigma >= 2).any()
    np.testing.assert_array_equal(layer.edge_color[:, 3] == 1.0, sigma >= 2)
    assert "reference arrows significant at 2σ" in widget.significance_label.text()
    widget.significance_combo.setCurrentText(SIG_HIDE)
    _settle(qtbot, widget)
    assert len(layer.data) == int((sigma >= 2).sum())
    widget.significance_combo.setCurrentText(SIG_ALL)
    _settle(qtbot, widget)
    assert len(layer.data) == 6 and np.all(layer.edge_color[:, 3] == 1.0)
    widget.significance_combo.setCurrentText(SIG_HIDE)
    widget.threshold_spin.setValue(0.0)
    _settle(qtbot, widget)
    assert len(layer.data) == 6


def _two_ranges(path) -> None:
    """An ATOMS file of two z-ranges ('upper' slices 0:2, 'lower' 2:4 of 4); the upper layer's
    atoms fail in its second slice (vacuum), so its occupied slice is the first only."""
    from caviar_napari.analysis.depth import zrange_from_spec
    from caviar_napari.io.atoms_file import write_atoms_zranges

    upper = _lattice_atoms(seed=3)
    upper.positions_A[:, 1] = np.nan
    lower = _lattice_atoms(seed=4)
    dz = [40.0] * 4
    write_atoms_zranges(
        path,
        [
            dataclasses.replace(upper, zrange=zrange_from_spec("0:2", dz, "upper")),
            dataclasses.replace(lower, zrange=zrange_from_spec("2:4", dz, "lower")),
        ],
    )


def test_a_multi_range_file_is_one_source_per_range_each_with_its_own_arrows(
    make_napari_viewer, qtbot, tmp_path
):
    """A file of two z-ranges (caviar atoms --zrange): one source layer per range, the z-range
    combo picks them, each range is analysed over its occupied slices and drawn in layers of
    its own, so both ranges' arrows can be shown together."""
    _two_ranges(tmp_path / "ranges.h5")
    viewer = make_napari_viewer()
    widget = CorrelationsWidget(viewer)
    qtbot.addWidget(widget)
    layer = widget.open_atoms_file(tmp_path / "ranges.h5")
    assert layer.name == "atoms (ranges) [upper]"
    picker = widget.source_picker
    assert picker.range_combo.isVisibleTo(widget)
    assert [picker.range_combo.itemText(i) for i in range(2)] == [
        "z-range upper (0:2)",
        "z-range lower (2:4)",
    ]
    assert widget.atoms_source().zrange.label == "upper"
    qtbot.mouseClick(widget.compute_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget.worker is None and widget.result is not None, timeout=15000)
    _settle(qtbot, widget)
    text = widget.summary_label.text()
    assert "z-range 'upper': slices 0:2 of 4, z = 0.0 … 80.0 Å" in text
    assert "slices used: 0 of the range (slice 0 of the reconstruction)" in text
    upper_arrows = viewer.layers["correlations [upper]: arrows"]
    assert len(upper_arrows.data) > 0
    picker.range_combo.setCurrentIndex(1)  # the lower range
    assert widget.atoms_source().zrange.label == "lower"
    assert picker.combo.currentText() == "atoms (ranges) [lower]"
    qtbot.mouseClick(widget.compute_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=15000)
    _settle(qtbot, widget)
    assert "z-range 'lower': slices 2:4 of 4" in widget.summary_label.text()
    lower_arrows = viewer.layers["correlations [lower]: arrows"]
    assert upper_arrows in viewer.layers and lower_arrows is not upper_arrows
    assert not np.allclose(lower_arrows.data[:, 1], upper_arrows.data[:, 1])
    widget.source_picker.set_zrange("upper")
    assert widget.atoms_source().zrange.label == "upper"
    with pytest.raises(Exception, match="no z-range 'middle'"):
        widget.source_picker.set_zrange("middle")


def test_zrange_against_its_layer_and_the_unit_cell_tab(make_napari_viewer, qtbot, depth_files):
    """A z-range of a two-range file against a layered truth: matched to its own layer (the
    other range of its file matched too), the per-layer table, and the range's unit-cell
    averages in their tab."""
    atoms, data, _ = depth_files
    viewer = make_napari_viewer()
    widget = CorrelationsWidget(viewer)
    qtbot.addWidget(widget)
    widget.open_atoms_file(atoms)
    widget.source_picker.set_zrange("bottom")
    assert sorted(widget.source_picker.zrange_atoms()) == ["bottom", "top"]
    widget.compute()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=15000)
    _settle(qtbot, widget)
    table = widget.unit_cell_table
    assert widget.tabs.tabText(1) == "Unit-cell averages" and not table.isHidden()
    assert table.rowCount() == 11 and table.horizontalHeaderItem(2).text() == "G_xx"
    assert table.item(0, 0).text() == "(0,0) B→B" and table.item(0, 5).text() == "self"
    assert widget.unit_cell_label.text().startswith("z-range bottom: G in pm²")
    widget.compare(str(data))
    qtbot.waitUntil(lambda: widget.worker is None and widget.metrics is not None, timeout=15000)
    _settle(qtbot, widget)
    text = widget.truth_label.text()
    assert "z-range 'bottom' ↔ layer 'lower'" in text and "z-range 'top' ↔ layer 'upper'" in text
    assert widget.metrics.truth.endswith("ground_truth/layers/lower")
    layers = widget.layer_table
    assert not layers.isHidden() and layers.rowCount() == 2
    assert [layers.item(r, 0).text() for r in range(2)] == ["upper", "lower (own)"]
    assert float(layers.item(1, 1).text()) > float(layers.item(0, 1).text()) + 0.1  # own CSM
