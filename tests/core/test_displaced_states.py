"""Object states as displaced atoms (``state_model: displacements``): sites and cells, the
states map and its exact gradients (finite differences in float64), the least-squares round
trip, and a reconstruction that recovers known displacements."""

from __future__ import annotations

import numpy as np
import pytest
from test_engine import ALPHA, DEFOCUS, DK, E_EV, NONE, STEP, K, _collect
from test_positions import DOUBLE, _fd, grid_model

from caviar_napari.core import optics
from caviar_napari.core.displaced_states import (
    DisplacedStates,
    cells_from_sites,
    find_cells,
    project_displacements,
)
from caviar_napari.core.engine import RunControl, initial_state, plan_geometry, run, run_to_end
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.core.objective import Objective
from caviar_napari.data.beam import wavelength_A
from caviar_napari.data.config import ReconstructionConfig, StageConfig
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io.reconstruction import (
    checkpoint_writer,
    load_reconstruction,
    save_reconstruction,
)

SPACING_A, WIDTH_A, PEAK_RAD = 2.0, 0.4, 0.5


def _grid(scan=(6, 6)):
    dummy = STEMDataset(np.ones((*scan, K, K), np.float32), E_EV, ALPHA, STEP, DK, DEFOCUS)
    return plan_geometry(dummy, ReconstructionConfig(**NONE).validate())


def _lattice(grid):
    """Sites ``(n, 2)`` Å of a square lattice over the scanned field, and the pixel grid."""
    d, (h, w) = np.asarray(grid.pixel_size_A), grid.object_shape
    origin = np.asarray(grid.object_origin_A)
    lo = grid.positions_A.min(axis=0) + 0.3
    hi = grid.positions_A.max(axis=0) - 0.3
    ys, xs = np.arange(lo[0], hi[0], SPACING_A), np.arange(lo[1], hi[1], SPACING_A)
    sites = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    yy = origin[0] + np.arange(h)[:, None] * d[0]
    xx = origin[1] + np.arange(w)[None, :] * d[1]
    return sites, yy, xx


def _atoms(sites, yy, xx, shifts=None):
    """``(H, W)`` transmission of Gaussian atoms at ``sites + shifts``."""
    pos = sites if shifts is None else sites + shifts
    r2 = (yy[None] - pos[:, 0, None, None]) ** 2 + (xx[None] - pos[:, 1, None, None]) ** 2
    return np.exp(1j * PEAK_RAD * np.exp(-r2 / (2 * WIDTH_A**2)).sum(axis=0))


def _region(grid):
    lo = np.floor(grid.positions_px.min(axis=0)).astype(int)
    hi = np.ceil(grid.positions_px.max(axis=0)).astype(int) + 1
    return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))


