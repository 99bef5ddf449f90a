"""Phonon dispersion from the correlated displacements of an ATOMS file (``caviar dispersion``).

Masses default to the standard atomic weights of the species in the ATOMS file (``caviar atoms``
records them from ``--species``, the start positions, or a simulation's ground truth);
``masses_amu`` overrides them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from caviar_napari.analysis import dispersion as disp
from caviar_napari.io.outputs import OutputTarget
from caviar_napari.workflows.inputs import read_checked_atoms
from caviar_napari.workflows.summary import StepSummary

if TYPE_CHECKING:
    from caviar_napari.data.dispersion import DispersionData

__all__ = ["DispersionOptions", "DispersionSummary", "run_dispersion", "summary_lines"]


@dataclass(frozen=True)
class DispersionOptions:
    """Options of :func:`run_dispersion`.

    Attributes
    ----------
    atoms
        ATOMS file.
    out
        Output DISP file.
    temperature_K
        Specimen temperature, K.
    masses_amu
        Masses by species (or by basis index as text when the file has no species), amu;
        they override the standard atomic weights.
    single_mass
        Use the paper's single harmonic-mean mass for every atom.
    slices
        Slices whose covariances are averaged (``"A:B"``, one index, or None for all).
    bootstrap
        Bootstrap replicas over object states for the error bars (0: none).
    path
        Reciprocal-space path ``"LABEL=f1,f2; …"`` (None: Γ-M-K-Γ or the rectangular path).
    seed
        Seed of the bootstrap draws.
    overwrite
        Replace an existing output that this program did not write, or of another kind.
    """

    atoms: Path
    out: Path
    temperature_K: float
    masses_amu: dict[str, float] = field(default_factory=dict)
    single_mass: bool = False
    slices: str | None = None
    bootstrap: int = 200
    path: str | None = None
    seed: int = 0
    overwrite: bool = False


@dataclass(kw_only=True)
class DispersionSummary(StepSummary):
    """Result of :func:`run_dispersion`.

    Attributes
    ----------
    data
        The DISP contents written.
    """

    data: DispersionData | None = None


def summary_lines(data: DispersionData) -> list[str]:
    """Human-readable summary of a dispersion result."""
    L1, L2 = data.cells
    masses = ", ".join(f"{k} {v:g} amu" for k, v in data.masses_amu.items())
    n_path = np.unique(data.path_q_index).size
    return [
        f"unit cells: {L1} × {L2} block of whole cells from cell index "
        f"{tuple(data.cell_origin)}; {data.excluded_atoms.size} atoms outside it or with NaN "
        "positions left out",
        f"states: {data.n_states}, slices: {', '.join(str(s) for s in data.slices)}; "
        f"masses: {masses}" + (" (single harmonic-mean mass used)" if data.single_mass else ""),
        f"commensurate q: {data.q_frac.shape[0]} on the grid, {n_path} distinct on the path "
        f"{'–'.join(data.path_labels)}",
    ]


def run_dispersion(options: DispersionOptions) -> DispersionSummary:
    """Infer the dispersion of an ATOMS file's displacements and write the DISP file.

    Raises
    ------
    InputError
        Unreadable ATOMS file, no atoms, no mass for a species, bad options (named).
    OutputError
        The output may not or cannot be written (checked first).
    """
    from caviar_napari.io.dispersion_file import write_dispersion

    config = disp.DispersionConfig(
        temperature_K=options.temperature_K,
        masses_amu=dict(options.masses_amu),
        single_mass=options.single_mass,
        slices=options.slices,
        bootstrap=options.bootstrap,
        path=None if options.path is None else disp.parse_path(options.path),
        seed=options.seed,
    )
    target = OutputTarget.prepare(
        options.out, "disp", inputs={"ATOMS": options.atoms}, overwrite=options.overwrite
    )
    checked = read_checked_atoms(options.atoms)
    data = disp.dispersion_from_atoms(checked.atoms, config)
    data = dataclasses.replace(data, source=str(options.atoms))
    summary = DispersionSummary(data=data)
    summary.lines = [*summary_lines(data), *checked.exclusion_lines()]
    summary.warnings += checked.exclusion_lines()
    if np.unique(data.path_q_index).size < 3:
        summary.warnings.append(
            "fewer than 3 commensurate q on the path; the averages are rough (a larger block "
            "of cells gives more)"
        )
    summary.lines.append(disp.format_branch_table(data))
    summary.out = target.write(lambda p: write_dispersion(p, data), warnings=summary.warnings)
    summary.lines.append(f"wrote {options.out}")
    return summary
