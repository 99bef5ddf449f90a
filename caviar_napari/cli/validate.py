"""``caviar validate``: the simulated validation study (the logic of the paper's Fig. 2).

::

    caviar validate [--size test|cpu|gpu] [--device cpu|gpu|auto] [--seed K]
        [--positions log|truth] [--temperature K] [--dose E_PER_A2] [--workdir DIR] [--reuse]
        [--cases KEY ...] [--psc-modes M ...] [--control] [--doc FILE.md [--images DIR]]

Runs :func:`caviar_napari.workflows.study.run_study` — simulate → reconstruct (two stages) →
atoms → correlations against the ground truth, for static, Einstein, correlated and correlated +
PSC hBN — and prints the tables.  With ``--doc`` the tables and two figures are written into a
Markdown document (only its generated section for this size is replaced).
``benchmarks/reproduce_fig2.py`` is this command with ``--doc docs/validation.md``.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from pathlib import Path

from caviar_napari.io.outputs import check_location

__all__ = ["add_arguments", "add_parser", "command_line", "run", "run_validation"]


def add_arguments(
    p: argparse.ArgumentParser,
    *,
    doc_default: Path | None = None,
    images_default: Path | None = None,
) -> None:
    """The options of the study (shared with ``benchmarks/reproduce_fig2.py``)."""
    from caviar_napari.workflows.study_config import SIZES, START_POSITIONS

    p.add_argument("--size", choices=sorted(SIZES), default="cpu", help="study size (default cpu)")
    p.add_argument(
        "--device",
        choices=("cpu", "gpu", "auto"),
        default=None,
        help="reconstruction device (default: cpu, or auto for --size gpu)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of simulations and reconstructions")
    p.add_argument(
        "--positions",
        choices=START_POSITIONS,
        default="log",
        help="start positions: LoG on the reconstruction (default) or true sites",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        metavar="K",
        help="specimen temperature (default: the presets' 300 K)",
    )
    p.add_argument(
        "--dose",
        type=float,
        default=None,
        metavar="E_PER_A2",
        help="electron dose of Poisson-noisy data, e/Å² (default: noise-free)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="folder for data and results (default: a new temporary folder)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="reuse data and reconstructions in --workdir made with the same parameters",
    )
    p.add_argument(
        "--cases",
        nargs="+",
        default=None,
        metavar="KEY",
        help="run only these cases, by preset or key (e.g. hbn-einstein hbn-correlated-psc_m4)",
    )
    p.add_argument(
        "--psc-modes",
        nargs="+",
        type=int,
        default=None,
        metavar="M",
        help="probe modes of the correlated + PSC reconstructions (default: 1 and the size's)",
    )
    p.add_argument(
        "--control",
        action="store_true",
        help="add the forward-model control (hbn-correlated re-made by the engine's own model)",
    )
    p.add_argument(
        "--doc",
        type=Path,
        default=doc_default,
        help="Markdown file whose generated section to write, with figures"
        + (f" (default {doc_default})" if doc_default else " (default: print the tables only)"),
    )
    p.add_argument(
        "--images",
        type=Path,
        default=images_default,
        help="folder of the figures (default: 'images' next to --doc)",
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``validate`` sub-command."""
    p = subparsers.add_parser(
        "validate",
        help="the simulated validation study of the paper's Fig. 2 (tables, figures)",
        description=(
            "Simulate static, Einstein, correlated and correlated + PSC hBN, reconstruct each "
            "with object states (two stages), find the atoms and compare their correlations "
            "with the realised ground truth (LSM, CSM, ρ_nn, rms, offset, state recovery)."
        ),
    )
    add_arguments(p)
    p.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The ``caviar validate`` command that the parsed ``args`` stand for (recorded in the doc)."""
    parts = ["caviar", "validate", "--size", args.size]
    for name in ("device", "temperature", "dose", "workdir", "doc", "images"):
        value = getattr(args, name)
        if value is not None:
            parts += [f"--{name}", f"{value:g}" if isinstance(value, float) else str(value)]
    if args.seed:
        parts += ["--seed", str(args.seed)]
    if args.positions != "log":
        parts += ["--positions", args.positions]
    if args.reuse:
        parts.append("--reuse")
    if args.cases:
        parts += ["--cases", *args.cases]
    if args.psc_modes:
        parts += ["--psc-modes", *map(str, args.psc_modes)]
    if args.control:
        parts.append("--control")
    return shlex.join(parts)


def run_validation(args: argparse.Namespace, command: str) -> int:
    """Run the study of ``args``, print its report and write the document; exit status.

    ``command`` is the command line recorded in the document.
    """
    from caviar_napari.workflows.study import run_study
    from caviar_napari.workflows.study_config import (
        SIZES,
        StudyConfig,
        replace_size,
        select_cases,
    )
    from caviar_napari.workflows.study_report import (
        generated_section,
        report_suffix,
        write_study_report,
    )

    size = SIZES[args.size]
    if args.temperature is not None:
        size = replace_size(size, temperature_K=args.temperature)
    if args.dose is not None:
        size = replace_size(size, dose_e_per_A2=args.dose)
    device = args.device or ("auto" if args.size == "gpu" else "cpu")
    cases = select_cases(
        size, psc_modes=args.psc_modes or (), control=args.control, only=args.cases or ()
    )
    suffix = report_suffix(
        args.size, args.temperature, args.positions, args.psc_modes or (), args.dose
    )
    images = args.images
    if args.doc is not None:
        images = images if images is not None else args.doc.parent / "images"
        check_location(args.doc, option="--doc")
        check_location(images / f"validation-arrows-{suffix}.png", option="--images")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"caviar-fig2-{args.size}-"))
    config = StudyConfig(
        size=size,
        workdir=workdir,
        cases=cases,
        seed=args.seed,
        device=device,
        start_positions=args.positions,
        reuse=args.reuse,
    )
    print(f"study '{size.name}' in {workdir}", flush=True)
    result = run_study(config, report=lambda s: print(s, flush=True))
    for r in result.cases:
        print(f"--- {r.case.key}\n{r.cli_output}")
    if args.doc is None:
        print(generated_section(result, None, command))
        print(f"({result.elapsed_s / 60:.1f} min)")
        return 0
    written = write_study_report(result, args.doc, images, suffix, command)
    print(f"wrote {', '.join(map(str, written))} ({result.elapsed_s / 60:.1f} min)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``caviar validate``; returns the exit status."""
    return run_validation(args, command_line(args))
