"""The report of a validation study: Markdown tables, figures and the document section.

:func:`generated_section` writes the tables of a :class:`~caviar_napari.workflows.study.StudyResult`
(against each dataset's own truth, against the reference truth, diagnostics) with the commands
and the machine; :func:`arrow_figure` and :func:`green_figure` draw the paper-Fig.-2-like
correlation arrows and the full Green's tensors (matplotlib, Agg, no Qt);
:func:`write_study_report` puts them into a Markdown document between
``<!-- BEGIN GENERATED size=… -->`` and ``<!-- END GENERATED size=… -->``, keeping the rest.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from caviar_napari.workflows.study import CaseResult, StudyResult
from caviar_napari.workflows.study_config import REFERENCE_PRESET

__all__ = [
    "arrow_figure",
    "generated_section",
    "green_figure",
    "machine_description",
    "report_suffix",
    "write_document",
    "write_study_report",
]

#: Arrow colours of the paper (conventions §4): self y-row, self x-row, reference y-row, x-row.
COLOURS = {"self_y": "#f5d000", "self_x": "#8e44ad", "ref_y": "#ff5fa2", "ref_x": "#5ec8f2"}

LABELS = {
    "hbn-static": "static",
    "hbn-einstein": "Einstein",
    "hbn-correlated": "correlated",
    "hbn-correlated-psc": "correlated + PSC",
}


def _label(r: CaseResult) -> str:
    base = LABELS.get(r.case.preset, r.case.preset)
    return base if r.case.data == "abtem" else f"{base} ({r.case.data} control)"


# ------------------------------------------------------------------------------ figures
def _truth_for_figure(r: CaseResult) -> tuple[np.ndarray | None, str]:
    """The truth drawn with a case: its own, or the reference one if its own is zero."""
    if r.green_truth_A2 is not None and np.any(np.nan_to_num(r.green_truth_A2)):
        return r.green_truth_A2, "own truth"
    return r.green_reference_A2, f"{REFERENCE_PRESET} truth"


def _arrow_scale(results: list[CaseResult], length_A: float = 0.6) -> float:
    """Common arrow scale (Å on screen per Å²): the median self-row length of the reference
    truth over the analysed atoms is drawn ``length_A`` long (the same scale in every panel)."""
    from caviar_napari.analysis import correlations as corr

    rows = []
    for r in results:
        g = r.green_reference_A2 if r.green_reference_A2 is not None else r.green_truth_A2
        if g is None or r.positions_A is None:
            continue
        keep = np.flatnonzero(np.isfinite(r.positions_A).all(axis=1))
        blocks = corr.pair_blocks(g, np.stack([keep, keep], axis=1))
        rows.append(np.linalg.norm(blocks, axis=2).ravel())
    values = np.concatenate(rows) if rows else np.zeros(0)
    values = values[np.isfinite(values) & (values > 0)]
    return length_A / float(np.median(values)) if values.size else 1.0


def _arrows(r: CaseResult, green: np.ndarray, scale: float):
    from caviar_napari.analysis import correlations as corr

    atoms = np.concatenate([[r.reference_atom], r.reference_neighbours])
    self_blocks = corr.pair_blocks(green, np.stack([atoms, atoms], axis=1))
    cross = np.stack(
        [np.full_like(r.reference_neighbours, r.reference_atom), r.reference_neighbours]
    )
    ref_blocks = corr.pair_blocks(green, cross.T)
    return corr.correlation_arrows(
        r.positions_A, atoms, self_blocks, r.reference_neighbours, ref_blocks, scale
    )


def _draw_arrows(ax, arrows, *, truth: bool) -> None:
    from caviar_napari.analysis.correlations import ARROW_KINDS

    start, vec = arrows.data[:, 0], arrows.data[:, 1]
    for code, kind in enumerate(ARROW_KINDS):
        sel = arrows.kind == code
        if not sel.any():
            continue
        ax.quiver(
            start[sel, 1],
            start[sel, 0],
            vec[sel, 1],
            vec[sel, 0],
            angles="xy",
            scale_units="xy",
            scale=1.0,
            color="black" if truth else COLOURS[kind],
            width=0.004 if truth else 0.009,
            headwidth=4 if truth else 3,
            zorder=3 if truth else 4,
            alpha=0.9,
        )


def _panel(ax, r: CaseResult, scale: float, margin_A: float = 0.6) -> None:
    img = r.phase
    oy, ox = r.phase_origin_A
    dy, dx = r.pixel_size_A
    h, w = img.shape
    extent = (ox - dx / 2, ox + (w - 0.5) * dx, oy + (h - 0.5) * dy, oy - dy / 2)
    fov = r.fov_A
    lo, hi = fov[0] - margin_A, fov[1] + margin_A
    iy = slice(max(int((lo[0] - oy) / dy), 0), min(int((hi[0] - oy) / dy) + 1, h))
    ix = slice(max(int((lo[1] - ox) / dx), 0), min(int((hi[1] - ox) / dx) + 1, w))
    vmin, vmax = np.percentile(img[iy, ix], [1, 99.5])
    vmax = vmin + 1.6 * (vmax - vmin)  # dimmed, so that the arrows stand out
    ax.imshow(img, extent=extent, cmap="gray", vmin=vmin, vmax=vmax, interpolation="bilinear")
    ax.add_patch(
        _rect(fov, edgecolor="#66ff66", linestyle=":", linewidth=1.0, fill=False, zorder=1)
    )
    pos = r.positions_A
    ok = np.isfinite(pos).all(axis=1)
    ax.plot(pos[ok, 1], pos[ok, 0], ".", color="white", markersize=2)
    ref = pos[r.reference_atom]
    ax.plot(*ref[::-1], "o", mfc="none", mec="red", ms=14, mew=1.5, zorder=1.5)
    nb = pos[r.reference_neighbours]
    ax.plot(nb[:, 1], nb[:, 0], "o", mfc="none", mec="#3b6cff", ms=11, mew=1.0, zorder=1.5)
    truth, _ = _truth_for_figure(r)
    _draw_arrows(ax, _arrows(r, r.green_rec_A2, scale), truth=False)
    if truth is not None:
        _draw_arrows(ax, _arrows(r, truth, scale), truth=True)
    ax.set_xlim(lo[1], hi[1])
    ax.set_ylim(hi[0], lo[0])
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")


def _rect(fov: np.ndarray, **kw):
    from matplotlib.patches import Rectangle

    (y0, x0), (y1, x1) = fov
    return Rectangle((x0, y0), x1 - x0, y1 - y0, **kw)


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, spec)


def _title(r: CaseResult) -> str:
    label = _label(r)
    cmp_ = r.own if r.own is not None and r.own.csm_nn is not None else r.reference
    which = "own truth" if cmp_ is r.own else "vs correlated truth"
    return (
        f"{label}, {r.case.recipe_label}\n"
        f"ref. atom + nbrs: LSM {_fmt(cmp_.lsm_reference)}, CSM {_fmt(cmp_.csm_reference)}\n"
        f"({which}); ρ_nn {r.rho_nn_rec:+.2f} (truth {_fmt(r.rho_nn_truth, '+.2f')})"
    )


def arrow_figure(result: StudyResult, path: Path) -> None:
    """Paper-Fig.-2-like panels: mean reconstructed phase with correlation arrows per case."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    cases = result.cases
    scale = _arrow_scale(cases)
    n = len(cases)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4.6 * cols, 5.1 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, r in zip(axes.ravel(), cases):
        _panel(ax, r, scale)
        ax.set_title(_title(r), fontsize=9)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles = [Line2D([], [], color=COLOURS[k], lw=3) for k in COLOURS] + [
        Line2D([], [], color="black", lw=1),
        Line2D([], [], ls="none", marker="o", mfc="none", mec="red", ms=9),
        Line2D([], [], ls="none", marker="o", mfc="none", mec="#3b6cff", ms=8),
        Line2D([], [], color="#66ff66", ls=":"),
    ]
    labels = [
        "self, y row (⟨u_y u_y⟩, ⟨u_y u_x⟩)",
        "self, x row",
        "with reference atom, y row",
        "with reference atom, x row",
        "ground truth (same rows, same scale)",
        "reference atom",
        "neighbours",
        "analysed field of view (scan area)",
    ]
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    fig.suptitle(
        f"Correlation arrows (1 Å on screen = {1e4 / scale:.0f} pm²) on the reconstructed phase "
        f"(sum over slices, mean over states), size '{result.config.size.name}'",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)


