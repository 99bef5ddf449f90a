"""``caviar reconstruct``: mixed-object, mixed-probe multislice ptychography of a 4D-STEM file.

::

    caviar reconstruct DATA.h5 --out RECON.h5 [--config CONFIG.yaml] [--device auto|cpu|gpu]
        [--iterations N] [--object-states N] [--state-model free|displacements]
        [--probe-modes M] [--slices S] [--slice-thickness-A DZ] [--seed K] [--resume RECON.h5]
        [--checkpoint-every N] [--cluster local:N|tcp://HOST:PORT] [--dry-run] [--overwrite]

Flags override the configuration file (:func:`caviar_napari.data.config.apply_overrides`:
``--iterations`` is the total, shared over the stages like their own iterations; ``--probe-modes``,
``--slices`` and ``--slice-thickness-A`` set every stage, ``--object-states`` and
``--state-model`` the last stage).
Without ``--config`` the recommended two-stage recipe is used
(:func:`caviar_napari.data.config.recommended_stages`: a mean object with a coherent probe and a
fitted source size, then the object states; 50 + 100 iterations at most, each stage ending earlier
by its stopping rule). ``--resume`` continues a checkpoint (or a finished reconstruction with more
iterations) exactly where it stopped, with the configuration stored in it unless ``--config`` is
given. A progress bar goes to stderr and a one-line summary to stdout. The work is done by
:func:`caviar_napari.workflows.reconstruct.run_reconstruct`: the output (and the checkpoint file)
is checked before the reconstruction starts, ``--iterations 0`` is an error, and Ctrl-C says where
the last checkpoint is and how to resume it (or how to keep the progress next time).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from caviar_napari.cli._common import add_overwrite, print_summary
from caviar_napari.data.config import (
    PRECISIONS,
    REFINABLE,
    STATE_MODELS,
    state_penalty_from_text,
)
from caviar_napari.workflows.reconstruct import ReconstructOptions, run_reconstruct


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
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="floating-point precision of every stage (default: the configuration's, single); "
        "double when a states stage stopped at the limit of single precision (resume with it)",
    )
    p.add_argument(
        "--iterations",
        type=int,
        metavar="N",
        help="total iterations, shared over the stages like their own (default recipe: 50 + 100)",
    )
    p.add_argument(
        "--object-states", type=int, metavar="N", help="object states (of the last stage)"
    )
    p.add_argument(
        "--state-model",
        choices=STATE_MODELS,
        help="object states of the last stage: free complex objects (the paper's) or the mean "
        "object with its atoms displaced (two numbers per atom and state; docs/conventions.md §2)",
    )
    p.add_argument(
        "--state-penalty",
        type=_weight_or_auto,
        metavar="auto|λ",
        help="penalty on the last stage's object states' deviations from their mean, which keeps "
        "them from fitting counting noise: a weight λ ≥ 0 (1: as firm as the data hold the mean "
        "object), or auto: chosen by the held-out patterns (docs/conventions.md §2)",
    )
    p.add_argument("--probe-modes", type=int, metavar="M", help="probe modes of every stage")
    p.add_argument("--slices", type=int, metavar="S", help="multislice slices of every stage")
    p.add_argument("--slice-thickness-A", type=float, metavar="DZ", help="slice thickness in Å")
    p.add_argument("--seed", type=int, metavar="K", help="random seed (new object states)")
    p.add_argument(
        "--refine",
        metavar="BLOCKS",
        help="comma-separated blocks every stage refines, e.g. object,probe,positions "
        f"(of: {', '.join(REFINABLE)}); replaces the configuration's",
    )
    p.add_argument(
        "--refine-positions",
        action="store_true",
        help="refine the scan positions in every stage that refines the object: a shift of "
        "each (at most position_bound_A, default 1 Å), a global affine map and a linear drift; "
        "the refined positions go into the output",
    )
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
    p.add_argument(
        "--cluster",
        metavar="local:N|tcp://HOST:PORT",
        help="evaluate on a Dask cluster, data-parallel over scan positions: local:N starts N "
        "worker processes here, tcp://HOST:PORT joins a running scheduler (dask-cuda, "
        "dask-jobqueue; docs/distributed.md)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the memory plan (where the data and the L-BFGS history go, bytes per part "
        "and device) and exit",
    )
    add_overwrite(p)
    p.set_defaults(func=run)


def _weight_or_auto(text: str) -> float | str:
    """``auto`` or a number (argparse names the option when it is neither)."""
    value = state_penalty_from_text(text)
    if isinstance(value, str) and value != "auto":
        raise argparse.ArgumentTypeError(f"expected auto or a number, got {text!r}")
    return value


def options_from_args(args: argparse.Namespace) -> ReconstructOptions:
    """The workflow options of parsed ``caviar reconstruct`` arguments."""

    def path(value: str | None) -> Path | None:
        return None if value is None else Path(value)

    return ReconstructOptions(
        data=Path(args.data),
        out=Path(args.out),
        config=path(args.config),
        device=args.device,
        precision=args.precision,
        iterations=args.iterations,
        object_states=args.object_states,
        state_model=args.state_model,
        state_penalty=args.state_penalty,
        probe_modes=args.probe_modes,
        slices=args.slices,
        slice_thickness_A=args.slice_thickness_A,
        seed=args.seed,
        refine=None if args.refine is None else tuple(b.strip() for b in args.refine.split(",")),
        refine_positions=args.refine_positions,
        resume=path(args.resume),
        checkpoint_every=args.checkpoint_every,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
        cluster=args.cluster,
    )


def run(args: argparse.Namespace) -> int:
    """Run the reconstruction; returns the exit status (errors propagate as CaviarError)."""
    from tqdm import tqdm

    bar = None

    def on_progress(progress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(
                total=progress.total_iterations,
                initial=progress.iteration - 1,
                file=sys.stderr,
                unit="it",
                desc="reconstruct",
                dynamic_ncols=True,
                disable=None,  # no bar when stderr is not a terminal
            )
        bar.set_postfix_str(f"{progress.stage_name} loss={progress.loss:.4g}", refresh=False)
        bar.update(1)

    try:
        summary = run_reconstruct(options_from_args(args), on_progress=on_progress)
    finally:
        if bar is not None:
            bar.close()
    return print_summary("reconstruct", summary)
