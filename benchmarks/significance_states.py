"""Benchmark: how many nearest-neighbour correlations are significant, against the truth's own.

For each reconstruction (an ATOMS file and the simulated file it came from), the exact test of
zero correlation that ``caviar correlations`` prints is run twice on the same atoms: on the
reconstructed displacements, and on the realised displacements of the simulated configurations
(the truth, one state per configuration).  A single 2 × 2 block of 10 states is significant at
2σ about a fifth of the time even for the true correlated model (docs/benchmarks/
correlation-errors.md), so the reconstruction's count is only meaningful beside the truth's.

Run: ``PYTHONPATH=. python benchmarks/significance_states.py ATOMS.h5 DATA.h5 [ATOMS.h5 DATA.h5
...] [--doc FILE.md]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import h5py
from _doc import write_page

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.correlation_analysis import (
    CorrelationConfig,
    TruthInput,
    analyse_correlations,
)
from caviar_napari.io.atoms_file import read_atoms
from caviar_napari.io.correlations_file import read_ground_truth


def rows(atoms_path: Path, data_path: Path) -> list[str]:
    """Two table rows (uniform offset kept, subtracted): the data, states, and the significant
    blocks of reconstruction and truth."""
    truth = read_ground_truth(data_path)
    rec = read_atoms(atoms_path)
    idx = corr.match_atoms(rec.mean_positions_A, truth.mean_positions_A).truth_index
    if (idx < 0).any():
        raise SystemExit(f"{atoms_path}: {int((idx < 0).sum())} atoms not matched to the truth")
    same = dataclasses.replace(rec, positions_A=truth.positions_A[:, idx][:, None])
    with h5py.File(data_path, "r") as f:
        preset = json.loads(f["ground_truth"].attrs["parameters"])["preset"]
    out = []
    for subtract in (False, True):
        config = CorrelationConfig(subtract_offset=subtract)
        analysis = analyse_correlations(rec, config, TruthInput(truth, label=str(data_path)))
        sig, n, csig, nc = analysis.neighbours.counts()
        tsig, tn, tcsig, tnc = analyse_correlations(same, config).neighbours.counts()
        m = analysis.data.truth_metrics
        out.append(
            f"| {preset} | {rec.positions_A.shape[0]} | {truth.positions_A.shape[0]} | "
            f"{'subtracted' if subtract else 'kept'} | "
            f"{sig} of {n} ({100 * sig / n:.0f} %) | {tsig} of {tn} ({100 * tsig / tn:.0f} %) | "
            f"{csig} of {nc} | {tcsig} of {tnc} | {m.csm.text('.3f')} | {m.lsm_mean.text('.2f')} |"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    """Print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+", help="ATOMS.h5 DATA.h5 pairs")
    parser.add_argument("--doc", type=Path, default=None, help="write the table to this page")
    args = parser.parse_args(argv)
    if len(args.files) % 2:
        parser.error("give ATOMS.h5 DATA.h5 pairs")
    lines = [
        "Data: `caviar simulate PRESET --n-configs N --out DATA.h5`, `caviar reconstruct DATA.h5 "
        "--out RECON.h5 --config resources/displaced-states.yaml --object-states N`, `caviar "
        "atoms RECON.h5 --out ATOMS.h5` (the README pipeline; N = 10 is the preset's own).  "
        "Uniform offset: kept (the default of `caviar correlations`) or subtracted "
        "(`--subtract-offset`), for reconstruction and truth alike.",
        "",
        "| preset | states | configurations | uniform offset | nn blocks significant at 2σ, "
        "reconstruction | the same, truth | unit-cell classes significant, reconstruction | "
        "the same, truth | CSM | LSM |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a, d in zip(args.files[0::2], args.files[1::2]):
        lines += rows(a, d)
    print("\n".join(lines))
    if args.doc is not None:
        write_page(
            args.doc,
            "Significant nearest-neighbour correlations, reconstruction against truth",
            __file__,
            __doc__,
            lines,
        )


if __name__ == "__main__":
    main()
