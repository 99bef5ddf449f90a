"""Phonon dispersion from the correlated displacements of an ATOMS file (``caviar dispersion``).

Masses default to the standard atomic weights of the species in the ATOMS file (``caviar atoms``
records them from ``--species``, the start positions, or a simulation's ground truth);
``masses_amu`` overrides them.

Estimator: ``force-constants`` by default (issue 14).  With the 10–20 object states of a
reconstruction, eq. 6 (``green``) is biased (its highest branch by +80 % to +110 % at 10 states
on the hBN model; :func:`~caviar_napari.analysis.dispersion_checks.green_bias`), while the
force-constant fit to the same 10 states of ``hbn-correlated`` gives branch averages within
10 % of the exact ones (``docs/benchmarks/readme-pipeline-dispersion.md``).  ``green`` stays
available, with a warning that says how many states it would need.

Warnings (printed on stderr and recorded in the DISP file): a biased green estimate, frequencies
outside any physical range for the masses (:mod:`~caviar_napari.analysis.dispersion_checks`),
a fit that needs more shells, displacements at the positional noise floor
(:mod:`~caviar_napari.analysis.noise_floor`), and a reconstruction whose states did not separate.

Depth-resolved ATOMS files (issue 16): the dispersion is that of one z-range, in its own lattice.
A multi-range file needs ``zrange`` (``--zrange LABEL``; the error names the labels otherwise);
a range's slices default to those where at least half of its atoms refined
(:func:`~caviar_napari.workflows.inputs.range_slices`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis import dispersion as disp
from caviar_napari.analysis.noise_floor import (
    assess_noise_floor,
    noise_floor_lines,
    noise_floor_warnings,
    physical_floor_warnings,
    rms_displacement_A,
    slice_noise_A,
)
from caviar_napari.data.correlations import NoiseFloor
from caviar_napari.errors import InputError
from caviar_napari.io.outputs import OutputTarget
from caviar_napari.workflows.inputs import range_slices, read_checked_atoms
from caviar_napari.workflows.noise_floor import separation_report_check
from caviar_napari.workflows.summary import StepSummary

if TYPE_CHECKING:
    from caviar_napari.data.atoms import AtomsData
    from caviar_napari.data.dispersion import DispersionData

__all__ = [
    "DispersionOptions",
    "DispersionSummary",
    "displacement_noise_floor",
    "run_dispersion",
    "summary_lines",
]


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
        Slices whose covariances are averaged (``"A:B"``, one index, or None: all; for a z-range,
        counted from its first slice, and None: the slices where at least half of its atoms
        refined).
    zrange
        Label of the z-range of a multi-range ATOMS file (required for such a file).
    bootstrap
        Bootstrap replicas over object states for the error bars (0: none).
    path
        Reciprocal-space path ``"LABEL=f1,f2; …"`` (None: Γ-M-K-Γ or the rectangular path).
    seed
        Seed of the bootstrap draws.
    estimator
        ``"force-constants"`` (default) or ``"green"`` (eq. 6).
    shells
        Force constants: neighbour shells fitted.
    boundary
        Force constants: ``"auto"``, ``"open"`` or ``"periodic"``.
    crystal_cells
        Force constants, open boundary: the ``(L1, L2)`` cells of the periodic crystal the
        field of view was cut from (None: an infinite crystal).
    noise_floor_A
        A known positional noise floor per direction, Å (None: estimated where possible).
    overwrite
        Replace an existing output that this program did not write, or of another kind.
    """

    atoms: Path
    out: Path
    temperature_K: float
    masses_amu: dict[str, float] = field(default_factory=dict)
    single_mass: bool = False
    slices: str | None = None
    zrange: str | None = None
    bootstrap: int = 200
    path: str | None = None
    seed: int = 0
    estimator: str = "force-constants"
    shells: int = 2
    boundary: str = "auto"
    crystal_cells: tuple[int, int] | None = None
    noise_floor_A: float | None = None
    overwrite: bool = False


@dataclass(kw_only=True)
class DispersionSummary(StepSummary):
    """Result of :func:`run_dispersion`.

    Attributes
    ----------
    data
        The DISP contents written.
    noise_floor
        The positional noise floor of the displacements used.
    """

    data: DispersionData | None = None
    noise_floor: NoiseFloor | None = None


