"""Memory estimate of a reconstruction, checked before it starts.

The estimate counts, for the most demanding stage, every array the engine keeps on the compute
device (all sizes in bytes, ``c`` = complex itemsize, 8 for complex64, 16 for complex128):

* ``data``: the measured amplitudes, ``P · Ky · Kx · c/2``;
* ``object``: ``N · S · H · W · c`` times the number of object-sized copies alive at once —
  current point, its gradient, the line-search trial point and its gradient, the gradient
  accumulator of the forward model, one temporary of the regularisers and the band-limit
  projection, plus ``2 · lbfgs_memory`` curvature pairs (L-BFGS only);
* ``probe``: the same count of copies of ``M · Ky · Kx · c`` (negligible in practice);
* ``batch``: the forward/adjoint working set of one batch of patterns,
  :meth:`MultisliceModel.bytes_per_pattern` × ``batch_size`` (stored waves of every slice for the
  adjoint, object patches, FFT work arrays).

A 10 % reserve is kept. When the need exceeds what is available the run is refused with a
:class:`~caviar_napari.errors.MemoryBudgetError` that says both numbers and which parameter to
lower (the one behind the largest term).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.data.config import StageConfig
from caviar_napari.errors import MemoryBudgetError

#: Fraction of the available memory the engine may plan to use.
USABLE_FRACTION = 0.9

_GiB = float(1 << 30)


def _fmt(n: float) -> str:
    if n >= _GiB:
        return f"{n / _GiB:.2f} GiB"
    return f"{n / (1 << 20):.1f} MiB"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a stage needs on the device, by part, and what the device has.

    Attributes
    ----------
    parts
        ``{"data", "object", "probe", "batch"}`` → bytes.
    available_bytes
        Free memory of the device when estimated.
    stage
        Name of the stage with the largest need.
    device
        ``"cpu"`` or ``"gpu"``.
    batch_size
        Patterns per batch used in the ``batch`` term.
    """

    parts: dict[str, int] = field(default_factory=dict)
    available_bytes: int = 0
    stage: str = ""
    device: str = "cpu"
    batch_size: int = 1

    @property
    def needed_bytes(self) -> int:
        """Sum of the parts."""
        return int(sum(self.parts.values()))

    @property
    def fits(self) -> bool:
        """Whether the need fits in ``USABLE_FRACTION`` of the available memory."""
        return self.needed_bytes <= USABLE_FRACTION * self.available_bytes

    def describe(self) -> str:
        """One line: needed vs available and the parts."""
        parts = ", ".join(f"{k} {_fmt(v)}" for k, v in self.parts.items())
        return (
            f"needs {_fmt(self.needed_bytes)} ({parts}) of {_fmt(self.available_bytes)} "
            f"available on the {self.device} (stage '{self.stage}')"
        )

    def advice(self) -> str:
        """Which parameter to lower, from the largest part."""
        largest = max(self.parts, key=self.parts.get)
        if largest == "batch":
            if self.batch_size > 1:
                return f"lower 'batch_size' (now {self.batch_size})"
            return "lower 'object_states', 'probe_modes' or 'slices' (batch_size is already 1)"
        if largest == "object":
            return "lower 'object_states', 'slices' or 'lbfgs_memory' (or use optimizer 'gd')"
        if largest == "data":
            return "crop or bin the 4D-STEM data (fewer scan positions or detector pixels)"
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
) -> dict[str, int]:
    """Bytes per part for one stage (see the module notes).

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
        (:meth:`MultisliceModel.working_bytes`: every batch in flight, one per CPU thread, and
        the gradient accumulators); None estimates one batch of ``batch_size`` patterns.
    """
    ky, kx = (int(v) for v in window)
    h, w = (int(v) for v in object_shape)
    copies = 6 + (2 * stage.lbfgs_memory if stage.optimizer == "lbfgs" else 0)
    obj = stage.object_states * stage.slices * h * w * complex_itemsize
    # coherent modes in the optimiser's copies, plus the forward model's (expanded) modes
    probe = stage.probe_modes * ky * kx * complex_itemsize
    model_probe = 3 * stage.model_modes * ky * kx * complex_itemsize
    per_pattern = MultisliceModel.bytes_per_pattern(
        (ky, kx),
        stage.object_states,
        stage.model_modes,
        stage.slices,
        complex_itemsize,
        tilt="tilt" in stage.refine,
    )
    return {
        "data": n_patterns * ky * kx * complex_itemsize // 2,
        "object": copies * obj,
        "probe": copies * probe + (model_probe if stage.model_modes > stage.probe_modes else 0),
        "batch": (
            int(batch_bytes)
            if batch_bytes is not None
            else min(batch_size, n_patterns) * per_pattern
        ),
    }


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
) -> MemoryEstimate:
    """Estimate for the most demanding of ``stages``.

    ``batch_plan(stage) -> (batch_size, batch_bytes)``, when given, supplies the batch size the
    model will use in that stage and its working memory (see :func:`stage_parts`).
    """
    best: MemoryEstimate | None = None
    for stage in stages:
        size, work = batch_plan(stage) if batch_plan is not None else (batch_size, None)
        parts = stage_parts(
            n_patterns=n_patterns,
            window=window,
            object_shape=object_shape,
            stage=stage,
            batch_size=size,
            complex_itemsize=complex_itemsize,
            batch_bytes=work,
        )
        est = MemoryEstimate(parts, int(available_bytes), stage.name, device, int(size))
        if best is None or est.needed_bytes > best.needed_bytes:
            best = est
    assert best is not None
    return best


def require_memory(estimate: MemoryEstimate) -> MemoryEstimate:
    """Return ``estimate`` if it fits, else raise :class:`MemoryBudgetError` with advice."""
    if not estimate.fits:
        raise MemoryBudgetError(f"the reconstruction {estimate.describe()}; {estimate.advice()}")
    return estimate
