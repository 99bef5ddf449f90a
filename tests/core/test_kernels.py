"""The fused element-wise passes: the numpy definitions against plain numpy, and (marked gpu,
skipped without a CUDA GPU) each cupy kernel against its numpy definition."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.core import kernels
from caviar_napari.core import loss as loss_mod

N, B, M, K, S, H, W = 3, 4, 2, 8, 2, 20, 22


def _data(seed=0, dtype=np.complex128):
    rng = np.random.default_rng(seed)
    c = lambda *s: (rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(dtype)  # noqa: E731
    corners = np.array([[0, 0], [3, 5], [12, 14], [7, 1]], dtype=np.int64)
    obj = c(N, S, H, W)
    psi1, psi_n = c(1, B, M, K, K), c(N, B, M, K, K)
    real = dtype(0).real.dtype
    inten = rng.random((B, K, K)).astype(real)
    amp = rng.random((B, K, K)).astype(real)
    mask = (rng.random((K, K)) > 0.2).astype(real)
    return obj, corners, psi1, psi_n, inten, amp, mask


def _reference_transmit(psi, obj, j, corners):
    out = np.empty((N, B, M, K, K), dtype=obj.dtype)
    for n in range(N):
        for b, (y, x) in enumerate(corners):
            out[n, b] = psi[min(n, psi.shape[0] - 1), b] * obj[n, j, y : y + K, x : x + K]
    return out


def test_numpy_definitions():
    obj, corners, psi1, psi_n, inten, amp, mask = _data()
    for psi in (psi1, psi_n):
        out = np.empty((N, B, M, K, K), complex)
        got = kernels.transmit(psi, obj, 1, corners, (K, K), out, np)
        np.testing.assert_array_equal(got, _reference_transmit(psi, obj, 1, corners))
    np.testing.assert_allclose(
        kernels.intensity(psi_n, np), (np.abs(psi_n) ** 2).sum(axis=(0, 2)) / N, rtol=1e-12
    )
    w = np.random.default_rng(1).random((1, B, 1, K, K))
    expect = np.conj(psi_n) * w
    np.testing.assert_allclose(kernels.conj_scale(psi_n.copy(), w, np), expect, rtol=1e-14)
    strided = np.swapaxes(psi_n.copy(), -1, -2)  # not C-contiguous: the two-pass fallback
    got = kernels.conj_scale(strided, np.swapaxes(w, -1, -2), np)
    np.testing.assert_allclose(np.swapaxes(got, -1, -2), expect, rtol=1e-14)


def test_numpy_passes_keep_single_precision():
    obj, corners, psi1, psi_n, inten, amp, mask = _data(dtype=np.complex64)
    assert kernels.intensity(psi_n, np).dtype == np.float32
    w = np.random.default_rng(1).random((1, B, 1, K, K)).astype(np.float32)
    h = kernels.conj_scale(psi_n.copy(), w, np)
    assert h.dtype == np.complex64
    np.testing.assert_allclose(h, np.conj(psi_n) * w, rtol=1e-6)
    for kind in ("gaussian", "poisson"):
        loss, dl = kernels.loss_and_dI(kind, inten, amp, mask, 1e-6, np)
        assert dl.dtype == np.float32 and isinstance(loss, float)
    for kind in ("gaussian", "poisson"):
        a = kernels.loss_and_dI(kind, inten, amp, mask, 1e-6, np)
        b = loss_mod.loss_and_dI(kind, inten, amp, mask, 1e-6, np)
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_cupy_kernels_equal_their_numpy_definitions(dtype):
    cp = pytest.importorskip("cupy")
    obj, corners, psi1, psi_n, inten, amp, mask = _data(dtype=dtype)
    tol = 1e-5 if dtype == np.complex64 else 1e-12
    for psi in (psi1, psi_n):
        out = cp.empty((N, B, M, K, K), dtype=dtype)
        got = kernels.transmit(cp.asarray(psi), cp.asarray(obj), 1, cp.asarray(corners), (K, K),
                               out, cp)  # fmt: skip
        np.testing.assert_allclose(got.get(), _reference_transmit(psi, obj, 1, corners), rtol=tol)
    np.testing.assert_allclose(
        kernels.intensity(cp.asarray(psi_n), cp).get(), kernels.intensity(psi_n, np), rtol=tol
    )
    w = np.random.default_rng(1).random((1, B, 1, K, K)).astype(inten.dtype)
    np.testing.assert_allclose(
        kernels.conj_scale(cp.asarray(psi_n), cp.asarray(w), cp).get(),
        kernels.conj_scale(psi_n.copy(), w, np),
        rtol=tol,
    )
    for kind in ("gaussian", "poisson"):
        ref = kernels.loss_and_dI(kind, inten, amp, mask, 1e-6, np)
        got = kernels.loss_and_dI(
            kind, cp.asarray(inten), cp.asarray(amp), cp.asarray(mask), 1e-6, cp
        )
        assert got[0] == pytest.approx(ref[0], rel=tol * 10)
        np.testing.assert_allclose(got[1].get(), ref[1], rtol=tol * 10, atol=tol)


@pytest.mark.skipif(not kernels.has_jit(), reason="needs numba")
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_numba_kernels_equal_their_numpy_definitions(dtype):
    obj, corners, psi1, psi_n, *_ = _data(dtype=dtype)
    tol = 1e-6 if dtype == np.complex64 else 1e-13
    for psi in (psi1, psi_n):
        ref = kernels.transmit(psi, obj, 1, corners, (K, K), np.empty_like(psi_n), np)
        got = kernels.transmit(psi, obj, 1, corners, (K, K), np.empty_like(psi_n), np, jit=True)
        np.testing.assert_allclose(got, ref, rtol=tol)
    # in place (the adjoint's use) gives the same
    inplace = psi_n.copy()
    kernels.transmit(inplace, obj, 1, corners, (K, K), inplace, np, jit=True)
    np.testing.assert_allclose(inplace, ref, rtol=tol)
    ref = kernels.transmit_sum(psi_n, obj, 1, corners, (K, K), np.empty_like(psi_n[0]), np)
    windows = _reference_transmit(np.ones_like(psi1), obj, 1, corners)  # O[n, 1, window_b]
    np.testing.assert_allclose(ref, (psi_n * windows).sum(axis=0), rtol=tol * 10)
    h = psi_n.copy()
    got = kernels.transmit_sum(h, obj, 1, corners, (K, K), h[0], np, jit=True)  # out = h[0]
    np.testing.assert_allclose(got, ref, rtol=tol * 10, atol=tol * np.abs(ref).max())
    plane0 = (np.arange(N * H * W).reshape(N, H, W) * 1e-3).astype(dtype)
    for wave in (psi1, psi_n):
        ref = kernels.add_windows(plane0.copy(), wave, psi_n, corners, np)
        expect = plane0.copy()
        for b, (y, x) in enumerate(corners):
            expect[:, y : y + K, x : x + K] += (wave[:, b] * psi_n[:, b]).sum(axis=1)
        np.testing.assert_allclose(ref, expect, rtol=tol * 10)
        got = kernels.add_windows(plane0.copy(), wave, psi_n, corners, np, jit=True)
        np.testing.assert_allclose(got, ref, rtol=tol * 10, atol=tol * np.abs(ref).max())


@pytest.mark.skipif(not kernels.has_jit(), reason="needs numba")
def test_numba_propagation_kernels_equal_their_numpy_definitions():
    _obj, _corners, _psi1, psi_n, *_ = _data()
    rng = np.random.default_rng(5)
    prop = np.exp(1j * rng.standard_normal((K, K)))
    kept = psi_n[::-1].copy()
    ref_phi, ref_kept = psi_n.copy(), np.empty_like(psi_n)
    kernels.propagate(ref_phi, prop, ref_kept, np)
    np.testing.assert_allclose(ref_phi, psi_n * prop, rtol=1e-14)
    np.testing.assert_array_equal(ref_kept, ref_phi)
    phi, kept_j = psi_n.copy(), np.empty_like(psi_n)
    kernels.propagate(phi, prop, kept_j, np, jit=True)
    np.testing.assert_allclose(phi, ref_phi, rtol=1e-14)
    np.testing.assert_array_equal(kept_j, phi)
    corr0 = rng.standard_normal((K, K)) + 0j
    ref_h, ref_corr = psi_n.copy(), corr0.copy()
    kernels.propagate_adjoint(ref_h, prop, kept, ref_corr, np)
    np.testing.assert_allclose(ref_corr, corr0 + (psi_n * kept).sum(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(ref_h, psi_n * prop, rtol=1e-14)
    h, corr = psi_n.copy(), corr0.copy()
    kernels.propagate_adjoint(h, prop, kept, corr, np, jit=True)
    np.testing.assert_allclose(corr, ref_corr, rtol=1e-12)
    np.testing.assert_allclose(h, ref_h, rtol=1e-14)


@pytest.mark.skipif(not kernels.has_jit(), reason="needs numba")
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_numba_loss_passes_equal_their_numpy_definitions(dtype):
    _obj, _corners, _psi1, psi_n, inten, amp, mask = _data(dtype=dtype)
    tol = 1e-5 if dtype == np.complex64 else 1e-12
    got = kernels.intensity(psi_n, np, jit=True)
    assert got.dtype == inten.dtype
    np.testing.assert_allclose(got, kernels.intensity(psi_n, np), rtol=tol)
    for kind in ("gaussian", "poisson"):
        for m in (mask, None):
            ref = kernels.loss_and_dI(kind, inten, amp, m, 1e-3, np)
            loss, dl = kernels.loss_and_dI(kind, inten, amp, m, 1e-3, np, jit=True)
            assert dl.dtype == inten.dtype
            assert loss == pytest.approx(ref[0], rel=tol)
            np.testing.assert_allclose(dl, ref[1], rtol=tol, atol=tol)
    w = np.random.default_rng(1).random((1, B, 1, K, K)).astype(inten.dtype)
    got = kernels.conj_scale(psi_n.copy(), w, np, jit=True)
    np.testing.assert_allclose(got, kernels.conj_scale(psi_n.copy(), w, np), rtol=tol)


@pytest.mark.skipif(not kernels.has_jit(), reason="needs numba")
def test_numba_window_adjoint_equals_the_separate_passes():
    obj, corners, psi1, psi_n, *_ = _data()
    origin = (0, 0)
    plane0 = np.zeros((N, H, W), complex)
    for wave in (psi1, psi_n):
        for with_plane in (False, True):
            for to_sum in (False, True):
                ref_plane, got_plane = plane0.copy(), plane0.copy()
                ref_h, got_h = psi_n.copy(), psi_n.copy()
                out_ref = np.empty_like(psi_n[0]) if to_sum else None
                out_got = np.empty_like(psi_n[0]) if to_sum else None
                args = (obj, 1, corners, origin)
                ref = kernels.window_adjoint(
                    ref_plane if with_plane else None, wave, ref_h, *args, out_ref, (K, K), np
                )
                got = kernels.window_adjoint(
                    got_plane if with_plane else None, wave, got_h, *args, out_got, (K, K), np,
                    jit=True,
                )  # fmt: skip
                np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-14 * np.abs(ref).max())
                np.testing.assert_allclose(got_plane, ref_plane, rtol=1e-13, atol=1e-13)
    expect = kernels.transmit(psi_n, obj, 1, corners, (K, K), np.empty_like(psi_n), np)
    np.testing.assert_allclose(
        kernels.window_adjoint(None, psi1, psi_n.copy(), obj, 1, corners, origin, None, (K, K), np),
        expect,
        rtol=1e-14,
    )
