"""The worker plumbing every dock widget uses: errors always surface and end the run."""

import pytest

from caviar_napari._qt import _worker
from caviar_napari.errors import InputError, WorkerError


def _failing(exc):
    yield 1
    raise exc


def test_guarded_turns_runtime_error_into_worker_error():
    gen = _worker.guarded(_failing)(RuntimeError("CUDA error: out of memory"))
    assert next(gen) == 1
    with pytest.raises(WorkerError, match="RuntimeError: CUDA error: out of memory"):
        next(gen)


def test_guarded_keeps_caviar_errors_and_return_value():
    gen = _worker.guarded(_failing)(InputError("bad key 'energy_eV' in f.h5"))
    next(gen)
    with pytest.raises(InputError, match="energy_eV"):
        next(gen)

    def returns():
        yield 0
        return 42

    gen = _worker.guarded(returns)()
    next(gen)
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == 42


@pytest.mark.parametrize("exc", [RuntimeError("boom"), InputError("bad file x.h5")])
def test_worker_error_notifies_and_finishes(qtbot, monkeypatch, exc):
    shown, done, yielded = [], [], []
    monkeypatch.setattr(_worker, "show_error", shown.append)
    worker = _worker.start_worker(
        _failing, exc, on_yield=yielded.append, on_done=lambda: done.append(True)
    )
    with qtbot.capture_exceptions():
        qtbot.waitUntil(lambda: bool(done), timeout=5000)
    assert yielded == [1]
    assert len(shown) == 1 and str(exc) in shown[0]
    assert not worker.is_running
