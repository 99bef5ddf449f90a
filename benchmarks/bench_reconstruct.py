"""Benchmark of the multislice forward model + adjoint against the FFT bound.

For each case it times one full loss + gradient evaluation (object, probe and tilt gradients)
of :class:`caviar_napari.core.multislice.MultisliceModel` and, interleaved with it in the same
run, batched complex 2-D FFTs of the same window size and batch shape alone.  The FFT bound is
the throughput the FFTs alone would allow given how many one evaluation needs:

* per pattern · mode · state: ``2S − 1`` FFTs forward (one FFT + one inverse FFT per slice gap,
  one FFT to the detector) and ``2S − 1`` backward (their adjoints), so ``4S − 2``;
* per pattern · mode: 2 (the sub-pixel probe shift's inverse FFT, and its adjoint);
* per call: FFTs of the probe modes and the band limit of the object gradient are left out
  (they do not scale with the number of patterns and are < 1 % here).

Throughput is counted in pattern · mode · state · slice per second; the ratio is
``t_FFT-bound / t_evaluation`` (1 = as fast as the FFTs alone).  Each timing is the minimum of
``--repeat`` interleaved runs, so load from other processes affects both alike.

On the CPU the window passes run as numba kernels when numba is installed
(:mod:`caviar_napari.core.kernels`); ``--compare-numpy`` also times, interleaved in the same
run, the same model on the plain numpy definitions (columns ``numpy s/eval``, ``ratio``).

Run ``python benchmarks/bench_reconstruct.py`` (CPU) or ``… --device gpu``; ``--help`` lists
options.  With ``--optimiser N`` it also times N L-BFGS iterations of
``caviar_napari.core.optimise`` (each iteration costs one or more loss + gradient evaluations,
the line search's).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from caviar_napari.core import optics
from caviar_napari.core.backend import Backend, get_backend
from caviar_napari.core.multislice import MultisliceModel


@dataclass(frozen=True)
class Case:
    """One benchmark size."""

    scan: int  # scan positions per side
    window: int  # detector / probe window Ky = Kx
    states: int  # object states N
    modes: int  # probe modes M
    slices: int  # slices S

    @property
    def label(self) -> str:
        return (
            f"{self.scan}x{self.scan} scan, {self.window}^2 win, "
            f"N={self.states} M={self.modes} S={self.slices}"
        )


DEFAULT_CASES = (
    Case(32, 64, 10, 1, 1),
    Case(32, 64, 10, 1, 4),
    Case(32, 64, 10, 2, 2),
    Case(16, 128, 10, 1, 2),
)
QUICK_CASES = (Case(8, 64, 4, 1, 1), Case(8, 64, 4, 2, 2), Case(6, 128, 2, 1, 2))


def build(case: Case, backend: Backend, batch_size: int | None, seed: int = 0):
    """Model, object, probe and tilt for ``case`` (synthetic data, 200 keV, 0.2 Å pixels)."""
    rng = np.random.default_rng(seed)
    k = case.window
    d = 0.2
    lam = optics.wavelength_A(200e3)
    step = 2.5  # scan step in pixels (0.5 Å)
    grid = np.arange(case.scan) * step
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], axis=1) + k / 2 + 2.3
    size = int(math.ceil(pos.max() + k / 2 + 3))
    probe = optics.probe_modes(optics.make_probe((k, k), d, 200e3, 25.0, 50.0), case.modes)
    shape = (case.states, case.slices, size, size)
    obj = np.exp(0.3j * rng.standard_normal(shape)).astype(np.complex64)
    amp = rng.random((pos.shape[0], k, k)).astype(np.float32) * 1e-2
    model = MultisliceModel(
        backend,
        wavelength_A=lam,
        pixel_size_A=d,
        slice_thickness_A=[2.0] * case.slices,
        positions_px=pos,
        object_shape=(size, size),
        amplitudes=amp,
        batch_size=batch_size,
    )
    xp = backend.xp
    return (
        model,
        xp.asarray(obj, dtype=backend.complex_dtype),
        xp.asarray(probe, dtype=backend.complex_dtype),
        (0.3, -0.2),
    )


def fft_count(case: Case) -> int:
    """FFTs of one loss + gradient evaluation (see the module docstring)."""
    p = case.scan**2
    return p * case.modes * (case.states * (4 * case.slices - 2) + 2)


def time_fft(backend: Backend, shape: tuple[int, ...], reps: int) -> float:
    """Seconds per single 2-D FFT, from ``reps`` in-place batched FFTs of ``shape``."""
    xp = backend.xp
    a = xp.ones(shape, dtype=backend.complex_dtype)
    a = backend.fft2(a, overwrite=True)
    backend.synchronize()
    t0 = time.perf_counter()
    for i in range(reps):
        a = backend.fft2(a, overwrite=True) if i % 2 == 0 else backend.ifft2(a, overwrite=True)
    backend.synchronize()
    return (time.perf_counter() - t0) / (reps * math.prod(shape[:-2]))


def run_case(
    case: Case, backend: Backend, repeat: int, batch_size: int | None, compare_numpy: bool = False
) -> dict:
    model, obj, probe, tilt = build(case, backend, batch_size)
    plain = None
    if compare_numpy:  # the same model on the numpy definitions, timed in turn with the first
        plain = build(case, dataclasses.replace(backend, jit=False), batch_size)[0]
        plain.loss_and_gradient(obj, probe, tilt, frozenset({"object", "probe", "tilt"}))
    want = frozenset({"object", "probe", "tilt"})
    batch = model.batch_size_for(case.states, case.modes, want)
    fft_shape = (case.states, batch, case.modes, case.window, case.window)
    n_fft = fft_count(case)
    reps = max(2, int(n_fft / math.prod(fft_shape[:-2]) / 4))
    model.loss_and_gradient(obj, probe, tilt, want)  # warm-up (plans, allocator)
    time_fft(backend, fft_shape, 2)
    t_eval, t_fft, t_plain = math.inf, math.inf, math.inf
    for _ in range(repeat):
        backend.synchronize()
        t0 = time.perf_counter()
        model.loss_and_gradient(obj, probe, tilt, want)
        backend.synchronize()
        t_eval = min(t_eval, time.perf_counter() - t0)
        t_fft = min(t_fft, time_fft(backend, fft_shape, reps))
        if plain is not None:
            t0 = time.perf_counter()
            plain.loss_and_gradient(obj, probe, tilt, want)
            t_plain = min(t_plain, time.perf_counter() - t0)
    units = case.scan**2 * case.modes * case.states * case.slices
    bound = n_fft * t_fft
    return {
        "case": case,
        "batch": batch,
        "t_eval": t_eval,
        "throughput": units / t_eval,
        "fft_us": t_fft * 1e6,
        "bound_throughput": units / bound,
        "ratio": bound / t_eval,
        "t_numpy": t_plain,
        "ratio_numpy": bound / t_plain,
    }


def run_optimiser(
    case: Case, backend: Backend, iterations: int, batch_size: int | None
) -> tuple[float, float]:
    """Seconds and loss evaluations per L-BFGS iteration of ``core.optimise`` (NaN if absent)."""
    try:
        from caviar_napari.core.optimise import make_optimiser
    except ImportError:
        return math.nan, math.nan
    model, obj, probe, tilt = build(case, backend, batch_size)
    xp = backend.xp
    want = frozenset({"object", "probe", "tilt"})

    def fun(x):
        return model.loss_and_gradient(x["object"], x["probe"], x["tilt"], want)

    x = {"object": obj, "probe": probe, "tilt": xp.asarray(tilt, dtype=backend.real_dtype)}
    opt = make_optimiser("lbfgs", xp=xp, typical={"tilt": 1.0}, state_blocks=("object",))
    f, g = fun(x)
    evals = 0
    t0 = time.perf_counter()
    for _ in range(iterations):
        x, f, g, info = opt.step(fun, x, f, g)
        evals += info.n_evals
    backend.synchronize()
    return (time.perf_counter() - t0) / iterations, evals / iterations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu", "auto"))
    parser.add_argument("--precision", default="single", choices=("single", "double"))
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repeats (min taken)")
    parser.add_argument("--batch-size", type=int, default=None, help="patterns per batch")
    parser.add_argument("--quick", action="store_true", help="small cases (smoke test)")
    parser.add_argument(
        "--optimiser", type=int, default=0, metavar="N", help="also time N L-BFGS iterations"
    )
    parser.add_argument(
        "--compare-numpy",
        action="store_true",
        help="CPU: also time the numpy definitions of the numba kernels, interleaved",
    )
    args = parser.parse_args(argv)
    backend = get_backend(args.device, args.precision)
    cases = QUICK_CASES if args.quick else DEFAULT_CASES
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    kernels = "numba" if backend.name == "cpu" and backend.jit else "numpy/cupy"
    print(
        f"device: {backend.device_info}; precision {args.precision}; fft workers "
        f"{backend.workers}; kernels {kernels}; load average {load}"
    )
    compare = args.compare_numpy and backend.name == "cpu" and backend.jit
    head = (
        f"{'case':<44} {'batch':>5} {'s/eval':>8} {'units/s':>10} {'FFT us':>7} "
        f"{'FFT-bound u/s':>13} {'ratio':>6}"
    )
    if compare:
        head += f" {'numpy s/eval':>12} {'ratio':>6}"
    if args.optimiser:
        head += f" {'s/iter':>7} {'evals/iter':>10}"
    print(head)
    print("-" * len(head))
    for case in cases:
        r = run_case(case, backend, args.repeat, args.batch_size, compare)
        line = (
            f"{case.label:<44} {r['batch']:>5} {r['t_eval']:>8.3f} {r['throughput']:>10.3g} "
            f"{r['fft_us']:>7.2f} {r['bound_throughput']:>13.3g} {r['ratio']:>6.2f}"
        )
        if compare:
            line += f" {r['t_numpy']:>12.3f} {r['ratio_numpy']:>6.2f}"
        if args.optimiser:
            t_it, ev = run_optimiser(case, backend, args.optimiser, args.batch_size)
            line += f" {t_it:>7.3f} {ev:>10.1f}"
        print(line, flush=True)
    print("units = pattern·mode·state·slice; ratio = FFT-bound time / measured time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
