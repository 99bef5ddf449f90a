"""The Diagnostics dock under Xvfb: RECON and ATOMS files through the buttons, the computation
in a worker, its numbers and plots, Save, and an error that leaves the dock idle.

The reconstruction is the ``two_layer_recon`` of tests/conftest.py (columns in slice 1 under
z-range ``top``, shifted ones in slice 3 under ``bottom``; data 80 keV, α = 25 mrad).
"""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari._qt import _worker
from caviar_napari._qt.diagnostics_widget import DiagnosticsWidget
from caviar_napari.io.diagnostics_file import read_diagnostics
from caviar_napari.io.reconstruction import load_reconstruction
from caviar_napari.viewmodels.layer_keys import STATE_KEY

WAIT_MS = 30000


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    w = DiagnosticsWidget(viewer)
    viewer.window.add_dock_widget(w, name="Diagnostics")
    return w


def _idle(widget, qtbot):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)


def test_files_compute_and_save_through_the_buttons(
    widget, qtbot, tmp_path, click, answer_dialogs, two_layer_recon
):
    recon, _, atoms = two_layer_recon
    assert not widget.compute_button.isEnabled() and not widget.save_button.isEnabled()
    answer_dialogs(recon)
    click(widget.open_recon_button)
    _idle(widget, qtbot)
    assert widget.recon_combo.currentText() == "recon phase"
    answer_dialogs(atoms)
    click(widget.open_atoms_button)
    _idle(widget, qtbot)
    assert [widget.atoms_list.item(i).text() for i in range(2)] == [
        "atoms top (atoms)",
        "atoms bottom (atoms)",
    ]
    assert list(widget.zranges()) == ["top", "bottom"]  # new layers are ticked

    click(widget.compute_button)
    assert widget.worker is not None and not widget.compute_button.isEnabled()
    _idle(widget, qtbot)
    data = widget.result
    assert data is not None and data.numbers["alpha_mrad"] == 25.0  # from the source data
    assert widget.summary_label.text().startswith("information limit d = ")
    assert widget.report_label.text().startswith("optics: E = 80 keV, α = 25 mrad")
    assert widget.table.rowCount() == len(data.reflections) > 0
    assert float(widget.table.item(0, 0).text()) == pytest.approx(
        data.reflections[0].q_invA, abs=5e-4
    )
    peaks = {z.label: int(np.argmax(z.column_profile)) for z in data.zranges}
    assert peaks == {"top": 1, "bottom": 3}
    assert len(widget.views["rz"].figure.axes) == 4  # two maps, their colour bar, the profile
    assert widget.views["power"].figure.axes[1].get_xlabel() == "|k| (1/Å)"

    answer_dialogs(tmp_path / "diag.h5")
    click(widget.save_button)
    _idle(widget, qtbot)
    assert read_diagnostics(tmp_path / "diag.h5").numbers == data.numbers
    assert (tmp_path / "diag.json").exists() and (tmp_path / "diag_rz.png").stat().st_size > 0
    assert "wrote" in widget.summary_label.text()


def test_an_error_in_the_worker_is_shown_and_the_dock_returns_to_idle(
    widget, qtbot, monkeypatch, two_layer_recon
):
    errors = []
    monkeypatch.setattr(_worker, "show_error", errors.append)
    state = load_reconstruction(two_layer_recon[0])
    lost = type(state)(**{**state.__dict__, "source": "nowhere/missing.h5"})
    widget.viewer.add_image(np.angle(lost.object), name="live phase", metadata={STATE_KEY: lost})
    widget.set_recon_layer("live phase")
    with qtbot.capture_exceptions() as raised:  # napari's workers re-raise on the loop
        assert widget.compute() is not None
        _idle(widget, qtbot)
    assert len(raised) == 1
    assert len(errors) == 1 and "nowhere/missing.h5 was not found" in errors[0]
    assert widget.summary_label.text().startswith("failed: ")
    assert widget.compute_button.isEnabled() and widget.result is None
    # with the optics entered it works
    widget.optics_form["energy_eV"].value = 60e3
    widget.optics_form["alpha_mrad"].value = 35.0
    assert widget.compute() is not None
    _idle(widget, qtbot)
    assert widget.result.numbers["alpha_mrad"] == 35.0 and widget.save_button.isEnabled()
