"""Distributed evaluation on a Dask LocalCluster of 2 processes: the same loss and gradients as
one process, the same reconstruction, workers reading their own shards, a dying worker."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from test_memory import _dataset  # the forward-model dataset of the memory tests

from caviar_napari.core.backend import get_backend
from caviar_napari.core.distributed import DistributedEvaluator, shard_indices
from caviar_napari.core.engine import run, run_to_end
from caviar_napari.core.geometry import masked_total, plan_geometry
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.core.patterns import PatternFeed
from caviar_napari.data.config import ReconstructionConfig, StageConfig
from caviar_napari.errors import WorkerError
from caviar_napari.io.dataset import read_stem_h5, write_stem_h5

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_shards_are_contiguous_and_cover_the_scan():
    parts = shard_indices(10, 3)
    np.testing.assert_array_equal(np.concatenate(parts), np.arange(10))
    assert [p.size for p in parts] == [4, 3, 3]
    assert len(shard_indices(2, 4)) == 2  # never an empty shard


@pytest.mark.parametrize("lazy", [False, True])
def test_float64_loss_and_gradients_equal_one_process(client, tmp_path, lazy):
    data = _dataset(scan=(6, 5), k=24)
    if lazy:  # workers read their own patterns from the file
        write_stem_h5(tmp_path / "d.h5", data)
        data = read_stem_h5(tmp_path / "d.h5", lazy=True)
    cfg = ReconstructionConfig(
        detector_padding="28x28", device="cpu", precision="double", cluster="local:2"
    ).validate()
    geom = plan_geometry(data, cfg)
    be = get_backend("cpu", "double")
    kw = dict(
        wavelength_A=data.wavelength_A,
        pixel_size_A=geom.pixel_size_A,
        slice_thickness_A=[2.0, 3.0],
        positions_px=geom.positions_px,
        object_shape=geom.object_shape,
        detector_mask=geom.detector_mask,
        loss_eps=1e-9,
    )
    feed = PatternFeed(be, data.intensities, geom.window, geom.pad_offset)
    single = MultisliceModel(be, patterns=feed, **kw)
    evaluator = DistributedEvaluator(cfg, data, geom, client=client)
    assert evaluator.n_workers == 2
    spread = evaluator.model(window=geom.window, **kw)
    rng = np.random.default_rng(0)
    obj = np.exp(0.2j * rng.standard_normal((2, 2, *geom.object_shape)))
    probe = (rng.standard_normal((2, 28, 28)) + 1j * rng.standard_normal((2, 28, 28))) * 3
    tilt = (0.7, -0.4)
    f1, g1 = single.loss_and_gradient(obj, probe, tilt)
    f2, g2 = spread.loss_and_gradient(obj, probe, tilt)
    assert f2 == pytest.approx(f1, rel=1e-10)
    for k in ("object", "probe", "tilt"):
        scale = np.abs(g1[k]).max()
        assert np.abs(g2[k] - g1[k]).max() <= 1e-10 * scale, k
    assert masked_total(data, geom) > 0
    assert evaluator.stats.evaluations == 1 and evaluator.stats.broadcast_bytes > obj.nbytes


def _config(**kw) -> ReconstructionConfig:
    stage = StageConfig(iterations=20, probe_modes=2, refine=("object", "probe"))
    return ReconstructionConfig(
        detector_padding="none", device="cpu", precision="single", stages=[stage], **kw
    ).validate()


def test_float32_twenty_iterations_give_the_same_object():
    data = _dataset(scan=(6, 6), k=24)
    one = run_to_end(data, _config())
    two = run_to_end(data, _config(cluster="local:2"))
    assert two.iteration == one.iteration == 20
    scale = np.abs(one.object).max()
    assert np.abs(two.object - one.object).max() <= 1e-4 * scale
    assert two.loss[-1] == pytest.approx(one.loss[-1], rel=1e-3)


def test_a_dying_worker_is_reported_state_saved_and_run_resumes_on_fewer(monkeypatch):
    data = _dataset(scan=(6, 6), k=24)
    saved = []
    gen = run(data, _config(cluster="local:2"), on_checkpoint=lambda s: saved.append(s.copy()))
    next(gen)
    next(gen)  # two iterations done
    client = distributed.default_client()
    victim = sorted(client.scheduler_info()["workers"])[1]
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while victim in client.scheduler_info()["workers"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the scheduler notices the closed connection
    with pytest.raises(WorkerError, match="died") as info:
        while True:
            next(gen)
    assert saved and saved[-1].iteration >= 2
    assert info.value.state.iteration == saved[-1].iteration
    resumed = run_to_end(data, _config(cluster="local:1"), state=saved[-1])
    assert resumed.iteration == 20 and resumed.loss[-1] < resumed.loss[0]
