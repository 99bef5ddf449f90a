"""Clear answers at the edges (issue 12): Ctrl-C, zero iterations, zero atoms, non-finite
positions, and species for the dispersion of the README pipeline's files."""

from __future__ import annotations

import json
import shlex

import h5py
import numpy as np
import pytest

from caviar_napari.cli import main
from caviar_napari.core import engine
from caviar_napari.core.engine import ReconState
from caviar_napari.data.config import ReconstructionConfig
from caviar_napari.io.atoms_file import AtomsData, read_atoms, write_atoms, write_positions_csv
from caviar_napari.io.dispersion_file import read_dispersion
from caviar_napari.io.reconstruction import load_reconstruction, save_reconstruction


def interrupt_after(monkeypatch, n: int) -> None:
    """Make the engine raise KeyboardInterrupt (Ctrl-C) after ``n`` iterations."""
    real_run = engine.run

    def run(*args, **kwargs):
        gen = real_run(*args, **kwargs)
        for _ in range(n):
            yield next(gen)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "run", run)


def test_ctrl_c_without_checkpoints_says_how_to_keep_progress(
    data_file, tmp_path, capsys, monkeypatch
):
    interrupt_after(monkeypatch, 2)
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(data_file), "--out", str(out), "--iterations", "5"]) == 130
    err = capsys.readouterr().err
    assert "caviar reconstruct: interrupted at iteration 2 of 5" in err
    assert "--checkpoint-every N" in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_ctrl_c_with_checkpoints_says_where_and_how_to_resume(
    data_file, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "r.h5"
    argv = ["reconstruct", str(data_file), "--out", str(out), "--iterations", "5"]
    with monkeypatch.context() as m:
        interrupt_after(m, 3)
        assert main([*argv, "--checkpoint-every", "2", "--seed", "3"]) == 130
    err = capsys.readouterr().err
    ckpt = tmp_path / "r.checkpoint.h5"
    assert f"the checkpoint of iteration 2 is in {ckpt}" in err
    assert not out.exists() and load_reconstruction(ckpt).iteration == 2
    # the printed command continues the run exactly where the checkpoint left it
    command = err.split("continue exactly from there with: ")[1].strip()
    assert main(shlex.split(command)[1:]) == 0
    resumed = load_reconstruction(out)
    assert resumed.iteration == 5
    capsys.readouterr()
    uninterrupted = tmp_path / "u.h5"
    argv[3] = str(uninterrupted)
    assert main([*argv, "--seed", "3"]) == 0
    np.testing.assert_allclose(resumed.loss, load_reconstruction(uninterrupted).loss, rtol=1e-6)


def test_zero_iterations_is_an_error_and_writes_nothing(data_file, tmp_path, capsys):
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(data_file), "--out", str(out), "--iterations", "0"]) == 2
    assert "--iterations 0: nothing to reconstruct" in capsys.readouterr().err
    assert not out.exists()
    # a finished reconstruction resumed without more iterations: nothing to do either
    assert main(["reconstruct", str(data_file), "--out", str(out), "--iterations", "1"]) == 0
    again = tmp_path / "again.h5"
    assert main(["reconstruct", str(data_file), "--out", str(again), "--resume", str(out)]) == 2
    assert "nothing to do" in capsys.readouterr().err and not again.exists()


