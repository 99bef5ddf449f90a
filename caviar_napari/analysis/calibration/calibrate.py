"""Calibrate a 4D-STEM dataset from its own patterns (issue 15): one function, one result.

Steps (each in its own module of this package):

1. the mean pattern's bright-field disc (:mod:`.disc`): the pattern centre, radius and
   ellipticity, checked against the stated convergence angle and detector sampling;
2. the centre of mass and the dark-field fraction of every pattern, in one pass (:mod:`.com`):
   a linear descan fit (applied only when asked), then the scan rotation modulo 180° and the
   detector transpose from the curl-free condition — or, where that is uncertain (noise under
   defocus) and the defocus is fitted, from the bright-field parallax
   (:mod:`.parallax_rotation`);
3. the patterns centred (and transposed) as the reader will deliver them
   (:class:`~caviar_napari.io.detector.DetectorGeometry`);
4. the half-turn of θ (:mod:`.halfturn`) and the defocus from a weak-phase fit of the
   bright-field parallax (:mod:`.defocus`): when the dark field decides the half-turn, one
   defocus fit at that θ; otherwise one at each half-turn, and the one whose phase image is
   positive on atoms wins (the half-turn and the sign of Δf together);
5. with a vacuum pattern, a starting probe (:mod:`.probe`).

The result's :attr:`CalibrationResult.geometry` is relative to the patterns as they were
given (the dataset's frame); the workflow stores it as detector attributes (conventions §6).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caviar_napari.analysis.calibration.com import (
    DescanFit,
    RotationFit,
    curl_fraction,
    fit_descan,
    fit_rotation,
    idpc_phase,
    pattern_signals,
)
from caviar_napari.analysis.calibration.defocus import (
    MAX_SCAN,
    BrightFieldParallax,
    DefocusFit,
    fit_defocus,
    skewness,
)
from caviar_napari.analysis.calibration.disc import DiscFit, fit_disc, mean_pattern
from caviar_napari.analysis.calibration.halfturn import (
    HalfTurn,
    choose_half_turn,
    dark_field_correlation,
    dark_field_decides,
    dark_field_mask,
)
from caviar_napari.analysis.calibration.parallax_rotation import (
    ParallaxRotationFit,
    fit_rotation_parallax,
)
from caviar_napari.analysis.calibration.probe import probe_from_vacuum
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io.detector import DetectorGeometry, read_patterns

__all__ = ["CalibrationOptions", "CalibrationResult", "calibrate"]


@dataclass(frozen=True)
class CalibrationOptions:
    """What :func:`calibrate` does.

    Attributes
    ----------
    descan
        Apply the fitted linear descan (per-position centring); it is always measured.
    defocus
        Fit the defocus (else keep the stated one).
    defocus_search_A
        Half-width of the defocus search around the stated value (Å).
    dark_field
        Let the virtual dark-field image decide the half-turn of the scan rotation
        (:mod:`.halfturn`); turn off where the dark field is not the sample's (a beam stop,
        saturated or masked pixels beyond the disc): the bright-field phase decides then.
    vacuum_pattern
        ``(Ky, Kx)`` mean vacuum pattern on the dataset's detector (its frame, before the
        calibration's transpose and centring); None: no probe.
    """

    descan: bool = False
    defocus: bool = True
    defocus_search_A: float = 500.0
    dark_field: bool = True
    vacuum_pattern: np.ndarray | None = None

    def __post_init__(self) -> None:
        s = self.defocus_search_A
        if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0):
            raise InputError(f"defocus search half-width must be a positive number of Å, got {s!r}")


@dataclass
class CalibrationResult:
    """Everything :func:`calibrate` found.

    Attributes
    ----------
    geometry
        Transpose and centring of the dataset's patterns (its stored frame).
    rotation_deg
        Scan rotation θ (conventions §2), for the transposed and centred patterns.
    defocus_A
        Δf (the fitted one, or the stated one when not fitted).
    angular_sampling_mrad
        ``(dky, dkx)`` of the calibrated patterns (swapped when transposed).
    disc, descan, rotation, half_turn, defocus
        The fits, with their confidence values.
    parallax_rotation
        The joint fit of rotation, transpose and defocus to the bright-field parallax, when
        the centre of mass was uncertain (``rotation.method``), else None.
    probe_initial
        ``(1, Ky', Kx')`` probe from the vacuum pattern, or None.
    warnings
        What is uncertain or disagrees with the stated calibration.
    """

    geometry: DetectorGeometry
    rotation_deg: float
    defocus_A: float
    angular_sampling_mrad: tuple[float, float]
    disc: DiscFit
    descan: DescanFit
    rotation: RotationFit
    half_turn: HalfTurn
    defocus: DefocusFit | None
    parallax_rotation: ParallaxRotationFit | None = None
    probe_initial: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The values and confidences as plain JSON types (the ``--json`` line)."""
        d = self.disc
        out: dict[str, Any] = {
            "scan_rotation_deg": self.rotation_deg,
            "detector_transposed": self.geometry.transposed,
            "pattern_centre_px": list(d.centre_px),
            "pattern_centre_stderr_px": d.centre_stderr_px,
            "disc_radius_mrad": d.radius_mrad,
            "disc_extent_px": list(d.extent_px),
            "disc_expected_px": list(d.expected_px),
            "disc_ellipticity": d.ellipticity,
            "disc_angle_deg": d.angle_deg,
            "angular_sampling_mrad": list(self.angular_sampling_mrad),
            "descan_span_px": self.descan.span_px,
            "descan_px_per_A": self.descan.gradient_px_per_A.tolist(),
            "descan_applied": self.geometry.descan_px_per_A is not None,
            "rotation_method": self.rotation.method,
            "curl_fraction": self.rotation.curl_fraction,
            "transpose_ratio": self.rotation.transpose_ratio,
            "half_turn_decided_by": self.half_turn.decided_by,
            "half_turn_confidence": self.half_turn.confidence,
            "half_turn_dark_field_correlation": self.half_turn.dark_field_correlation,
            "half_turn_phase_skewness": self.half_turn.phase_skewness,
            "half_turn_idpc_skewness": self.half_turn.idpc_skewness,
            "defocus_A": self.defocus_A,
            "defocus_fitted": self.defocus is not None,
            "probe_initial": self.probe_initial is not None,
            "warnings": list(self.warnings),
        }
        if self.defocus is not None:
            out.update(
                defocus_explained=self.defocus.explained,
                defocus_contrast=self.defocus.contrast,
                defocus_width_A=self.defocus.width_A,
                defocus_search_A=list(self.defocus.search_A),
            )
        return out

    def lines(self) -> list[str]:
        """The values and confidences, one per line (what the CLI prints)."""
        d, r, h = self.disc, self.rotation, self.half_turn
        indicators = [f"iDPC skewness {h.idpc_skewness:+.2f}"]
        if h.phase_skewness is not None:
            indicators.insert(0, f"bright-field phase skewness {h.phase_skewness:+.2f}")
        if h.dark_field_correlation is not None:
            indicators.insert(0, f"dark-field correlation {h.dark_field_correlation:+.2f}")
        out = [
            f"pattern centre: ({d.centre_px[0]:.2f}, {d.centre_px[1]:.2f}) px "
            f"± {d.centre_stderr_px:.3f} px (stored detector frame)",
            f"bright-field disc: radius {d.radius_mrad:.2f} mrad (ky {d.extent_px[0]:.2f}, kx "
            f"{d.extent_px[1]:.2f}; stated α predicts {d.expected_px[0]:.2f}, "
            f"{d.expected_px[1]:.2f} px), ellipticity {d.ellipticity:.4f}",
            f"descan: {self.descan.span_px:.2f} px across the scan "
            f"({'applied' if self.geometry.descan_px_per_A is not None else 'not applied'})",
            f"detector transposed: {'yes' if self.geometry.transposed else 'no'} ("
            + ("curl" if r.method == "centre of mass" else "explained-power")
            + f" ratio {r.transpose_ratio:.1f} between the two choices)",
            f"scan rotation: {self.rotation_deg:.2f}° (from the {r.method}; curl left "
            f"{100 * r.curl_fraction:.2f}%; half-turn by the {h.decided_by}: "
            f"{', '.join(indicators)})",
        ]
        if self.defocus is not None:
            f = self.defocus
            out.append(
                f"defocus: {self.defocus_A:.1f} Å (parallax fit, width {f.width_A:.0f} Å, "
                f"explains {100 * f.explained:.0f}% of the bright-field signal, searched "
                f"{f.search_A[0]:.0f}…{f.search_A[1]:.0f} Å)"
            )
        else:
            out.append(f"defocus: {self.defocus_A:.1f} Å (stated, not fitted)")
        if self.probe_initial is not None:
            out.append(f"probe from the vacuum pattern: {self.probe_initial.shape[1:]} pixels")
        return out


