"""Depth ranges of the Atoms dock (Qt-free): the z-ranges a user defines, and the side view of
the phase that helps choosing them (issue 16).

A z-range is a label and the slices ``start:stop`` of the reconstruction (conventions §3,
:class:`~caviar_napari.data.atoms.ZRange`); the atoms of each are found by
:func:`caviar_napari.viewmodels.atoms.ranges_job`.  The side view is the phase (mean over
states) along a line of constant ``y``, against ``x`` and the depth ``z`` below the entrance
surface, beside the rms phase of every slice: the slices that hold atoms stand out.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from caviar_napari.analysis import atoms as am
from caviar_napari.analysis.depth import zrange_from_spec
from caviar_napari.data.atoms import ZRange
from caviar_napari.errors import InputError
from caviar_napari.viewmodels.figures import (
    FOREGROUND,
    FigureSize,
    RenderedFigure,
    dark_figure,
    render,
    style_axes,
)

__all__ = [
    "ALL_SLICES",
    "RangeChoice",
    "SideView",
    "SideViewRequest",
    "new_range",
    "side_view",
    "side_view_figure",
    "side_view_job",
]

#: Label of the entry that stands for every slice (no z-range).
ALL_SLICES = ""
#: Colours of the z-ranges in the side view, in the order they were defined.
RANGE_COLOURS = ("#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176")
#: Half-width of the band of rows the side view averages, Å.
SIDE_BAND_A = 0.25


@dataclass(frozen=True)
class RangeChoice:
    """A labelled depth range as the dock holds it.

    Attributes
    ----------
    label
        Name of the range (unique, not empty, no ``/``).
    start, stop
        Slices ``start … stop − 1`` of the reconstruction.
    """

    label: str
    start: int
    stop: int

    @property
    def spec(self) -> str:
        """``"A:B"``, the text ``caviar atoms --zrange LABEL=A:B`` takes."""
        return f"{self.start}:{self.stop}"

    def zrange(self, slice_thickness_A: Any) -> ZRange:
        """The :class:`ZRange` of this range in a reconstruction of these slice thicknesses."""
        return zrange_from_spec(self.spec, slice_thickness_A, self.label)

    def text(self, slice_thickness_A: Any | None = None) -> str:
        """``label: slices A:B`` and, with the thicknesses, its depths."""
        text = f"{self.label}: slices {self.spec}"
        if slice_thickness_A is not None:
            top, bottom = self.zrange(slice_thickness_A).z_extent_A
            text += f" (z = {top:.1f} … {bottom:.1f} Å)"
        return text


def new_range(
    label: str, start: int, stop: int, n_slices: int, existing: Sequence[RangeChoice]
) -> RangeChoice:
    """A range the user adds, checked (``InputError`` naming what is wrong).

    Parameters
    ----------
    label
        Its name (blank: ``range <n>``).
    start, stop
        Slices ``start:stop``.
    n_slices
        Slices of the reconstruction.
    existing
        The ranges defined so far (labels must differ).
    """
    label = str(label).strip() or f"range {len(existing) + 1}"
    if "/" in label:
        raise InputError(f"z-range label {label!r}: no '/' please (it names an HDF5 group)")
    if any(r.label == label for r in existing):
        raise InputError(f"a z-range named {label!r} exists already: choose another label")
    start, stop = int(start), int(stop)
    if not 0 <= start < stop <= n_slices:
        raise InputError(f"z-range {label!r}: slices {start}:{stop} are not within 0:{n_slices}")
    return RangeChoice(label, start, stop)


def slice_thicknesses(state: Any, n_slices: int) -> np.ndarray | None:
    """The slice thicknesses (Å) of a reconstruction state with ``n_slices`` slices (None when
    there is no state or it has another number of slices)."""
    dz = getattr(state, "slice_thickness_A", None)
    if dz is None:
        return None
    dz = np.atleast_1d(np.asarray(dz, dtype=float))
    return dz if dz.size == n_slices else None


# ==================================================================================== side view
@dataclass(frozen=True)
class SideView:
    """The phase in the x–z plane along a line of constant y.

    Attributes
    ----------
    phase
        ``(slice, x)`` phase, rad: mean over states and over the rows within ``band_A`` of the
        line.
    x_edges_A
        ``(x + 1,)`` pixel edges along x, Å.
    z_edges_A
        ``(slice + 1,)`` slice edges below the entrance surface, Å (slice numbers when the
        thicknesses are unknown).
    rms_mrad
        ``(slice,)`` rms phase of each slice (mean over states, mean removed) over the area,
        mrad: where the atoms are.
    y_A, band_A
        The line and the half-width of the band of rows averaged, Å.
    depth_known
        Whether ``z_edges_A`` are depths (else slice numbers).
    """

    phase: np.ndarray
    x_edges_A: np.ndarray
    z_edges_A: np.ndarray
    rms_mrad: np.ndarray
    y_A: float
    band_A: float
    depth_known: bool


def side_view(
    phase: np.ndarray,
    pixel_size_A: tuple[float, float],
    origin_A: tuple[float, float],
    y_A: float,
    *,
    slice_thickness_A: Any | None = None,
    band_A: float = SIDE_BAND_A,
    x_range_A: tuple[float, float] | None = None,
) -> SideView:
    """The x–z side view of a phase ``(state, slice, y, x)`` along the line ``y = y_A``.

    Parameters
    ----------
    phase
        ``(state, slice, y, x)`` phase, rad.
    pixel_size_A, origin_A
        ``(dy, dx)`` and the position of pixel ``[0, 0]``, Å.
    y_A
        The line; clipped to the image.
    slice_thickness_A
        ``(slice,)`` thicknesses, Å; None: the z axis counts slices.
    band_A
        Rows within this distance of the line are averaged (at least the nearest row).
    x_range_A
        ``(x_min, x_max)`` shown, Å (None: the whole width); the rms per slice is taken there
        too.
    """
    stack = am.as_phase_stack(np.asarray(phase), name="phase")
    mean = stack.mean(axis=0)  # (slice, y, x)
    n_slices, height, width = mean.shape
    dy, dx = (float(v) for v in pixel_size_A)
    y0, x0 = (float(v) for v in origin_A)
    rows_A = y0 + dy * np.arange(height)
    y = float(np.clip(y_A, rows_A[0], rows_A[-1]))
    near = np.abs(rows_A - y) <= max(float(band_A), 0.5 * dy)
    cols = np.arange(width)
    if x_range_A is not None:
        x_A = x0 + dx * cols
        inside = (x_A >= min(x_range_A)) & (x_A <= max(x_range_A))
        cols = cols[inside] if inside.any() else cols
    cut = mean[:, near][:, :, cols].mean(axis=1)
    x_edges = x0 + dx * (np.arange(cols[0], cols[-1] + 2) - 0.5)
    area = mean[:, :, cols]
    area = area - area.mean(axis=(1, 2), keepdims=True)
    rms = 1e3 * np.sqrt(np.mean(area**2, axis=(1, 2)))
    if slice_thickness_A is None:
        z_edges = np.arange(n_slices + 1, dtype=float)
    else:
        dz = np.atleast_1d(np.asarray(slice_thickness_A, dtype=float))
        if dz.size != n_slices:
            raise InputError(f"{dz.size} slice thicknesses for a phase of {n_slices} slices")
        z_edges = np.concatenate([[0.0], np.cumsum(dz)])
    return SideView(
        phase=cut,
        x_edges_A=x_edges,
        z_edges_A=z_edges,
        rms_mrad=rms,
        y_A=y,
        band_A=float(band_A),
        depth_known=slice_thickness_A is not None,
    )


def side_view_figure(
    view: SideView, ranges: Sequence[RangeChoice], active: str, size: FigureSize
) -> Any:
    """The side view as a figure: the x–z phase map (depth downwards) with the z-ranges marked
    on it, and the rms phase of each slice beside it.

    Parameters
    ----------
    view
        From :func:`side_view`.
    ranges
        The z-ranges, drawn as brackets and lines at their slice edges (``active`` bold).
    active
        Label of the active range (:data:`ALL_SLICES`: none).
    size
        The size the figure is made for.
    """
    fig = dark_figure(size)
    grid = fig.add_gridspec(1, 2, width_ratios=(3, 1))
    ax = fig.add_subplot(grid[0, 0])
    prof = fig.add_subplot(grid[0, 1], sharey=ax)
    for a in (ax, prof):
        style_axes(a)
    limit = float(np.max(np.abs(view.phase))) or 1.0
    ax.pcolormesh(
        view.x_edges_A,
        view.z_edges_A,
        view.phase,
        cmap="gray",
        vmin=-limit if view.phase.min() < 0 else 0.0,
        vmax=limit,
        shading="flat",
    )
    centres = 0.5 * (view.z_edges_A[:-1] + view.z_edges_A[1:])
    prof.plot(view.rms_mrad, centres, "o-", color=FOREGROUND, markersize=3, linewidth=1)
    prof.set_xlim(0, 1.15 * max(float(view.rms_mrad.max()), 1e-9))
    ax.set_ylim(view.z_edges_A[-1], view.z_edges_A[0])  # depth downwards
    unit = "z (Å)" if view.depth_known else "slice"
    ax.set_ylabel(unit)
    ax.set_xlabel("x (Å)")
    prof.set_xlabel("rms, mrad", fontsize=8)
    prof.tick_params(labelleft=False)
    ax.set_title(
        f"x–z at y = {view.y_A:.2f} Å (± {view.band_A:.2f} Å), mean over states",
        fontsize=9,
    )
    for i, r in enumerate(ranges):
        colour = RANGE_COLOURS[i % len(RANGE_COLOURS)]
        top, bottom = view.z_edges_A[r.start], view.z_edges_A[r.stop]
        bold = r.label == active
        for a in (ax, prof):
            a.axhspan(top, bottom, color=colour, alpha=0.12 if bold else 0.05, linewidth=0)
            for z in (top, bottom):
                a.axhline(z, color=colour, linewidth=1.6 if bold else 0.8)
        prof.text(
            0.97,
            0.5 * (top + bottom),
            r.label,
            color=colour,
            fontsize=8,
            fontweight="bold" if bold else "normal",
            ha="right",
            va="center",
            transform=prof.get_yaxis_transform(),
        )
    return fig


@dataclass(frozen=True)
class SideViewRequest:
    """What :func:`side_view_job` draws: the phase and the line, the ranges, the size.

    Attributes
    ----------
    phase
        ``(state, slice, y, x)`` phase, rad.
    pixel_size_A, origin_A
        Its pixel and the position of pixel ``[0, 0]``, Å.
    y_A
        The line.
    slice_thickness_A
        Slice thicknesses, Å (None: unknown).
    x_range_A
        The x interval shown (None: all).
    ranges, active
        The z-ranges and the active one's label.
    size
        The figure's size.
    """

    phase: np.ndarray
    pixel_size_A: tuple[float, float]
    origin_A: tuple[float, float]
    y_A: float
    slice_thickness_A: np.ndarray | None
    x_range_A: tuple[float, float] | None
    ranges: tuple[RangeChoice, ...]
    active: str
    size: FigureSize


def side_view_job(request: SideViewRequest) -> Generator[None, None, RenderedFigure]:
    """Worker: the side view of ``request`` (:func:`side_view`), drawn and rendered."""
    yield None
    view = side_view(
        request.phase,
        request.pixel_size_A,
        request.origin_A,
        request.y_A,
        slice_thickness_A=request.slice_thickness_A,
        x_range_A=request.x_range_A,
    )
    figure = side_view_figure(view, request.ranges, request.active, request.size)
    return render(figure, request.size)
