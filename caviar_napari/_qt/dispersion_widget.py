"""The **Dispersion** dock widget: phonon branches from the correlations (paper eqs. 5, 6).

Source: an ATOMS file, or any napari Points layer whose ``metadata["caviar_atoms"]`` holds an
``io.atoms_file.AtomsData``.  The dispersion (``analysis.dispersion.dispersion_from_atoms``) runs
in a background worker; the plot shows the frequencies at the commensurate q on the path with
bootstrap error bars, the table the per-branch averages along the path ± their bootstrap error.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from caviar_napari._qt._atoms_source import (
    ATOMS_METADATA_KEY,
    AtomsAnalysisDock,
    AtomsSourcePicker,
)
from caviar_napari._qt._file_dialogs import FIGURE_FILTER, HDF5_FILTER, ask_and_run
from caviar_napari._qt._forms import double_spin, int_spin, push_button, text_label
from caviar_napari._qt._plot import FOREGROUND, PlotCanvas
from caviar_napari.analysis import dispersion as disp
from caviar_napari.errors import CaviarError, InputError
from caviar_napari.io.dispersion_file import DispersionData, write_dispersion
from caviar_napari.simulate.harmonic import STANDARD_ATOMIC_WEIGHTS_AMU

__all__ = [
    "ATOMS_METADATA_KEY",
    "BRANCH_COLOURS",
    "PATH_CUSTOM",
    "PATH_STANDARD",
    "DispersionWidget",
]

#: Branch colours (sorted band index 1, 2, …), readable on the dark background.
BRANCH_COLOURS = ("#ffd400", "#ff6eb4", "#5ec8ff", "#9be564", "#ff9f40", "#c58bff")

PATH_STANDARD = "standard (Γ–M–K–Γ hexagonal, Γ–X–M–Γ square)"
PATH_CUSTOM = "custom"


def _compute(atoms: Any, config: disp.DispersionConfig) -> Generator[str, None, DispersionData]:
    """Worker: the dispersion of an AtomsData."""
    yield "dispersion"
    return disp.dispersion_from_atoms(atoms, config)


def _basis_labels(atoms: Any) -> list[str]:
    """Mass labels of a source: its species, else its basis indices as text."""
    species = getattr(atoms, "species", None)
    if species is not None:
        basis = getattr(atoms, "basis_index", None)
        names = np.asarray(species, dtype=str)
        if basis is not None:
            names = names[np.asarray(basis) >= 0]
        return sorted({str(s) for s in names})
    basis = getattr(atoms, "basis_index", None)
    if basis is not None and np.size(basis):
        return [str(b) for b in range(int(np.max(basis)) + 1)]
    return []


class DispersionWidget(AtomsAnalysisDock):
    """Dock widget **Dispersion**: phonon dispersion with bootstrap errors from an ATOMS source.

    Parameters
    ----------
    napari_viewer
        The viewer whose atoms layers are the sources (an ATOMS file opened here is added to it).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.result: DispersionData | None = None
        self._mass_spins: dict[str, QDoubleSpinBox] = {}
        self._build_ui()
        self.source_picker.changed.connect(self._on_source_changed)
        self._on_source_changed()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)

        source = QGroupBox("Source")
        form = QFormLayout(source)
        self.source_picker = AtomsSourcePicker(self.viewer, opacity=0.7)
        form.addRow("atoms layer", self.source_picker)
        layout.addWidget(source)

        params = QGroupBox("Parameters")
        form = QFormLayout(params)
        self.temperature_spin = double_spin(0.1, 5000.0, 300.0, decimals=1, suffix=" K")
        form.addRow("temperature", self.temperature_spin)
        self.masses_box = QWidget()
        self.masses_form = QFormLayout(self.masses_box)
        self.masses_form.setContentsMargins(0, 0, 0, 0)
        form.addRow("masses", self.masses_box)
        self.single_mass_check = QCheckBox("one harmonic-mean mass for all atoms (paper)")
        self.single_mass_check.setToolTip(
            "default: one mass per basis atom; the paper's single mass distorts the branches "
            "when the masses differ"
        )
        form.addRow(self.single_mass_check)
        self.slices_edit = QLineEdit()
        self.slices_edit.setPlaceholderText("all slices (or A:B, B excluded; or one index)")
        form.addRow("slices", self.slices_edit)
        self.path_combo = QComboBox()
        self.path_combo.addItems([PATH_STANDARD, PATH_CUSTOM])
        self.path_combo.currentIndexChanged.connect(self._on_path_mode)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("G=0,0; X=1/2,0; M=1/2,1/2; G=0,0  (on b1, b2)")
        self.path_edit.setToolTip(
            "vertices LABEL=f1,f2 in reduced coordinates of the reciprocal vectors b1, b2 "
            "(a_i·b_j = δ_ij); fractions allowed; G or Gamma is shown as Γ"
        )
        form.addRow("path", self.path_combo)
        form.addRow("", self.path_edit)
        self.bootstrap_spin = int_spin(0, 5000, 200, suffix=" replicas")
        self.bootstrap_spin.setToolTip("bootstrap over object states for the error bars (0: none)")
        form.addRow("bootstrap", self.bootstrap_spin)
        self.compute_button = push_button("Compute dispersion", self.compute)
        form.addRow(self.compute_button)
        self.summary_label = text_label(
            "No dispersion yet: choose a source and compute.", selectable=True
        )
        form.addRow(self.summary_label)
        layout.addWidget(params)

        self.plot = PlotCanvas(self, height_px=300)
        layout.addWidget(self.plot, 1)

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["branch", "mean ν along path (THz)", "± (THz)"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setToolTip(
            "per-branch mean over the distinct commensurate q on the path; ± is the bootstrap "
            "standard deviation over object states"
        )
        layout.addWidget(self.table)

        export = QHBoxLayout()
        self.save_data_button = push_button("Save DISP (HDF5)…", self._ask_export_data)
        self.save_figure_button = push_button("Save figure (PNG/SVG)…", self._ask_export_figure)
        export.addWidget(self.save_data_button)
        export.addWidget(self.save_figure_button)
        layout.addLayout(export)
        self._on_path_mode()
        self._draw_empty()
        self._set_enabled()

    def _set_enabled(self) -> None:
        busy = self.worker is not None
        has = self.result is not None
        self.compute_button.setEnabled(not busy and self.atoms_source() is not None)
        self.save_data_button.setEnabled(has)
        self.save_figure_button.setEnabled(has)

    def _on_path_mode(self, *_: Any) -> None:
        self.path_edit.setEnabled(self.path_combo.currentText() == PATH_CUSTOM)

    # ------------------------------------------------------------------ sources
    def _on_source_changed(self, *_: Any) -> None:
        """Rebuild the mass editors for the species (or basis atoms) of the source."""
        atoms = self.atoms_source()
        labels = [] if atoms is None else _basis_labels(atoms)
        old = {k: s.value() for k, s in self._mass_spins.items()}
        while self.masses_form.rowCount():
            self.masses_form.removeRow(0)
        self._mass_spins = {}
        for label in labels:  # a few species
            mass = old.get(label, STANDARD_ATOMIC_WEIGHTS_AMU.get(label, 0.0))
            spin = double_spin(0.0, 1000.0, mass, decimals=3, suffix=" amu", special="— required —")
            name = label if not label.isdigit() else f"basis atom {label}"
            self.masses_form.addRow(name, spin)
            self._mass_spins[label] = spin
        if not labels:
            self.masses_form.addRow(QLabel("(from the species of the source)"))
        self._set_enabled()

    # ------------------------------------------------------------------ compute
    def masses_amu(self) -> dict[str, float]:
        """Masses set in the editors (species or basis index → amu); unset ones are omitted."""
        return {k: s.value() for k, s in self._mass_spins.items() if s.value() > 0}

    def config(self) -> disp.DispersionConfig:
        """The analysis parameters from the controls (validated)."""
        path = None
        if self.path_combo.currentText() == PATH_CUSTOM:
            path = disp.parse_path(self.path_edit.text())
        return disp.DispersionConfig(
            temperature_K=self.temperature_spin.value(),
            masses_amu=self.masses_amu(),
            single_mass=self.single_mass_check.isChecked(),
            slices=self.slices_edit.text().strip() or None,
            bootstrap=self.bootstrap_spin.value(),
            path=path,
        )

    def compute(self) -> None:
        """Start the background dispersion computation of the chosen source."""
        atoms = self.atoms_source()
        if atoms is None or self.worker is not None:
            return
        try:
            config = self.config()
        except CaviarError as exc:
            show_error(str(exc))
            self.summary_label.setText(f"failed: {exc}")
            return
        self._run_in_worker(
            self.summary_label, "computing …", _compute, atoms, config, on_return=self.show_result
        )

    # ------------------------------------------------------------------ results
    def show_result(self, data: DispersionData) -> None:
        """Show a dispersion result: summary, plot and table."""
        self.result = data
        L1, L2 = data.cells
        n_path = np.unique(data.path_q_index).size
        masses = ", ".join(f"{k} {v:g}" for k, v in data.masses_amu.items())
        boot = (
            f"errors: bootstrap over states, {data.n_bootstrap} replicas"
            if data.n_bootstrap
            else "no error bars (bootstrap 0)"
        )
        self.summary_label.setText(
            f"{L1} × {L2} whole unit cells ({data.excluded_atoms.size} atoms left out), "
            f"{data.n_states} states, {n_path} commensurate q on the path; masses (amu): "
            f"{masses}{' → one harmonic mean' if data.single_mass else ''}; {boot}."
        )
        self._fill_table(data)
        self.draw(data)
        self._set_enabled()

    def _fill_table(self, data: DispersionData) -> None:
        self.table.setRowCount(data.n_branches)
        for b in range(data.n_branches):  # 2κ rows
            err = data.branch_average_err_THz[b]
            cells = (
                f"● {b + 1}",
                f"{data.branch_average_THz[b]:.2f}",
                f"{err:.2f}" if np.isfinite(err) else "—",
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignCenter)
                self.table.setItem(b, col, item)
            self.table.item(b, 0).setForeground(QColor(BRANCH_COLOURS[b % len(BRANCH_COLOURS)]))
        header = self.table.horizontalHeader().height()
        rows = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(header + rows + 4)

    def _draw_empty(self) -> None:
        fig = self.plot.figure
        fig.clear()
        ax = fig.add_subplot(111)
        self.plot.style_axes(ax)
        ax.set_xlabel("wave vector along the path")
        ax.set_ylabel("ν (THz)")
        ax.set_xticks([])
        self.plot.redraw()

    def draw(self, data: DispersionData) -> None:
        """Plot the branches along the path: points at the commensurate q with error bars."""
        fig = self.plot.figure
        fig.clear()
        ax = fig.add_subplot(111)
        self.plot.style_axes(ax)
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
        self.plot.redraw()

    # ------------------------------------------------------------------ export
    def export_figure(self, path: str | os.PathLike) -> None:
        """Save the plot (PNG, SVG or PDF by extension)."""
        self.plot.save(str(path))

    def export_data(self, path: str | os.PathLike) -> None:
        """Write the result as a DISP HDF5 file (conventions §6)."""
        if self.result is None:
            raise InputError("no dispersion to save: compute one first")
        write_dispersion(path, self.result)

    def _ask_export_figure(self) -> None:
        self._ask_save(self.export_figure, "Save figure", FIGURE_FILTER, "dispersion.png")

    def _ask_export_data(self) -> None:
        self._ask_save(self.export_data, "Save DISP file", HDF5_FILTER, "dispersion.h5")

    def _ask_save(self, action: Any, title: str, filters: str, name: str) -> None:
        """Ask for a file name (proposing ``name``), run ``action(path)`` and say so."""
        path = ask_and_run(self, action, title, filters, save_as=name)
        if path:
            show_info(f"saved {path}")
