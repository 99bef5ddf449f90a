"""Benchmark: phase-weighted centre-of-mass refinement of many atoms in every state and slice.

Builds ``(states, slices, H, W)`` phase images of Gaussian atoms on a square grid (spacing 14 px,
σ 1.8 px, random sub-pixel displacements per state) and times
:func:`caviar_napari.analysis.atoms.refine_states`, printing wall and CPU time, windows per second
and the rms error against the known positions.

Run: ``python benchmarks/bench_atoms.py [--atoms 2000] [--states 20] [--slices 4]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from caviar_napari.analysis.atoms import RefineConfig, refine_states


def gaussian_stack(
    centres_px: np.ndarray, shape: tuple[int, int], sigma_px: float, half: int = 6
) -> np.ndarray:
    """Sum of unit Gaussians at ``centres_px (..., atom, 2)`` on ``(..., H, W)`` images."""
    lead = centres_px.shape[:-2]
    image = np.zeros((*lead, *shape), dtype=np.float32)
    offsets = np.arange(-half, half + 1)
    base = np.floor(centres_px).astype(int)
    dy = offsets[:, None]
    dx = offsets[None, :]
    iy = base[..., 0, None, None] + dy  # (..., atom, w, 1)
    ix = base[..., 1, None, None] + dx  # (..., atom, 1, w)
    ry = iy - centres_px[..., 0, None, None]
    rx = ix - centres_px[..., 1, None, None]
    values = np.exp(-(ry**2 + rx**2) / (2 * sigma_px**2)).astype(np.float32)
    iy, ix = np.broadcast_arrays(iy, ix)
    flat = image.reshape(-1, shape[0] * shape[1])
    lin = (iy * shape[1] + ix).reshape(int(np.prod(lead, dtype=int)), -1)
    np.add.at(flat, (np.arange(flat.shape[0])[:, None], lin), values.reshape(lin.shape))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=2000)
    parser.add_argument("--states", type=int, default=20)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    spacing, margin = 14.0, 16
    side = int(np.ceil(np.sqrt(args.atoms)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1)
    sites = (grid.reshape(-1, 2)[: args.atoms] * spacing + margin).astype(float)
    size = int(side * spacing + 2 * margin)
    shifts = rng.normal(0.0, 0.4, (args.states, args.slices, args.atoms, 2))
    truth = sites + shifts
    phase = gaussian_stack(truth, (size, size), 1.8)
    d = 0.1  # Å per pixel

    config = RefineConfig(radius_A=0.5)
    refine_states(phase[:1, :1, :64, :64], sites[:4] * d, d, config=config)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    result = refine_states(phase, sites * d, d, config=config)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    windows = args.states * args.slices * args.atoms
    err = result.positions_A / d - truth
    print(
        f"image {size}×{size} px, {args.atoms} atoms × {args.states} states × {args.slices} slices"
    )
    print(f"windows: {windows}, failed: {result.n_failed}")
    print(f"wall {wall:.2f} s, CPU {cpu:.2f} s, {windows / wall:,.0f} windows/s (wall)")
    print(f"rms error vs truth: {np.sqrt(np.nanmean(err**2)):.4f} px")


if __name__ == "__main__":
    main()
