"""Data-parallel evaluation of the objective on a Dask cluster (``cluster: local:N | tcp://…``).

The loss is a sum over scan positions, so it splits over processes: each Dask worker owns a
contiguous shard of the scan (raster order, so a shard's probe windows cover a compact part of
the object), reads *its own* patterns from the file (a
:class:`~caviar_napari.data.lazy.LazyIntensities` pickles as its path: no data pass through the
scheduler or the client), keeps them on its device, and returns the loss and the gradients of
the object, the probe and the tilt for its shard.  The client runs the optimiser (L-BFGS, the
regularisers, the probe model) exactly as in one process: each evaluation it broadcasts the
current object, probe modes and tilt to every worker, and the workers' results are summed as a
binary tree of ``add`` tasks on the workers (``log2 W`` rounds; only the final sum reaches the
client).

:class:`DistributedEvaluator` is created once per run by the engine (only when ``cluster`` is
set: a user without a cluster never imports Dask); :meth:`DistributedEvaluator.model` gives the
stage's :class:`DistributedModel`, which stands in for
:class:`~caviar_napari.core.multislice.MultisliceModel` in the objective.

Failures
    A worker that dies (or a lost connection) surfaces as a :class:`~caviar_napari.errors.
    WorkerError` naming the cluster; the engine then saves its last accepted state (the
    checkpoint callback) and stops, and the run resumes from that checkpoint on any number of
    workers (the shards are re-planned at every start).

Clusters
    ``local:N`` starts a ``distributed.LocalCluster`` of N single-threaded worker processes
    (closed at the end of the run); ``tcp://HOST:PORT`` connects to a running scheduler —
    ``dask-cuda``'s ``LocalCUDACluster`` (one worker per GPU) or ``dask-jobqueue``'s
    ``SLURMCluster`` (docs/distributed.md) — and leaves it running.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from caviar_napari.core.backend import get_backend
from caviar_napari.core.multislice import GRADIENT_BLOCKS, MultisliceModel
from caviar_napari.core.patterns import PatternFeed
from caviar_napari.data.lazy import LazyIntensities, read_patterns
from caviar_napari.errors import InputError, WorkerError

__all__ = [
    "DistributedEvaluator",
    "DistributedModel",
    "EvaluationStats",
    "communication_bytes",
    "shard_indices",
]

log = logging.getLogger(__name__)

#: Seconds between checks that the workers of a running evaluation are alive.
POLL_S = 1.0


def shard_indices(n_patterns: int, n_workers: int) -> list[np.ndarray]:
    """Contiguous, nearly equal runs of the flat scan indices, one per worker (none empty)."""
    parts = np.array_split(np.arange(n_patterns), max(1, min(n_workers, n_patterns)))
    return [p for p in parts if p.size]


# ---------------------------------------------------------------- worker side
@dataclass(frozen=True)
class _ShardSpec:
    """What a worker needs to hold its shard (small; pickled to the worker)."""

    device: str
    precision: str
    threads: int
    window: tuple[int, int]
    pad_offset: tuple[int, int]
    indices: np.ndarray  # flat indices into ``source`` (None-like: all of a scattered array)
    source: Any  # LazyIntensities (read by the worker) or None (``data`` is scattered)


class _Shard:
    """A worker's patterns (on its device) and the forward models built on them."""

    def __init__(self, spec: _ShardSpec, data: Any = None) -> None:
        backend = get_backend(spec.device, spec.precision)
        if backend.name == "cpu":
            backend = dataclasses.replace(backend, workers=max(1, spec.threads))
        self.backend = backend
        if spec.source is not None:
            self.feed = PatternFeed(
                backend, spec.source, spec.window, spec.pad_offset, "device", spec.indices
            )
        else:
            self.feed = PatternFeed(backend, data, spec.window, spec.pad_offset, "device")
        self.indices = spec.indices
        self._models: dict[Any, MultisliceModel] = {}

    def model(self, key: Any, kw: dict[str, Any]) -> MultisliceModel:
        if key not in self._models:
            self._models.clear()  # one stage at a time
            kw = dict(kw)
            kw["positions_px"] = np.asarray(kw["positions_px"])[self.indices]
            self._models[key] = MultisliceModel(self.backend, patterns=self.feed, **kw)
        return self._models[key]


def _build_shard(spec: _ShardSpec, data: Any = None) -> _Shard:
    return _Shard(spec, data)


def _evaluate(
    shard: _Shard, key: Any, kw: dict[str, Any], params: dict[str, Any], want: frozenset
) -> tuple[float, dict[str, np.ndarray]]:
    model = shard.model(key, kw)
    loss, grads = model.loss_and_gradient(params["object"], params["probe"], params["tilt"], want)
    be = shard.backend
    return loss, {k: np.asarray(be.to_host(v)) for k, v in grads.items()}


def _add(a: tuple[float, dict], b: tuple[float, dict]) -> tuple[float, dict]:
    return a[0] + b[0], {k: a[1][k] + b[1][k] for k in a[1]}


