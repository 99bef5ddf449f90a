"""A matplotlib figure that lives in a Qt widget and follows napari's dark theme."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

FOREGROUND = "#d6d8db"
BACKGROUND = "#262930"


class PlotCanvas(QWidget):
    """A ``Figure`` in a ``FigureCanvasQTAgg`` with napari-like colours (no pyplot state).

    Use :attr:`figure` to add axes, call :meth:`style_axes` on each, then :meth:`redraw`.
    """

    def __init__(self, parent: QWidget | None = None, *, height_px: int = 220) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(4, 2.5), facecolor=BACKGROUND, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(height_px)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)

    @staticmethod
    def style_axes(ax) -> None:
        """Colour one axes for a dark background."""
        ax.set_facecolor(BACKGROUND)
        for spine in ax.spines.values():
            spine.set_color(FOREGROUND)
        ax.tick_params(colors=FOREGROUND, which="both")
        ax.xaxis.label.set_color(FOREGROUND)
        ax.yaxis.label.set_color(FOREGROUND)
        ax.title.set_color(FOREGROUND)

    def redraw(self) -> None:
        """Schedule a redraw of the canvas."""
        self.canvas.draw_idle()

    def save(self, path: str) -> None:
        """Save the figure (PNG, SVG, PDF by extension) with its dark background."""
        self.figure.savefig(path, facecolor=self.figure.get_facecolor())
