"""``caviar reconstruct``: mixed-object, mixed-probe multislice ptychography of a 4D-STEM file.

::

    caviar reconstruct DATA.h5 --out RECON.h5 [--config CONFIG.yaml] [--device auto|cpu|gpu]
        [--iterations N] [--object-states N] [--probe-modes M] [--slices S]
        [--slice-thickness-A DZ] [--seed K] [--resume RECON.h5] [--checkpoint-every N]

Flags override the configuration file (:func:`caviar_napari.core.config.apply_overrides`:
``--iterations``, ``--probe-modes``, ``--slices`` and ``--slice-thickness-A`` set every stage,
``--object-states`` the last stage). Without ``--config`` the reconstruction is one stage built
from the flags. ``--resume`` continues a checkpoint (or a finished reconstruction with more
iterations) exactly where it stopped, with the configuration stored in it unless ``--config`` is
given. A progress bar goes to stderr and a one-line summary to stdout.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from caviar_napari.core import engine
from caviar_napari.core.config import ReconstructionConfig, apply_overrides, load_yaml
from caviar_napari.core.engine import ReconState
from caviar_napari.io.dataset import STEMDataset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``reconstruct`` sub-command."""
    p = subparsers.add_parser(
        "reconstruct",
        help="multislice ptychography with object states and probe modes (RECON file)",
        description=(
            "Reconstruct the complex object (state, slice, y, x) and the probe modes from a "
            "4D-STEM file by mixed-state multislice ptychography (L-BFGS, staged as in the "
            "configuration). Lengths in Å, angles in mrad."
        ),
    )
    p.add_argument(
        "data", metavar="DATA.h5", help="4D-STEM input (conventions §6 HDF5 or a supported format)"
    )
    p.add_argument("--out", required=True, metavar="RECON.h5", help="output reconstruction file")
    p.add_argument("--config", metavar="CONFIG.yaml", help="configuration file (YAML)")
    p.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), help="compute device (default: auto)"
    )
    p.add_argument("--iterations", type=int, metavar="N", help="iterations of every stage")
    p.add_argument(
        "--object-states", type=int, metavar="N", help="object states (of the last stage)"
    )
    p.add_argument("--probe-modes", type=int, metavar="M", help="probe modes of every stage")
    p.add_argument("--slices", type=int, metavar="S", help="multislice slices of every stage")
    p.add_argument("--slice-thickness-A", type=float, metavar="DZ", help="slice thickness in Å")
    p.add_argument("--seed", type=int, metavar="K", help="random seed (new object states)")
    p.add_argument(
        "--resume", metavar="RECON.h5", help="continue from a checkpoint or reconstruction file"
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="write a checkpoint every N iterations (to OUT with the suffix .checkpoint.h5, "
        "unless the configuration names checkpoint_path)",
    )
    p.set_defaults(func=run)


def _load_dataset(path: str) -> STEMDataset:
    try:
        from caviar_napari.io.readers import load_stem
    except ImportError:
        from caviar_napari.io.dataset import read_stem_h5

        return read_stem_h5(path)
    return load_stem(path)


def build_config(
    args: argparse.Namespace, base: ReconstructionConfig | None
) -> ReconstructionConfig:
    """The configuration: ``--config`` (or ``base``, or the defaults) with the flags over it."""
    if args.config:
        config = load_yaml(args.config)
    elif base is not None:
        config = base
    else:
        config = ReconstructionConfig().validate()
    checkpoint_path = None
    if args.checkpoint_every and not config.checkpoint_path:
        out = Path(args.out)
        checkpoint_path = str(out.with_name(out.stem + ".checkpoint.h5"))
    return apply_overrides(
        config,
        iterations=args.iterations,
        object_states=args.object_states,
        probe_modes=args.probe_modes,
        slices=args.slices,
        slice_thickness_A=args.slice_thickness_A,
        device=args.device,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        checkpoint_path=checkpoint_path,
    )


def run(args: argparse.Namespace) -> int:
    """Run the reconstruction; returns the exit status (errors propagate as CaviarError)."""
    from tqdm import tqdm

    from caviar_napari.io.reconstruction import (
        checkpoint_writer,
        load_reconstruction,
        save_reconstruction,
    )

    dataset = _load_dataset(args.data)
    state: ReconState | None = None
    if args.resume:
        state = load_reconstruction(args.resume)
    config = build_config(args, state.config if state is not None else None)
    if state is not None:
        state.config = config
    start = state.iteration if state is not None else 0
    t0 = time.perf_counter()
    bar = tqdm(
        total=config.total_iterations,
        initial=start,
        file=sys.stderr,
        unit="it",
        desc="reconstruct",
        dynamic_ncols=True,
        disable=None,  # no bar when stderr is not a terminal
    )
    on_checkpoint = checkpoint_writer(config.checkpoint_path)
    gen = engine.run(dataset, config, state=state, on_checkpoint=on_checkpoint)
    try:
        while True:
            try:
                progress = next(gen)
            except StopIteration as stop:
                state = stop.value
                break
            bar.set_postfix_str(f"{progress.stage_name} loss={progress.loss:.4g}", refresh=False)
            bar.update(1)
    finally:
        bar.close()
    save_reconstruction(args.out, state, source=dataset.source)
    elapsed = time.perf_counter() - t0
    final = state.loss[-1] if state.loss else math.nan
    done = state.iteration - start
    print(
        f"caviar reconstruct: {done} iteration{'' if done == 1 else 's'} "
        f"({state.iteration} in total), final loss {final:.6g}, {elapsed:.1f} s, "
        f"object {tuple(state.object.shape)}, probe {tuple(state.probe.shape)} -> {args.out}"
    )
    return 0
