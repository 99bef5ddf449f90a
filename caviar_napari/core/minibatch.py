"""Mini-batch (stochastic) epochs for the first iterations of a stage on a large scan.

Far from the solution a full L-BFGS iteration spends one or more passes over every pattern for
one step.  A mini-batch epoch spends about two passes for ``P / minibatch_size`` steps: the scan
positions are shuffled (a permutation fixed by the seed, the stage and the epoch, so a resumed
run repeats it), cut into mini-batches, and for each one the objective restricted to it —
the data loss of its patterns scaled by ``P / B`` (an unbiased estimate of the full loss) plus
the regularisers — takes one preconditioned gradient step with Armijo backtracking
(:class:`~caviar_napari.core.optimise.GradientDescent`, per-block scales from the first
mini-batch, the accepted step carried from batch to batch).  The stage then continues with
L-BFGS on the full objective.

Used by the engine for ``StageConfig.minibatch_epochs > 0`` (one epoch is one iteration in the
progress reports; the loss reported is the mean of the epoch's mini-batch losses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from caviar_napari.core.optimise import GradientDescent, StepInfo

__all__ = ["SubsetModel", "epoch_batches", "run_epoch"]


class SubsetModel:
    """A forward model restricted to some patterns, its loss and gradients scaled by
    ``P / len(indices)`` (everything else delegated to the full model)."""

    def __init__(self, model: Any, indices: np.ndarray) -> None:
        self._model = model
        self.indices = np.asarray(indices, dtype=np.int64)
        self.scale = model.n_patterns / self.indices.size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def loss_and_gradient(
        self, obj: Any, probe: Any, tilt_mrad: Any = (0.0, 0.0), want: Any = None, indices=None
    ) -> tuple[float, dict[str, Any]]:
        """The subset's loss and gradients, scaled to the full scan."""
        kw = {} if want is None else {"want": want}
        loss, grads = self._model.loss_and_gradient(
            obj, probe, tilt_mrad, indices=self.indices, **kw
        )
        return loss * self.scale, {k: v * self.scale for k, v in grads.items()}


def epoch_batches(n_patterns: int, size: int, seed: int, stage: int, epoch: int) -> list:
    """The mini-batches of one epoch: a seeded permutation of the scan cut into ``size``."""
    rng = np.random.default_rng([seed, stage, epoch])
    order = rng.permutation(n_patterns)
    return [np.sort(order[i : i + size]) for i in range(0, n_patterns, size)]


def run_epoch(
    make_objective: Callable[[Any], Callable],
    model: Any,
    x: dict[str, Any],
    optimiser: GradientDescent,
    batches: list,
) -> tuple[dict[str, Any], float, StepInfo]:
    """One epoch of preconditioned stochastic gradient steps; returns the new point, the mean
    mini-batch loss and a summary :class:`StepInfo` (method ``"minibatch"``)."""
    losses, evals = [], 0
    for sel in batches:
        fun = make_objective(SubsetModel(model, sel))
        f, g = fun(x)
        x, f_new, _g, info = optimiser.step(fun, x, f, g)
        losses.append(f_new)
        evals += 1 + info.n_evals
    return x, float(np.mean(losses)), StepInfo("minibatch", optimiser.step_length, evals)
