"""Depth-resolved CAVIAR on a simulated hBN bilayer (issue 16, must-shows 1–3).

Runs, through the ``caviar`` command line (every command is printed and recorded):

1. ``caviar simulate PRESET`` (``hbn-bilayer-gap``: two layers 120 Å apart, the lower shifted by
   a/3 and with its own, shorter-ranged springs; ``hbn-twisted-bilayer``: the lower layer turned
   by 13.17°, same springs);
2. ``caviar reconstruct`` with the staged recipe (stage 1: one state, object + probe, S slices
   of dz covering the gap; stage 2: N object states, object only), with checkpoints so that an
   interrupted run resumes;
3. ``caviar atoms --zrange upper=0:S/2 --zrange lower=S/2:S`` (each range detected, refined and
   indexed in its own lattice frame);
4. ``caviar diagnostics`` with the ATOMS file (information limit, k_z power, r–z maps);

then, with :mod:`caviar_napari.analysis.depth`: the phase of each z-range against each layer's
true phase (Pearson r over the scanned area), the match of ranges to layers, and each range's
correlations (its occupied slices) against its own layer's realised Green's tensor and against
the other layer's carried into its frame (LSM/CSM over self + nearest-neighbour pairs, ρ_nn),
and the bond-frame shell averages of both ranges.  Results go to ``WORKDIR/results.json`` and a
markdown summary on stdout (docs/depth.md quotes them).

Run::

    python benchmarks/bench_bilayer_depth.py --workdir /tmp/bilayer            # full size
    python benchmarks/bench_bilayer_depth.py --preset hbn-twisted-bilayer --workdir /tmp/tw
    python benchmarks/bench_bilayer_depth.py --scan 8 --step 1 --configs 4 --states 4 --iter2 30

``--reuse`` keeps the files already made in WORKDIR (a stopped reconstruction resumes from its
checkpoint).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import time
from pathlib import Path

import h5py
import numpy as np

from caviar_napari.analysis import depth
from caviar_napari.cli import main as caviar
from caviar_napari.core.optics import wavelength_A
from caviar_napari.io.atoms_file import read_atoms_zranges
from caviar_napari.io.reconstruction import load_reconstruction
from caviar_napari.io.truth_layers import read_truth_layers
from caviar_napari.simulate.thick import depth_of_field_A

STAGES = """\
device: {device}
seed: 0
update_every: 0
detector_padding: {padding}
stages:
  - name: mean object
    iterations: {iter1}
    object_states: 1
    probe_modes: 1
    slices: {slices}
    slice_thickness_A: {dz}
    refine: [object, probe]
  - name: object states
    iterations: {iter2}
    object_states: {states}
    probe_modes: 1
    slices: {slices}
    slice_thickness_A: {dz}
    refine: [object]
    missing_wedge: {wedge}
    missing_wedge_beta: {wedge_beta}
    state_noise_rad: {state_noise}
    state_model: {state_model}
    remove_state_shifts: {remove_shifts}
