"""The **Dispersion** dock widget: phonon branches from the correlations (issue 14, eqs. 5, 6).

Source: an ATOMS file, or any napari Points layer whose ``metadata["caviar_atoms"]`` holds an
``io.atoms_file.AtomsData``.  The parameters are a magicgui form bound to the Qt-free
:class:`~caviar_napari.viewmodels.dispersion.DispersionViewModel`: the estimator
(force constants, the default of ``caviar dispersion``; eq. 6; or both), the neighbour shells
and boundary of the force-constant fit, temperature, masses, slices, bootstrap, path.  The
dispersion of each estimator (``analysis.dispersion.dispersion_from_atoms``) and the plot are
computed in a background worker; the plot shows the force-constant model's dense curves (± their
error as a band) over the frequencies at the commensurate q with error bars (eq. 6's when both
ran), the tables the per-branch averages ± errors and the fitted force constants ± errors
(eV/Å²) with the test of whether more shells are needed; warnings go to the banner.
"""

from __future__ import annotations

import os
from typing import Any

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from caviar_napari._qt._atoms_source import AtomsAnalysisDock, AtomsSourcePicker
from caviar_napari._qt._file_dialogs import FIGURE_FILTER, HDF5_FILTER, ask_and_run
from caviar_napari._qt._forms import (
    ParamField,
    ParamForm,
    double_spin,
    fill_table,
    push_button,
    read_only_table,
    text_label,
)
from caviar_napari._qt._plot import FigureView
from caviar_napari._qt._worker import start_worker
from caviar_napari.errors import CaviarError
from caviar_napari.io.dispersion_file import DispersionData
from caviar_napari.viewmodels import dispersion as dvm
from caviar_napari.viewmodels.dispersion import (
    BRANCH_COLOURS,
    PATH_CUSTOM,
    PATH_STANDARD,
    DispersionOutcome,
    DispersionViewModel,
)
from caviar_napari.viewmodels.figures import RenderedFigure
from caviar_napari.viewmodels.layer_keys import ATOMS_METADATA_KEY

__all__ = [
    "ATOMS_METADATA_KEY",
    "BRANCH_COLOURS",
    "PATH_CUSTOM",
    "PATH_STANDARD",
    "DispersionWidget",
]

#: The parameter form (fields of :class:`~caviar_napari.viewmodels.dispersion.DispersionForm`).
FORM_FIELDS = (
    ParamField(
        "estimator",
        "estimator",
        {"widget_type": "ComboBox", "choices": list(dvm.ESTIMATOR_CHOICES)},
        tooltip=(
            "force constants (default, as caviar dispersion): a Born–von Kármán model fitted to "
            "the displacements by maximum likelihood, unbiased with 10–20 states, frequencies "
            "on any q; eq. 6 (green): the paper's inversion of the covariance at the "
            "commensurate q, biased upwards with few states; both: the model's curves over the "
            "eq. 6 points"
        ),
    ),
    ParamField(
        "shells",
        "shells",
        {"widget_type": "SpinBox", "min": 1, "max": 8},
        tooltip="force constants: neighbour shells fitted (the fit tests whether one more helps)",
    ),
    ParamField(
        "boundary",
        "boundary",
        {"widget_type": "ComboBox", "choices": list(dvm.BOUNDARY_CHOICES)},
        tooltip=(
            "force constants: open (every atom found, a window of a larger crystal, as a "
            "reconstruction's field of view), periodic (the block of whole cells is one whole "
            "period, as a simulated supercell), auto (both on the block, the likelier kept, "
            "when no atom lies outside it; else open)"
        ),
    ),
    ParamField(
        "crystal_cells",
        "crystal cells",
        {"widget_type": "LineEdit"},
        tooltip=(
            "force constants, open boundary: L1, L2 cells of the periodic crystal the field of "
            "view was cut from (e.g. a simulated supercell); blank: an infinite crystal"
        ),
        placeholder="infinite (or L1, L2)",
    ),
    ParamField("temperature_K", "temperature", {"min": 0.1, "max": 5000.0, "step": 0.1}, " K"),
    ParamField(
        "single_mass",
        "one mean mass (paper)",
        {"widget_type": "CheckBox"},
        tooltip=(
            "one harmonic-mean mass for all atoms, as in the paper; default: one mass per basis "
            "atom (the paper's single mass distorts the branches when the masses differ)"
        ),
    ),
    ParamField(
        "slices",
        "slices",
        {"widget_type": "LineEdit"},
        placeholder="all slices (or A:B, B excluded; or one index)",
    ),
    ParamField(
        "custom_path",
        "custom path",
        {"widget_type": "CheckBox"},
        tooltip=f"standard: {PATH_STANDARD}",
    ),
    ParamField(
        "path_text",
        "path",
        {"widget_type": "LineEdit"},
        tooltip=(
            "vertices LABEL=f1,f2 in reduced coordinates of the reciprocal vectors b1, b2 "
            "(a_i·b_j = δ_ij); fractions allowed; G or Gamma is shown as Γ"
        ),
        placeholder="G=0,0; X=1/2,0; M=1/2,1/2; G=0,0  (on b1, b2)",
    ),
    ParamField(
        "bootstrap",
        "bootstrap",
        {"min": 0, "max": 5000},
        " replicas",
        tooltip=(
            "bootstrap over object states for the error bars (0: none; force constants then "
            "have their errors from the curvature of the likelihood)"
        ),
    ),
)