@pytest.mark.parametrize("command", ["correlations", "dispersion"])
def test_an_atoms_file_without_atoms_is_an_error(tmp_path, capsys, command):
    empty = tmp_path / "empty.h5"
    write_atoms(
        empty, AtomsData(positions_A=np.zeros((4, 1, 0, 2)), mean_positions_A=np.zeros((0, 2)))
    )
    out = tmp_path / "out.h5"
    argv = [command, str(empty), "--out", str(out)]
    assert main(argv + (["--temperature-K", "300"] if command == "dispersion" else [])) == 2
    assert "the ATOMS file has no atoms" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_infinite_positions_are_a_counted_exclusion(atoms_and_truth, capsys):
    atoms_path, _ = atoms_and_truth
    atoms = read_atoms(atoms_path)
    atoms.positions_A[3, 0, 5, 1] = np.inf
    write_atoms(atoms_path, atoms)
    out = atoms_path.parent / "corr.h5"
    assert main(["correlations", str(atoms_path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "atoms: 16 (15 used)" in captured.out
    assert "1 atom excluded: non-finite position (±Inf in the ATOMS file): 5" in captured.out
    assert (
        "excluded atoms (a NaN position, or the same position in every state): none"
        not in captured.out
    )
    assert "caviar correlations: warning: 1 atom excluded: non-finite position" in captured.err
    from caviar_napari.io.outputs import read_warnings

    assert "non-finite position" in read_warnings(out)[0]


def test_non_finite_start_positions_are_counted(tmp_path, capsys):
    rng = np.random.default_rng(0)
    phase = np.zeros((2, 1, 60, 60), np.float32)
    yy, xx = np.mgrid[:60, :60] * 0.1
    sites = [(y, x) for y in (1.5, 3.0, 4.5) for x in (1.5, 3.0, 4.5)]
    for y, x in sites:
        phase += 0.3 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 0.18**2))
    state = ReconState(
        object=np.exp(1j * (phase + rng.normal(0, 1e-3, phase.shape))).astype(np.complex64),
        probe=np.ones((1, 8, 8), np.complex64),
        tilt_mrad=np.zeros(2),
        loss=[1.0],
        pixel_size_A=(0.1, 0.1),
        object_origin_A=(0.0, 0.0),
        slice_thickness_A=np.array([5.0]),
        config=ReconstructionConfig(),
    )
    save_reconstruction(tmp_path / "recon.h5", state, source="data.h5")
    csv = tmp_path / "start.csv"
    write_positions_csv(csv, [*sites, (np.inf, 2.0), (np.nan, 1.0)])
    argv = ["atoms", str(tmp_path / "recon.h5"), "--out", str(tmp_path / "a.h5"), "--no-lattice"]
    assert main([*argv, "--positions", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "start positions: 9 read from" in out
    assert "(2 excluded: non-finite position; entries 9, 10 of the list" in out


def write_hbn_like(folder, n_states: int = 6, seed: int = 0):
    """A reconstruction of a two-atom-basis lattice (B weak, N strong) whose source is a
    simulated file with the ground-truth species, as ``caviar simulate`` writes it."""
    pixel = 0.1
    a1, a2 = np.array([2.4, 0.0]), np.array([0.0, 2.6])
    cells = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
    basis = np.array([[0.0, 0.0], [1.2, 0.65]])
    mean = np.concatenate([cells @ np.stack([a1, a2]) + b for b in basis]) + 1.5
    species = np.array(["B"] * 16 + ["N"] * 16)
    rng = np.random.default_rng(seed)
    pos = mean + rng.normal(0, 0.03, (n_states, 1, len(mean), 2))
    yy, xx = np.arange(114) * pixel, np.arange(115) * pixel
    gy = np.exp(-((yy[:, None] - pos[..., None, :, 0]) ** 2) / (2 * 0.18**2))
    gx = np.exp(-((xx[:, None] - pos[..., None, :, 1]) ** 2) / (2 * 0.18**2))
    phase = np.einsum("...ya,...xa,a->...yx", gy, gx, np.where(species == "B", 0.2, 0.35))
    state = ReconState(
        object=np.exp(1j * phase).astype(np.complex64),
        probe=np.ones((1, 8, 8), np.complex64),
        tilt_mrad=np.zeros(2),
        loss=[1.0],
        pixel_size_A=(pixel, pixel),
        object_origin_A=(0.0, 0.0),
        slice_thickness_A=np.array([5.0]),
        config=ReconstructionConfig(),
    )
    save_reconstruction(folder / "recon.h5", state, source="sim.h5")
    u = (pos[:, 0] - pos[:, 0].mean(0)).reshape(n_states, -1)
    with h5py.File(folder / "sim.h5", "w") as f:
        f["intensities"] = np.zeros((2, 2, 4, 4), np.float32)
        g = f.create_group("ground_truth")
        g["positions_A"] = pos[:, 0]
        g["mean_positions_A"] = mean
        g["green_realised_A2"] = u.T @ u / n_states
        g["species"] = species.astype(object)
    return mean, species


def test_dispersion_of_the_pipeline_files_gets_species_from_the_truth(tmp_path, capsys):
    mean, species = write_hbn_like(tmp_path)
    atoms_path = tmp_path / "atoms.h5"
    assert main(["atoms", str(tmp_path / "recon.h5"), "--out", str(atoms_path)]) == 0
    out = capsys.readouterr().out
    assert "species: from the ground truth of" in out and "32 of 32 atoms matched" in out
    atoms = read_atoms(atoms_path)
    nearest = np.argmin(np.linalg.norm(atoms.mean_positions_A[:, None] - mean, axis=2), axis=1)
    np.testing.assert_array_equal(atoms.species, species[nearest])
    assert "ground truth" in atoms.provenance["species"]
    disp = tmp_path / "disp.h5"
    argv = ["dispersion", str(atoms_path), "--out", str(disp), "--temperature-K", "300"]
    assert main([*argv, "--bootstrap", "0"]) == 0
    assert read_dispersion(disp).masses_amu == {"B": 10.81, "N": 14.007}


def test_species_option_accepts_a_comma_list_and_wins(tmp_path, capsys):
    write_hbn_like(tmp_path)
    atoms_path = tmp_path / "atoms.h5"
    argv = ["atoms", str(tmp_path / "recon.h5"), "--out", str(atoms_path)]
    assert main([*argv, "--species", "C,Si"]) == 0  # weakest first: B sites → C, N sites → Si
    atoms = read_atoms(atoms_path)
    assert sorted(set(atoms.species.tolist())) == ["C", "Si"]
    assert "by phase strength" in atoms.provenance["species"]
    # without a ground truth the species stay unknown, and the summary says how to name them
    (tmp_path / "sim.h5").unlink()
    assert main([*argv, "--overwrite"]) == 0
    assert "give --species" in capsys.readouterr().out
    assert read_atoms(atoms_path).species is None
    assert json.loads(h5py.File(atoms_path).attrs["warnings_json"]) == []