def test_sites_are_the_atoms_of_the_scanned_field_and_a_vacuum_slice_has_none():
    grid = _grid()
    sites, yy, xx = _lattice(grid)
    obj = np.stack([_atoms(sites, yy, xx), np.ones_like(yy * xx, dtype=complex)])
    cells = find_cells(obj, grid.pixel_size_A, grid.object_origin_A, _region(grid))
    assert cells.n_sites == len(sites)
    assert np.all(cells.sites[:, 0] == 0)  # none in the empty slice
    found = cells.sites[:, 1:]
    dist = np.linalg.norm(found[:, None] - sites[None], axis=-1).min(axis=1)
    assert dist.max() < np.max(grid.pixel_size_A)  # to the pixel
    assert np.all(cells.labels[1] == -1)
    # a strong feature outside the scanned field (unconstrained noise there) changes nothing
    rows, cols = _region(grid)
    d_px = np.asarray(grid.pixel_size_A)
    noisy = obj.copy()
    noisy[0, max(rows.start - 2, 0), max(cols.start - 2, 0)] *= np.exp(5j)
    again = find_cells(noisy, grid.pixel_size_A, grid.object_origin_A, _region(grid))
    np.testing.assert_array_equal(again.sites, cells.sites)
    # an atom on the field's last pixel row and column is a site (rounding in Å aside)
    last_A = np.asarray(grid.object_origin_A) + (np.array([rows.stop, cols.stop]) - 1) * d_px
    edge = last_A[None]
    beside = obj.copy()
    beside[0] *= _atoms(edge, yy, xx)
    more = find_cells(beside, grid.pixel_size_A, grid.object_origin_A, _region(grid))
    assert more.n_sites == len(sites) + 1
    assert np.linalg.norm(more.sites[:, 1:] - edge, axis=1).min() < np.max(grid.pixel_size_A)
    # each site's cell holds the pixels nearest to it, within 0.6 d_nn
    d = np.asarray(grid.pixel_size_A)
    for a in (0, cells.n_sites // 2):
        iy, ix = np.nonzero(cells.labels[0] == a)
        pos = np.asarray(grid.object_origin_A) + np.stack([iy, ix], axis=1) * d
        assert np.linalg.norm(pos - cells.sites[a, 1:], axis=1).max() <= 0.6 * SPACING_A + 1e-9


def test_states_map_gradients_match_finite_differences():
    grid = _grid(scan=(6, 6))
    sites, yy, xx = _lattice(grid)
    assert len(sites) >= 4
    rng = np.random.default_rng(0)
    mean = np.stack([_atoms(sites, yy, xx), _atoms(sites[::2], yy, xx)])[None]  # 2 slices
    three = np.concatenate([np.zeros((len(sites), 1)), sites], axis=1)
    cells = cells_from_sites(three, mean.shape[1:], grid.pixel_size_A, grid.object_origin_A)
    model = DisplacedStates(DOUBLE, cells, grid.pixel_size_A, remove_shifts=True)
    stage = StageConfig(
        name="s", iterations=1, object_states=3, slices=2, slice_thickness_A=1.0,
        state_model="displacements", l1_absorption=1e-3, refine=("object",),
    ).validate()  # fmt: skip
    probe = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=DEFOCUS) * 90.0
    measured = grid_model(grid, slice_thickness_A=(1.0, 1.0)).intensities(
        _mean_noise(mean, rng), probe[None], (0.0, 0.0)
    )
    fm = MultisliceModel(
        DOUBLE,
        wavelength_A=wavelength_A(E_EV),
        pixel_size_A=grid.pixel_size_A,
        slice_thickness_A=[1.0, 1.0],
        positions_px=grid.positions_px,
        object_shape=grid.object_shape,
        window=(K, K),
        amplitudes=np.sqrt(np.asarray(measured)),
        object_band_limit=False,  # as the engine makes it for a displacements stage
    )
    fixed = {"probe": probe[None], "tilt": np.zeros(2)}
    fun = Objective(fm, DOUBLE, stage, fixed, 1e3, grid.pixel_size_A, displaced=model)
    u = project_displacements(np, 0.05 * rng.standard_normal((3, len(sites), 2)), True)
    band = optics.band_limit_mask(mean.shape[-2:], grid.pixel_size_A, optics.BAND_LIMIT)
    x = {"object": np.fft.ifft2(np.fft.fft2(mean) * band), "displacements": u}
    f, g = fun(x)
    # displacements: along a direction inside the gauge
    e = project_displacements(np, rng.standard_normal(u.shape), True)
    fd = _fd(lambda v: fun({**x, "displacements": v})[0], u, e, 1e-5)
    assert np.sum(g["displacements"] * e) == pytest.approx(fd, rel=1e-6)
    assert np.abs(g["displacements"].sum(axis=0)).max() <= 1e-12 * np.abs(g["displacements"]).max()
    # mean object: along a band-limited complex direction (real gradient = 2 Re <g, e>)
    e = np.fft.ifft2(
        np.fft.fft2(rng.standard_normal(mean.shape) + 1j * rng.standard_normal(mean.shape)) * band
    )
    fd = _fd(lambda v: fun({**x, "object": v})[0], x["object"], e, 1e-6)
    assert 2 * np.sum((g["object"].conj() * e).real) == pytest.approx(fd, rel=1e-6)


def _mean_noise(mean, rng):
    """Three states of measured-looking data: the mean with small random phase changes."""
    return mean * np.exp(0.03j * rng.standard_normal((3, *mean.shape[1:])))


def test_least_squares_displacements_round_trip():
    grid = _grid()
    sites, yy, xx = _lattice(grid)
    mean = _atoms(sites, yy, xx)[None, None]
    three = np.concatenate([np.zeros((len(sites), 1)), sites], axis=1)
    cells = cells_from_sites(three, mean.shape[1:], grid.pixel_size_A, grid.object_origin_A)
    model = DisplacedStates(DOUBLE, cells, grid.pixel_size_A, remove_shifts=False)
    rng = np.random.default_rng(1)
    u = project_displacements(np, 0.03 * rng.standard_normal((4, len(sites), 2)), False)
    got_mean, got = model.fit(model.states(mean, u))
    np.testing.assert_allclose(got, u, atol=1e-10)
    np.testing.assert_allclose(got_mean, mean, atol=1e-12)


