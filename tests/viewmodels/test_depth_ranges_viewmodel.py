"""The Atoms dock's z-ranges without Qt: ranges, their results and files, the side view."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from caviar_napari.analysis.depth import zrange_from_spec
from caviar_napari.data.atoms import AtomsData
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import atoms_zrange_labels, read_atoms, write_atoms
from caviar_napari.viewmodels import atoms as avm
from caviar_napari.viewmodels.atoms_depth import (
    ALL_SLICES,
    RangeChoice,
    new_range,
    side_view,
    side_view_figure,
)
from caviar_napari.viewmodels.figures import FigureSize


def test_new_ranges_are_checked_and_describe_their_depths():
    existing = [RangeChoice("upper", 0, 2)]
    lower = new_range(" lower ", 2, 4, 4, existing)
    assert (lower.label, lower.spec) == ("lower", "2:4")
    assert lower.text([10.0, 30.0, 40.0, 40.0]) == "lower: slices 2:4 (z = 40.0 … 120.0 Å)"
    assert new_range("", 0, 1, 4, existing).label == "range 2"
    with pytest.raises(InputError, match="exists already"):
        new_range("upper", 1, 2, 4, existing)
    with pytest.raises(InputError, match="no '/'"):
        new_range("a/b", 1, 2, 4, existing)
    with pytest.raises(InputError, match="not within 0:4"):
        new_range("deep", 3, 5, 4, existing)


def _atoms(zrange=None, n_slices=2) -> AtomsData:
    rng = np.random.default_rng(0)
    mean = np.stack(np.meshgrid(np.arange(3.0), np.arange(3.0)), -1).reshape(-1, 2)
    return AtomsData(
        positions_A=mean + rng.normal(0, 0.02, (2, n_slices, 9, 2)),
        mean_positions_A=mean,
        zrange=zrange,
    )


def test_the_view_model_keeps_one_result_per_range_and_writes_them_labelled(tmp_path):
    dz = [40.0] * 4
    vm = avm.AtomsViewModel()
    vm.add_range(RangeChoice("upper", 0, 2))
    vm.add_range(RangeChoice("lower", 2, 4))
    assert vm.active == "lower" and vm.active_zrange(dz).z_extent_A == (80.0, 160.0)
    with pytest.raises(InputError, match="no slice thicknesses"):
        vm.active_zrange(None)
    upper = avm.atoms_result(_atoms(zrange_from_spec("0:2", dz, "upper")), "upper")
    lower = avm.atoms_result(_atoms(zrange_from_spec("2:4", dz, "lower")), "lower")
    vm.accept(lower)
    vm.set_active("upper")
    assert vm.result is None
    vm.accept(upper)
    assert vm.results == {"lower": lower, "upper": upper}
    assert vm.export_atoms(tmp_path / "both.h5") == "z-ranges 'upper', 'lower'"
    assert atoms_zrange_labels(tmp_path / "both.h5") == ["upper", "lower"]
    # one range with atoms: the usual schema, the range recorded
    vm.move_range("lower", 1, 4)
    assert "lower" not in vm.results and vm.range("lower").spec == "1:4"
    assert vm.export_atoms(tmp_path / "one.h5") == "z-range 'upper'"
    assert read_atoms(tmp_path / "one.h5").zrange.spec == "0:2"
    # every slice: its own result, unaffected by the ranges
    vm.set_active(ALL_SLICES)
    with pytest.raises(InputError, match="Refine first"):
        vm.export_atoms(tmp_path / "all.h5")
    vm.remove_range("upper")
    assert [r.label for r in vm.ranges] == ["lower"] and "upper" not in vm.results


def test_an_imported_unnamed_range_gets_its_slices_as_label(tmp_path):
    dz = [10.0] * 6
    write_atoms(tmp_path / "one.h5", _atoms(zrange_from_spec("2:4", dz)))  # --slices 2:4
    results = avm.import_atoms_file(tmp_path / "one.h5")
    assert list(results) == [""]
    vm = avm.AtomsViewModel()
    vm.accept_import(results)
    assert [(r.label, r.spec) for r in vm.ranges] == [("slices 2:4", "2:4")]
    assert vm.active == "slices 2:4" and vm.atoms.zrange.label == "slices 2:4"
    write_atoms(tmp_path / "plain.h5", _atoms())  # no range: every slice
    vm.accept_import(avm.import_atoms_file(tmp_path / "plain.h5"))
    assert vm.active == ALL_SLICES and vm.atoms.zrange is None
    assert len(vm.ranges) == 1  # the range read before stays


def test_the_drawing_of_a_range_puts_its_points_on_its_slices():
    atoms = _atoms(zrange_from_spec("3:5", [5.0] * 6, "deep"))
    result = avm.atoms_result(atoms, "deep")
    assert set(np.unique(result.drawing.states[0][:, 1])) == {3.0, 4.0}
    nan = dataclasses.replace(atoms, mean_positions_A=np.full((9, 2), np.nan))
    with pytest.raises(InputError, match="no finite mean position in z-range 'deep'"):
        avm.atoms_result(nan, "")


def test_the_side_view_cuts_along_y_and_measures_each_slice():
    phase = np.zeros((2, 3, 20, 30))
    phase[:, 0, 10, 5] = 1.0  # an atom in slice 0 on row 10 (y = 1.0 Å)
    phase[:, 2, 4, 20] = 2.0  # one in slice 2 on row 4 (y = 0.4 Å)
    view = side_view(phase, (0.1, 0.2), (0.0, -1.0), 1.02, slice_thickness_A=[5.0, 10.0, 5.0])
    assert view.phase.shape == (3, 30) and view.y_A == pytest.approx(1.02)
    assert np.argmax(view.phase[0]) == 5 and view.phase[0, 5] > 0
    assert not view.phase[2].any()  # the other atom is not on this line
    np.testing.assert_allclose(view.z_edges_A, [0.0, 5.0, 15.0, 20.0])
    np.testing.assert_allclose(view.x_edges_A[[0, -1]], [-1.1, -1.0 + 0.2 * 29.5])
    assert view.rms_mrad[1] == 0 and view.rms_mrad[2] > view.rms_mrad[0] > 0
    cropped = side_view(phase, (0.1, 0.2), (0.0, -1.0), 0.4, x_range_A=(2.0, 4.0))
    # five rows within ±0.25 Å of the line are averaged
    assert cropped.phase.shape == (3, 11) and cropped.phase[2].max() == pytest.approx(2.0 / 5)
    np.testing.assert_allclose(cropped.z_edges_A, [0, 1, 2, 3])  # slices: no thicknesses
    figure = side_view_figure(view, [RangeChoice("top", 0, 1)], "top", FigureSize(300, 200))
    ax, profile = figure.axes
    assert ax.get_ylim() == (20.0, 0.0) and profile.texts[0].get_text() == "top"
    with pytest.raises(InputError, match="2 slice thicknesses"):
        side_view(phase, (0.1, 0.2), (0.0, 0.0), 0.0, slice_thickness_A=[1.0, 1.0])
