"""The reconstruction's own verdict on its object states, for the analysis steps (issue 12).

``caviar reconstruct`` records, for every stage with several object states, whether the states
separated (the state-separation report in the RECON file's ``diagnostics`` group, conventions
§6).  States that did not separate differ only by what the optimisation left of their random
start: their displacements are at the reconstruction's noise floor, whatever their size.
``caviar correlations`` and ``caviar dispersion`` read that report from the reconstruction named
in the ATOMS file's provenance (when the file is still there) and pass its verdict on as a
warning.  The positional floor itself is assessed by :mod:`caviar_napari.analysis.noise_floor`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py

from caviar_napari.data.atoms import AtomsData
from caviar_napari.io._h5util import as_text

__all__ = ["separation_report_check"]


def _recon_path(atoms: AtomsData, atoms_path: str | os.PathLike) -> Path | None:
    named = atoms.provenance.get("reconstruction") if atoms.provenance else None
    if not named:
        return None
    path = Path(str(named))
    candidates = [path] if path.is_absolute() else [path, Path(atoms_path).parent / path]
    return next((p for p in candidates if p.is_file()), candidates[-1])


def separation_report_check(
    atoms: AtomsData, atoms_path: str | os.PathLike
) -> tuple[list[str], list[str]]:
    """Read the state-separation report of the reconstruction an ATOMS file was measured on.

    Parameters
    ----------
    atoms
        The ATOMS file's contents (its ``provenance["reconstruction"]`` names the RECON file,
        relative to the working directory of ``caviar atoms`` or to the ATOMS file).
    atoms_path
        The ATOMS file.

    Returns
    -------
    lines : list of str
        One summary line (nothing when the ATOMS file names no reconstruction).
    warnings : list of str
        One per stage whose states did not separate.
    """
    path = _recon_path(atoms, atoms_path)
    if path is None:
        return [], []
    if not path.is_file():
        return [
            f"reconstruction's state-separation report: not checked ({path} named in the "
            "ATOMS file is not there)"
        ], []
    try:
        with h5py.File(path, "r") as f:
            if "diagnostics" not in f:
                return [
                    f"reconstruction's state-separation report: none in {path} (written before "
                    "the report existed)"
                ], []
            diagnostics = json.loads(as_text(f["diagnostics"].attrs.get("json", "{}")))
    except (OSError, ValueError, TypeError) as exc:
        return [f"reconstruction's state-separation report: {path} not readable ({exc})"], []
    reports = diagnostics.get("separation", []) if isinstance(diagnostics, dict) else []
    reports = [r for r in reports if isinstance(r, dict) and "separated" in r]
    if not reports:
        return [f"reconstruction's state-separation report: no multi-state stage in {path}"], []
    failed = [r for r in reports if not bool(r["separated"])]
    if not failed:
        stages = ", ".join(f"'{r.get('stage', '?')}'" for r in reports)
        return [
            f"reconstruction's state-separation report ({path}): states separated in {stages}"
        ], []
    warnings = [
        f"the reconstruction {path} reports that the object states of stage "
        f"'{r.get('stage', '?')}' did not separate (its state-separation report): the "
        "displacements between them are at the reconstruction's noise floor and their "
        "correlations are not measurements"
        for r in failed
    ]
    return [f"reconstruction's state-separation report ({path}): states NOT separated"], warnings
