"""CPU/GPU agreement of the forward model, loss and gradients (skipped without a CUDA GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.core import optics
from caviar_napari.core.backend import get_backend
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.data.beam import wavelength_A

pytestmark = pytest.mark.gpu

K, H, W = 32, 48, 52
N, S, M = 3, 3, 2
D = 0.25
LAM = wavelength_A(200e3)


def _setup(precision):
    rng = np.random.default_rng(11)
    yy, xx = np.meshgrid(np.arange(6) * 1.7 + 17.2, np.arange(7) * 1.9 + 16.6, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], axis=1)
    probe = optics.probe_modes(optics.make_probe((K, K), D, 200e3, 22.0, 30.0), M) * 10
    shape = (N, S, H, W)
    obj = (1 - 0.05 * rng.random(shape)) * np.exp(0.4j * rng.standard_normal(shape))
    amp = np.sqrt(rng.poisson(2.0, size=(pos.shape[0], K, K)).astype(float))
    mask = rng.random((K, K)) > 0.05

    def make(device, loss):
        return MultisliceModel(
            get_backend(device, precision),
            wavelength_A=LAM,
            pixel_size_A=D,
            slice_thickness_A=(2.0, 1.5, 3.0),
            positions_px=pos,
            object_shape=(H, W),
            amplitudes=amp,
            detector_mask=mask,
            loss=loss,
            batch_size=16,
        )

    return make, obj, probe


@pytest.mark.parametrize("precision,rtol", [("double", 1e-10), ("single", 2e-4)])
@pytest.mark.parametrize("loss", ["gaussian", "poisson"])
def test_gpu_matches_cpu(precision, rtol, loss):
    make, obj, probe = _setup(precision)
    cpu, gpu = make("cpu", loss), make("gpu", loss)
    assert gpu.backend.name == "gpu" and gpu.backend.device_info.startswith("GPU: ")
    tilt = (1.2, -0.7)
    i_cpu = cpu.intensities(obj, probe, tilt)
    i_gpu = gpu.backend.to_host(gpu.intensities(obj, probe, tilt))
    np.testing.assert_allclose(i_gpu, i_cpu, rtol=rtol, atol=rtol * np.abs(i_cpu).max())
    l_cpu, g_cpu = cpu.loss_and_gradient(obj, probe, tilt)
    l_gpu, g_gpu = gpu.loss_and_gradient(obj, probe, tilt)
    assert l_gpu == pytest.approx(l_cpu, rel=rtol)
    for key in ("object", "probe", "tilt"):
        host = gpu.backend.to_host(g_gpu[key])
        assert host.dtype == g_cpu[key].dtype
        scale = np.abs(g_cpu[key]).max()
        np.testing.assert_allclose(host, g_cpu[key], rtol=rtol, atol=rtol * scale)


def test_gpu_scatter_plan_and_fft():
    cpu, gpu = get_backend("cpu", "double"), get_backend("gpu", "double")
    rng = np.random.default_rng(2)
    index = rng.integers(0, 40, size=500)
    values = rng.standard_normal((500, 3)) + 1j * rng.standard_normal((500, 3))
    ref = cpu.scatter_plan(index, 40)(values)
    out = gpu.to_host(gpu.scatter_plan(gpu.asarray(index), 40)(gpu.asarray(values)))
    np.testing.assert_allclose(out, ref, atol=1e-12)
    a = rng.standard_normal((2, 16, 12)) + 1j * rng.standard_normal((2, 16, 12))
    np.testing.assert_allclose(gpu.to_host(gpu.fft2(gpu.asarray(a))), cpu.fft2(a), atol=1e-12)
    np.testing.assert_allclose(gpu.to_host(gpu.ifft2(gpu.asarray(a))), cpu.ifft2(a), atol=1e-12)
    assert gpu.free_memory_bytes() > 1 << 28
