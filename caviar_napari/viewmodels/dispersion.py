"""View-model of the **Dispersion** dock (Qt-free): phonon branches from the correlations.

Source: an :class:`~caviar_napari.io.atoms_file.AtomsData`.  :class:`DispersionForm` holds what
the user set; :meth:`DispersionViewModel.config` validates it into the analysis'
:class:`~caviar_napari.analysis.dispersion.DispersionConfig`; :func:`compute_job` runs
:func:`~caviar_napari.analysis.dispersion.dispersion_from_atoms` (paper eqs. 5, 6) and renders
the plot — frequencies at the commensurate q on the path with bootstrap error bars — in the
worker; :func:`table_rows` gives the per-branch averages along the path ± their bootstrap error.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from caviar_napari.analysis import dispersion as disp
from caviar_napari.analysis.phonons import STANDARD_ATOMIC_WEIGHTS_AMU
from caviar_napari.errors import InputError
from caviar_napari.io.dispersion_file import DispersionData, write_dispersion
from caviar_napari.viewmodels.figures import (
    FOREGROUND,
    FigureSize,
    RenderedFigure,
    dark_figure,
    render,
    style_axes,
)
from caviar_napari.viewmodels.notices import result_warnings

#: Branch colours (sorted band index 1, 2, …), readable on the dark background.
BRANCH_COLOURS = ("#ffd400", "#ff6eb4", "#5ec8ff", "#9be564", "#ff9f40", "#c58bff")

PATH_STANDARD = "standard (Γ–M–K–Γ hexagonal, Γ–X–M–Γ square)"
PATH_CUSTOM = "custom"


@dataclass(frozen=True)
class DispersionForm:
    """The dock's parameters as entered (validated by :meth:`DispersionViewModel.config`).

    Attributes
    ----------
    temperature_K
        Specimen temperature, K.
    single_mass
        One harmonic-mean mass for all atoms (the paper's choice).
    slices
        ``"A:B"`` (B excluded) or one index; blank: all slices.
    bootstrap
        Bootstrap replicas over object states (0: no error bars).
    custom_path
        Use :attr:`path_text` instead of the standard path of the lattice.
    path_text
        ``"G=0,0; X=1/2,0; …"`` vertices in reduced coordinates of b1, b2.
    """

    temperature_K: float = 300.0
    single_mass: bool = False
    slices: str = ""
    bootstrap: int = 200
    custom_path: bool = False
    path_text: str = ""


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
    """A dispersion, its rendered plot, its table and texts."""

    data: DispersionData
    plot: RenderedFigure
    rows: list[tuple[str, str, str]]
    summary: str
    warnings: tuple[str, ...] = ()


def summary_text(data: DispersionData) -> str:
    """Cells, states, path points, masses and error bars in one sentence."""
    L1, L2 = data.cells
    n_path = np.unique(data.path_q_index).size
    masses = ", ".join(f"{k} {v:g}" for k, v in data.masses_amu.items())
    boot = (
        f"errors: bootstrap over states, {data.n_bootstrap} replicas"
        if data.n_bootstrap
        else "no error bars (bootstrap 0)"
    )
    return (
        f"{L1} × {L2} whole unit cells ({data.excluded_atoms.size} atoms left out), "
        f"{data.n_states} states, {n_path} commensurate q on the path; masses (amu): "
        f"{masses}{' → one harmonic mean' if data.single_mass else ''}; {boot}."
    )


def table_rows(data: DispersionData) -> list[tuple[str, str, str]]:
    """``(branch, mean ν along the path (THz), ± (THz))`` per branch."""
    rows = []
    for b in range(data.n_branches):  # 2κ rows
        err = data.branch_average_err_THz[b]
        rows.append(
            (
                f"● {b + 1}",
                f"{data.branch_average_THz[b]:.2f}",
                f"{err:.2f}" if np.isfinite(err) else "—",
            )
        )
    return rows


def empty_plot(size: FigureSize) -> RenderedFigure:
    """The axes before any result."""
    fig = dark_figure(size)
    ax = fig.add_subplot(111)
    style_axes(ax)
    ax.set_xlabel("wave vector along the path")
    ax.set_ylabel("ν (THz)")
    ax.set_xticks([])
    return render(fig, size)


def dispersion_plot(data: DispersionData, size: FigureSize) -> RenderedFigure:
    """The branches along the path: points at the commensurate q with error bars."""
    fig = dark_figure(size)
    ax = fig.add_subplot(111)
    style_axes(ax)
    x = data.path_distance_invA
    for vx in data.path_vertex_distance_invA:
        ax.axvline(vx, color=FOREGROUND, lw=0.6, alpha=0.5)
    ax.axhline(0.0, color=FOREGROUND, lw=0.5, alpha=0.4)
    has_err = data.n_bootstrap > 0
    for b in range(data.n_branches):  # 2κ branches
        colour = BRANCH_COLOURS[b % len(BRANCH_COLOURS)]
        y = data.path_frequencies_THz[:, b]
        ax.plot(x, y, "-", color=colour, lw=1.0, alpha=0.6)
        ax.errorbar(
            x,
            y,
            yerr=data.path_frequencies_err_THz[:, b] if has_err else None,
            fmt="o",
            ms=4,
            color=colour,
            ecolor=colour,
            elinewidth=1.0,
            capsize=2.5,
            label=f"branch {b + 1}: {data.branch_average_THz[b]:.1f} THz",
        )
    ax.set_xticks(data.path_vertex_distance_invA)
    ax.set_xticklabels(data.path_labels)
    x0, x1 = data.path_vertex_distance_invA[0], data.path_vertex_distance_invA[-1]
    ax.set_xlim(x0 - 0.015 * (x1 - x0), x1 + 0.015 * (x1 - x0))
    y = data.path_frequencies_THz
    e = np.nan_to_num(data.path_frequencies_err_THz) if has_err else np.zeros_like(y)
    ok = np.isfinite(y)
    top = float(np.max((y + e)[ok], initial=1.0))
    bottom = float(np.min((y - e)[ok], initial=0.0))
    ax.set_ylim(min(0.0, bottom) * 1.08, 1.08 * top)
    ax.set_ylabel("ν = ω/2π (THz)")
    ax.set_xlabel("wave vector along the path")
    ax.set_title(
        f"{data.cells[0]} × {data.cells[1]} cells, {data.n_states} states, "
        f"T = {data.temperature_K:g} K"
        + (f", ± bootstrap ({data.n_bootstrap})" if has_err else ""),
        fontsize="small",
        color=FOREGROUND,
    )
    legend = ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncol=min(data.n_branches, 2),
        fontsize="x-small",
        frameon=False,
    )
    for text in legend.get_texts():
        text.set_color(FOREGROUND)
    return render(fig, size)


def compute_job(
    atoms: Any, config: disp.DispersionConfig, size: FigureSize
) -> Generator[str, None, DispersionOutcome]:
    """Worker: the dispersion of an AtomsData, its plot (rendered at ``size``) and table."""
    yield "dispersion"
    data = disp.dispersion_from_atoms(atoms, config)
    yield "plot"
    return DispersionOutcome(
        data=data,
        plot=dispersion_plot(data, size),
        rows=table_rows(data),
        summary=summary_text(data),
        warnings=tuple(result_warnings(data, atoms)),
    )


def plot_job(
    data: DispersionData | None, size: FigureSize
) -> Generator[None, None, RenderedFigure]:
    """Worker: the plot of ``data`` (the empty axes for None) rendered at ``size``."""
    yield None
    return empty_plot(size) if data is None else dispersion_plot(data, size)


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

    def config(self) -> disp.DispersionConfig:
        """The analysis parameters (``InputError`` naming what is wrong)."""
        f = self.form
        path = disp.parse_path(f.path_text) if f.custom_path else None
        return disp.DispersionConfig(
            temperature_K=f.temperature_K,
            masses_amu={k: v for k, v in self.masses_amu.items() if v > 0},
            single_mass=f.single_mass,
            slices=f.slices.strip() or None,
            bootstrap=f.bootstrap,
            path=path,
        )

    def accept(self, outcome: DispersionOutcome) -> None:
        """Keep a result and its warnings."""
        self.outcome = outcome
        self.warnings = list(outcome.warnings)

    def accept_plot(self, plot: RenderedFigure) -> None:
        """Keep a plot rendered again (new size) for the current result."""
        if self.outcome is not None:
            self.outcome = DispersionOutcome(
                self.outcome.data, plot, self.outcome.rows, self.outcome.summary,
                self.outcome.warnings,
            )  # fmt: skip

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
