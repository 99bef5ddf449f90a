"""Live display of a running reconstruction: status line, progress, loss plot, layers.

The run's layers are created once, before the run starts (:meth:`LiveDisplay.create_layers`:
adding a napari layer costs hundreds of ms on software OpenGL, updating one a few).  During the
run the worker's yield slot only hands each update to the view-model's
:class:`~caviar_napari.viewmodels.reconstruction.LivePacer` (O(1)); a timer asks the pacer what
to show and shows it in one event-loop turn (one window repaint): the status line, the progress
bar and the loss plot at most every ``text_interval_s``, the layers at most every
``image_interval_s`` — so the main thread's share stays small however fast the run iterates,
and napari never stalls (``benchmarks/bench_gui_stall.py``).
"""

from __future__ import annotations

import time
from typing import Any

from napari.utils import progress
from qtpy.QtCore import QObject, QTimer
from qtpy.QtWidgets import QCheckBox, QLabel

from caviar_napari._qt._plot import ProgressStrip
from caviar_napari._qt.reconstruction.layers import apply_layer_tuples
from caviar_napari._qt.reconstruction.loss_plot import LossPlot
from caviar_napari.viewmodels.layer_keys import SOURCE_KEY, STATE_KEY
from caviar_napari.viewmodels.recon_images import ReconImages, contrast_ranges, layer_tuples
from caviar_napari.viewmodels.reconstruction import (
    RUN_LAYER_NAME,
    LivePacer,
    PacerSettings,
    RunResult,
    RunUpdate,
    status_text,
)

#: Period of the display timer, ms (the pacer decides what each tick shows).
TICK_MS = 100


