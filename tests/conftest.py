"""Shared pytest configuration: GPU tests are skipped cleanly where no usable GPU exists; a
small two-layer reconstruction for the diagnostics view-model and dock tests."""

from __future__ import annotations

import numpy as np
import pytest


def _gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, no device: all mean "no GPU here"
        return False


def pytest_collection_modifyitems(config, items):
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with cupy")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def two_layer_recon(tmp_path_factory):
    """A small two-layer "reconstruction" and what the Diagnostics dock reads with it.

    Known truth: 2 states × 4 slices of 30 Å on 96 × 96 pixels of 0.1 Å; slice 1 holds a
    square lattice (1.3 Å) of sharp columns, slice 3 the same lattice shifted by half a period.
    Returns ``(recon, data, atoms)``: the RECON file (source ``data.h5``, found next to it), a
    4D-STEM file of 80 keV, α = 25 mrad, 16 × 16 pixels of 2 mrad (detector to 16 mrad), and an
    ATOMS file with z-ranges ``top`` (0:2, the columns of slice 1) and ``bottom`` (2:4).
    """
    from caviar_napari.data.atoms import AtomsData, ZRange
    from caviar_napari.data.config import ReconstructionConfig
    from caviar_napari.data.dataset import STEMDataset
    from caviar_napari.data.recon import ReconState
    from caviar_napari.io.atoms_file import write_atoms_zranges
    from caviar_napari.io.dataset import write_stem_h5
    from caviar_napari.io.reconstruction import save_reconstruction

    folder = tmp_path_factory.mktemp("two_layer_recon")
    pixel, spacing, shape = 0.1, 1.3, (96, 96)
    yy, xx = np.mgrid[: shape[0], : shape[1]] * pixel

    def lattice(offset):
        py = np.mod(yy - offset, spacing) - spacing / 2
        px = np.mod(xx - offset, spacing) - spacing / 2
        return np.exp(-(py**2 + px**2) / (2 * 0.12**2))

    phase = np.zeros((2, 4, *shape))
    phase[:, 1] = 0.4 * lattice(0.0)
    phase[:, 3] = 0.4 * lattice(spacing / 2)
    state = ReconState(
        object=np.exp(1j * phase).astype(np.complex64),
        probe=np.ones((1, 8, 8), np.complex64),
        tilt_mrad=np.zeros(2),
        loss=[1.0],
        pixel_size_A=(pixel, pixel),
        object_origin_A=(0.0, 0.0),
        slice_thickness_A=np.full(4, 30.0),
        config=ReconstructionConfig(),
        scan_positions_A=np.array([[1.0, 1.0], [8.5, 8.5]]),
    )
    recon = folder / "recon.h5"
    save_reconstruction(recon, state, source="data.h5")
    data = folder / "data.h5"
    write_stem_h5(data, STEMDataset(np.ones((2, 2, 16, 16), np.float32), 80e3, 25.0, 0.5, 2.0))
    ranges = []
    for label, start, offset in (("top", 0, 0.0), ("bottom", 2, spacing / 2)):
        grid = np.arange(2, 7) * spacing + spacing / 2 + offset  # column centres inside
        cols = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
        ranges.append(
            AtomsData(
                positions_A=np.broadcast_to(cols, (2, 2, *cols.shape)).copy(),
                mean_positions_A=cols,
                zrange=ZRange(label, start, start + 2, (30.0, 30.0), 30.0 * start, 4),
            )
        )
    atoms = folder / "atoms.h5"
    write_atoms_zranges(atoms, ranges)
    return recon, data, atoms
