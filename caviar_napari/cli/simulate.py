"""``caviar simulate PRESET --out DATA.h5``: a simulated 4D-STEM dataset with its ground truth.

Every field of :class:`~caviar_napari.simulate.presets.SimulationConfig` is an option
(``--energy-eV``, ``--scan-shape SY SX``, ``--einstein-rms-A B=0.06`` …), with short aliases for
the common ones: ``--temperature``, ``--configs``, ``--scan``, ``--step``, ``--dose``
(``--dose-per-A2``), ``--seed``, ``--psc-fwhm``, ``--mass``.  Options left out keep the preset's
value.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from caviar_napari.cli._common import add_overwrite, print_summary
from caviar_napari.errors import InputError
from caviar_napari.workflows.simulate import SimulateOptions, canonical_command, run_simulate

__all__ = ["ALIASES", "add_parser", "canonical_command", "overrides_from_args", "run"]

#: Short aliases of the most used options.
ALIASES: dict[str, tuple[str, ...]] = {
    "temperature_K": ("--temperature",),
    "n_configs": ("--configs",),
    "scan_shape": ("--scan",),
    "scan_step_A": ("--step",),
    "dose_e_per_A2": ("--dose", "--dose-per-A2"),
    "psc_fwhm_A": ("--psc-fwhm",),
    "masses_amu": ("--mass",),
}

_DESCRIPTIONS = {
    "hbn-static": "hBN monolayer, 60 kV, 35 mrad, no vibrations",
    "hbn-einstein": "hBN monolayer, uncorrelated vibrations (rms matched to the harmonic model)",
    "hbn-correlated": "hBN monolayer, harmonic-lattice (NN + NNN springs) thermal snapshots",
    "hbn-correlated-psc": "as hbn-correlated plus partial spatial coherence (FWHM 0.47 Å)",
    "si110-static": "Si [110], 12 cells (4.6 nm) thick, 200 kV, 30 mrad, static",
}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _kind(tp: Any) -> str:
    """'bool', 'pair-int', 'pair-float', 'dict', 'float', 'int', 'str' or 'optional-float'."""
    if tp is bool:
        return "bool"
    text = str(tp)
    if "tuple[int" in text:
        return "pair-int"
    if "tuple[float" in text:
        return "pair-float"
    if "dict" in text:
        return "dict"
    if "None" in text and "float" in text:
        return "optional-float"
    return {float: "float", int: "int", str: "str"}.get(tp, text)


def _parse_mapping(values: list[str], option: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{option} expects SPECIES=VALUE, got {item!r}")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise InputError(f"{option} {item!r}: {value!r} is not a number") from None
    return out


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``simulate`` sub-command."""
    from caviar_napari.simulate.presets import PRESETS, SimulationConfig

    presets = "\n".join(f"  {k:20s} {_DESCRIPTIONS.get(k, '')}" for k in PRESETS)
    p = subparsers.add_parser(
        "simulate",
        help="simulate a 4D-STEM dataset with known truth (abTEM)",
        description=(
            "Simulate a 4D-STEM dataset (HDF5, conventions §6) with abTEM, plus a "
            "'ground_truth' group: "
            "atom positions of every configuration, Green's tensors, dispersion, probe and "
            "phase. Options left out keep the preset's value."
        ),
        epilog=f"presets:\n{presets}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("preset", choices=sorted(PRESETS), metavar="PRESET", help="preset name")
    p.add_argument("--out", required=True, type=Path, help="output HDF5 file")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved parameters and the output size, do not simulate",
    )
    add_overwrite(p)
    hints = typing.get_type_hints(SimulationConfig)
    group = p.add_argument_group("simulation parameters (defaults: the preset's)")
    for f in fields(SimulationConfig):
        if f.name == "preset":
            continue
        kind = _kind(hints[f.name])
        unit = f.metadata.get("unit", "")
        help_ = f.metadata.get("help", "") + (f" [{unit}]" if unit else "")
        names = (_option(f.name), *ALIASES.get(f.name, ()))
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": help_}
        if kind == "pair-int":
            kw.update(nargs="+", type=int, metavar=("Y", "X"))
        elif kind == "pair-float":
            kw.update(nargs="+", type=float, metavar=("Y", "X"))
        elif kind == "dict":
            kw.update(action="append", metavar="SPECIES=VALUE")
            kw["help"] += " (repeatable)"
        elif kind == "bool":
            kw.update(action="store_const", const=True)
        elif kind in ("float", "optional-float"):
            kw.update(type=float)
        elif kind == "int":
            kw.update(type=int)
        elif f.name == "structure":
            from caviar_napari.simulate.presets import STRUCTURES

            kw.update(choices=STRUCTURES)
        elif f.name == "thermal_model":
            from caviar_napari.simulate.thermal import THERMAL_MODELS

            kw.update(choices=THERMAL_MODELS)
        assert f.default is not MISSING or f.default_factory is not MISSING
        group.add_argument(*names, **kw)
    p.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The simulation parameters given on the command line (validated types)."""
    import typing as _t

    from caviar_napari.simulate.presets import SimulationConfig

    hints = _t.get_type_hints(SimulationConfig)
    out: dict[str, Any] = {}
    for f in fields(SimulationConfig):
        value = getattr(args, f.name, None)
        if f.name == "preset" or value is None:
            continue
        kind = _kind(hints[f.name])
        if kind.startswith("pair"):
            if len(value) not in (1, 2):
                raise InputError(f"{_option(f.name)} takes one value or a (y, x) pair, got {value}")
            value = (value[0], value[-1])
        elif kind == "dict":
            value = _parse_mapping(value, _option(f.name))
        out[f.name] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``caviar simulate``; returns the exit status."""
    options = SimulateOptions(
        preset=args.preset,
        out=args.out,
        overrides=overrides_from_args(args),
        dry_run=args.dry_run,
        overwrite=args.overwrite,
    )
    return print_summary("simulate", run_simulate(options))
