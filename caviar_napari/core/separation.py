"""Did the object states separate? The report the engine writes after every multi-state stage.

Object states only help where the data hold an incoherent signal that one coherent object cannot
explain (thermal diffuse scattering). Whether they captured it is measured against the model
that has no states at all, the **mean object**: the same probe, the states replaced by their
mean. With ``L_states`` the final objective and ``L_mean`` the mean object's,

* ``gain = (L_mean − L_states) / (L_mean − L_floor)`` is the fraction of the mean object's misfit
  the states explain; ``L_floor`` is the loss that counting noise alone gives at the truth
  (0 for noise-free data). With held-out patterns it is measured on them: a fitted mean object
  with as many parameters as the object has pixels ends *below* the floor on the patterns it
  was fitted to (each parameter takes its share of the noise), so that there the misfit is not
  measurable, while on patterns it never saw the floor holds as it is;
* ``noise_gain = (L_mean − L_states) / Δ_noise`` compares the decrease with the decrease that
  fitting pure noise with the states' extra degrees of freedom would give (χ² per parameter:
  1/4 for the amplitude loss, 1/2 for the Poisson loss, per count-normalised unit); it is
  infinite for noise-free data;
* ``spread_rad`` is the rms phase difference between the states and their mean over the
  scanned area, and ``trend`` the relative decrease of ``L_states − L_floor`` over the stage's
  last :data:`TREND_WINDOW` iterations.

The states **separated** when ``gain ≥`` :data:`MIN_GAIN` (on held-out patterns when there are
some, :mod:`caviar_napari.core.holdout`) and ``noise_gain ≥`` :data:`MIN_NOISE_GAIN`: a gain on
held-out patterns alone can be a fluctuation of a misfit that is barely above the floor (free
states at 1e6 e/Å² "explained" 10 % of it with correlations at CSM 0.38).
They **stopped improving** when ``trend <`` :data:`STILL_IMPROVING` (or a stopping rule ended
the stage).
A stage whose line search **stalled in single precision** (no decrease along the gradient
either, or failed searches in at least half of its last :data:`TREND_WINDOW` iterations) ended
at the arithmetic's limit, not at the data's: the states' incoherent signal is a
few 1e-7 of the loss, and in double precision the same stage goes further
(docs/benchmarks/state-convergence.md), so the report says so.
Each failed test is one plain sentence in :attr:`SeparationReport.warnings`, which the CLI,
the widget and the reconstruction file show.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "MIN_GAIN",
    "NoiseLevel",
    "MIN_NOISE_GAIN",
    "STILL_IMPROVING",
    "TREND_WINDOW",
    "SeparationReport",
    "expected_noise_loss",
    "noise_level",
    "poisson_half_deviance",
    "separation_report",
    "sqrt_poisson_mse",
    "state_spread_rad",
]

#: Smallest fraction of the mean object's misfit the states must explain.
MIN_GAIN = 0.1
#: How many times the noise-fitting decrease the states' decrease must be.
MIN_NOISE_GAIN = 3.0
#: Relative decrease over the last iterations above which a stage is "still improving".
STILL_IMPROVING = 0.02
#: Iterations over which the trend is measured.
TREND_WINDOW = 20


@dataclass(frozen=True)
class SeparationReport:
    """How far the object states of a stage moved apart, and whether the data support it.

    Attributes
    ----------
    stage
        Name of the stage.
    n_states
        Object states N.
    spread_rad
        rms of ``angle(O_n / Ō)`` over states, slices and the scanned area, rad.
    loss_states, loss_mean, loss_floor
        Objective with the states, with their mean object, and the counting-noise floor.
    gain
        Fraction of the mean object's misfit above the floor that the states explain: on the
        held-out patterns when there are some (then equal to ``held_gain``), else on the
        fitted ones.
    noise_gain
        The states' decrease over the decrease fitting noise alone would give (inf without
        noise).
    trend
        Relative decrease of the misfit over the last :data:`TREND_WINDOW` iterations.
    separated
        ``gain ≥ MIN_GAIN`` and ``noise_gain ≥ MIN_NOISE_GAIN``.
    held_gain
        ``(L_mean − L_states) / (L_mean − L_floor)`` on the held-out patterns (NaN when none):
        positive when the states describe what unseen patterns share, not each pattern's noise.
    converged
        ``trend < STILL_IMPROVING``.
    stalled_in
        The precision (``"single"``/``"double"``) in which the stage's line search stalled
        (no decrease along the gradient, the stage ended there; or failed searches in at
        least half of its last :data:`TREND_WINDOW` iterations); ``""``: it did not.
    """

    stage: str
    n_states: int
    spread_rad: float
    loss_states: float
    loss_mean: float
    loss_floor: float
    gain: float
    noise_gain: float
    trend: float
    separated: bool
    converged: bool
    held_gain: float = math.nan
    stalled_in: str = ""

    @property
    def warnings(self) -> list[str]:
        """Plain sentences for every test the states failed (empty when all passed)."""
        out = []
        if not self.separated:
            held = math.isfinite(self.held_gain)
            if held and self.held_gain <= 0 and self.loss_states < self.loss_mean:
                why = (
                    "they lower the loss of the fitted patterns but not of the held-out ones: "
                    "they fit counting noise"
                )
            elif self.noise_gain < MIN_NOISE_GAIN:
                why = (
                    f"the loss fell by only {self.noise_gain:.1f}× what fitting the counting "
                    "noise alone would give: the incoherent signal is at the noise floor"
                )
            elif held:
                why = (
                    f"on the held-out patterns they explain {100 * self.gain:.1f} % of what "
                    f"the mean object leaves unexplained (at least {100 * MIN_GAIN:.0f} % needed)"
                )
            else:
                why = (
                    f"they explain {100 * self.gain:.1f} % of what the mean object leaves "
                    f"unexplained (at least {100 * MIN_GAIN:.0f} % needed)"
                )
            out.append(
                f"stage '{self.stage}': the {self.n_states} object states did not separate: "
                f"{why}; their correlations are not measurements (more iterations, fewer "
                "probe modes in the first stage, or a higher dose)"
            )
        if self.stalled_in == "single":
            out.append(
                f"stage '{self.stage}': stopped at the limit of single precision (its line "
                "search found no decrease, or barely any), not of the data: the object states "
                "may be short of their "
                "full amplitude (smaller displacements, weaker correlations); run this stage "
                "with 'precision: double' (or resume it so)"
            )
        elif not self.converged and not math.isfinite(self.trend):
            out.append(
                f"stage '{self.stage}': too short to tell whether the object states stopped "
                f"improving (the trend is measured over {TREND_WINDOW} iterations): more "
                "iterations would change them"
            )
        elif not self.converged:
            out.append(
                f"stage '{self.stage}': the object states were still improving at the end "
                f"(misfit −{100 * self.trend:.1f} % over the last {TREND_WINDOW} iterations): "
                "more iterations would change them"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain (JSON-safe) dictionary; infinities and NaN as the strings ``"inf"``, ``"nan"``."""

        def safe(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return "nan" if math.isnan(v) else "inf"
            return v

        return {k: safe(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeparationReport:
        """Inverse of :meth:`to_dict`."""
        special = {"inf": math.inf, "nan": math.nan}
        return cls(**{k: special.get(v, v) if isinstance(v, str) else v for k, v in data.items()})


def state_spread_rad(obj: np.ndarray, region: tuple[slice, slice] | None = None) -> float:
    """rms phase difference (rad) between the states of ``obj`` and their mean object.

    Parameters
    ----------
    obj
        ``(N, S, H, W)`` complex object.
    region
        ``(rows, cols)`` slices of the area to measure (the scanned area); None: everywhere.

    Examples
    --------
    >>> o = np.ones((2, 1, 4, 4), complex)
    >>> o[0] *= np.exp(0.1j); o[1] *= np.exp(-0.1j)
    >>> round(state_spread_rad(o), 6)
    0.1
    """
    o = np.asarray(obj)
    if region is not None:
        o = o[..., region[0], region[1]]
    mean = o.mean(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        dphi = np.angle(o * np.conj(mean))
    dphi = dphi[np.isfinite(dphi)]
    return float(np.sqrt(np.mean(dphi**2))) if dphi.size else 0.0


def sqrt_poisson_mse(lam: np.ndarray) -> np.ndarray:
    """``E[(√N − √λ)²]`` for ``N ~ Poisson(λ)``, elementwise (exact to 1e-6 relative).

    ``= 2λ − 2√λ E[√N]``; tabulated by summing the distribution on a log grid of λ and
    interpolated in log λ; ``1/4 + 1/(64 λ)`` beyond λ = 1e4, ``2λ`` below 1e-6.

    Examples
    --------
    >>> np.round(sqrt_poisson_mse(np.array([1e-8, 1.0, 1e6])), 4)
    array([0.    , 0.4536, 0.25  ])
    """
    lam = np.asarray(lam, dtype=np.float64)
    return _tabulated("sqrt", lam, 0.25 + 1.0 / (64.0 * np.maximum(lam, 1e4)), 2 * lam)


def poisson_half_deviance(lam: np.ndarray) -> np.ndarray:
    """``E[N log(N/λ)]`` for ``N ~ Poisson(λ)`` (``0 log 0 = 0``), elementwise (exact to 1e-6
    relative): the mean of the Poisson loss term ``λ − N − N log(λ/N)`` at the truth, i.e.
    half the expected deviance.

    Tabulated as :func:`sqrt_poisson_mse`; ``1/2 + 1/(12λ) + 1/(12λ²)`` beyond λ = 1e4,
    ``λ log(1/λ)`` below 1e-6.

    Examples
    --------
    >>> np.round(poisson_half_deviance(np.array([1e-8, 1.0, 1e6])), 4)
    array([0.    , 0.5734, 0.5   ])
    """
    lam = np.asarray(lam, dtype=np.float64)
    big = np.maximum(lam, 1e4)
    small = np.clip(lam, 1e-300, 1e-6)
    return _tabulated(
        "deviance", lam, 0.5 + 1 / (12 * big) + 1 / (12 * big**2), -small * np.log(small)
    )


def _tabulated(kind: str, lam: np.ndarray, above: np.ndarray, below: np.ndarray) -> np.ndarray:
    """``kind``'s Poisson expectation at ``lam``: interpolated in log λ on its table between
    1e-6 and 1e4, ``above`` and ``below`` (the asymptotes) outside."""
    grid, table = _poisson_table(kind)
    inside = np.interp(np.log(np.clip(lam, 1e-6, 1e4)), np.log(grid), table)
    return np.where(lam > 1e4, above, np.where(lam < 1e-6, below, inside))


@functools.cache
def _poisson_table(kind: str) -> tuple[np.ndarray, np.ndarray]:
    grid = np.geomspace(1e-6, 1e4, 401)
    return grid, np.array([_poisson_expectation(kind, v) for v in grid])


def _poisson_expectation(kind: str, lam: float) -> float:
    """``E[(√N − √λ)²]`` (``"sqrt"``) or ``E[N log(N/λ)]`` (``"deviance"``), by summing the
    distribution."""
    from scipy.stats import poisson

    hi = int(lam + 12.0 * math.sqrt(lam) + 30)
    n = np.arange(hi + 1)
    pmf = poisson.pmf(n, lam)
    if kind == "sqrt":
        return float(2.0 * lam - 2.0 * math.sqrt(lam) * np.sum(pmf * np.sqrt(n)))
    k = n[1:].astype(np.float64)
    return float(np.sum(pmf[1:] * k * np.log(k / lam)))


def expected_noise_loss(loss: str, counts: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Loss (un-normalised) that Poisson counting noise alone gives at the truth.

    For the amplitude loss it is ``Σ E[(√n − √λ)²]`` over the pixels (:func:`sqrt_poisson_mse`:
    1/4 for λ ≫ 1, 2λ for λ ≪ 1); for the Poisson loss (half the deviance,
    :mod:`caviar_napari.core.loss`) ``Σ E[n log(n/λ)]`` (:func:`poisson_half_deviance`: 1/2 for
    λ ≫ 1, λ log(1/λ) for λ ≪ 1). λ is estimated by the counts themselves.

    Parameters
    ----------
    loss
        ``"gaussian"`` or ``"poisson"``.
    counts
        Measured counts (any shape).
    mask
        Pixels in the loss (broadcastable to ``counts``), or None.
    """
    lam = np.asarray(counts, dtype=np.float64)
    per_pixel = sqrt_poisson_mse(lam) if loss == "gaussian" else poisson_half_deviance(lam)
    if mask is not None:
        per_pixel = per_pixel * np.broadcast_to(mask, per_pixel.shape)
    return float(per_pixel.sum())


@dataclass(frozen=True)
class NoiseLevel:
    """Counting noise in loss units (normalised by the total measured intensity).

    Attributes
    ----------
    floor
        The loss counting noise alone gives at the truth.
    per_parameter
        The decrease of the loss per real parameter fitted to noise.
    held_floor
        The floor of the held-out patterns' loss (normalised by their own total).
    """

    floor: float = 0.0
    per_parameter: float = 0.0
    held_floor: float = 0.0


def noise_level(
    loss: str,
    mean_counts: np.ndarray,
    mask: np.ndarray,
    n_patterns: int,
    norm: float,
    is_counts: bool,
    n_held: int = 0,
    held_norm: float = 1.0,
) -> NoiseLevel:
    """The :class:`NoiseLevel` of a dataset; zero for data that are not counts.

    Parameters
    ----------
    loss
        The data loss in use.
    mean_counts
        ``(Ky, Kx)`` mean pattern (counts) on the probe window, FFT order.
    mask
        ``(Ky, Kx)`` loss mask, FFT order.
    n_patterns
        Patterns in the fit.
    norm
        The loss normaliser (total measured intensity of the fitted patterns in the mask).
    is_counts
        Whether the intensities are counts.
    n_held, held_norm
        Held-out patterns and their loss normaliser (0: none held out).
    """
    if not is_counts:
        return NoiseLevel()
    per_pattern = expected_noise_loss(loss, np.asarray(mean_counts, float), mask)
    floor = n_patterns * per_pattern / norm
    return NoiseLevel(
        floor=floor,
        per_parameter=(0.25 if loss == "gaussian" else 0.5) / norm,
        held_floor=n_held * per_pattern / held_norm if n_held else floor,
    )


def separation_report(
    *,
    stage: str,
    n_states: int,
    obj: np.ndarray,
    region: tuple[slice, slice] | None,
    loss_history: list[float],
    loss_states: float,
    loss_mean: float,
    loss_floor: float = 0.0,
    noise_per_parameter: float = 0.0,
    n_parameters: int = 0,
    held_losses: tuple[float, float] | None = None,
    held_floor: float | None = None,
    stalled_in: str = "",
) -> SeparationReport:
    """Build the :class:`SeparationReport` of a multi-state stage.

    Parameters
    ----------
    stage, n_states
        The stage's name and number of states.
    obj
        ``(N, S, H, W)`` final object.
    region
        Scanned area for the spread.
    loss_history
        The stage's objective per iteration (for the trend).
    loss_states, loss_mean, loss_floor
        Normalised objective with the states, with their mean object, and the noise floor.
    noise_per_parameter
        Normalised decrease of the loss per fitted real parameter when fitting noise (0 for
        noise-free data).
    n_parameters
        Real parameters the states add to the mean object.
    held_losses
        ``(L_states, L_mean)`` on the held-out patterns, or None.
    held_floor
        The noise floor of the held-out patterns' normalised loss (None: ``loss_floor``, which
        it equals when the patterns carry equal totals).
    stalled_in
        The precision in which the stage's line search stalled; ``""``: it did not.
    """
    misfit = max(loss_mean - loss_floor, 0.0)
    decrease = loss_mean - loss_states
    gain = decrease / misfit if misfit > 0 else 0.0
    noise_drop = noise_per_parameter * n_parameters
    noise_gain = decrease / noise_drop if noise_drop > 0 else math.inf
    if len(loss_history) > TREND_WINDOW:
        old, new = loss_history[-TREND_WINDOW - 1] - loss_floor, loss_history[-1] - loss_floor
        trend = (old - new) / old if old > 0 else 0.0
    else:
        trend = math.inf if len(loss_history) > 1 else 0.0
    held_gain = math.nan
    if held_losses is not None:
        held_states, held_mean = held_losses
        floor = loss_floor if held_floor is None else held_floor
        held_misfit = max(held_mean - floor, 0.0)
        held_gain = (held_mean - held_states) / held_misfit if held_misfit > 0 else 0.0
        gain = held_gain
    support = noise_gain >= MIN_NOISE_GAIN
    return SeparationReport(
        stage=stage,
        n_states=int(n_states),
        spread_rad=state_spread_rad(obj, region),
        loss_states=float(loss_states),
        loss_mean=float(loss_mean),
        loss_floor=float(loss_floor),
        gain=float(gain),
        noise_gain=float(noise_gain),
        trend=float(trend),
        separated=bool(gain >= MIN_GAIN and support),
        converged=bool(trend < STILL_IMPROVING),
        held_gain=float(held_gain),
        stalled_in=stalled_in,
    )
