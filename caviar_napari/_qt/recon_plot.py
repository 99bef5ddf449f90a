"""Loss-versus-iteration plot of a running reconstruction, with stage boundaries (log y).

The plot keeps the loss history in growing numpy buffers and redraws at most every
``redraw_interval_ms`` (a single-shot ``QTimer`` coalesces requests), so that a fast
reconstruction yielding many iterations per second does not stall napari's event loop.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

from caviar_napari._qt._plot import FOREGROUND, PlotCanvas

LINE_COLOUR = "#4fc3f7"
BOUNDARY_COLOUR = "#ffb74d"


class LossPlot(PlotCanvas):
    """Loss (log scale) against global iteration, with one dashed line per stage start.

    Parameters
    ----------
    parent
        Parent widget.
    redraw_interval_ms
        Shortest time between two redraws, in ms.
    """

    def __init__(self, parent: QWidget | None = None, *, redraw_interval_ms: int = 250) -> None:
        super().__init__(parent, height_px=170)
        # fixed pixel margins instead of constrained layout, which would triple every redraw
        self.figure.set_layout_engine(None)
        self.canvas.mpl_connect("resize_event", lambda _event: self._apply_margins())
        self.ax = self.figure.add_subplot(1, 1, 1)
        self.style_axes(self.ax)
        self.ax.set_xlabel("iteration", fontsize=9)
        self.ax.set_ylabel("loss", fontsize=9)
        self.ax.set_yscale("log")
        # plain-text tick labels (1, 2, 5 per decade): matplotlib's default log labels are
        # mathtext, whose layout costs far more main-thread time per redraw
        self.ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
        self.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.3g}"))
        self.ax.yaxis.set_minor_formatter(NullFormatter())
        self.ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        self.ax.tick_params(labelsize=8)
        self._apply_margins()
        self.ax.grid(True, which="major", color="#3b3f47", linewidth=0.6)
        (self._line,) = self.ax.plot([], [], color=LINE_COLOUR, linewidth=1.4)
        self._boundary_artists: list = []
        self._iterations = np.empty(0, dtype=np.int64)
        self._losses = np.empty(0, dtype=np.float64)
        self._count = 0
        self._dirty = False
        self._stages: list[tuple[int, str]] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(redraw_interval_ms))
        self._timer.timeout.connect(self._draw_now)
        self._empty_text = self.ax.text(
            0.5,
            0.5,
            "no iterations yet",
            transform=self.ax.transAxes,
            ha="center",
            va="center",
            color=FOREGROUND,
            fontsize=9,
        )
        self.ax.set_xlim(0, 10)
        self.ax.set_ylim(1e-3, 1)

    #: Figure margins in pixels: left (tick labels + y label), right, bottom, top.
    MARGINS_PX = (70, 12, 48, 10)

    def _apply_margins(self) -> None:
        width, height = self.figure.get_size_inches() * self.figure.dpi
        left, right, bottom, top = self.MARGINS_PX
        if width <= left + right + 10 or height <= bottom + top + 10:
            return
        self.figure.subplots_adjust(
            left=left / width,
            right=1 - right / width,
            bottom=bottom / height,
            top=1 - top / height,
        )

    # ------------------------------------------------------------------ data
    @property
    def iterations(self) -> np.ndarray:
        """Global iteration numbers plotted so far, shape ``(n,)``."""
        return self._iterations[: self._count].copy()

    @property
    def losses(self) -> np.ndarray:
        """Loss values plotted so far, shape ``(n,)``."""
        return self._losses[: self._count].copy()

    @property
    def stage_starts(self) -> list[tuple[int, str]]:
        """``(first iteration, stage name)`` of every stage seen so far."""
        return list(self._stages)

    def clear(self) -> None:
        """Forget the history and the stage boundaries and redraw an empty plot."""
        self._count = 0
        self._stages = []
        self._draw_now(sync=True)

    def set_history(self, losses: np.ndarray, stage_starts: list[tuple[int, str]]) -> None:
        """Replace the history by ``losses`` (iterations ``1..n``) and the given stage starts."""
        losses = np.asarray(losses, dtype=np.float64).ravel()
        self._iterations = np.arange(1, losses.size + 1, dtype=np.int64)
        self._losses = losses.copy()
        self._count = losses.size
        self._stages = list(stage_starts)
        self._dirty = True
        self.request_redraw()

    def append(self, iteration: int, loss: float, stage_name: str, *, redraw: bool = True) -> None:
        """Add one point; a new ``stage_name`` starts a stage boundary at ``iteration``.

        ``redraw=False`` leaves the drawing to the caller (:meth:`flush`), e.g. a display timer
        that repaints everything in one event-loop turn.
        """
        if not self._stages or self._stages[-1][1] != stage_name:
            self._stages.append((int(iteration), str(stage_name)))
        if self._count == self._iterations.size:
            size = max(64, 2 * self._count)
            self._iterations = np.resize(self._iterations, size)
            self._losses = np.resize(self._losses, size)
        self._iterations[self._count] = iteration
        self._losses[self._count] = loss
        self._count += 1
        self._dirty = True
        if redraw:
            self.request_redraw()

    # --------------------------------------------------------------- drawing
    def request_redraw(self) -> None:
        """Redraw soon (coalesced: at most one redraw per interval)."""
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Redraw now, synchronously, if anything changed since the last drawing.

        The Agg rendering happens here and the widget repaint joins the other repaints of the
        current event-loop turn (cheaper than a separate ``draw_idle`` repaint).
        """
        self._timer.stop()
        if self._dirty:
            self._draw_now(sync=True)

    def _draw_now(self, sync: bool = False) -> None:
        self._dirty = False
        its = self._iterations[: self._count]
        losses = self._losses[: self._count]
        positive = np.isfinite(losses) & (losses > 0)
        self._line.set_data(its[positive], losses[positive])
        for artist in self._boundary_artists:
            artist.remove()
        self._boundary_artists = []
        for k, (start, name) in enumerate(self._stages):
            if k > 0:
                self._boundary_artists.append(
                    self.ax.axvline(start - 0.5, color=BOUNDARY_COLOUR, linestyle="--", lw=1.0)
                )
            self._boundary_artists.append(
                self.ax.text(
                    start - 0.5 if k > 0 else 0.5,
                    0.98,
                    f" {name}",
                    transform=self.ax.get_xaxis_transform(),
                    va="top",
                    ha="left",
                    fontsize=8,
                    color=BOUNDARY_COLOUR if k > 0 else FOREGROUND,
                )
            )
        self._empty_text.set_visible(not positive.any())
        if positive.any():
            lo, hi = losses[positive].min(), losses[positive].max()
            pad = (hi / lo) ** 0.08 if hi > lo else 2.0
            self.ax.set_ylim(lo / pad, hi * pad)
            self.ax.set_xlim(0, max(float(its[-1]) + 0.5, 2.0))
        if sync:
            self.canvas.draw()
        else:
            self.redraw()
