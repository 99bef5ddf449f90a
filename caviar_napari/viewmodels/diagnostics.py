"""View-model of the **Diagnostics** dock (Qt-free): the paper's Fig. 3 for a reconstruction.

The dock runs what ``caviar diagnostics`` runs (:mod:`caviar_napari.workflows.diagnostics`) on
a reconstruction held by a napari layer (``metadata["caviar_state"]``, the Reconstruction dock's
result or a RECON file opened in the viewer):

* :class:`DiagnosticsForm` holds what the user set — the optics (0: from the reconstruction's
  source data, :func:`~caviar_napari.workflows.diagnostics.resolve_optics`), the reflections of
  the depth resolution (blank: the two lowest Bragg rings), the information-limit criterion;
* :func:`compute_job` (a worker) resolves the optics, computes
  :func:`~caviar_napari.workflows.diagnostics.compute_diagnostics` with the r–z maps of the
  chosen z-ranges (atoms layers), and renders the three plots of the dock at the sizes of its
  views — the power spectrum with the information limit d (pm, d/λ), the power against k_z with
  the depth resolution of each reflection, the r–z maps per z-range and the phase through the
  column centres;
* :meth:`DiagnosticsViewModel.save` writes the DIAG file, its JSON numbers and its figures
  through :func:`~caviar_napari.workflows.diagnostics.save_diagnostics` (every output checked
  first; the reconstruction file may not be replaced).

The r–z maps are plots, not image layers: at their true aspect in the viewer's Å frame (depth
up to hundreds of Å against a radius of 1 Å) an image layer would be a line one pixel wide.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from caviar_napari.data.atoms import AtomsData
from caviar_napari.data.diagnostics import DiagnosticsData
from caviar_napari.errors import InputError
from caviar_napari.viewmodels.atoms_layers import mean_points_layer, point_size_A
from caviar_napari.viewmodels.figures import (
    FigureSize,
    RenderedFigure,
    dark_figure,
    message_figure,
    render,
    style_figure,
)
from caviar_napari.viewmodels.layer_keys import (
    ATOMS_METADATA_KEY,
    PATH_KEY,
    SOURCE_KEY,
    STATE_KEY,
)
from caviar_napari.viewmodels.notices import result_warnings
from caviar_napari.viewmodels.recon_images import LayerDataTuple
from caviar_napari.workflows import diagnostics as wd

__all__ = [
    "PLOT_NAMES",
    "DiagnosticsForm",
    "DiagnosticsOutcome",
    "DiagnosticsViewModel",
    "ReconSource",
    "atoms_file_layers",
    "compute_job",
    "parse_reflections",
    "plot_job",
    "recon_source",
    "reflection_rows",
    "save_job",
    "save_outcome",
    "zrange_columns",
]

#: The dock's plots (tab title by name), in tab order.
PLOT_NAMES = {"power": "Power spectrum", "kz": "Depth (k_z)", "rz": "r–z maps"}
#: What the dock tells the user to do for a DIAG without r–z maps.
NO_RZ = "no z-ranges chosen: tick atoms layers (Atoms dock, or Open ATOMS file…) for r–z maps"
#: Colours of the atoms layers of an ATOMS file's z-ranges, in file order, and of the ranges'
#: column profiles in the r–z plot (in the order they are ticked: the same for a file's ranges).
ZRANGE_COLOURS = ("#ffd400", "#5ec8ff", "#ff6eb4", "#9be564")
#: What the user must give when the calibration cannot be found.
OPTICS_HINT = "enter the energy and α in the dock (or keep the data file next to the RECON file)"


@dataclass(frozen=True)
class DiagnosticsForm:
    """The dock's parameters as entered (checked by :meth:`validated`).

    Attributes
    ----------
    energy_eV, alpha_mrad, detector_mrad
        Beam energy, convergence semi-angle and largest collected angle; 0: from the
        reconstruction's source data.
    reflections
        Lateral frequencies of the reflections for the depth resolution, 1/Å, separated by
        commas or spaces; blank: the two lowest Bragg rings of the power spectrum.
    plateau_start, snr
        The information-limit criterion (``caviar diagnostics --plateau-start``, ``--snr``).
    margin_A
        Analyse the scanned area widened by this, Å.
    """

    energy_eV: float = 0.0
    alpha_mrad: float = 0.0
    detector_mrad: float = 0.0
    reflections: str = ""
    plateau_start: float = 0.85
    snr: float = 1.0
    margin_A: float = 0.0

    def validated(self) -> DiagnosticsForm:
        """The form itself when every value is usable (``InputError`` naming the first that
        is not)."""
        for name in ("energy_eV", "alpha_mrad", "detector_mrad", "snr", "margin_A"):
            value = float(getattr(self, name))
            if not (np.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be ≥ 0, got {value!r}")
        if not 0 < self.plateau_start < 1:
            raise InputError(f"plateau start must be in (0, 1), got {self.plateau_start!r}")
        if (self.energy_eV > 0) != (self.alpha_mrad > 0):
            raise InputError("give both the energy and α, or neither (both from the data)")
        parse_reflections(self.reflections)
        return self

    def optics_overrides(self) -> dict[str, float | None]:
        """The optics given (None: from the data), as :func:`resolve_optics` keywords."""

        def given(value: float) -> float | None:
            return float(value) if value > 0 else None

        return {
            "energy_eV": given(self.energy_eV),
            "convergence_semiangle_mrad": given(self.alpha_mrad),
            "detector_mrad": given(self.detector_mrad),
        }


def parse_reflections(text: str) -> tuple[float, ...]:
    """``"0.32, 0.52"`` → ``(0.32, 0.52)`` 1/Å (blank: ``()``, the automatic choice).

    Raises
    ------
    InputError
        A value that is not a positive number (named).
    """
    values = []
    for item in text.replace(",", " ").split():
        try:
            q = float(item)
        except ValueError:
            raise InputError(f"reflection {item!r} is not a number (1/Å)") from None
        if not (np.isfinite(q) and q > 0):
            raise InputError(f"reflection {item!r} must be a positive frequency in 1/Å")
        values.append(q)
    return tuple(values)


@dataclass(frozen=True)
class ReconSource:
    """The reconstruction a diagnosis is of.

    Attributes
    ----------
    state
        The :class:`~caviar_napari.data.recon.ReconState`.
    name
        Its layer's name.
    recon_path
        The RECON file it was read from (None for a result not saved yet).
    data_source
        The 4D-STEM data it was made from, as recorded (path or file name; may be empty).
    """

    state: Any
    name: str
    recon_path: str | None = None
    data_source: str = ""


def recon_source(name: str, metadata: dict[str, Any]) -> ReconSource:
    """The reconstruction held by a layer's metadata (the Reconstruction dock's phase layer, or
    one read from a RECON file).

    Raises
    ------
    InputError
        The layer holds no reconstruction state.
    """
    state = metadata.get(STATE_KEY)
    if state is None:
        raise InputError(
            f"layer {name!r} holds no reconstruction (metadata {STATE_KEY!r}): choose the phase "
            "layer of a reconstruction, or open a RECON file"
        )
    path = metadata.get(PATH_KEY)
    source = str(metadata.get(SOURCE_KEY) or getattr(state, "source", "") or "")
    return ReconSource(state, name, None if not path else str(path), source)


def zrange_columns(named: Sequence[tuple[str, AtomsData]]) -> dict[str, AtomsData]:
    """The z-ranges of the r–z maps by label: each atoms layer's z-range label, else its layer
    name (``/`` replaced), made unique."""
    out: dict[str, AtomsData] = {}
    for name, atoms in named:
        label = atoms.zrange.label if atoms.zrange is not None and atoms.zrange.label else name
        label = label.replace("/", "_")
        unique, k = label, 2
        while unique in out:
            unique, k = f"{label} ({k})", k + 1
        out[unique] = atoms
    return out


def atoms_file_layers(path: str | os.PathLike) -> list[LayerDataTuple]:
    """Points layers of every z-range of an ATOMS file (one for a file of one range), each in
    its own colour (:data:`ZRANGE_COLOURS`) and carrying its
    :class:`~caviar_napari.data.atoms.AtomsData` (the Correlations and Dispersion docks read
    them too).

    Raises
    ------
    InputError
        An unreadable file, or a range with no finite mean position.
    """
    from caviar_napari.io.atoms_file import read_atoms_zranges

    stem = Path(path).stem
    layers = []
    for label, atoms in read_atoms_zranges(path).items():
        mean = np.asarray(atoms.mean_positions_A, dtype=float)
        finite = np.isfinite(mean).all(axis=1)
        if not finite.any():
            raise InputError(f"{path}: z-range {label!r} has no finite mean position")
        name = f"atoms {label} ({stem})" if label else f"atoms ({stem})"
        data, kwargs, kind = mean_points_layer(
            mean[finite], name=name, size_A=0.5 * point_size_A(mean[finite])
        )  # half the Atoms dock's rings: two layers' atoms overlap in projection
        colour = ZRANGE_COLOURS[len(layers) % len(ZRANGE_COLOURS)]
        for key in ("face_colormap", "face_contrast_limits"):
            kwargs.pop(key, None)
        kwargs.update(face_color=colour, border_color=colour, units=("Å", "Å"))
        kwargs["metadata"] = {**kwargs["metadata"], ATOMS_METADATA_KEY: atoms}
        layers.append((data, kwargs, kind))
    return layers


# ---------------------------------------------------------------------------------- plots
def _figure_with(size: FigureSize, draw: Callable[[Any], None]) -> RenderedFigure:
    """A dark figure of ``size`` drawn by ``draw(figure)``, styled and rendered."""
    fig = dark_figure(size)
    draw(fig)
    style_figure(fig)
    return render(fig, size)


def power_plot(data: DiagnosticsData, size: FigureSize) -> RenderedFigure:
    """The power spectrum above its rings with the information limit (dock layout)."""
    return _figure_with(
        size, lambda fig: wd.draw_power(*fig.subplots(2, 1, height_ratios=(1.3, 1)), data)
    )


def kz_plot(data: DiagnosticsData, size: FigureSize) -> RenderedFigure:
    """``P(k_r, k_z)`` above the k_z profiles of the reflections (dock layout)."""
    if not data.kz_power.size:
        return message_figure(size, "one slice: no depth information (k_z)")
    return _figure_with(size, lambda fig: wd.draw_kz(*fig.subplots(2, 1), data))


def rz_plot(data: DiagnosticsData, size: FigureSize) -> RenderedFigure:
    """The r–z maps side by side above the phase through the column centres (dock layout)."""
    if not data.zranges:
        return message_figure(size, NO_RZ)

    def draw(fig: Any) -> None:
        n = len(data.zranges)
        grid = fig.add_gridspec(2, n, height_ratios=(1.2, 1))
        maps = [fig.add_subplot(grid[0, i]) for i in range(n)]
        wd.draw_rz(maps, fig.add_subplot(grid[1, :]), data, ZRANGE_COLOURS)

    return _figure_with(size, draw)


#: Plot of each view by name.
PLOTS: dict[str, Callable[[DiagnosticsData, FigureSize], RenderedFigure]] = {
    "power": power_plot,
    "kz": kz_plot,
    "rz": rz_plot,
}


def empty_plot(name: str, size: FigureSize) -> RenderedFigure:
    """What a view shows before any result."""
    return message_figure(size, f"{PLOT_NAMES[name]}: choose a reconstruction and compute")


def reflection_rows(data: DiagnosticsData) -> list[tuple[str, str, str, str, str]]:
    """Per reflection: ``q (1/Å)``, ``d = 1/q (Å)``, measured ``Δz (Å)`` (with its bound),
    bright-field ``2/(q(2α − λq))`` and single-scattering ``2/(q(2α + λq))`` (Å)."""
    rows = []
    for r in data.reflections:  # a few reflections
        word = "" if not r.bound else f"{wd.RELATION[r.bound]} "
        rows.append(
            (
                f"{r.q_invA:.3f}",
                f"{1 / r.q_invA:.3f}",
                f"{word}{r.dz_A:.1f}",
                f"{r.optics_dz_A:.1f}" if np.isfinite(r.optics_dz_A) else "∞",
                f"{r.single_scattering_dz_A:.1f}",
            )
        )
    return rows


def headline(data: DiagnosticsData) -> str:
    """The information limit and the depth of field in one line."""
    n = data.numbers
    if n["information_bound"] == "none":
        info = "information limit: none found above the noise plateau"
    else:
        bound = "≤ " if n["information_bound"] == "at least" else ""
        info = (
            f"information limit d = {bound}{n['information_limit_pm']:.1f} pm = "
            f"{bound}{n['d_over_wavelength']:.2f} λ"
        )
    return f"{info}; depth of field 2λ/α² = {n['depth_of_field_A']:.1f} Å"


@dataclass(frozen=True)
class DiagnosticsOutcome:
    """A diagnosis, its rendered plots and texts.

    Attributes
    ----------
    data
        The diagnostics (what the DIAG file holds).
    source
        The reconstruction it is of.
    optics
        The calibration used and where it came from.
    plots
        Rendered plot by name (:data:`PLOT_NAMES`).
    lines
        The report (``caviar diagnostics``' lines and the optics).
    rows
        :func:`reflection_rows`.
    warnings
        What the user must know about the result.
    """

    data: DiagnosticsData
    source: ReconSource
    optics: wd.Optics
    plots: dict[str, RenderedFigure]
    lines: list[str]
    rows: list[tuple[str, str, str, str, str]]
    warnings: tuple[str, ...] = ()

    @property
    def headline(self) -> str:
        """The information limit and the depth of field (:func:`headline`)."""
        return headline(self.data)

    @property
    def summary(self) -> str:
        """The headline and the report, one item per line."""
        return "\n".join([self.headline, *self.lines])


def compute_job(
    source: ReconSource,
    form: DiagnosticsForm,
    zranges: dict[str, AtomsData],
    sizes: dict[str, FigureSize],
) -> Generator[str, None, DiagnosticsOutcome]:
    """Worker: optics, diagnostics and the plots rendered at ``sizes`` (by plot name)."""
    form = form.validated()
    yield "optics"
    state = source.state
    optics = wd.resolve_optics(
        source.recon_path, source.data_source, hint=OPTICS_HINT, **form.optics_overrides()
    )
    yield "diagnostics"
    data = wd.diagnostics_of_state(
        state,
        optics,
        zranges=zranges,
        reflections_invA=parse_reflections(form.reflections),
        plateau_start=form.plateau_start,
        snr=form.snr,
        margin_A=form.margin_A,
        source=source.recon_path or source.name,
    )
    plots = {}
    for name, draw in PLOTS.items():
        yield f"plot {name}"
        plots[name] = draw(data, sizes.get(name, FigureSize()))
    det = "unknown" if optics.detector_mrad is None else f"{optics.detector_mrad:.1f} mrad"
    lines = [
        f"optics: E = {optics.energy_eV / 1e3:g} keV, α = "
        f"{optics.convergence_semiangle_mrad:g} mrad, detector to {det} ({optics.origin})",
        *wd.diagnostics_lines(data),
    ]
    return DiagnosticsOutcome(
        data=data,
        source=source,
        optics=optics,
        plots=plots,
        lines=lines,
        rows=reflection_rows(data),
        warnings=tuple(wd.diagnostics_warnings(data) + result_warnings(state)),
    )


def plot_job(
    data: DiagnosticsData | None, name: str, size: FigureSize
) -> Generator[None, None, RenderedFigure]:
    """Worker: the plot ``name`` of ``data`` (the empty view for None) rendered at ``size``."""
    yield None
    return empty_plot(name, size) if data is None else PLOTS[name](data, size)


def save_outcome(outcome: DiagnosticsOutcome, path: str | os.PathLike) -> wd.DiagnosticsSummary:
    """Write a diagnosis as ``caviar diagnostics`` does: the DIAG file, its JSON numbers and
    its figures (:func:`~caviar_napari.workflows.diagnostics.save_diagnostics`; the
    reconstruction and its data may not be replaced).

    Raises
    ------
    OutputError
        An output may not or cannot be written (nothing is written then).
    """
    inputs = {"RECON": outcome.source.recon_path, "data": outcome.source.data_source or None}
    return wd.save_diagnostics(outcome.data, path, inputs=inputs)


def save_job(
    outcome: DiagnosticsOutcome, path: str | os.PathLike
) -> Generator[None, None, wd.DiagnosticsSummary]:
    """Worker: :func:`save_outcome`."""
    yield None
    return save_outcome(outcome, path)


@dataclass
class DiagnosticsViewModel:
    """State of the Diagnostics dock.

    Attributes
    ----------
    form
        The parameters as entered.
    outcome
        The last diagnosis (None before the first).
    warnings
        The warnings of :attr:`outcome`.
    """

    form: DiagnosticsForm = field(default_factory=DiagnosticsForm)
    outcome: DiagnosticsOutcome | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def result(self) -> DiagnosticsData | None:
        """The last diagnostics."""
        return None if self.outcome is None else self.outcome.data

    def accept(self, outcome: DiagnosticsOutcome) -> None:
        """Keep a diagnosis and its warnings."""
        self.outcome = outcome
        self.warnings = list(outcome.warnings)

    def accept_plot(self, name: str, plot: RenderedFigure) -> None:
        """Keep a plot rendered again (new size) for the current diagnosis."""
        if self.outcome is not None:
            plots = {**self.outcome.plots, name: plot}
            self.outcome = DiagnosticsOutcome(
                self.outcome.data, self.outcome.source, self.outcome.optics, plots,
                self.outcome.lines, self.outcome.rows, self.outcome.warnings,
            )  # fmt: skip

    def save(self, path: str | os.PathLike) -> wd.DiagnosticsSummary:
        """Write the last diagnosis (:func:`save_outcome`).

        Raises
        ------
        InputError
            Nothing computed yet.
        OutputError
            An output may not or cannot be written (nothing is written then).
        """
        if self.outcome is None:
            raise InputError("no diagnostics to save: compute them first")
        return save_outcome(self.outcome, path)