def test_the_state_model_is_validated():
    with pytest.raises(InputError, match="'refine' must include 'object'"):
        StageConfig(
            name="s", object_states=2, state_model="displacements", refine=("probe",)
        ).validate()
    with pytest.raises(InputError, match="state_model"):
        StageConfig(name="s", object_states=2, state_model="atoms").validate()
    # one state is the mean object itself: nothing to displace, the stage runs as a free one
    assert StageConfig(name="s", state_model="displacements").validate().object_states == 1


def test_without_atoms_the_states_are_free_and_the_run_says_so():
    """A displacements stage whose mean object has no atom (here: vacuum, the object never
    refined) runs with free states and records why, as a warning of the run."""
    data, _, _ = _thermal_dataset()
    stages = [
        StageConfig(name="probe", iterations=2, refine=("probe",)),
        StageConfig(
            name="states", iterations=2, object_states=3, state_model="displacements",
            stop_patience=0,
        ),
    ]  # fmt: skip
    config = ReconstructionConfig(stages=stages, holdout_fraction=0.0, **NONE).validate()
    state = run_to_end(data, config)
    assert state.state_sites is None and state.state_displacements is None
    assert state.object.shape[0] == 3 and np.ptp(np.angle(state.object), axis=0).max() > 0
    (warning,) = [w for w in state.diagnostics["warnings"] if "no atom" in w]
    assert "stage 'states'" in warning and "free objects" in warning


def _thermal_dataset(n_configs=4, rms_A=0.08, seed=3):
    """Incoherent average of ``n_configs`` states of the lattice made by the displaced-states
    map itself (the model is exact), with independent Gaussian displacements of its sites;
    returns (dataset, sites, true displacements (N, A, 2))."""
    grid = _grid(scan=(8, 8))
    sites, yy, xx = _lattice(grid)
    three = np.concatenate([np.zeros((len(sites), 1)), sites], axis=1)
    mean = _atoms(sites, yy, xx)[None, None]
    cells = cells_from_sites(three, mean.shape[1:], grid.pixel_size_A, grid.object_origin_A)
    model = DisplacedStates(DOUBLE, cells, grid.pixel_size_A, remove_shifts=True)
    rng = np.random.default_rng(seed)
    u = project_displacements(np, rms_A * rng.standard_normal((n_configs, len(sites), 2)), True)
    objects = model.states(mean, u)
    probe = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=DEFOCUS)
    fm = grid_model(grid)
    inten = np.mean(
        [np.asarray(fm.intensities(o[None], probe[None], (0.0, 0.0))) for o in objects], axis=0
    )
    inten = np.fft.fftshift(inten, axes=(-2, -1)).reshape(8, 8, K, K) * 1e4
    data = STEMDataset(inten.astype(np.float32), E_EV, ALPHA, STEP, DK, DEFOCUS, source="t.h5")
    return data, sites, u


def _covariance(u):
    """``(2A, 2A)`` covariance of per-site displacements over states (rigid shifts removed)."""
    d = project_displacements(np, np.asarray(u), True).reshape(u.shape[0], -1)
    return d.T @ d / u.shape[0]


