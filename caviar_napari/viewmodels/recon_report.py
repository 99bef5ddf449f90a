"""What a reconstruction says about itself, for the Reconstruction dock's result panel (Qt-free).

The engine records in ``ReconState.diagnostics`` (conventions §6, ``diagnostics`` group of the
RECON file) the data loss that ``loss: auto`` chose, how many scan positions were held out of
the fit, and, for every stage with several object states, whether the states separated
(:mod:`caviar_napari.core.separation`); ``ReconState.source_fwhm_A`` is the fitted source size
of a partially coherent probe; the tilt the paper's estimate found at the start of a stage
(``tilt_estimate``) is ``diagnostics["tilt_estimate"]``, and refined scan positions are
described by :func:`~caviar_napari.core.positions.describe_refinement`.
:func:`result_report` turns these into the lines and the per-stage rows the dock shows;
:func:`state_warnings` collects the warnings for its banner.  During a run, the engine hands
each multi-state stage's report over as the stage ends (``Progress.separation``):
:func:`live_report` shows those before the run is over.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from caviar_napari.core.separation import SeparationReport
from caviar_napari.core.state_penalty import penalty_lines
from caviar_napari.viewmodels.notices import result_warnings
from caviar_napari.viewmodels.recon_positions import scan_refinement

__all__ = [
    "SEPARATION_COLUMNS",
    "ResultReport",
    "live_report",
    "result_report",
    "separation_warnings",
    "state_warnings",
]

#: ``(header, tooltip)`` of the columns of :attr:`ResultReport.rows`.
SEPARATION_COLUMNS = (
    ("Stage", "A stage with several object states."),
    ("N", "Object states."),
    (
        "Spread",
        "rms phase difference between the states and their mean over the scanned area, mrad.",
    ),
    ("Gain", "Share of the mean object's misfit (above the noise floor) the states explain."),
    (
        "Held-out",
        "Relative loss decrease the states give on the held-out scan positions (they were not "
        "fitted): positive when the states describe signal, not noise; '—' without held-out "
        "positions.",
    ),
    ("Sep.", "Separated: the states capture signal the data support (gain, held-out tests)."),
    ("Conv.", "Converged: the misfit stopped improving by the end of the stage."),
)


def state_warnings(state: Any) -> list[str]:
    """The warnings a reconstruction state carries (``diagnostics["warnings"]``: states that
    did not separate or were still improving; refined scan positions at their bound), without
    repeats."""
    refinement = scan_refinement(state)
    return result_warnings(state, getattr(state, "diagnostics", None), refinement)


@dataclass(frozen=True)
class ResultReport:
    """The result panel's content.

    Attributes
    ----------
    lines
        Loss used, held-out positions, source size, iterations and final loss.
    rows
        One row of texts per multi-state stage (:data:`SEPARATION_COLUMNS`).
    separated
        Per row, whether the states separated (and converged): for colouring.
    unseparated
        The stages whose object states did not separate (their correlations are not
        measurements): the dock says so in its banner.
    verdicts
        One plain sentence per stage whose states did not separate or were still improving.
    """

    lines: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    separated: tuple[bool, ...]
    unseparated: tuple[str, ...] = ()
    verdicts: tuple[str, ...] = ()


def _tick(ok: bool) -> str:
    return "✓" if ok else "✗"


def _loss_line(state: Any) -> str:
    diagnostics = getattr(state, "diagnostics", {}) or {}
    chosen = diagnostics.get("loss")
    if chosen:
        why = "the intensities are counts" if chosen == "poisson" else "not counts"
        return f"loss: {chosen} (chosen by auto: {why})"
    return f"loss: {state.config.loss}"


def _holdout_line(state: Any) -> str:
    diagnostics = getattr(state, "diagnostics", {}) or {}
    held = diagnostics.get("held_out_patterns")
    if held:
        total = None
        if getattr(state, "scan_positions_A", None) is not None:
            total = int(len(state.scan_positions_A))
        of = f" of {total}" if total else ""
        return (
            f"held out: {int(held)}{of} scan positions, not fitted: they end each stage when the "
            "fit starts learning the noise, and test the states"
        )
    setting = state.config.holdout_fraction
    why = " (auto: the data are not counts)" if setting == "auto" else ""
    return f"held out: none{why}"


def _source_line(state: Any) -> str | None:
    stages = state.config.stages[: state.stage_index + 1]
    coherent = [s for s in stages if s.partial_coherence == "gaussian"]
    fwhm = float(getattr(state, "source_fwhm_A", 0.0) or 0.0)
    if not coherent:
        return None
    fitted = any("source" in s.refine for s in coherent)
    return (
        f"source size: {fwhm:.3f} Å FWHM ({'fitted' if fitted else 'fixed'}, Gaussian source: "
        "partial spatial coherence)"
    )


def _pair(values: Any, digits: int = 2) -> str:
    y, x = (float(v) for v in values)
    return f"({y:+.{digits}f}, {x:+.{digits}f})"


def tilt_lines(state: Any) -> list[str]:
    """One line per stage whose start estimated the tilt from adjacent slices
    (``tilt_estimate``, the paper's estimate), and the tilt the propagator used last."""
    diagnostics = getattr(state, "diagnostics", {}) or {}
    estimates = diagnostics.get("tilt_estimate") or {}
    lines = [
        f"tilt estimate at the start of '{stage}' (adjacent slices, {int(e['n_gaps'])} gaps): "
        f"(α_y, α_x) = {_pair(e['tilt_mrad'])} mrad, spread "
        f"({float(e['spread_mrad'][0]):.2f}, {float(e['spread_mrad'][1]):.2f}) mrad, "
        f"residual {_pair(e['residual_mrad'])} mrad"
        for stage, e in estimates.items()
    ]
    refined = any("tilt" in s.refine for s in state.config.stages[: state.stage_index + 1])
    tilt = np.asarray(getattr(state, "tilt_mrad", (0.0, 0.0)), dtype=float)
    if estimates or refined or np.any(tilt != 0):
        how = "refined" if refined else ("estimated" if estimates else "given")
        lines.append(f"tilt used: {_pair(tilt)} mrad ({how})")
    return lines


def result_report(state: Any) -> ResultReport:
    """The result panel of a reconstruction state (a finished, stopped or reopened run)."""
    lines = [_loss_line(state), _holdout_line(state)]
    source = _source_line(state)
    if source:
        lines.append(source)
    lines += tilt_lines(state)
    lines += penalty_lines(
        state.config.stages[: state.stage_index + 1], getattr(state, "diagnostics", {}) or {}
    )
    refinement = scan_refinement(state)
    if refinement is not None:
        lines.append(refinement.line)
        lines += [f"⚠ {w}" for w in refinement.warnings]
    loss = f"{state.loss[-1]:.4g}" if len(state.loss) else "–"
    lines.append(f"iterations: {state.iteration}; final loss {loss}")
    diagnostics = getattr(state, "diagnostics", {}) or {}
    reports = _reports(diagnostics.get("separation", []) or [])
    if not reports and max(s.object_states for s in state.config.stages) > 1:
        lines.append("state separation: no multi-state stage has finished yet")
    return _with_rows(lines, reports)


def live_report(items: Iterable[dict[str, Any]]) -> ResultReport:
    """The report of a running reconstruction: the multi-state stages finished so far
    (``items``: their ``Progress.separation`` dictionaries, in order)."""
    reports = _reports(items)
    ok = [r.stage for r in reports if r.separated]
    lines = ["run in progress: the state separation of the stages finished so far"]
    if ok:
        lines.append("separated: " + ", ".join(f"'{s}'" for s in ok))
    return _with_rows(lines, reports)


def separation_warnings(items: Iterable[dict[str, Any]]) -> list[str]:
    """The warnings of separation reports (``Progress.separation`` dictionaries)."""
    return [w for r in _reports(items) for w in r.warnings]


def _reports(items: Iterable[Any]) -> list[SeparationReport]:
    """The separation reports of ``items``, the last one per stage, in order."""
    by_stage: dict[str, SeparationReport] = {}
    for item in items:
        if isinstance(item, dict):
            report = SeparationReport.from_dict(item)
            by_stage.pop(report.stage, None)
            by_stage[report.stage] = report
    return list(by_stage.values())


def _with_rows(lines: list[str], reports: list[SeparationReport]) -> ResultReport:
    rows, flags = [], []
    for r in reports:
        held = f"{100 * r.held_gain:+.2f} %" if math.isfinite(r.held_gain) else "—"
        rows.append(
            (
                r.stage,
                str(r.n_states),
                f"{1e3 * r.spread_rad:.1f} mrad",
                f"{100 * r.gain:.1f} %",
                held,
                _tick(r.separated),
                _tick(r.converged),
            )
        )
        flags.append(bool(r.separated and r.converged))
    unseparated = tuple(r.stage for r in reports if not r.separated)
    verdicts = tuple(_verdict(r) for r in reports if not (r.separated and r.converged))
    return ResultReport(tuple(lines), tuple(rows), tuple(flags), unseparated, verdicts)


def _verdict(r: SeparationReport) -> str:
    if not r.separated:
        return (
            f"stage '{r.stage}': the object states did NOT separate — their displacements and "
            "correlations are not measurements"
        )
    return (
        f"stage '{r.stage}': the object states separated but were still improving — more "
        "iterations would change them"
    )
