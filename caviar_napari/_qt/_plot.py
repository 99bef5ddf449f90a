"""Shows a matplotlib figure rendered off the GUI thread
(:func:`caviar_napari.viewmodels.figures.render`).

The main thread only paints the pixels (one ``QImage`` blit); the docks render the figure in a
worker at the size :meth:`FigureView.render_size` reports, and again (debounced) when the view is
resized.
"""

from __future__ import annotations

from typing import Any

from matplotlib import colormaps
from qtpy.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from qtpy.QtGui import QColor, QImage, QLinearGradient, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

from caviar_napari.viewmodels.figures import BACKGROUND, FOREGROUND, FigureSize, RenderedFigure

#: Wait after the last resize before asking for a new rendering, ms.
RESIZE_DEBOUNCE_MS = 250


class FigureView(QWidget):
    """A rendered figure, drawn to fit the widget.

    Signals
    -------
    resized
        The widget kept a new size for :data:`RESIZE_DEBOUNCE_MS`: render again at
        :meth:`render_size`.

    Parameters
    ----------
    parent
        Parent widget.
    height_px
        Minimum height.
    """

    resized = Signal()

    def __init__(self, parent: QWidget | None = None, *, height_px: int = 220) -> None:
        super().__init__(parent)
        self.setMinimumHeight(height_px)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.rendered: RenderedFigure | None = None
        self._image: QImage | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(RESIZE_DEBOUNCE_MS)
        self._timer.timeout.connect(self._maybe_resized)

    @property
    def figure(self) -> Any:
        """The matplotlib figure shown (None before the first)."""
        return None if self.rendered is None else self.rendered.figure

    def render_size(self) -> FigureSize:
        """The size a figure should be rendered at for this widget now."""
        ratio = float(self.devicePixelRatioF()) if hasattr(self, "devicePixelRatioF") else 1.0
        width = self.width() if self.isVisible() else max(self.width(), 360)
        height = max(self.height(), self.minimumHeight())
        return FigureSize(int(width), int(height), ratio)

    def show_figure(self, rendered: RenderedFigure) -> None:
        """Show ``rendered`` (a pixel copy is kept; the paint is a blit)."""
        self.rendered = rendered
        rgba = rendered.rgba
        h, w = rgba.shape[:2]
        image = QImage(rgba.data, w, h, 4 * w, QImage.Format_RGBA8888).copy()
        image.setDevicePixelRatio(rendered.pixel_ratio)
        self._image = image
        self.update()

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(BACKGROUND))
        if self._image is not None:
            painter.drawImage(0, 0, self._image)  # device pixel ratio set on the image
        painter.end()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._timer.start()

    def _maybe_resized(self) -> None:
        if self.rendered is None:
            self.resized.emit()
            return
        size = self.render_size()
        rgba = self.rendered.rgba
        ratio = self.rendered.pixel_ratio
        if (round(rgba.shape[1] / ratio), round(rgba.shape[0] / ratio)) != (
            size.width_px,
            size.height_px,
        ):
            self.resized.emit()


class ColourBar(QWidget):
    """A horizontal colour bar painted with ``QPainter`` (no matplotlib on the GUI thread).

    Parameters
    ----------
    colormap
        Name of a matplotlib colormap.
    parent
        Parent widget.
    """

    def __init__(self, colormap: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        cmap = colormaps[colormap]
        self._stops = [(t, QColor.fromRgbF(*cmap(t))) for t in (i / 15 for i in range(16))]
        self.limits: tuple[float, float] | None = None
        self.label = ""
        self.setFixedHeight(46)

    def set_limits(self, limits: tuple[float, float] | None, label: str) -> None:
        """Show ``limits`` (None: an unlabelled bar) and the ``label`` below."""
        self.limits = limits
        self.label = label
        self.update()

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(BACKGROUND))
        metrics = painter.fontMetrics()
        bar = QRectF(8, 2, self.width() - 16, 12)
        gradient = QLinearGradient(bar.topLeft(), bar.topRight())
        for t, colour in self._stops:
            gradient.setColorAt(t, colour)
        painter.fillRect(bar, gradient)
        painter.setPen(QPen(QColor(FOREGROUND), 1))
        painter.drawRect(bar)
        if self.limits is not None:
            lo, hi = self.limits
            for k in range(5):
                x = bar.left() + bar.width() * k / 4
                text = f"{lo + (hi - lo) * k / 4:.3g}"
                w = metrics.horizontalAdvance(text)
                painter.drawLine(QPointF(x, bar.bottom()), QPointF(x, bar.bottom() + 3))
                tx = min(max(x - w / 2, 0.0), self.width() - w)
                painter.drawText(QPointF(tx, bar.bottom() + 3 + metrics.ascent()), text)
        painter.drawText(
            QRectF(0, self.height() - metrics.height(), self.width(), metrics.height()),
            Qt.AlignHCenter,
            self.label,
        )
        painter.end()


class ProgressStrip(QWidget):
    """A thin progress bar with a caption, repainted with the rest of the window.

    ``QProgressBar.setValue`` repaints synchronously (a whole-window composite on displays
    without hardware OpenGL); this strip only schedules its repaint, so it joins the status
    line's in one event-loop turn.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._value = 0
        self._maximum = 1
        self._started = False  # no caption before the first run
        self.setFixedHeight(14)

    def value(self) -> int:
        """The value shown."""
        return self._value

    def maximum(self) -> int:
        """The value of a full bar."""
        return self._maximum

    def set_range(self, maximum: int) -> None:
        """Full bar at ``maximum`` (at least 1); the value goes to 0."""
        self._maximum = max(int(maximum), 1)
        self._value = 0
        self._started = True
        self.update()

    def caption(self) -> str:
        """The text on the bar: ``"k / n iterations"``, or "no run yet"."""
        return f"{self._value} / {self._maximum} iterations" if self._started else "no run yet"

    def set_value(self, value: int) -> None:
        """Show ``value`` (clipped to the range)."""
        value = min(max(int(value), 0), self._maximum)
        if value != self._value:
            self._value = value
            self.update()

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.fillRect(rect, QColor(BACKGROUND))
        done = QRectF(rect)
        done.setWidth(rect.width() * self._value / self._maximum)
        painter.fillRect(done, QColor("#3c6e8f"))
        painter.setPen(QPen(QColor(FOREGROUND), 1))
        painter.drawRect(rect)
        painter.drawText(rect, Qt.AlignCenter, self.caption())
        painter.end()
