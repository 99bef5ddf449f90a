"""Born–von Kármán force constants fitted to a displacement ensemble (issue 14; conventions §5).

A reconstruction has 10–20 object states.  Inverting a covariance estimated from so few samples
(eq. 6) is biased: the eigenvalues of a small-sample covariance spread apart.  Here the ensemble
is described by a handful of force constants instead, fitted by maximum likelihood.

Model and likelihood
--------------------
The parametrisation (symmetric bond tensors per orbit of the space group, acoustic sum rule
built in, central + transverse springs inside the family) is
:mod:`.force_constant_model`; the Gaussian (Wishart) likelihood of the displacements is
:mod:`.force_constant_likelihood`.  This module fits it and tests it.

Boundaries
----------
Displacements ``u = R − mean over states`` (per slice) are Gaussian with covariance
``k_B T Φ⁺``; with the mean estimated from the same N states, the scatter matrix
``S = Σ_(states, slices) u uᵀ`` is Wishart with ``ν = slices · (N − 1)`` degrees of freedom, so

    −2 log L = ν log det Σ + tr(Σ⁻¹ S) + const.

Two descriptions of the field of view (``boundary``):

* ``"periodic"`` — the block of ``L1 × L2`` whole cells is one period of the crystal (exact for
  periodic simulations).  ``Σ`` is block-diagonal in q and, with ``S(q)`` the Fourier transform
  of the scatter on the commensurate grid,

      −2 log L = Σ_q [ −ν log det Φ̃(q) + tr(Φ̃(q) S(q)) / k_B T ] + const,

  a convex function of the force constants (``Φ̃`` is linear in them).  At Γ the two rigid
  translations (the null space of ``Φ̃(0)`` by the acoustic sum rule) are left out, which also
  removes any rigid shift of a state.
* ``"open"`` — the atoms are a window cut out of a larger crystal (a reconstruction's field of
  view): any set of atoms, whole cells or not (:func:`window_statistics`).  ``Σ`` is the
  window's block of the crystal's ``k_B T Φ⁺``, computed on a periodic crystal of
  ``crystal_cells`` (default: 4 times the window's extent, which stands for an infinite
  crystal), and the rigid translations of the window are projected out of data and model.
* ``"auto"`` — fit both (on a block of whole cells; a window that is not a block gets
  ``"open"``) and keep the one with the higher likelihood.  Both describe the same
  data (all displacements less the block's rigid translation) with the same parameters, so
  their likelihoods compare directly; with 10 states of a 6 × 6 block the difference in
  ``−2 log L`` is about 80 for periodic data and 170–280 for a window of a larger crystal.

The minimum is found by Newton's method (Fisher scoring for ``open``) with a backtracking line
search.  The covariance of the parameters is the inverse observed Fisher information
``2 H⁻¹`` (``H`` the Hessian of ``−2 log L``); a bootstrap over states gives a second error.
A likelihood-ratio test of ``N`` against ``N + 1`` shells (``2 Δ log L`` against χ² with the
number of added parameters) says whether more shells are needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.force_constant_likelihood import (
    DisplacementStatistics,
    OpenLikelihood,
    PeriodicLikelihood,
    displacement_statistics,
    window_statistics,
)
from caviar_napari.analysis.force_constant_model import (
    COMPONENTS,
    BondOrbit,
    ForceConstantModel,
    embed_parameters,
)
from caviar_napari.analysis.phonons import KB_EV_PER_K
from caviar_napari.errors import InputError

__all__ = [  # the model and the statistics are part of this entry point's API
    "BOUNDARIES",
    "COMPONENTS",
    "DEFAULT_ALPHA",
    "BondOrbit",
    "DisplacementStatistics",
    "ForceConstantFit",
    "ForceConstantModel",
    "ShellTest",
    "displacement_statistics",
    "fisher_draws",
    "fit_force_constants",
    "frequency_spread",
    "window_statistics",
]

BOUNDARIES: tuple[str, ...] = ("auto", "periodic", "open")

#: The open boundary's stand-in for an infinite crystal: this many times the window per axis.
OPEN_CRYSTAL_FACTOR = 4

#: Smallest stand-in crystal (cells per axis) for an open window.
OPEN_CRYSTAL_MIN = 24

#: Significance level of the likelihood-ratio test for a further shell.
DEFAULT_ALPHA = 0.01

#: Newton iterations at most, and the convergence threshold on the Newton decrement.
MAX_ITERATIONS = 100
DECREMENT_TOL = 1e-9


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShellTest:
    """Likelihood-ratio test of the fitted shells against one more shell.

    Attributes
    ----------
    shells
        Shells of the fitted model N.
    statistic
        ``2 (log L_(N+1) − log L_N)`` (NaN when the test could not be made).
    dof
        Parameters added by shell N + 1.
    p_value
        ``P(χ²_dof ≥ statistic)`` under the hypothesis that N shells hold the truth.
    alpha
        Significance level.
    note
        Why the test could not be made ("" when it was).
    """

    shells: int
    statistic: float
    dof: int
    p_value: float
    alpha: float
    note: str = ""

    @classmethod
    def of_fit(cls, shells: int, fit: Any) -> ShellTest:
        """The test recorded in a DISP file's force-constant fit (``DispersionData``'s
        ``force_constants``: ``next_shell_statistic``, ``next_shell_dof``, …)."""
        return cls(
            shells,
            fit.next_shell_statistic,
            fit.next_shell_dof,
            fit.next_shell_p_value,
            fit.alpha,
            fit.next_shell_note,
        )

    @property
    def more_shells_needed(self) -> bool:
        """True when N shells are rejected at level ``alpha``."""
        return bool(np.isfinite(self.p_value) and self.p_value < self.alpha)

    def summary(self) -> str:
        """One line for the command line and the dock."""
        if not np.isfinite(self.p_value):
            return (
                f"goodness of fit ({self.shells} vs {self.shells + 1} shells): not tested, "
                f"{self.note}"
            )
        verdict = (
            f"more shells needed (p < {self.alpha:g}): refit with --shells {self.shells + 1}"
            if self.more_shells_needed
            else f"{self.shells} shells suffice"
        )
        return (
            f"goodness of fit, likelihood ratio {self.shells} vs {self.shells + 1} shells: "
            f"2ΔlogL = {self.statistic:.2f} on {self.dof} dof, p = {self.p_value:.3g}; {verdict}"
        )


@dataclass(frozen=True, eq=False)
class ForceConstantFit:
    """Maximum-likelihood force constants and their errors.

    Attributes
    ----------
    model
        The parametrisation.
    theta
        ``(p,)`` fitted parameters, eV/Å².
    covariance
        ``(p, p)`` inverse observed Fisher information, (eV/Å²)².
    theta_bootstrap
        ``(n_boot, p)`` refits on bootstrap replicas of the states (empty: none).
    neg2_log_likelihood
        ``−2 log L`` at the optimum, up to a constant that depends only on the data (the same
        for both boundaries).
    nu
        Degrees of freedom of the scatter, ``slices (N − 1)``.
    boundary
        ``"periodic"`` or ``"open"`` (the one chosen, for ``"auto"``).
    boundary_comparison
        ``−2 log L`` of the periodic minus that of the open description (``"auto"``; NaN
        when only one was fitted): negative favours periodic.
    crystal_cells
        The periodic crystal the window was cut from (``open``), or the block itself.
    iterations
        Newton iterations of the main fit.
    shell_test
        Likelihood-ratio test against one more shell, or None when not asked for.
    """

    model: ForceConstantModel
    theta: np.ndarray
    covariance: np.ndarray
    theta_bootstrap: np.ndarray
    neg2_log_likelihood: float
    nu: int
    boundary: str
    boundary_comparison: float
    crystal_cells: tuple[int, int]
    iterations: int
    shell_test: ShellTest | None

    @property
    def err_fisher(self) -> np.ndarray:
        """``(p,)`` standard errors from the curvature of the likelihood, eV/Å²."""
        return np.sqrt(np.clip(np.diag(self.covariance), 0, None))

    @property
    def err_bootstrap(self) -> np.ndarray:
        """``(p,)`` standard deviation over the bootstrap refits (NaN without them), eV/Å²."""
        if self.theta_bootstrap.shape[0] < 2:
            return np.full(self.theta.size, np.nan)
        return self.theta_bootstrap.std(axis=0, ddof=1)


def _likelihood(
    model: ForceConstantModel,
    stats: DisplacementStatistics,
    kT: float,
    boundary: str,
    crystal_cells: tuple[int, int] | None,
) -> PeriodicLikelihood | OpenLikelihood:
    if boundary == "periodic":
        return PeriodicLikelihood(model, stats, kT)
    return OpenLikelihood(model, stats, kT, _crystal(stats.cells, crystal_cells))


def _crystal(cells: tuple[int, int], crystal_cells: tuple[int, int] | None) -> tuple[int, int]:
    if crystal_cells is None:
        return tuple(max(OPEN_CRYSTAL_MIN, OPEN_CRYSTAL_FACTOR * c) for c in cells)
    M = tuple(int(c) for c in crystal_cells)
    if len(M) != 2 or M[0] < cells[0] or M[1] < cells[1]:
        raise InputError(
            f"crystal_cells {tuple(crystal_cells)} must be at least the extent of the fitted "
            f"atoms, {cells} cells"
        )
    return M


def _start(model: ForceConstantModel, lik) -> np.ndarray:
    """Isotropic springs on the shortest shells that hold the lattice, scaled to the data."""
    for shells in range(1, model.shells + 1):
        theta = np.zeros(model.n_params)
        for p, (o, c) in enumerate(zip(model.parameter_orbit, model.parameter_component)):
            if model.orbits[o].shell <= shells and c < 2:
                theta[p] = 1.0
        f, _, _ = lik.evaluate(theta, derivatives=False)
        if np.isfinite(f):
            data = lik.quadratic(theta)
            return theta * (lik.nu * lik.n_dims / data)  # the best scale along θ
    raise InputError(
        f"springs of {model.shells} shell(s) do not hold this lattice together (a mode of zero "
        "frequency remains): use more shells"
    )


def _minimise(
    lik, theta: np.ndarray, max_iterations: int | None = None
) -> tuple[np.ndarray, float, int]:
    """Damped Newton (Fisher scoring) with backtracking; returns (θ, f, iterations).

    With ``max_iterations`` given, stops there without complaint (a fixed number of steps).
    """
    f, grad, hess = lik.evaluate(theta)
    if not np.isfinite(f):
        raise InputError("internal: the force-constant fit started outside the stable set")
    limit = MAX_ITERATIONS if max_iterations is None else int(max_iterations)
    for it in range(1, limit + 1):
        w, v = np.linalg.eigh(hess)
        if w.min() <= 1e-12 * max(w.max(), 1e-300):
            raise InputError(
                "the force constants are not determined by these data (the information matrix "
                "is singular): the field of view is too small for this many shells, or the "
                "states do not vary"
            )
        step = v @ ((v.T @ grad) / w)
        decrement = float(grad @ step)
        if decrement < DECREMENT_TOL:
            return theta, f, it
        t = 1.0
        while True:
            trial = theta - t * step
            f_trial, _, _ = lik.evaluate(trial, derivatives=False)
            if np.isfinite(f_trial) and f_trial <= f - 0.25 * t * decrement:
                break
            t *= 0.5
            if t < 1e-12:
                return theta, f, it  # no further decrease possible at machine precision
        theta = trial
        if it == limit and max_iterations is not None:
            return theta, f_trial, it  # no derivatives needed after the last step
        f, grad, hess = lik.evaluate(theta)
    raise InputError(  # pragma: no cover - Newton on a smooth convex problem converges
        f"the force-constant fit did not converge in {MAX_ITERATIONS} iterations"
    )


def fit_force_constants(
    stats: DisplacementStatistics,
    model: ForceConstantModel,
    temperature_K: float,
    *,
    boundary: str = "auto",
    crystal_cells: tuple[int, int] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    test_next_shell: bool = True,
    alpha: float = DEFAULT_ALPHA,
) -> ForceConstantFit:
    """Maximum-likelihood force constants of a displacement ensemble (module docstring).

    Parameters
    ----------
    stats
        Centred displacements of a block of whole cells (:func:`displacement_statistics`) or of
        any window of atoms (:func:`window_statistics`; open boundary only).
    model
        The parametrisation (:meth:`ForceConstantModel.build` of the same crystal).
    temperature_K
        Temperature, K.
    boundary
        ``"periodic"`` (the block is one period of the crystal), ``"open"`` (a window of a
        larger crystal) or ``"auto"`` (both fitted, the likelier kept; open alone when the
        sites are not a block of whole cells).
    crystal_cells
        ``open``: the periodic crystal the window is cut from; default: 4 × the window, which
        gives the constants of an infinite crystal to within 2 % of their statistical error
        (0.3 % of their value; checked against 32 × for 4–10-cell windows).
    bootstrap
        Refits on this many bootstrap replicas of the states (0: none).
    seed
        Seed of the bootstrap draws.
    test_next_shell
        Also fit ``model.shells + 1`` shells for the likelihood-ratio test.
    alpha
        Significance level of that test.

    Returns
    -------
    ForceConstantFit

    Raises
    ------
    InputError
        An unknown boundary, a block too small for the shells, or too few states.
    """
    if boundary not in BOUNDARIES:
        raise InputError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if stats.n_basis != model.n_basis:
        raise InputError(f"data have {stats.n_basis} basis atoms, the model {model.n_basis}")
    t = float(temperature_K)
    if not (math.isfinite(t) and t > 0):
        raise InputError(f"temperature_K must be > 0 K, got {temperature_K!r}")
    kT = KB_EV_PER_K * t
    fits, failures = {}, {}
    if boundary == "auto":
        names = ("periodic", "open") if stats.block is not None else ("open",)
    else:
        names = (boundary,)
    for name in names:
        try:
            lik = _likelihood(model, stats, kT, name, crystal_cells)
            theta, f, iterations = _minimise(lik, _start(model, lik))
        except InputError as exc:
            failures[name] = exc
            continue
        fits[name] = (lik, theta, f + lik.offset, iterations)
    if not fits:
        raise failures.get("open", next(iter(failures.values())))
    boundary = min(fits, key=lambda name: fits[name][2])
    lik, theta, f, iterations = fits[boundary]
    comparison = fits["periodic"][2] - fits["open"][2] if len(fits) == 2 else math.nan
    covariance = 2.0 * np.linalg.inv(_information(lik, theta))

    replicas = _bootstrap(lik, stats, theta, int(bootstrap), seed) if bootstrap > 0 else []

    shell_test = None
    if test_next_shell:
        shell_test = _shell_test(model, stats, kT, boundary, crystal_cells, theta, f, alpha)
    return ForceConstantFit(
        model=model,
        theta=theta,
        covariance=0.5 * (covariance + covariance.T),
        theta_bootstrap=np.array(replicas).reshape(-1, model.n_params),
        neg2_log_likelihood=f,
        nu=stats.nu,
        boundary=boundary,
        boundary_comparison=comparison,
        crystal_cells=stats.cells if boundary == "periodic" else lik.crystal,
        iterations=iterations,
        shell_test=shell_test,
    )


def _information(lik: PeriodicLikelihood | OpenLikelihood, theta: np.ndarray) -> np.ndarray:
    """The observed information (Hessian of ``−2 log L``) at the optimum; the expected one if
    the observed is not positive definite there (a fit stopped short of the minimum)."""
    observed = lik.observed_hessian(theta)
    try:
        np.linalg.cholesky(observed)
    except np.linalg.LinAlgError:
        return lik.evaluate(theta)[2]
    return observed


def _bootstrap(
    lik: PeriodicLikelihood | OpenLikelihood,
    stats: DisplacementStatistics,
    theta: np.ndarray,
    n_boot: int,
    seed: int,
) -> list[np.ndarray]:
    """Parameters refitted on replicas of the states drawn with replacement.

    Periodic blocks are refitted fully (warm-started at θ̂).  Open windows, whose likelihood is
    costlier, take two Fisher-scoring steps: the first from θ̂ for all replicas at once
    (:meth:`OpenLikelihood.one_step`), the second from there with each replica's own
    curvature (a full refit moves on by about 1 % of the first step).
    """
    rng = np.random.default_rng(seed)
    n_states = stats.u.shape[0]
    draws = rng.integers(0, n_states, size=(n_boot, n_states))
    reps = []
    for draw in draws:  # replicas of the states
        reps.append(stats.with_displacements(stats.u[draw]))
    open_window = isinstance(lik, OpenLikelihood)
    starts = lik.one_step(theta, reps) if open_window else [theta] * len(reps)
    out = []
    for rep, start in zip(reps, starts):  # one refit (or one more step) per replica
        lik.set_data(rep)
        if not np.isfinite(lik.evaluate(start, derivatives=False)[0]):
            start = theta  # the first step left the stable set: step from θ̂ instead
        try:
            out.append(_minimise(lik, start.copy(), 1 if open_window else None)[0])
        except InputError:
            continue  # a replica with too few distinct states: left out
    lik.set_data(stats)
    return out


def _shell_test(
    model: ForceConstantModel,
    stats: DisplacementStatistics,
    kT: float,
    boundary: str,
    crystal_cells: tuple[int, int] | None,
    theta: np.ndarray,
    f: float,
    alpha: float,
) -> ShellTest:
    from scipy import stats as sps

    bigger = ForceConstantModel.build(
        model.lattice_vectors_A,
        model.basis_A,
        model.types,
        model.shells + 1,
        tolerance_A=model.tolerance_A,
        operations=model.operations,
    )
    dof = bigger.n_params - model.n_params
    try:
        lik = _likelihood(bigger, stats, kT, boundary, crystal_cells)
        _, f_big, _ = _minimise(lik, embed_parameters(model, theta, bigger))
        f_big += lik.offset
    except InputError as exc:
        return ShellTest(model.shells, math.nan, dof, math.nan, alpha, note=str(exc))
    statistic = max(0.0, f - f_big)
    return ShellTest(model.shells, statistic, dof, float(sps.chi2.sf(statistic, dof)), alpha)


def frequency_spread(
    model: ForceConstantModel, thetas: np.ndarray, q_frac: ArrayLike, masses_amu: ArrayLike
) -> np.ndarray:
    """Standard deviation of the frequencies over parameter vectors ``(n, p)``: ``(..., 2κ)``."""
    if thetas.shape[0] < 2:
        return np.full((*np.shape(q_frac)[:-1], 2 * model.n_basis), np.nan)
    return model.frequencies_THz(thetas, q_frac, masses_amu).std(axis=0, ddof=1)


def fisher_draws(fit: ForceConstantFit, n: int = 400, seed: int = 0) -> np.ndarray:
    """``(n, p)`` parameter vectors drawn from ``N(θ̂, covariance)`` (to propagate the Fisher
    errors to frequencies; seeded, eigenvector-free: Cholesky of the covariance)."""
    rng = np.random.default_rng(seed)
    cov = fit.covariance
    jitter = 1e-12 * max(float(np.max(np.abs(np.diag(cov)))), 1e-300)
    chol = np.linalg.cholesky(cov + jitter * np.eye(fit.theta.size))
    return fit.theta + rng.standard_normal((int(n), fit.theta.size)) @ chol.T