def _regular_step(dataset: STEMDataset) -> tuple[float, float]:
    step = tuple(float(v) for v in dataset.scan_step_A)
    pos = dataset.positions_A
    from caviar_napari.data.dataset import regular_positions_A

    nominal = regular_positions_A(dataset.scan_shape, step) + pos[0, 0]
    if not np.allclose(pos, nominal, atol=1e-3 * min(step)):
        raise InputError(
            f"{dataset.source}: the calibration needs a regular scan raster; the file's "
            "scan/positions_A are not one"
        )
    return step  # type: ignore[return-value]


def _geometry(
    disc: DiscFit, descan: DescanFit, transposed: bool, apply_descan: bool
) -> DetectorGeometry:
    """The detector geometry of the calibration (centre and descan in the transposed frame)."""
    centre = disc.centre_px[::-1] if transposed else disc.centre_px
    gradient = None
    if apply_descan:
        gradient = descan.gradient_px_per_A[::-1] if transposed else descan.gradient_px_per_A
    return DetectorGeometry(transposed=transposed, centre_px=centre, descan_px_per_A=gradient)


def _parallax(
    dataset: STEMDataset, disc: DiscFit, geometry: DetectorGeometry, step: tuple[float, float]
) -> BrightFieldParallax:
    """The bright-field parallax model of the central scan window, read with ``geometry``."""
    patterns = _central_patterns(dataset, geometry)
    k = patterns.shape[2:]
    centre = np.asarray(geometry.centre_px)
    residual = centre - np.floor(centre + 0.5)
    extent = disc.extent_px[::-1] if geometry.transposed else disc.extent_px
    return BrightFieldParallax(
        patterns,
        centre_px=(k[0] // 2 + residual[0], k[1] // 2 + residual[1]),
        radius_px=extent,
        sampling_mrad=geometry.angular_sampling(dataset.angular_sampling_mrad),
        wavelength_A=dataset.wavelength_A,
        scan_step_A=step,
    )


def _central_patterns(dataset: STEMDataset, geometry: DetectorGeometry) -> np.ndarray:
    """The central window of at most :data:`~.defocus.MAX_SCAN` positions per axis, read
    (only it) in the calibrated frame; a descan centre moved to the window's first point."""
    sy, sx = dataset.scan_shape
    y0, x0 = max(0, (sy - MAX_SCAN) // 2), max(0, (sx - MAX_SCAN) // 2)
    ys, xs = slice(y0, y0 + min(sy, MAX_SCAN)), slice(x0, x0 + min(sx, MAX_SCAN))
    pos = dataset.positions_A
    if geometry.descan_px_per_A is not None and geometry.centre_px is not None:
        moved = np.asarray(geometry.centre_px) + geometry.descan_px_per_A @ (
            pos[y0, x0] - pos[0, 0]
        )
        geometry = dataclasses.replace(geometry, centre_px=(float(moved[0]), float(moved[1])))
    return read_patterns(dataset.intensities[ys, xs], geometry, pos[ys, xs])


def calibrate(dataset: STEMDataset, options: CalibrationOptions | None = None) -> CalibrationResult:
    """Calibrate ``dataset`` from its patterns (module docstring).

    Parameters
    ----------
    dataset
        The data as read (its frame: what the file stores, after any detector attributes the
        file already had); a regular scan.
    options
        See :class:`CalibrationOptions`.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    InputError
        No bright-field disc, a scan too small, an irregular raster.
    """
    opts = options or CalibrationOptions()
    step = _regular_step(dataset)
    warnings: list[str] = []
    sampling = tuple(float(v) for v in dataset.angular_sampling_mrad)
    alpha = float(dataset.convergence_semiangle_mrad)

    disc = fit_disc(mean_pattern(dataset.intensities), alpha, sampling)  # type: ignore[arg-type]
    warnings += disc.check(alpha, sampling)  # type: ignore[arg-type]

    dark_mask = dark_field_mask(dataset.detector_shape, disc) if opts.dark_field else None
    com, dark = pattern_signals(dataset.intensities, disc.centre_px, dark_mask)
    descan = fit_descan(com, dataset.positions_A)
    rel = dataset.positions_A - dataset.positions_A[0, 0]
    plane = np.asarray(descan.offset_px) + rel @ descan.gradient_px_per_A.T
    deflection = (com - plane) * np.asarray(sampling)
    rotation = fit_rotation(deflection, step)
    stated = float(dataset.defocus_A)
    models: dict[bool, BrightFieldParallax] = {}

    def parallax(transposed: bool) -> BrightFieldParallax:
        if transposed not in models:
            geometry = _geometry(disc, descan, transposed, opts.descan)
            models[transposed] = _parallax(dataset, disc, geometry, step)
        return models[transposed]

    parallax_fit = None
    if opts.defocus and rotation.uncertain:
        reach = abs(stated) + opts.defocus_search_A
        parallax_fit = fit_rotation_parallax(
            {t: parallax(t) for t in (False, True)}, defocus_range_A=(-reach, reach)
        )
        warnings.append(
            f"the centre of mass cannot give the scan rotation ({100 * rotation.curl_fraction:.0f}"
            f"% curl, transpose ratio {rotation.transpose_ratio:.1f}: noise, or not a phase "
            "gradient): the rotation and the transpose come from the bright-field parallax"
        )
        rotation = RotationFit(
            rotation_deg=parallax_fit.rotation_deg,
            transposed=parallax_fit.transposed,
            curl_fraction=curl_fraction(
                deflection, step, parallax_fit.rotation_deg, parallax_fit.transposed
            ),
            transpose_ratio=parallax_fit.transpose_ratio,
            field_mrad=deflection[..., ::-1] if parallax_fit.transposed else deflection,
            method="bright-field parallax",
        )
        warnings += parallax_fit.warnings()
    else:
        warnings += rotation.warnings()
    theta0 = rotation.rotation_deg  # modulo 180°
    idpc = idpc_phase(rotation.field_mrad, theta0, step, dataset.wavelength_A)
    rho = None if dark is None else dark_field_correlation(dark, idpc)
    swap = rotation.transposed
    geometry = _geometry(disc, descan, swap, opts.descan)
    centre = geometry.centre_px
    out_sampling = geometry.angular_sampling(sampling)

    fits: dict[bool, DefocusFit] = {}
    phase_indicator = None
    if dark_field_decides(rho):
        if opts.defocus:
            flipped = bool(rho < 0)  # type: ignore[operator]
            fit = fit_defocus(parallax(swap), rotation_deg=theta0 + 180.0 * flipped,
                              start_A=stated, search_A=opts.defocus_search_A)  # fmt: skip
            fits[flipped] = fit
            phase_indicator = -fit.phase_skewness if flipped else fit.phase_skewness
    elif opts.defocus:
        model = parallax(swap)
        for flipped in (False, True):
            fits[flipped] = fit_defocus(model, rotation_deg=theta0 + 180.0 * flipped,
                                        start_A=stated, search_A=opts.defocus_search_A)  # fmt: skip
        phase_indicator = 0.5 * (fits[False].phase_skewness - fits[True].phase_skewness)
    else:
        try:
            model = parallax(swap)
        except InputError:  # no bright-field phase: the other indicators decide
            model = None
        if model is not None:
            keep, turned = (skewness(model.phase(stated, theta0 + t)) for t in (0.0, 180.0))
            phase_indicator = 0.5 * (keep - turned)
    half_turn = choose_half_turn(
        theta0, dark_correlation=rho, phase_skewness=phase_indicator, idpc_skewness=skewness(idpc)
    )
    warnings += half_turn.warnings()
    defocus_fit = fits.get(half_turn.flipped)
    defocus = stated
    if defocus_fit is not None:
        defocus = defocus_fit.defocus_A
        warnings += defocus_fit.warnings()
    rotation_deg = half_turn.rotation_deg

    probe = None
    if opts.vacuum_pattern is not None:
        vac = np.asarray(opts.vacuum_pattern, dtype=np.float64)
        if vac.shape != dataset.detector_shape:
            raise InputError(
                f"the vacuum pattern has {vac.shape} pixels, the data {dataset.detector_shape}"
            )
        centred = read_patterns(
            vac[None, None].astype(np.float32),
            DetectorGeometry(transposed=swap, centre_px=centre),
        )[0, 0]
        probe = probe_from_vacuum(
            centred,
            sampling_mrad=out_sampling,
            wavelength_A=dataset.wavelength_A,
            defocus_A=defocus,
            total_intensity=dataset.mean_total_intensity,
        )
        if opts.descan:
            warnings.append(
                "the vacuum probe is centred with the pattern centre of the first scan point"
            )
    return CalibrationResult(
        geometry=geometry,
        rotation_deg=rotation_deg,
        defocus_A=defocus,
        angular_sampling_mrad=out_sampling,
        disc=disc,
        descan=descan,
        rotation=rotation,
        half_turn=half_turn,
        defocus=defocus_fit,
        parallax_rotation=parallax_fit,
        probe_initial=probe,
        warnings=warnings,
    )
