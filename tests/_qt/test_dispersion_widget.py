"""The Dispersion dock widget under Xvfb: plot and table from an ATOMS file, export, errors."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from caviar_napari._qt.dispersion_widget import DispersionWidget
from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.io.atoms_file import AtomsData, write_atoms
from caviar_napari.io.dispersion_file import read_dispersion


def write_atoms_file(path, species=("B", "N"), n_states=20, L=(6, 6)):
    lat = HarmonicLattice.honeycomb(masses_amu=(10.81, 14.007))
    sc = lat.supercell(*L)
    pos = sc.positions_A[None] + sc.sample_snapshots(300.0, n_states, 4)
    sp = np.where(sc.basis_index == 0, species[0], species[1])
    write_atoms(
        path,
        AtomsData(
            positions_A=pos[:, None],
            mean_positions_A=pos.mean(axis=0),
            cell_index=sc.cell_index,
            basis_index=sc.basis_index,
            species=sp,
            lattice_vectors_A=lat.lattice_vectors_A,
        ),
    )


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    w = DispersionWidget(viewer)
    viewer.window.add_dock_widget(w, name="Dispersion")
    return w


def _run(widget, qtbot):
    qtbot.mouseClick(widget.compute_button, Qt.LeftButton)
    assert widget.worker is not None
    assert not widget.compute_button.isEnabled()  # one computation at a time
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)


def test_both_estimators_plot_tables_and_export(widget, qtbot, tmp_path):
    """Force constants over eq. 6: the dense curves with their band, the eq. 6 points with
    error bars, the branch table of both, the fitted constants ± errors and the shell test."""
    write_atoms_file(tmp_path / "atoms.h5", L=(4, 4), n_states=10)
    layer = widget.open_atoms_file(tmp_path / "atoms.h5")
    assert layer in widget.viewer.layers and widget.atoms_source() is not None
    assert set(widget._mass_spins) == {"B", "N"}
    assert widget._mass_spins["N"].value() == pytest.approx(14.007)
    assert widget.form["estimator"].value == "force-constants"  # the default, as the CLI
    widget.form["estimator"].value = "both"
    widget.form["boundary"].value = "periodic"
    widget.form["bootstrap"].value = 8
    _run(widget, qtbot)
    d, g = widget.result, widget.vm.outcome.green
    assert d.estimator == "force-constants" and d.boundary == "periodic" and d.shells == 2
    assert g.estimator == "green" and g.n_bootstrap == 8 and d.cells == (4, 4)
    ax = widget.plot.figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Γ", "M", "K", "Γ"]
    assert ax.get_ylabel() == "ν = ω/2π (THz)"
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) == 301]
    assert len(curves) == 4  # the model's dense path, one curve per branch
    for b, line in enumerate(curves):
        np.testing.assert_allclose(line.get_ydata(), d.dense_path.frequencies_THz[:, b])
    assert len(ax.collections) >= 4  # the ± bands
    assert len(ax.containers) == 4  # eq. 6 at the commensurate q, one errorbar set per branch
    for b, container in enumerate(ax.containers):
        np.testing.assert_allclose(container.lines[0].get_ydata(), g.path_frequencies_THz[:, b])
        assert container.has_yerr
    assert widget.table.columnCount() == 3 and widget.table.rowCount() == 4
    for b in range(4):
        fc, eq6 = widget.table.item(b, 1).text(), widget.table.item(b, 2).text()
        dense = d.dense_path
        assert fc == f"{dense.branch_average_THz[b]:.2f} ± {dense.branch_average_err_THz[b]:.2f}"
        assert eq6.startswith(f"{g.branch_average_THz[b]:.2f} ± ")
    fc = d.force_constants
    assert widget.constants_box.isVisibleTo(widget)
    assert widget.constants_table.rowCount() == len(fc.names) == 6
    assert fc.names[0] == "shell 1 B–N longitudinal"
    assert widget.constants_table.item(0, 0).text() == "1 B–N ∥"
    assert float(widget.constants_table.item(0, 2).text()) == pytest.approx(
        fc.value_eV_per_A2[0], abs=0.006
    )
    assert float(widget.constants_table.item(0, 3).text()) == pytest.approx(
        fc.err_fisher_eV_per_A2[0], abs=0.006
    )
    assert "likelihood ratio 2 vs 3 shells" in widget.fit_label.text()
    assert any("green estimator with 10 states" in w for w in widget.warning_banner.warnings)
    widget.export_figure(tmp_path / "fig.png")
    widget.export_figure(tmp_path / "fig.svg")
    assert (tmp_path / "fig.png").stat().st_size > 1000
    assert (tmp_path / "fig.svg").read_text().lstrip().startswith("<?xml")
    widget.export_data(tmp_path / "disp.h5")  # the force-constant result
    back = read_dispersion(tmp_path / "disp.h5")
    assert back.estimator == "force-constants"
    np.testing.assert_array_equal(back.frequencies_THz, d.frequencies_THz)


def test_custom_path_single_mass_and_errors(widget, qtbot, tmp_path):
    write_atoms_file(tmp_path / "atoms.h5", species=("B", "Qx"))
    widget.open_atoms_file(tmp_path / "atoms.h5")
    widget.form["estimator"].value = "green"
    assert not widget.form["shells"].enabled  # force-constant options only for that estimator
    assert widget._mass_spins["Qx"].value() == 0.0  # unknown species: required
    widget.form["bootstrap"].value = 0
    with qtbot.capture_exceptions() as raised:
        _run(widget, qtbot)
    assert widget.result is None
    assert len(raised) == 1 and "Qx" in str(raised[0][1])
    assert "no mass for species 'Qx'" in widget.summary_label.text()
    widget._mass_spins["Qx"].setValue(14.0)
    widget.form["single_mass"].value = True
    assert not widget.form["path_text"].enabled  # the standard path
    widget.form["custom_path"].value = True
    assert widget.form["path_text"].enabled
    widget.form["path_text"].value = "G=0,0; K=1/3,1/3"
    _run(widget, qtbot)
    d = widget.result
    assert d.single_mass and d.masses_amu == {"B": 10.81, "Qx": 14.0}
    assert d.path_labels == ("Γ", "K") and d.estimator == "green"
    assert widget.table.item(0, 1).text() == f"{d.branch_average_THz[0]:.2f}"  # no error
    assert not widget.constants_box.isVisibleTo(widget)
    widget.form["path_text"].value = "G=0,0; K=x"
    widget.compute()  # a bad path is reported at once, no worker started
    assert widget.worker is None and "LABEL=f1,f2" in widget.summary_label.text()


def test_buttons_open_compute_and_save(widget, qtbot, tmp_path, click, answer_dialogs):
    """Open ATOMS file…, Compute dispersion, Save DISP…, Save figure… by clicks; a warning the
    result carries shows in the banner."""
    write_atoms_file(tmp_path / "atoms.h5", L=(4, 4), n_states=8)
    assert not widget.compute_button.isEnabled() and not widget.save_data_button.isEnabled()
    asked = answer_dialogs(tmp_path / "atoms.h5")
    click(widget.source_picker.open_button)
    assert set(widget._mass_spins) == {"B", "N"}
    widget.form["bootstrap"].value = 0
    widget.form["crystal_cells"].value = "4 x"
    widget.compute()  # a bad crystal size is reported at once
    assert widget.worker is None and "crystal cells" in widget.summary_label.text()
    widget.form["crystal_cells"].value = "8, 8"
    widget.form["boundary"].value = "open"
    _run(widget, qtbot)
    assert widget.result is not None and widget.table.rowCount() == 4
    assert widget.result.boundary == "open" and widget.result.crystal_cells == (8, 8)
    answer_dialogs(tmp_path / "clicked-disp.h5")
    click(widget.save_data_button)
    np.testing.assert_array_equal(
        read_dispersion(tmp_path / "clicked-disp.h5").frequencies_THz,
        widget.result.frequencies_THz,
    )
    answer_dialogs(tmp_path / "clicked.png")
    click(widget.save_figure_button)
    assert (tmp_path / "clicked.png").read_bytes()[:4] == b"\x89PNG"
    assert asked == ["Open ATOMS file", "Save DISP file", "Save figure"]

    # the warnings a result carries go to the banner
    from caviar_napari.viewmodels.dispersion import DispersionOutcome

    outcome = widget.vm.outcome
    widget.show_outcome(
        DispersionOutcome(
            outcome.data,
            outcome.green,
            outcome.plot,
            outcome.branches,
            outcome.constants,
            outcome.fit,
            outcome.summary,
            ("branch 4 at 5203 THz: unphysical for the masses given (test)",),
        )
    )
    assert widget.warning_banner.isVisibleTo(widget)
    assert "unphysical" in widget.warning_banner.text()


def test_a_multi_range_file_picks_its_range_and_names_it(widget, qtbot, tmp_path):
    """A file of two z-ranges: one source per range, the z-range combo picks one, and the
    summary names the range analysed."""
    import dataclasses

    from caviar_napari.analysis.depth import zrange_from_spec
    from caviar_napari.io.atoms_file import read_atoms, write_atoms_zranges

    write_atoms_file(tmp_path / "one.h5", L=(4, 4), n_states=10)
    atoms = read_atoms(tmp_path / "one.h5")
    ranges = [
        dataclasses.replace(atoms, zrange=zrange_from_spec(spec, [20.0] * 2, label))
        for label, spec in (("upper", "0:1"), ("lower", "1:2"))
    ]
    write_atoms_zranges(tmp_path / "two.h5", ranges)
    widget.open_atoms_file(tmp_path / "two.h5")
    picker = widget.source_picker
    assert picker.range_combo.count() == 2 and picker.range_combo.isVisibleTo(widget)
    picker.range_combo.setCurrentIndex(1)
    assert widget.atoms_source().zrange.label == "lower"
    _run(widget, qtbot)
    assert widget.vm.outcome is not None, widget.summary_label.text()
    assert widget.vm.outcome.summary.startswith("z-range 'lower': slices 1:2 of 2")
