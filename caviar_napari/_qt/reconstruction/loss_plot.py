"""Loss-versus-iteration plot of a running reconstruction, with stage boundaries (log y).

Painted directly with ``QPainter`` from the view-model's
:class:`~caviar_napari.viewmodels.reconstruction.LossHistory`: a repaint costs about a
millisecond (a matplotlib redraw of the same plot costs tens of ms of the main thread, which
would stall napari during a run).  The ticks come from the view-model
(:func:`~caviar_napari.viewmodels.reconstruction.log_ticks`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from caviar_napari.viewmodels.figures import BACKGROUND, FOREGROUND
from caviar_napari.viewmodels.reconstruction import LossHistory, linear_ticks, log_ticks

LINE_COLOUR = "#4fc3f7"
BOUNDARY_COLOUR = "#ffb74d"
GRID_COLOUR = "#3b3f47"
#: Plot margins in pixels: left (tick labels + y label), right, bottom, top.
MARGINS_PX = (62, 10, 34, 8)


class LossPlot(QWidget):
    """Loss (log scale) against global iteration, with one dashed line per stage start.

    Parameters
    ----------
    history
        The losses to show (shared with the live display, which appends to it).
    parent
        Parent widget.
    """

    def __init__(self, history: LossHistory, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setToolTip("Loss (log scale) per iteration; dashed lines: stage starts.")

    # ------------------------------------------------------------------ data
    @property
    def iterations(self) -> np.ndarray:
        """Global iteration numbers plotted, shape ``(n,)``."""
        return self.history.iterations.copy()

    @property
    def losses(self) -> np.ndarray:
        """Loss values plotted, shape ``(n,)``."""
        return self.history.losses.copy()

    @property
    def stage_starts(self) -> list[tuple[int, str]]:
        """``(first iteration, stage name)`` of every stage seen."""
        return list(self.history.stage_starts)

    def clear(self) -> None:
        """Forget the history and show an empty plot."""
        self.history.clear()
        self.update()

    def set_history(self, losses: np.ndarray, stage_starts: list[tuple[int, str]]) -> None:
        """Replace the history by ``losses`` (iterations ``1..n``) and the given stage starts."""
        self.history.set(losses, stage_starts)
        self.update()

    def y_range(self) -> tuple[float, float] | None:
        """The log axis range ``(lo, hi)`` shown (None with no positive finite loss)."""
        losses = self.history.losses
        positive = losses[np.isfinite(losses) & (losses > 0)]
        if positive.size == 0:
            return None
        lo, hi = float(positive.min()), float(positive.max())
        pad = (hi / lo) ** 0.08 if hi > lo else 2.0
        return lo / pad, hi * pad

    # ------------------------------------------------------------------ painting
    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), QColor(BACKGROUND))
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() - 1.5, 6.0))
        painter.setFont(font)
        left, right, bottom, top = MARGINS_PX
        area = QRectF(left, top, self.width() - left - right, self.height() - top - bottom)
        if area.width() < 20 or area.height() < 20:
            painter.end()
            return
        its, losses = self.history.iterations, self.history.losses
        x_hi = max(float(its[-1]) + 0.5, 2.0) if its.size else 10.0
        y_range = self.y_range() or (1e-3, 1.0)
        ly0, ly1 = math.log10(y_range[0]), math.log10(y_range[1])

        def px(x: float) -> float:
            return area.left() + area.width() * x / x_hi

        def py(y: float) -> float:
            return area.bottom() - area.height() * (math.log10(y) - ly0) / (ly1 - ly0)

        fg = QColor(FOREGROUND)
        metrics = painter.fontMetrics()
        painter.setPen(QPen(QColor(GRID_COLOUR), 1))
        for value, _ in log_ticks(*y_range):
            painter.drawLine(QPointF(area.left(), py(value)), QPointF(area.right(), py(value)))
        painter.setPen(QPen(fg, 1))
        painter.drawRect(area)
        for value, label in log_ticks(*y_range):
            y = py(value)
            painter.drawLine(QPointF(area.left() - 4, y), QPointF(area.left(), y))
            w = metrics.horizontalAdvance(label)
            painter.drawText(QPointF(area.left() - 6 - w, y + metrics.ascent() / 2 - 1), label)
        for value in linear_ticks(0.0, x_hi):
            x = px(value)
            painter.drawLine(QPointF(x, area.bottom()), QPointF(x, area.bottom() + 4))
            label = str(value)
            w = metrics.horizontalAdvance(label)
            painter.drawText(QPointF(x - w / 2, area.bottom() + 5 + metrics.ascent()), label)
        painter.drawText(
            QRectF(
                area.left(), self.height() - metrics.height() - 1, area.width(), metrics.height()
            ),
            Qt.AlignHCenter,
            "iteration",
        )
        painter.save()
        painter.translate(metrics.height() * 0.2, area.center().y())
        painter.rotate(-90)
        painter.drawText(QRectF(-40, 0, 80, metrics.height()), Qt.AlignHCenter, "loss")
        painter.restore()

        ok = np.isfinite(losses) & (losses > 0)
        if not ok.any():
            painter.drawText(area, Qt.AlignCenter, "no iterations yet")
        else:
            xs, ys = its[ok].astype(float), losses[ok]
            step = max(1, xs.size // max(int(2 * area.width()), 1))
            if step > 1:  # at most two points per pixel column, the last one kept
                keep = np.r_[np.arange(0, xs.size - 1, step), xs.size - 1]
                xs, ys = xs[keep], ys[keep]
            sx = area.left() + area.width() * xs / x_hi
            sy = area.bottom() - area.height() * (np.log10(ys) - ly0) / (ly1 - ly0)
            painter.setPen(QPen(QColor(LINE_COLOUR), 1.4))
            painter.drawPolyline(QPolygonF([QPointF(a, b) for a, b in zip(sx, sy)]))
        for k, (start, name) in enumerate(self.history.stage_starts):
            x = px(start - 0.5) if k > 0 else area.left() + 2
            if k > 0:
                pen = QPen(QColor(BOUNDARY_COLOUR), 1, Qt.DashLine)
                painter.setPen(pen)
                painter.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
            painter.setPen(QColor(BOUNDARY_COLOUR if k > 0 else FOREGROUND))
            painter.drawText(QPointF(x + 3, area.top() + metrics.ascent() + 1), name)
        painter.end()
