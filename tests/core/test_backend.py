"""Array backend: device selection, FFT conventions, dtypes, scatter-add."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from caviar_napari.core import backend as backend_mod
from caviar_napari.core.backend import get_backend
from caviar_napari.errors import DeviceError, InputError


def test_cpu_backend_dtypes_and_info():
    b = get_backend("cpu")
    assert b.name == "cpu" and b.xp is np
    assert b.complex_dtype == np.complex64 and b.real_dtype == np.float32
    assert b.workers >= 1 and b.device_info == f"CPU: {b.workers} cores"
    d = get_backend("cpu", "double")
    assert d.complex_dtype == np.complex128 and d.real_dtype == np.float64
    assert b.free_memory_bytes() > 1 << 20


def test_fft_is_numpy_fft2_ortho_over_last_two_axes():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 3, 8, 6)) + 1j * rng.standard_normal((2, 3, 8, 6))
    b = get_backend("cpu", "double")
    fa = b.fft2(a)
    np.testing.assert_allclose(fa, np.fft.fft2(a, norm="ortho"), atol=1e-12)
    # Parseval and inverse
    assert np.sum(np.abs(fa) ** 2) == pytest.approx(np.sum(np.abs(a) ** 2), rel=1e-12)
    np.testing.assert_allclose(b.ifft2(fa), a, atol=1e-12)
    # sign: a plane wave exp(+2πi k0 x) lands on +k0 (numpy's forward convention)
    x = np.arange(8)
    wave = np.exp(2j * np.pi * 3 * x / 8)[None, :] * np.ones((4, 1))
    assert np.unravel_index(np.argmax(np.abs(b.fft2(wave))), (4, 8)) == (0, 3)
    # overwrite keeps the result correct
    c = a.astype(np.complex64)
    np.testing.assert_allclose(
        b.fft2(c.copy(), overwrite=True), np.fft.fft2(c, norm="ortho"), atol=1e-5
    )


def test_to_host_and_asarray():
    b = get_backend("cpu", "double")
    x = b.asarray([1, 2, 3], dtype=b.real_dtype)
    h = b.to_host(x)
    assert isinstance(h, np.ndarray) and h.dtype == np.float64


def test_bad_device_and_precision():
    with pytest.raises(InputError, match="device"):
        get_backend("tpu")
    with pytest.raises(InputError, match="precision"):
        get_backend("cpu", "half")


@pytest.fixture
def no_cupy(monkeypatch):
    """Make ``import cupy`` fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "cupy", None)


def test_gpu_without_cupy_is_a_clear_error(no_cupy):
    with pytest.raises(DeviceError, match="cupy"):
        get_backend("gpu")


def test_auto_falls_back_to_cpu_with_a_notice(no_cupy, caplog):
    with caplog.at_level(logging.INFO, logger=backend_mod.__name__):
        b = get_backend("auto")
    assert b.name == "cpu"
    assert any("no usable GPU" in r.getMessage() for r in caplog.records)
    summary = backend_mod.detect_devices()
    assert summary.startswith("CPU:") and "no GPU" in summary


def test_scatter_plan_matches_add_at():
    rng = np.random.default_rng(3)
    b = get_backend("cpu", "double")
    index = rng.integers(0, 17, size=(5, 4, 3))  # repeats on purpose
    values = rng.standard_normal((60, 2, 3)) + 1j * rng.standard_normal((60, 2, 3))
    plan = b.scatter_plan(index, 17)
    out = plan(values)
    ref = np.zeros((17, 2, 3), dtype=complex)
    np.add.at(ref, index.ravel(), values)
    assert out.shape == (17, 2, 3) and out.dtype == values.dtype
    np.testing.assert_allclose(out, ref, atol=1e-12)
    single = plan(values.astype(np.complex64))
    assert single.dtype == np.complex64
    np.testing.assert_allclose(single, ref, atol=1e-5)


def test_names_are_the_configuration_choices():
    """The static types of devices, precisions and losses spell the configuration's tuples."""
    from typing import get_args

    from caviar_napari.core import loss
    from caviar_napari.core.backend import DeviceName, PrecisionName
    from caviar_napari.data.config import DEVICES, LOSSES, PRECISIONS

    assert get_args(DeviceName) == DEVICES and get_args(PrecisionName) == PRECISIONS
    assert get_args(loss.LossKind) == LOSSES and loss.LOSSES is LOSSES
