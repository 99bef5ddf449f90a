"""Resolution diagnostics of a reconstruction, the paper's Fig. 3 (``caviar diagnostics``).

:func:`compute_diagnostics` (arrays in, :class:`~caviar_napari.data.diagnostics.DiagnosticsData`
out; what a Diagnostics dock calls on the layers it shows) measures, with
:mod:`caviar_napari.analysis.diagnostics`:

* the power spectrum averaged over slices and states on the scanned area, its information limit
  ``d`` (pm) and ``d/λ``, against the double-aperture limit ``λ/(2α)`` and the detector limit
  ``λ/(α + θ_det)``;
* for a multislice reconstruction, the azimuthally averaged 3-D power against k_z and the depth
  resolution at the chosen reflections (default: the two lowest Bragg rings found in the power
  spectrum), against the optics' ``Δz(q) = 2/(q(2α − λq))`` and the depth of field ``2λ/α²``;
* with an ATOMS file, the r–z phase maps around the columns of each of its z-ranges and the phase
  against z through the column centres.

:func:`draw_power`, :func:`draw_kz` and :func:`draw_rz` draw them on given matplotlib axes
(the Diagnostics dock lays them out for its canvas), :func:`diagnostics_figures` into the figures
written next to the DIAG file (matplotlib's object API, no pyplot state);
:func:`resolve_optics` finds the calibration (given, or from the reconstruction's source data);
:func:`run_diagnostics` reads the files, computes, and writes the DIAG file (HDF5), optionally
its numbers as JSON, and the figures as PNG; :func:`save_diagnostics` writes diagnostics
computed elsewhere (the dock) the same way.  Every output is checked before anything is
computed or written (:func:`prepare_outputs`): the DIAG file by the
:class:`~caviar_napari.io.outputs.OutputTarget` rules, its JSON and PNG companions likewise — an
existing one is replaced only when this program wrote it (the JSON's ``software``/``kind`` keys,
the PNG's ``Software``/``kind`` text chunks) or with ``overwrite``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caviar_napari.analysis import diagnostics as dg
from caviar_napari.data.diagnostics import DiagnosticsData, ReflectionDepth, ZRangeProfile
from caviar_napari.errors import InputError
from caviar_napari.io._h5util import SOFTWARE
from caviar_napari.io.outputs import OutputError, OutputTarget, check_location
from caviar_napari.workflows.summary import StepSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from caviar_napari.data.atoms import AtomsData

log = logging.getLogger(__name__)

__all__ = [
    "DiagnosticsOptions",
    "DiagnosticsOutputs",
    "DiagnosticsSummary",
    "Optics",
    "compute_diagnostics",
    "diagnostics_figures",
    "diagnostics_lines",
    "diagnostics_warnings",
    "draw_kz",
    "draw_power",
    "draw_rz",
    "prepare_outputs",
    "resolve_optics",
    "run_diagnostics",
    "save_diagnostics",
]

#: How a measured value relates to the truth, by its ``bound`` (``"at most"``: an upper bound).
RELATION = {"": "=", "at most": "≤", "at least": "≥"}
#: Figures written next to the DIAG file: ``<stem>_<name>.png``.
FIGURE_NAMES = ("power", "kz", "rz")


@dataclass(frozen=True)
class DiagnosticsOptions:
    """Options of :func:`run_diagnostics`.

    Attributes
    ----------
    recon
        Reconstruction file.
    out
        Output DIAG file (HDF5).
    data
        The 4D-STEM data the reconstruction was made from (for the energy, α and the detector
        angle); default: the reconstruction's recorded source when it can be found.
    energy_eV, convergence_semiangle_mrad, detector_mrad
        Override (or replace a missing) data calibration.
    atoms
        ATOMS file whose z-ranges' columns give the r–z maps (optional).
    reflections_invA
        Lateral frequencies (1/Å) of the reflections whose depth resolution is measured;
        empty: the two lowest Bragg rings of the power spectrum.
    plateau_start, snr
        Noise plateau band and threshold of the information limit.
    margin_A
        Widen the analysed area (the scanned area) by this on every side, Å.
    json
        Also write the numbers as ``<out>.json`` (same stem).
    figures
        Also write the figures ``<stem>_power.png``, ``<stem>_kz.png``, ``<stem>_rz.png``.
    overwrite
        Replace existing outputs that this program did not write / of another kind.
    """

    recon: Path
    out: Path
    data: Path | None = None
    energy_eV: float | None = None
    convergence_semiangle_mrad: float | None = None
    detector_mrad: float | None = None
    atoms: Path | None = None
    reflections_invA: tuple[float, ...] = ()
    plateau_start: float = 0.85
    snr: float = 1.0
    margin_A: float = 0.0
    json: bool = False
    figures: bool = True
    overwrite: bool = False


@dataclass(kw_only=True)
class DiagnosticsSummary(StepSummary):
    """Result of :func:`run_diagnostics`: the data and every file written."""

    data: DiagnosticsData | None = None
    json_path: Path | None = None
    figure_paths: list[Path] = field(default_factory=list)


def _scanned_region(
    shape: tuple[int, int],
    pixel_size_A: tuple[float, float],
    origin_A: tuple[float, float],
    scan_positions_A: np.ndarray | None,
    margin_A: float = 0.0,
) -> tuple[slice, slice] | None:
    """Pixel slices of the rectangle spanned by the scan positions, widened by ``margin_A``."""
    if scan_positions_A is None or np.size(scan_positions_A) == 0:
        return None
    d = np.asarray(pixel_size_A)
    px = (np.asarray(scan_positions_A, float).reshape(-1, 2) - origin_A) / d
    lo = np.clip(np.floor(px.min(axis=0) - margin_A / d).astype(int), 0, None)
    hi = np.minimum(np.ceil(px.max(axis=0) + margin_A / d).astype(int) + 1, shape)
    return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))


def compute_diagnostics(
    phase: np.ndarray,
    *,
    pixel_size_A: tuple[float, float],
    slice_thickness_A: np.ndarray,
    object_origin_A: tuple[float, float],
    energy_eV: float,
    convergence_semiangle_mrad: float,
    detector_mrad: float | None = None,
    scan_positions_A: np.ndarray | None = None,
    zranges: dict[str, AtomsData] | None = None,
    reflections_invA: tuple[float, ...] = (),
    plateau_start: float = 0.85,
    snr: float = 1.0,
    margin_A: float = 0.0,
    source: str = "",
) -> DiagnosticsData:
    """The Fig. 3 diagnostics of a reconstruction's phase (module docstring).

    Parameters
    ----------
    phase
        ``(state, slice, y, x)`` phase (rad) or the complex object.
    pixel_size_A, slice_thickness_A, object_origin_A
        The object grid (``ReconState`` fields).
    energy_eV, convergence_semiangle_mrad, detector_mrad
        The optics (the data's calibration); ``detector_mrad`` the largest collected angle.
    scan_positions_A
        ``(P, 2)`` probe positions: the analysis is restricted to the scanned area.
    zranges
        ATOMS z-ranges by label (their mean positions are the columns of the r–z maps).
    reflections_invA
        Reflections for the depth resolution; empty: found in the power spectrum.
    plateau_start, snr
        The information-limit criterion (:func:`~caviar_napari.analysis.diagnostics.
        information_limit`).
    margin_A
        The analysed area is the scanned area widened by this on every side (Å).
    source
        Name of the reconstruction (recorded).
    """
    from caviar_napari.analysis.atoms import as_phase_stack

    stack = as_phase_stack(phase)
    optics = dg.optics_limits(energy_eV, convergence_semiangle_mrad, detector_mrad)
    region = _scanned_region(
        stack.shape[-2:], pixel_size_A, object_origin_A, scan_positions_A, margin_A
    )
    spectrum = dg.power_spectrum(stack, pixel_size_A, region)
    info = dg.information_limit(spectrum, optics.wavelength_A, plateau_start=plateau_start, snr=snr)
    numbers: dict[str, Any] = {
        "wavelength_A": optics.wavelength_A,
        "alpha_mrad": optics.alpha_mrad,
        "detector_mrad": optics.detector_mrad,
        "n_states": int(stack.shape[0]),
        "n_slices": int(stack.shape[1]),
        "analysed_area_A": [
            float((sl.stop - sl.start) * d) for sl, d in zip(region or (), pixel_size_A)
        ],
        "slice_thickness_A": [float(v) for v in np.atleast_1d(slice_thickness_A)],
        "information_limit_A": info.d_A,
        "information_limit_pm": 100.0 * info.d_A,
        "d_over_wavelength": info.d_over_wavelength,
        "information_bound": info.bound,
        "information_criterion": info.criterion,
        "noise_plateau": info.plateau_level,
        "band_limit_invA": info.band_limit_invA,
        "double_aperture_limit_A": optics.double_aperture_A,
        "double_aperture_formula": "λ / (2α)",
        "detector_limit_A": optics.detector_A,
        "detector_formula": "λ / (α + θ_det)",
        "depth_of_field_A": optics.depth_of_field_A,
        "depth_of_field_formula": "2 λ / α²",
        "depth_resolution_formula": (
            "measured Δz = 1 / k_z,half; optics: bright field 2 / (q (2α − λq)), single "
            "scattering 2 / (q (2α + λq))"
        ),
        "depth_criterion": (
            "k_z,half: smallest |k_z| where the azimuthal 3-D power of the reflection's ring, "
            "symmetrised in ±k_z, falls to half its k_z = 0 value; Δz = 1 / k_z,half"
        ),
    }
    reflections: list[ReflectionDepth] = []
    kz_r = kz_z = kz_p = np.zeros((0,))
    if stack.shape[1] >= 2:
        kz = dg.kz_power(stack, slice_thickness_A, pixel_size_A, region)
        kz_r, kz_z, kz_p = kz.k_r_invA, kz.k_z_invA, kz.power
        qs = tuple(reflections_invA) or tuple(dg.find_reflections(spectrum, 2))
        for q in qs:
            res = dg.depth_resolution(kz, float(q), optics)
            reflections.append(
                ReflectionDepth(
                    res.q_invA,
                    res.kz_half_invA,
                    res.dz_A,
                    res.optics_dz_A,
                    res.bound,
                    res.profile,
                    res.single_scattering_dz_A,
                )
            )
    else:
        kz_p = np.zeros((0, 0))
    profiles = []
    for label, atoms in (zranges or {}).items():
        rz = dg.rz_map(
            stack, slice_thickness_A, pixel_size_A, object_origin_A, atoms.mean_positions_A
        )
        spec = atoms.zrange.spec if atoms.zrange is not None else ":"
        profiles.append(
            ZRangeProfile(label, spec, rz.r_A, rz.z_A, rz.phase, rz.column_profile, rz.n_columns)
        )
    return DiagnosticsData(
        numbers=numbers,
        power=spectrum.power,
        power_pixel_invA=spectrum.pixel_invA,
        k_invA=spectrum.k_invA,
        radial_mean=spectrum.radial_mean,
        radial_max=spectrum.radial_max,
        kz_k_r_invA=kz_r,
        kz_k_z_invA=kz_z,
        kz_power=kz_p,
        reflections=tuple(reflections),
        zranges=tuple(profiles),
        source=source,
    )


def diagnostics_of_state(
    state: Any, optics: Any, *, zranges: Any = None, source: str = "", **settings: Any
) -> DiagnosticsData:
    """:func:`compute_diagnostics` of a reconstruction state (a ``ReconState``) with the optics
    of :func:`resolve_optics`; ``settings`` are the other keywords of
    :func:`compute_diagnostics` (reflections, plateau start, SNR, margin)."""
    return compute_diagnostics(
        np.angle(np.asarray(state.object)),
        pixel_size_A=state.pixel_size_A,
        slice_thickness_A=np.asarray(state.slice_thickness_A),
        object_origin_A=state.object_origin_A,
        energy_eV=optics.energy_eV,
        convergence_semiangle_mrad=optics.convergence_semiangle_mrad,
        detector_mrad=optics.detector_mrad,
        scan_positions_A=state.scan_positions_A,
        zranges=zranges or None,
        source=source,
        **settings,
    )


def diagnostics_lines(data: DiagnosticsData) -> list[str]:
    """The report: one line per result, with the optics' limits beside the measurements."""
    n = data.numbers
    lam = n["wavelength_A"]
    lines = []
    if n["analysed_area_A"]:
        area = n["analysed_area_A"]
        lines.append(f"analysed area: {area[0]:.1f} × {area[1]:.1f} Å around the scan")
    if n["information_bound"] == "none":
        lines.append(
            "information limit: no ring stands out of the noise plateau (criterion: "
            f"{n['information_criterion']})"
        )
    else:
        bound = "≤ " if n["information_bound"] == "at least" else ""
        lines.append(
            f"information limit d = {bound}{n['information_limit_pm']:.1f} pm = "
            f"{bound}{n['d_over_wavelength']:.2f} λ (λ = {lam * 100:.2f} pm); optics: "
            f"double-aperture λ/(2α) = {n['double_aperture_limit_A'] * 100:.1f} pm, detector "
            f"λ/(α + θ_det) = {n['detector_limit_A'] * 100:.1f} pm"
        )
    lines.append(f"depth of field 2λ/α² = {n['depth_of_field_A']:.1f} Å")
    for r in data.reflections:
        lines.append(
            f"depth resolution at q = {r.q_invA:.3f} 1/Å (d = {1 / r.q_invA:.3f} Å): "
            f"Δz {RELATION[r.bound]} {r.dz_A:.1f} Å; optics: bright field 2/(q(2α − λq)) = "
            f"{r.optics_dz_A:.1f} Å, single scattering 2/(q(2α + λq)) = "
            f"{r.single_scattering_dz_A:.1f} Å"
        )
    for z in data.zranges:
        peak = int(np.argmax(z.column_profile))
        lines.append(
            f"z-range {z.label or '(all)'} (slices {z.slices}): {z.n_columns} columns, phase at "
            f"the column centres peaks in slice {peak} (z = {z.z_A[peak]:.1f} Å)"
        )
    return lines


def draw_power(ax_image: Axes, ax_rings: Axes, data: DiagnosticsData) -> None:
    """The power spectrum (log scale, k in 1/Å) on ``ax_image`` and its rings with the noise
    plateau, the information limit d (pm, d/λ) and λ/(2α) on ``ax_rings``."""
    n = data.numbers
    p = data.power
    dk = data.power_pixel_invA
    ext = [-p.shape[1] // 2 * dk[1], (p.shape[1] - p.shape[1] // 2) * dk[1],
           (p.shape[0] - p.shape[0] // 2) * dk[0], -p.shape[0] // 2 * dk[0]]  # fmt: skip
    ax_image.imshow(np.log10(p + 1e-30 + p.max() * 1e-9), extent=ext, cmap="magma")
    ax_image.set_xlabel("k_x (1/Å)")
    ax_image.set_ylabel("k_y (1/Å)")
    ax_image.set_title("log10 power, mean over slices and states", fontsize="small")
    ax_rings.semilogy(data.k_invA, data.radial_mean, label="azimuthal mean")
    ax_rings.semilogy(data.k_invA, data.radial_max, lw=0.5, alpha=0.6, label="ring maximum")
    ax_rings.axhline(n["noise_plateau"], color="grey", ls=":", label="noise plateau")
    if np.isfinite(n["information_limit_A"]):
        bound = "≤ " if n["information_bound"] == "at least" else ""
        ax_rings.axvline(
            1 / n["information_limit_A"], color="C3", ls="--",
            label=f"d = {bound}{n['information_limit_pm']:.0f} pm = "
            f"{bound}{n['d_over_wavelength']:.1f} λ",
        )  # fmt: skip
    ax_rings.axvline(1 / n["double_aperture_limit_A"], color="C2", ls=":", label="λ/(2α)")
    ax_rings.set_xlabel("|k| (1/Å)")
    ax_rings.set_ylabel("power")
    ax_rings.legend(fontsize=7)


def draw_kz(ax_map: Axes, ax_profiles: Axes, data: DiagnosticsData) -> None:
    """The azimuthal 3-D power ``P(k_r, k_z)`` with the optics' edge of the transfer on
    ``ax_map``, and each reflection's k_z profile with its depth resolution on
    ``ax_profiles`` (a one-slice reconstruction has none: the axes say so)."""
    if not data.kz_power.size:
        for ax in (ax_map, ax_profiles):
            ax.text(0.5, 0.5, "one slice: no k_z", ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
        return
    n = data.numbers
    kz, kr = data.kz_k_z_invA, data.kz_k_r_invA
    ax_map.pcolormesh(kr, kz, np.log10(data.kz_power + data.kz_power.max() * 1e-9),
                      cmap="magma", shading="nearest")  # fmt: skip
    q = np.linspace(1e-3, kr.max(), 200)
    alpha, lam = n["alpha_mrad"] * 1e-3, n["wavelength_A"]
    edge = q * (2 * alpha - lam * q) / 2
    ax_map.plot(q, np.where(edge > 0, edge, np.nan), "w--", lw=0.8, label="optics k_z,max")
    ax_map.plot(q, -np.where(edge > 0, edge, np.nan), "w--", lw=0.8)
    for i, r in enumerate(data.reflections):
        ax_map.axvline(r.q_invA, color=f"C{i}", lw=0.8, ls=":")
    ax_map.set_ylim(kz.min(), kz.max())
    ax_map.set_xlabel("k_r (1/Å)")
    ax_map.set_ylabel("k_z (1/Å)")
    ax_map.set_title("log10 azimuthal 3-D power", fontsize="small")
    ax_map.legend(fontsize=7)
    for i, r in enumerate(data.reflections):
        ax_profiles.plot(kz, r.profile, "o-", color=f"C{i}", ms=3,
                         label=f"q = {r.q_invA:.2f} 1/Å: Δz {RELATION[r.bound]} {r.dz_A:.0f} Å "
                         f"(optics {r.optics_dz_A:.0f} Å)")  # fmt: skip
    ax_profiles.axhline(0.5, color="grey", ls=":")
    ax_profiles.set_xlabel("k_z (1/Å)")
    ax_profiles.set_ylabel("power / power at k_z = 0")
    if data.reflections:
        ax_profiles.legend(fontsize=7)


def draw_rz(
    axes_maps: Sequence[Axes],
    ax_profile: Axes,
    data: DiagnosticsData,
    colours: Sequence[str] = (),
) -> None:
    """One r–z phase map per z-range on ``axes_maps`` (as many as ranges, on one colour scale
    with a colour bar) and the phase through the column centres against z of every range on
    ``ax_profile``, in ``colours`` (by range, cycled; default matplotlib's C0, C1, …)."""
    finite = [z.phase[np.isfinite(z.phase)] for z in data.zranges]
    lo = min((float(v.min()) for v in finite if v.size), default=0.0)
    hi = max((float(v.max()) for v in finite if v.size), default=1.0)
    mesh = None
    for i, (ax, z) in enumerate(zip(axes_maps, data.zranges)):
        mesh = ax.pcolormesh(z.r_A, z.z_A, z.phase, cmap="viridis", shading="nearest",
                             vmin=lo, vmax=hi)  # fmt: skip
        ax.invert_yaxis()
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("z (Å)")
        ax.set_title(f"{z.label or 'all'} (slices {z.slices})", fontsize="small")
        colour = colours[i % len(colours)] if colours else f"C{i}"
        ax_profile.plot(z.column_profile, z.z_A, "o-", ms=3, color=colour,
                        label=z.label or "all")  # fmt: skip
    if mesh is not None:
        ax_profile.figure.colorbar(mesh, ax=list(axes_maps), label="phase (rad)", shrink=0.9)
    ax_profile.invert_yaxis()
    ax_profile.set_xlabel("phase at column centres (rad)")
    ax_profile.set_ylabel("z (Å)")
    if data.zranges:
        ax_profile.legend(fontsize=7)


def diagnostics_figures(data: DiagnosticsData) -> dict[str, Figure]:
    """The figures (matplotlib ``Figure`` objects, no pyplot): ``power``, ``kz`` (several
    slices), ``rz`` (with z-ranges)."""
    from matplotlib.figure import Figure

    figs: dict[str, Figure] = {}
    fig = Figure(figsize=(9, 4), layout="constrained")
    draw_power(*fig.subplots(1, 2), data)
    figs["power"] = fig
    if data.kz_power.size:
        fig = Figure(figsize=(9, 4), layout="constrained")
        draw_kz(*fig.subplots(1, 2), data)
        figs["kz"] = fig
    if data.zranges:
        fig = Figure(figsize=(4 * len(data.zranges) + 3, 4), layout="constrained")
        axes = fig.subplots(1, len(data.zranges) + 1)
        draw_rz(axes[:-1], axes[-1], data)
        figs["rz"] = fig
    return figs


@dataclass(frozen=True)
class Optics:
    """The calibration the diagnostics are measured against.

    Attributes
    ----------
    energy_eV, convergence_semiangle_mrad
        Beam energy and α.
    detector_mrad
        Largest collected angle (None: unknown).
    origin
        Where they came from, in words (given, or the data file).
    """

    energy_eV: float
    convergence_semiangle_mrad: float
    detector_mrad: float | None
    origin: str


#: What to give when the calibration cannot be found (``caviar diagnostics``' options).
CLI_OPTICS_HINT = "give --data DATA or --energy-eV and --alpha-mrad"


def resolve_optics(
    recon: str | os.PathLike | None,
    recorded_source: str,
    *,
    data: str | os.PathLike | None = None,
    energy_eV: float | None = None,
    convergence_semiangle_mrad: float | None = None,
    detector_mrad: float | None = None,
    hint: str = CLI_OPTICS_HINT,
) -> Optics:
    """Energy, α and the detector's largest angle: the given values, the rest from the 4D-STEM
    data (``data``, else the reconstruction's recorded source found as given or next to
    ``recon``).

    Raises
    ------
    InputError
        The data is needed but not found (the message ends with ``hint``), or unreadable.
    """
    from caviar_napari.workflows.atoms import source_data_path

    energy, alpha, det = energy_eV, convergence_semiangle_mrad, detector_mrad
    if energy is not None and alpha is not None:
        return Optics(float(energy), float(alpha), det, "given")
    found = data
    if found is None and recon is not None:
        found = source_data_path(recon, recorded_source)
    if found is None and recorded_source and Path(recorded_source).is_file():
        found = recorded_source  # a live result records its data's full path
    if found is None:
        where = f"{recon}: its" if recon is not None else "the reconstruction's"
        raise InputError(
            f"{where} source data {recorded_source or '(not recorded)'} was not found; {hint}"
        )
    from caviar_napari.io.readers import load_stem

    ds = load_stem(found)
    ky, kx = ds.intensities.shape[-2:]
    dky, dkx = ds.angular_sampling_mrad
    theta = float(min(ky // 2 * dky, kx // 2 * dkx))
    return Optics(
        float(energy if energy is not None else ds.energy_eV),
        float(alpha if alpha is not None else ds.convergence_semiangle_mrad),
        det if det is not None else theta,
        f"data {found}",
    )


def diagnostics_warnings(data: DiagnosticsData) -> list[str]:
    """What the user must know about the result (recorded in the DIAG file)."""
    if data.numbers["information_bound"] == "at least":
        return [
            "the information reaches the noise-plateau band: d is an upper bound (the band "
            "limit of the object grid, not the data, sets it)"
        ]
    return []


@dataclass(frozen=True)
class DiagnosticsOutputs:
    """The checked outputs of one DIAG write: the file and its companions.

    Attributes
    ----------
    target
        The DIAG file (:class:`~caviar_napari.io.outputs.OutputTarget`).
    json_path
        ``<out>.json``, or None.
    figure_paths
        ``<stem>_<name>.png`` by figure name (empty without figures).
    """

    target: OutputTarget
    json_path: Path | None
    figure_paths: dict[str, Path]


#: The stamp of the companions: text chunks of the PNG figures, keys of the JSON numbers.
_STAMP = {"software": SOFTWARE, "kind": "diag"}


def _written_here(path: Path) -> bool:
    """Whether an existing JSON or PNG companion carries this program's DIAG stamp."""
    try:
        if path.suffix == ".json":
            found = json.loads(path.read_text(encoding="utf-8"))
        else:
            from PIL import Image

            with Image.open(path) as image:
                found = dict(image.info)
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and all(found.get(k) == v for k, v in _STAMP.items())


def prepare_outputs(
    out: str | os.PathLike,
    *,
    inputs: dict[str, str | os.PathLike | None] | None = None,
    with_json: bool = False,
    with_figures: bool = True,
    overwrite: bool = False,
) -> DiagnosticsOutputs:
    """Check, before anything is computed or written, that the DIAG file and its companions
    may and can be written (module docstring).

    Raises
    ------
    OutputError
        Naming the file and the reason.
    """
    target = OutputTarget.prepare(out, "diag", inputs=inputs, overwrite=overwrite)
    out = Path(out)
    json_path = out.with_suffix(".json") if with_json else None
    figure_paths = {}
    if with_figures:
        figure_paths = {name: out.with_name(f"{out.stem}_{name}.png") for name in FIGURE_NAMES}
    for path in [p for p in (json_path, *figure_paths.values()) if p is not None]:
        check_location(path)
        if path.exists() and not overwrite and not _written_here(path):
            raise OutputError(
                f"{path}: exists and was not written by caviar-napari; refusing to replace it "
                "(give --overwrite to replace it)"
            )
    return DiagnosticsOutputs(target, json_path, figure_paths)


def write_outputs(
    outputs: DiagnosticsOutputs, data: DiagnosticsData, summary: DiagnosticsSummary
) -> None:
    """Write the DIAG file, then its JSON and figures (atomically, each), and record them in
    ``summary`` (``out``, ``json_path``, ``figure_paths`` and a ``wrote …`` line each)."""
    from caviar_napari.io.atomic import atomic_path
    from caviar_napari.io.diagnostics_file import write_diagnostics, write_diagnostics_json

    summary.out = outputs.target.write(
        lambda p: write_diagnostics(p, data), warnings=summary.warnings
    )
    summary.lines.append(f"wrote {summary.out}")
    if outputs.json_path is not None:
        write_diagnostics_json(outputs.json_path, data)
        summary.json_path = outputs.json_path
        summary.lines.append(f"wrote {outputs.json_path}")
    if outputs.figure_paths:
        for name, fig in diagnostics_figures(data).items():
            path = outputs.figure_paths[name]
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=120, metadata=_STAMP)
            summary.figure_paths.append(path)
            summary.lines.append(f"wrote {path}")


def save_diagnostics(
    data: DiagnosticsData,
    out: str | os.PathLike,
    *,
    inputs: dict[str, str | os.PathLike | None] | None = None,
    with_json: bool = True,
    with_figures: bool = True,
    overwrite: bool = False,
) -> DiagnosticsSummary:
    """Write diagnostics computed elsewhere (the Diagnostics dock) as ``caviar diagnostics``
    does: the DIAG file, its JSON numbers and its figures, every output checked first.

    Parameters
    ----------
    data
        The diagnostics (:func:`compute_diagnostics`).
    out
        The DIAG file.
    inputs
        The files the diagnostics were computed from, by name (``{"RECON": …}``): the output
        may be none of them.
    with_json, with_figures, overwrite
        Also write ``<out>.json`` and the PNG figures; replace what may not be replaced
        otherwise (as :class:`DiagnosticsOptions`).

    Raises
    ------
    OutputError
        An output may not or cannot be written (nothing is written then).
    """
    outputs = prepare_outputs(
        out, inputs=inputs, with_json=with_json, with_figures=with_figures, overwrite=overwrite
    )
    summary = DiagnosticsSummary(data=data, warnings=diagnostics_warnings(data))
    write_outputs(outputs, data, summary)
    return summary


def run_diagnostics(options: DiagnosticsOptions) -> DiagnosticsSummary:
    """Compute the diagnostics of a reconstruction and write the DIAG file (+ JSON, figures).

    Raises
    ------
    InputError
        Unreadable inputs or a missing calibration (named).
    OutputError
        An output may not or cannot be written (checked before anything is computed).
    """
    from caviar_napari.io.atoms_file import read_atoms_zranges
    from caviar_napari.io.reconstruction import load_reconstruction

    outputs = prepare_outputs(
        options.out,
        inputs={"RECON": options.recon, "--data": options.data, "--atoms": options.atoms},
        with_json=options.json,
        with_figures=options.figures,
        overwrite=options.overwrite,
    )
    state = load_reconstruction(options.recon)
    optics = resolve_optics(
        options.recon,
        state.source,
        data=options.data,
        energy_eV=options.energy_eV,
        convergence_semiangle_mrad=options.convergence_semiangle_mrad,
        detector_mrad=options.detector_mrad,
    )
    zranges = read_atoms_zranges(options.atoms) if options.atoms is not None else None
    data = diagnostics_of_state(
        state,
        optics,
        zranges=zranges,
        reflections_invA=options.reflections_invA,
        plateau_start=options.plateau_start,
        snr=options.snr,
        margin_A=options.margin_A,
        source=str(options.recon),
    )
    summary = DiagnosticsSummary(data=data, warnings=diagnostics_warnings(data))
    summary.lines = diagnostics_lines(data)
    write_outputs(outputs, data, summary)
    return summary
