"""Shared pytest configuration: GPU tests are skipped cleanly where no usable GPU exists; a
small two-layer reconstruction for the diagnostics view-model and dock tests; a two-range ATOMS
file with a layered ground truth for the depth-resolved correlations."""

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


@pytest.fixture(scope="session")
def depth_files(tmp_path_factory):
    """A two-range ATOMS file and a layered ground truth (issue 16's headless pipeline, the
    Correlations view-model).

    Known truth: two independent hBN layers (the ``hbn-bilayer-gap`` springs: the lower layer
    softer-bonded, ρ_nn lower, shifted by a/3), ten configurations each.  The "reconstruction"
    has four 30 Å slices: the upper layer's atoms are seen in slice 0, the lower layer's in
    slice 3; ten object states hold the ten configurations plus 5 pm of positional noise, and
    the slices between are vacuum where refinement fails (NaN).  The ATOMS file holds the
    z-ranges ``top`` (0:2) and ``bottom`` (2:4), each indexed in its own layer's lattice.
    Returns ``(atoms, data, truth layers)``.
    """
    import math

    import h5py

    from caviar_napari.data.atoms import AtomsData, ZRange
    from caviar_napari.data.layers import TruthLayer
    from caviar_napari.io.atoms_file import write_atoms_zranges
    from caviar_napari.io.truth_layers import write_truth_layers
    from caviar_napari.simulate.thermal import realised_green
    from caviar_napari.simulate.thick import (
        LOWER_SPRINGS_DEFAULT,
        honeycomb_layer,
        max_separation_shift_A,
    )

    A, DZ, N_CONFIGS, NOISE_A = 2.504, 30.0, 10, 0.005
    MASSES = {"B": 10.81, "N": 14.007}
    UPPER = {"k_nn": 20.0, "t_nn": 6.0, "k_nnn": 4.0, "t_nnn": 0.0}
    folder = tmp_path_factory.mktemp("depth_pipeline")
    box = (4 * A * math.sqrt(3), 4 * A)
    rng = np.random.default_rng(3)
    specs = (("upper", (0.0, 0.0), UPPER, 0), ("lower", max_separation_shift_A(A),
             dict(LOWER_SPRINGS_DEFAULT), 3))  # fmt: skip
    layers, truths, configs, ranges, start = [], [], [], [], 0
    for (name, shift, springs, slice_index), label in zip(specs, ("top", "bottom")):
        layer = honeycomb_layer(
            name, a_A=A, box_yx_A=box, rotation_deg=0.0, shift_A=shift, z_A=slice_index * DZ,
            springs=springs, masses_amu=MASSES,
        )  # fmt: skip
        pos = layer.positions_A[None] + layer.model.sample_snapshots(300.0, N_CONFIGS, rng)
        atoms = np.arange(start, start + layer.n_atoms)
        start += layer.n_atoms
        truths.append(
            TruthLayer(
                name=name, atoms=atoms, z_A=slice_index * DZ + 2.0,
                entrance_z_A=slice_index * DZ, truth_slices=[slice_index],
                lattice_vectors_A=layer.lattice_vectors_A, origin_A=layer.origin_A,
                cell_index=layer.cell_index, basis_index=layer.basis_index,
                rotation_deg=0.0, green_model_A2=layer.model.green_tensor(300.0),
                green_realised_A2=realised_green(pos), phase=np.zeros((4, 4)),
                springs=dict(springs),
            )
        )  # fmt: skip
        configs.append(pos)
        # the range's view: states = configurations + noise in the layer's own slice, NaN in
        # the other slice of the range (vacuum: refinement failed)
        seen = np.full((N_CONFIGS, 2, layer.n_atoms, 2), np.nan)
        own = slice_index % 2
        seen[:, own] = pos + rng.normal(0.0, NOISE_A, pos.shape)
        first = 2 * (slice_index // 2)
        ranges.append(
            AtomsData(
                positions_A=seen,
                mean_positions_A=seen[:, own].mean(axis=0),
                cell_index=layer.cell_index,
                basis_index=layer.basis_index,
                species=np.asarray(layer.species),
                lattice_vectors_A=layer.lattice_vectors_A,
                source="recon.h5",
                zrange=ZRange(label, first, first + 2, (DZ, DZ), first * DZ, 4),
            )
        )
        layers.append(layer)
    atoms_path, data_path = folder / "atoms.h5", folder / "data.h5"
    write_atoms_zranges(atoms_path, ranges)
    positions = np.concatenate(configs, axis=1)
    with h5py.File(data_path, "w") as f:
        f["intensities"] = np.zeros((2, 2, 4, 4), dtype=np.float32)
        g = f.create_group("ground_truth")
        g["positions_A"] = positions
        g["mean_positions_A"] = np.concatenate([la.positions_A for la in layers])
        g["green_realised_A2"] = realised_green(positions)
        g["species"] = np.concatenate([la.species for la in layers]).astype(object)
        g.attrs["box_A"] = np.array([box[0], box[1], 4 * DZ])
        write_truth_layers(g, truths)
    return atoms_path, data_path, truths
