"""The Atoms, Correlations and Dispersion view-models without Qt, and that the package is
Qt-free."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from caviar_napari.analysis import atoms as am
from caviar_napari.analysis import correlations as corr
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import AtomsData, write_atoms
from caviar_napari.viewmodels import atoms as avm
from caviar_napari.viewmodels import correlation_blocks as cb
from caviar_napari.viewmodels import correlations as cvm
from caviar_napari.viewmodels import dispersion as dvm
from caviar_napari.viewmodels.figures import FigureSize
from caviar_napari.viewmodels.notices import result_warnings


def _finish(gen):
    """Run a job generator to its end; return (yields, return value)."""
    yields = []
    try:
        while True:
            yields.append(next(gen))
    except StopIteration as stop:
        return yields, stop.value


def _lattice_atoms(L=3, n_states=12, seed=1) -> AtomsData:
    a = np.array([[0.0, 2.5], [2.5 * np.sqrt(3) / 2, -1.25]])
    basis = np.array([[0.0, 0.0], (2 * a[0] + a[1]) / 3])
    l1, l2 = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    cells = np.repeat(np.stack([l1.ravel(), l2.ravel()], 1), 2, axis=0)
    kappa = np.tile([0, 1], L * L)
    sites = cells @ a + basis[kappa] + [2.0, 6.0]
    u = np.random.default_rng(seed).normal(0, 0.05, (n_states, 1, len(sites), 2))
    return AtomsData(
        positions_A=sites + u,
        mean_positions_A=sites,
        cell_index=cells,
        basis_index=kappa,
        lattice_vectors_A=a,
        species=np.where(kappa == 0, "B", "N"),
    )


def test_viewmodels_import_no_qt_and_no_napari():
    code = (
        "import sys, caviar_napari.viewmodels.reconstruction, caviar_napari.viewmodels.atoms, "
        "caviar_napari.viewmodels.correlations, caviar_napari.viewmodels.dispersion\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui', 'vispy'})\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_result_warnings_from_attributes_and_mappings():
    class Result:
        warnings = ("states did not separate", "")

    assert result_warnings(None, Result(), {"warnings": ["noise floor"]}, Result()) == [
        "states did not separate",
        "noise floor",
    ]
    assert result_warnings(object(), {"other": 1}) == []


# ================================================================================ atoms
def test_lattice_request_parsing():
    request = avm.LatticeRequest.parse(
        enabled=True, vectors_text="1, 0 0 1", n_basis=0, species_text="B, N"
    )
    np.testing.assert_array_equal(request.vectors_A, [[1, 0], [0, 1]])
    assert request.n_basis is None and request.species == ("B", "N")
    with pytest.raises(InputError, match="give 4 numbers"):
        avm.LatticeRequest.parse(enabled=True, vectors_text="1 2 3", n_basis=2, species_text="")
    with pytest.raises(InputError, match="not numbers"):
        avm.LatticeRequest.parse(enabled=True, vectors_text="a b c d", n_basis=2, species_text="")


def test_refine_job_returns_atoms_and_their_drawing():
    """Gaussian atoms on a square lattice, displaced per state: the refinement finds them."""
    pixel, spacing = 0.1, 12.0
    cy, cx = np.meshgrid(
        np.arange(3) * spacing + 12.3, np.arange(3) * spacing + 11.6, indexing="ij"
    )
    mean_px = np.stack([cy.ravel(), cx.ravel()], -1)
    disp = np.random.default_rng(2).normal(0, 0.4, (2, 1, 9, 2))
    yy, xx = np.arange(48), np.arange(48)
    centres = mean_px + disp
    gy = np.exp(-((yy[:, None] - centres[..., None, :, 0]) ** 2) / (2 * 1.8**2))
    gx = np.exp(-((xx[:, None] - centres[..., None, :, 1]) ** 2) / (2 * 1.8**2))
    phase = 0.4 * np.einsum("...ya,...xa->...yx", gy, gx)
    source = avm.PhaseSource(phase, (pixel, pixel), (0.0, 0.0), "test phase")
    _, found = _finish(
        avm.detect_job(source, am.DetectionConfig(sigma_min_A=0.1, sigma_max_A=0.3), None)
    )
    assert found.shape == (9, 2)
    fractions, result = _finish(
        avm.refine_job(source, found, am.RefineConfig(), avm.LatticeRequest(species=("X",)))
    )
    assert fractions[-1] == 1.0 and all(0 <= f <= 1 for f in fractions)
    atoms = result.atoms
    assert atoms.positions_A.shape == (2, 1, 9, 2) and atoms.source == "test phase"
    truth = centres * pixel
    order = np.argmin(np.linalg.norm(atoms.mean_positions_A[:, None] - truth.mean(0)[0], axis=2), 0)
    np.testing.assert_allclose(atoms.positions_A[:, :, order], truth, atol=0.01)
    data, kwargs, kind = result.drawing.points
    assert kind == "points" and kwargs["name"] == avm.POINTS_NAME and len(data) == 9
    assert result.drawing.states[0].shape == (2 * 9, 4)
    assert result.drawing.lattice is not None and "Lattice: |a1| = 1.200 Å" in (
        result.drawing.lattice_text
    )
    assert "9 atoms" in result.summary and "18 of 18 refined" in result.summary


def test_import_atoms_file_drops_atoms_without_a_mean_position(tmp_path):
    atoms = _lattice_atoms()
    atoms.mean_positions_A[4] = np.nan
    write_atoms(tmp_path / "a.h5", atoms)
    (result,) = avm.import_atoms_file(tmp_path / "a.h5").values()
    assert result.atoms.n_atoms == 17 and "(1 without a mean position left out)" in result.summary
    vm = avm.AtomsViewModel()
    with pytest.raises(InputError, match="Refine first"):
        vm.export_atoms(tmp_path / "b.h5")
    vm.accept(result)
    vm.export_atoms(tmp_path / "b.h5")
    with pytest.raises(InputError, match="'atoms' layer is empty"):
        vm.export_csv(tmp_path / "c.csv", np.empty((0, 2)), None)


# ================================================================================ correlations
def test_blocks_of_pairs_average_over_identical_cell_pairs():
    atoms = _lattice_atoms(L=4)
    green = corr.green_tensor(atoms.positions_A).green_A2
    pos, cells, basis = atoms.mean_positions_A, atoms.cell_index, atoms.basis_index
    pairs = np.array([[0, 1], [2, 3], [0, 2]])
    per_pair, none = cb.blocks_of_pairs(green, pairs, pos)
    np.testing.assert_array_equal(per_pair, corr.pair_blocks(green, pairs))
    assert none is None
    small = cb.cell_averages(green, cells, basis, pos, 2.0)
    blocks, used = cb.blocks_of_pairs(
        green, pairs, pos, cell_index=cells, basis_index=basis, averages=small
    )
    # by brute force: all pairs with the same (Δl, κ, κ') as pair (0, 2)
    key = lambda i, j: (*(cells[j] - cells[i]), basis[i], basis[j])  # noqa: E731
    same = [(i, j) for i in range(32) for j in range(32) if key(i, j) == key(0, 2)]
    np.testing.assert_allclose(blocks[2], corr.pair_blocks(green, same).mean(0), rtol=1e-12)
    np.testing.assert_allclose(blocks[0], blocks[1], rtol=1e-12)  # same class
    assert used.max_distance_A > 2.0  # (0, 2) is farther: the averages were extended
    lo, hi = cb.averaged_pair_counts(used, cells, basis, pairs)
    assert lo == len(same) and hi == 16


def test_drawing_job_arrows_markers_rings_and_matrix():
    means = np.array([[1.0, 1.0], [1.0, 3.0], [4.0, 1.5]])
    u = np.random.default_rng(0).normal(0, 0.05, (8, 1, 3, 2))
    u[:, :, 1] += 0.5 * u[:, :, 0]
    atoms = AtomsData(positions_A=means + u, mean_positions_A=means)
    _, result = _finish(cvm.compute_job(atoms, None))
    g = result.data.green_A2
    vm = cvm.CorrelationsViewModel()
    vm.accept(result)
    vm.selection = cvm.Selection(reference=0, n_nearest=2)
    vm.options = cvm.ArrowOptions(scale_pm2_per_A=20.0)
    _, drawing = _finish(cvm.drawing_job(vm.request(FigureSize(300, 200))))
    scale = 1e4 / 20.0
    arrows = drawing.arrows
    assert arrows.data.shape == (10, 2, 2)
    np.testing.assert_allclose(arrows.data[-2:, 1], g[0:2, 4:6] * scale, rtol=1e-12)  # G_02 rows
    assert list(drawing.vectors.features["kind"][:2]) == ["self_y", "self_x"]
    np.testing.assert_array_equal(drawing.markers.atoms, [0, 1, 2])
    np.testing.assert_allclose(
        drawing.rings.features["b_factor_A2"], 8 * np.pi**2 * np.diag(g).reshape(3, 2).sum(1)
    )
    assert drawing.frame is None and "lab frame" in drawing.frame_text
    assert drawing.matrix.rgba.shape == (200, 300, 4)
    np.testing.assert_allclose(drawing.matrix.figure.axes[0].images[0].get_array(), g * 1e4)
    # local frame, no rings, no matrix
    vm.options = cvm.ArrowOptions(frame=cvm.FRAME_LOCAL, b_factor_rings=False)
    _, drawing = _finish(cvm.drawing_job(vm.request(None)))
    assert drawing.matrix is None and drawing.rings is None and drawing.frame is not None
    assert drawing.frame.data.shape == (2, 2, 2) and "local frame" in drawing.frame_text
    assert vm.nearest_atom((3.9, 1.6)) == 2
    assert cvm.scale_to_slider(cvm.slider_to_scale(37)) == 37


# ================================================================================ dispersion
def test_dispersion_config_rows_plot_and_export(tmp_path):
    from caviar_napari.analysis.phonons import HarmonicLattice

    lat = HarmonicLattice.honeycomb(masses_amu=(10.81, 14.007))
    sc = lat.supercell(4, 4)
    pos = sc.positions_A[None] + sc.sample_snapshots(300.0, 8, 4)
    atoms = AtomsData(
        positions_A=pos[:, None],
        mean_positions_A=pos.mean(axis=0),
        cell_index=sc.cell_index,
        basis_index=sc.basis_index,
        species=np.where(sc.basis_index == 0, "B", "Qx"),
        lattice_vectors_A=lat.lattice_vectors_A,
    )
    vm = dvm.DispersionViewModel()
    assert vm.mass_rows(atoms) == [("B", pytest.approx(10.81)), ("Qx", 0.0)]
    vm.masses_amu = {"B": 10.81, "Qx": 0.0}
    vm.form = dvm.DispersionForm(bootstrap=0, estimator=dvm.EST_GREEN)
    with pytest.raises(InputError, match="Qx"):
        _finish(dvm.compute_job(atoms, vm.configs(), FigureSize(320, 240)))
    vm.masses_amu["Qx"] = 14.0
    vm.form = dvm.DispersionForm(
        bootstrap=0, estimator=dvm.EST_GREEN, custom_path=True, path_text="G=0,0; K=1/3,1/3"
    )
    _, outcome = _finish(dvm.compute_job(atoms, vm.configs(), FigureSize(320, 240)))
    vm.accept(outcome)
    d = outcome.data
    assert d.path_labels == ("Γ", "K") and outcome.plot.rgba.shape == (240, 320, 4)
    assert [r[0] for r in outcome.rows] == ["● 1", "● 2", "● 3", "● 4"]
    assert outcome.rows[1][1] == f"{d.branch_average_THz[1]:.2f}"  # no bootstrap: no error
    assert outcome.constants is None and outcome.fit == "" and outcome.green is None
    assert "4 × 4 whole unit cells" in outcome.summary and "eq. 6" in outcome.summary
    assert any("choose the force-constants estimator" in w for w in outcome.warnings)
    vm.export_figure(tmp_path / "d.svg")
    assert (tmp_path / "d.svg").read_text().lstrip().startswith("<?xml")
    vm.form = dvm.DispersionForm(custom_path=True, path_text="G=0,0; K=x")
    with pytest.raises(InputError, match="LABEL=f1,f2"):
        vm.configs()
    assert dvm.basis_labels(AtomsData(positions_A=pos[:, None], mean_positions_A=pos[0])) == []


def _demo_truth_atoms(name: str) -> AtomsData:
    """The realised configurations of a demo dataset as 10 object states of one slice (what a
    perfect reconstruction of it gives)."""
    from caviar_napari.io.correlations_file import read_ground_truth

    gt = read_ground_truth(f"caviar_napari/resources/{name}.h5")
    return AtomsData(
        positions_A=gt.positions_A[:, None],
        mean_positions_A=gt.mean_positions_A,
        cell_index=gt.cell_index,
        basis_index=gt.basis_index,
        species=gt.species,
        lattice_vectors_A=gt.lattice_vectors_A,
    )


def test_arrow_significance_fades_or_hides_what_is_not_significant():
    from caviar_napari.analysis.correlation_significance import arrow_significance

    einstein = cvm.CorrelationsViewModel()
    einstein.accept(_finish(cvm.compute_job(_demo_truth_atoms("hbn-einstein")))[1])
    correlated = cvm.CorrelationsViewModel()
    correlated.accept(_finish(cvm.compute_job(_demo_truth_atoms("hbn-correlated")))[1])
    for vm in (einstein, correlated):
        vm.selection = cvm.Selection(reference=9, n_nearest=3)
    # per pair, the exact test of each arrow (rows of R G_ij), local frame included
    for frame in (cvm.FRAME_LAB, cvm.FRAME_LOCAL):
        einstein.options = cvm.ArrowOptions(frame=frame, self_atoms=cvm.SELF_SELECTED)
        arrows = einstein.arrows()
        ref = arrows.kind >= 2
        result = einstein.result
        rotation = cvm.frame_rotation(result.positions_A, einstein.selection, einstein.options)
        pairs = np.c_[np.full(3, 9), einstein.neighbour_atoms()]
        expected = arrow_significance(result.data.green_A2, pairs, 9, rotation).ravel()
        np.testing.assert_allclose(arrows.sigma[ref], expected, rtol=1e-12)
        assert np.all(np.isinf(arrows.sigma[~ref]))  # self arrows: variances
    # unit-cell averages: Einstein (independent atoms) none significant, correlated most
    sigmas = {}
    for name, vm in (("einstein", einstein), ("correlated", correlated)):
        vm.options = cvm.ArrowOptions(averaged=True, self_atoms=cvm.SELF_NONE)
        _, drawing = _finish(cvm.drawing_job(vm.request(None)))
        sigmas[name] = drawing.vectors.features["sigma"]
        colours = drawing.vectors.colours
        below = sigmas[name] < 2.0
        assert np.all(colours[~below, 3] == 1.0)
        assert np.all((colours[below, 3] >= cvm.FADE_MIN) & (colours[below, 3] <= cvm.FADE_MAX))
        assert f"significant at 2σ: {int((~below).sum())} of 6" in drawing.significance_text
    assert np.all(sigmas["einstein"] < 2.0) and np.mean(sigmas["correlated"] >= 2.0) >= 0.5
    # hide: the arrows below the threshold are not drawn; show all: all opaque
    correlated.options = cvm.ArrowOptions(averaged=True, significance=cvm.SIG_HIDE)
    _, hidden = _finish(cvm.drawing_job(correlated.request(None)))
    assert np.all(hidden.vectors.features["sigma"] >= 2.0)
    assert len(hidden.vectors.data) == 128 + int((sigmas["correlated"] >= 2.0).sum())
    correlated.options = cvm.ArrowOptions(averaged=True, significance=cvm.SIG_ALL)
    _, shown = _finish(cvm.drawing_job(correlated.request(None)))
    assert len(shown.vectors.data) == 128 + 6 and np.all(shown.vectors.colours[:, 3] == 1.0)
    # the threshold: at 0 σ every tested arrow is significant
    correlated.options = cvm.ArrowOptions(averaged=True, threshold_sigma=0.0)
    assert np.all(
        cvm.significance_alpha(cvm.arrow_sigma(correlated.arrows()), correlated.options) == 1
    )


def test_analysis_options_offset_errors_and_warnings():
    atoms = _demo_truth_atoms("hbn-correlated")
    _, plain = _finish(cvm.compute_job(atoms))
    _, sub = _finish(
        cvm.compute_job(atoms, cvm.AnalysisOptions(subtract_offset=True, errors="bootstrap"))
    )
    c_y, c_x = plain.data.offset.offset_A2
    assert sub.data.offset.subtracted and not plain.data.offset.subtracted
    diff = plain.data.green_A2 - sub.data.green_A2
    np.testing.assert_allclose(diff[0::2, 0::2], c_y, atol=1e-15)  # every y–y entry
    np.testing.assert_allclose(diff[1::2, 1::2], c_x, atol=1e-15)
    np.testing.assert_allclose(diff[0::2, 1::2], 0.0, atol=1e-15)
    assert (
        sub.data.uncertainty.method == "bootstrap" and plain.data.uncertainty.method == "jackknife"
    )
    text = cvm.summary_text(plain)
    assert "uniform offset (c_y, c_x): (-0.11, -0.14) ± (0.01, 0.02) pm²" in text
    assert "ρ_nn: +0.427 ± 0.052" in text and "&lt;u_y²&gt;" in text  # escaped for rich text
    assert "subtracted from the tensor" in cvm.summary_text(sub)
    assert plain.warnings == ()
    # a known noise floor near the displacements, too few states, displacements below any
    # vibration: each is a warning for the banner
    _, floor = _finish(cvm.compute_job(atoms, cvm.AnalysisOptions(noise_floor_A=0.027)))
    assert any("at the noise floor" in w for w in floor.warnings)
    few = AtomsData(
        positions_A=atoms.mean_positions_A
        + 1e-4 * (atoms.positions_A[:4] - atoms.mean_positions_A),
        mean_positions_A=atoms.mean_positions_A,
        species=atoms.species,
    )
    _, tiny = _finish(cvm.compute_job(few))
    assert any("cannot be tested" in w for w in tiny.warnings)
    assert any("below any vibration" in w for w in tiny.warnings)
    with pytest.raises(InputError, match="errors must be one of"):
        cvm.AnalysisOptions(errors="none").config()


def test_a_rigid_shift_of_each_state_is_warned_about():
    # uncorrelated (Einstein) vibrations, each state shifted rigidly as displaced-atom states
    # may be: every pair gets the same y–y / x–x term, which the banner names; the whole
    # periodic crystal's own small negative offset (zero net translation) is not warned about
    atoms = _demo_truth_atoms("hbn-einstein")
    _, plain = _finish(cvm.compute_job(atoms))
    assert not any("uniform offset" in w for w in plain.warnings)
    n = atoms.positions_A.shape[0]  # shifts of ±2 pm: 4 pm² in every pair, of about 10 pm²
    shifts = 0.02 * (-1.0) ** np.arange(n)[:, None, None, None] * np.ones((n, 1, 1, 2))
    shifted = dataclasses.replace(atoms, positions_A=atoms.positions_A + shifts)
    _, job = _finish(cvm.compute_job(shifted))
    (warning,) = [w for w in job.warnings if "uniform offset" in w]
    assert "'subtract the uniform offset' ticked" in warning and "--" not in warning
    _, sub = _finish(cvm.compute_job(shifted, cvm.AnalysisOptions(subtract_offset=True)))
    assert not any("uniform offset" in w for w in sub.warnings)


def test_comparison_job_gives_lsm_csm_with_errors(tmp_path):
    import h5py

    atoms = _demo_truth_atoms("hbn-einstein")
    vm = cvm.CorrelationsViewModel()
    vm.accept(_finish(cvm.compute_job(atoms))[1])
    vm.truth = _finish(cvm.truth_job("caviar_napari/resources/hbn-einstein.h5"))[1]
    comparison = _finish(cvm.comparison_job(vm.comparison_request(False, "all NN")))[1]
    assert vm.accept_comparison(comparison).count("± 0.0000") >= 3  # the truth itself: exact
    assert vm.metrics.csm.value == pytest.approx(1.0) and vm.metrics.pairing == "paired"
    assert vm.metrics.n_pairs == 64 + 84  # self blocks and nearest-neighbour pairs
    static = tmp_path / "static.h5"
    with h5py.File(static, "w") as f:
        g = f.create_group("ground_truth")
        g["positions_A"] = np.repeat(atoms.mean_positions_A[None], 2, axis=0)
        g["mean_positions_A"] = atoms.mean_positions_A
        g["green_realised_A2"] = np.zeros((128, 128))
    vm.truth = _finish(cvm.truth_job(str(static)))[1]
    text = vm.accept_comparison(_finish(cvm.comparison_job(vm.comparison_request(True, "x")))[1])
    assert vm.metrics is None and "LSM/CSM undefined" in text


def test_dispersion_estimators_force_constants_first_and_cells():
    vm = dvm.DispersionViewModel()
    vm.form = dvm.DispersionForm(
        estimator=dvm.EST_BOTH, shells=3, boundary="open", crystal_cells="6 x 6"
    )
    fc, green = vm.configs()
    assert (fc.estimator, green.estimator) == ("force-constants", "green")
    assert fc.shells == 3 and fc.boundary == "open" and fc.crystal_cells == (6, 6)
    assert dvm.DispersionViewModel().configs()[0].estimator == "force-constants"  # default
    assert dvm.parse_cells("") is None and dvm.parse_cells("4, 5") == (4, 5)
    for bad in ("4", "4, 0", "a, b", "1,2,3"):
        with pytest.raises(InputError, match="crystal cells"):
            dvm.parse_cells(bad)
    vm.form = dvm.DispersionForm(estimator="eq6")
    with pytest.raises(InputError, match="estimator must be one of"):
        vm.configs()
