"""Memory plan: placements chosen when a pool is short, unpadded data padded per batch, the
L-BFGS history off the device or at half precision, out-of-core reconstruction from HDF5."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.core import optics
from caviar_napari.core.backend import get_backend
from caviar_napari.core.engine import estimate_run_memory, run_to_end
from caviar_napari.core.geometry import measured_amplitudes, plan_geometry
from caviar_napari.core.history import PairStore
from caviar_napari.core.memory import MemoryInputs, plan_memory, stage_parts
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.core.optimise import LBFGS
from caviar_napari.core.patterns import PatternFeed
from caviar_napari.data.beam import wavelength_A
from caviar_napari.data.config import ReconstructionConfig, StageConfig
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io.dataset import read_stem_h5, write_stem_h5
from caviar_napari.workflows.reconstruct import load_for_run

E_EV, ALPHA, DK, STEP = 80e3, 25.0, 4.0, 0.8


def _dataset(scan=(5, 5), k=24, seed=0, step=STEP) -> STEMDataset:
    """Forward-model patterns of a few Gaussian atoms (exactly representable data)."""
    dummy = STEMDataset(np.ones((*scan, k, k), np.float32), E_EV, ALPHA, step, DK, 30.0)
    grid = plan_geometry(dummy, ReconstructionConfig(detector_padding="none").validate())
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: grid.object_shape[0], : grid.object_shape[1]]
    phase = np.zeros(grid.object_shape)
    for y, x in rng.uniform(grid.positions_px.min(0), grid.positions_px.max(0), size=(6, 2)):
        phase += 0.3 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0)
    probe = optics.make_probe((k, k), grid.pixel_size_A, E_EV, ALPHA, defocus_A=30.0) * 100.0
    model = MultisliceModel(
        get_backend("cpu", "double"),
        wavelength_A=wavelength_A(E_EV),
        pixel_size_A=grid.pixel_size_A,
        slice_thickness_A=[1.0],
        positions_px=grid.positions_px,
        object_shape=grid.object_shape,
        window=(k, k),
    )
    inten = np.asarray(model.intensities(np.exp(1j * phase)[None, None], probe[None]))
    inten = np.fft.fftshift(inten, axes=(-2, -1)).reshape(*scan, k, k)
    return STEMDataset(inten.astype(np.float32), E_EV, ALPHA, step, DK, 30.0, source="fm.h5")


# ---------------------------------------------------------------- data padded per batch
@pytest.mark.parametrize("placement", ["device", "host"])
def test_feed_pads_each_batch_like_the_padded_dataset(placement):
    data = _dataset(scan=(3, 4), k=24)
    cfg = ReconstructionConfig(detector_padding="40x36").validate()
    geom = plan_geometry(data, cfg)
    assert geom.window == (40, 36)
    full = measured_amplitudes(data, geom)  # the whole padded dataset, FFT order
    feed = PatternFeed(
        get_backend("cpu"), data.intensities, geom.window, geom.pad_offset, placement
    )
    sel = np.array([7, 0, 11, 3])
    np.testing.assert_array_equal(feed.batch(sel), full[sel])
    assert feed.stored_bytes == 12 * 24 * 24 * 4  # unpadded
    assert feed.total_intensity() == pytest.approx(float(data.intensities.sum()), rel=1e-6)


def test_detector_padding_by_shape_and_pixel_size():
    data = _dataset(scan=(2, 2), k=24)
    by_pixel = plan_geometry(data, ReconstructionConfig(detector_padding=0.3).validate())
    # pixel = 1 / (K dk) with dk = angular sampling / λ; K = round(1 / (0.3 dk))
    dk = DK * 1e-3 / wavelength_A(E_EV)
    assert by_pixel.window == (round(1 / (0.3 * dk)),) * 2 != (24, 24)
    assert by_pixel.pixel_size_A[0] == pytest.approx(0.3, rel=0.02)
    with pytest.raises(InputError, match="smaller than the 24×24 detector"):
        plan_geometry(data, ReconstructionConfig(detector_padding="16x16").validate())
    with pytest.raises(InputError, match="detector_padding"):
        ReconstructionConfig(detector_padding="wide").validate()


# ---------------------------------------------------------------- the plan
def _paper_like_inputs(device_gib: float, lazy=True) -> MemoryInputs:
    return MemoryInputs(
        n_patterns=128 * 128,
        detector_shape=(256, 256),
        window=(732, 732),
        object_shape=(1125, 1125),
        complex_itemsize=8,
        device="gpu",
        device_bytes=int(device_gib * (1 << 30)),
        host_bytes=256 << 30,
        lazy=lazy,
    )


def test_plan_moves_history_then_data_off_a_short_gpu():
    stages = [StageConfig(object_states=10, probe_modes=5, slices=30)]
    roomy = plan_memory(_paper_like_inputs(1000), stages)
    assert (roomy.history, roomy.data) == ("device", "device") and roomy.fits
    short = plan_memory(_paper_like_inputs(80), stages)
    assert short.history == "host" and short.fits
    assert short.host_parts["history"] == roomy.parts["history"]
    assert short.parts["history"] == roomy.parts["history"] // 10  # one pair streamed
    shorter = plan_memory(_paper_like_inputs(36), stages)
    assert shorter.data in ("host", "file") and shorter.parts["data"] == 0
    text = shorter.plan_text()
    assert "L-BFGS history: host" in text and "host  total" in text


def test_plan_data_are_unpadded_and_half_history_is_half():
    stage = StageConfig(object_states=2, slices=3, lbfgs_memory=5)
    kw = dict(
        n_patterns=100,
        window=(64, 64),
        object_shape=(90, 90),
        stage=stage,
        batch_size=4,
        detector_shape=(32, 32),
    )
    full, half = stage_parts(**kw), stage_parts(**kw, history="half")
    assert full["data"] == 100 * 32 * 32 * 4
    assert half["history"] * 2 == full["history"]


def test_cpu_cap_refuses_with_numbers_and_advice():
    data = _dataset()
    cfg = ReconstructionConfig(
        detector_padding="none", device="cpu", host_memory_MB=0.5, stages=[StageConfig()]
    ).validate()
    plan = estimate_run_memory(data, cfg)
    assert not plan.fits and plan.history == "half"  # the last resort tried
    assert "of 0.5 MiB available on the cpu" in plan.describe()


# ---------------------------------------------------------------- L-BFGS history stores
@pytest.mark.parametrize("mode", ["host", "half"])
def test_history_store_round_trip(mode):
    rng = np.random.default_rng(1)
    blocks = {
        "object": (rng.standard_normal((2, 8, 8)) + 1j * rng.standard_normal((2, 8, 8))).astype(
            np.complex64
        ),
        "tilt": rng.standard_normal(2),
    }
    store = PairStore(mode)
    back = store.load(store.stash(blocks))
    assert back["object"].dtype == np.complex64 and back["tilt"].dtype == np.float64
    tol = 0 if mode == "host" else 1e-3
    for k in blocks:
        np.testing.assert_allclose(back[k], blocks[k], atol=tol * np.abs(blocks[k]).max())


@pytest.mark.parametrize("mode", ["host", "half"])
def test_lbfgs_with_history_off_device_converges_like_on_device(mode):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    hess = a @ a.T + 6 * np.eye(6)
    target = rng.standard_normal(6).astype(np.float32)

    def fun(x):
        d = (x["v"] - target).astype(np.float64)
        return 0.5 * d @ hess @ d, {"v": (hess @ d).astype(np.float32)}

    results = {}
    for m in ("device", mode):
        opt = LBFGS(memory=5, history=m)
        x = {"v": np.zeros(6, np.float32)}
        f, g = fun(x)
        for _ in range(15):
            x, f, g, _info = opt.step(fun, x, f, g)
        results[m] = x["v"]
    np.testing.assert_allclose(results[mode], target, atol=1e-3)
    if mode == "host":
        np.testing.assert_array_equal(results[mode], results["device"])


# ---------------------------------------------------------------- out-of-core
def test_out_of_core_run_matches_in_memory(tmp_path):
    """Data 3× larger than the memory cap are read per batch from the HDF5 file and give the
    same reconstruction as the in-memory run (the issue's 300 MB / 100 MB case, scaled down
    to keep the test short: 6.6 MB of data, a 2.1 MB cap)."""
    data = _dataset(scan=(32, 32), k=40, step=0.3)  # 1024 patterns of 40² float32 = 6.6 MB
    path = tmp_path / "big.h5"
    write_stem_h5(path, data)
    stage = StageConfig(iterations=2, lbfgs_memory=2, refine=("object", "probe"))
    common = dict(
        detector_padding="none",
        device="cpu",
        batch_size=4,
        lbfgs_history="device",
        stages=[stage],
    )
    capped = ReconstructionConfig(host_memory_MB=2.1, **common).validate()
    lazy = load_for_run(path, capped)
    assert lazy.intensities.nbytes > 3 * capped.host_memory_MB * 1e6
    assert type(lazy.intensities).__name__ == "H5Intensities"
    plan = estimate_run_memory(lazy, capped)
    assert plan.fits and plan.data == "file" and plan.parts["data"] == 0
    out_of_core = run_to_end(lazy, capped)
    in_memory = run_to_end(read_stem_h5(path), ReconstructionConfig(**common).validate())
    np.testing.assert_array_equal(out_of_core.object, in_memory.object)
    np.testing.assert_array_equal(out_of_core.probe, in_memory.probe)
    assert out_of_core.loss == in_memory.loss
    assert out_of_core.loss[-1] < 0.8 * out_of_core.loss[0]


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    from caviar_napari.cli import main

    path = tmp_path / "d.h5"
    write_stem_h5(path, _dataset(scan=(4, 4), k=24))
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(path), "--out", str(out), "--dry-run", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "memory plan" in text and "L-BFGS history: device; data: device" in text
    assert "total" in text and "(fits)" in text
    assert not out.exists()


# ---------------------------------------------------------------- mini-batch epochs
def test_minibatch_epochs_then_lbfgs_reduce_the_loss_and_resume_exactly():
    from caviar_napari.core.engine import RunControl, run
    from caviar_napari.core.minibatch import epoch_batches

    batches = epoch_batches(10, 4, seed=1, stage=0, epoch=2)
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))
    assert [b.size for b in batches] == [4, 4, 2]
    data = _dataset(scan=(8, 8), k=24)
    stage = StageConfig(iterations=6, minibatch_epochs=3, minibatch_size=16)
    cfg = ReconstructionConfig(detector_padding="none", device="cpu", stages=[stage]).validate()
    ref = run_to_end(data, cfg)
    assert ref.iteration == 6 and ref.loss[-1] < 0.2 * ref.loss[0]
    # stopped inside the mini-batch epochs and resumed: the same iterates
    control = RunControl()
    gen = run(data, cfg, control=control)
    next(gen)
    next(gen)
    control.stop()
    with pytest.raises(StopIteration) as stop:
        next(gen)
    resumed = run_to_end(data, cfg, state=stop.value.value)
    np.testing.assert_array_equal(resumed.object, ref.object)
    assert resumed.loss == ref.loss


# ---------------------------------------------------------------- per-stage detector padding
def test_resampling_between_windows_is_exact_for_band_limited_content():
    from caviar_napari.core.geometry import resample_object, resample_probe

    rng = np.random.default_rng(3)
    probe = rng.standard_normal((2, 24, 24)) + 1j * rng.standard_normal((2, 24, 24))
    np.testing.assert_allclose(resample_probe(resample_probe(probe, (40, 36)), (24, 24)), probe)
    data = _dataset(scan=(3, 3), k=24)
    small = plan_geometry(data, ReconstructionConfig(detector_padding="none").validate())
    large = plan_geometry(data, ReconstructionConfig(detector_padding="36x36").validate())
    # a smooth periodic object on the small grid: its values at the large grid's pixels
    h, w = small.object_shape
    ly, lx = h * small.pixel_size_A[0], w * small.pixel_size_A[1]

    def field(y, x):
        return np.exp(0.3j * np.cos(2 * np.pi * 2 * y / ly) * np.sin(2 * np.pi * 3 * x / lx))

    def on(g):
        y = g.object_origin_A[0] + np.arange(g.object_shape[0]) * g.pixel_size_A[0]
        x = g.object_origin_A[1] + np.arange(g.object_shape[1]) * g.pixel_size_A[1]
        return field(*np.meshgrid(y - small.object_origin_A[0], x - small.object_origin_A[1],
                                  indexing="ij"))  # fmt: skip

    got = resample_object(on(small)[None, None], small, large)[0, 0]
    np.testing.assert_allclose(got, on(large), atol=1e-6)


def test_a_stage_with_more_padding_continues_on_the_finer_grid():
    data = _dataset(scan=(5, 5), k=24)
    stages = [
        StageConfig(name="coarse", iterations=3, detector_padding="none"),
        StageConfig(name="fine", iterations=3),
    ]
    cfg = ReconstructionConfig(detector_padding="32x32", device="cpu", stages=stages).validate()
    state = run_to_end(data, cfg)
    fine = plan_geometry(data, cfg)
    assert state.probe.shape[1:] == (32, 32)
    assert state.object.shape[2:] == fine.object_shape
    assert state.pixel_size_A == pytest.approx(fine.pixel_size_A)
    assert state.loss[-1] < state.loss[0]
    # a stop at the boundary and a resume give the same result
    from caviar_napari.core.engine import RunControl, run

    control = RunControl()
    gen = run(data, cfg, control=control)
    for _ in range(3):
        next(gen)
    control.stop()
    with pytest.raises(StopIteration) as stop:
        next(gen)
    resumed = run_to_end(data, cfg, state=stop.value.value)
    np.testing.assert_array_equal(resumed.object, state.object)
    assert resumed.loss == state.loss


def test_the_plan_without_a_geometry_is_the_runs_own_largest_window():
    """A stage that pads more than the configuration: the plan (``caviar reconstruct
    --dry-run``, the dock's estimate) is made for its larger window, as :func:`run` makes it."""
    data = _dataset(scan=(5, 5), k=24)
    stages = [
        StageConfig(name="coarse", iterations=1),
        StageConfig(name="fine", iterations=1, detector_padding="48x48"),
    ]
    cfg = ReconstructionConfig(detector_padding="none", device="cpu", stages=stages).validate()
    plan = estimate_run_memory(data, cfg)
    coarse = estimate_run_memory(data, cfg, geom=plan_geometry(data, cfg))
    fine = estimate_run_memory(data, cfg, geom=plan_geometry(data, cfg, padding="48x48"))
    assert plan.needed_bytes == fine.needed_bytes > coarse.needed_bytes
