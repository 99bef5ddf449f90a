"""Scan rotation and detector transpose from the bright-field parallax, where the centre of
mass cannot tell them.

Under defocus the centre of mass averages the phase gradient over a wide probe and its signal
shrinks (at 60 Å underfocus on hBN it is 0.03 mrad rms, below the shot noise of 10⁴ electrons
per pattern), while every bright-field pixel still sees a sharp, shifted image of the object:
the weak-phase parallax model of :mod:`.defocus` keeps the signal of all of them.  Its
explained power ``F(θ, Δf)`` depends on the scan rotation through the directions of the
spatial frequencies in the detector frame (the parallax shifts and the overlap regions of the
shifted discs), so the rotation, the transpose and the defocus are fitted together: a grid over
``θ ∈ (−90°, 90°]`` (:data:`COARSE_STEP_DEG`) and ``Δf`` over a range symmetric about 0 (a
half-turn of θ is a change of sign of Δf, :mod:`.defocus`), on the :data:`COARSE_Q` strongest
frequencies, for each transpose; then a Nelder–Mead refinement of the best ``(θ, Δf)`` on all
of them.  The transpose with the larger ``F`` wins; the ratio of the two is its confidence.
The half-turn is left to :mod:`.halfturn`, as for the centre of mass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from caviar_napari.analysis.calibration.defocus import BrightFieldParallax

__all__ = [
    "COARSE_Q",
    "COARSE_STEP_DEG",
    "TRANSPOSE_MIN_RATIO",
    "ParallaxRotationFit",
    "fit_rotation_parallax",
]

#: Grid step of θ in the coarse search (degrees).
COARSE_STEP_DEG = 4.0
#: Number of the strongest spatial frequencies used in the coarse search.
COARSE_Q = 128
#: Below this ratio of the explained powers the transpose choice is called ambiguous.
TRANSPOSE_MIN_RATIO = 1.5


@dataclass(frozen=True)
class ParallaxRotationFit:
    """Result of :func:`fit_rotation_parallax`.

    Attributes
    ----------
    rotation_deg
        θ modulo 180°, in ``(−90, 90]``, after the transpose.
    transposed
        Whether the detector axes are swapped.
    defocus_A
        The Δf that goes with ``rotation_deg`` (its sign changes with the half-turn).
    explained
        Fraction of the bright-field fluctuation power explained at the optimum.
    transpose_ratio
        ``F`` of this transpose choice over that of the other (> 1).
    """

    rotation_deg: float
    transposed: bool
    defocus_A: float
    explained: float
    transpose_ratio: float

    def warnings(self) -> list[str]:
        """What is uncertain about this fit."""
        if self.transpose_ratio >= TRANSPOSE_MIN_RATIO:
            return []
        return [
            f"detector transpose uncertain: the bright-field parallax explains only "
            f"{self.transpose_ratio:.2f} times more with it than without"
        ]


def _best(model: BrightFieldParallax, defocus_range_A: tuple[float, float]) -> tuple[float, ...]:
    """``(F, θ, Δf)`` at the optimum for one transpose choice."""
    from scipy.optimize import minimize

    step = model.defocus_step_A
    dfs = np.arange(defocus_range_A[0], defocus_range_A[1] + 0.5 * step, step)
    thetas = np.arange(-90.0 + COARSE_STEP_DEG, 90.0 + 1e-9, COARSE_STEP_DEG)
    coarse = np.array([model.explained_grid(dfs, t, COARSE_Q) for t in thetas])
    i, j = np.unravel_index(int(np.argmax(coarse)), coarse.shape)
    scale = 1.0 / max(model.power(), 1e-300)
    result = minimize(
        lambda x: -model.explained(x[1], x[0]) * scale,
        x0=np.array([thetas[i], dfs[j]]),
        method="Nelder-Mead",
        options={
            "initial_simplex": np.array(
                [[thetas[i], dfs[j]], [thetas[i] + COARSE_STEP_DEG / 2, dfs[j]],
                 [thetas[i], dfs[j] + step]]
            ),
            "xatol": 1e-3,
            "fatol": 1e-9,
        },
    )  # fmt: skip
    theta, df = (float(v) for v in result.x)
    # the representative in (−90°, 90°]: a half-turn changes the sign of the defocus
    turns = math.floor((theta + 90.0) / 180.0)
    theta -= 180.0 * turns
    if theta <= -90.0:
        theta, turns = theta + 180.0, turns - 1
    if turns % 2:
        df = -df
    return -float(result.fun), theta, df


def fit_rotation_parallax(
    models: Mapping[bool, BrightFieldParallax], *, defocus_range_A: tuple[float, float]
) -> ParallaxRotationFit:
    """Fit θ (modulo 180°), the transpose and Δf to the bright-field parallax (module
    docstring).

    Parameters
    ----------
    models
        The bright-field data read without (``False``) and with (``True``) the transpose.
    defocus_range_A
        ``(low, high)`` Δf searched; it should be symmetric about 0 (both half-turns).
    """
    fits = {t: _best(m, defocus_range_A) for t, m in models.items()}
    transposed = max(fits, key=lambda t: fits[t][0])
    others = [fits[t][0] for t in fits if t != transposed]
    f, theta, df = fits[transposed]
    ratio = f / max(others) if others and max(others) > 0 else math.inf
    return ParallaxRotationFit(
        rotation_deg=theta,
        transposed=bool(transposed),
        defocus_A=df,
        explained=f,
        transpose_ratio=float(ratio),
    )
