"""View-model of the **Dispersion** dock (Qt-free): phonon branches from the correlations.

Source: an :class:`~caviar_napari.io.atoms_file.AtomsData`.  :class:`DispersionForm` holds what
the user set; :meth:`DispersionViewModel.configs` validates it into the analysis'
:class:`~caviar_napari.analysis.dispersion.DispersionConfig` of each estimator asked for:
``force-constants`` (the default, as ``caviar dispersion``: a Born–von Kármán model fitted to the
displacements, issue 14), ``green`` (paper eqs. 5, 6) or both.  :func:`compute_job` runs
:func:`~caviar_napari.analysis.dispersion.dispersion_from_atoms` for each and renders the plot in
the worker: the force-constant model's dense curves (± their error as a band) over the
frequencies at the commensurate q with error bars (eq. 6's when both ran).  :func:`branch_rows`
gives the per-branch averages, :func:`force_constant_rows` the fitted constants ± errors in
eV/Å², :func:`fit_text` the goodness-of-fit test of the number of shells.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.lines import Line2D

from caviar_napari.analysis import dispersion as disp
from caviar_napari.analysis.force_constants import BOUNDARIES, ShellTest
from caviar_napari.analysis.noise_floor import noise_floor_warnings, physical_floor_warnings
from caviar_napari.analysis.phonons import STANDARD_ATOMIC_WEIGHTS_AMU
from caviar_napari.errors import InputError
from caviar_napari.io.dispersion_file import DispersionData, write_dispersion
from caviar_napari.viewmodels.figures import (
    BACKGROUND,
    FOREGROUND,
    FigureSize,
    RenderedFigure,
    dark_figure,
    render,
    style_axes,
)
from caviar_napari.viewmodels.notices import dock_words, result_warnings
from caviar_napari.viewmodels.tables import Table
from caviar_napari.workflows.dispersion import displacement_noise_floor
from caviar_napari.workflows.inputs import range_slices
from caviar_napari.workflows.noise_floor import separation_report_check

#: Branch colours (sorted band index 1, 2, …), readable on the dark background.
BRANCH_COLOURS = ("#ffd400", "#ff6eb4", "#5ec8ff", "#9be564", "#ff9f40", "#c58bff")

PATH_STANDARD = "standard (Γ–M–K–Γ hexagonal, Γ–X–M–Γ square)"
PATH_CUSTOM = "custom"
#: Estimator choices of the dock: one of the analysis' estimators, or both.
EST_FC, EST_GREEN, EST_BOTH = "force-constants", "green", "both"
#: ``(label, value)`` of the estimator choices, the default first.
ESTIMATOR_CHOICES = (
    ("force constants", EST_FC),
    ("eq. 6 (green)", EST_GREEN),
    ("both: force constants over eq. 6", EST_BOTH),
)
#: Boundary choices of the force-constant fit.
BOUNDARY_CHOICES = tuple(BOUNDARIES)


@dataclass(frozen=True)
class DispersionForm:
    """The dock's parameters as entered (validated by :meth:`DispersionViewModel.configs`).

    Attributes
    ----------
    temperature_K
        Specimen temperature, K.
    estimator
        :data:`EST_FC` (default, as ``caviar dispersion``), :data:`EST_GREEN` or
        :data:`EST_BOTH`.
    shells
        Force constants: neighbour shells fitted.
    boundary
        Force constants: ``"auto"`` (both fitted on the block of whole cells, the likelier kept,
        when no atom lies outside it; else open), ``"open"`` (every atom found, a window of a
        larger crystal, as a reconstruction's field of view) or ``"periodic"`` (the block is one
        whole period, as a simulated supercell).
    crystal_cells
        Force constants, open boundary: ``"L1, L2"`` cells of the periodic crystal the field of
        view was cut from; blank: an infinite crystal.
    single_mass
        One harmonic-mean mass for all atoms (the paper's choice).
    slices
        ``"A:B"`` (B excluded) or one index; blank: all slices.
    bootstrap
        Bootstrap replicas over object states (0: no bootstrap error bars; the force-constant
        errors then come from the curvature of the likelihood).
    custom_path
        Use :attr:`path_text` instead of the standard path of the lattice.
    path_text
        ``"G=0,0; X=1/2,0; …"`` vertices in reduced coordinates of b1, b2.
    """

    temperature_K: float = 300.0
    estimator: str = EST_FC
    shells: int = 2
    boundary: str = "auto"
    crystal_cells: str = ""
    single_mass: bool = False
    slices: str = ""
    bootstrap: int = 200
    custom_path: bool = False
    path_text: str = ""


def parse_cells(text: str) -> tuple[int, int] | None:
    """``"L1, L2"`` (or ``"L1 x L2"``) → ``(L1, L2)``; blank → None (``InputError`` otherwise)."""
    words = str(text).replace("×", ",").replace("x", ",").replace(" ", ",").split(",")
    words = [w for w in words if w]
    if not words:
        return None
    try:
        cells = tuple(int(w) for w in words)
    except ValueError:
        cells = ()
    if len(cells) != 2 or min(cells) < 1:
        raise InputError(f"crystal cells must be two whole numbers L1, L2 ≥ 1, got {text!r}")
    return cells  # type: ignore[return-value]


def basis_labels(atoms: Any) -> list[str]:
    """Mass labels of a source: its species, else its basis indices as text."""
    species = getattr(atoms, "species", None)
    basis = getattr(atoms, "basis_index", None)
    if species is not None:
        names = np.asarray(species, dtype=str)
        if basis is not None:
            names = names[np.asarray(basis) >= 0]
        return sorted({str(s) for s in names})
    if basis is not None and np.size(basis):
        return [str(b) for b in range(int(np.max(basis)) + 1)]
    return []


def default_mass_amu(label: str, entered: Mapping[str, float]) -> float:
    """The mass to show for ``label``: what was entered, else the standard atomic weight,
    else 0 (required)."""
    return float(entered.get(label, STANDARD_ATOMIC_WEIGHTS_AMU.get(label, 0.0)))


def mass_label(label: str) -> str:
    """Row label of a mass: the species, or ``basis atom k``."""
    return label if not label.isdigit() else f"basis atom {label}"


@dataclass(frozen=True)
class DispersionOutcome:
    """A dispersion, its rendered plot, its tables and texts.

    Attributes
    ----------
    data
        The main result: the force-constant one when that estimator ran, else eq. 6's (what
        Save DISP writes).
    green
        The eq. 6 result when both estimators ran (None otherwise).
    plot
        The rendered plot.
    branches
        Per-branch averages ± errors of each estimator.
    constants
        Fitted force constants ± errors (None for eq. 6 alone).
    fit
        Boundary and goodness-of-fit test of the force constants ("" for eq. 6 alone).
    summary
        Cells, states, path points, masses, errors in one sentence.
    warnings
        Biased eq. 6, unphysical frequencies, more shells needed, noise floor, states that did
        not separate.
    """

    data: DispersionData
    green: DispersionData | None
    plot: RenderedFigure
    branches: Table
    constants: Table | None
    fit: str
    summary: str
    warnings: tuple[str, ...] = ()

    @property
    def rows(self) -> list[tuple[str, ...]]:
        """The rows of the branch table."""
        return self.branches.rows


def summary_text(data: DispersionData) -> str:
    """Cells, states, path points, masses, estimator and error bars in one sentence."""
    L1, L2 = data.cells
    n_path = np.unique(data.path_q_index).size
    masses = ", ".join(f"{k} {v:g}" for k, v in data.masses_amu.items())
    if data.estimator == "green":
        how = "eq. 6 (green)"
    else:
        fitted = f" fitted to {data.fit_atoms} atoms" if data.fit_atoms else ""
        how = f"force constants{fitted}, {data.shells} shells, {data.boundary} boundary"
        if data.boundary == "open" and any(data.crystal_cells):
            how += f" of a {data.crystal_cells[0]} × {data.crystal_cells[1]}-cell crystal"
    return (
        f"{L1} × {L2} whole unit cells, {data.excluded_atoms.size} atoms left out, "
        f"{data.n_states} states, {n_path} commensurate q on the path; masses (amu): "
        f"{masses}{' → one harmonic mean' if data.single_mass else ''}; {how}; "
        f"errors: {data.error_method}."
    )


def _pm(value: float, err: float) -> str:
    return f"{value:.2f} ± {err:.2f}" if np.isfinite(err) else f"{value:.2f}"


def branch_rows(data: DispersionData, green: DispersionData | None = None) -> Table:
    """Per-branch averages along the path: the force-constant model's dense-path mean (or eq.
    6's mean over the commensurate q) ± its error; with ``green``, eq. 6's beside it."""
    if data.dense_path is not None:
        values, errors = data.dense_path.branch_average_THz, data.dense_path.branch_average_err_THz
        first = "force constants ν̄ (THz)"
        tip = (
            "force constants: arc-length mean of the fitted model along the dense path ± its "
            f"error ({data.error_method})"
        )
    else:
        values, errors = data.branch_average_THz, data.branch_average_err_THz
        first = "eq. 6 ν̄ (THz)"
        tip = f"eq. 6: mean over the distinct commensurate q on the path ± {data.error_method}"
    headers = ("branch", first)
    rows = [(f"● {b + 1}", _pm(values[b], errors[b])) for b in range(data.n_branches)]
    if green is not None:
        headers += ("eq. 6 ν̄ (THz)",)
        rows = [
            (*row, _pm(green.branch_average_THz[b], green.branch_average_err_THz[b]))
            for b, row in enumerate(rows)
        ]
        tip += f"; eq. 6: mean over the distinct commensurate q ± {green.error_method}"
    return Table(headers, rows, tip)


#: Short marks of the force-constant components (along and across the bond).
COMPONENT_MARKS = {"longitudinal": "∥", "transverse": "⊥"}


def constant_label(shell: int, pair: str, component: str) -> str:
    """A short name of a force constant: ``"1 B–N ∥"`` (shell, species pair, component)."""
    return f"{int(shell)} {pair} {COMPONENT_MARKS.get(component, component)}"


def force_constant_rows(data: DispersionData) -> Table | None:
    """The fitted force constants ± their errors, eV/Å² (None without a fit)."""
    fc = data.force_constants
    if fc is None:
        return None
    rows = []
    for k in range(len(fc.names)):
        boot = fc.err_bootstrap_eV_per_A2[k]
        rows.append(
            (
                constant_label(fc.shell[k], fc.species_pair[k], fc.component[k]),
                f"{fc.distance_A[k]:.3f}",
                f"{fc.value_eV_per_A2[k]:.2f}",
                f"{fc.err_fisher_eV_per_A2[k]:.2f}",
                f"{boot:.2f}" if np.isfinite(boot) else "—",
            )
        )
    return Table(
        ("constant", "d (Å)", "eV/Å²", "± Fisher", "± boot."),
        rows,
        "Born–von Kármán force constants: neighbour shell, species pair, ∥ longitudinal "
        "(along the bond) or ⊥ transverse (across it), bond length d; errors from the "
        "curvature of the likelihood (Fisher) and from "
        f"{fc.n_bootstrap} bootstrap refits over the object states.",
    )


def fit_text(data: DispersionData) -> str:
    """The boundary chosen and the goodness-of-fit test of the shells ("" for eq. 6)."""
    fc = data.force_constants
    if fc is None:
        return ""
    lines = [
        f"{data.shells} shells, {data.boundary} boundary, {data.symmetry_operations} symmetry "
        "operations"
    ]
    if np.isfinite(fc.boundary_comparison):
        lines[0] += (
            f" (chosen by likelihood: −2 log L periodic − open = {fc.boundary_comparison:+.1f})"
        )
    test = ShellTest.of_fit(data.shells, fc)
    lines.append(test.summary())
    return "\n".join(lines)


def empty_plot(size: FigureSize) -> RenderedFigure:
    """The axes before any result."""
    fig = dark_figure(size)
    ax = fig.add_subplot(111)
    style_axes(ax)
    ax.set_xlabel("wave vector along the path")
    ax.set_ylabel("ν (THz)")
    ax.set_xticks([])
    return render(fig, size)


def _points(ax: Any, data: DispersionData, b: int, *, filled: bool, label: str | None) -> None:
    """Frequencies at the commensurate q on the path with error bars, branch ``b``."""
    colour = BRANCH_COLOURS[b % len(BRANCH_COLOURS)]
    err = data.path_frequencies_err_THz[:, b]
    ax.errorbar(
        data.path_distance_invA,
        data.path_frequencies_THz[:, b],
        yerr=err if np.isfinite(err).any() else None,
        fmt="o",
        ms=4.5,
        mfc=colour if filled else "none",
        mec=colour,
        color=colour,
        ecolor=colour,
        elinewidth=1.0,
        capsize=2.5,
        label=label,
        zorder=3,
    )


def _marker(label: str, *, filled: bool) -> Line2D:
    """A legend entry for points with error bars, in the neutral colour."""
    return Line2D(
        [], [], marker="o", ls="none", ms=4.5, color=FOREGROUND,
        mfc=FOREGROUND if filled else "none", label=label,
    )  # fmt: skip


def dispersion_plot(
    data: DispersionData, size: FigureSize, green: DispersionData | None = None
) -> RenderedFigure:
    """The branches along the path.

    The force-constant model: its dense curves with their error as a band, over the
    commensurate-q points with error bars (eq. 6's points when ``green`` is given, else the
    model's own, hollow); eq. 6 alone: its points with error bars, joined by thin lines.
    """
    fig = dark_figure(size)
    ax = fig.add_subplot(111)
    style_axes(ax)
    for vx in data.path_vertex_distance_invA:
        ax.axvline(vx, color=FOREGROUND, lw=0.6, alpha=0.5)
    ax.axhline(0.0, color=FOREGROUND, lw=0.5, alpha=0.4)
    dense = data.dense_path
    tops, bottoms = [], []
    for b in range(data.n_branches):  # 2κ branches
        colour = BRANCH_COLOURS[b % len(BRANCH_COLOURS)]
        first = b == 0
        if dense is not None:
            x, y = dense.distance_invA, dense.frequencies_THz[:, b]
            e = np.nan_to_num(dense.frequencies_err_THz[:, b])
            ax.fill_between(x, y - e, y + e, color=colour, alpha=0.22, lw=0)
            ax.plot(
                x, y, "-", color=colour, lw=1.6,
                label="force constants (± band)" if first else None,
            )  # fmt: skip
            tops.append(y + e)
            bottoms.append(y - e)
            points = green if green is not None else data
            label = "eq. 6 at commensurate q" if green is not None else "model at commensurate q"
            _points(ax, points, b, filled=green is not None, label=label if first else None)
        else:
            ax.plot(data.path_distance_invA, data.path_frequencies_THz[:, b], "-", color=colour,
                    lw=1.0, alpha=0.6)  # fmt: skip
            _points(ax, data, b, filled=True, label="eq. 6 at commensurate q" if first else None)
        for shown in (green, data):
            if shown is not None:
                f = shown.path_frequencies_THz[:, b]
                e = np.nan_to_num(shown.path_frequencies_err_THz[:, b])
                tops.append(f + e)
                bottoms.append(f - e)
    ax.set_xticks(data.path_vertex_distance_invA)
    ax.set_xticklabels(data.path_labels)
    x0, x1 = data.path_vertex_distance_invA[0], data.path_vertex_distance_invA[-1]
    ax.set_xlim(x0 - 0.015 * (x1 - x0), x1 + 0.015 * (x1 - x0))
    top = np.concatenate([np.ravel(t) for t in tops]) if tops else np.array([1.0])
    bottom = np.concatenate([np.ravel(t) for t in bottoms]) if bottoms else np.array([0.0])
    hi = float(np.max(top[np.isfinite(top)], initial=1.0))
    lo = float(np.min(bottom[np.isfinite(bottom)], initial=0.0))
    ax.set_ylim(min(0.0, lo) * 1.08, 1.08 * hi)
    ax.set_ylabel("ν = ω/2π (THz)")
    ax.set_xlabel("wave vector along the path")
    ax.set_title(
        f"{data.cells[0]} × {data.cells[1]} cells · {data.n_states} states · "
        f"{data.temperature_K:g} K",
        fontsize="small",
        color=FOREGROUND,
    )
    handles = []  # the styles in the neutral colour (the branches are in the table)
    if dense is not None:
        handles.append(
            Line2D([], [], color=FOREGROUND, lw=1.6, label="force-constant model ± error")
        )
    if dense is None or green is not None:
        handles.append(_marker("eq. 6 at commensurate q ± error", filled=True))
    else:
        handles.append(_marker("model at commensurate q ± error", filled=False))
    legend = ax.legend(
        handles=handles, loc="best", fontsize="x-small", framealpha=0.7,
        labelcolor=FOREGROUND, facecolor=BACKGROUND, edgecolor=FOREGROUND,
    )  # fmt: skip
    legend.set_zorder(5)
    return render(fig, size)


def dispersion_warnings(
    data: DispersionData,
    atoms: Any,
    slices: str | Sequence[int] | None,
    atoms_path: str | None = None,
) -> list[str]:
    """What ``caviar dispersion`` warns about, for the dock's banner: a biased eq. 6, unphysical
    frequencies, more shells needed (the result's own), displacements at the noise floor or
    below any vibration, a reconstruction whose states did not separate, too few q."""
    warnings = [dock_words(w) for w in data.warnings]
    warnings += result_warnings(atoms, getattr(atoms, "provenance", None))
    warnings += separation_report_check(atoms, atoms_path or ".")[1]
    floor = displacement_noise_floor(atoms, slices, None)
    if floor is not None:
        warnings += [dock_words(w) for w in noise_floor_warnings(floor)]
        warnings += physical_floor_warnings(floor.rms_displacement_A, data.basis_masses_amu)
    if np.unique(data.path_q_index).size < 3 and data.dense_path is None:
        warnings.append(
            "fewer than 3 commensurate q on the path: their averages are rough (a larger block "
            "of cells gives more)"
        )
    return list(dict.fromkeys(warnings))


def compute_job(
    atoms: Any,
    configs: list[disp.DispersionConfig],
    size: FigureSize,
    atoms_path: str | None = None,
) -> Generator[str, None, DispersionOutcome]:
    """Worker: the dispersion of an AtomsData by each configuration (the force-constant one
    first when both), the plot (rendered at ``size``), the tables and the warnings.  A z-range
    source is analysed as ``caviar dispersion --zrange`` does: over its occupied slices unless
    slices are given, its depths named first in the summary."""
    range_lines: list[str] = []
    zrange = getattr(atoms, "zrange", None)
    if zrange is not None:
        slices, lines = range_slices(atoms, configs[0].slices)
        configs = [dataclasses.replace(c, slices=slices) for c in configs]
        range_lines = [zrange.describe(), *lines]
    results = []
    for config in configs:
        yield "force constants" if config.estimator == EST_FC else "eq. 6"
        results.append(disp.dispersion_from_atoms(atoms, config))
    data = results[0]
    green = results[1] if len(results) > 1 else None
    yield "plot"
    warnings = dispersion_warnings(data, atoms, configs[0].slices, atoms_path)
    if green is not None:
        warnings = list(dict.fromkeys(warnings + [dock_words(w) for w in green.warnings]))
    return DispersionOutcome(
        data=data,
        green=green,
        plot=dispersion_plot(data, size, green),
        branches=branch_rows(data, green),
        constants=force_constant_rows(data),
        fit=fit_text(data),
        summary=" ".join([*range_lines, summary_text(data)]),
        warnings=tuple(warnings),
    )


def plot_job(
    outcome: DispersionOutcome | None, size: FigureSize
) -> Generator[None, None, RenderedFigure]:
    """Worker: the plot of ``outcome`` (the empty axes for None) rendered at ``size``."""
    yield None
    if outcome is None:
        return empty_plot(size)
    return dispersion_plot(outcome.data, size, outcome.green)


class DispersionViewModel:
    """State of the Dispersion dock.

    Attributes
    ----------
    form
        The parameters as entered.
    masses_amu
        Masses as entered, by species (or basis index as text); 0 means not given.
    outcome
        The last result (None before the first).
    warnings
        Warnings of :attr:`outcome`.
    """

    def __init__(self) -> None:
        self.form = DispersionForm()
        self.masses_amu: dict[str, float] = {}
        self.outcome: DispersionOutcome | None = None
        self.warnings: list[str] = []

    @property
    def result(self) -> DispersionData | None:
        """The last dispersion."""
        return None if self.outcome is None else self.outcome.data

    def mass_rows(self, atoms: Any) -> list[tuple[str, float]]:
        """``(label, mass shown)`` per basis species of a source (entered masses kept)."""
        return [(label, default_mass_amu(label, self.masses_amu)) for label in basis_labels(atoms)]

    def configs(self) -> list[disp.DispersionConfig]:
        """The analysis parameters of each estimator to run, the force-constant one first
        (``InputError`` naming what is wrong)."""
        f = self.form
        choices = [value for _label, value in ESTIMATOR_CHOICES]
        if f.estimator not in choices:
            raise InputError(f"estimator must be one of {', '.join(choices)}, got {f.estimator!r}")
        estimators = [EST_FC, EST_GREEN] if f.estimator == EST_BOTH else [f.estimator]
        path = disp.parse_path(f.path_text) if f.custom_path else None
        cells = parse_cells(f.crystal_cells)
        return [
            disp.DispersionConfig(
                temperature_K=f.temperature_K,
                masses_amu={k: v for k, v in self.masses_amu.items() if v > 0},
                single_mass=f.single_mass,
                slices=f.slices.strip() or None,
                bootstrap=f.bootstrap,
                path=path,
                estimator=estimator,
                shells=f.shells,
                boundary=f.boundary,
                crystal_cells=cells,
            )
            for estimator in estimators
        ]

    def accept(self, outcome: DispersionOutcome) -> None:
        """Keep a result and its warnings."""
        self.outcome = outcome
        self.warnings = list(outcome.warnings)

    def accept_plot(self, plot: RenderedFigure) -> None:
        """Keep a plot rendered again (new size) for the current result."""
        if self.outcome is not None:
            self.outcome = dataclasses.replace(self.outcome, plot=plot)

    def export_data(self, path: str | os.PathLike) -> None:
        """Write the result as a DISP HDF5 file (conventions §6)."""
        if self.result is None:
            raise InputError("no dispersion to save: compute one first")
        write_dispersion(path, self.result)

    def export_figure(self, path: str | os.PathLike) -> None:
        """Save the plot (PNG, SVG or PDF by extension)."""
        if self.outcome is None:
            raise InputError("no dispersion plot to save: compute one first")
        figure = self.outcome.plot.figure
        figure.savefig(str(path), facecolor=figure.get_facecolor())