def green_figure(result: StudyResult, path: Path) -> None:
    """Full Green's tensors (paper Fig. S2): reconstruction (top) and truth (bottom), pm²."""
    from matplotlib.figure import Figure

    cases = result.cases
    fig = Figure(figsize=(3.3 * len(cases) + 1.0, 6.8), layout="constrained")
    axes = fig.subplots(2, len(cases), squeeze=False)
    top = 0.0
    for r in cases:
        truth, _ = _truth_for_figure(r)
        if truth is not None and np.isfinite(truth).any():
            top = max(top, float(np.nanmax(np.abs(truth))))
    top = 1e4 * top if top > 0 else 1.0
    im = None
    for j, r in enumerate(cases):
        keep = np.flatnonzero(np.isfinite(r.positions_A).all(axis=1))
        dof = np.stack([2 * keep, 2 * keep + 1], axis=1).ravel()
        truth, which = _truth_for_figure(r)
        for i, (g, name) in enumerate(((r.green_rec_A2, "reconstruction"), (truth, which))):
            ax = axes[i, j]
            if g is None:
                ax.axis("off")
                continue
            im = ax.imshow(1e4 * g[np.ix_(dof, dof)], cmap="RdBu_r", vmin=-top, vmax=top)
            ax.set_title(
                f"{_label(r)}, {r.case.recipe_label}:\n{name}",
                fontsize=8,
            )
            ax.set_xlabel("dof 2i + a (a = 0 y, 1 x)", fontsize=7)
            ax.tick_params(labelsize=6)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="G (pm²)")
    fig.suptitle(
        "Green's tensors of the analysed atoms: reconstruction (top) vs realised truth (bottom)",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------ report
def machine_description(device: str) -> str:
    """CPU model, cores, memory, OS, Python/numpy/abTEM versions, load (and GPU when used)."""
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"model name\s*:\s*(.+)", text)
        cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    mem = ""
    try:
        total = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
        mem = f", {int(total.group(1)) / 2**20:.0f} GiB RAM" if total else ""
    except OSError:
        pass
    versions = [f"Python {platform.python_version()}", f"numpy {np.__version__}"]
    try:
        import abtem

        versions.append(f"abTEM {abtem.__version__}")
    except ImportError:
        pass
    from caviar_napari import __version__

    versions.append(f"caviar-napari {__version__}")
    load = ""
    if hasattr(os, "getloadavg"):
        load = f"; load average at start {os.getloadavg()[0]:.1f}"
    devices = ""
    if device != "cpu":
        from caviar_napari.core.backend import detect_devices

        devices = f"; {detect_devices()}"
    return (
        f"{cpu}, {os.cpu_count()} logical cores{mem}; {platform.platform()}; "
        f"{', '.join(versions)}{load}{devices}"
    )