"""


def run(argv: list[str], log: list[str]) -> float:
    """Run one ``caviar`` command; returns its wall time (s)."""
    line = "caviar " + shlex.join(argv)
    print(f"$ {line}", flush=True)
    log.append(line)
    t0 = time.perf_counter()
    status = caviar(argv)
    if status != 0:
        raise SystemExit(f"command failed with status {status}: {line}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="hbn-bilayer-gap",
                   choices=("hbn-bilayer-gap", "hbn-twisted-bilayer"))  # fmt: skip
    p.add_argument("--workdir", type=Path, default=Path("bilayer_depth"))
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--scan", type=int, default=16, help="scan points per side")
    p.add_argument("--step", type=float, default=0.5, help="scan step, Å")
    p.add_argument("--configs", type=int, default=10, help="thermal configurations")
    p.add_argument("--states", type=int, default=10, help="object states of stage 2")
    p.add_argument("--iter1", type=int, default=60)
    p.add_argument("--iter2", type=int, default=100)
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--dz", type=float, default=40.0, help="slice thickness, Å")
    p.add_argument("--wedge", type=float, default=0.0, help="missing-wedge weight of stage 2")
    p.add_argument("--wedge-beta", type=float, default=1.0, help="missing-wedge cone slope β")
    p.add_argument(
        "--state-noise", type=float, default=0.005, help="phase noise of new states, rad"
    )
    p.add_argument(
        "--state-model",
        default="free",
        choices=("free", "displacements"),
        help="stage 2's object states: free objects, or the mean object with its atoms displaced "
        "(then the states may shift rigidly, as in resources/displaced-states.yaml)",
    )
    p.add_argument("--padding", default="auto", choices=("auto", "none"))
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    wd = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    data, recon, atoms = wd / "data.h5", wd / "recon.h5", wd / "atoms.h5"
    diag, cfg = wd / "diag.h5", wd / "stages.yaml"
    log: list[str] = []
    times: dict[str, float] = {}
    over = [] if args.reuse else ["--overwrite"]
    if not (args.reuse and data.exists()):
        times["simulate"] = run(["simulate", args.preset, "--out", str(data), "--scan",
                                 str(args.scan), str(args.scan), "--step", str(args.step),
                                 "--configs", str(args.configs),
                                 *over], log)  # fmt: skip
    remove_shifts = "false" if args.state_model == "displacements" else "true"
    cfg.write_text(STAGES.format(**vars(args), remove_shifts=remove_shifts))
    if not (args.reuse and recon.exists()):
        checkpoint = recon.with_name(recon.stem + ".checkpoint.h5")
        resume = ["--resume", str(checkpoint)] if args.reuse and checkpoint.exists() else []
        times["reconstruct"] = run(["reconstruct", str(data), "--out", str(recon), "--config",
                                    str(cfg), "--checkpoint-every", "10", *resume, *over],
                                   log)  # fmt: skip
    half = args.slices // 2
    ranges_spec = {"upper": f"0:{half}", "lower": f"{half}:{args.slices}"}
    zr = [a for k, v in ranges_spec.items() for a in ("--zrange", f"{k}={v}")]
    times["atoms"] = run(["atoms", str(recon), "--out", str(atoms), *zr, "--overwrite"], log)
    times["diagnostics"] = run(["diagnostics", str(recon), "--out", str(diag), "--data",
                                str(data), "--atoms", str(atoms), "--json", "--overwrite"],
                               log)  # fmt: skip

    state = load_reconstruction(recon)
    layers = read_truth_layers(data)
    with h5py.File(data, "r") as f:
        g = f["ground_truth"]
        origin, pixel = g.attrs["phase_origin_A"], g.attrs["phase_pixel_size_A"]
        mean = g["mean_positions_A"][()]
        box = tuple(g.attrs["box_A"][:2])
        energy = f.attrs["energy_eV"]
        alpha = f.attrs["convergence_semiangle_mrad"]
    region = np.stack([state.scan_positions_A.min(0), state.scan_positions_A.max(0)])
    results: dict = {
        "preset": args.preset,
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "commands": log,
        "times_s": times,
        "depth_of_field_A": depth_of_field_A(energy, alpha),
        "gap_A": float(layers[1].entrance_z_A - layers[0].entrance_z_A),
        "machine": f"{platform.processor() or platform.machine()}, {platform.platform()}",
        "truth_phase_r_upper_lower": depth.phase_correlation(
            layers[0].phase, pixel, origin, layers[1].phase, pixel, origin, region
        ),
        "phase": {},
        "per_slice_phase": [],
        "correlations": {},
    }
    band = 2 * alpha * 1e-3 / wavelength_A(energy)  # the double-aperture frequency 2α/λ
    for j in range(state.object.shape[1]):
        img = np.angle(state.object[:, j]).mean(axis=0)
        results["per_slice_phase"].append(
            [
                depth.phase_correlation(
                    img, state.pixel_size_A, state.object_origin_A, ly.phase, pixel, origin, region
                )
                for ly in layers
            ]  # fmt: skip
        )
    for label, spec in ranges_spec.items():
        img = depth.zrange_phase(
            state.object, depth.zrange_from_spec(spec, state.slice_thickness_A)
        )
        results["phase"][label] = {
            ly.name: {
                "r": depth.phase_correlation(img, state.pixel_size_A, state.object_origin_A,
                                             ly.phase, pixel, origin, region),
                "r_band_limited": depth.phase_correlation(
                    img, state.pixel_size_A, state.object_origin_A, ly.phase, pixel, origin,
                    region, band_limit_invA=band),
            }
            for ly in layers
        }  # fmt: skip
    ranges = read_atoms_zranges(atoms)
    matches = depth.match_layers(ranges, layers, mean, box)
    results["matches"] = [m.__dict__ for m in matches]
    by_name = {ly.name: ly for ly in layers}
    for m in matches:
        z = ranges[m.zrange]
        corr = depth.zrange_correlations(z)
        frame = by_name[m.layer]
        entry = {"layer": m.layer, "occupied_slices": corr.slices.tolist(),
                 "n_atoms": int(z.n_atoms), "excluded": int(corr.excluded_atoms.size)}  # fmt: skip
        for ly in layers:
            c = depth.compare_with_layer(corr, frame, ly, mean, box)
            entry[f"vs_{ly.name}"] = {
                "csm_nn": c.similarity.csm,
                "lsm_nn_mean": c.similarity.lsm_mean,
                "rho_nn_reconstructed": c.rho_nn_reconstructed,
                "rho_nn_truth": c.rho_nn_truth,
                "n_matched": c.n_matched,
            }
        sh = depth.shell_averages(corr, n_shells=2)
        entry["shells"] = {k: np.asarray(v).tolist() for k, v in sh.__dict__.items()}
        results["correlations"][m.zrange] = entry
    results["diagnostics"] = json.loads((wd / "diag.json").read_text())
    (wd / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")

    print(f"\n## {args.preset}: depth of field {results['depth_of_field_A']:.1f} Å, gap "
          f"{results['gap_A']:.0f} Å; true phases of the two layers correlate at "
          f"{results['truth_phase_r_upper_lower']:+.3f}\n")  # fmt: skip
    print("| z-range | r with upper truth | r with lower truth | (band-limited to 2α/λ) |")
    print("|---|---|---|---|")
    for label, row in results["phase"].items():
        print(f"| {label} {ranges_spec[label]} | {row['upper']['r']:+.3f} | "
              f"{row['lower']['r']:+.3f} | {row['upper']['r_band_limited']:+.3f} / "
              f"{row['lower']['r_band_limited']:+.3f} |")  # fmt: skip
    print("\n| z-range → layer | CSM nn own | CSM nn other | LSM own | ρ_nn rec | ρ_nn own truth "
          "| ρ_nn other truth | atoms matched |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for label, e in results["correlations"].items():
        own = e[f"vs_{e['layer']}"]
        other = next(v for k, v in e.items() if k.startswith("vs_") and v is not own)
        print(f"| {label} → {e['layer']} | {own['csm_nn']:.3f} | {other['csm_nn']:.3f} | "
              f"{own['lsm_nn_mean']:.2f} | {own['rho_nn_reconstructed']:+.3f} | "
              f"{own['rho_nn_truth']:+.3f} | {other['rho_nn_truth']:+.3f} | "
              f"{own['n_matched']}/{e['n_atoms']} |")  # fmt: skip
    shells = {label: e["shells"] for label, e in results["correlations"].items()}
    if len(shells) == 2:
        (la, a), (lb, b) = shells.items()
        print(f"\n| shell | distance (Å) | {la}: long. / trans. (pm²) | {lb}: long. / trans. "
              "(pm²) | difference / combined s.e. |")  # fmt: skip
        print("|---|---|---|---|---|")
        for i, name in enumerate(("self", "1st neighbours", "2nd neighbours")[: len(a["counts"])]):
            diffs = [
                (a[k][i] - b[k][i]) / np.hypot(a[f"{k[:-3]}_stderr_A2"][i],
                                               b[f"{k[:-3]}_stderr_A2"][i])
                for k in ("longitudinal_A2", "transverse_A2")
            ]  # fmt: skip
            cells = [
                f"{1e4 * d['longitudinal_A2'][i]:.2f} ± {1e4 * d['longitudinal_stderr_A2'][i]:.2f}"
                f" / {1e4 * d['transverse_A2'][i]:.2f} ± {1e4 * d['transverse_stderr_A2'][i]:.2f}"
                for d in (a, b)
            ]
            print(f"| {name} | {a['distance_A'][i]:.2f} | {cells[0]} | {cells[1]} | "
                  f"{diffs[0]:+.1f} / {diffs[1]:+.1f} |")  # fmt: skip
    print(f"\ntimes (s): {json.dumps({k: round(v, 1) for k, v in times.items()})}")


if __name__ == "__main__":
    main()
