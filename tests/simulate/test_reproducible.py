"""The same preset and seed give the same configurations on every machine (issue 12).

The reference values in ``data/pinned_configurations.npz`` were computed once by the
gauge-independent sampler (numpy 2.4.6, scipy 1.17.1, OpenBLAS) with::

    from caviar_napari.simulate.presets import preset_config, thermal_ensemble
    thermal_ensemble(preset_config("hbn-correlated", cells=(2, 2))).displacements_A[..., :2]
    thermal_ensemble(preset_config("hbn-einstein", cells=(2, 2), n_configs=4)).displacements_A
    thermal_ensemble(preset_config("hbn-correlated")).displacements_A[:2, :, :2]

They must never be regenerated to make this test pass: a difference means that a seed no longer
gives the published data.  Run under ``OPENBLAS_NUM_THREADS=1`` and the default thread count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.simulate.presets import poisson_counts, preset_config, thermal_ensemble

PINNED = Path(__file__).parent / "data" / "pinned_configurations.npz"

#: Agreement required with the stored configurations (Å).
ATOL_A = 1e-9


@pytest.fixture(scope="module")
def pinned():
    with np.load(PINNED) as f:
        return {k: f[k] for k in f.files}


def test_correlated_preset_configurations_are_pinned(pinned):
    small = thermal_ensemble(preset_config("hbn-correlated", cells=(2, 2))).displacements_A
    assert small.shape == (10, 16, 3)
    np.testing.assert_allclose(
        small[..., :2], pinned["hbn_correlated_cells_2x2"], rtol=0, atol=ATOL_A
    )
    assert not np.any(small[..., 2])  # the harmonic model is in-plane
    full = thermal_ensemble(preset_config("hbn-correlated")).displacements_A  # the demo data's
    np.testing.assert_allclose(
        full[:2, :, :2], pinned["hbn_correlated_first_two"], rtol=0, atol=ATOL_A
    )
    # the values are thermal displacements (≈ 0.03 Å rms), not zeros
    assert 0.02 < np.sqrt(np.mean(pinned["hbn_correlated_cells_2x2"] ** 2)) < 0.04


def test_einstein_preset_configurations_are_pinned(pinned):
    config = preset_config("hbn-einstein", cells=(2, 2), n_configs=4)
    got = thermal_ensemble(config).displacements_A
    np.testing.assert_allclose(got, pinned["hbn_einstein_cells_2x2"], rtol=0, atol=ATOL_A)


def _rotated_eigh(real_eigh, seed):
    """An eigh that returns another valid eigenbasis: random rotations and sign flips inside
    every (near-)degenerate eigenspace, as another LAPACK may."""
    rng = np.random.default_rng(seed)

    def rotate(w, v):
        v = v.copy()
        tol = 1e-9 * max(float(np.max(np.abs(w))), 1e-300)
        start = 0
        while start < w.size:
            stop = start + 1
            while stop < w.size and w[stop] - w[start] <= tol:
                stop += 1
            q, _ = np.linalg.qr(rng.standard_normal((stop - start, stop - start)))
            v[:, start:stop] = v[:, start:stop] @ (q * rng.choice([-1.0, 1.0], stop - start))
            start = stop
        return v

    def eigh(a, *args, **kwargs):
        w, v = real_eigh(a, *args, **kwargs)
        flat_w = w.reshape(-1, w.shape[-1])
        flat_v = v.reshape(-1, *v.shape[-2:])
        out = np.stack([rotate(ww, vv) for ww, vv in zip(flat_w, flat_v)]).reshape(v.shape)
        return w, out

    return eigh


def test_sampler_does_not_depend_on_the_eigenvector_gauge(monkeypatch):
    # the hexagonal supercell has many degenerate modes (stars of q): a sampler through the
    # normal modes gives other snapshots when LAPACK returns another basis of those eigenspaces
    lattice = HarmonicLattice.honeycomb()
    w = np.sort(
        np.linalg.eigvalsh(lattice.dynamical_matrix(lattice.supercell(4, 4).q_frac)).ravel()
    )
    assert np.sum(np.diff(w) <= 1e-9 * w.max()) > 10  # degenerate modes are there to rotate
    reference = lattice.supercell(4, 4).sample_snapshots(300.0, 5, 11)
    green = lattice.supercell(4, 4).green_tensor(300.0)
    real = np.linalg.eigh
    for seed in range(3):
        monkeypatch.setattr(np.linalg, "eigh", _rotated_eigh(real, seed))
        again = lattice.supercell(4, 4).sample_snapshots(300.0, 5, 11)  # fresh cache
        np.testing.assert_allclose(again, reference, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            lattice.supercell(4, 4).green_tensor(300.0), green, rtol=0, atol=1e-15
        )


def test_poisson_counts_consume_one_number_per_pixel():
    rng_mean = np.random.default_rng(5)
    mean = rng_mean.uniform(0.0, 40.0, size=(200, 300))
    mean[0, :5] = 0.0
    counts = poisson_counts(mean, np.random.default_rng(1))
    assert np.all(counts == np.round(counts)) and np.all(counts[0, :5] == 0)
    # a last-bit change of one mean changes at most that pixel (the stream does not shift)
    bumped = mean.copy()
    bumped[3, 4] = np.nextafter(bumped[3, 4], np.inf)
    again = poisson_counts(bumped, np.random.default_rng(1))
    diff = np.flatnonzero(again != counts)
    assert diff.size == 0 or (diff.tolist() == [3 * 300 + 4])
    # Poisson statistics: mean and variance equal the mean, to the sampling spread
    lam = np.full(400_000, 7.3)
    k = poisson_counts(lam, np.random.default_rng(2))
    assert abs(k.mean() - 7.3) < 5 * np.sqrt(7.3 / k.size)
    assert abs(k.var() - 7.3) < 5 * 7.3 * np.sqrt(2.0 / k.size) * 1.2