def _row_own(r: CaseResult, size) -> str:
    o = r.own
    states = 1 if r.case.preset == "hbn-static" else size.n_configs
    return (
        f"| {_label(r)} | {r.case.recipe_label} | "
        f"{size.object_states} | {states} | {_fmt(o.lsm_reference)} | {_fmt(o.csm_reference)} | "
        f"{_fmt(o.lsm_nn)} | {_fmt(o.csm_nn)} | {_fmt(o.csm_nn_cross)} | "
        f"{r.rho_nn_rec:+.3f} | {_fmt(r.rho_nn_truth, '+.3f')} | "
        f"{100 * r.rms_rec_A:.2f} / {100 * r.rms_truth_A:.2f} | "
        f"{1e4 * r.offset_rec_A2:+.2f} / {1e4 * r.offset_truth_A2:+.2f} |"
    )


def _row_ref(r: CaseResult) -> str:
    o = r.reference
    return (
        f"| {_label(r)} | {r.case.recipe_label} | "
        f"{_fmt(o.lsm_reference)} | {_fmt(o.csm_reference)} | {_fmt(o.lsm_nn)} | "
        f"{_fmt(o.csm_nn)} | {_fmt(o.csm_nn_cross)} |"
    )


def _seconds(value: float | None) -> str:
    return "reused" if value is None else f"{value:.0f}"


