"""Quasi-Newton optimisation over dictionaries of complex and real blocks.

The variables of a reconstruction are a dict of *blocks* (``"object"``, ``"probe"``, ``"tilt"``),
complex or real arrays of any shape, on the CPU (numpy) or the GPU (cupy).

Gradients
    The objective ``fun(x) -> (f, g)`` returns for complex blocks the Wirtinger gradient
    ``g = ∂f/∂z*`` (so ``df = 2 Re⟨g, dz⟩``) and for real blocks the ordinary derivative
    (``df = ⟨g, dx⟩``). Internally every block is treated as real pairs: the real gradient of a
    complex block is ``G = 2g`` and the inner product is ``⟨a, b⟩ = Re Σ conj(a)·b`` — that is the
    ``2 Re⟨g, dz⟩`` of conventions §2.

Per-block scaling (diagonal preconditioner)
    Blocks' gradients differ by orders of magnitude (an object of ~10⁶ unit-modulus pixels, a
    probe of total power = counts per pattern, a tilt in mrad). The optimiser works in scaled
    variables ``u_b = z_b / d_b`` with one positive scalar ``d_b`` per block, estimated once from
    the first gradient::

        d_b² = initial_step · max(‖z_b‖, typical_b·sqrt(n_b)) / ‖G_b‖

    so that a unit step along ``−∇_u f`` changes every block by the same *relative* amount
    ``initial_step`` (``typical_b`` is a per-element magnitude for blocks that start at zero,
    e.g. a tilt of 1 mrad). A block whose first-order effect ``‖z_b‖·‖G_b‖`` is below
    ``GRADIENT_FLOOR`` of the largest block's (a tilt over a still featureless object has a zero
    gradient) is scaled as if it had that effect, so its first steps stay bounded. The scales are
    then frozen, so that the L-BFGS curvature pairs stay consistent, until a block's gradient
    norm grows by ``RESCALE_GROWTH`` (the tilt becomes measurable once the object has
    structure): then they are estimated again and the memory is cleared. Scales and reference
    norms are part of the exported memory.

    *State blocks* (``state_blocks``, e.g. the object ``(N, S, H, W)`` whose axis 0 indexes
    interchangeable object states) get two scales: one for the mean over the states and one for
    the deviations from it (``D = d_mean Π_mean + d_dev (I − Π_mean)``, both projections
    orthogonal, so ``D`` is symmetric positive definite). The data constrain the mean to first
    order but the deviations only to second order (their cross terms cancel in the mean over
    states), so their gradients are orders of magnitude smaller; a common scale would leave the
    states almost frozen at their initial noise.

Block-diagonal ``H₀``
    The scales above are frozen, but the curvature of the parts drifts apart as the run goes on:
    in the object-state stage the mean object is nearly converged (large positive curvature)
    while the state deviations start at a saddle (the identical-states point, where the data
    ask for *more* incoherence: small, negative curvature). One ``γ = sᵀy / yᵀy`` over all
    variables is set by the stiff mean and makes the deviation steps tiny, so the states grow
    out of their start noise over thousands of iterations (on exact-model data: a
    nearest-neighbour CSM of 0.61 after 300 iterations and 0.90 after 1000 with one ``γ``,
    0.99 after 300 with one ``γ`` per part). Each part therefore gets its own ``γ_b``; the
    absolute value of ``s_bᵀy_b`` is used, i.e. a step of the size of the inverse curvature
    *magnitude* along a direction of negative curvature (as saddle-free Newton methods do),
    which the line search then extends or shortens. ``H₀`` stays symmetric positive definite.

Methods
    :class:`LBFGS` — limited-memory BFGS (two-loop recursion) with a block-diagonal initial
    inverse Hessian ``H₀ = ⊕_b γ_b I_b``, ``γ_b = |s_bᵀy_b| / y_bᵀy_b`` from the newest pair
    restricted to part ``b`` (every block, and the mean and deviation parts of a state block
    separately), and a strong-Wolfe line search (Nocedal & Wright, algorithms 3.5/3.6,
    cubic interpolation). When the direction is not a descent direction, or the line search
    fails, the memory is cleared and a gradient-descent step with backtracking is taken instead
    (reported in :attr:`StepInfo.method`). :class:`GradientDescent` — preconditioned steepest
    descent with Armijo backtracking; the accepted step grows ×2 for the next iteration.

Exact resume
    :meth:`export_state` returns plain numpy arrays and floats (scales, the (s, y) pairs, step
    sizes); :meth:`import_state` restores them, so that a resumed run continues bit-for-bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from caviar_napari.core.history import PairStore
from caviar_napari.errors import InputError

Blocks = dict[str, Any]
Objective = Callable[[Blocks], tuple[float, Blocks]]

__all__ = ["GradientDescent", "LBFGS", "StepInfo", "make_optimiser"]

#: A block whose first-order effect on the loss (‖z_b‖·‖G_b‖) is below this fraction of the
#: largest block's is scaled as if its gradient were that large (bounded first steps).
GRADIENT_FLOOR = 1e-10
#: Scales are re-estimated (and the L-BFGS memory cleared) when a block's gradient norm grows
#: beyond this factor of its value at the last estimate.
RESCALE_GROWTH = 100.0


def _dot(a: Any, b: Any, xp: ModuleType) -> float:
    """Real inner product ``Re Σ conj(a)·b``, accumulated in float64."""
    if xp.iscomplexobj(a) or xp.iscomplexobj(b):
        a = xp.asarray(a)
        b = xp.asarray(b)
        s = xp.sum(a.real * b.real, dtype=np.float64) + xp.sum(a.imag * b.imag, dtype=np.float64)
    else:
        s = xp.sum(a * b, dtype=np.float64)
    return float(s)


@dataclass
class StepInfo:
    """What one optimiser step did.

    Attributes
    ----------
    method
        ``"lbfgs"``, ``"gd"`` or ``"gd-fallback"`` (L-BFGS direction rejected), ``"stalled"``
        (no decrease found: the variables are unchanged).
    step
        Accepted step length along the (scaled) search direction.
    n_evals
        Objective evaluations used by the step.
    """

    method: str
    step: float
    n_evals: int


class _Base:
    """Shared machinery: block bookkeeping, scaling, exported state."""

    kind = "base"

    def __init__(
        self,
        *,
        xp: ModuleType = np,
        initial_step: float = 0.1,
        typical: Mapping[str, float] | None = None,
        max_evals: int = 20,
        state_blocks: Collection[str] = (),
    ) -> None:
        if not initial_step > 0:
            raise InputError(f"initial_step must be positive, got {initial_step!r}")
        self.xp = xp
        self.initial_step = float(initial_step)
        self.typical = dict(typical or {})
        self.max_evals = int(max_evals)
        self.state_blocks = frozenset(state_blocks)
        self.scale: dict[str, float] = {}
        self.scale_dev: dict[str, float] = {}
        self.gref: dict[str, float] = {}

    # ------------------------------------------------------------------ real-pair views
    def _scaled(self, k: str, v: Any) -> Any:
        """Apply the (symmetric, positive) scaling ``D_k`` of block ``k`` to ``v``."""
        if k in self.scale_dev:
            m = v.mean(axis=0, keepdims=True)
            return v * self.scale_dev[k] + m * (self.scale[k] - self.scale_dev[k])
        return v * self.scale[k]

    def _real_grad(self, x: Blocks, g: Blocks) -> Blocks:
        """Real gradient (2g for complex blocks), in the scaled variables: ``D_b G_b``."""
        out = {}
        for k in x:
            factor = 2.0 if self.xp.iscomplexobj(x[k]) else 1.0
            out[k] = self._scaled(k, g[k] * factor)
        return out

    def _dot(self, a: Blocks, b: Blocks) -> float:
        # in a fixed block order: a history read back from a file lists its blocks
        # alphabetically, and a resumed run must add the same numbers in the same order
        return sum(_dot(a[k], b[k], self.xp) for k in sorted(a))

    def _block_norms(self, k: str, z: Any, g: Any) -> list[tuple[float, float]]:
        """``[(‖z‖, ‖G‖)]`` of the block, or of its mean and deviation parts (state blocks)."""
        xp = self.xp
        factor = 2.0 if xp.iscomplexobj(z) else 1.0
        n = int(np.prod(z.shape)) if z.ndim else 1
        typical = self.typical.get(k, 0.0) * math.sqrt(n)
        if k in self.state_blocks and z.ndim and z.shape[0] > 1:
            ns = z.shape[0]
            zm = z.mean(axis=0, keepdims=True)
            gm = g.mean(axis=0, keepdims=True)
            zd, gd = z - zm, g - gm
            return [
                (
                    max(math.sqrt(ns * _dot(zm, zm, xp)), typical) or math.sqrt(n),
                    factor * math.sqrt(ns * _dot(gm, gm, xp)),
                ),
                (math.sqrt(_dot(zd, zd, xp)), factor * math.sqrt(_dot(gd, gd, xp))),
            ]
        znorm = max(math.sqrt(_dot(z, z, xp)), typical) or math.sqrt(n)
        return [(znorm, factor * math.sqrt(_dot(g, g, xp)))]

    def _grad_norm(self, k: str, g: Any) -> float:
        return math.sqrt(_dot(g[k], g[k], self.xp))

    def _needs_rescale(self, x: Blocks, g: Blocks) -> bool:
        if not self.scale or set(self.scale) != set(x):
            return True
        return any(self._grad_norm(k, g) > RESCALE_GROWTH * self.gref[k] for k in x)

    def _ensure_scale(self, x: Blocks, g: Blocks) -> bool:
        """(Re-)estimate the block scales when needed; returns True when it did."""
        if not self._needs_rescale(x, g):
            return False
        norms = {k: self._block_norms(k, x[k], g[k]) for k in x}
        finite = [z * gn for parts in norms.values() for z, gn in parts if math.isfinite(gn)]
        leading = max(finite, default=0.0)  # first-order loss change of a unit relative step
        self.scale, self.scale_dev, self.gref = {}, {}, {}
        for k, parts in norms.items():
            scales = []
            for znorm, gnorm in parts:
                floor = GRADIENT_FLOOR * leading / znorm if znorm > 0 else 0.0
                gnorm = max(gnorm, floor) if math.isfinite(gnorm) else floor
                if znorm > 0 and gnorm > 0:
                    scales.append(math.sqrt(self.initial_step * znorm / gnorm))
                else:
                    scales.append(scales[0] if scales else math.sqrt(self.initial_step))
            self.scale[k] = scales[0]
            if len(scales) == 2:
                self.scale_dev[k] = scales[1]
            self.gref[k] = max(self._grad_norm(k, g), GRADIENT_FLOOR * leading / parts[0][0])
        return True

    def _move(self, x: Blocks, p_u: Blocks, alpha: float) -> Blocks:
        """``x + α D p_u`` (``p_u`` a direction in scaled variables)."""
        return {k: x[k] + alpha * self._scaled(k, p_u[k]).astype(x[k].dtype, copy=False) for k in x}

    def _evaluate(self, fun: Objective, x: Blocks) -> tuple[float, Blocks]:
        f, g = fun(x)
        f = float(f)
        if not math.isfinite(f):
            f = math.inf
        return f, g

    def _backtrack(
        self, fun: Objective, x: Blocks, f: float, gu: Blocks, p_u: Blocks, alpha: float
    ) -> tuple[Blocks, float, Blocks, float, int] | None:
        """Armijo backtracking along ``p_u`` from step ``alpha``; None when nothing decreases."""
        dphi0 = self._dot(gu, p_u)
        for n in range(1, self.max_evals + 1):
            xa = self._move(x, p_u, alpha)
            fa, ga = self._evaluate(fun, xa)
            if fa <= f + 1e-4 * alpha * dphi0:
                return xa, fa, ga, alpha, n
            alpha *= 0.5
        return None

    # ------------------------------------------------------------------ state export
    def _export_common(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for k, v in self.scale.items():
            d[f"scale/{k}"] = float(v)
        for k, v in self.scale_dev.items():
            d[f"scale_dev/{k}"] = float(v)
        for k, v in self.gref.items():
            d[f"gref/{k}"] = float(v)
        return d

    def _import_common(self, state: Mapping[str, Any]) -> None:
        kind = str(state.get("kind", ""))
        if kind != self.kind:
            raise InputError(f"optimiser state is of kind {kind!r}, expected {self.kind!r}")
        self.scale = {
            k.split("/", 1)[1]: float(v) for k, v in state.items() if k.startswith("scale/")
        }
        self.scale_dev = {
            k.split("/", 1)[1]: float(v) for k, v in state.items() if k.startswith("scale_dev/")
        }
        self.gref = {
            k.split("/", 1)[1]: float(v) for k, v in state.items() if k.startswith("gref/")
        }


class GradientDescent(_Base):
    """Preconditioned gradient descent with Armijo backtracking.

    Each step moves along ``−D²G`` (``D`` the per-block scales) from the last accepted step
    length × 2 (start: 1, i.e. a relative change ``initial_step`` per block), halving until the
    sufficient-decrease condition holds.
    """

    kind = "gd"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.step_length = 1.0

    def reset(self) -> None:
        """Forget the step length learnt so far (start again from 1)."""
        self.step_length = 1.0

    def step(
        self, fun: Objective, x: Blocks, f: float, g: Blocks
    ) -> tuple[Blocks, float, Blocks, StepInfo]:
        """One iteration from ``x`` (with ``f, g = fun(x)``); returns the new point and info."""
        self._ensure_scale(x, g)
        gu = self._real_grad(x, g)
        p_u = {k: -v for k, v in gu.items()}
        res = self._backtrack(fun, x, f, gu, p_u, self.step_length)
        if res is None:
            self.step_length = 1.0
            return x, f, g, StepInfo("stalled", 0.0, self.max_evals)
        xa, fa, ga, alpha, n = res
        self.step_length = 2.0 * alpha
        return xa, fa, ga, StepInfo("gd", alpha, n)

    def change_variables(self, block: str, isometry: Callable[[Any], Any]) -> None:
        """Nothing to do: gradient descent keeps no memory of past steps (see
        :meth:`LBFGS.change_variables`)."""

    def export_state(self) -> dict[str, Any]:
        """Plain numpy/float state for exact resume (see :meth:`import_state`)."""
        d = self._export_common()
        d["step_length"] = float(self.step_length)
        return d

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`export_state` returned."""
        self._import_common(state)
        self.step_length = float(state["step_length"])


