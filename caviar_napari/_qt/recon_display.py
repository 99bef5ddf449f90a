"""Live display of a running reconstruction: status line, loss plot, layers, progress bar.

The worker's yield slot (:meth:`LiveDisplay.on_update`) only records the newest update; a timer
(:meth:`LiveDisplay.refresh`) shows it, so the main thread's work per period is bounded however
fast the reconstruction iterates, and every change lands in one event-loop turn (one window
repaint). New images are requested from the worker (``images_wanted``) only after the previous
ones were shown and a short rest, so layer updates take a bounded share of the main thread.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from napari.utils import progress
from qtpy.QtCore import QObject, QTimer
from qtpy.QtWidgets import QCheckBox, QLabel

from caviar_napari._napari.reconstruction_layers import (
    SOURCE_KEY,
    STATE_KEY,
    ReconImages,
    layer_tuples,
)
from caviar_napari._qt.recon_layers import apply_layer_tuples
from caviar_napari._qt.recon_plot import LossPlot
from caviar_napari._qt.recon_run import RunResult, RunUpdate

#: Prefix of the layers of a run.
RUN_LAYER_NAME = "reconstruction"
#: Period of the display refresh during a run (status, loss plot, layers, progress bar), ms.
#: Everything changes in one event-loop turn, so Qt repaints the window once per period (a
#: window holding napari's OpenGL canvas is composited as a whole on every repaint).
DISPLAY_INTERVAL_MS = 250
#: Rest after a live layer update before the worker prepares the next images, ms.
IMAGE_REST_MS = 400


def format_seconds(seconds: float | None) -> str:
    """``m:ss`` (or ``h:mm:ss``) of ``seconds``; ``–`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def status_text(update: RunUpdate, paused: bool = False) -> str:
    """The status line of ``update``: stage, iteration, loss, elapsed time and ETA."""
    return (
        ("paused — " if paused else "")
        + f"stage {update.stage_index + 1}/{update.n_stages} '{update.stage_name}' "
        f"({update.stage_iteration}/{update.stage_iterations}) · iteration "
        f"{update.iteration}/{update.total_iterations} · loss {update.loss:.4g} · "
        f"{format_seconds(update.elapsed_s)} elapsed · ETA {format_seconds(update.eta_s)}"
    )


class LiveDisplay(QObject):
    """Shows a run in the viewer and the widget; owned by the Reconstruction widget.

    Parameters
    ----------
    viewer
        The napari viewer (layers ``reconstruction phase``, ``… amplitude``, ``… probe modes``,
        ``… scan positions``).
    status
        The widget's status line.
    plot
        The widget's loss plot.
    use_progress_bar
        Check box: whether a run gets a progress bar in napari's activity dock.
    """

    def __init__(
        self, viewer: Any, status: QLabel, plot: LossPlot, use_progress_bar: QCheckBox
    ) -> None:
        super().__init__(status)
        self.viewer = viewer
        self.status = status
        self.plot = plot
        self.use_progress_bar = use_progress_bar
        #: live layer updates shown during the current run
        self.images_shown = 0
        #: napari's progress bar of the current run, if any
        self.progress_bar: progress | None = None
        self.images_wanted = threading.Event()
        self._paused = False
        self._source = ""
        self._progress_start = 0
        self._shown_desc = ""
        self._latest: RunUpdate | None = None
        self._shown_update: RunUpdate | None = None
        self._latest_images: ReconImages | None = None
        self._fit_pending = False
        self._timer = QTimer(self)
        self._timer.setInterval(DISPLAY_INTERVAL_MS)
        self._timer.timeout.connect(self.refresh)
        self._rest = QTimer(self)
        self._rest.setSingleShot(True)
        self._rest.setInterval(IMAGE_REST_MS)
        self._rest.timeout.connect(lambda: self.images_wanted.set())

    def set_intervals(self, display_ms: int, image_rest_ms: int) -> None:
        """Period of the display and the rest between two live layer updates (ms)."""
        self._timer.setInterval(int(display_ms))
        self._rest.setInterval(int(image_rest_ms))

    # ------------------------------------------------------------------ run life cycle
    def begin(self, *, source: str, total: int, start_iteration: int) -> threading.Event:
        """Prepare for a run of ``total`` iterations; return the worker's ``images_wanted``.

        May process events (napari's progress bar does): call it before the worker starts.
        """
        self.images_shown = 0
        self._paused = False
        self._source = source
        self._progress_start = start_iteration
        self._shown_desc = ""
        self._latest = self._shown_update = self._latest_images = None
        self.images_wanted = threading.Event()  # a fresh one: an old worker keeps its own
        self.images_wanted.set()
        self.status.setText("starting…")
        if self.use_progress_bar.isChecked():
            self.progress_bar = progress(total=max(total, 0), desc="CAVIAR reconstruction")
        self._timer.start()
        return self.images_wanted

    def on_update(self, update: RunUpdate) -> None:
        """Yield slot: O(1) bookkeeping only; :meth:`refresh` shows the newest state."""
        self.plot.append(update.iteration, update.loss, update.stage_name, redraw=False)
        self._latest = update
        if update.images is not None:
            self._latest_images = update.images

    def set_paused(self, paused: bool) -> None:
        """Mark the status line as paused (or not) and show it now."""
        self._paused = paused
        self._shown_update = None
        self.refresh()

    def refresh(self) -> None:
        """Timer: status line, layers (newest images only), loss plot, progress bar."""
        update = self._latest
        if update is not None and update is not self._shown_update:
            self._shown_update = update
            self.status.setText(status_text(update, self._paused))
        images = self._latest_images
        if images is not None:
            if self.show_images(images, {SOURCE_KEY: self._source}, live=True):
                self._latest_images = None
                self.images_shown += 1
                self._rest.start()  # new images wanted after a short rest
            # else: the missing layers are added at the next tick
        self.plot.flush()
        self._sync_progress()

    def show_result(self, result: RunResult) -> None:
        """Show the final (or stopped) state, its metadata holding the full state."""
        self._latest_images = None  # superseded by the result
        self._shown_update = self._latest  # the status set below stays
        self.show_images(result.images, {STATE_KEY: result.state, SOURCE_KEY: self._source})
        self.plot.flush()
        state = result.state
        loss = f"{state.loss[-1]:.4g}" if state.loss else "–"
        if result.stopped:
            text = f"stopped at iteration {state.iteration}; loss {loss}"
        else:
            text = f"finished: {state.iteration} iterations; loss {loss}"
        self.status.setText(f"{text} — result in '{RUN_LAYER_NAME} phase', Save… to keep it")

    def end(self) -> None:
        """The run is over (finished, stopped or failed): stop the timers, close the bar."""
        self._timer.stop()
        self._rest.stop()
        self.plot.flush()
        # last: napari's progress bar processes events when it moves or closes
        self._sync_progress()
        bar, self.progress_bar = self.progress_bar, None
        if bar is not None:
            bar.close()

    # ------------------------------------------------------------------ layers
    def show_images(
        self, images: ReconImages, metadata: dict[str, Any], live: bool = False
    ) -> bool:
        """Put ``images`` in the run's layers; return False while some layers are missing.

        Live updates add at most one new layer per call, skip hidden layers and leave the
        (constant, hidden) scan positions to the result, so no single event-loop turn does all
        the expensive work (adding a napari layer costs far more than updating one); the final
        result updates everything. The first complete set of layers of a run is framed
        (:meth:`fit_view`) and selected.
        """
        tuples = layer_tuples(images, name=RUN_LAYER_NAME, metadata=metadata)
        if live:
            tuples = [t for t in tuples if t[2] != "points"]
        if tuples[0][1]["name"] not in [layer.name for layer in self.viewer.layers]:
            self._fit_pending = True
        layers, _added, complete = apply_layer_tuples(
            self.viewer, tuples, max_new=1 if live else None, skip_hidden=live
        )
        if complete and self._fit_pending:
            self._fit_pending = False
            self.fit_view(images)
            self.viewer.layers.selection.active = layers[0]
        return complete

    def fit_view(self, images: ReconImages) -> None:
        """Frame the scanned area (plus a margin), where the data constrain the object.

        The object extends half a probe window beyond the scan on every side; that border is
        barely constrained, so the first view shows the scanned part (zoom out for the rest).
        The scale bar is switched on (the layers are in Å).
        """
        self.viewer.reset_view()
        self.viewer.canvas.overlays["scale_bar"].visible = True
        positions = images.scan_positions_A
        if positions is None or len(positions) == 0:
            return
        lo, hi = positions.min(axis=0), positions.max(axis=0)
        margin = max(2.0, 0.25 * float((hi - lo).max()))
        target = (hi - lo) + 2.0 * margin  # (y, x) in Å
        height, width = self.viewer.canvas.size  # screen pixels
        zoom = 0.95 * min(height / target[0], width / target[1])
        if zoom > self.viewer.camera.zoom:  # only ever zoom in from the full view
            self.viewer.camera.center = tuple(float(v) for v in (lo + hi) / 2.0)
            self.viewer.camera.zoom = zoom

    # ------------------------------------------------------------------ progress bar
    def _sync_progress(self) -> None:
        """Move napari's progress bar to the newest iteration.

        Called from the timer, never from the yield slot: napari's progress bar calls
        ``QApplication.processEvents()`` in ``setValue``, which would re-enter the slot for every
        queued update and nest without bound while the worker keeps yielding.
        """
        bar, update = self.progress_bar, self._latest
        if bar is None or update is None:
            return
        desc = f"CAVIAR stage {update.stage_index + 1}/{update.n_stages}: {update.stage_name}"
        if desc != self._shown_desc:
            self._shown_desc = desc
            bar.set_description(desc)
        done = update.iteration - self._progress_start
        if done > bar.n:
            bar.update(done - bar.n)


def history_starts(state: Any) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Loss history of a state and the first iteration of each stage it went through."""
    stages = state.config.stages
    starts, first = [], 1
    for stage in stages[: state.stage_index + 1]:
        if first <= max(len(state.loss), 1):
            starts.append((first, stage.name))
        first += stage.iterations
    return np.asarray(state.loss, dtype=float), starts
