"""Longest stall of napari's Qt event loop while the Reconstruction widget runs a reconstruction.

A ``QTimer`` fires every 10 ms on the main thread during the whole run; every gap between two
timeouts beyond the 10 ms period is time the event loop could not react (a "stall"): layer
updates, the loss plot, the progress bar, vispy redraws, and the GIL held by the worker.
The script prints the largest stall, its 99th and 50th percentiles and what the display did.

Run under a display (Xvfb on a headless machine)::

    xvfb-run -a python benchmarks/bench_gui_stall.py                 # hbn-correlated demo
    xvfb-run -a python benchmarks/bench_gui_stall.py --update-every 1 --states 4

Aim: no stall above 100 ms.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time

import numpy as np


def _stalls(stamps: list[float], period_ms: float) -> np.ndarray:
    """Gaps between consecutive timer ticks beyond the period (ms)."""
    gaps = np.diff(np.asarray(stamps, dtype=float))
    return np.maximum(gaps - period_ms, 0.0) if gaps.size else np.zeros(1)


def _instrument(cls: type, name: str, out: list[float]) -> None:
    """Record the duration (ms) of every call of the method ``cls.name``."""
    method = getattr(cls, name)

    @functools.wraps(method)
    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            out.append(1e3 * (time.perf_counter() - t))

    setattr(cls, name, timed)


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sample", default="hbn-correlated", help="demo dataset (sample key)")
    p.add_argument("--iterations", type=int, nargs=2, default=(10, 10), metavar=("S1", "S2"))
    p.add_argument("--states", type=int, default=4, help="object states of stage 2")
    p.add_argument("--modes", type=int, default=2, help="probe modes")
    p.add_argument("--update-every", type=int, default=1, help="layer update interval (it.)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "gpu"))
    p.add_argument("--period-ms", type=float, default=10.0, help="probe timer period")
    p.add_argument("--timeout-s", type=float, default=600.0)
    p.add_argument(
        "--no-napari-progress",
        action="store_true",
        help="untick the widget's 'progress bar in napari's activity dock'",
    )
    p.add_argument(
        "--baseline-s", type=float, default=10.0, help="idle measurement before the run (s)"
    )
    return p.parse_args()


def main() -> int:
    args = _parse()
    import napari
    from qtpy.QtCore import QElapsedTimer, QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from caviar_napari._qt import launcher
    from caviar_napari._qt.recon_display import LiveDisplay
    from caviar_napari._qt.reconstruction_widget import ReconstructionWidget
    from caviar_napari.core import config as cfg

    # time spent in the widget's own main-thread code (slots and display timer)
    own: list[float] = []
    for cls, name in (
        (LiveDisplay, "on_update"),
        (LiveDisplay, "refresh"),
        (ReconstructionWidget, "_on_result"),
        (ReconstructionWidget, "_on_done"),
    ):
        _instrument(cls, name, own)

    viewer = napari.Viewer(title="bench_gui_stall")
    docks = launcher.add_docks(viewer)
    widget: ReconstructionWidget = docks["Reconstruction"][1]
    launcher.open_sample(viewer, args.sample)
    app = QApplication.instance()
    deadline = time.monotonic() + 30
    while widget.dataset() is None and time.monotonic() < deadline:
        app.processEvents()
    dataset = widget.dataset()
    config = cfg.two_stage_preset(
        object_states=args.states,
        probe_modes=args.modes,
        iterations=tuple(args.iterations),
        update_every=args.update_every,
        device=args.device,
    )
    widget.set_config(config)
    widget.progress_check.setChecked(not args.no_napari_progress)
    for _ in range(50):  # let the window settle (first paint, estimate)
        app.processEvents()
        time.sleep(0.01)

    clock = QElapsedTimer()
    clock.start()
    stamps: list[float] = []
    probe = QTimer()
    probe.setInterval(int(args.period_ms))
    probe.timeout.connect(lambda: stamps.append(clock.nsecsElapsed() * 1e-6))

    def run_loop(until) -> None:  # napari's own event loop, as in an interactive session
        loop = QEventLoop()
        watcher = QTimer()
        watcher.setInterval(50)
        watcher.timeout.connect(lambda: loop.quit() if until() else None)
        watcher.start()
        loop.exec_()
        watcher.stop()

    # idle baseline: the same window, no reconstruction (what the machine itself costs)
    probe.start()
    t_idle = time.perf_counter()
    run_loop(lambda: time.perf_counter() - t_idle > args.baseline_s)
    probe.stop()
    idle = _stalls(stamps, args.period_ms)

    own.clear()
    stamps.clear()
    probe.start()
    t0 = time.perf_counter()
    if widget.start() is None:
        raise SystemExit(f"the run did not start: {widget.status_label.text()}")
    run_loop(lambda: not widget.is_running or time.perf_counter() - t0 > args.timeout_s)
    wall = time.perf_counter() - t0
    probe.stop()
    if widget.is_running:
        widget.stop()
        while widget.is_running:
            app.processEvents()

    stalls = _stalls(stamps, args.period_ms)
    state = widget.result
    print(
        f"# bench_gui_stall — {platform.node()}, {os.cpu_count()} CPUs, napari {napari.__version__}"
    )
    print(
        f"data {args.sample}: scan {dataset.scan_shape}, detector {dataset.detector_shape}; "
        f"stages {tuple(args.iterations)} it., {args.states} states, {args.modes} modes, "
        f"layer update every {args.update_every} it., device {args.device}, "
        f"napari progress bar {'off' if args.no_napari_progress else 'on'}"
    )
    print(
        f"run: {state.iteration if state else 0} iterations in {wall:.1f} s, "
        f"{widget.images_shown} live layer updates, {stalls.size} timer ticks; "
        f"load average before the run {os.getloadavg()[0]:.1f}"
    )
    own_ms = np.asarray(own) if own else np.zeros(1)
    print(f"| event-loop stall beyond the {args.period_ms:g} ms tick (ms) | idle | run |")
    print("|---|---|---|")
    print(f"| max | {idle.max():.1f} | {stalls.max():.1f} |")
    print(f"| 99th percentile | {np.percentile(idle, 99):.1f} | {np.percentile(stalls, 99):.1f} |")
    print(f"| 50th percentile | {np.percentile(idle, 50):.1f} | {np.percentile(stalls, 50):.1f} |")
    print(f"| ticks stalled > 100 ms | {int(np.sum(idle > 100))} | {int(np.sum(stalls > 100))} |")
    print(
        f"widget's own slots during the run: {own_ms.size} calls, max {own_ms.max():.1f} ms, "
        f"99th percentile {np.percentile(own_ms, 99):.1f} ms, total {own_ms.sum() / 1e3:.2f} s"
    )
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