def test_reconstruction_recovers_the_displacement_covariance(tmp_path):
    """From the mean object (the stage a first stage would hand over) and the optics' probe, a
    displacements stage finds the sites and recovers the realised displacement covariance."""
    data, sites, truth = _thermal_dataset()
    config = ReconstructionConfig(
        stages=[
            StageConfig(
                name="states", iterations=60, object_states=4, refine=("object", "probe"),
                state_model="displacements", stop_patience=0,
            ),
        ],
        precision="double", holdout_fraction=0.0, **NONE,
    ).validate()  # fmt: skip
    geom = plan_geometry(data, config)
    start = initial_state(data, config, geom, np.complex128)
    _, yy, xx = _lattice(geom)
    start.object = _atoms(sites, yy, xx)[None, None]
    state = run_to_end(data, config, state=start)
    assert state.loss[-1] < 0.01 * state.loss[0]
    found = state.state_sites[:, 1:]
    dist = np.linalg.norm(found[:, None] - sites[None], axis=-1)
    match = dist.argmin(axis=1)
    # sites are found to the pixel (they only define the cells), each atom once
    assert dist.min(axis=1).max() < np.max(state.pixel_size_A)
    assert len(set(match)) == len(match) == len(sites)
    rec = _covariance(state.state_displacements)
    true = _covariance(truth[:, match])
    assert np.corrcoef(rec.ravel(), true.ravel())[0, 1] > 0.98
    assert np.sqrt(np.trace(rec) / np.trace(true)) == pytest.approx(1.0, abs=0.05)
    # the states are the map of the sites and displacements, mean = the stage's mean object
    assert state.object.shape[0] == 4
    # written and read back with their sites and displacements
    path = tmp_path / "recon.h5"
    save_reconstruction(path, state, source="t.h5")
    back = load_reconstruction(path)
    np.testing.assert_array_equal(back.state_sites, state.state_sites)
    np.testing.assert_array_equal(back.state_displacements, state.state_displacements)


def test_a_checkpointed_displacements_stage_resumes_exactly(tmp_path):
    """Stopped inside a displacements stage and resumed from its checkpoint (sites and
    displacements read back), the run ends as the uninterrupted one, bit for bit."""
    data, _, _ = _thermal_dataset()
    ckpt = tmp_path / "ck.h5"
    stages = [
        StageConfig(name="mean", iterations=4),
        StageConfig(
            name="states", iterations=6, object_states=3, state_model="displacements",
            stop_patience=0,
        ),
    ]  # fmt: skip
    cfg = ReconstructionConfig(
        stages=stages, precision="double", holdout_fraction=0.0, checkpoint_every=2,
        checkpoint_path=str(ckpt), **NONE,
    ).validate()  # fmt: skip
    ref = run_to_end(data, cfg, on_checkpoint=lambda st: None)
    assert ref.state_sites is not None and ref.state_sites.shape[0] > 0
    control = RunControl()
    _collect(run(data, cfg, control=control, on_checkpoint=checkpoint_writer(ckpt)), 7, control)
    state = load_reconstruction(ckpt)
    assert state.stage_index == 1 and 0 < state.stage_iteration < 6
    np.testing.assert_array_equal(state.state_sites, ref.state_sites)
    resumed = run_to_end(data, cfg, state=state, on_checkpoint=lambda st: None)
    assert resumed.loss == ref.loss
    np.testing.assert_array_equal(resumed.state_displacements, ref.state_displacements)
    np.testing.assert_array_equal(resumed.object, ref.object)


def test_a_column_seen_in_several_slices_has_a_cell_in_each():
    """d_nn is taken within each slice: the same column in two slices is not a neighbour."""
    sites = np.array([[0, 1.0, 1.0], [0, 1.0, 3.0], [1, 1.0, 1.0], [1, 1.0, 3.0]])
    cells = cells_from_sites(sites, (2, 40, 40), (0.1, 0.1), (0.0, 0.0))
    counts = [[int((cells.labels[s] == a).sum()) for a in range(4)] for s in range(2)]
    assert min(counts[0][:2] + counts[1][2:]) > 300  # radius 0.6 × 2 Å: ~ π 1.2² / 0.01 / 2
    assert counts[0][2:] == [0, 0] and counts[1][:2] == [0, 0]


def test_an_atom_on_the_fields_last_pixel_is_a_site():
    """A peak on the scanned field's last pixel column is inside the field, whatever the
    rounding of its position in Å (this grid is a real reconstruction's, where it was lost)."""
    pixel, origin = (0.10842638055381171, 0.10433333333333335), (-9.107815966520183, -5.4253333)
    region = (slice(84, 155), slice(52, 125))
    yy = origin[0] + np.arange(240)[:, None] * pixel[0]
    xx = origin[1] + np.arange(176)[None, :] * pixel[1]
    rows_A = origin[0] + np.array([95, 120, 145]) * pixel[0]
    last_col_A = origin[1] + (region[1].stop - 1) * pixel[1]
    sites = np.array([[y, x] for y in rows_A for x in (origin[1] + 80 * pixel[1], last_col_A)])
    cells = find_cells(_atoms(sites, yy, xx)[None], pixel, origin, region)
    assert cells.n_sites == len(sites)
    assert np.abs(np.sort(cells.sites[:, 2]) - np.sort(sites[:, 1])).max() < 1e-9
