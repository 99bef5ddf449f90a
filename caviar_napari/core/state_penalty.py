"""A penalty on the object states' deviations from their mean, weighted by held-out patterns.

At finite dose the object states fit counting noise as well as the thermal diffuse signal:
nothing in the data loss tells a deviation ``O_k − Ō`` that explains the diffuse scattering
from one that explains the noise of the fitted patterns. The penalty

``R = λ · Σ_k Σ_{s,r} |O_k − Ō|² / (N · A)``

(N states, A object pixels of the scanned field) shrinks the deviations the data determine
least. Its normalisation makes λ a ratio of curvatures: the data loss, normalised by the total
measured intensity, has a curvature of about ``1 / (N · A)`` per state pixel along a well
measured direction, so λ = 1 pins a deviation as firmly as the data pin the mean object, and
the states' diffuse signal needs λ well below 1 (docs/conventions.md §2, "State penalty").

No dataset tells λ in advance, so ``state_penalty: auto`` chooses it from the data by the
held-out patterns (:mod:`caviar_napari.core.holdout`), which the fit never sees and which are
scored every iteration. Their loss falls while the states learn what the patterns share, and
rises once the states fit the fitted patterns' own counting noise. The stage first runs
unpenalised (the first weight of :data:`PENALTY_LADDER`, 0) until the held-out loss has not
reached a new minimum for ``stop_patience`` iterations: the unpenalised fit has started to
learn noise there. It then goes back to the variables of the best held-out loss and continues
from them with each larger weight in turn (each rung again from the best variables so far, for
as long as it keeps finding new minima, with half the patience). The stage ends with the
variables of the lowest held-out loss of the whole path, and the weight in force there is the
chosen one (0 when no weight did better than stopping the unpenalised fit early). A penalty
from the start would hold the states at the identical-states saddle, from which the states'
second-order signal lets them escape only slowly; started from the early-stopped states, it
can only shrink what they hold, the deviations the data support least first. The record of the
path lives in the run's diagnostics, so a resumed run decides as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PENALTY_LADDER", "PenaltyPath", "penalty_lines", "state_deviation_penalty"]

#: Weights λ tried, in order, by ``state_penalty: auto`` (the first, 0, is the unpenalised fit).
PENALTY_LADDER = (0.0, 1e-3, 1e-2, 1e-1)


def state_deviation_penalty(
    obj: Any, weight: float, area: float, xp: Any = np
) -> tuple[float, Any]:
    """Penalty ``R = λ Σ_k |O_k − Ō|² / (N A)`` on the states' deviations and ``∂R/∂O*``.

    Parameters
    ----------
    obj
        ``(N, S, H, W)`` complex transmission of the N object states.
    weight
        λ (dimensionless; a ratio to the data's curvature, see the module docstring).
    area
        A, object pixels of the scanned field (one slice).
    xp
        Array module of ``obj``.

    Returns
    -------
    penalty, gradient
        Float and ``∂R/∂O* = λ (O_k − Ō) / (N A)`` of the shape and dtype of ``obj`` (the
        mean's own term vanishes, as the deviations sum to zero).

    Examples
    --------
    >>> obj = np.ones((2, 1, 2, 2), complex)
    >>> obj[0] += 0.1
    >>> value, grad = state_deviation_penalty(obj, 1.0, 4.0)
    >>> round(value, 6), round(float(grad[0, 0, 0, 0].real), 6)
    (0.0025, 0.00625)
    """
    n = obj.shape[0]
    dev = obj - obj.mean(axis=0, keepdims=True)
    scale = weight / (n * area)
    value = scale * float(xp.sum(dev.real**2 + dev.imag**2, dtype=np.float64))
    return value, (scale * dev).astype(obj.dtype, copy=False)


@dataclass
class PenaltyPath:
    """The path of weights of one stage with ``state_penalty: auto`` (see the module).

    Parameters
    ----------
    record
        JSON-safe record of the path (kept in the run's diagnostics; empty at a stage's start):
        ``weights`` (the ladder), ``rung`` (index of the weight in force), ``rung_start``
        (stage iteration at which it came into force), ``rung_best`` (best held-out loss of
        each finished rung), ``best`` / ``best_iteration`` / ``best_weight`` (over the whole
        path), ``held`` (every held-out loss), ``ended`` (why the path ended, ``""`` before).
    patience
        The unpenalised rung ends when the held-out loss has not reached a new minimum of the
        path for this many iterations (0: never, so no weight is tried), every later rung
        after half as many (at least 1).
    weights
        The ladder (:data:`PENALTY_LADDER`), starting at 0.
    """

    record: dict[str, Any]
    patience: int
    weights: tuple[float, ...] = PENALTY_LADDER

    def __post_init__(self) -> None:
        r = self.record
        r.setdefault("weights", [float(w) for w in self.weights])
        self.weights = tuple(r["weights"])
        for key, value in (
            ("rung", 0),
            ("rung_start", 0),
            ("rung_best", []),
            ("held", []),
            ("best", math.inf),
            ("best_iteration", 0),
            ("best_weight", self.weights[0]),
            ("ended", ""),
        ):
            r.setdefault(key, value)

    @property
    def weight(self) -> float:
        """λ in force."""
        return float(self.weights[self.record["rung"]])

    @property
    def ended(self) -> bool:
        """Whether the path has ended (the stage ends with the best variables)."""
        return bool(self.record["ended"])

    def _rung_patience(self) -> int:
        if not self.patience:
            return 0
        return self.patience if self.record["rung"] == 0 else max(1, self.patience // 2)

    def start(self, iteration: int, held: float) -> None:
        """Record the held-out loss of the stage's starting point (stage iteration
        ``iteration``, before any step): the path may end there (no states at all)."""
        r = self.record
        r["rung_start"] = iteration
        r["best"], r["best_iteration"], r["best_weight"] = float(held), iteration, self.weight

    def reopen(self) -> bool:
        """Go on after a stage that ended for lack of iterations (resumed with more): the path
        continues from its best variables (those the stage ended with), in the rung it had
        reached. Returns whether it did."""
        if not self.record.get("stage_end"):
            return False
        self.record["ended"], self.record["stage_end"] = "", False
        return True

    def update(
        self, iteration: int, held: float, *, end_rung: bool = False, final: bool = False
    ) -> tuple[bool, bool]:
        """Record the held-out loss of stage iteration ``iteration``.

        Parameters
        ----------
        iteration, held
            The stage iteration just done and the held-out loss after it.
        end_rung
            End the rung now whatever its patience (the optimiser stalled in it).
        final
            The stage's last iteration: the path ends here, for now (a stage resumed with more
            iterations goes on, :meth:`reopen`).

        Returns
        -------
        improved, changed
            Whether this is the best held-out loss of the path so far (the caller keeps the
            variables), and whether the rung changed or the path ended (the caller goes back to
            the best variables, with the new :attr:`weight` or for good when :attr:`ended`).
        """
        r = self.record
        if not r["held"] and r["best"] == math.inf:  # first scored iteration, start unscored
            r["rung_start"] = iteration - 1
        r["held"].append(float(held))
        improved = bool(held < r["best"])
        if improved:
            r["best"], r["best_iteration"], r["best_weight"] = float(held), iteration, self.weight
        patience = self._rung_patience()
        since = max(r["rung_start"], r["best_iteration"])
        rung_over = end_rung or bool(patience and iteration - since >= patience)
        if not rung_over and not final:
            return improved, False
        if rung_over:
            r["rung_best"].append(float(min(r["held"][r["rung_start"] - iteration :])))
            if r["rung"] == len(self.weights) - 1:
                ladder = ", ".join(f"{w:g}" for w in self.weights)
                r["ended"] = f"best at λ = {r['best_weight']:g} of {ladder}"
                return improved, True
            r["rung"] += 1
            r["rung_start"] = iteration
            if not final:
                return improved, True
        # the stage's iterations ran out first: a stage resumed with more goes on from here
        r["ended"] = f"end of the stage's iterations; best at λ = {r['best_weight']:g}"
        r["stage_end"] = True
        return improved, True


def penalty_lines(stages: Any, diagnostics: dict[str, Any]) -> list[str]:
    """One line per multi-state stage with a state penalty: its weight, and for ``auto`` the
    weight the held-out patterns chose and why the path ended (what the CLI and the dock
    say).

    Parameters
    ----------
    stages
        The run's :class:`~caviar_napari.data.config.StageConfig` list (those run so far).
    diagnostics
        ``ReconState.diagnostics``.
    """
    chosen = diagnostics.get("state_penalty_chosen", {}) or {}
    paths = diagnostics.get("state_penalty", {}) or {}
    lines = []
    for stage in stages:
        if stage.object_states < 2 or not stage.state_penalty or "object" not in stage.refine:
            continue
        if stage.state_penalty != "auto":
            lines.append(f"state penalty of '{stage.name}': λ = {stage.state_penalty:g} (fixed)")
        elif stage.name in chosen:
            why = paths.get(stage.name, {}).get("ended", "")
            lines.append(
                f"state penalty of '{stage.name}': λ = {chosen[stage.name]:g}, chosen by the "
                f"held-out patterns ({why})"
            )
        elif stage.name in paths:
            lines.append(
                f"state penalty of '{stage.name}': being chosen by the held-out patterns, "
                f"λ = {paths[stage.name]['weights'][paths[stage.name]['rung']]:g} now"
            )
        else:
            lines.append(
                f"state penalty of '{stage.name}': auto, 0 (no held-out patterns to choose it)"
            )
    return lines
