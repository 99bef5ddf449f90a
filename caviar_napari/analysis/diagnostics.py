"""Resolution diagnostics of a multislice reconstruction (the paper's Fig. 3; issue 16).

Everything here is Qt-free numbers on arrays; ``caviar diagnostics`` (workflows/diagnostics.py)
writes them and draws the figures.

Lateral: power spectrum and information limit
---------------------------------------------
:func:`power_spectrum` averages ``|FFT|²`` of the phase over slices and object states (each image
mean-subtracted and multiplied by a 2D Hann window, on the scanned area) and azimuthally in
rings one Fourier pixel wide.  :func:`information_limit` takes the **noise plateau** from the
rings between ``plateau_start`` × the band limit and the band limit (the object's 2/3-Nyquist
cut, ``core.optics.BAND_LIMIT``): its level is their median (their spread, 1.4826 × the median
absolute deviation, is reported).  The information limit ``k_info`` is the largest ring below the
plateau band whose azimuthal average exceeds ``(1 + snr)`` × the level — with the default
``snr = 1``, where the signal power still equals the noise power; ``d = 1 / k_info`` (pm) and
``d/λ`` are reported.  When no ring below the plateau band stands out, or when the
information reaches the plateau band — the last ring below it stands out, or the band is no
plateau at all because the power still falls across it by more than :data:`FLAT_RATIO`
(noise-free data: the reconstruction holds signal up to the band limit) — the result says so
(``bound``), and ``d`` is then an upper bound.

What the optics allow (:func:`optics_limits`):

* the double-aperture limit ``d = λ / (2α)`` (bright-field interference of two beams at
  opposite edges of the aperture) — ptychography can pass it with dark-field data;
* the detector limit ``d = λ / (α + θ_det)``, ``θ_det`` the largest collected angle — no
  reconstruction can resolve finer than the largest scattering vector the detector saw;
* the depth of field ``2 λ / α²`` and the bright-field depth resolution of a lateral frequency
  q, ``Δz(q) = 2 / (q (2α − λq))``: two beams inside the aperture, at θ1 and θ2 = θ1 + λq,
  interfere with ``k_z = q (θ1 + θ2) / 2`` (:func:`caviar_napari.simulate.thick.
  depth_resolution_A` derives it; repeated here as the analysis layer may not import the
  simulator).  It is the linear (weak-object, bright-field) estimate, not a hard bound: a beam
  scattered once from the aperture edge into the dark field carries ``k_z`` up to
  ``q (2α + λq) / 2``, so **single scattering** allows ``Δz_ss(q) = 2 / (q (2α + λq))``, and
  multiple scattering in a strong object more.

Depth: the 3-D power against k_z
--------------------------------
:func:`kz_power` Fourier transforms the phase over ``(slice, y, x)`` (state by state, the mean
of the stack removed, a Hann window in y and x), averages ``|FFT|²`` over states and
azimuthally in ``(k_y, k_x)``: ``P(k_r, k_z)``.  :func:`depth_resolution` reads the profile
``P(q, k_z)`` of the ring of a chosen reflection q (symmetrised in ±k_z) and finds ``k_z,half``,
the smallest ``|k_z|`` at which it has fallen to half its ``k_z = 0`` value (linear
interpolation); the depth resolution is ``Δz = 1 / k_z,half``.  The optics' values ``1 /
k_z,max`` use the *edge* of a transfer, and the half-power point lies at or inside the edge
(equal for a flat transfer): a weak object's reconstruction gives ``Δz`` at or above the
single-scattering ``Δz_ss(q)``, near the bright-field ``Δz(q)`` when the bright field dominates;
only multiple scattering can take it below ``Δz_ss``.  With ``S`` slices of ``dz`` the
k_z samples are ``1/(S dz)`` apart and reach ``1/(2 dz)``: a profile still above one half at the
last sample only gives the bound ``Δz ≤ 2 dz`` (``bound = "at most"``), and a profile already
below one half at the first sample ``1/(S dz)`` the bound ``Δz ≥ S dz / 2`` (``"at least"``;
the reconstruction is then thinner than its depth resolution).

r–z maps
--------
:func:`rz_map` averages the phase (mean over states) in rings one pixel wide around the atomic
columns of a z-range, in every slice: ``(slice, r)``; its innermost ring (the pixels less than
one pixel from the centre, never empty however the columns sit on the grid) is the phase against
z through the column centres (Fig. 3 d–f).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.atoms import as_phase_stack
from caviar_napari.core.optics import BAND_LIMIT, wavelength_A
from caviar_napari.data.diagnostics import ReflectionDepth
from caviar_napari.errors import InputError

__all__ = [
    "FLAT_RATIO",
    "DepthResolution",
    "InformationLimit",
    "KzPower",
    "OpticsLimits",
    "PowerSpectrum",
    "RZMap",
    "depth_resolution",
    "find_reflections",
    "information_limit",
    "kz_power",
    "optics_limits",
    "power_spectrum",
    "rz_map",
]


#: A band of rings is a noise plateau when its first third is at most this factor above its
#: last third (a falling power is signal, not noise).
FLAT_RATIO = 3.0


@dataclass(frozen=True)
class OpticsLimits:
    """What the optics allow (module docstring), Å and 1/Å.

    Attributes
    ----------
    wavelength_A
        λ.
    double_aperture_A
        ``λ / (2α)``.
    detector_A
        ``λ / (α + θ_det)``; NaN when the detector angle is not known.
    depth_of_field_A
        ``2 λ / α²``.
    alpha_mrad, detector_mrad
        α and θ_det.
    """

    wavelength_A: float
    double_aperture_A: float
    detector_A: float
    depth_of_field_A: float
    alpha_mrad: float
    detector_mrad: float

    def depth_resolution_A(self, q_invA: ArrayLike) -> np.ndarray:
        """Bright-field ``Δz(q) = 2 / (q (2α − λq))`` (Å), infinite where ``λq ≥ 2α``."""
        q = np.abs(np.asarray(q_invA, dtype=float))
        alpha = self.alpha_mrad * 1e-3
        kz = q * (2 * alpha - self.wavelength_A * q) / 2
        with np.errstate(divide="ignore"):
            return np.where(kz > 0, 1.0 / np.where(kz > 0, kz, 1.0), np.inf)

    def single_scattering_depth_A(self, q_invA: ArrayLike) -> np.ndarray:
        """``Δz_ss(q) = 2 / (q (2α + λq))`` (Å): the finest depth any *singly* scattered beam
        can carry (a beam entering at the aperture edge, leaving λq further out, inside the
        detector; module docstring)."""
        q = np.abs(np.asarray(q_invA, dtype=float))
        alpha = self.alpha_mrad * 1e-3
        with np.errstate(divide="ignore"):
            return 2.0 / (q * (2 * alpha + self.wavelength_A * q))


def optics_limits(
    energy_eV: float, convergence_semiangle_mrad: float, detector_mrad: float | None = None
) -> OpticsLimits:
    """The optics' limits of a probe (α in mrad) and a detector reaching ``detector_mrad``."""
    lam = float(wavelength_A(energy_eV))
    alpha = float(convergence_semiangle_mrad) * 1e-3
    if not alpha > 0:
        raise InputError(f"convergence semi-angle must be > 0, got {convergence_semiangle_mrad}")
    det = float("nan") if detector_mrad is None else float(detector_mrad)
    return OpticsLimits(
        wavelength_A=lam,
        double_aperture_A=lam / (2 * alpha),
        detector_A=lam / (alpha + det * 1e-3) if detector_mrad is not None else float("nan"),
        depth_of_field_A=2 * lam / alpha**2,
        alpha_mrad=alpha * 1e3,
        detector_mrad=det,
    )


