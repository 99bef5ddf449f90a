"""Benchmark: the README pipeline's dispersion against the preset's exact one (issue 14, must 5).

Takes the ATOMS file of a reconstruction of a simulated hBN preset (the README pipeline:
``caviar simulate hbn-correlated`` → ``caviar reconstruct … --config resources/displaced-states
.yaml`` → ``caviar atoms``) and the simulated file, and separates the gap between the
force-constant dispersion and the exact one into its parts:

* **exact**: the preset's harmonic model (its springs, from the file's ``parameters``), branch
  averages along the dense Γ–M–K–Γ path (arc-length means);
* **reconstruction**: ``caviar dispersion --estimator force-constants`` on the ATOMS file;
* **truth, same atoms**: the same estimator on the realised displacements of the simulated
  configurations, for the atoms the reconstruction found (same cells, same block): the
  estimator's own error with this field of view and these 10 configurations;
* **reconstruction, rms rescaled**: the reconstruction's displacements scaled so that their rms
  equals the truth's over the same atoms — the amplitude (LSM) part of the gap removed, what is
  left comes from the shape of the recovered correlations;
* **truth, all atoms**: the estimator on every atom of the simulated supercell.

Frequencies scale as 1/amplitude (ν ∝ sqrt(k_B T / (m ⟨u²⟩))), so the amplitude part of the gap is
``rms_truth / rms_rec``.

Run: ``PYTHONPATH=. python benchmarks/readme_pipeline_dispersion.py ATOMS.h5 DATA.h5
[--doc FILE.md]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis import dispersion as disp
from caviar_napari.analysis.brillouin import dense_path, path_average
from caviar_napari.analysis.correlation_analysis import TruthInput, analyse_correlations
from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.analysis.truth import species_from_truth
from caviar_napari.io.atoms_file import AtomsData, read_atoms
from caviar_napari.io.correlations_file import read_ground_truth


def exact_averages(data: Path) -> tuple[np.ndarray, float]:
    """Dense-path branch averages (THz) of the preset's model and its temperature (K)."""
    import h5py

    truth = read_ground_truth(data)
    with h5py.File(data, "r") as f:
        params = json.loads(f["ground_truth"].attrs["parameters"])
    species = sorted(set(truth.species.tolist()), key=["B", "N"].index)
    lat = HarmonicLattice.honeycomb(
        a_A=params["lattice_constant_A"],
        species=species,
        k_nn=params["k_nn"],
        k_nnn=params["k_nnn"],
        t_nn=params["t_nn"],
        t_nnn=params["t_nnn"],
    )
    dense = dense_path(disp.default_path(lat.lattice_vectors_A), lat.lattice_vectors_A)
    return path_average(lat.frequencies_THz(dense.q_frac), dense.distance_invA), params[
        "temperature_K"
    ]


def _fit(atoms: AtomsData, temperature_K: float, bootstrap: int) -> np.ndarray:
    config = disp.DispersionConfig(
        temperature_K=temperature_K, estimator="force-constants", bootstrap=bootstrap
    )
    d = disp.dispersion_from_atoms(atoms, config)
    return d.dense_path.branch_average_THz, d.dense_path.branch_average_err_THz, d


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print (and optionally write) the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("atoms", type=Path, help="ATOMS file of the reconstruction")
    parser.add_argument("data", type=Path, help="the simulated file (ground truth)")
    parser.add_argument("--bootstrap", type=int, default=50, help="bootstrap refits (default 50)")
    parser.add_argument("--doc", type=Path, default=None, help="write the table to this file")
    args = parser.parse_args(argv)

    exact, temperature = exact_averages(args.data)
    truth = read_ground_truth(args.data)
    rec = read_atoms(args.atoms)
    names = species_from_truth(
        rec.mean_positions_A, truth.mean_positions_A, truth.species, rec.basis_index
    )
    rec = dataclasses.replace(rec, species=names.species)
    match = corr.match_atoms(rec.mean_positions_A, truth.mean_positions_A)
    idx = match.truth_index
    configs = truth.positions_A[:, np.where(idx < 0, 0, idx)]
    configs[:, idx < 0] = np.nan
    truth_same = dataclasses.replace(rec, positions_A=configs[:, None])
    u = rec.positions_A - rec.positions_A.mean(axis=0)
    ut = configs - np.nanmean(configs, axis=0)
    ok = idx >= 0
    rms_rec = float(np.sqrt(np.nanmean(u[:, :, ok] ** 2)))
    rms_truth = float(np.sqrt(np.nanmean(ut[:, ok] ** 2)))
    rescaled = dataclasses.replace(
        rec, positions_A=rec.positions_A.mean(axis=0) + u * (rms_truth / rms_rec)
    )
    truth_all = AtomsData(
        positions_A=truth.positions_A[:, None],
        mean_positions_A=truth.mean_positions_A,
        cell_index=truth.cell_index,
        basis_index=truth.basis_index,
        species=truth.species,
        lattice_vectors_A=truth.lattice_vectors_A,
    )
    metrics = analyse_correlations(
        rec, truth=TruthInput(truth, label=str(args.data))
    ).data.truth_metrics

    rows = [("exact (preset's model)", exact, np.full_like(exact, np.nan), "")]
    for label, atoms in (
        ("reconstruction (README pipeline)", rec),
        ("truth, same atoms", truth_same),
        ("reconstruction, rms rescaled to the truth's", rescaled),
        ("truth, all atoms of the supercell", truth_all),
    ):
        avg, err, d = _fit(atoms, temperature, args.bootstrap)
        rows.append((label, avg, err, f"{d.fit_atoms} atoms, {d.boundary}"))
    lines = [
        "| dispersion (force constants, dense Γ–M–K–Γ) | ν̄₁ | ν̄₂ | ν̄₃ | ν̄₄ | / exact | fitted |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, avg, err, block in rows:
        cells = [f"{v:.1f}" + (f" ± {e:.1f}" if np.isfinite(e) else "") for v, e in zip(avg, err)]
        ratio = ", ".join(f"{r:.2f}" for r in avg / exact)
        lines.append(f"| {label} | {' | '.join(cells)} | {ratio} | {block} |")
    lines += [
        "",
        f"rms displacement per direction over the {int(ok.sum())} reconstructed atoms: "
        f"reconstruction {100 * rms_rec:.2f} pm, truth {100 * rms_truth:.2f} pm (amplitude "
        f"factor {rms_truth / rms_rec:.1f}: frequencies scale by it); LSM (mean) "
        f"{metrics.lsm_mean.text('.4f')}, CSM {metrics.csm.text('+.3f')} against the realised "
        "truth.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.doc is not None:
        args.doc.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
