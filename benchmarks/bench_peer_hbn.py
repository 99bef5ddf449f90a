"""Side by side on the static hBN case: caviar and PtyRAD, phase correlation with the truth and
wall time, same data, same machine, same run.

The data: ``caviar simulate hbn-static --cells 4 7 --detector-shape 64 64 --scan 32 32
--scan-step-A 0.4 0.4 --defocus-A 50`` (60 kV, 35 mrad, noise-free; the FINDINGS setting).
The measure: :func:`phase_truth.phase_correlation` (the truth's own grid and field of view).

PtyRAD is not a dependency of caviar: it runs in a separate (scratch) environment given by
``--ptyrad-python`` (a Python with ``ptyrad`` 1.0.0 and a CPU ``torch``; PtyRAD 1.0.0 needs the
one Python-3.12 f-string in ``ptyrad/plotting/basic.py`` rewritten on 3.11). Without it the
PtyRAD half is skipped.  PtyRAD gets the patterns as a 3-D HDF5 array, the calibration as the
real-space pixel, the probe from the same optics (C10 = −Δf), one probe mode, one slice, its
standard learning rates (Adam), batches of 32, no position refinement and no blur constraints,
``--ptyrad-iterations`` iterations; its object is placed in the scan frame from its own crop
positions.

Run::

    python benchmarks/bench_peer_hbn.py DATA.h5 [--iterations 10 30] [--ptyrad-python PY]
        [--padding auto 96x96] [--threads 2]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from phase_truth import phase_correlation, projected_phase, read_truth_phase

from caviar_napari.core import engine
from caviar_napari.data.config import ReconstructionConfig, StageConfig
from caviar_napari.io.dataset import read_stem_h5


def run_caviar(path: str, iterations: int, padding: str) -> dict:
    """One caviar reconstruction (object + probe, one state, one mode); time and accuracy."""
    data = read_stem_h5(path)
    truth = read_truth_phase(path)
    stage = StageConfig(iterations=iterations, slice_thickness_A=4.0)
    cfg = ReconstructionConfig(
        device="cpu", detector_padding=padding, stages=[stage], update_every=0
    ).validate()
    t0 = time.perf_counter()
    state = engine.run_to_end(data, cfg)
    wall = time.perf_counter() - t0
    window = engine.plan_geometry(data, cfg).window
    return {"engine": "caviar", "iterations": iterations, "padding": padding,
            "window": list(window), "wall_s": wall,
            **_correlations(projected_phase(state.object), state.object_origin_A,
                            state.pixel_size_A, state.scan_positions_A, truth)}  # fmt: skip


PTYRAD_PARAMS = """
init_params:
    probe_kv               : {kv}
    probe_conv_angle       : {alpha}
    probe_aberrations      : {{'C10': {c10}}}
    meas_Npix              : {npix}
    pos_N_scan_slow        : {sy}
    pos_N_scan_fast        : {sx}
    pos_scan_step_size     : {step}
    probe_pmode_max        : 1
    obj_Nlayer             : 1
    obj_slice_thickness    : 4
    meas_calibration       : {{'mode': 'dx', 'value': {dx}}}
    meas_permute           : null
    meas_reshape           : [{n}, {npix}, {npix}]
    meas_flipT             : [0, 0, 0]
    pos_scan_affine        : null
    meas_params            : {{'path': '{meas}', 'key': 'meas'}}
model_params:
    update_params:
        obja            : {{'start_iter': 1, 'lr': 5.0e-4, 'end_iter': null}}
        objp            : {{'start_iter': 1, 'lr': 5.0e-4, 'end_iter': null}}
        probe           : {{'start_iter': 1, 'lr': 1.0e-4, 'end_iter': null}}
        probe_pos_shifts: {{'start_iter': null, 'lr': 5.0e-4, 'end_iter': null}}
constraint_params:
    ortho_pmode   : {{'start_iter': 1, 'step': 1, 'end_iter': null}}
    fix_probe_int : {{'start_iter': 1, 'step': 1, 'end_iter': null}}
    obj_zblur     : {{'start_iter': null, 'step': 1, 'end_iter': null, 'obj_type': 'both',
                      'kernel_size': 5, 'std': 1}}