def _row_diag(r: CaseResult) -> str:
    rec = r.recovery
    recovery = "n/a" if rec is None else f"{rec.mean_r:.2f} / {rec.null_r:.2f}"
    t = r.timings_s
    return (
        f"| {_label(r)} | {r.case.recipe_label} | "
        f"{r.n_atoms} / {r.n_matched} | ({r.match_shift_A[0]:+.3f}, {r.match_shift_A[1]:+.3f}) | "
        f"{100 * r.mean_position_error_A:.2f} | {r.final_loss:.3g} | {recovery} | "
        f"{_seconds(t.get('simulate'))} | {_seconds(t.get('reconstruct'))} |"
    )


def generated_section(result: StudyResult, images: dict[str, str] | None, command: str) -> str:
    """The Markdown of one study (tables, figures, warnings, commands, machine).

    ``images`` maps ``arrows`` and ``green`` to the figures' paths relative to the document
    (None: no figures).
    """
    cfg = result.config
    size = cfg.size
    work = str(cfg.workdir)
    lines = [
        f"### Size `{size.name}` — results",
        "",
        f"Run {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} with",
        "",
        "```",
        command,
        "```",
        "",
        f"on {machine_description(cfg.device)}; device `{cfg.device}`; total "
        f"{result.elapsed_s / 60:.1f} min.",
        "",
        f"Simulation: hBN monolayer, 60 kV, 35 mrad, {size.cells[0]} × {size.cells[1]} "
        f"orthogonal cells, detector {size.detector_shape[0]} × {size.detector_shape[1]}, scan "
        f"{size.scan_shape[0]} × {size.scan_shape[1]} at {size.scan_step_A[0]:g} Å, "
        f"{size.n_configs} configurations (1 for static), noise-free, seed {cfg.seed}"
        + (f", {size.temperature_K:g} K" if size.temperature_K else ", 300 K")
        + ". Reconstruction: stage 1 one state, M probe modes, "
        f"{size.iterations[0]} iterations (object + probe); stage 2 {size.object_states} "
        f"states, stage-1 probe kept, {size.iterations[1]} iterations (object); "
        f"{size.slices} slice of {size.slice_thickness_A:g} Å. Start positions: "
        + (
            "LoG on the reconstruction inside the scanned field of view."
            if cfg.start_positions == "log"
            else "ground-truth ideal sites inside the scanned field of view."
        ),
        "",
        "**Against the realised truth of each dataset's own configurations** (LSM as the mean "
        "of eq. 3 over vectors, 1 = equal length; CSM eq. 4; *ref.* = reference atom and its "
        f"{cfg.reference_neighbours} nearest neighbours, self blocks included; *nn* = every "
        "self block and every nearest-neighbour pair; *nn cross* = the nearest-neighbour pairs "
        "without self blocks; ρ_nn over the same pairs; rms = per direction; offset = mean "
        "(G_yy + G_xx)/2 over all pairs of distinct atoms):",
        "",
        "| dataset | recipe | object states | configs | LSM ref. | CSM ref. | LSM nn | "
        "CSM nn | CSM nn cross | ρ_nn rec | ρ_nn truth | rms rec / truth (pm) | "
        "offset rec / truth (pm²) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row_own(r, size) for r in result.cases),
        "",
        f"**Against the `{REFERENCE_PRESET}` realised truth** (the paper's convention in Fig. 2 "
        "b–e, where every dataset is compared with the MD correlations):",
        "",
        "| dataset | recipe | LSM ref. | CSM ref. | LSM nn | CSM nn | CSM nn cross |",
        "|---|---|---|---|---|---|---|",
        *(_row_ref(r) for r in result.cases if r.reference is not None),
        "",
        "**Diagnostics** (atoms analysed / matched to the truth; global shift between the "
        "reconstruction and truth frames; rms error of the mean positions; final objective; "
        "state recovery = mean correlation of each state's displacement field with its "
        "assigned configuration / the same for atom-shuffled configurations; step times):",
        "",
        "| dataset | recipe | atoms | shift (y, x) Å | mean pos. error (pm) | final loss | "
        "state recovery r / null | simulate (s) | reconstruct (s) |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_row_diag(r) for r in result.cases),
        "",
    ]
    if images is not None:
        lines += [
            f"![correlation arrows]({images['arrows']})",
            "",
            f"![Green's tensors]({images['green']})",
            "",
        ]
    warnings = [(r, w) for r in result.cases for w in r.warnings]
    if warnings:
        lines += ["**Warnings of the steps:**", ""]
        lines += [f"* {_label(r)}, {r.case.recipe_label}: {w}" for r, w in warnings]
        lines.append("")
    lines += [
        "<details><summary>The caviar commands of every case (WORK = the study's folder)</summary>",
        "",
        "```",
    ]
    seen: set[str] = set()
    for r in result.cases:
        for c in r.commands:
            c = c.replace(work, "$WORK")
            if c not in seen:
                seen.add(c)
                lines.append(c)
    lines += ["```", "", "</details>", ""]
    return "\n".join(lines)


