"""The half-turn of the scan rotation: θ or θ + 180°.

The curl-free condition (:mod:`.com`) fixes θ only modulo 180°: a half-turn negates the
centre-of-mass field, which is then the gradient of ``−φ`` instead of ``φ``.  In focus the two
cannot be told apart from the patterns' geometry at all (a real, even probe gives the same
patterns for ``−φ`` up to ``k → −k``), and under defocus the bright-field parallax cannot
either, since ``(θ + 180°, Δf)`` and ``(θ, −Δf)`` are the same model (:mod:`.defocus`).  What
decides is the sign of the phase: it is **positive on atoms** (conventions §2).  Three
indicators of it, each given for the candidate θ (its negative is the value for θ + 180°):

1. **Dark field** — the Pearson correlation ``ρ`` of the virtual dark-field image (the
   fraction of each pattern beyond :data:`DARK_INNER` × the bright-field disc, per pattern
   total) with the iDPC phase at θ, both less their least-squares quadratic surface (a descan
   left in the deflection adds one to the phase).  Electrons leave the bright-field disc where
   the phase varies, about as ``φ²`` to lowest order and so wherever the atoms are, whatever the
   sign of ``φ``; and the dark-field image and the iDPC phase are blurred by the same probe
   intensity ``|ψ|²``, so they stay comparable under defocus.  Needs at least
   :data:`DARK_MIN_PIXELS` detector pixels outside the disc.
2. **Bright-field phase** — the skewness of the single-side-band phase image at the fitted
   defocus (:meth:`.defocus.BrightFieldParallax.phase`), deconvolved and therefore sharp:
   atoms are sparse positive peaks, so the right half-turn has the positive skewness.  With a
   fitted defocus it is half the difference of the two half-turns' skewness, each with its own
   defocus fit, and so it decides the half-turn and the sign of Δf together.
3. **iDPC skewness** — the skewness of the iDPC phase at θ.  The phase is blurred by the
   probe, so under defocus in a small field this is unreliable (at 60 Å underfocus on a
   6 Å × 6 Å hBN scan it picks the wrong half-turn); a last resort.

Rule: the dark field decides when ``|ρ| ≥`` :data:`DARK_MIN_CORRELATION`; else the
bright-field phase when it was computed and ``|skewness| ≥`` :data:`SKEW_MIN`; else the iDPC
skewness when it reaches :data:`SKEW_MIN`; and when none reaches its threshold, the one that
comes nearest (the largest ratio of its magnitude to its threshold), with a warning.  Every
indicator computed is reported with the sign it has for the chosen θ (> 0: agrees); a
bright-field phase that disagrees with the dark field beyond its threshold is warned of.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caviar_napari.analysis.calibration.disc import DiscFit

__all__ = [
    "DARK_INNER",
    "DARK_MIN_CORRELATION",
    "DARK_MIN_PIXELS",
    "SKEW_MIN",
    "HalfTurn",
    "choose_half_turn",
    "dark_field_correlation",
    "dark_field_decides",
    "dark_field_mask",
]

#: The dark field starts at this multiple of the bright-field disc's (elliptical) radius.
DARK_INNER = 1.1
#: Fewest detector pixels beyond :data:`DARK_INNER` for a dark-field image.
DARK_MIN_PIXELS = 16
#: Smallest |ρ| (dark field ↔ iDPC) that decides the half-turn.
DARK_MIN_CORRELATION = 0.3
#: Smallest |skewness| of a phase image that decides the half-turn.
SKEW_MIN = 0.2


def dark_field_mask(detector_shape: tuple[int, int], disc: DiscFit) -> np.ndarray | None:
    """``(Ky, Kx)`` bool: the pixels beyond :data:`DARK_INNER` × the disc (the frame the disc
    was fitted in); None when fewer than :data:`DARK_MIN_PIXELS`."""
    ky, kx = detector_shape
    iy, ix = np.meshgrid(np.arange(ky, dtype=float), np.arange(kx, dtype=float), indexing="ij")
    (cy, cx), (ry, rx) = disc.centre_px, disc.extent_px
    mask = np.hypot((iy - cy) / ry, (ix - cx) / rx) > DARK_INNER
    return mask if int(np.count_nonzero(mask)) >= DARK_MIN_PIXELS else None


def _less_quadratic(image: np.ndarray) -> np.ndarray:
    """``image`` less its least-squares quadratic surface in the scan indices."""
    sy, sx = image.shape
    y, x = np.meshgrid(np.linspace(-1, 1, sy), np.linspace(-1, 1, sx), indexing="ij")
    design = np.column_stack([c.ravel() for c in (np.ones_like(y), y, x, y * y, y * x, x * x)])
    coef, *_ = np.linalg.lstsq(design, image.ravel(), rcond=None)
    return image - (design @ coef).reshape(image.shape)


def dark_field_correlation(dark_fraction: np.ndarray, phase: np.ndarray) -> float:
    """Pearson ``ρ`` of a dark-field image and a phase image (same scan), each less its
    quadratic surface (module docstring); 0 when either is flat."""
    a = _less_quadratic(np.asarray(dark_fraction, dtype=float)).ravel()
    b = _less_quadratic(np.asarray(phase, dtype=float)).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def dark_field_decides(correlation: float | None) -> bool:
    """Whether a dark-field correlation is strong enough to decide the half-turn alone."""
    return correlation is not None and abs(correlation) >= DARK_MIN_CORRELATION


@dataclass(frozen=True)
class HalfTurn:
    """The half-turn decision and its indicators (module docstring).

    Attributes
    ----------
    rotation_deg
        The scan rotation θ in ``(−180, 180]`` after the decision.
    flipped
        Whether θ is the curl fit's value plus 180°.
    decided_by
        ``"dark field"``, ``"bright-field phase"`` or ``"iDPC skewness"``.
    dark_field_correlation
        ``ρ`` at the chosen θ (> 0 agrees), or None without dark-field pixels.
    phase_skewness
        Bright-field (SSB) phase indicator at the chosen θ (> 0 agrees), or None if not
        computed.
    idpc_skewness
        iDPC phase skewness at the chosen θ (> 0 agrees).
    """

    rotation_deg: float
    flipped: bool
    decided_by: str
    dark_field_correlation: float | None
    phase_skewness: float | None
    idpc_skewness: float

    @property
    def confidence(self) -> float:
        """The deciding indicator at the chosen θ (≥ 0; compare with its threshold)."""
        return {
            "dark field": self.dark_field_correlation,
            "bright-field phase": self.phase_skewness,
            "iDPC skewness": self.idpc_skewness,
        }[self.decided_by] or 0.0

    def warnings(self) -> list[str]:
        """An uncertain decision, one resting on the iDPC skewness alone, and a disagreement
        between the two reliable indicators (the iDPC skewness often disagrees under
        defocus and is not warned of)."""
        out = []
        threshold = DARK_MIN_CORRELATION if self.decided_by == "dark field" else SKEW_MIN
        if self.confidence < threshold:
            out.append(
                f"the 180° choice of the scan rotation is uncertain: decided by the "
                f"{self.decided_by} with only {self.confidence:.2f} (atoms are not clearly "
                "where the phase is positive)"
            )
        elif self.decided_by == "iDPC skewness":
            out.append(
                "the 180° choice of the scan rotation rests on the iDPC skewness "
                f"({self.confidence:.2f}): the dark field and the bright-field phase were "
                "missing or weak, and the iDPC skewness is unreliable under defocus"
            )
        if (
            self.decided_by == "dark field"
            and self.phase_skewness is not None
            and self.phase_skewness <= -SKEW_MIN
        ):
            out.append(
                f"the bright-field phase ({self.phase_skewness:.2f}) disagrees with the "
                "half-turn chosen by the dark field: the scan rotation may be 180° off and the "
                "defocus of the wrong sign"
            )
        return out


def _wrap(theta: float) -> float:
    t = (theta + 180.0) % 360.0 - 180.0
    return 180.0 if t == -180.0 else float(t)


def choose_half_turn(
    rotation_deg: float,
    *,
    dark_correlation: float | None,
    phase_skewness: float | None,
    idpc_skewness: float,
) -> HalfTurn:
    """Choose θ or θ + 180° by the rule of the module docstring.

    Parameters
    ----------
    rotation_deg
        The curl fit's θ (modulo 180°).
    dark_correlation, phase_skewness, idpc_skewness
        The indicators for ``rotation_deg`` (> 0: it is right; their negatives hold for
        θ + 180°); None where not computed.
    """
    candidates = [
        ("dark field", dark_correlation, DARK_MIN_CORRELATION),
        ("bright-field phase", phase_skewness, SKEW_MIN),
        ("iDPC skewness", idpc_skewness, SKEW_MIN),
    ]
    available = [(n, float(v), t) for n, v, t in candidates if v is not None]
    passing = [c for c in available if abs(c[1]) >= c[2]]
    by, value, _ = passing[0] if passing else max(available, key=lambda c: abs(c[1]) / c[2])
    flip = value < 0
    sign = -1.0 if flip else 1.0

    def signed(v: float | None) -> float | None:
        return None if v is None else sign * float(v)

    return HalfTurn(
        rotation_deg=_wrap(rotation_deg + (180.0 if flip else 0.0)),
        flipped=flip,
        decided_by=by,
        dark_field_correlation=signed(dark_correlation),
        phase_skewness=signed(phase_skewness),
        idpc_skewness=sign * float(idpc_skewness),
    )