recon_params:
    NITER: {niter}
    BATCH_SIZE: {{'size': 32, 'grad_accumulation': 1}}
    SAVE_ITERS: {niter}
    output_dir: '{out}'
    recon_dir_affixes: ['minimal']
    prefix_time: false
"""


# PtyRAD's API without its command line (which insists on `accelerate`): CPU, one process
PTYRAD_RUNNER = """
import sys, torch
torch.set_num_threads(int(sys.argv[2]))
from ptyrad.params import load_params
from ptyrad.solver import PtyRADSolver
params = load_params(sys.argv[1], validate=True)
PtyRADSolver(params, device=torch.device("cpu"), seed=0, acc=None).run()
"""


def run_ptyrad(path: str, iterations: int, python: str, threads: int) -> dict:
    """One PtyRAD reconstruction in its own environment; time and accuracy."""
    data = read_stem_h5(path)
    truth = read_truth_phase(path)
    sy, sx = data.scan_shape
    npix = data.detector_shape[0]
    work = Path(tempfile.mkdtemp(prefix="ptyrad-"))
    meas = work / "meas.h5"
    with h5py.File(meas, "w") as f:
        f["meas"] = data.intensities.reshape(sy * sx, npix, npix)
    params = work / "params.yaml"
    params.write_text(
        PTYRAD_PARAMS.format(
            kv=data.energy_eV / 1e3,
            alpha=data.convergence_semiangle_mrad,
            c10=-data.defocus_A,
            npix=npix,
            sy=sy,
            sx=sx,
            step=data.scan_step_A[0],
            dx=data.pixel_size_A[0],
            n=sy * sx,
            meas=meas,
            niter=iterations,
            out=str(work / "out") + "/",
        )  # fmt: skip
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [python, "-c", PTYRAD_RUNNER, str(params), str(threads)],
        cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"PtyRAD failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    models = sorted(glob.glob(str(work / "out" / "**" / "model_iter*.hdf5"), recursive=True))
    with h5py.File(models[-1], "r") as f:
        phase = np.asarray(f["optimizable_tensors/objp"])  # (omode, Nlayer, H, W)
        crop = np.asarray(f["model_attributes/crop_pos"], dtype=np.float64)
        shifts = np.asarray(f["optimizable_tensors/probe_pos_shifts"], dtype=np.float64)
        iter_s = float(np.sum(f["iter_times"]))
    phase = phase.sum(axis=1).mean(axis=0)
    dx = data.pixel_size_A
    pos = data.rotated_positions_A().reshape(-1, 2)
    centre = crop + shifts + npix // 2  # probe-centre pixel of each position
    origin = tuple((pos - centre * np.asarray(dx)).mean(axis=0))
    return {"engine": "ptyrad", "iterations": iterations, "window": [npix, npix],
            "wall_s": wall, "iterations_s": iter_s,
            **_correlations(phase, origin, dx, pos, truth)}  # fmt: skip


def _correlations(phase, origin, pixel, pos, truth) -> dict:
    """The phase correlation in the frame the scan positions give, and after the best
    sub-pixel shift (a check that a frame convention does not decide the comparison)."""
    import scipy.optimize

    def corr(shift):
        o = (origin[0] + shift[0], origin[1] + shift[1])
        return phase_correlation(phase, o, pixel, pos, truth)

    best = scipy.optimize.minimize(lambda v: -corr(v), [0.0, 0.0], method="Nelder-Mead",
                                   options={"xatol": 1e-3, "fatol": 1e-7})  # fmt: skip
    return {"phase_corr": corr((0.0, 0.0)), "phase_corr_aligned": -best.fun,
            "best_shift_A": [round(float(v), 4) for v in best.x]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--iterations", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--padding", nargs="+", default=["auto"])
    parser.add_argument("--ptyrad-python", default=None)
    parser.add_argument("--ptyrad-iterations", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    rows = []
    if args.ptyrad_python:
        rows.append(run_ptyrad(args.data, args.ptyrad_iterations, args.ptyrad_python, args.threads))
        print(json.dumps(rows[-1]), flush=True)
    else:
        print("PtyRAD: skipped (no --ptyrad-python)")
    for padding in args.padding:
        for n in args.iterations:
            rows.append(run_caviar(args.data, n, padding))
            print(json.dumps(rows[-1]), flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
