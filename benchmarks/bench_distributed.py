"""Strong scaling of one distributed loss + gradient evaluation with 1, 2 and 4 Dask workers,
and the communication of a paper-sized object.

For each worker count W it starts a ``LocalCluster`` of W single-threaded processes (or uses
``--scheduler tcp://HOST:PORT``, e.g. a ``dask-cuda`` cluster with ``--device gpu``), builds the
shards of a synthetic dataset (the workers read their patterns from an HDF5 file), and times
``--repeat`` evaluations of object, probe and tilt gradients (the minimum is reported), next to
the same evaluation in this process.  It reports seconds per evaluation, the speed-up over one
process, and the bytes moved per evaluation (the parameters sent to every worker, the partial
sums of the tree reduction).  The last table is the communication volume per evaluation of the
paper's hBN object (10 states × 30 slices × 1125², complex64) for 2–16 workers.

Run: ``python benchmarks/bench_distributed.py [--workers 1 2 4] [--scan 32] [--window 64]
[--states 4] [--slices 2] [--repeat 3]``.  On this 2-core machine more than 2 workers only
share the two cores (the numbers then measure the overhead, not a speed-up).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from caviar_napari.core.backend import get_backend
from caviar_napari.core.distributed import DistributedEvaluator, communication_bytes
from caviar_napari.core.geometry import plan_geometry
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.core.patterns import PatternFeed
from caviar_napari.data.config import ReconstructionConfig
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.io.dataset import read_stem_h5, write_stem_h5


def dataset(scan: int, window: int, path: Path) -> STEMDataset:
    """Random patterns (the timing does not depend on their values) written to ``path``."""
    rng = np.random.default_rng(0)
    inten = rng.random((scan, scan, window, window), dtype=np.float32)
    write_stem_h5(path, STEMDataset(inten, 200e3, 25.0, 0.4, 1.0, 50.0, source=path.name))
    return read_stem_h5(path, lazy=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--scan", type=int, default=32)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--states", type=int, default=4)
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scheduler", default=None, help="tcp://HOST:PORT instead of local:W")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    tmp = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    data = dataset(args.scan, args.window, tmp / "data.h5")
    cfg = ReconstructionConfig(detector_padding="none", device=args.device).validate()
    geom = plan_geometry(data, cfg)
    be = get_backend(args.device)
    kw = dict(
        wavelength_A=data.wavelength_A,
        pixel_size_A=geom.pixel_size_A,
        slice_thickness_A=[2.0] * args.slices,
        positions_px=geom.positions_px,
        object_shape=geom.object_shape,
        detector_mask=geom.detector_mask,
        loss_eps=1e-9,
    )
    rng = np.random.default_rng(1)
    obj = np.exp(0.1j * rng.standard_normal((args.states, args.slices, *geom.object_shape)))
    obj = obj.astype(np.complex64)
    probe = (rng.standard_normal((1, *geom.window)) + 0j).astype(np.complex64)
    tilt = (0.1, 0.2)

    def best(fn) -> float:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    single = MultisliceModel(be, patterns=PatternFeed(be, data.intensities, geom.window), **kw)
    t1 = best(lambda: single.loss_and_gradient(obj, probe, tilt))
    print(f"load average: {os.getloadavg()}; object {obj.shape} complex64, "
          f"{args.scan}² scan, {args.window}² window")  # fmt: skip
    print("| workers | s/eval | speed-up vs 1 process | MB sent + gathered per eval |")
    print("|---|---|---|---|")
    print(f"| 1 process | {t1:.3f} | 1.00 | 0 |")
    for w in args.workers:
        if args.scheduler:
            client, cluster = Client(args.scheduler), None
        else:
            cluster = LocalCluster(n_workers=w, threads_per_worker=1, dashboard_address=":0")
            client = Client(cluster)
        ev = DistributedEvaluator(
            ReconstructionConfig(**{**cfg.to_dict(), "cluster": f"local:{w}"}),
            data,
            geom,
            client=client,
        )
        model = ev.model(window=geom.window, **kw)
        model.loss_and_gradient(obj, probe, tilt)  # warm-up: shards hold their models
        before = ev.stats.broadcast_bytes + ev.stats.gathered_bytes
        tw = best(lambda: model.loss_and_gradient(obj, probe, tilt))  # noqa: B023
        moved = (ev.stats.broadcast_bytes + ev.stats.gathered_bytes - before) / args.repeat
        print(f"| {ev.n_workers} | {tw:.3f} | {t1 / tw:.2f} | {moved / 1e6:.1f} |")
        client.close()
        if cluster is not None:
            cluster.close()
    obj_bytes = 10 * 30 * 1125 * 1125 * 8
    print()
    print("Paper-sized object (10 × 30 × 1125², complex64, 3.04 GB) per evaluation:")
    print("| workers | sent (parameters) GB | tree-reduction transfers GB | at 10 GB/s s |")
    print("|---|---|---|---|")
    for w in (2, 4, 8, 16):
        total = communication_bytes((10, 30, 1125, 1125), w)
        sent = w * obj_bytes
        tree = total - sent  # each add moves one partial sum; the final sum goes to the client
        print(f"| {w} | {sent / 1e9:.1f} | {tree / 1e9:.1f} | "
              f"{total / 10e9:.1f} (tree depth {math.ceil(math.log2(w))}) |")  # fmt: skip


if __name__ == "__main__":
    main()
