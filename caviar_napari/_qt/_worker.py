"""Background work for the dock widgets: generator workers whose errors always surface.

napari's generator workers swallow a ``RuntimeError`` raised inside the generator (neither
``errored`` nor ``finished`` is emitted).  :func:`guarded` re-raises every unexpected exception
as :class:`~caviar_napari.errors.WorkerError`, and :func:`start_worker` connects the error to a
napari notification and to the widget's ``on_done`` callback, so the widget always returns to
idle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error

from caviar_napari.errors import CaviarError, WorkerError


def guarded(gen_func: Callable[..., Generator]) -> Callable[..., Generator]:
    """Wrap a generator function so that any exception leaves it as a non-RuntimeError."""

    @functools.wraps(gen_func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator:
        try:
            return (yield from gen_func(*args, **kwargs))
        except CaviarError:
            raise
        except (GeneratorExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # every other error, RuntimeError (CUDA) included
            raise WorkerError(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


def error_message(exc: BaseException) -> str:
    """Return the text shown to the user for an exception raised in a worker."""
    if isinstance(exc, CaviarError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def start_worker(
    gen_func: Callable[..., Generator],
    *args: Any,
    on_yield: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], None] | None = None,
    on_done: Callable[[], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    **kwargs: Any,
) -> GeneratorWorker:
    """Start ``gen_func(*args, **kwargs)`` in a napari thread worker and return the worker.

    Parameters
    ----------
    gen_func
        Generator function doing the work; it must yield at least once per unit of work so
        that pause and quit take effect.  It is wrapped with :func:`guarded`.
    on_yield, on_return
        Slots for yielded values and for the generator's return value (main thread).
    on_done
        Called once, on the main thread, when the worker ends for any reason (finished, quit,
        or errored): the place to return the widget to idle.
    on_error
        Extra handling of an error, after the napari notification is shown.

    Notes
    -----
    napari's own ``_progress`` option of workers is deliberately not offered: its progress bar
    calls ``QApplication.processEvents()`` on every step, which re-enters the ``yielded`` slots
    of a fast worker without bound and can hang the GUI.  Widgets drive a
    ``napari.utils.progress`` bar from a display timer instead.
    """
    worker = create_worker(guarded(gen_func), *args, **kwargs, _start_thread=False)
    if on_yield is not None:
        worker.yielded.connect(on_yield)
    if on_return is not None:
        worker.returned.connect(on_return)

    def _errored(exc: BaseException) -> None:
        show_error(error_message(exc))
        if on_error is not None:
            on_error(exc)

    worker.errored.connect(_errored)
    if on_done is not None:
        worker.finished.connect(on_done)
    worker.start()
    return worker


class Coalesced:
    """One background job at a time, however often it is asked for.

    A request made while the job runs is remembered, and one more run starts when it ends:
    the newest state is always computed last, and a burst of requests (a slider being dragged)
    costs two runs, not one per request.

    Parameters
    ----------
    start
        ``start(on_done) -> worker | None``: start the job now (reading the current state) with
        ``on_done`` as its :func:`start_worker` ``on_done``; None when there is nothing to do.

    Attributes
    ----------
    worker
        The running worker, None when idle.
    """

    def __init__(self, start: Callable[[Callable[[], None]], GeneratorWorker | None]) -> None:
        self._start = start
        self.worker: GeneratorWorker | None = None
        self._again = False

    @property
    def busy(self) -> bool:
        """Whether a run is going on (or one more is due)."""
        return self.worker is not None

    def request(self) -> GeneratorWorker | None:
        """Run the job now, or once more after the running one; returns a started worker."""
        if self.worker is not None:
            self._again = True
            return None
        self._again = False
        self.worker = self._start(self._done)
        return self.worker

    def _done(self) -> None:
        self.worker = None
        if self._again:
            self.request()
