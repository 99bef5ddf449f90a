"""Standard errors of correlations by resampling the object states (issue 13, conventions §4).

Every quantity of a CORR file (the Green's tensor's entries, B factors, ρ_nn, the rms
displacement, the uniform offset, LSM and CSM against a truth) is a function of the tensor of
eq. 2, so one mechanism serves them all: a **replica** is a weight vector ``w`` over the N object
states (``Σ w = 1``), its tensor is

    ``G_w = (1/s) Σ_slices [ Σ_n w_n u_n u_nᵀ − ū_w ū_wᵀ ]``,  ``ū_w = Σ_n w_n u_n``,

(displacements re-centred on the replica's own mean, as eq. 1 does), and any statistic is
recomputed from ``G_w``.  With uniform weights ``G_w`` is eq. 2 itself.

Resampling unit: the object state, **with all its slices**.  The states are the independent
draws of the thermal ensemble; the slices of one state are not (the depth resolution makes
neighbouring slices image the same atoms, and a specimen's slices are a fixed set of depths, not
a random sample of them).  Resampling states as whole clusters is valid whatever the correlation
between slices; resampling slices as well would count the slices' shared noise twice and add the
(fixed) differences between depths as if they were sampling error.  A two-level bootstrap is
therefore not used.

Methods (:class:`Resampling`):

``jackknife`` (default)
    The N delete-one replicas, ``var = (N−1)/N Σ_k (θ_k − θ̄)²``.  Deterministic (no random
    draws at all) and cheap (N replicas).
``bootstrap``
    ``replicas`` draws of N states with replacement from a seeded generator (numpy's PCG64, the
    same numbers on every machine and thread count), ``var = Σ_r (θ_r − θ̄)² / (R − 1)``.

Calibration with 10 states (``benchmarks/bench_correlation_errors.py``,
``docs/benchmarks/correlation-errors.md``; Gaussian displacements, 4000 datasets): the bootstrap
variance of a cross-covariance entry is 0.73 of the true sampling variance (its standard errors
are 15 % too small), the jackknife's 1.04–1.10 (4 % too large), the analytic Wishart estimate
with the unbiased plug-in 0.96–1.01; the coefficient of variation of the error itself is 0.42
(bootstrap), 0.43 (jackknife) and 0.35 (Wishart, which assumes Gaussian displacements).  The
jackknife is the default: the best calibrated of the distribution-free methods, and it does not
underestimate.  Significance is not judged from ``|value| / error`` (with 9 degrees of freedom
that ratio has heavy tails: the largest of a block's four entries exceeds 2 errors in 18 %
(jackknife) or 33 % (bootstrap) of independent blocks); :mod:`.correlation_significance` uses
exact tests with the degrees of freedom of :func:`effective_dof`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from caviar_napari.errors import InputError

__all__ = [
    "RESAMPLING_METHODS",
    "Resampling",
    "ReplicaErrors",
    "effective_dof",
    "replicate",
    "weighted_green",
]

#: Resampling methods (:class:`Resampling`).
RESAMPLING_METHODS = ("jackknife", "bootstrap")

#: A statistic of a replica: ``(G_w of the kept atoms, w)`` → named arrays.
Statistic = Callable[[np.ndarray, np.ndarray], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Resampling:
    """How replicas of the object states are drawn (validated on construction).

    Attributes
    ----------
    method
        ``"jackknife"`` or ``"bootstrap"`` (module docstring).
    replicas
        Bootstrap replicas (ignored by the jackknife, which has one per state).
    seed
        Seed of the bootstrap draws.
    """

    method: str = "jackknife"
    replicas: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in RESAMPLING_METHODS:
            raise InputError(
                f"error method must be one of {', '.join(RESAMPLING_METHODS)}, got {self.method!r}"
            )
        if isinstance(self.replicas, bool) or int(self.replicas) != self.replicas:
            raise InputError(f"bootstrap replicas must be an integer, got {self.replicas!r}")
        if self.method == "bootstrap" and self.replicas < 2:
            raise InputError(f"bootstrap needs at least 2 replicas, got {self.replicas}")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed:
            raise InputError(f"seed must be an integer, got {self.seed!r}")

    def weights(self, n_states: int) -> np.ndarray:
        """``(R, N)`` replica weights over the states, each row summing to 1.

        Raises
        ------
        InputError
            Fewer than 3 states (a delete-one replica needs two states left).
        """
        n = int(n_states)
        if n < 3:
            raise InputError(f"standard errors need at least 3 object states, got {n}")
        if self.method == "jackknife":
            w = np.full((n, n), 1.0 / (n - 1))
            np.fill_diagonal(w, 0.0)
            return w
        rng = np.random.default_rng(int(self.seed))
        draws = rng.integers(0, n, size=(int(self.replicas), n))
        w = np.zeros((int(self.replicas), n))
        np.add.at(w, (np.arange(int(self.replicas))[:, None], draws), 1.0 / n)
        return w

    def variance(
        self, sum_dev: np.ndarray, sum_sq_dev: np.ndarray, count: np.ndarray
    ) -> np.ndarray:
        """Variance of a statistic from the sums of its replicas' deviations from any fixed
        reference (``Σ d`` and ``Σ d²`` over ``count`` replicas); NaN where ``count < 2``."""
        count = np.asarray(count, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.maximum(sum_sq_dev - sum_dev**2 / count, 0.0)
            if self.method == "jackknife":
                var = spread * (count - 1.0) / count
            else:
                var = spread / (count - 1.0)
        return np.where(count >= 2, var, np.nan)


def weighted_green(u_A: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The tensor ``G_w`` of a replica (module docstring).

    Parameters
    ----------
    u_A
        ``(N, s, D)`` displacements (Å) per state and slice, dof last.
    weights
        ``(N,)`` state weights summing to 1.

    Returns
    -------
    numpy.ndarray
        ``(D, D)`` Å², averaged over the slices.
    """
    u = np.asarray(u_A, dtype=float)
    w = np.asarray(weights, dtype=float)
    n_slices = u.shape[1]
    mean = np.einsum("n,nsd->sd", w, u)
    second = np.einsum("nsd,nse->de", u * w[:, None, None], u)
    return (second - mean.T @ mean) / n_slices