def write_document(doc: Path, size_name: str, section: str) -> None:
    """Replace (or append) the generated section of ``size_name`` in ``doc``, atomically."""
    from caviar_napari.io.atomic import atomic_path

    begin = f"<!-- BEGIN GENERATED size={size_name} -->"
    end = f"<!-- END GENERATED size={size_name} -->"
    block = f"{begin}\n{section}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Validation study\n\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text + "\n" + block + "\n"
    )
    with atomic_path(doc) as tmp:
        tmp.write_text(text, encoding="utf-8")


def report_suffix(
    size_name: str,
    temperature_K: float | None = None,
    start_positions: str = "log",
    psc_modes: Sequence[int] = (),
    dose_e_per_A2: float | None = None,
) -> str:
    """Name of a study's section and figures: ``test``, ``cpu-150K``, ``test-psc-modes-1-3``,
    ``cpu-dose-1e+06``."""
    suffix = size_name
    if temperature_K is not None:
        suffix += f"-{temperature_K:g}K"
    if dose_e_per_A2 is not None:
        suffix += f"-dose-{dose_e_per_A2:.0e}"
    if start_positions != "log":
        suffix += f"-{start_positions}"
    modes = tuple(dict.fromkeys(int(m) for m in psc_modes))
    if modes:
        suffix += "-psc-modes-" + "-".join(str(m) for m in modes)
    return suffix


def write_study_report(
    result: StudyResult, doc: Path, images: Path, suffix: str, command: str
) -> list[Path]:
    """Draw the figures into ``images`` and write the tables into ``doc``; returns the files."""
    images.mkdir(parents=True, exist_ok=True)
    arrows_png = images / f"validation-arrows-{suffix}.png"
    green_png = images / f"validation-green-{suffix}.png"
    arrow_figure(result, arrows_png)
    green_figure(result, green_png)
    rel = {
        "arrows": os.path.relpath(arrows_png, doc.parent),
        "green": os.path.relpath(green_png, doc.parent),
    }
    write_document(doc, suffix, generated_section(result, rel, command))
    return [doc, arrows_png, green_png]
