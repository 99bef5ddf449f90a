"""``caviar diagnostics`` on a multislice reconstruction of correlated Si [110] (issue 16).

1. ``caviar simulate si110-correlated`` (200 kV, 30 mrad; a 1.5 nm slab of 4 cells along [110],
   correlated 3D harmonic vibrations, 10 configurations);
2. ``caviar reconstruct`` one object state, object + probe, with S slices of dz spanning more
   than the slab (default 12 × 10 Å = 120 Å, longer than the optics' depth resolution at the Si
   reflections, so that the k_z fall-off can be sampled);
3. ``caviar diagnostics`` with the Si reflections (111) = √3/a, (220) = √8/a, (004) = 4/a, on
   the scanned area widened by 4 Å (``--margin-A``; the demo scan is small).

The measured information limit d is compared with the double-aperture limit λ/(2α) and the
detector limit λ/(α + θ_det), and the measured depth resolution Δz = 1/k_z,half of each
reflection with the optics' Δz(q) = 2/(q (2α − λq)) and the depth of field 2λ/α²
(docs/depth.md).  Results: ``WORKDIR/diag.json`` and a summary on stdout.

Run::

    python benchmarks/bench_si110_diagnostics.py --workdir /tmp/si110diag
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import time
from pathlib import Path

from caviar_napari.cli import main as caviar

A_SI = 5.431

STAGE = """\
device: {device}
seed: 0
update_every: 0
stages:
  - name: mean object
    iterations: {iterations}
    object_states: 1
    probe_modes: 1
    slices: {slices}
    slice_thickness_A: {dz}
    refine: [object, probe]
"""


def run(argv: list[str]) -> float:
    """Run one ``caviar`` command (printed); returns its wall time (s)."""
    print("$ caviar " + shlex.join(argv), flush=True)
    t0 = time.perf_counter()
    if caviar(argv) != 0:
        raise SystemExit(f"command failed: caviar {shlex.join(argv)}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("si110_diagnostics"))
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--scan", type=int, default=12)
    p.add_argument("--configs", type=int, default=10)
    p.add_argument("--slices", type=int, default=12)
    p.add_argument("--dz", type=float, default=10.0)
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--margin", type=float, default=4.0, help="widen the analysed scanned area by this, Å"
    )
    args = p.parse_args()
    wd = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    data, recon, diag, cfg = wd / "data.h5", wd / "recon.h5", wd / "diag.h5", wd / "stage.yaml"
    over = [] if args.reuse else ["--overwrite"]
    times = {}
    if not (args.reuse and data.exists()):
        times["simulate"] = run(["simulate", "si110-correlated", "--out", str(data), "--scan",
                                 str(args.scan), str(args.scan), "--configs", str(args.configs),
                                 *over])  # fmt: skip
    cfg.write_text(STAGE.format(**vars(args)))
    if not (args.reuse and recon.exists()):
        times["reconstruct"] = run(["reconstruct", str(data), "--out", str(recon), "--config",
                                    str(cfg), *over])  # fmt: skip
    q = [math.sqrt(3) / A_SI, math.sqrt(8) / A_SI, 4 / A_SI]
    times["diagnostics"] = run(["diagnostics", str(recon), "--out", str(diag), "--data",
                                str(data), "--json", "--overwrite", "--margin-A",
                                str(args.margin), "--reflection-invA",
                                *(f"{v:.4f}" for v in q)])  # fmt: skip
    n = json.loads((wd / "diag.json").read_text())
    print(f"\ntimes (s): {json.dumps({k: round(v, 1) for k, v in times.items()})}")
    print(f"\n| quantity | measured | optics |\n|---|---|---|\n"
          f"| information limit d | {n['information_limit_pm']:.1f} pm "
          f"({n['d_over_wavelength']:.2f} λ{', bound' if n['information_bound'] else ''}) | "
          f"λ/(2α) = {100 * n['double_aperture_limit_A']:.1f} pm; λ/(α + θ_det) = "
          f"{100 * n['detector_limit_A']:.1f} pm |")  # fmt: skip
    for r, name in zip(n["reflections"], ("(111)", "(220)", "(004)")):
        word = {"": "", "at most": "≤ ", "at least": "≥ "}[r["bound"]]
        bf, ss = r["optics_dz_A"], r["single_scattering_dz_A"]
        print(f"| depth resolution Si {name}, ring q = {r['q_invA']:.3f} 1/Å | "
              f"{word}{r['dz_A']:.0f} Å | bright field 2/(q(2α − λq)) = {bf:.0f} Å; "
              f"single scattering 2/(q(2α + λq)) = {ss:.0f} Å |")  # fmt: skip
    print(f"| depth of field | | 2λ/α² = {n['depth_of_field_A']:.1f} Å |")


if __name__ == "__main__":
    main()
