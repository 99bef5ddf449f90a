"""Memory plan of a reconstruction: where every large array lives, checked before it starts.

The plan counts, for the most demanding stage, every large array of the run (bytes; ``c`` the
complex itemsize, 8 for complex64, 16 for complex128; ``r = c/2``):

* ``object``: ``N · S · H · W · c`` times the object-sized copies the optimiser and the model
  keep at once: the current point, its gradient, the scaled gradient, the search direction, the
  line-search trial point and its gradient (6);
* ``history``: the ``2 · lbfgs_memory`` L-BFGS curvature pairs (object + probe), L-BFGS only;
* ``probe``: the probe modes in the same copies (and the forward model's expanded modes);
* ``data``: the measured amplitudes *unpadded* (``P · K0y · K0x · r``, the detector as
  measured; they are padded into the probe window one batch at a time);
* ``batch``: the forward/adjoint working set, :meth:`MultisliceModel.working_bytes` (stored
  waves of every slice, object patches, FFT buffers and the gradient accumulators, for every
  batch in flight) plus the padded amplitudes of the batches in flight.

Placements (chosen automatically, first that fits; or forced by the configuration)
    ``history``: ``device`` (fastest), ``host`` (a GPU run keeps the pairs in page-locked host
    memory and streams them through the two-loop recursion, one pair at a time: two object
    copies of device memory instead of ``2m``), ``half`` (kept at half precision: complex64
    pairs of a double-precision run, float16 pairs with a per-array scale in single
    precision; half the bytes, on the device).
    ``data``: ``device``, ``host`` (GPU: copied per batch) or ``file`` (out-of-core: the data
    stay in a chunked HDF5 file and are read per batch; needs data opened lazily).
    On the CPU the device *is* the host, so ``host`` placements do not arise there.

Each pool keeps a 10 % reserve (``USABLE_FRACTION``). When no plan fits, the run is refused
with a :class:`~caviar_napari.errors.MemoryBudgetError` that says both numbers and which
parameter to lower (the one behind the largest part). :meth:`MemoryEstimate.plan_text` prints
the plan (``caviar reconstruct --dry-run``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.data.config import StageConfig
from caviar_napari.errors import MemoryBudgetError

__all__ = [
    "DATA_PLACEMENTS",
    "HISTORY_PLACEMENTS",
    "USABLE_FRACTION",
    "MemoryEstimate",
    "MemoryInputs",
    "estimate_memory",
    "plan_memory",
    "require_memory",
    "stage_parts",
]

#: Fraction of each memory pool the engine may plan to use.
USABLE_FRACTION = 0.9
#: Object-sized copies besides the L-BFGS history (see the module notes).
OBJECT_COPIES = 6
#: Where the L-BFGS history may live.
HISTORY_PLACEMENTS = ("device", "host", "half")
#: Where the measured data may live.
DATA_PLACEMENTS = ("device", "host", "file")

_GiB = float(1 << 30)


def _fmt(n: float) -> str:
    if n >= _GiB:
        return f"{n / _GiB:.2f} GiB"
    return f"{n / (1 << 20):.1f} MiB"


@dataclass(frozen=True)
class MemoryEstimate:
    """The memory plan of a run: bytes by part and pool, the placements, what is available.

    Attributes
    ----------
    parts
        Bytes on the compute device by part (``object``, ``history``, ``probe``, ``data``,
        ``batch``).
    available_bytes
        Memory the device offers (free memory, or the configured cap).
    stage
        Name of the stage with the largest need.
    device
        ``"cpu"`` or ``"gpu"``.
    batch_size
        Patterns per batch used in the ``batch`` part.
    host_parts
        Bytes in host memory by part (GPU runs: data or history kept on the host); on the CPU
        everything is in ``parts``.
    host_available_bytes
        Memory the host offers (GPU runs).
    history, data
        The placements (module notes).
    workers
        Processes sharing the data (a distributed run: the parts are one worker's, the
        optimiser's in ``client_parts``).
    client_parts
        Bytes the client of a distributed run keeps (the optimiser and its history).
    """

    parts: dict[str, int] = field(default_factory=dict)
    available_bytes: int = 0
    stage: str = ""
    device: str = "cpu"
    batch_size: int = 1
    host_parts: dict[str, int] = field(default_factory=dict)
    host_available_bytes: int = 0
    history: str = "device"
    data: str = "device"
    workers: int = 1
    client_parts: dict[str, int] = field(default_factory=dict)

    @property
    def needed_bytes(self) -> int:
        """Device bytes (sum of ``parts``)."""
        return int(sum(self.parts.values()))

    @property
    def host_needed_bytes(self) -> int:
        """Host bytes of a GPU run (sum of ``host_parts``)."""
        return int(sum(self.host_parts.values()))

    @property
    def device_fits(self) -> bool:
        """Whether the device part fits in ``USABLE_FRACTION`` of the device's memory."""
        return self.needed_bytes <= USABLE_FRACTION * self.available_bytes

    @property
    def host_fits(self) -> bool:
        """Whether the host part fits (always true when there is none)."""
        if not self.host_parts:
            return True
        return self.host_needed_bytes <= USABLE_FRACTION * self.host_available_bytes

    @property
    def fits(self) -> bool:
        """Whether the plan fits in both pools."""
        return self.device_fits and self.host_fits

    def describe(self) -> str:
        """One line: needed vs available and the parts."""
        parts = ", ".join(f"{k} {_fmt(v)}" for k, v in self.parts.items() if v)
        text = (
            f"needs {_fmt(self.needed_bytes)} ({parts}) of {_fmt(self.available_bytes)} "
            f"available on the {self.device} (stage '{self.stage}'"
        )
        if self.workers > 1:
            text += f", per worker of {self.workers}"
        text += ")"
        if self.host_parts:
            text += (
                f" and {_fmt(self.host_needed_bytes)} of {_fmt(self.host_available_bytes)} "
                "on the host"
            )
        return text

    def plan_text(self) -> str:
        """The plan as a small table (``caviar reconstruct --dry-run``)."""
        lines = [
            f"memory plan (stage '{self.stage}', {self.device}"
            + (f", {self.workers} workers" if self.workers > 1 else "")
            + f", batch {self.batch_size}):",
            f"  L-BFGS history: {self.history}; data: {self.data}",
        ]
        pool = "per worker" if self.workers > 1 else self.device
        for name, value in self.parts.items():
            lines.append(f"  {pool:>10}  {name:<8} {_fmt(value):>12}")
        lines.append(
            f"  {pool:>10}  {'total':<8} {_fmt(self.needed_bytes):>12} of "
            f"{_fmt(self.available_bytes)} ({'fits' if self.device_fits else 'does NOT fit'})"
        )
        for name, value in self.host_parts.items():
            lines.append(f"  {'host':>10}  {name:<8} {_fmt(value):>12}")
        if self.host_parts:
            lines.append(
                f"  {'host':>10}  {'total':<8} {_fmt(self.host_needed_bytes):>12} of "
                f"{_fmt(self.host_available_bytes)} "
                f"({'fits' if self.host_fits else 'does NOT fit'})"
            )
        for name, value in self.client_parts.items():
            lines.append(f"  {'client':>10}  {name:<8} {_fmt(value):>12}")
        return "\n".join(lines)

    def advice(self) -> str:
        """Which parameter to lower, from the largest part."""
        parts = dict(self.parts if self.device_fits is False or self.host_fits else self.host_parts)
        largest = max(parts, key=parts.get)
        if largest == "batch":
            if self.batch_size > 1:
                return f"lower 'batch_size' (now {self.batch_size})"
            return "lower 'object_states', 'probe_modes' or 'slices' (batch_size is already 1)"
        if largest in ("object", "history"):
            return (
                "lower 'object_states', 'slices' or 'lbfgs_memory' (or use optimizer 'gd'), "
                "or spread the run over more devices (--cluster)"
            )
        if largest == "data":
            return (
                "crop or bin the 4D-STEM data, keep them in a chunked HDF5 file (read per "
                "batch), or spread them over more devices (--cluster)"
            )
        return "lower 'probe_modes'"


def stage_parts(
    *,
    n_patterns: int,
    window: Sequence[int],
    object_shape: Sequence[int],
    stage: StageConfig,
    batch_size: int,
    complex_itemsize: int = 8,
    batch_bytes: int | None = None,
    detector_shape: Sequence[int] | None = None,
    history: str = "device",
) -> dict[str, int]:
    """Device bytes per part for one stage, everything on the device but as ``history`` says.

    Parameters
    ----------
    n_patterns
        Number of diffraction patterns P.
    window
        ``(Ky, Kx)`` probe window (possibly padded detector).
    object_shape
        ``(H, W)`` object pixels.
    stage
        The stage (states, modes, slices, optimiser, memory).
    batch_size
        Patterns per batch.
    complex_itemsize
        8 (complex64) or 16 (complex128).
    batch_bytes
        Working memory of the forward/adjoint passes as the model itself reports it
        (:meth:`MultisliceModel.working_bytes`); None estimates one batch of ``batch_size``.
    detector_shape
        ``(K0y, K0x)`` measured detector (the data are kept unpadded); default ``window``.
    history
        ``device`` (all pairs), ``host`` (one pair streamed: 2 copies) or ``half``.
    """
    ky, kx = (int(v) for v in window)
    k0y, k0x = (int(v) for v in (detector_shape or window))
    h, w = (int(v) for v in object_shape)
    obj = stage.object_states * stage.slices * h * w * complex_itemsize
    probe = stage.probe_modes * ky * kx * complex_itemsize
    model_probe = 3 * stage.model_modes * ky * kx * complex_itemsize
    pairs = 2 * stage.lbfgs_memory if stage.optimizer == "lbfgs" else 0
    if history == "host":
        pairs = min(pairs, 2)
    hist_bytes = (obj + probe) * pairs
    if history == "half":
        hist_bytes //= 2
    per_pattern = MultisliceModel.bytes_per_pattern(
        (ky, kx),
        stage.object_states,
        stage.model_modes,
        stage.slices,
        complex_itemsize,
        tilt="tilt" in stage.refine,
    )
    size = min(batch_size, n_patterns)
    amp_batch = size * ky * kx * complex_itemsize // 2
    return {
        "object": OBJECT_COPIES * obj,
        "history": hist_bytes,
        "probe": OBJECT_COPIES * probe
        + (model_probe if stage.model_modes > stage.probe_modes else 0),
        "data": n_patterns * k0y * k0x * complex_itemsize // 2,
        "batch": (int(batch_bytes) if batch_bytes is not None else size * per_pattern) + amp_batch,
    }


@dataclass(frozen=True)
class MemoryInputs:
    """What the plan needs to know about a run (no data needed: the docs tabulate plans).

    Attributes
    ----------
    n_patterns, detector_shape, window, object_shape
        Patterns, measured detector, probe window, object grid.
    complex_itemsize
        8 or 16.
    device
        ``"cpu"`` or ``"gpu"``.
    device_bytes, host_bytes
        Memory available on the device and on the host (the CPU: the same pool, give both).
    lazy
        The data are left in their file (``data: file`` is possible).
    workers
        Processes sharing the data (distributed); the client runs the optimiser.
    batch_plan
        ``stage -> (batch_size, working_bytes)`` as the model will use them (None: batch
        size 1 estimated from :meth:`MultisliceModel.bytes_per_pattern`).
    """

    n_patterns: int
    detector_shape: tuple[int, int]
    window: tuple[int, int]
    object_shape: tuple[int, int]
    complex_itemsize: int
    device: str
    device_bytes: int
    host_bytes: int
    lazy: bool = False
    workers: int = 1
    batch_plan: Callable[[StageConfig], tuple[int, int]] | None = None
    batch_size: int = 1


def _candidates(device: str, lazy: bool, history: str, data: str) -> list[tuple[str, str]]:
    """(history, data) placements in order of preference (the forced ones only, if given)."""
    if device == "gpu":
        order = [
            ("device", "device"),
            ("host", "device"),
            ("host", "host"),
            ("half", "host"),
            ("host", "file"),
            ("half", "file"),
        ]
    else:
        order = [("device", "device"), ("half", "device"), ("device", "file"), ("half", "file")]
    out = []
    for h, d in order:
        if d == "file" and not lazy:
            continue
        if history != "auto" and h != history:
            continue
        if data != "auto" and d != data:
            continue
        out.append((h, d))
    if not out:  # a forced placement outside the preference list (e.g. host on the CPU)
        out.append(
            (
                "device" if history == "auto" else history,
                ("file" if lazy else "device") if data == "auto" else data,
            )
        )
    return out


def _stage_plan(
    inputs: MemoryInputs, stage: StageConfig, history: str, data: str
) -> MemoryEstimate:
    size, work = (
        inputs.batch_plan(stage) if inputs.batch_plan is not None else (inputs.batch_size, None)
    )
    n_local = math.ceil(inputs.n_patterns / max(1, inputs.workers))
    parts = stage_parts(
        n_patterns=n_local,
        window=inputs.window,
        object_shape=inputs.object_shape,
        stage=stage,
        batch_size=size,
        complex_itemsize=inputs.complex_itemsize,
        batch_bytes=work,
        detector_shape=inputs.detector_shape,
        history="device" if inputs.workers > 1 else history,
    )
    host: dict[str, int] = {}
    client: dict[str, int] = {}
    full_history = stage_parts(
        n_patterns=1,
        window=inputs.window,
        object_shape=inputs.object_shape,
        stage=stage,
        batch_size=1,
        complex_itemsize=inputs.complex_itemsize,
        history="half" if history == "half" else "device",
    )["history"]
    if inputs.workers > 1:
        # a worker keeps the parameters, its gradient and its data shard; the client the rest
        client = {
            "object": parts["object"],
            "history": full_history,
            "probe": parts["probe"],
        }
        obj_copy = parts["object"] // OBJECT_COPIES
        parts["object"] = 2 * obj_copy
        parts["history"] = 0
        parts["probe"] = 2 * parts["probe"] // OBJECT_COPIES
    elif history == "host" and inputs.device == "gpu":
        host["history"] = full_history
    if data == "file":
        parts["data"] = 0
    elif data == "host" and inputs.device == "gpu":
        host["data"] = parts["data"]
        parts["data"] = 0
    return MemoryEstimate(
        parts=parts,
        available_bytes=int(inputs.device_bytes),
        stage=stage.name,
        device=inputs.device,
        batch_size=int(size),
        host_parts=host,
        host_available_bytes=int(inputs.host_bytes),
        history=history,
        data=data,
        workers=int(inputs.workers),
        client_parts=client,
    )


def plan_memory(
    inputs: MemoryInputs,
    stages: Sequence[StageConfig],
    history: str = "auto",
    data: str = "auto",
) -> MemoryEstimate:
    """The first placement (module notes) under which every stage fits, for the most
    demanding stage; when none fits, the last candidate's plan (``fits`` is False)."""
    plan: MemoryEstimate | None = None
    for h, d in _candidates(inputs.device, inputs.lazy, history, data):
        worst: MemoryEstimate | None = None
        for stage in stages:
            est = _stage_plan(inputs, stage, h, d)
            if (
                worst is None
                or (not est.fits and worst.fits)
                or (est.fits == worst.fits and est.needed_bytes > worst.needed_bytes)
            ):
                worst = est
        plan = worst
        if plan is not None and plan.fits:
            return plan
    assert plan is not None
    return plan


def estimate_memory(
    *,
    n_patterns: int,
    window: Sequence[int],
    object_shape: Sequence[int],
    stages: Sequence[StageConfig],
    batch_size: int,
    complex_itemsize: int,
    available_bytes: int,
    device: str = "cpu",
    batch_plan: Callable[[StageConfig], tuple[int, int]] | None = None,
    detector_shape: Sequence[int] | None = None,
) -> MemoryEstimate:
    """Everything on the device (no placement search): the estimate of the most demanding
    stage (``batch_plan`` as in :class:`MemoryInputs`)."""
    inputs = MemoryInputs(
        n_patterns=int(n_patterns),
        detector_shape=tuple(int(v) for v in (detector_shape or window)),  # type: ignore[arg-type]
        window=tuple(int(v) for v in window),  # type: ignore[arg-type]
        object_shape=tuple(int(v) for v in object_shape),  # type: ignore[arg-type]
        complex_itemsize=int(complex_itemsize),
        device=device,
        device_bytes=int(available_bytes),
        host_bytes=int(available_bytes),
        batch_plan=batch_plan,
        batch_size=int(batch_size),
    )
    return plan_memory(inputs, stages, history="device", data="device")


def require_memory(estimate: MemoryEstimate) -> MemoryEstimate:
    """Return ``estimate`` if it fits, else raise :class:`MemoryBudgetError` with advice."""
    if not estimate.fits:
        raise MemoryBudgetError(f"the reconstruction {estimate.describe()}; {estimate.advice()}")
    return estimate