class LBFGS(_Base):
    """Limited-memory BFGS with a strong-Wolfe line search and per-block scaling.

    Parameters
    ----------
    memory
        Number of (s, y) pairs kept.
    c1, c2
        Wolfe constants (sufficient decrease, curvature), ``0 < c1 < c2 < 1``.
    xp
        Array module of the blocks (numpy or cupy).
    initial_step
        Relative change per block of the first (unit) step, see the module notes.
    typical
        Per-element magnitude of blocks that may start at zero, e.g. ``{"tilt": 1.0}``.
    max_evals
        Most objective evaluations per line search.
    state_blocks
        Blocks whose axis 0 indexes interchangeable states (separate mean/deviation scales).
    history
        Where the (s, y) pairs live: ``device``, ``host`` or ``half``
        (:class:`caviar_napari.core.history.PairStore`).
    """

    kind = "lbfgs"

    def __init__(
        self,
        memory: int = 10,
        c1: float = 1e-4,
        c2: float = 0.9,
        history: str = "device",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.store = PairStore(history, self.xp)
        if int(memory) < 1:
            raise InputError(f"L-BFGS memory must be ≥ 1, got {memory!r}")
        if not 0 < c1 < c2 < 1:
            raise InputError(f"Wolfe constants need 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
        self.memory = int(memory)
        self.c1 = float(c1)
        self.c2 = float(c2)
        self.s: list[Blocks] = []
        self.y: list[Blocks] = []
        self.gd_step = 1.0

    # ------------------------------------------------------------------ two-loop recursion
    def _direction(self, gu: Blocks) -> Blocks:
        q = {k: v.copy() for k, v in gu.items()}
        alphas = []
        load = self.store.load
        rhos = [1.0 / self._dot(load(y), load(s)) for s, y in zip(self.s, self.y)]
        for s, y, rho in zip(reversed(self.s), reversed(self.y), reversed(rhos)):
            s, y = load(s), load(y)
            a = rho * self._dot(s, q)
            alphas.append(a)
            for k in q:
                q[k] -= a * y[k]
        r = self._initial_hessian(q)
        for s, y, rho, a in zip(self.s, self.y, rhos, reversed(alphas)):
            s, y = load(s), load(y)
            b = rho * self._dot(y, r)
            for k in r:
                r[k] += (a - b) * s[k]
        return {k: -v for k, v in r.items()}

    def _part_gammas(self, k: str, s: Any, y: Any, fallback: float) -> tuple[float, float]:
        """``(γ_mean, γ_deviation)`` of block ``k`` (equal for a block without states).

        The deviation parts are formed explicitly (one pair of temporaries at a time) rather
        than by subtracting the mean's share from the block's products: the deviations'
        curvature can be many orders of magnitude below the mean's.
        """

        def gamma(sy: float, yy: float) -> float:
            sy = abs(sy)
            return sy / yy if yy > 0 and sy > 0 else fallback

        xp = self.xp
        if not (k in self.state_blocks and s.ndim and s.shape[0] > 1):
            g = gamma(_dot(s, y, xp), _dot(y, y, xp))
            return g, g
        n = s.shape[0]
        s_mean, y_mean = s.mean(axis=0, keepdims=True), y.mean(axis=0, keepdims=True)
        g_mean = gamma(n * _dot(s_mean, y_mean, xp), n * _dot(y_mean, y_mean, xp))
        y_dev = y - y_mean
        yy_dev = _dot(y_dev, y_dev, xp)
        sy_dev = _dot(s - s_mean, y_dev, xp)
        del y_dev
        return g_mean, gamma(sy_dev, yy_dev)

    def _initial_hessian(self, q: Blocks) -> Blocks:
        """``H₀ q`` with the block-diagonal ``H₀ = ⊕ γ_b I`` of the newest pair (module notes)."""
        if not self.s:
            return dict(q)
        s_new, y_new = self.store.load(self.s[-1]), self.store.load(self.y[-1])
        gamma_all = self._dot(s_new, y_new) / self._dot(y_new, y_new)
        out = {}
        for k, qk in q.items():
            g_mean, g_dev = self._part_gammas(k, s_new[k], y_new[k], gamma_all)
            r = qk * g_dev
            if g_mean != g_dev:
                r += qk.mean(axis=0, keepdims=True) * (g_mean - g_dev)
            out[k] = r.astype(qk.dtype, copy=False)
        return out

    # ------------------------------------------------------------------ line search
    @staticmethod
    def _interpolate(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi) -> float:
        """Minimiser of the cubic through two points with slopes, safeguarded to the interval."""
        lo, hi = min(a_lo, a_hi), max(a_lo, a_hi)
        width = hi - lo
        d1 = d_lo + d_hi - 3.0 * (f_lo - f_hi) / (a_lo - a_hi)
        disc = d1 * d1 - d_lo * d_hi
        a = math.nan
        if disc >= 0 and math.isfinite(f_hi):
            d2 = math.copysign(math.sqrt(disc), a_hi - a_lo)
            denom = d_hi - d_lo + 2.0 * d2
            if denom != 0:
                a = a_hi - (a_hi - a_lo) * (d_hi + d2 - d1) / denom
        if not math.isfinite(a) or a < lo + 0.1 * width or a > hi - 0.1 * width:
            a = 0.5 * (a_lo + a_hi)
        return a

    def _line_search(
        self, fun: Objective, x: Blocks, f: float, gu: Blocks, p_u: Blocks
    ) -> tuple[Blocks, float, Blocks, float, int] | None:
        """Strong-Wolfe line search; returns (x, f, g, α, evals) or None on failure."""
        dphi0 = self._dot(gu, p_u)
        n = 0

        def phi(alpha: float):
            nonlocal n
            n += 1
            xa = self._move(x, p_u, alpha)
            fa, ga = self._evaluate(fun, xa)
            gua = self._real_grad(xa, ga) if math.isfinite(fa) else None
            da = self._dot(gua, p_u) if gua is not None else math.inf
            return xa, fa, ga, gua, da

        def zoom(lo, hi):
            a_lo, f_lo, d_lo, pt_lo = lo
            a_hi, f_hi, d_hi = hi
            while n < self.max_evals:
                a = self._interpolate(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi)
                xa, fa, ga, _gua, da = phi(a)
                if fa > f + self.c1 * a * dphi0 or fa >= f_lo:
                    a_hi, f_hi, d_hi = a, fa, da
                else:
                    if abs(da) <= -self.c2 * dphi0:
                        return xa, fa, ga, a, n
                    if da * (a_hi - a_lo) >= 0:
                        a_hi, f_hi, d_hi = a_lo, f_lo, d_lo
                    a_lo, f_lo, d_lo, pt_lo = a, fa, da, (xa, fa, ga)
            # out of evaluations: accept the best sufficient-decrease point, if any
            if pt_lo is not None:
                xa, fa, ga = pt_lo
                return xa, fa, ga, a_lo, n
            return None

        a_prev, f_prev, d_prev, pt_prev = 0.0, f, dphi0, None
        alpha = 1.0
        while n < self.max_evals:
            xa, fa, ga, _gua, da = phi(alpha)
            if fa > f + self.c1 * alpha * dphi0 or (n > 1 and fa >= f_prev):
                return zoom((a_prev, f_prev, d_prev, pt_prev), (alpha, fa, da))
            if abs(da) <= -self.c2 * dphi0:
                return xa, fa, ga, alpha, n
            if da >= 0:
                return zoom((alpha, fa, da, (xa, fa, ga)), (a_prev, f_prev, d_prev))
            a_prev, f_prev, d_prev, pt_prev = alpha, fa, da, (xa, fa, ga)
            alpha *= 2.0
        if pt_prev is not None:
            xa, fa, ga = pt_prev
            return xa, fa, ga, a_prev, n
        return None

    # ------------------------------------------------------------------ public API
    def reset(self) -> None:
        """Forget the curvature pairs (keeps the block scales)."""
        self.s.clear()
        self.y.clear()

    def step(
        self, fun: Objective, x: Blocks, f: float, g: Blocks
    ) -> tuple[Blocks, float, Blocks, StepInfo]:
        """One iteration from ``x`` (with ``f, g = fun(x)``); returns the new point and info."""
        if self._ensure_scale(x, g):
            self.reset()  # curvature pairs of other scales are meaningless
        gu = self._real_grad(x, g)
        p_u = self._direction(gu)
        method = "lbfgs"
        res = None
        if self._dot(gu, p_u) < 0:
            res = self._line_search(fun, x, f, gu, p_u)
        if res is None:
            # non-descent direction or failed line search: clear memory, steepest descent
            self.reset()
            method = "gd-fallback"
            p_u = {k: -v for k, v in gu.items()}
            res = self._backtrack(fun, x, f, gu, p_u, self.gd_step)
            if res is None:
                self.gd_step = 1.0
                return x, f, g, StepInfo("stalled", 0.0, self.max_evals)
            self.gd_step = 2.0 * res[3]
        xa, fa, ga, alpha, n = res
        gua = self._real_grad(xa, ga)
        s = {k: (alpha * p_u[k]).astype(gu[k].dtype, copy=False) for k in p_u}
        y = {k: gua[k] - gu[k] for k in gu}
        sy = self._dot(s, y)
        if sy > 1e-10 * math.sqrt(self._dot(s, s) * self._dot(y, y)):
            self.s.append(self.store.stash(s))
            self.y.append(self.store.stash(y))
            if len(self.s) > self.memory:
                self.s.pop(0)
                self.y.pop(0)
        return xa, fa, ga, StepInfo(method, alpha, n)

    def change_variables(self, block: str, isometry: Callable[[Any], Any]) -> None:
        """Follow a change of variables of ``block`` that leaves the objective unchanged.

        ``isometry`` is a linear map preserving the inner product (e.g. a unitary mixing of
        probe modes, applied to re-orthogonalise them); the stored pairs are mapped with it, so
        the curvature the memory holds stays that of the new variables.  The caller maps the
        iterate and its gradient the same way.
        """
        for pairs in (self.s, self.y):
            for i, stored in enumerate(pairs):
                pair = self.store.load(stored)
                if block in pair:
                    pair[block] = isometry(pair[block])
                    pairs[i] = self.store.stash(pair)

    def export_state(self) -> dict[str, Any]:
        """Plain numpy/float state for exact resume: scales, step, and the stacked (s, y) pairs.

        Keys: ``kind``, ``scale/<block>``, ``gd_step``, ``n_pairs``, ``s/<block>`` and
        ``y/<block>`` (arrays ``(n_pairs, *block.shape)``, present when ``n_pairs > 0``).
        """
        d = self._export_common()
        d["gd_step"] = float(self.gd_step)
        d["n_pairs"] = len(self.s)
        if self.s:
            for k in self.s[0]:
                d[f"s/{k}"] = np.stack([self.store.host(s, k) for s in self.s])
                d[f"y/{k}"] = np.stack([self.store.host(y, k) for y in self.y])
        return d

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`export_state` returned (arrays moved to ``xp``)."""
        self._import_common(state)
        self.gd_step = float(state["gd_step"])
        n_pairs = int(state["n_pairs"])
        blocks = [k.split("/", 1)[1] for k in state if k.startswith("s/")]
        self.s = [
            self.store.stash({k: self.xp.asarray(state[f"s/{k}"][i]) for k in blocks})
            for i in range(n_pairs)
        ]
        self.y = [
            self.store.stash({k: self.xp.asarray(state[f"y/{k}"][i]) for k in blocks})
            for i in range(n_pairs)
        ]


def make_optimiser(
    kind: str,
    *,
    memory: int = 10,
    xp: ModuleType = np,
    initial_step: float = 0.1,
    typical: Mapping[str, float] | None = None,
    max_evals: int = 20,
    state_blocks: Collection[str] = (),
    history: str = "device",
) -> LBFGS | GradientDescent:
    """Return an :class:`LBFGS` (``kind="lbfgs"``) or :class:`GradientDescent` (``"gd"``);
    ``history`` places the L-BFGS pairs (:class:`caviar_napari.core.history.PairStore`)."""
    common = dict(
        xp=xp,
        initial_step=initial_step,
        typical=typical,
        max_evals=max_evals,
        state_blocks=state_blocks,
    )
    if kind == "lbfgs":
        return LBFGS(memory=memory, history=history, **common)
    if kind == "gd":
        return GradientDescent(**common)
    raise InputError(f"optimizer must be 'lbfgs' or 'gd', got {kind!r}")
