"""Small input files shared by the command-line tests."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from caviar_napari.core import optics
from caviar_napari.core.backend import get_backend
from caviar_napari.core.engine import plan_geometry
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.data.config import ReconstructionConfig
from caviar_napari.io.atoms_file import AtomsData, write_atoms
from caviar_napari.io.dataset import STEMDataset, write_stem_h5

E_EV, ALPHA, K, DK, STEP = 80e3, 25.0, 24, 4.0, 0.8


@pytest.fixture(scope="session")
def data_file(tmp_path_factory):
    """A 4×4-scan, 24×24-detector file made with the forward model (two phase peaks)."""
    dummy = STEMDataset(np.ones((4, 4, K, K), np.float32), E_EV, ALPHA, STEP, DK, 20.0)
    grid = plan_geometry(dummy, ReconstructionConfig().validate())
    yy, xx = np.mgrid[: grid.object_shape[0], : grid.object_shape[1]]
    c = grid.positions_px.mean(0)
    phase = sum(0.3 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2) for y, x in (c - 1.5, c + 1.5))
    probe = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=20.0) * 50.0
    model = MultisliceModel(
        get_backend("cpu", "single"),
        wavelength_A=optics.wavelength_A(E_EV),
        pixel_size_A=grid.pixel_size_A,
        slice_thickness_A=[1.0],
        positions_px=grid.positions_px,
        object_shape=grid.object_shape,
        window=(K, K),
    )
    inten = np.fft.fftshift(
        np.asarray(model.intensities(np.exp(1j * phase)[None, None], probe[None])), axes=(-2, -1)
    )
    path = tmp_path_factory.mktemp("cli") / "tiny.h5"
    write_stem_h5(path, STEMDataset(inten.reshape(4, 4, K, K), E_EV, ALPHA, STEP, DK, 20.0))
    return path


def square_lattice(n: int = 4, d: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Sites ``(n², 2)`` Å of an ``n × n`` square lattice of spacing ``d`` and their cells."""
    y, x = np.meshgrid(np.arange(n) * d, np.arange(n) * d, indexing="ij")
    sites = np.stack([y.ravel(), x.ravel()], axis=1) + 1.0
    cells = np.stack([(y.ravel() / d).astype(int), (x.ravel() / d).astype(int)], axis=1)
    return sites, cells


def write_square_atoms(path, n_states: int = 15, n_slices: int = 2, seed: int = 0) -> AtomsData:
    """An ATOMS file of correlated displacements on a 4 × 4 square lattice (one species)."""
    sites, cells = square_lattice()
    rng = np.random.default_rng(seed)
    u = rng.normal(0, 0.04, (n_states, 1, 1, 2)) + rng.normal(0, 0.04, (n_states, 1, 16, 2))
    atoms = AtomsData(
        positions_A=sites + np.repeat(u, n_slices, axis=1),
        mean_positions_A=sites,
        cell_index=cells,
        basis_index=np.zeros(len(sites), dtype=int),
        lattice_vectors_A=np.eye(2) * 2.0,
        source="recon.h5",
    )
    write_atoms(path, atoms)
    return atoms


def write_truth_file(path, atoms: AtomsData, species: str | None = None) -> None:
    """A simulated-data file with a ``ground_truth`` group matching ``atoms``."""
    truth = atoms.positions_A[:, 0]
    u = (truth - truth.mean(0)).reshape(truth.shape[0], -1)
    with h5py.File(path, "w") as f:
        f["intensities"] = np.zeros((2, 2, 4, 4), dtype=np.float32)
        g = f.create_group("ground_truth")
        g["positions_A"] = truth
        g["mean_positions_A"] = atoms.mean_positions_A
        g["green_realised_A2"] = u.T @ u / truth.shape[0]
        if species is not None:
            g["species"] = np.array([species] * truth.shape[1], dtype=object)


@pytest.fixture
def atoms_and_truth(tmp_path):
    """``(atoms.h5, truth.h5)`` in ``tmp_path``: correlated square-lattice atoms and their truth."""
    atoms = write_square_atoms(tmp_path / "atoms.h5")
    write_truth_file(tmp_path / "truth.h5", atoms)
    return tmp_path / "atoms.h5", tmp_path / "truth.h5"
