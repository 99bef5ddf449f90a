"""``caviar atoms`` on a small reconstruction file with known atom positions."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from caviar_napari.cli import atoms as atoms_cli
from caviar_napari.cli import main
from caviar_napari.core.engine import ReconState
from caviar_napari.data.config import ReconstructionConfig
from caviar_napari.io.atoms_file import read_atoms, write_positions_csv
from caviar_napari.io.reconstruction import save_reconstruction

PIXEL_A = 0.1
ORIGIN_A = np.array([-1.5, 2.0])
SIGMA_A = 0.18
A1, A2 = np.array([0.0, 1.3]), np.array([1.2, 0.0])  # rectangular lattice, Å


def truth(rng, n_states=3, n_slices=2):
    """Mean sites (Å, scan frame), per-state positions and cell indices of a 5 × 5 lattice."""
    l = np.stack(np.meshgrid(np.arange(5), np.arange(5), indexing="ij"), -1).reshape(-1, 2)
    mean = ORIGIN_A + np.array([1.1, 1.0]) + l @ np.stack([A1, A2])
    disp = rng.normal(0, 0.04, (n_states, n_slices, len(mean), 2))  # 0.4 px rms
    return mean, mean + disp, l


def phase_of(positions_A, shape=(70, 70)):
    """Phase (state, slice, y, x) of Gaussian atoms at ``positions_A`` (Å, scan frame)."""
    px = (positions_A - ORIGIN_A) / PIXEL_A
    s = SIGMA_A / PIXEL_A
    yy, xx = np.arange(shape[0]), np.arange(shape[1])
    gy = np.exp(-((yy[:, None] - px[..., None, :, 0]) ** 2) / (2 * s**2))
    gx = np.exp(-((xx[:, None] - px[..., None, :, 1]) ** 2) / (2 * s**2))
    return 0.3 * np.einsum("...ya,...xa->...yx", gy, gx)


@pytest.fixture
def recon_file(tmp_path):
    rng = np.random.default_rng(42)
    mean, positions, cells = truth(rng)
    obj = np.exp(1j * phase_of(positions)).astype(np.complex64)
    state = ReconState(
        object=obj,
        probe=np.ones((1, 8, 8), np.complex64),
        tilt_mrad=np.zeros(2),
        loss=[1.0],
        pixel_size_A=(PIXEL_A, PIXEL_A),
        object_origin_A=tuple(ORIGIN_A),
        slice_thickness_A=np.array([5.0, 5.0]),
        config=ReconstructionConfig(),
    )
    path = tmp_path / "recon.h5"
    save_reconstruction(path, state, source="data.h5")
    return path, mean, positions, cells


def run_cli(argv):
    parser = argparse.ArgumentParser()
    atoms_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["atoms", *map(str, argv)])
    return args.func(args)


def test_log_path_recovers_positions_and_lattice(recon_file, tmp_path, capsys):
    path, mean, positions, cells = recon_file
    out = tmp_path / "atoms.h5"
    assert run_cli([path, "--out", out, "--sigma-min-A", 0.1, "--sigma-max-A", 0.3]) == 0
    text = capsys.readouterr().out
    assert "start positions: 25 found by LoG" in text
    assert "failures: 0 of 150" in text
    atoms = read_atoms(out)
    assert atoms.positions_A.shape == (3, 2, 25, 2)
    assert atoms.source == str(path)
    # match detected atoms to the truth, then compare in every state and slice
    order = np.argmin(
        np.hypot(*(atoms.mean_positions_A[:, None] - mean[None]).transpose(2, 0, 1)), 1
    )
    assert sorted(order.tolist()) == list(range(25))
    err_px = np.abs(atoms.positions_A - positions[:, :, order]).max() / PIXEL_A
    assert err_px < 0.05, err_px
    a1, a2 = atoms.lattice_vectors_A
    np.testing.assert_allclose(sorted([np.hypot(*a1), np.hypot(*a2)]), [1.2, 1.3], rtol=5e-3)
    assert atoms.cell_index.max(axis=0).tolist() == [4, 4] and (atoms.basis_index == 0).all()
    assert atoms.provenance["start"] == "LoG" and atoms.provenance["radius_A"] > 0


def test_positions_csv_radius_and_edge_failures(recon_file, tmp_path, capsys):
    path, mean, positions, _ = recon_file
    start = np.vstack([mean + 0.05, [[-1.45, 2.05]]])  # the last one at the image corner
    csv = tmp_path / "start.csv"
    write_positions_csv(csv, start, ["C"] * 25 + ["X"])
    out = tmp_path / "atoms.h5"
    assert run_cli([path, "--out", out, "--positions", csv, "--radius-A", 0.4, "--no-lattice"]) == 0
    text = capsys.readouterr().out
    assert "start positions: 26 read from" in text
    assert "failed on the mean image: 1" in text
    assert "failures: 6 of 156 state×slice positions; no start position: 6" in text
    atoms = read_atoms(out)
    assert (
        np.isnan(atoms.positions_A[:, :, 25]).all() and np.isnan(atoms.mean_positions_A[25]).all()
    )
    assert (atoms.status[:, :, 25] == 4).all()  # no start: the mean refinement failed
    assert np.abs(atoms.positions_A[:, :, :25] - positions).max() / PIXEL_A < 0.05
    assert atoms.species.tolist() == ["C"] * 25 + ["X"]
    assert atoms.cell_index is None and atoms.provenance["radius_A"] == 0.4


def test_given_lattice_vectors_and_species(recon_file, tmp_path, capsys):
    path, *_ = recon_file
    out = tmp_path / "atoms.h5"
    argv = [path, "--out", out, "--sigma-min-A", 0.1, "--sigma-max-A", 0.3]
    argv += ["--lattice-vectors-A", *A1, *A2, "--species", "C"]
    assert run_cli(argv) == 0
    atoms = read_atoms(out)
    np.testing.assert_array_equal(atoms.lattice_vectors_A, np.stack([A1, A2]))
    assert set(atoms.species.tolist()) == {"C"}
    assert "|a1| = 1.3000 Å, |a2| = 1.2000 Å, angle 90.00°" in capsys.readouterr().out
    # an ATOMS file as the start positions: its mean positions and species are used
    again = tmp_path / "again.h5"
    assert run_cli([path, "--out", again, "--positions", out, "--no-lattice"]) == 0
    assert "start positions: 25 read from" in capsys.readouterr().out
    second = read_atoms(again)
    np.testing.assert_allclose(second.mean_positions_A, atoms.mean_positions_A, atol=1e-4)
    np.testing.assert_array_equal(second.species, atoms.species)


def test_errors_name_the_item(recon_file, tmp_path, capsys):
    path, *_ = recon_file
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    assert main(["atoms", str(path), "--out", str(tmp_path / "a.h5"), "--positions", str(bad)]) == 2
    assert "bad.csv" in capsys.readouterr().err
    assert main(["atoms", str(tmp_path / "none.h5"), "--out", str(tmp_path / "a.h5")]) == 2
    assert "none.h5" in capsys.readouterr().err
    assert main(["atoms", str(path), "--out", str(tmp_path / "a.h5"), "--threshold", "2"]) == 2
    assert "threshold_rel" in capsys.readouterr().err
    assert not (tmp_path / "a.h5").exists()


def test_detection_is_limited_to_the_scanned_area():
    from caviar_napari.cli.atoms import scanned_area

    image = np.arange(50 * 40, dtype=float).reshape(50, 40)
    scan = np.stack(np.meshgrid([2.0, 3.0, 4.0], [1.0, 2.5], indexing="ij"), -1)  # Å, (y, x)
    crop, origin, text = scanned_area(image, (0.1, 0.2), (-1.0, -1.0), scan)
    # y: (2+1)/0.1 = 30 … (4+1)/0.1 = 50 → rows 30..49; x: 2/0.2 = 10 … 3.5/0.2 = 17.5 → 10..18
    np.testing.assert_array_equal(crop, image[30:50, 10:19])
    np.testing.assert_allclose(origin, (2.0, 1.0))
    assert "scanned area" in text
    whole, origin0, text0 = scanned_area(image, (0.1, 0.2), (-1.0, -1.0), None)
    assert whole is image and "whole object" in text0