@dataclass(frozen=True)
class ReplicaErrors:
    """A statistic's full-sample values and standard errors over the replicas.

    Attributes
    ----------
    values
        Name → value on all states (uniform weights).
    stderr
        Name → standard error (same shape; NaN where fewer than two replicas were finite).
    n_replicas
        Replicas drawn.
    """

    values: dict[str, np.ndarray]
    stderr: dict[str, np.ndarray]
    n_replicas: int


def replicate(u_A: np.ndarray, resampling: Resampling, statistic: Statistic) -> ReplicaErrors:
    """Evaluate ``statistic(G_w, w)`` on all states and on every replica; standard errors.

    Only running sums are kept (deviations from the full-sample value), so a statistic as large
    as the whole tensor costs no more memory than two copies of it.  Replicas where a value is
    not finite (e.g. a ratio with a zero denominator) are left out of that value's error.

    Parameters
    ----------
    u_A
        ``(N, s, D)`` displacements per state and slice (Å).
    resampling
        The replicas (:class:`Resampling`).
    statistic
        Maps the ``(D, D)`` tensor of a replica and its ``(N,)`` weights to named arrays.
    """
    u = np.asarray(u_A, dtype=float)
    n_states = u.shape[0]
    weights = resampling.weights(n_states)
    uniform = np.full(n_states, 1.0 / n_states)
    values = {
        k: np.asarray(v, dtype=float)
        for k, v in statistic(weighted_green(u, uniform), uniform).items()
    }
    sums = {k: np.zeros_like(v) for k, v in values.items()}
    squares = {k: np.zeros_like(v) for k, v in values.items()}
    counts = {k: np.zeros(v.shape) for k, v in values.items()}
    for w in weights:  # one replica at a time bounds the memory to a few tensors
        replica = statistic(weighted_green(u, w), w)
        for key, ref in values.items():
            dev = np.asarray(replica[key], dtype=float) - ref
            ok = np.isfinite(dev)
            dev = np.where(ok, dev, 0.0)
            sums[key] += dev
            squares[key] += dev * dev
            counts[key] += ok
    stderr = {k: np.sqrt(resampling.variance(sums[k], squares[k], counts[k])) for k in values}
    return ReplicaErrors(values=values, stderr=stderr, n_replicas=int(weights.shape[0]))


def effective_dof(u_A: np.ndarray) -> float:
    """Wishart degrees of freedom of the slice-averaged tensor, for the significance tests.

    One slice: ``N − 1`` (N states, their mean removed).  With ``s`` slices, the averaged tensor
    has the spread of ``(N − 1) / f`` degrees of freedom, ``f = (1/s²) Σ_st r̄_st²`` with
    ``r̄_st`` the correlation between the displacements of slices s and t over the states,
    averaged over the degrees of freedom (for Gaussian displacements the covariance of two
    slices' cross-covariance entries is ``r_st,a r_st,b`` times their variance).  Identical
    slices give ``N − 1``, independent ones ``s (N − 1)``; the result is kept in that range.

    Parameters
    ----------
    u_A
        ``(N, s, D)`` displacements per state and slice (mean over states removed).
    """
    u = np.asarray(u_A, dtype=float)
    n_states, n_slices = u.shape[:2]
    dof = float(n_states - 1)
    if n_slices == 1:
        return dof
    sd = np.sqrt(np.mean(u * u, axis=0))  # (s, D)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("nsd,ntd->std", u, u) / n_states / (sd[:, None] * sd[None, :])
    r_mean = np.nanmean(np.where(np.isfinite(r), r, np.nan), axis=-1)  # (s, s)
    if not np.all(np.isfinite(r_mean)):
        return dof
    f = float(np.sum(r_mean**2)) / n_slices**2
    return float(np.clip(dof / f, dof, n_slices * dof))