class LiveDisplay(QObject):
    """Shows a run in the viewer and the dock; owned by the Reconstruction dock.

    Parameters
    ----------
    viewer
        The napari viewer (layers ``reconstruction phase``, ``… amplitude``, ``… probe modes``,
        ``… scan positions``).
    status
        The dock's status line.
    bar
        The dock's progress bar.
    plot
        The dock's loss plot (its history is the pacer's).
    pacer
        Decides what each tick shows.
    use_napari_progress
        Check box: whether a run also gets a progress bar in napari's activity dock.
    """

    def __init__(
        self,
        viewer: Any,
        status: QLabel,
        bar: ProgressStrip,
        plot: LossPlot,
        pacer: LivePacer,
        use_napari_progress: QCheckBox,
    ) -> None:
        super().__init__(status)
        self.viewer = viewer
        self.status = status
        self.bar = bar
        self.plot = plot
        self.pacer = pacer
        self.use_napari_progress = use_napari_progress
        #: napari's progress bar of the current run, if any
        self.progress_bar: progress | None = None
        self._paused = False
        self._source = ""
        self._start_iteration = 0
        self._shown_desc = ""
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self.refresh)
        self._applied_at: float | None = None
        self._apply_cost = 0.0
        self._applied_images = False
        self._lag = QTimer(self)
        self._lag.setSingleShot(True)
        self._lag.setInterval(0)
        self._lag.timeout.connect(self._measured)

    @property
    def images_shown(self) -> int:
        """Live layer updates shown during the current (or last) run."""
        return self.pacer.images_shown

    @property
    def images_wanted(self) -> Any:
        """The event by which the display asks the worker for images."""
        return self.pacer.images_wanted

    def set_intervals(self, tick_ms: int, text_s: float, image_s: float) -> None:
        """Timer period (ms), shortest time between status updates and between layer updates
        (s, whatever the display's speed)."""
        self._timer.setInterval(int(tick_ms))
        self.pacer.settings = PacerSettings(
            text_interval_s=float(text_s),
            slow_text_interval_s=float(text_s),
            image_interval_s=float(image_s),
            slow_image_interval_s=float(image_s),
        )

    # ------------------------------------------------------------------ run life cycle
    def create_layers(self, images: ReconImages, source: str) -> bool:
        """Create (or update) the run's layers from ``images`` before the run starts: at most
        one new layer per call (each costs hundreds of ms on software OpenGL; the window
        repaints between calls).  When all exist, frame the scanned area, select the phase
        layer and return True."""
        tuples = layer_tuples(images, name=RUN_LAYER_NAME, metadata={SOURCE_KEY: source})
        layers, _added, complete = apply_layer_tuples(
            self.viewer, tuples, ranges=contrast_ranges(images), max_new=1
        )
        if complete:
            self.fit_view(images)
            self.viewer.layers.selection.active = layers[0]
        return complete

    def begin(self, *, source: str, total: int, start_iteration: int) -> Any:
        """Prepare for a run of ``total`` iterations; return the worker's ``images_wanted``.

        May process events (napari's progress bar does): call it before the worker starts.
        """
        self._paused = False
        self._source = source
        self._start_iteration = start_iteration
        self._shown_desc = ""
        wanted = self.pacer.begin()
        self.status.setText("starting…")
        self.bar.set_range(total)
        if self.use_napari_progress.isChecked():
            self.progress_bar = progress(total=max(total, 0), desc="CAVIAR reconstruction")
        self._timer.start()
        return wanted

    def on_update(self, update: RunUpdate) -> None:
        """Yield slot: O(1) bookkeeping only; :meth:`refresh` shows the newest state."""
        self.pacer.offer(update)

    def set_paused(self, paused: bool) -> None:
        """Mark the status line as paused (or not) and show it now."""
        self._paused = paused
        latest = self.pacer.latest
        if latest is not None:
            self.status.setText(status_text(latest, paused))

    def refresh(self, *, force: bool = False) -> None:
        """Timer: what the pacer says is due — status, progress, loss plot, layers."""
        start = time.perf_counter()
        frame = self.pacer.tick(force=force)
        if frame.update is not None:
            update = frame.update
            self.status.setText(status_text(update, self._paused))
            self.bar.set_value(update.iteration - self._start_iteration)
            self.plot.update()
            self._sync_napari_progress(update)
        if frame.images is not None:
            self.show_images(frame.images, {SOURCE_KEY: self._source}, live=True)
        if frame.update is not None or frame.images is not None:
            # the cost of a frame: this slot and the repaint after it (measured by the lag of
            # a zero timer, which fires once the pending paint events are done)
            self._measured()  # a frame still being measured counts as done now
            self._applied_at = time.perf_counter()
            self._apply_cost = self._applied_at - start
            self._applied_images = frame.images is not None
            self._lag.start()

    def _measured(self) -> None:
        if self._applied_at is None:
            return
        cost = self._apply_cost + time.perf_counter() - self._applied_at
        self._applied_at = None
        if self._applied_images:
            self.pacer.images_done(cost)
        else:
            self.pacer.text_done(cost)

    def show_result(self, result: RunResult, text: str) -> None:
        """Show the final (or stopped) state, its metadata holding the full state."""
        self.refresh(force=True)
        self.pacer.drop_images()  # superseded by the result
        self.show_images(result.images, {STATE_KEY: result.state, SOURCE_KEY: self._source})
        self.plot.update()
        self.status.setText(text)

    def end(self) -> None:
        """The run is over (finished, stopped or failed): stop the timer, close the bar."""
        self._timer.stop()
        self._lag.stop()
        self._measured()
        self.plot.update()
        bar, self.progress_bar = self.progress_bar, None
        if bar is not None:  # last: napari's progress bar processes events when it closes
            bar.close()

    # ------------------------------------------------------------------ layers
    def show_images(self, images: ReconImages, metadata: dict[str, Any], live: bool = False):
        """Put ``images`` in the run's layers.

        Live updates skip hidden layers and leave the positions alone (the scan positions, and
        the refined ones with their arrows, which a result brings);
        a layer the user deleted during the run is added again (one per update).
        """
        tuples = layer_tuples(images, name=RUN_LAYER_NAME, metadata=metadata)
        if live:
            tuples = [t for t in tuples if t[2] == "image"]
        layers, _added, _complete = apply_layer_tuples(
            self.viewer,
            tuples,
            ranges=contrast_ranges(images),
            max_new=1 if live else None,
            skip_hidden=live,
        )
        return layers

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
        camera = self.viewer.scene.camera
        if zoom > camera.zoom:  # only ever zoom in from the full view
            camera.center = tuple(float(v) for v in (lo + hi) / 2.0)
            camera.zoom = zoom

    # ------------------------------------------------------------------ napari's progress bar
    def _sync_napari_progress(self, update: RunUpdate) -> None:
        """Move napari's progress bar (if used) to ``update``.

        Called from the timer, never from the yield slot: napari's progress bar calls
        ``QApplication.processEvents()`` in ``setValue``, which would re-enter the slot for every
        queued update and nest without bound while the worker keeps yielding.
        """
        bar = self.progress_bar
        if bar is None:
            return
        desc = f"CAVIAR stage {update.stage_index + 1}/{update.n_stages}: {update.stage_name}"
        if desc != self._shown_desc:
            self._shown_desc = desc
            bar.set_description(desc)
        done = update.iteration - self._start_iteration
        if done > bar.n:
            bar.update(done - bar.n)