def summary_lines(data: DispersionData) -> list[str]:
    """Human-readable summary of a dispersion result."""
    L1, L2 = data.cells
    masses = ", ".join(f"{k} {v:g} amu" for k, v in data.masses_amu.items())
    n_path = np.unique(data.path_q_index).size
    left_out = f"{data.excluded_atoms.size} atoms outside it or with NaN positions left out"
    if data.fit_atoms and data.boundary == "open":
        left_out = (
            f"the force constants are fitted to every atom found ({data.fit_atoms}; "
            f"{data.excluded_atoms.size} with NaN positions left out)"
        )
    return [
        f"unit cells: {L1} × {L2} block of whole cells from cell index "
        f"{tuple(data.cell_origin)} (the commensurate grid); {left_out}",
        f"states: {data.n_states}, slices: {', '.join(str(s) for s in data.slices)}; "
        f"masses: {masses}" + (" (single harmonic-mean mass used)" if data.single_mass else ""),
        f"commensurate q: {data.q_frac.shape[0]} on the grid, {n_path} distinct on the path "
        f"{'–'.join(data.path_labels)}",
    ]


def displacement_noise_floor(
    atoms: AtomsData, slices: str | Sequence[int] | None, floor_A: float | None
) -> NoiseFloor | None:
    """The noise floor of the displacements of the used slices (None: no atom in every state)."""
    positions = np.asarray(atoms.positions_A, dtype=float)
    if slices is None or isinstance(slices, str):
        chosen = corr.parse_slice_spec(slices, positions.shape[1])
    else:
        chosen = np.asarray(slices, dtype=int)
    d = corr.state_displacements(positions, chosen)
    if d.kept_atoms.size == 0:
        return None
    return assess_noise_floor(
        rms_displacement_A(d.u_A),
        given_A=floor_A,
        given_source="--noise-floor-A",
        slice_noise=slice_noise_A(d.u_A),
    )


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

    if options.noise_floor_A is not None and not (
        np.isfinite(options.noise_floor_A) and options.noise_floor_A >= 0
    ):
        raise InputError(f"--noise-floor-A must be ≥ 0 Å, got {options.noise_floor_A!r}")
    config = disp.DispersionConfig(
        temperature_K=options.temperature_K,
        masses_amu=dict(options.masses_amu),
        single_mass=options.single_mass,
        slices=options.slices,
        bootstrap=options.bootstrap,
        path=None if options.path is None else disp.parse_path(options.path),
        seed=options.seed,
        estimator=options.estimator,
        shells=options.shells,
        boundary=options.boundary,
        crystal_cells=options.crystal_cells,
    )
    target = OutputTarget.prepare(
        options.out, "disp", inputs={"ATOMS": options.atoms}, overwrite=options.overwrite
    )
    checked = read_checked_atoms(options.atoms, options.zrange)
    zrange = checked.atoms.zrange
    where = f"{options.atoms}" + (f" z-range {zrange.label!r}" if zrange and zrange.label else "")
    try:
        slices, slice_lines = range_slices(checked.atoms, options.slices)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    config = dataclasses.replace(config, slices=slices)
    floor = displacement_noise_floor(checked.atoms, slices, options.noise_floor_A)
    recon_lines, recon_warnings = separation_report_check(checked.atoms, options.atoms)
    data = disp.dispersion_from_atoms(checked.atoms, config)
    data = dataclasses.replace(data, source=where)
    summary = DispersionSummary(data=data, noise_floor=floor)
    summary.lines = [*summary_lines(data), *checked.exclusion_lines()]
    if zrange is not None:
        summary.lines[0:0] = [zrange.describe(), *slice_lines]
    summary.warnings += checked.exclusion_lines()
    if floor is not None:
        summary.lines += noise_floor_lines(floor)
        summary.warnings += noise_floor_warnings(floor)
        summary.warnings += physical_floor_warnings(floor.rms_displacement_A, data.basis_masses_amu)
    summary.lines += recon_lines
    summary.warnings += recon_warnings
    if np.unique(data.path_q_index).size < 3:
        few = "fewer than 3 commensurate q on the path: their averages are rough"
        if data.dense_path is None:
            summary.warnings.append(f"{few} (a larger block of cells gives more)")
        else:  # the force-constant model's dense path does not depend on them
            summary.lines.append(f"{few}; the dense-path averages of the fitted model are not")
    summary.warnings += list(data.warnings)  # biased green, unphysical frequencies, shells
    report = disp.format_dispersion_report(data)
    # the report's own "warning:" lines go to stderr with the others, not twice
    summary.lines += [line for line in report.splitlines() if not line.startswith("warning: ")]
    summary.out = target.write(lambda p: write_dispersion(p, data), warnings=summary.warnings)
    summary.lines.append(f"wrote {options.out}")
    return summary
