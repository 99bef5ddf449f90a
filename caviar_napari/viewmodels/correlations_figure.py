"""Matplotlib figures of the Correlations dock (Qt-free): Green's tensor, exported figure.

The exported figure has two panels: the correlation arrows over the current 2D view of the
topmost visible image (atoms coloured by B factor, reference and neighbours ringed) and the
Green's tensor in pm².  Arrow colours are those of the paper (conventions §4).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from caviar_napari.analysis import correlations as corr
from caviar_napari.viewmodels.figures import BACKGROUND, FOREGROUND

#: Arrow colours of the paper (conventions §4), by :data:`corr.ARROW_KINDS`.
ARROW_COLOURS = {
    "self_y": "#ffd400",  # yellow
    "self_x": "#b04dff",  # purple
    "ref_y": "#ff6eb4",  # pink
    "ref_x": "#87cefa",  # light blue
}
ARROW_LEGEND = {
    "self_y": "self, y row: (⟨u_y u_y⟩, ⟨u_y u_x⟩)",
    "self_x": "self, x row: (⟨u_x u_y⟩, ⟨u_x u_x⟩)",
    "ref_y": "with reference, y row: (⟨u_y,ref u_y⟩, ⟨u_y,ref u_x⟩)",
    "ref_x": "with reference, x row: (⟨u_x,ref u_y⟩, ⟨u_x,ref u_x⟩)",
}
REFERENCE_COLOUR = "#ff3030"
NEIGHBOUR_COLOUR = "#3d8bff"
#: pm² per Å².
PM2_PER_A2 = 1e4

#: A 2D image and its matplotlib ``extent`` ``[left, right, bottom, top]`` in Å.
ImageView = tuple[np.ndarray, list[float]]


@dataclass(frozen=True)
class ArrowsPanel:
    """What the arrows panel of the exported figure shows.

    Attributes
    ----------
    positions_A
        ``(N, 2)`` mean positions ``(y, x)``, Å (NaN for excluded atoms).
    b_factor_A2
        ``(N,)`` B factors, Å² (NaN for excluded atoms; those are not drawn).
    arrows
        The arrows (Å world coordinates) as drawn in the viewer.
    reference
        Reference atom index (red ring).
    neighbours
        ``(k,)`` neighbour atom indices (blue rings).
    pad_A
        Margin around the atoms, Å.
    title
        Axes title (mode, frame and scale of the arrows).
    background
        Image under the arrows (None: none).
    alpha
        ``(M,)`` opacity of each arrow (by its significance; 0: not drawn); None: all opaque.
    """

    positions_A: np.ndarray
    b_factor_A2: np.ndarray
    arrows: corr.Arrows
    reference: int
    neighbours: np.ndarray
    pad_A: float
    title: str
    background: ImageView | None = None
    alpha: np.ndarray | None = None


def draw_arrows_panel(ax: Any, panel: ArrowsPanel) -> None:
    """Draw the arrows over the background, atoms coloured by B factor, reference and
    neighbours ringed, with a B-factor colour bar and the arrow legend below."""
    if panel.background is not None:
        data, extent = panel.background
        ax.imshow(data, cmap="gray", extent=extent, origin="upper", interpolation="nearest")
    positions = panel.positions_A
    b = panel.b_factor_A2
    valid = np.isfinite(b)
    sc = ax.scatter(
        positions[valid, 1],
        positions[valid, 0],
        c=b[valid],
        cmap="viridis",
        s=30,
        zorder=2,
    )
    ax.figure.colorbar(sc, ax=ax, shrink=0.7, label="B factor (Å²)")
    arrows = panel.arrows
    alpha = np.ones(arrows.kind.shape) if panel.alpha is None else np.asarray(panel.alpha)
    for code, kind in enumerate(corr.ARROW_KINDS):
        sel = (arrows.kind == code) & (alpha > 0)
        if not sel.any():
            continue
        start, vec = arrows.data[sel, 0], arrows.data[sel, 1]
        colours = np.tile(mpl.colors.to_rgba(ARROW_COLOURS[kind]), (int(sel.sum()), 1))
        colours[:, 3] = alpha[sel]
        ax.quiver(
            start[:, 1],
            start[:, 0],
            vec[:, 1],
            vec[:, 0],
            color=colours,
            angles="xy",
            scale_units="xy",
            scale=1,
            width=0.004,
            zorder=3,
            label=ARROW_LEGEND[kind],
        )
    nbrs = panel.neighbours
    ax.scatter(
        *positions[panel.reference, ::-1], s=250, facecolors="none", edgecolors=REFERENCE_COLOUR
    )
    ax.scatter(
        positions[nbrs, 1],
        positions[nbrs, 0],
        s=250,
        facecolors="none",
        edgecolors=NEIGHBOUR_COLOUR,
    )
    lo, hi = np.nanmin(positions, axis=0), np.nanmax(positions, axis=0)
    pad = panel.pad_A
    ax.set_xlim(lo[1] - pad, hi[1] + pad)
    ax.set_ylim(hi[0] + pad, lo[0] - pad)
    ax.set_aspect("equal")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_title(panel.title, fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=7)


def save_correlations_figure(
    path: str | os.PathLike, panel: ArrowsPanel, green_A2: np.ndarray, *, dpi: int = 200
) -> None:
    """Save the two-panel figure: arrows (left) and the Green's tensor (right).

    Parameters
    ----------
    path
        Output file; the format follows the extension (PNG, SVG, PDF).
    panel
        Content of the arrows panel.
    green_A2
        ``(2N, 2N)`` Green's tensor, Å².
    dpi
        Resolution of raster output.
    """
    fig = Figure(figsize=(11, 5), layout="constrained")
    ax_arrows, ax_matrix = fig.subplots(1, 2, width_ratios=[1.2, 1])
    draw_arrows_panel(ax_arrows, panel)
    draw_green_matrix(fig, ax_matrix, green_A2, panel.reference)
    fig.savefig(path, dpi=dpi)


def draw_green_matrix(
    fig: Figure, ax: Any, green_A2: np.ndarray, reference: int | None = None, *, dark=False
) -> None:
    """Draw a Green's tensor as an image in pm², dof ordering labelled, reference outlined.

    Parameters
    ----------
    fig, ax
        Matplotlib figure and axes to draw into.
    green_A2
        ``(2N, 2N)`` tensor, Å² (NaN rows of excluded atoms shown grey).
    reference
        Atom whose rows/columns are outlined.
    dark
        Colours for napari's dark theme.
    """
    g = np.asarray(green_A2) * PM2_PER_A2
    n = g.shape[0] // 2
    vmax = float(np.nanmax(np.abs(g))) if np.isfinite(g).any() else 1.0
    cmap = mpl.colormaps["RdBu_r"].with_extremes(bad="#808080")
    im = ax.imshow(
        np.ma.masked_invalid(g), cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest"
    )
    fg = FOREGROUND if dark else "black"
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.set_label("G (pm²)", color=fg)
    cb.ax.tick_params(colors=fg)
    if n <= 8:
        ticks = np.arange(2 * n)
        labels = [f"{i}{'yx'[a]}" for i in range(n) for a in range(2)]
    else:
        step = int(np.ceil(n / 8))
        ticks = 2 * np.arange(0, n, step)
        labels = [str(i) for i in range(0, n, step)]
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlabel("atom j (dof 2j + a; a = 0 y, 1 x)")
    ax.set_ylabel("atom i (dof 2i + a)")
    ax.set_title("Green's tensor G (lab frame)", fontsize=9)
    if reference is not None and 0 <= reference < n:
        outline = "white" if dark else "black"
        for xy, w, h in (
            ((-0.5, 2 * reference - 0.5), 2 * n, 2),
            ((2 * reference - 0.5, -0.5), 2, 2 * n),
        ):
            ax.add_patch(Rectangle(xy, w, h, fill=False, edgecolor=outline, lw=0.8))
    if dark:
        fig.set_facecolor(BACKGROUND)
