"""The Diagnostics dock's view-model without a display: sources, form, job, plots, save.

The reconstruction is the ``two_layer_recon`` of tests/conftest.py (known truth: columns in
slice 1 under z-range ``top``, shifted columns in slice 3 under ``bottom``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import read_atoms_zranges
from caviar_napari.io.diagnostics_file import read_diagnostics
from caviar_napari.io.outputs import OutputError
from caviar_napari.io.reconstruction import load_reconstruction
from caviar_napari.viewmodels import diagnostics as dvm
from caviar_napari.viewmodels.figures import FigureSize
from caviar_napari.viewmodels.layer_keys import ATOMS_METADATA_KEY, PATH_KEY, STATE_KEY
from caviar_napari.workflows.diagnostics import compute_diagnostics

SIZES = {name: FigureSize(360, 420) for name in dvm.PLOT_NAMES}


def run(job):
    """Run a generator job to its return value; the steps it yielded."""
    steps = []
    try:
        while True:
            steps.append(next(job))
    except StopIteration as done:
        return done.value, steps


@pytest.fixture(scope="module")
def source(two_layer_recon):
    recon, _, _ = two_layer_recon
    state = load_reconstruction(recon)
    return dvm.recon_source("recon phase", {STATE_KEY: state, PATH_KEY: str(recon)})


def test_recon_source_and_form_are_checked(source, two_layer_recon):
    assert source.recon_path == str(two_layer_recon[0]) and source.data_source == "data.h5"
    with pytest.raises(InputError, match="layer 'x' holds no reconstruction"):
        dvm.recon_source("x", {})
    assert dvm.parse_reflections(" 0.32, 0.52 0.7") == (0.32, 0.52, 0.7)
    assert dvm.parse_reflections("") == ()
    with pytest.raises(InputError, match="reflection 'q' is not a number"):
        dvm.parse_reflections("0.3, q")
    with pytest.raises(InputError, match="give both the energy and α"):
        dvm.DiagnosticsForm(energy_eV=60e3).validated()
    with pytest.raises(InputError, match="plateau start"):
        dvm.DiagnosticsForm(plateau_start=1.5).validated()
    given = dvm.DiagnosticsForm(energy_eV=60e3, alpha_mrad=35.0).optics_overrides()
    assert given == {"energy_eV": 60e3, "convergence_semiangle_mrad": 35.0, "detector_mrad": None}


def test_compute_job_matches_the_workflow_and_finds_the_layers(source, two_layer_recon):
    """Optics from the recorded source data (80 keV, 25 mrad, detector to 16 mrad), r–z maps
    of both ranges; the same numbers as the workflow on the same arrays."""
    _, data_path, atoms_path = two_layer_recon
    ranges = read_atoms_zranges(atoms_path)
    zranges = dvm.zrange_columns([(f"layer {k}", a) for k, a in ranges.items()])
    assert list(zranges) == ["top", "bottom"]
    form = dvm.DiagnosticsForm(reflections="0.769")
    outcome, steps = run(dvm.compute_job(source, form, zranges, SIZES))
    assert steps == ["optics", "diagnostics", "plot power", "plot kz", "plot rz"]
    assert outcome.optics.energy_eV == 80e3 and outcome.optics.detector_mrad == 16.0
    assert outcome.optics.origin == f"data {data_path}"
    state = source.state
    direct = compute_diagnostics(
        np.angle(state.object), pixel_size_A=state.pixel_size_A,
        slice_thickness_A=state.slice_thickness_A, object_origin_A=state.object_origin_A,
        energy_eV=80e3, convergence_semiangle_mrad=25.0, detector_mrad=16.0,
        scan_positions_A=state.scan_positions_A, zranges=zranges, reflections_invA=(0.769,),
    )  # fmt: skip
    assert outcome.data.numbers == direct.numbers
    np.testing.assert_array_equal(outcome.data.kz_power, direct.kz_power)
    # the columns of each range are where the truth put them
    peaks = {z.label: int(np.argmax(z.column_profile)) for z in outcome.data.zranges}
    assert peaks == {"top": 1, "bottom": 3}
    assert [z.n_columns for z in outcome.data.zranges] == [16, 16]  # 4 × 4 far enough inside
    (row,) = outcome.rows
    assert row[0] == f"{outcome.data.reflections[0].q_invA:.3f}"
    assert outcome.lines[0].startswith("optics: E = 80 keV, α = 25 mrad, detector to 16.0 mrad")
    assert "information limit" in outcome.summary and "depth of field" in outcome.summary
    for name, plot in outcome.plots.items():
        assert plot.rgba.shape == (420, 360, 4), name
    # the dock's power plot marks d; the k_z plot shows one profile per reflection
    power_axes = outcome.plots["power"].figure.axes
    labels = [line.get_label() for line in power_axes[1].get_lines()]
    assert any(label.startswith("d = ") and label.endswith("λ") for label in labels)
    assert len(outcome.plots["kz"].figure.axes[1].get_lines()) == 2  # profile + one half
    assert len(outcome.plots["rz"].figure.axes) == 4  # two maps, their colour bar, the profile


def test_optics_from_the_form_and_errors(source, two_layer_recon, tmp_path):
    form = dvm.DiagnosticsForm(energy_eV=60e3, alpha_mrad=35.0)
    outcome, _ = run(dvm.compute_job(source, form, {}, SIZES))
    assert outcome.optics.origin == "given" and outcome.data.numbers["alpha_mrad"] == 35.0
    assert outcome.data.zranges == ()
    assert outcome.plots["rz"].figure.texts[0].get_text() == dvm.NO_RZ
    lost = dvm.ReconSource(source.state, "live", None, "elsewhere/missing.h5")
    with pytest.raises(InputError, match="source data elsewhere/missing.h5 was not found; enter"):
        run(dvm.compute_job(lost, dvm.DiagnosticsForm(), {}, SIZES))


def test_save_writes_diag_json_figures_and_never_the_recon(source, two_layer_recon, tmp_path):
    recon = two_layer_recon[0]
    vm = dvm.DiagnosticsViewModel()
    with pytest.raises(InputError, match="compute them first"):
        vm.save(tmp_path / "d.h5")
    outcome, _ = run(dvm.compute_job(source, dvm.DiagnosticsForm(), {}, SIZES))
    vm.accept(outcome)
    summary = vm.save(tmp_path / "d.h5")
    assert read_diagnostics(tmp_path / "d.h5").numbers == outcome.data.numbers
    assert json.loads((tmp_path / "d.json").read_text())["kind"] == "diag"
    assert sorted(p.name for p in summary.figure_paths) == ["d_kz.png", "d_power.png"]
    vm.save(tmp_path / "d.h5")  # its own outputs are replaced
    before = recon.read_bytes()
    with pytest.raises(OutputError, match="is the RECON input"):
        vm.save(recon)
    assert recon.read_bytes() == before


def test_atoms_file_layers_carry_each_zrange(two_layer_recon):
    layers = dvm.atoms_file_layers(two_layer_recon[2])
    assert [kw["name"] for _, kw, _ in layers] == ["atoms top (atoms)", "atoms bottom (atoms)"]
    for (data, kwargs, kind), label in zip(layers, ("top", "bottom")):
        atoms = kwargs["metadata"][ATOMS_METADATA_KEY]
        assert kind == "points" and atoms.zrange.label == label
        np.testing.assert_array_equal(data, atoms.mean_positions_A)
    same = read_atoms_zranges(two_layer_recon[2])["top"]
    assert list(dvm.zrange_columns([("a", same), ("b", same)])) == ["top", "top (2)"]
