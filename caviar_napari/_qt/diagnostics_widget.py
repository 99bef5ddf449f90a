"""The **Diagnostics** dock widget: the paper's Fig. 3 for a reconstruction in the viewer.

Source: an Image layer holding a reconstruction (``metadata["caviar_state"]``: the
Reconstruction dock's phase layer, or a RECON file opened here or with napari's reader); the
r–z maps use the atoms layers ticked in the list (the Atoms dock's ``atoms`` layer, or the
z-ranges of an ATOMS file opened here, one layer each).  Compute runs
:func:`~caviar_napari.viewmodels.diagnostics.compute_job` — what ``caviar diagnostics`` runs —
in a worker; the dock shows the information limit d (pm, d/λ) and the depth resolution of each
reflection against the optics (a table), three plots in tabs, and the report of
``caviar diagnostics`` below them.  The plots: the power spectrum averaged over slices
and states with its rings, the power against k_z with each reflection's profile, and the r–z
maps per z-range with the phase through the column centres.  *Save DIAG…* writes the DIAG file,
its JSON numbers and its figures through the workflow (every output checked first).

The controls are bound to the Qt-free
:class:`~caviar_napari.viewmodels.diagnostics.DiagnosticsViewModel`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from napari.layers import Image, Layer, Points
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHeaderView,
    QListWidget,
    QListWidgetItem,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
)

from caviar_napari._qt._dock import ViewerDock, follow_layers
from caviar_napari._qt._file_dialogs import HDF5_FILTER, ask_and_run
from caviar_napari._qt._forms import (
    ParamField,
    ParamForm,
    hrow,
    push_button,
    replace_items,
    text_label,
)
from caviar_napari._qt._plot import FigureView
from caviar_napari._qt._worker import start_worker
from caviar_napari.data.diagnostics import DiagnosticsData
from caviar_napari.errors import CaviarError, InputError
from caviar_napari.viewmodels import diagnostics as dvm
from caviar_napari.viewmodels.diagnostics import (
    PLOT_NAMES,
    DiagnosticsOutcome,
    DiagnosticsViewModel,
    ReconSource,
)
from caviar_napari.viewmodels.figures import RenderedFigure
from caviar_napari.viewmodels.layer_keys import ATOMS_METADATA_KEY, STATE_KEY

__all__ = ["DiagnosticsWidget"]

#: The optics form (fields of :class:`~caviar_napari.viewmodels.diagnostics.DiagnosticsForm`).
OPTICS_FIELDS = (
    ParamField(
        "energy_eV",
        "energy",
        {"min": 0.0, "max": 1e6, "step": 1000.0},
        " eV",
        special="from data",
        tooltip="beam energy; 'from data': the 4D-STEM file the reconstruction was made from",
    ),
    ParamField(
        "alpha_mrad",
        "α",
        {"min": 0.0, "max": 200.0, "step": 0.5},
        " mrad",
        special="from data",
        tooltip="convergence semi-angle (give it with the energy)",
    ),
    ParamField(
        "detector_mrad",
        "detector to",
        {"min": 0.0, "max": 1000.0, "step": 1.0},
        " mrad",
        special="from data",
        tooltip="largest collected scattering angle (for the detector limit λ/(α + θ_det))",
    ),
)
#: The analysis form.
ANALYSIS_FIELDS = (
    ParamField(
        "reflections",
        "reflections",
        {"widget_type": "LineEdit"},
        tooltip="lateral frequencies |k| (1/Å, no 2π) whose depth resolution is measured",
        placeholder="auto: two lowest Bragg rings (or q1, q2 in 1/Å)",
    ),
    ParamField(
        "plateau_start",
        "noise plateau from",
        {"min": 0.05, "max": 0.99, "step": 0.01},
        tooltip="the noise plateau is the rings from this fraction of the band limit to it",
    ),
    ParamField(
        "snr",
        "spectral SNR",
        {"min": 0.0, "max": 100.0, "step": 0.1},
        tooltip="a ring carries information when it exceeds (1 + SNR) × the noise plateau",
    ),
    ParamField(
        "margin_A",
        "margin",
        {"min": 0.0, "max": 1000.0, "step": 1.0},
        " Å",
        tooltip="analyse the scanned area widened by this on every side",
    ),
)
#: Header of the reflections table.
TABLE_HEADER = ("q (1/Å)", "d (Å)", "Δz (Å)", "BF (Å)", "SS (Å)")


def _read_recon_job(path: str) -> Generator[None, None, list]:
    """Worker: the layers of a RECON file (the reader hook's)."""
    from caviar_napari._napari.reconstruction_layers import reconstruction_layer_data

    yield None
    return reconstruction_layer_data(path)


def _read_atoms_job(path: str) -> Generator[None, None, list]:
    """Worker: one atoms layer per z-range of an ATOMS file."""
    yield None
    return dvm.atoms_file_layers(path)


class DiagnosticsWidget(ViewerDock):
    """Dock widget **Diagnostics**: information limit, depth resolution and r–z maps.

    Parameters
    ----------
    napari_viewer
        The viewer whose reconstruction and atoms layers are the sources (files opened here are
        added to it).

    Attributes
    ----------
    vm
        The view-model: parameters, the last diagnosis.
    views
        The plot of each tab by name (``power``, ``kz``, ``rz``).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.vm = DiagnosticsViewModel()
        self._plot_workers: dict[str, Any] = {}
        self._build_ui()
        self.refresh_sources()
        follow_layers(self, self.viewer, self.refresh_sources)

    @property
    def result(self) -> DiagnosticsData | None:
        """The last diagnostics."""
        return self.vm.result

    @property
    def is_rendering(self) -> bool:
        """Whether a plot is being rendered again (e.g. after a resize)."""
        return bool(self._plot_workers)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        layout = self.body
        source = QGroupBox("Reconstruction")
        form = QFormLayout(source)
        self.recon_combo = QComboBox()
        self.recon_combo.setToolTip(
            f"Image layers holding a reconstruction (metadata['{STATE_KEY}']): the "
            "Reconstruction dock's phase layer or a RECON file"
        )
        self.recon_combo.currentIndexChanged.connect(lambda *_: self._set_enabled())
        self.open_recon_button = push_button("Open RECON file…", self._ask_recon_file)
        form.addRow("phase layer", hrow((self.recon_combo, 1), self.open_recon_button))
        self.optics_form = ParamForm(OPTICS_FIELDS, self.vm.form)
        form.addRow(self.optics_form.native)
        layout.addWidget(source)

        columns = QGroupBox("Columns of the r–z maps")
        box = QVBoxLayout(columns)
        self.atoms_list = QListWidget()
        self.atoms_list.setToolTip(
            "atoms layers (one z-range each) whose columns the r–z maps average around"
        )
        self.atoms_list.setMaximumHeight(72)
        box.addWidget(self.atoms_list)
        self.open_atoms_button = push_button("Open ATOMS file…", self._ask_atoms_file)
        box.addWidget(self.open_atoms_button)
        layout.addWidget(columns)

        params = QGroupBox("Analysis")
        box = QVBoxLayout(params)
        self.analysis_form = ParamForm(ANALYSIS_FIELDS, self.vm.form)
        box.addWidget(self.analysis_form.native)
        self.compute_button = push_button(
            "Compute diagnostics",
            self.compute,
            "power spectrum and information limit, depth resolution from the 3-D power, r–z "
            "maps (in the background)",
        )
        box.addWidget(self.compute_button)
        self.summary_label = text_label(
            "No diagnostics yet: choose a reconstruction and compute.", selectable=True
        )
        box.addWidget(self.summary_label)
        layout.addWidget(params)

        self.table = QTableWidget(0, len(TABLE_HEADER))
        self.table.setHorizontalHeaderLabels(list(TABLE_HEADER))
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setToolTip(
            "depth resolution Δz = 1/k_z,half of each reflection (d = 1/q), against the optics: "
            "BF, bright field 2/(q(2α − λq)); SS, single scattering 2/(q(2α + λq))"
        )
        self._fill_table([])
        layout.addWidget(self.table)

        self.tabs = QTabWidget()
        self.views: dict[str, FigureView] = {}
        for name, title in PLOT_NAMES.items():
            view = FigureView(self, height_px=440)
            view.resized.connect(lambda name=name: self._render_plot(name))
            self.tabs.addTab(view, title)
            self.views[name] = view
        layout.addWidget(self.tabs, 1)
        self.report_label = text_label(selectable=True, hint=True)
        self.report_label.setToolTip("the report of caviar diagnostics, with the optics used")
        layout.addWidget(self.report_label)

        self.save_button = push_button(
            "Save DIAG (HDF5, JSON, PNG)…",
            self._ask_save,
            "the DIAG file, its numbers as <name>.json and the figures <name>_power.png, "
            "<name>_kz.png, <name>_rz.png, as caviar diagnostics writes them",
        )
        layout.addWidget(self.save_button)
        self._set_enabled()
        self.fit_width()

    def _set_enabled(self) -> None:
        busy = self.worker is not None
        self.compute_button.setEnabled(not busy and bool(self.recon_combo.currentText()))
        self.open_recon_button.setEnabled(not busy)
        self.open_atoms_button.setEnabled(not busy)
        self.save_button.setEnabled(not busy and self.vm.outcome is not None)

    def _fill_table(self, rows: list[tuple[str, ...]]) -> None:
        self.table.setRowCount(len(rows))
        for r, cells in enumerate(rows):  # a few reflections
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignCenter)
                self.table.setItem(r, col, item)
        header = self.table.horizontalHeader().height()
        heights = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(header + heights + 4)
        self.table.setVisible(bool(rows))  # a one-slice result, or no Bragg ring found

    # ------------------------------------------------------------------ sources
    def _recon_layers(self) -> list[Image]:
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and layer.metadata.get(STATE_KEY) is not None
        ]

    def _atoms_layers(self) -> list[Points]:
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Points) and ATOMS_METADATA_KEY in layer.metadata
        ]

    def refresh_sources(self, *_: Any) -> None:
        """Re-list the reconstruction and atoms layers (keeping the choices; new atoms layers
        are ticked)."""
        names = [layer.name for layer in self._recon_layers()]
        current = self.recon_combo.currentText()
        preferred = current if current in names else (names[-1] if names else "")
        replace_items(self.recon_combo, names, preferred)
        ticked = {
            self.atoms_list.item(i).text(): self.atoms_list.item(i).checkState()
            for i in range(self.atoms_list.count())
        }
        self.atoms_list.clear()
        for layer in self._atoms_layers():
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(ticked.get(layer.name, Qt.Checked))
            self.atoms_list.addItem(item)
        self._set_enabled()

    def set_recon_layer(self, name: str) -> None:
        """Choose the reconstruction layer by name (InputError if it holds none)."""
        if name not in [layer.name for layer in self._recon_layers()]:
            raise InputError(f"no Image layer {name!r} holding a reconstruction")
        self.recon_combo.setCurrentText(name)

    def set_atoms_layers(self, names: list[str]) -> None:
        """Tick exactly the atoms layers ``names`` for the r–z maps."""
        for i in range(self.atoms_list.count()):
            item = self.atoms_list.item(i)
            item.setCheckState(Qt.Checked if item.text() in names else Qt.Unchecked)

    def recon_source(self) -> ReconSource:
        """The chosen reconstruction (InputError when there is none)."""
        name = self.recon_combo.currentText()
        for layer in self._recon_layers():
            if layer.name == name:
                return dvm.recon_source(layer.name, dict(layer.metadata))
        raise InputError("choose a reconstruction: no layer holds one (open a RECON file)")

    def zranges(self) -> dict[str, Any]:
        """The ticked atoms layers' AtomsData by z-range label."""
        ticked = {
            self.atoms_list.item(i).text()
            for i in range(self.atoms_list.count())
            if self.atoms_list.item(i).checkState() == Qt.Checked
        }
        named = [
            (layer.name, layer.metadata[ATOMS_METADATA_KEY])
            for layer in self._atoms_layers()
            if layer.name in ticked
        ]
        return dvm.zrange_columns(named)

    def open_recon_file(self, path: str | os.PathLike) -> Any:
        """Read a RECON file in a worker, add its layers and choose its phase layer; returns
        the worker (None while another one runs)."""
        return self._run(
            f"reading {Path(path).name} …", _read_recon_job, str(path), on_return=self._add_recon
        )

    def open_atoms_file(self, path: str | os.PathLike) -> Any:
        """Read an ATOMS file in a worker and add one ticked atoms layer per z-range; returns
        the worker (None while another one runs)."""
        return self._run(
            f"reading {Path(path).name} …", _read_atoms_job, str(path), on_return=self._add_layers
        )

    def _add_layers(self, tuples: list) -> list[Layer]:
        layers = [self.viewer.add_layer(Layer.create(*item)) for item in tuples]
        self.summary_label.setText(f"added {', '.join(layer.name for layer in layers)}")
        return layers

    def _add_recon(self, tuples: list) -> None:
        for layer in self._add_layers(tuples):
            if layer.metadata.get(STATE_KEY) is not None:
                self.set_recon_layer(layer.name)

    def _ask_recon_file(self) -> None:
        ask_and_run(self, self.open_recon_file, "Open RECON file", HDF5_FILTER)

    def _ask_atoms_file(self) -> None:
        ask_and_run(self, self.open_atoms_file, "Open ATOMS file", HDF5_FILTER)

    # ------------------------------------------------------------------ compute
    def form(self) -> dvm.DiagnosticsForm:
        """The parameters of the controls (validated)."""
        values = {**self.optics_form.values(), **self.analysis_form.values()}
        return dvm.DiagnosticsForm(**values).validated()

    def compute(self) -> Any:
        """Start the diagnostics of the chosen reconstruction in a worker; returns the worker
        (None when none can start: no source, a worker runs, or invalid parameters)."""
        if self.worker is not None:
            return None
        try:
            self.vm.form = self.form()
            source = self.recon_source()
            zranges = self.zranges()
        except CaviarError as exc:
            show_error(str(exc))
            self.summary_label.setText(f"failed: {exc}")
            return None
        sizes = {name: view.render_size() for name, view in self.views.items()}
        return self._run(
            "computing …",
            dvm.compute_job,
            source,
            self.vm.form,
            zranges,
            sizes,
            on_return=self.show_outcome,
        )

    def _run(
        self, busy_text: str, job: Callable[..., Generator], *args: Any, on_return: Any
    ) -> Any:
        """Run ``job(*args)`` as :attr:`worker`; the summary says ``busy_text`` meanwhile and
        ``failed: …`` on an error (also a notification); the controls come back after."""
        if self.worker is not None:
            return None
        self.summary_label.setText(busy_text)
        self.worker = start_worker(
            job,
            *args,
            on_return=on_return,
            on_done=self._on_worker_done,
            on_error=lambda exc: self.summary_label.setText(f"failed: {exc}"),
        )
        self._set_enabled()
        return self.worker

    def _on_worker_done(self) -> None:
        self.worker = None
        self._set_enabled()

    # ------------------------------------------------------------------ results
    def show_outcome(self, outcome: DiagnosticsOutcome) -> None:
        """Show a diagnosis: summary, reflections, plots and warnings."""
        self.vm.accept(outcome)
        self.summary_label.setText(outcome.headline)
        self.report_label.setText("\n".join(outcome.lines))
        self._fill_table(outcome.rows)
        for name, view in self.views.items():
            view.show_figure(outcome.plots[name])
        self.show_warnings(self.vm.warnings)
        self._set_enabled()

    def _render_plot(self, name: str) -> None:
        """Render one plot again for its view's new size (in a worker)."""
        if name in self._plot_workers:
            return
        self._plot_workers[name] = start_worker(
            dvm.plot_job,
            self.vm.result,
            name,
            self.views[name].render_size(),
            on_return=lambda plot: self._show_plot(name, plot),
            on_done=lambda: self._plot_workers.pop(name, None),
        )

    def _show_plot(self, name: str, plot: RenderedFigure) -> None:
        self.vm.accept_plot(name, plot)
        self.views[name].show_figure(plot)

    # ------------------------------------------------------------------ save
    def save(self, path: str | os.PathLike) -> Any:
        """Write the diagnosis (DIAG file, JSON, figures) in a worker; returns the worker.

        Raises
        ------
        InputError
            Nothing computed yet.
        """
        if self.vm.outcome is None:
            raise InputError("no diagnostics to save: compute them first")
        return self._run(
            f"saving {Path(path).name} …",
            dvm.save_job,
            self.vm.outcome,
            str(path),
            on_return=self._saved,
        )

    def _saved(self, summary: Any) -> None:
        self.summary_label.setText(self.vm.outcome.headline + "\n" + "\n".join(summary.lines))
        show_info(f"saved {summary.out}")

    def _ask_save(self) -> None:
        ask_and_run(self, self.save, "Save DIAG file", HDF5_FILTER, save_as="diagnostics.h5")
