"""Matplotlib figures rendered to pixels off the GUI thread (Qt-free).

A dock's plot is a :class:`matplotlib.figure.Figure` drawn by the Agg renderer inside a worker
(:func:`render`); the dock shows the pixels.  Matplotlib supports this: each figure is used by
one thread at a time and its font cache is per thread.  The figure itself is kept for export
(``savefig``) and for tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Colours of napari's dark theme.
FOREGROUND = "#d6d8db"
BACKGROUND = "#262930"
#: Resolution of the rendered figures (screen pixels per inch).
SCREEN_DPI = 100.0


@dataclass(frozen=True)
class FigureSize:
    """Size of the area a figure is rendered for.

    Attributes
    ----------
    width_px, height_px
        Logical pixels.
    pixel_ratio
        Device pixels per logical pixel (2 on a high-DPI screen).
    """

    width_px: int = 400
    height_px: int = 300
    pixel_ratio: float = 1.0


@dataclass(frozen=True)
class RenderedFigure:
    """A figure and its pixels.

    Attributes
    ----------
    figure
        The matplotlib figure (for ``savefig`` and inspection).
    rgba
        ``(height, width, 4)`` uint8 device pixels.
    pixel_ratio
        Device pixels per logical pixel of :attr:`rgba`.
    """

    figure: Figure
    rgba: np.ndarray
    pixel_ratio: float = 1.0


def dark_figure(size: FigureSize, *, constrained: bool = True) -> Figure:
    """A new figure of ``size`` on napari's dark background (no pyplot state)."""
    return Figure(
        figsize=(max(size.width_px, 50) / SCREEN_DPI, max(size.height_px, 50) / SCREEN_DPI),
        dpi=SCREEN_DPI,
        facecolor=BACKGROUND,
        layout="constrained" if constrained else None,
    )


def style_axes(ax: Any) -> None:
    """Colour one axes for the dark background."""
    ax.set_facecolor(BACKGROUND)
    for spine in ax.spines.values():
        spine.set_color(FOREGROUND)
    ax.tick_params(colors=FOREGROUND, which="both")
    ax.xaxis.label.set_color(FOREGROUND)
    ax.yaxis.label.set_color(FOREGROUND)
    ax.title.set_color(FOREGROUND)


def style_figure(figure: Figure) -> None:
    """Colour every axes of a figure drawn for a light background, and its legends, for the
    dark background (:func:`style_axes`; legend frames dark, their texts light)."""
    for ax in figure.axes:
        style_axes(ax)
        legend = ax.get_legend()
        if legend is not None:
            legend.get_frame().set_facecolor(BACKGROUND)
            legend.get_frame().set_edgecolor(FOREGROUND)
            for text in legend.get_texts():
                text.set_color(FOREGROUND)


def message_figure(size: FigureSize, text: str) -> RenderedFigure:
    """A figure of ``size`` that only says ``text`` (before a result, or when there is none)."""
    fig = dark_figure(size)
    fig.text(0.5, 0.5, text, ha="center", va="center", color=FOREGROUND, wrap=True)
    return render(fig, size)


def render(figure: Figure, size: FigureSize) -> RenderedFigure:
    """Draw ``figure`` with Agg at ``size`` (device pixels) and return its pixels."""
    ratio = max(float(size.pixel_ratio), 1.0)
    figure.set_dpi(SCREEN_DPI * ratio)
    figure.set_size_inches(
        max(size.width_px, 50) / SCREEN_DPI, max(size.height_px, 50) / SCREEN_DPI
    )
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgba = np.array(canvas.buffer_rgba(), dtype=np.uint8, copy=True)
    figure.set_dpi(SCREEN_DPI)
    return RenderedFigure(figure=figure, rgba=rgba, pixel_ratio=ratio)
