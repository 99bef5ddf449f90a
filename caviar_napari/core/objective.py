"""The objective of one stage: the normalised data loss plus the regularisers, over the refined
blocks, with the probe model between the optimiser's variables and the forward model.

``f = L_data / C + R_l1 + R_mw + R_states`` with ``C`` the total measured intensity inside the
detector mask, so the reported loss is dimensionless (the relative squared amplitude error for the
Gaussian loss) and regulariser weights are comparable across datasets. The losses are those of
:mod:`caviar_napari.core.loss`; the data term is paper eq. S8 divided by ``C``.

Regularisers (object only, when the object is refined)
    * l1 absorption, :func:`l1_absorption`: ``λ₁ · mean_pixels sqrt(a² + ε²)`` with
      ``a = −log|O|`` (the absorption), a smoothed ``|a|`` (``ε = 1e-3``) so that L-BFGS sees a
      differentiable objective. It pulls the amplitude towards 1.
    * Missing wedge, :func:`missing_wedge` (multislice only): applied as a *penalty*, not as a
      filter, so the optimiser minimises one consistent objective:
      ``w · mean_pixels Σ_k W(k) |F₃O(k)|²`` with the 3-D unitary FFT over (slice, y, x) of each
      state and ``W = 1 − (2/π) arctan(β² k_r² / k_z²)`` (``W = 0`` at ``k_z = 0``), which is ~1
      in the cone ``|k_z| ≫ β k_r`` that a single projection cannot measure and → 0 outside it.
      The projected (slice-summed) structure, ``k_z = 0``, is never penalised.
    * State penalty, :func:`~caviar_napari.core.state_penalty.state_deviation_penalty` (two
      or more states): ``λ Σ_k |O_k − Ō|² / (N A)`` on the states' deviations from their mean,
      with a fixed weight or one chosen by the held-out patterns (``state_penalty: auto``).
    Regulariser gradients are projected onto the object band limit, as the data gradient is.

Displaced states
    With ``state_model: displacements`` the optimiser's ``object`` block is the mean object
    ``(1, S, H, W)`` and its ``displacements`` block ``(N, A, 2)`` moves the atoms' cells
    (:mod:`caviar_napari.core.displaced_states`); the forward model and the regularisers see
    the states built from both, their gradient is contracted back, and the mean object's
    gradient is projected onto the band limit (the forward model's own projection is off, so
    that the displacements' gradient is exact).

Probe model
    With ``partial_coherence: gaussian`` the optimiser's ``probe`` block holds the coherent
    modes and its ``source`` block the source's standard deviation σ (Å); the forward model
    sees their expansion into shifted copies (:mod:`caviar_napari.core.coherence`), and the
    gradients are contracted back. Probe constraints (aperture support, fixed intensity) sit
    before that expansion (:mod:`caviar_napari.core.probe_constraints`).

Scan positions
    With ``positions`` or ``affine`` refined (or carried over from an earlier stage), every
    probe is shifted by ``s_p`` of :class:`~caviar_napari.core.positions.ScanPositions` from
    its nominal place; the model's ``∂L/∂s`` is chained back to the per-position variables and
    the affine/drift parameters, and the positions' penalty is added to ``f``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from caviar_napari.core import coherence, optics
from caviar_napari.core.backend import Backend
from caviar_napari.core.displaced_states import DisplacedStates
from caviar_napari.core.holdout import PatternSplit
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.core.optics import BAND_LIMIT
from caviar_napari.core.positions import ScanPositions
from caviar_napari.core.probe_constraints import ProbeConstraint
from caviar_napari.core.state_penalty import state_deviation_penalty
from caviar_napari.data.config import StageConfig

__all__ = ["L1_EPS", "Objective", "l1_absorption", "missing_wedge", "wedge_weight"]

#: Smoothing of the l1 absorption penalty, ``sqrt(a² + ε²)``.
L1_EPS = 1e-3


def l1_absorption(obj: Any, weight: float, xp: Any = np, eps: float = L1_EPS) -> tuple[float, Any]:
    """Smoothed l1 penalty on the absorption ``a = −log|O|`` and its Wirtinger gradient.

    ``R = weight · mean(sqrt(a² + ε²) − ε)``;
    ``∂R/∂O* = weight/n · (a / sqrt(a² + ε²)) · ∂a/∂O*`` with ``∂a/∂O* = −O / (2|O|²)``.

    Parameters
    ----------
    obj
        ``(N, S, H, W)`` complex transmission.
    weight
        λ₁ (dimensionless, relative to the normalised data loss).

    Returns
    -------
    penalty, gradient
        Float and ``∂R/∂O*`` of the shape and dtype of ``obj``.
    """
    n = obj.size
    mag2 = obj.real**2 + obj.imag**2
    mag2 = xp.maximum(mag2, np.finfo(mag2.dtype).tiny)
    a = -0.5 * xp.log(mag2)
    root = xp.sqrt(a * a + eps * eps)
    value = weight * float(xp.sum(root - eps, dtype=np.float64)) / n
    coef = (-(weight / n) * 0.5) * (a / root) / mag2
    return value, (coef * obj).astype(obj.dtype, copy=False)


def wedge_weight(
    n_slices: int,
    object_shape: tuple[int, int],
    pixel_size_A: tuple[float, float],
    dz_A: float,
    beta: float,
) -> np.ndarray:
    """``(S, H, W)`` missing-wedge weight ``1 − (2/π) arctan(β² k_r² / k_z²)`` (0 at k_z = 0)."""
    kz = np.fft.fftfreq(n_slices, dz_A)[:, None, None]
    ky = np.fft.fftfreq(object_shape[0], pixel_size_A[0])[None, :, None]
    kx = np.fft.fftfreq(object_shape[1], pixel_size_A[1])[None, None, :]
    kr2 = ky**2 + kx**2
    with np.errstate(divide="ignore", invalid="ignore"):
        w = 1.0 - (2.0 / np.pi) * np.arctan(beta**2 * kr2 / kz**2)
    return np.where(kz == 0, 0.0, w)


def missing_wedge(obj: Any, weight: float, wedge: Any, backend: Backend) -> tuple[float, Any]:
    """Missing-wedge penalty ``weight · mean_pixels Σ W |F₃O|²`` and its Wirtinger gradient.

    Parameters
    ----------
    obj
        ``(N, S, H, W)`` complex transmission.
    weight
        Penalty weight (dimensionless, relative to the normalised data loss).
    wedge
        ``(S, H, W)`` weight from :func:`wedge_weight` (backend array).

    Returns
    -------
    penalty, gradient
        ``R`` and ``∂R/∂O* = weight/n · F₃⁻¹(W · F₃O)`` (unitary transforms).
    """
    xp = backend.xp
    n = obj.size
    spec = xp.fft.fft(backend.fft2(obj), axis=1, norm="ortho")
    weighted = spec * wedge
    value = weight * float(xp.sum((weighted * spec.conj()).real, dtype=np.float64)) / n
    grad = backend.ifft2(xp.fft.ifft(weighted, axis=1, norm="ortho"), overwrite=True)
    grad *= weight / n
    return value, grad.astype(obj.dtype, copy=False)


class Objective:
    """``f(x) = L_data/C + regularisers`` over the refined blocks of one stage."""

    def __init__(
        self,
        model: MultisliceModel,
        backend: Backend,
        stage: StageConfig,
        fixed: dict[str, Any],
        norm: float,
        pixel: tuple[float, float],
        compression: float = coherence.COMPRESSION_TOLERANCE,
        split: PatternSplit | None = None,
        scan: ScanPositions | None = None,
        probe_constraint: ProbeConstraint | None = None,
        displaced: DisplacedStates | None = None,
        scanned_area: float | None = None,
    ) -> None:
        self.model = model
        # ``state_model: displacements``: the ``object`` block is the mean object and the
        # ``displacements`` block moves its atoms (the states are built from both)
        self.displaced = displaced
        self.backend = backend
        self.stage = stage
        self.fixed = fixed
        self.inv_norm = 1.0 / norm
        # fitted patterns (None: all) and held-out ones, each with its own normaliser
        self.fit = None if split is None or not split.holds_out else split.fit
        self.held = None if split is None or not split.holds_out else split.held
        self.inv_held_norm = 1.0 / split.held_norm if self.held is not None else 0.0
        self.want = frozenset(stage.refine)
        xp = backend.xp
        shape = model.object_shape
        # the states' penalty (:mod:`~caviar_napari.core.state_penalty`): a number, or 0 until
        # the engine's regularisation path sets the weight of ``state_penalty: auto``
        self.state_weight = 0.0 if stage.state_penalty == "auto" else float(stage.state_penalty)
        self.state_area = float(scanned_area or shape[0] * shape[1])
        self.obj_band = xp.asarray(
            optics.band_limit_mask(shape, pixel, BAND_LIMIT), dtype=backend.real_dtype
        )
        self.source = None
        self.compression = compression
        if stage.partial_coherence == "gaussian":
            self.source = coherence.gauss_hermite_source(stage.coherence_order)
            self.k = xp.asarray(
                coherence.window_frequencies(model.window, pixel), dtype=backend.real_dtype
            )
        # the forward model's gradient blocks: the source size needs the (expanded) probe's,
        # the scan positions the shifts'
        self.scan = scan
        self.constraint = probe_constraint if probe_constraint and probe_constraint.active else None
        self.refines_scan = bool(self.want & {"positions", "affine"})
        self.model_want = frozenset(
            ({"probe"} if "source" in self.want else set())
            | ({"shifts"} if self.refines_scan else set())
            | (self.want - {"source", "positions", "affine"})
        )
        # rigid shifts between states are taken out of the object gradient (the generators
        # are those of the current mean object, so the objective depends on x alone and a
        # resumed run repeats an uninterrupted one exactly)
        self.remove_state_shifts = stage.remove_state_shifts
        self.pixel = pixel
        self.wedge = None
        if stage.missing_wedge > 0 and stage.slices > 1:
            dz = float(np.mean(stage.thicknesses_A()))
            w = wedge_weight(stage.slices, shape, pixel, dz, stage.missing_wedge_beta)
            self.wedge = xp.asarray(
                w * optics.band_limit_mask(shape, pixel, BAND_LIMIT)[None], dtype=backend.real_dtype
            )

    def blocks(self, x: dict[str, Any]) -> tuple[Any, Any, Any]:
        """Object (the states), coherent probe modes and tilt at ``x`` (refined or fixed)."""
        get = lambda k: x[k] if k in x else self.fixed[k]  # noqa: E731
        obj = get("object")
        if self.displaced is not None:
            obj = self.displaced.states(obj, get("displacements"))
        return obj, get("probe"), get("tilt")

    def _optional(self, x: dict[str, Any], key: str) -> np.ndarray | None:
        """Block ``key`` on the host (refined or fixed), None when the run has none."""
        block = x.get(key, self.fixed.get(key))
        return None if block is None else np.asarray(self.backend.to_host(block), np.float64)

    def scan_shifts_A(self, x: dict[str, Any]) -> np.ndarray | None:
        """``(P, 2)`` shifts of the scan positions at ``x``, Å; None when never refined."""
        if self.scan is None:
            return None
        u, affine = self._optional(x, "positions"), self._optional(x, "affine")
        if u is None and affine is None:
            return None
        return self.scan.shifts_A(u, affine)

    def _shifts_px(self, x: dict[str, Any]) -> np.ndarray | None:
        s = self.scan_shifts_A(x)
        return None if s is None else s / np.asarray(self.pixel)

    def sigma_A(self, x: dict[str, Any]) -> float:
        """The source's standard deviation σ (Å) at ``x``; 0 for a coherent probe."""
        if self.source is None:
            return 0.0
        block = x["source"] if "source" in x else self.fixed["source"]
        return float(self.backend.to_host(block)[0])

    def probe_modes(self, x: dict[str, Any]) -> Any:
        """The coherent probe modes at ``x`` with the stage's probe constraints applied
        (:mod:`~caviar_napari.core.probe_constraints`): what the reconstruction reports."""
        probe = self.blocks(x)[1]
        return probe if self.constraint is None else self.constraint.apply(probe)

    def model_probe(self, x: dict[str, Any], modes: Any = None) -> tuple[Any, Any]:
        """The probe modes the forward model sees, and the mixing matrix behind them.

        A coherent probe: its modes and None. A Gaussian source: the coherent modes expanded
        into shifted copies, compressed to the orthogonal modes that carry them, and the
        ``(copies, modes)`` mixing matrix (:func:`coherence.compress_modes`). ``modes``: the
        constrained coherent modes when the caller has them already.
        """
        probe = self.probe_modes(x) if modes is None else modes
        if self.source is None:
            return probe, None
        copies = coherence.expand_modes(self.backend, probe, self.sigma_A(x), self.source, self.k)
        return coherence.compress_modes(self.backend, copies, self.compression)

    def __call__(self, x: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        be = self.backend
        obj, probe, tilt = self.blocks(x)
        seen = self.probe_modes(x)  # the constrained coherent modes (``probe`` without)
        modes, mixing = self.model_probe(x, seen)
        loss, grads = self.model.loss_and_gradient(
            obj, modes, tilt, want=self.model_want, indices=self.fit, shifts_px=self._shifts_px(x)
        )
        if self.source is not None and "probe" in self.model_want:
            g_copies = mixing.conj() @ grads["probe"].reshape(modes.shape[0], -1)
            g_probe, g_sigma = coherence.contract_gradient(
                be,
                seen,
                self.sigma_A(x),
                self.source,
                self.k,
                g_copies.reshape(mixing.shape[0], *modes.shape[1:]),
            )
            grads["probe"] = g_probe
            grads["source"] = be.xp.asarray([g_sigma], dtype=be.real_dtype)
        if self.constraint is not None and "probe" in self.want:
            grads["probe"] = self.constraint.gradient(probe, grads["probe"])
        f = loss * self.inv_norm
        out = {k: grads[k] * self.inv_norm for k in self.want - {"positions", "affine"}}
        if self.refines_scan:
            f += self._scan_gradients(x, grads["shifts"], out)
        if "object" in self.want:
            reg = None
            if self.stage.l1_absorption > 0:
                v, reg = l1_absorption(obj, self.stage.l1_absorption, be.xp)
                f += v
                if self.displaced is None:  # else the mean object's gradient is projected
                    reg = be.ifft2(be.fft2(reg) * self.obj_band, overwrite=True)
            if self.wedge is not None:
                v, g = missing_wedge(obj, self.stage.missing_wedge, self.wedge, be)
                f += v
                reg = g if reg is None else reg + g
            if self.state_weight > 0 and obj.shape[0] > 1:
                v, g = state_deviation_penalty(obj, self.state_weight, self.state_area, be.xp)
                if self.displaced is None:  # else the mean object's gradient is projected
                    g = be.ifft2(be.fft2(g) * self.obj_band, overwrite=True)
                f += v
                reg = g if reg is None else reg + g
            if reg is not None:
                out["object"] = out["object"] + reg.astype(out["object"].dtype, copy=False)
            if self.displaced is not None:
                g_mean, out["displacements"] = self.displaced.contract(
                    x["object"], x["displacements"], out["object"]
                )
                out["object"] = be.ifft2(be.fft2(g_mean) * self.obj_band, overwrite=True)
            elif self.remove_state_shifts and obj.shape[0] > 1:
                shifts = StateShifts(be, obj.mean(axis=0), self.pixel)
                out["object"] = shifts.project(out["object"])
        return f, out

    def _scan_gradients(self, x: dict[str, Any], g_px: np.ndarray, out: dict[str, Any]) -> float:
        """Chain ``∂L/∂s`` (per pixel) into the refined scan blocks of ``out``; returns the
        positions' penalty (added to ``f``)."""
        be = self.backend
        g_A = np.asarray(g_px, np.float64) * (self.inv_norm / np.asarray(self.pixel))
        u = self._optional(x, "positions")
        g_u, g_affine = self.scan.chain(g_A, u)
        penalty = 0.0
        if "positions" in self.want:
            penalty, g_pen = self.scan.penalty_and_gradient(u)
            out["positions"] = be.asarray(g_u + g_pen, dtype=be.real_dtype)
        if "affine" in self.want:
            out["affine"] = be.asarray(g_affine, dtype=be.real_dtype)
        return penalty

    def data_losses(self, x: dict[str, Any], held: bool = False) -> tuple[float, float]:
        """Normalised data loss at ``x`` with its states, and with their mean object alone,
        over the fitted patterns (or the held-out ones)."""
        obj, _, tilt = self.blocks(x)
        modes, _ = self.model_probe(x)
        idx, scale = (self.held, self.inv_held_norm) if held else (self.fit, self.inv_norm)
        shifts = self._shifts_px(x)
        with_states = self.model.loss(obj, modes, tilt, indices=idx, shifts_px=shifts) * scale
        mean = self.model.loss(
            obj.mean(axis=0, keepdims=True), modes, tilt, indices=idx, shifts_px=shifts
        )
        mean *= scale
        return float(with_states), float(mean)

    def held_out_loss(self, x: dict[str, Any]) -> float:
        """Normalised data loss of the held-out patterns at ``x`` (NaN when none)."""
        if self.held is None:
            return float("nan")
        obj, _, tilt = self.blocks(x)
        modes, _ = self.model_probe(x)
        loss = self.model.loss(obj, modes, tilt, indices=self.held, shifts_px=self._shifts_px(x))
        return float(loss * self.inv_held_norm)


class StateShifts:
    """Projection that removes rigid relative shifts of object states from a gradient.

    A state shifted by ``s`` is, to first order, ``Ō − s_y ∂_yŌ − s_x ∂_xŌ``: its deviation
    lies along the two *translation generators* ``t_a = ∂_aŌ`` of the mean object (the whole
    ``(slice, y, x)`` stack, spectral derivatives). The projection removes, from each state's
    deviation part of a gradient, its component along the generators in the optimiser's real
    inner product ``Re⟨a, b⟩``; the mean over the states (which moves the mean object) is left
    untouched.

    Parameters
    ----------
    backend
        Array backend.
    mean_object
        ``(S, H, W)`` mean object (backend array).
    pixel
        ``(dy, dx)``, Å.
    """

    def __init__(self, backend: Backend, mean_object: Any, pixel: tuple[float, float]) -> None:
        xp = backend.xp
        self.backend = backend
        s, h, w = mean_object.shape
        ky = xp.asarray(np.fft.fftfreq(h, pixel[0])[:, None], dtype=backend.real_dtype)
        kx = xp.asarray(np.fft.fftfreq(w, pixel[1])[None, :], dtype=backend.real_dtype)
        spectrum = backend.fft2(mean_object)
        gens = [backend.ifft2(2j * np.pi * k * spectrum) for k in (ky, kx)]
        self.generators = xp.stack(gens).astype(mean_object.dtype)  # (2, S, H, W)
        flat = self.generators.reshape(2, -1)
        gram = (flat.conj() @ flat.T).real.astype(np.float64)
        self.inverse_gram = xp.asarray(np.linalg.inv(backend.to_host(gram)))

    def shifts_A(self, obj: Any) -> np.ndarray:
        """``(N, 2)`` first-order rigid shift ``(y, x)`` of each state against the mean, Å
        (a state ``Ō(r − s)`` has the deviation ``−s·∇Ō``)."""
        n = obj.shape[0]
        dev = (obj - obj.mean(axis=0, keepdims=True)).reshape(n, -1)
        flat = self.generators.reshape(2, -1)
        coef = (dev @ flat.conj().T).real.astype(np.float64) @ self.inverse_gram
        return -np.asarray(self.backend.to_host(coef))

    def project(self, grad: Any) -> Any:
        """``grad`` ``(N, S, H, W)`` with the states' rigid-shift components removed."""
        n = grad.shape[0]
        if n < 2:
            return grad
        xp = self.backend.xp
        mean = grad.mean(axis=0, keepdims=True)
        dev = (grad - mean).reshape(n, -1)
        flat = self.generators.reshape(2, -1)
        coef = (dev @ flat.conj().T).real.astype(np.float64) @ self.inverse_gram  # (N, 2)
        dev = dev - xp.asarray(coef, dtype=flat.real.dtype).astype(flat.dtype) @ flat
        return (mean + dev.reshape(grad.shape)).astype(grad.dtype, copy=False)