class DispersionWidget(AtomsAnalysisDock):
    """Dock widget **Dispersion**: phonon dispersion with bootstrap errors from an ATOMS source.

    Parameters
    ----------
    napari_viewer
        The viewer whose atoms layers are the sources (an ATOMS file opened here is added to it).

    Attributes
    ----------
    vm
        The view-model: parameters, masses, the last result.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.vm = DispersionViewModel()
        self._mass_spins: dict[str, QDoubleSpinBox] = {}
        self._plot_worker = None
        self._build_ui()
        self.source_picker.changed.connect(self._on_source_changed)
        self._on_source_changed()

    @property
    def result(self) -> DispersionData | None:
        """The last dispersion."""
        return self.vm.result

    @property
    def is_rendering(self) -> bool:
        """Whether the plot is being rendered again (e.g. after a resize)."""
        return self._plot_worker is not None

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        layout = self.body
        source = QGroupBox("Source")
        form = QFormLayout(source)
        self.source_picker = AtomsSourcePicker(self.viewer, opacity=0.7)
        form.addRow("atoms layer", self.source_picker)
        layout.addWidget(source)

        params = QGroupBox("Parameters")
        box = QVBoxLayout(params)
        self.form = ParamForm(FORM_FIELDS, self.vm.form)
        self.form.connect(self._on_form_changed)
        box.addWidget(self.form.native)
        masses = QFormLayout()
        self.masses_box = QWidget()
        self.masses_form = QFormLayout(self.masses_box)
        self.masses_form.setContentsMargins(0, 0, 0, 0)
        masses.addRow("masses", self.masses_box)
        box.addLayout(masses)
        self.compute_button = push_button("Compute dispersion", self.compute)
        box.addWidget(self.compute_button)
        self.summary_label = text_label(
            "No dispersion yet: choose a source and compute.", selectable=True
        )
        box.addWidget(self.summary_label)
        layout.addWidget(params)

        self.plot = FigureView(self, height_px=300)
        self.plot.resized.connect(self._render_plot)
        layout.addWidget(self.plot, 1)

        self.table = read_only_table(
            "per-branch mean along the path ± its error (force constants: the model's dense "
            "path; eq. 6: the commensurate q)"
        )
        layout.addWidget(self.table)

        constants = QGroupBox("Force constants (eV/Å²)")
        box = QVBoxLayout(constants)
        self.constants_table = read_only_table("")
        box.addWidget(self.constants_table)
        self.fit_label = text_label(selectable=True, hint=True)
        box.addWidget(self.fit_label)
        self.constants_box = constants
        constants.setVisible(False)
        layout.addWidget(constants)

        export = QHBoxLayout()
        self.save_data_button = push_button("Save DISP (HDF5)…", self._ask_export_data)
        self.save_figure_button = push_button("Save figure (PNG/SVG)…", self._ask_export_figure)
        export.addWidget(self.save_data_button)
        export.addWidget(self.save_figure_button)
        layout.addLayout(export)
        self._on_form_changed()
        self._set_enabled()
        self.fit_width()

    def _set_enabled(self) -> None:
        busy = self.worker is not None
        has = self.vm.result is not None
        self.compute_button.setEnabled(not busy and self.atoms_source() is not None)
        self.save_data_button.setEnabled(has)
        self.save_figure_button.setEnabled(has)

    def _on_form_changed(self) -> None:
        self.form["path_text"].enabled = bool(self.form["custom_path"].value)
        fitted = self.form["estimator"].value != dvm.EST_GREEN
        for name in ("shells", "boundary", "crystal_cells"):
            self.form[name].enabled = fitted

    # ------------------------------------------------------------------ sources
    def _on_source_changed(self, *_: Any) -> None:
        """Rebuild the mass editors for the species (or basis atoms) of the source."""
        self._read_masses()
        atoms = self.atoms_source()
        rows = [] if atoms is None else self.vm.mass_rows(atoms)
        while self.masses_form.rowCount():
            self.masses_form.removeRow(0)
        self._mass_spins = {}
        for label, mass in rows:  # a few species
            spin = double_spin(0.0, 1000.0, mass, decimals=3, suffix=" amu", special="— required —")
            self.masses_form.addRow(dvm.mass_label(label), spin)
            self._mass_spins[label] = spin
        if not rows:
            self.masses_form.addRow(QLabel("(from the species of the source)"))
        self._set_enabled()

    def _read_masses(self) -> None:
        self.vm.masses_amu.update({k: s.value() for k, s in self._mass_spins.items()})

    # ------------------------------------------------------------------ compute
    def masses_amu(self) -> dict[str, float]:
        """Masses set in the editors (species or basis index → amu); unset ones are omitted."""
        return {k: s.value() for k, s in self._mass_spins.items() if s.value() > 0}

    def configs(self) -> list[Any]:
        """The analysis parameters of each estimator from the controls (validated)."""
        self.vm.form = self.form.apply_to(self.vm.form)
        self.vm.masses_amu = {k: s.value() for k, s in self._mass_spins.items()}
        return self.vm.configs()

    def compute(self) -> Any:
        """Start the background dispersion computation of the chosen source; returns the worker
        (None when there is no source, a computation runs or the parameters are invalid)."""
        atoms = self.atoms_source()
        if atoms is None or self.worker is not None:
            return None
        try:
            configs = self.configs()
        except CaviarError as exc:
            show_error(str(exc))
            self.summary_label.setText(f"failed: {exc}")
            return None
        return self._run_in_worker(
            self.summary_label,
            "computing …",
            dvm.compute_job,
            atoms,
            configs,
            self.plot.render_size(),
            self.source_path(),
            on_return=self.show_outcome,
        )

    # ------------------------------------------------------------------ results
    def show_outcome(self, outcome: DispersionOutcome) -> None:
        """Show a dispersion result: summary, plot, table and warnings."""
        self.vm.accept(outcome)
        self.summary_label.setText(outcome.summary)
        fill_table(self.table, outcome.branches, colours=BRANCH_COLOURS)
        self.constants_box.setVisible(outcome.constants is not None)
        if outcome.constants is not None:
            fill_table(self.constants_table, outcome.constants)
        self.fit_label.setText(outcome.fit)
        self.plot.show_figure(outcome.plot)
        self.show_warnings(self.vm.warnings)
        self._set_enabled()

    def _render_plot(self) -> None:
        """Render the plot again for the view's new size (in a worker)."""
        if self._plot_worker is not None:
            return
        self._plot_worker = start_worker(
            dvm.plot_job,
            self.vm.outcome,
            self.plot.render_size(),
            on_return=self._show_plot,
            on_done=self._plot_done,
        )

    def _show_plot(self, plot: RenderedFigure) -> None:
        self.vm.accept_plot(plot)
        self.plot.show_figure(plot)

    def _plot_done(self) -> None:
        self._plot_worker = None

    # ------------------------------------------------------------------ export
    def export_figure(self, path: str | os.PathLike) -> None:
        """Save the plot (PNG, SVG or PDF by extension)."""
        self.vm.export_figure(path)

    def export_data(self, path: str | os.PathLike) -> None:
        """Write the result as a DISP HDF5 file (conventions §6)."""
        self.vm.export_data(path)

    def _ask_export_figure(self) -> None:
        self._ask_save(self.export_figure, "Save figure", FIGURE_FILTER, "dispersion.png")

    def _ask_export_data(self) -> None:
        self._ask_save(self.export_data, "Save DISP file", HDF5_FILTER, "dispersion.h5")

    def _ask_save(self, action: Any, title: str, filters: str, name: str) -> None:
        """Ask for a file name (proposing ``name``), run ``action(path)`` and say so."""
        path = ask_and_run(self, action, title, filters, save_as=name)
        if path:
            show_info(f"saved {path}")
