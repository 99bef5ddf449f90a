"""Memory plans of the paper's hBN setting on 80 GiB GPUs (docs/benchmarks/memory-plans.md).

The setting: a 256² detector zero-padded to 732², 30 slices, the paper's staged recipe
(stage 1: one object state, 5 probe modes, object and probe refined; stage 2: 10 object states,
probe fixed), L-BFGS with 10 pairs, single precision, 128 × 128 and 256 × 256 scans.  The scan
step is 3 object pixels (the step at which the issue's "64 × 64 needs 66 GiB" figure of the old
estimate is reproduced), the object 4 pixels wider than the scanned windows on every side and
rounded up to an FFT-friendly size, as :func:`caviar_napari.core.geometry.plan_geometry` does.

For each scan it prints the old estimate (everything on the device, data padded), the plan the
engine now chooses on one 80 GiB GPU (with 256 GiB of host memory), and, when one GPU is not
enough, the smallest number of GPUs (Dask workers, one per GPU) whose per-worker part fits.

Run: ``python benchmarks/memory_plans.py [--gpu-GiB 80] [--host-GiB 256] [--markdown]``.
"""

from __future__ import annotations

import argparse

import scipy.fft

from caviar_napari.core.memory import MemoryInputs, plan_memory
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.data.config import StageConfig

GiB = float(1 << 30)


def paper_stages() -> list[StageConfig]:
    """The staged recipe of the paper's experimental hBN reconstruction."""
    common = dict(probe_modes=5, slices=30, slice_thickness_A=1.0)
    return [
        StageConfig(name="mean object", object_states=1, refine=("object", "probe"), **common),
        StageConfig(name="object states", object_states=10, refine=("object",), **common),
    ]


def inputs(scan: int, gpu_bytes: int, host_bytes: int, workers: int = 1) -> MemoryInputs:
    """The plan's inputs for a ``scan × scan`` raster (see the module notes)."""
    window, detector, step, pad = (732, 732), (256, 256), 3, 4
    side = scipy.fft.next_fast_len(window[0] + (scan - 1) * step + 2 * pad)
    itemsize = 8

    def batch_plan(stage: StageConfig) -> tuple[int, int]:
        per = MultisliceModel.bytes_per_pattern(
            window, stage.object_states, stage.model_modes, stage.slices, itemsize, tilt=False
        )
        obj = stage.object_states * stage.slices * side * side * itemsize
        batch = 1  # one pattern of 10 states × 5 modes × 30 slices is ~6.5 GiB of waves
        return batch, batch * per + 3 * obj  # one batch in flight, 3 accumulators (GPU)

    return MemoryInputs(
        n_patterns=scan * scan,
        detector_shape=detector,
        window=window,
        object_shape=(side, side),
        complex_itemsize=itemsize,
        device="gpu",
        device_bytes=gpu_bytes,
        host_bytes=host_bytes,
        lazy=True,
        workers=workers,
        batch_plan=batch_plan,
    )


def old_estimate(scan: int, gpu_bytes: int, host_bytes: int) -> float:
    """The previous estimate: everything on the device and the data stored padded (GiB)."""
    plan = plan_memory(inputs(scan, gpu_bytes, host_bytes), paper_stages(), "device", "device")
    padded = scan * scan * 732 * 732 * 4
    return (plan.needed_bytes - plan.parts["data"] + padded) / GiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu-GiB", type=float, default=80.0)
    parser.add_argument("--host-GiB", type=float, default=256.0)
    args = parser.parse_args()
    gpu, host = int(args.gpu_GiB * GiB), int(args.host_GiB * GiB)
    print(
        "| scan | object | old estimate (all on device, padded data) | plan on 1 GPU | "
        "device GiB | host GiB | fits | GPUs needed (Dask workers) | per-GPU GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for scan in (64, 128, 256):
        one = plan_memory(inputs(scan, gpu, host), paper_stages())
        side = inputs(scan, gpu, host).object_shape[0]
        workers, per = 1, one
        while not per.fits and workers < 64:
            workers *= 2
            per = plan_memory(inputs(scan, gpu, host, workers), paper_stages())
        print(
            f"| {scan}×{scan} | {side}² | {old_estimate(scan, gpu, host):.1f} GiB | "
            f"history {one.history}, data {one.data} | {one.needed_bytes / GiB:.1f} | "
            f"{one.host_needed_bytes / GiB:.1f} | {'yes' if one.fits else 'no'} | "
            f"{workers if per.fits else '> 64'} | {per.needed_bytes / GiB:.1f} |"
        )
        rows.append((scan, side))
        if scan == 128:
            print()
            print("```")
            print(one.plan_text())
            print("```")
            print()

    print()
    print("Data-parallel on W GPUs (Dask, one worker per GPU): per-GPU memory with everything on")
    print("the devices (the client keeps the optimiser and its history in host memory):")
    print()
    print("| scan | W = 1 | W = 2 | W = 4 | W = 8 | client (host) |")
    print("|---|---|---|---|---|---|")
    for scan, _side in rows:
        cells, client = [], 0
        for w in (1, 2, 4, 8):
            plan = plan_memory(inputs(scan, gpu, host, w), paper_stages(), "device", "device")
            cells.append(f"{plan.needed_bytes / GiB:.1f} GiB" + ("" if plan.fits else " ✗"))
            client = sum(plan.client_parts.values())
        print(f"| {scan}×{scan} | " + " | ".join(cells) + f" | {client / GiB:.1f} GiB |")


if __name__ == "__main__":
    main()
