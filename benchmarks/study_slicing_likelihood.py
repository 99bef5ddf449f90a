"""The paper's Fig. S1 test: multiple scattering outweighs the thermal signal, even in a thin slab.

Simulates the correlated Si [110] preset (``si110-correlated``: a 1.5 nm slab, 200 kV, 30 mrad,
10 configurations of a 3D harmonic model) with the same configurations (same seed) and slice
thicknesses from fine to a single slice, plus the fine-sliced Einstein dataset (independent
displacements, rms matched per direction to the harmonic model's) and the static one, and
compares every dataset with the fine-sliced correlated one by the Gaussian log-likelihood of the
amplitudes, the project's data loss (conventions §2):

    L(a, b) = Σ_p,k (√I_a − √I_b)² / Σ_p,k I_a     (arbitrary units, 0 for identical data)

The paper's finding is that the slicing error of an undersampled multislice model is larger
than the difference between correlated and uncorrelated vibrations; this study measures both
on our presets, and draws the position-averaged patterns' differences (PACBED) of
correlated − Einstein, correlated − coarsely sliced, correlated − static (Fig. S1 b–d).

Run::

    python benchmarks/study_slicing_likelihood.py --workdir /tmp/s1 [--scan 6] [--configs 10]

Writes ``WORKDIR/s1.json`` (numbers) and ``WORKDIR/s1.png`` (figure; matplotlib object API).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from caviar_napari.simulate.presets import preset_config, simulate, thermal_ensemble


def likelihood(a: np.ndarray, b: np.ndarray) -> float:
    """Gaussian amplitude log-likelihood (the loss of conventions §2) of ``b`` given ``a``."""
    return float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) / np.sum(a))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("slicing_likelihood"))
    p.add_argument("--scan", type=int, default=6)
    p.add_argument("--configs", type=int, default=10)
    p.add_argument("--thickness-cells", type=int, default=4)
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    base = {
        "scan_shape": (args.scan, args.scan),
        "n_configs": args.configs,
        "thickness_cells": args.thickness_cells,
        "truth_slices": 1,
    }
    fine_cfg = preset_config("si110-correlated", **base)
    h = fine_cfg.lattice_constant / math.sqrt(2.0)
    box_z = args.thickness_cells * h
    # atoms sit at h/8 + j h/2: slices of h/4, h/2, h, 2h, … never cut through an atom
    thicknesses = [h / 4, h / 2, h, 2 * h, box_z]
    rms = float(np.sqrt(np.mean(np.diag(thermal_ensemble(fine_cfg).green_model_A2))))
    datasets: dict[str, np.ndarray] = {}
    timing = {}
    for dz in thicknesses:
        t0 = time.perf_counter()
        cfg = preset_config("si110-correlated", slice_thickness_A=dz, **base)
        datasets[f"correlated dz={dz:.2f}"] = simulate(cfg).dataset.intensities.astype(float)
        timing[f"correlated dz={dz:.2f}"] = time.perf_counter() - t0
        print(f"simulated dz = {dz:.2f} Å in {timing[f'correlated dz={dz:.2f}']:.0f} s", flush=True)
    fine = datasets[f"correlated dz={thicknesses[0]:.2f}"]
    fine_dz = thicknesses[0]
    einstein = simulate(
        preset_config("si110-correlated", slice_thickness_A=fine_dz, thermal_model="einstein",
                      einstein_rms_A={"Si": rms}, **base)
    ).dataset.intensities.astype(float)  # fmt: skip
    static = simulate(
        preset_config("si110-correlated", slice_thickness_A=fine_dz, thermal_model="static",
                      **{**base, "n_configs": 1})
    ).dataset.intensities.astype(float)  # fmt: skip
    result = {
        "preset": "si110-correlated",
        "thickness_A": box_z,
        "scan": args.scan,
        "configs": args.configs,
        "einstein_rms_A": rms,
        "fine_slice_A": thicknesses[0],
        "likelihood_vs_fine_correlated": {
            name: likelihood(fine, d) for name, d in datasets.items()
        },
        "likelihood_einstein_vs_correlated": likelihood(fine, einstein),
        "likelihood_static_vs_correlated": likelihood(fine, static),
        "simulate_s": timing,
    }
    (args.workdir / "s1.json").write_text(json.dumps(result, indent=2) + "\n")

    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.6), layout="constrained")
    axes = fig.subplots(1, 4)
    dzs = thicknesses[1:]
    vals = [result["likelihood_vs_fine_correlated"][f"correlated dz={v:.2f}"] for v in dzs]
    axes[0].semilogy(dzs, vals, "o-", color="C3", label="correlated, coarser slices")
    axes[0].axhline(result["likelihood_einstein_vs_correlated"], color="grey", ls="--",
                    label="correlated vs Einstein (fine)")  # fmt: skip
    axes[0].set_xlabel("slice thickness (Å)")
    axes[0].set_ylabel("Gaussian log-likelihood vs fine correlated (a.u.)")
    axes[0].legend(fontsize=7)
    pacbed = {k: v.mean(axis=(0, 1)) for k, v in
              {"fine": fine, "einstein": einstein, "static": static,
               "coarse": datasets[f"correlated dz={thicknesses[-2]:.2f}"]}.items()}  # fmt: skip
    panels = (("correlated − Einstein", pacbed["fine"] - pacbed["einstein"]),
              (f"correlated − correlated dz={thicknesses[-2]:.1f} Å",
               pacbed["fine"] - pacbed["coarse"]),
              ("correlated − static", pacbed["fine"] - pacbed["static"]))  # fmt: skip
    scale = max(np.abs(d).max() for _, d in panels)
    for ax, (title, diff) in zip(axes[1:], panels):
        ax.imshow(diff, cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.savefig(args.workdir / "s1.png", dpi=110)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
