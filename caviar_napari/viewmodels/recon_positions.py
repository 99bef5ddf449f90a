"""Refined scan positions of a reconstruction as napari layers (Qt-free, issue 15).

A stage that refines ``positions`` or ``affine`` (:mod:`caviar_napari.core.positions`) moves the
probe positions off the nominal scan grid; the reconstruction keeps the refined positions
(``ReconState.scan_positions_A``) and the variables that made them.  The dock shows them as
a Points layer ``<name> refined positions`` and a Vectors layer of arrows from each nominal
position towards its refined one, drawn ``F`` times longer than the shift (the shifts are a
fraction of the scan step), ``F`` stated in the layer's name: ``<name> position shifts ×F``.
All in Å in the object frame, the frame of the phase layers (conventions §1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from caviar_napari.core.positions import describe_refinement, nominal_from_refined
from caviar_napari.viewmodels.layer_keys import RECON_ROLE_KEY

__all__ = [
    "SHIFTS_LAYER",
    "ScanRefinement",
    "arrow_factor",
    "refinement_layer_tuples",
    "scan_refinement",
]

#: Middle part of the name of the arrows layer: ``<name> position shifts ×F``.
SHIFTS_LAYER = "position shifts"
#: Name of the refined positions' Points layer after the prefix.
REFINED_LAYER = "refined positions"
#: The longest arrow is drawn at most this many scan steps long (and at least half of it).
ARROW_STEPS = 2.0
#: The factors arrows are drawn with: these × 10ⁿ.
NICE_FACTORS = (1.0, 2.0, 3.0, 5.0)
#: Colours of the refined positions and the arrows.
REFINED_COLOUR, ARROW_COLOUR = "#4dd0e1", "#ff7043"

LayerDataTuple = tuple[Any, dict[str, Any], str]


@dataclass(frozen=True)
class ScanRefinement:
    """Nominal and refined scan positions of a reconstruction, and what they say.

    Attributes
    ----------
    nominal_A, refined_A
        ``(P, 2)`` positions ``(y, x)`` in the object frame, Å.
    line
        One line from :func:`~caviar_napari.core.positions.describe_refinement` (rms shift,
        drift, scan map).
    warnings
        Its warnings (shifts at the bound ``position_bound_A``).
    """

    nominal_A: np.ndarray
    refined_A: np.ndarray
    line: str
    warnings: tuple[str, ...] = ()

    @property
    def shifts_A(self) -> np.ndarray:
        """``(P, 2)`` refined minus nominal positions, Å."""
        return self.refined_A - self.nominal_A


def scan_refinement(state: Any) -> ScanRefinement | None:
    """The refined scan positions of a reconstruction state (None when never refined).

    The nominal positions are recovered from the refined ones and the refinement variables
    (:func:`~caviar_napari.core.positions.nominal_from_refined`), so a reconstruction file is
    enough, without its 4D-STEM data.
    """
    u, affine = getattr(state, "positions_u", None), getattr(state, "affine", None)
    refined = getattr(state, "scan_positions_A", None)
    if (u is None and affine is None) or refined is None:
        return None
    refined = np.asarray(refined, dtype=np.float64).reshape(-1, 2)
    bound = float(state.config.position_bound_A)
    nominal = nominal_from_refined(refined, u, affine, bound)
    line, warnings = describe_refinement(u, affine, bound)
    return ScanRefinement(nominal, refined, line, tuple(warnings))


def _nice_floor(value: float) -> float:
    """The largest of :data:`NICE_FACTORS` × 10ⁿ not above ``value`` (``value`` > 0)."""
    exponent = math.floor(math.log10(value))
    base = 10.0**exponent
    return next(m * base for m in NICE_FACTORS[::-1] if m * base <= value * (1 + 1e-12))


def typical_step_A(positions_A: np.ndarray) -> float:
    """Median distance between consecutive scan positions, Å (0 for fewer than two)."""
    positions = np.asarray(positions_A, dtype=np.float64).reshape(-1, 2)
    if len(positions) < 2:
        return 0.0
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else 0.0


def arrow_factor(shifts_A: np.ndarray, step_A: float) -> float:
    """How many times longer than the shifts the arrows are drawn.

    The longest arrow is at most :data:`ARROW_STEPS` scan steps long, and at least half of
    that: the factor is the 1, 2, 3, 5 × 10ⁿ number below ``ARROW_STEPS × step / longest`` (at
    least 1: arrows are never drawn shorter than the shift).

    Examples
    --------
    >>> arrow_factor(np.array([[0.0, 0.03], [0.01, 0.0]]), 0.5)
    30.0
    >>> arrow_factor(np.zeros((3, 2)), 0.5), arrow_factor(np.array([[2.0, 0.0]]), 0.5)
    (1.0, 1.0)
    """
    longest = float(np.max(np.linalg.norm(np.asarray(shifts_A, float), axis=-1), initial=0.0))
    if longest <= 0 or step_A <= 0:
        return 1.0
    return max(1.0, _nice_floor(ARROW_STEPS * step_A / longest))


def factor_text(factor: float) -> str:
    """``×20``, ``×2.5``: the factor as the layer name states it."""
    return f"×{factor:g}"


def refinement_layer_tuples(refinement: ScanRefinement, name: str) -> list[LayerDataTuple]:
    """The Points layer of the refined positions and the Vectors layer of the scaled shifts.

    Parameters
    ----------
    refinement
        From :func:`scan_refinement`.
    name
        Prefix of the layer names (``"<name> refined positions"``, ``"<name> position shifts
        ×F"``).

    The arrows' layer records the factor (``metadata["caviar_arrow_factor"]``) and the prefix
    (``metadata["caviar_run"]``), so that a new result replaces the arrows of an old one whose
    factor differed.
    """
    step = typical_step_A(refinement.nominal_A)
    shifts = refinement.shifts_A
    factor = arrow_factor(shifts, step)
    size = 0.15 * step if step > 0 else 0.1
    vectors = np.stack([refinement.nominal_A, factor * shifts], axis=1)
    rms = float(np.sqrt(np.mean(np.sum(shifts**2, axis=1))))
    return [
        (
            refinement.refined_A,
            {
                "name": f"{name} {REFINED_LAYER}",
                "size": size,
                "face_color": REFINED_COLOUR,
                "border_width": 0.0,
                "opacity": 0.8,
                "axis_labels": ("y", "x"),
                "units": ("Å", "Å"),
                "metadata": {RECON_ROLE_KEY: "refined", "caviar_run": name},
            },
            "points",
        ),
        (
            vectors,
            {
                "name": f"{name} {SHIFTS_LAYER} {factor_text(factor)}",
                "edge_color": ARROW_COLOUR,
                "edge_width": 0.6 * size,
                "length": 1.0,
                "vector_style": "arrow",
                "axis_labels": ("y", "x"),
                "units": ("Å", "Å"),
                "features": {"shift_A": np.linalg.norm(shifts, axis=1)},
                "metadata": {
                    RECON_ROLE_KEY: "shifts",
                    "caviar_run": name,
                    "caviar_arrow_factor": factor,
                    "caviar_rms_shift_A": rms,
                },
            },
            "vectors",
        ),
    ]