def _nbytes(result: tuple[float, dict]) -> int:
    return int(sum(np.asarray(v).nbytes for v in result[1].values()))


# ---------------------------------------------------------------- client side
@dataclass
class EvaluationStats:
    """Communication of a distributed run: evaluations, bytes sent and received, seconds."""

    evaluations: int = 0
    broadcast_bytes: int = 0
    gathered_bytes: int = 0
    seconds: float = 0.0


def _client(address: str) -> tuple[Any, Any]:
    """``(client, cluster)``: a new LocalCluster for ``local:N`` (cluster closed with the run),
    or a connection to a running scheduler (cluster None)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise InputError(
            "a distributed run needs dask.distributed (pip install 'caviar-napari[distributed]')"
        ) from exc
    if address.startswith("local:"):
        n = int(address.split(":", 1)[1])
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
        return Client(cluster), cluster
    try:
        return Client(address, timeout=30), None
    except OSError as exc:
        raise InputError(f"cluster {address}: no Dask scheduler answers there ({exc})") from exc


class DistributedEvaluator:
    """The shards of one run on a Dask cluster (see the module notes).

    Parameters
    ----------
    config
        The run's :class:`~caviar_napari.data.config.ReconstructionConfig` (``cluster``,
        ``device``, ``precision``).
    dataset
        The data: a lazy store is read by each worker from its file; an in-memory array is sent
        to each worker once, its shard only.
    geom
        The run's :class:`~caviar_napari.core.geometry.Geometry`.
    plan
        The memory plan (unused beyond logging; the workers keep their shards on the device).
    client
        An existing ``distributed.Client`` to use instead of ``config.cluster`` (tests).
    """

    def __init__(
        self, config: Any, dataset: Any, geom: Any, plan: Any = None, client: Any = None
    ) -> None:
        self.address = config.cluster or "client"
        self.cluster = None
        if client is None:
            client, self.cluster = _client(config.cluster)
        self.client = client
        self.backend = get_backend(config.device, config.precision)
        self.stats = EvaluationStats()
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise WorkerError(f"cluster {self.address}: no workers")
        infos = client.scheduler_info()["workers"]
        n = geom.positions_px.shape[0]
        self.shards = shard_indices(n, len(workers))
        self.workers = workers[: len(self.shards)]
        source = dataset.intensities
        futures = []
        for w, idx in zip(self.workers, self.shards):
            threads = int(infos[w].get("nthreads", 1))
            if isinstance(source, LazyIntensities):
                spec = _ShardSpec(
                    config.device, config.precision, threads, geom.window, geom.pad_offset, idx,
                    source,
                )  # fmt: skip
                fut = client.submit(_build_shard, spec, workers=[w], pure=False)
            else:
                spec = _ShardSpec(
                    config.device, config.precision, threads, geom.window, geom.pad_offset, idx,
                    None,
                )  # fmt: skip
                part = client.scatter(read_patterns(source, idx), workers=[w])
                fut = client.submit(_build_shard, spec, part, workers=[w], pure=False)
            futures.append(fut)
        self._shards = futures
        self._check(lambda: [self._result(f) for f in futures], "building the shards")
        log.info("distributed run on %s: %d workers, %s patterns each", self.address,
                 len(self.workers), [int(s.size) for s in self.shards])  # fmt: skip

    @property
    def n_workers(self) -> int:
        """Workers holding a shard."""
        return len(self.workers)

    def _check(self, fn: Any, what: str) -> Any:
        try:
            return fn()
        except (InputError, WorkerError):
            raise
        except Exception as exc:  # dask raises many types for a lost worker or connection
            self._raise_if_dead()
            raise WorkerError(
                f"cluster {self.address}: a worker failed while {what} "
                f"({type(exc).__name__}: {exc}); the run stops with its last state saved"
            ) from exc

    def _result(self, future: Any) -> Any:
        """``future.result()``, checking every second that the shards' workers are alive (a
        task bound to a dead worker would otherwise wait for it forever)."""
        from distributed import wait

        while True:
            try:
                wait([future], timeout=POLL_S)
                return future.result()
            except TimeoutError:
                self._raise_if_dead()

    def _raise_if_dead(self) -> None:
        """A :class:`WorkerError` naming the first shard worker no longer in the cluster."""
        try:
            alive = set(self.client.scheduler_info()["workers"])
        except Exception:  # the scheduler itself is gone
            alive = set()
        gone = [w for w in self.workers if w not in alive]
        if gone:
            raise WorkerError(
                f"cluster {self.address}: worker {gone[0]} died (it held scan positions "
                f"{self._shard_range(gone[0])}); the run stops with its last state saved and "
                "can resume on the workers left"
            ) from None

    def _shard_range(self, worker: str) -> str:
        idx = self.shards[self.workers.index(worker)]
        return f"{int(idx[0])}–{int(idx[-1])}"

    def model(self, **kw: Any) -> DistributedModel:
        """The forward model of a stage, evaluated on the shards (``MultisliceModel``'s
        keyword arguments without the backend and the data)."""
        return DistributedModel(self, kw)

    def evaluate(
        self, key: Any, kw: dict[str, Any], params: dict[str, Any], want: frozenset
    ) -> tuple[float, dict[str, Any]]:
        """Sum over the shards of the loss and gradients (a tree of adds on the workers)."""
        t0 = time.perf_counter()
        client = self.client
        host = {k: np.asarray(self.backend.to_host(v)) for k, v in params.items()}
        self.stats.broadcast_bytes += sum(v.nbytes for v in host.values()) * self.n_workers

        def run() -> tuple[float, dict]:
            self._raise_if_dead()
            # the parameters go from the client straight to each worker (not via the scheduler)
            size = sum(v.nbytes for v in host.values())
            limit = max(60.0, size / 50e6)  # bounded: a scatter to a dead worker fails
            shared = [
                client.scatter([host], workers=[w], direct=True, hash=False, timeout=limit)[0]
                for w in self.workers
            ]
            parts = [
                client.submit(_evaluate, shard, key, kw, p, want, workers=[w], pure=False)
                for shard, p, w in zip(self._shards, shared, self.workers)
            ]
            keep = list(parts)  # every future stays referenced until the sum arrives
            while len(parts) > 1:  # binary tree of sums, on the workers
                nxt = [
                    client.submit(_add, parts[i], parts[i + 1], pure=False)
                    for i in range(0, len(parts) - 1, 2)
                ]
                if len(parts) % 2:
                    nxt.append(parts[-1])
                keep.extend(nxt)
                parts = nxt
            result = self._result(parts[0])
            del keep, shared
            return result

        loss, grads = self._check(run, "evaluating the loss and gradient")
        self.stats.evaluations += 1
        self.stats.gathered_bytes += _nbytes((loss, grads))
        self.stats.seconds += time.perf_counter() - t0
        xp, be = self.backend.xp, self.backend
        out = {}
        for k, v in grads.items():
            dtype = be.real_dtype if k == "tilt" else be.complex_dtype
            out[k] = xp.asarray(v, dtype=dtype)
        return float(loss), out

    def close(self) -> None:
        """Close the client, and the cluster when this evaluator started it."""
        try:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        except Exception:
            log.debug("closing the cluster failed", exc_info=True)


class DistributedModel:
    """A stage's forward model spread over the shards of a :class:`DistributedEvaluator`.

    It offers what the objective uses of :class:`MultisliceModel`: ``window``,
    ``object_shape``, ``n_slices`` and :meth:`loss_and_gradient` (all patterns).
    """

    def __init__(self, evaluator: DistributedEvaluator, kw: dict[str, Any]) -> None:
        self.evaluator = evaluator
        self.kw = dict(kw)
        self.kw.setdefault("window", None)
        self.window = tuple(int(v) for v in kw["window"]) if kw.get("window") else None
        if self.window is None:
            raise InputError("a distributed model needs the probe window")
        self.object_shape = tuple(int(v) for v in kw["object_shape"])
        self.n_patterns = int(np.asarray(kw["positions_px"]).shape[0])
        self._key = (tuple(np.asarray(kw["slice_thickness_A"], dtype=float).ravel()), id(self))

    @property
    def n_slices(self) -> int:
        """Number of slices S."""
        return int(np.asarray(self.kw["slice_thickness_A"]).size)

    def loss_and_gradient(
        self,
        obj: Any,
        probe: Any,
        tilt_mrad: Any = (0.0, 0.0),
        want: frozenset[str] | set[str] = GRADIENT_BLOCKS,
        indices: Any = None,
    ) -> tuple[float, dict[str, Any]]:
        """Loss and gradients summed over every shard (see ``MultisliceModel``)."""
        if indices is not None:
            raise InputError("a distributed model evaluates all patterns (indices=None)")
        want = frozenset(want)
        xp = self.evaluator.backend.xp
        params = {"object": obj, "probe": probe, "tilt": xp.asarray(tilt_mrad, dtype=np.float64)}
        return self.evaluator.evaluate(self._key, self.kw, params, want)

    def loss(self, obj: Any, probe: Any, tilt_mrad: Any = (0.0, 0.0), indices: Any = None) -> float:
        """The loss alone (over every pattern: ``indices`` must be None)."""
        return self.loss_and_gradient(obj, probe, tilt_mrad, frozenset(), indices)[0]


def communication_bytes(object_shape: tuple[int, ...], n_workers: int, itemsize: int = 8) -> int:
    """Bytes moved per evaluation for an object of ``object_shape`` ``(N, S, H, W)``: the
    broadcast to every worker and the tree's sums (one gradient per worker), probe ignored."""
    obj = math.prod(object_shape) * itemsize
    return int(obj * n_workers + obj * max(0, n_workers - 1) + obj)