# ------------------------------------------------------------------------------ helpers
def _hann2(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1]))


def _radial_bins(
    shape: tuple[int, int], pixel_size_A: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Ring index of every (fft-shifted) Fourier pixel, ring centres (1/Å), ring width."""
    ky = np.fft.fftshift(np.fft.fftfreq(shape[0], pixel_size_A[0]))
    kx = np.fft.fftshift(np.fft.fftfreq(shape[1], pixel_size_A[1]))
    width = max(
        abs(ky[1] - ky[0]) if shape[0] > 1 else 0, abs(kx[1] - kx[0]) if shape[1] > 1 else 0
    )
    k = np.hypot(ky[:, None], kx[None, :])
    ring = np.floor(k / width + 0.5).astype(int)
    centres = np.arange(ring.max() + 1) * width
    return ring, centres, float(width)


def _ring_mean(values: np.ndarray, ring: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(ring.ravel(), minlength=n)
    sums = np.bincount(ring.ravel(), weights=values.ravel(), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _crop(stack: np.ndarray, region_px: tuple[slice, slice] | None) -> np.ndarray:
    if region_px is None:
        return stack
    out = stack[..., region_px[0], region_px[1]]
    if min(out.shape[-2:]) < 8:
        raise InputError(f"the analysed region is too small: {out.shape[-2:]} pixels")
    return out


# ------------------------------------------------------------------------------ lateral
@dataclass(frozen=True)
class PowerSpectrum:
    """Power spectrum averaged over slices and states.

    Attributes
    ----------
    power
        ``(Ky, Kx)`` fft-shifted mean ``|FFT|²`` (zero frequency at ``[Ky//2, Kx//2]``).
    pixel_invA
        ``(dky, dkx)`` Fourier pixel, 1/Å.
    k_invA
        ``(n,)`` ring centres, 1/Å.
    radial_mean, radial_max
        ``(n,)`` azimuthal mean and maximum of ``power`` in each ring.
    band_limit_invA
        The object's band limit (2/3 of Nyquist along the coarser axis), 1/Å.
    """

    power: np.ndarray
    pixel_invA: tuple[float, float]
    k_invA: np.ndarray
    radial_mean: np.ndarray
    radial_max: np.ndarray
    band_limit_invA: float


def power_spectrum(
    phase: ArrayLike,
    pixel_size_A: tuple[float, float],
    region_px: tuple[slice, slice] | None = None,
) -> PowerSpectrum:
    """``|FFT|²`` of the phase averaged over slices and object states, and its rings.

    Parameters
    ----------
    phase
        ``(state, slice, y, x)`` phase (or the complex object).
    pixel_size_A
        ``(dy, dx)``, Å.
    region_px
        Pixel slices ``(ys, xs)`` of the area analysed (e.g. the scanned area); all when None.
    """
    stack = _crop(as_phase_stack(phase).astype(np.float64), region_px)
    images = stack.reshape(-1, *stack.shape[-2:])
    images = images - images.mean(axis=(1, 2), keepdims=True)
    window = _hann2(images.shape[-2:])
    spec = np.zeros(images.shape[-2:])
    for img in images:  # states × slices images, one FFT each (bounded memory)
        spec += np.abs(np.fft.fft2(img * window)) ** 2
    spec = np.fft.fftshift(spec / images.shape[0])
    d = (float(pixel_size_A[0]), float(pixel_size_A[1]))
    ring, centres, _ = _radial_bins(spec.shape, d)
    n = centres.size
    rmax = np.full(n, np.nan)
    np.fmax.at(rmax, ring.ravel(), spec.ravel())
    return PowerSpectrum(
        power=spec,
        pixel_invA=(1.0 / (spec.shape[0] * d[0]), 1.0 / (spec.shape[1] * d[1])),
        k_invA=centres,
        radial_mean=_ring_mean(spec, ring, n),
        radial_max=rmax,
        band_limit_invA=BAND_LIMIT / (2.0 * max(d)),
    )


@dataclass(frozen=True)
class InformationLimit:
    """The information limit of a power spectrum (criterion in the module docstring).

    Attributes
    ----------
    k_invA, d_A, d_over_wavelength
        ``k_info``, ``d = 1/k_info`` (Å) and ``d / λ``.
    plateau_level, plateau_spread
        Noise plateau (median and robust spread of its rings' averages).
    plateau_from_invA, band_limit_invA
        The plateau band ``[plateau_from, band_limit]``.
    bound
        ``""`` for a measured limit; ``"at least"`` when the information reaches the plateau
        band (``d`` is then an upper bound on the resolution); ``"none"`` when no ring stands
        out.
    criterion
        The rule, in words.
    """

    k_invA: float
    d_A: float
    d_over_wavelength: float
    plateau_level: float
    plateau_spread: float
    plateau_from_invA: float
    band_limit_invA: float
    bound: str
    criterion: str


def information_limit(
    spectrum: PowerSpectrum,
    wavelength_A: float,
    *,
    plateau_start: float = 0.85,
    snr: float = 1.0,
) -> InformationLimit:
    """The information limit ``d`` of a power spectrum (module docstring).

    Parameters
    ----------
    spectrum
        :func:`power_spectrum` output.
    wavelength_A
        λ, for ``d/λ``.
    plateau_start
        The plateau band starts at this fraction of the band limit.
    snr
        Rings whose azimuthal average exceeds the plateau by this factor of it (spectral
        signal-to-noise ratio; 1: signal power equal to the noise power) carry information.
    """
    if not 0 < plateau_start < 1:
        raise InputError(f"plateau_start must be in (0, 1), got {plateau_start}")
    k = spectrum.k_invA
    band = spectrum.band_limit_invA
    usable = (k > 0) & (k <= band) & np.isfinite(spectrum.radial_mean)
    if usable.sum() < 6:
        raise InputError(
            f"only {int(usable.sum())} Fourier rings below the band limit: the analysed area is "
            "too small for an information limit"
        )
    # at least 3 rings in the plateau band (a small area has wide rings)
    lo = min(plateau_start * band, float(np.sort(k[usable])[-3]))
    in_plateau = usable & (k >= lo)
    values = spectrum.radial_mean[in_plateau]
    level = float(np.median(values))
    spread = float(1.4826 * np.median(np.abs(values - level)))
    threshold = (1.0 + snr) * level
    below = (k > 0) & (k < lo) & np.isfinite(spectrum.radial_mean)
    above = below & (spectrum.radial_mean > threshold)
    third = max(values.size // 3, 1)
    flat = np.median(values[:third]) <= FLAT_RATIO * np.median(values[-third:])
    criterion = (
        f"largest ring below {lo / band:.2f} × the band limit whose azimuthal average exceeds "
        f"the noise plateau (median of the rings from {lo / band:.2f} × the band limit to the "
        f"band limit, at least 3 rings) {1 + snr:g}-fold (spectral SNR {snr:g}); when that band "
        f"is no plateau (its first third {FLAT_RATIO:g}× above its last: the power still falls "
        f"there) the information reaches it and d ≤ 1 / ({lo / band:.2f} × band limit)"
    )
    if not flat:
        k_info, bound = float(lo), "at least"
    elif not above.any():
        k_info, bound = float("nan"), "none"
    else:
        k_info = float(k[above].max())
        # the information reaches the plateau band when the last ring below it stands out
        bound = "at least" if above[np.flatnonzero(below)[-1]] else ""
    d = 1.0 / k_info if np.isfinite(k_info) and k_info > 0 else float("nan")
    return InformationLimit(
        k_invA=k_info,
        d_A=d,
        d_over_wavelength=d / wavelength_A,
        plateau_level=level,
        plateau_spread=spread,
        plateau_from_invA=float(lo),
        band_limit_invA=float(band),
        bound=bound,
        criterion=criterion,
    )


def find_reflections(spectrum: PowerSpectrum, n: int = 2, *, min_k_invA: float = 0.2) -> np.ndarray:
    """The ``n`` lowest-frequency rings that are local maxima of the ring maximum and stand out
    (≥ 10 × the median ring maximum): the Bragg rings, 1/Å, ascending."""
    from scipy.signal import find_peaks

    k = spectrum.k_invA
    rmax = np.nan_to_num(spectrum.radial_max, nan=0.0)
    ok = (k >= min_k_invA) & (k <= spectrum.band_limit_invA)
    floor = float(np.median(rmax[ok])) if ok.any() else 0.0
    peaks, _ = find_peaks(rmax, height=10 * floor)
    peaks = peaks[ok[peaks]]
    return np.sort(k[peaks])[:n]


# ------------------------------------------------------------------------------ depth
@dataclass(frozen=True)
class KzPower:
    """Azimuthally averaged 3-D Fourier power of the phase.

    Attributes
    ----------
    k_r_invA
        ``(n_r,)`` ring centres of the in-plane frequency, 1/Å.
    k_z_invA
        ``(n_z,)`` k_z samples (fft order shifted: ascending, 0 at ``[n_z // 2]``), 1/Å.
    power
        ``(n_z, n_r)`` mean ``|FFT|²``.
    slice_thickness_A
        dz.
    """

    k_r_invA: np.ndarray
    k_z_invA: np.ndarray
    power: np.ndarray
    slice_thickness_A: float


def kz_power(
    phase: ArrayLike,
    slice_thickness_A: ArrayLike,
    pixel_size_A: tuple[float, float],
    region_px: tuple[slice, slice] | None = None,
) -> KzPower:
    """``P(k_r, k_z)``: the 3-D power of the phase averaged over states and over rings in
    ``(k_y, k_x)`` (module docstring).  Needs equal slice thicknesses and at least 2 slices."""
    stack = _crop(as_phase_stack(phase).astype(np.float64), region_px)
    dz = np.atleast_1d(np.asarray(slice_thickness_A, dtype=float))
    if stack.shape[1] < 2:
        raise InputError("the 3-D power needs a reconstruction of at least 2 slices")
    if dz.size not in (1, stack.shape[1]) or not np.allclose(dz, dz[0], rtol=1e-6):
        raise InputError(f"the 3-D power needs equal slice thicknesses, got {dz.tolist()}")
    window = _hann2(stack.shape[-2:])
    n_z = stack.shape[1]
    d = (float(pixel_size_A[0]), float(pixel_size_A[1]))
    ring, centres, _ = _radial_bins(stack.shape[-2:], d)
    power = np.zeros((n_z, centres.size))
    for state in stack:  # (slice, y, x): one 3-D FFT per state
        img = (state - state.mean()) * window
        p = np.fft.fftshift(np.abs(np.fft.fftn(img)) ** 2)
        for j in range(n_z):
            power[j] += np.nan_to_num(_ring_mean(p[j], ring, centres.size))
    power /= stack.shape[0]
    k_z = np.fft.fftshift(np.fft.fftfreq(n_z, float(dz[0])))
    return KzPower(centres, k_z, power, float(dz[0]))


#: The depth resolution at one reflection: the record the DIAG file holds.
DepthResolution = ReflectionDepth


def depth_resolution(
    kz: KzPower, q_invA: float, optics: OpticsLimits, *, rings: int = 0
) -> DepthResolution:
    """The depth resolution at the reflection ``q_invA`` (module docstring).

    Parameters
    ----------
    kz
        :func:`kz_power` output.
    q_invA
        Lateral frequency of the reflection, 1/Å.
    optics
        For the optics' ``Δz(q)``.
    rings
        Rings on each side of the reflection's ring summed into the profile.
    """
    k_r = kz.k_r_invA
    centre = int(np.argmin(np.abs(k_r - q_invA)))
    lo, hi = max(centre - rings, 1), min(centre + rings + 1, k_r.size)
    prof = kz.power[:, lo:hi].sum(axis=1)
    zero = kz.k_z_invA.size // 2
    if not prof[zero] > 0:
        raise InputError(f"no power at k_z = 0 in the ring of q = {q_invA:.3f} 1/Å")
    # symmetric profile: mean of +k_z and −k_z
    half = prof[zero:].copy()
    mirror = prof[: zero + 1][::-1]
    n = min(half.size, mirror.size)
    half[:n] = 0.5 * (half[:n] + mirror[:n])
    half /= half[0]
    kz_pos = kz.k_z_invA[zero:]
    drop = np.flatnonzero(half <= 0.5)
    if drop.size == 0:
        kz_half, dz, bound = float("nan"), 2.0 * kz.slice_thickness_A, "at most"
    else:
        j = int(drop[0])
        f = (half[j - 1] - 0.5) / (half[j - 1] - half[j])
        kz_half = float(kz_pos[j - 1] + f * (kz_pos[j] - kz_pos[j - 1]))
        dz, bound = 1.0 / kz_half, ("at least" if j == 1 else "")
    q_ring = float(k_r[centre])
    return DepthResolution(
        q_invA=q_ring,
        kz_half_invA=kz_half,
        dz_A=float(dz),
        optics_dz_A=float(optics.depth_resolution_A(q_ring)),
        single_scattering_dz_A=float(optics.single_scattering_depth_A(q_ring)),
        bound=bound,
        profile=prof / prof[zero],
    )


# ------------------------------------------------------------------------------ r–z maps
@dataclass(frozen=True)
class RZMap:
    """Phase around atomic columns against r and z.

    Attributes
    ----------
    r_A
        ``(n_r,)`` mean distance from the column centre of the pixels in each ring, Å (ring k
        holds the pixels from k to k + 1 pixel widths away, so ring 0 is never empty however
        the columns sit on the pixel grid).
    z_A
        ``(S,)`` depth of the top of every slice, Å.
    phase
        ``(S, n_r)`` mean phase (rad) in each ring around the columns, per slice.
    column_profile
        ``(S,)`` the phase at the column centres (the innermost ring) against z.
    n_columns
        Columns averaged.
    """

    r_A: np.ndarray
    z_A: np.ndarray
    phase: np.ndarray
    column_profile: np.ndarray
    n_columns: int


def rz_map(
    phase: ArrayLike,
    slice_thickness_A: ArrayLike,
    pixel_size_A: tuple[float, float],
    origin_A: tuple[float, float],
    columns_A: ArrayLike,
    *,
    r_max_A: float = 1.0,
) -> RZMap:
    """Ring averages of the phase (mean over states) around columns, in every slice.

    Parameters
    ----------
    phase
        ``(state, slice, y, x)`` phase or complex object.
    slice_thickness_A
        ``(S,)`` thicknesses (for the depths).
    pixel_size_A, origin_A
        The object grid (pixel ``[0, 0]`` at ``origin_A``).
    columns_A
        ``(n, 2)`` column centres ``(y, x)``, Å (NaN rows ignored; columns whose disc of radius
        ``r_max_A`` leaves the image are left out).
    r_max_A
        Largest radius, Å; rings are one pixel (the finer axis) wide, the first from the centre
        out to one pixel.
    """
    stack = as_phase_stack(phase).astype(np.float64).mean(axis=0)  # (S, H, W)
    n_s, h, w = stack.shape
    dz = np.atleast_1d(np.asarray(slice_thickness_A, dtype=float))
    if dz.size == 1:
        dz = np.repeat(dz, n_s)
    if dz.size != n_s:
        raise InputError(f"{dz.size} slice thicknesses for {n_s} slices")
    d = np.asarray(pixel_size_A, dtype=float)
    step = float(d.min())
    cols = np.asarray(columns_A, dtype=float).reshape(-1, 2)
    cols = cols[np.isfinite(cols).all(axis=1)]
    px = (cols - np.asarray(origin_A)) / d
    half = np.ceil(r_max_A / d).astype(int) + 1
    inside = np.all((px >= half) & (px < np.array([h, w]) - half - 1), axis=1)
    px = px[inside]
    if px.shape[0] == 0:
        raise InputError("no column lies far enough inside the object for an r–z map")
    n_r = int(np.floor(r_max_A / step)) + 1
    oy = np.arange(-half[0], half[0] + 1)
    ox = np.arange(-half[1], half[1] + 1)
    sums = np.zeros((n_s, n_r))
    counts = np.zeros(n_r)
    radii = np.zeros(n_r)
    for c in px:  # columns: a few hundred windows
        base = np.rint(c).astype(int)
        yy = (base[0] + oy)[:, None]
        xx = (base[1] + ox)[None, :]
        r = np.hypot((yy - c[0]) * d[0], (xx - c[1]) * d[1])
        # [k step, (k + 1) step) (a pixel exactly one step out is in ring 1, whatever the
        # rounding): ring 0 is never empty
        ring = np.floor(r / step + 1e-9).astype(int)
        keep = ring < n_r
        win = stack[:, yy, xx]  # (S, wy, wx)
        for j in range(n_s):
            sums[j] += np.bincount(ring[keep], weights=win[j][keep], minlength=n_r)
        counts += np.bincount(ring[keep], minlength=n_r)
        radii += np.bincount(ring[keep], weights=r[keep], minlength=n_r)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / counts, np.nan)
        r_mean = np.where(counts > 0, radii / counts, np.nan)
    z = np.concatenate([[0.0], np.cumsum(dz)[:-1]])
    return RZMap(
        r_A=r_mean,
        z_A=z,
        phase=mean,
        column_profile=mean[:, 0],
        n_columns=int(px.shape[0]),
    )
