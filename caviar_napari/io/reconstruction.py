"""The reconstruction file (conventions §6), also used for checkpoints.

Layout::

    /object                 (state, slice, y, x) complex64 (complex128 for double precision)
    /probe                  (mode, y, x) complex, real space, centred; the coherent modes (with
                            a Gaussian source, source_fwhm_A > 0, each is an incoherent set of
                            shifted copies, core.coherence)
    /loss                   (iterations,) float64, objective after every iteration
    /scan_positions_A       (P, 2) probe positions (y, x) in the object frame, Å (the refined
                            ones when a stage refined positions or affine)
    /scan_refinement        (only when refined; core.positions) datasets u (P, 2): the
                            per-position variables (shift B·tanh(u/B), mean-free); affine (6,):
                            A (2 × 2, row-major, scan distortion about the scan centre) and the
                            drift (y, x) over the whole scan, Å
    attrs pixel_size_A (dy, dx), slice_thickness_A (S,), object_origin_A (y, x),
          tilt_mrad (α_y, α_x), scan_rotation_deg, source_fwhm_A, configuration (JSON), version,
          source (input file name), format = "caviar-reconstruction"
    /diagnostics            attr json: what the engine measured (ReconState.diagnostics: the
                            loss used, one state-separation report per multi-state stage,
                            warnings); /diagnostics/separation/<stage> the same reports as attrs
    /displaced_states       of a last stage with state_model: displacements: sites (A, 3)
                            (slice, y, x Å), displacements (N, A, 2) (y, x Å)
    /resume                 what an exact continuation needs
        attrs stage_index, stage_iteration, iteration, tilt_mrad, rng_state (JSON)
        /resume/probe_variable  the free probe modes behind constrained ones (optional)
        /resume/object_variable the mean object behind displaced states (optional)
        /resume/penalty_best/<block> the refined blocks at the best held-out loss of a
                            stage whose state penalty is being chosen (optional)
        /resume/optimiser   attrs: kind, scales, step sizes, n_pairs;
                            datasets s/<block>, y/<block> (n_pairs, *block shape)

Written atomically (temporary file, then rename), so a checkpoint interrupted mid-write never
replaces a good one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from caviar_napari import __version__
from caviar_napari.data.config import ReconstructionConfig, config_json
from caviar_napari.data.recon import ReconState
from caviar_napari.errors import InputError
from caviar_napari.io._h5util import as_text, json_default, open_h5, read_attr, read_dataset
from caviar_napari.io.atomic import atomic_h5

FORMAT = "caviar-reconstruction"

__all__ = ["FORMAT", "checkpoint_writer", "load_reconstruction", "save_reconstruction"]

log = logging.getLogger(__name__)

#: Appended to the message of a missing item.
_HINT = " (not a reconstruction file?)"


def save_reconstruction(path: str | os.PathLike, state: ReconState, *, source: str = "") -> None:
    """Write ``state`` to ``path`` (conventions §6 layout with a ``resume`` group), atomically.

    Parameters
    ----------
    path
        Output HDF5 file.
    state
        The reconstruction state (host arrays).
    source
        Name of the input data file; defaults to ``state.source``.
    """
    obj = np.asarray(state.object)
    dtype = np.complex128 if obj.dtype == np.complex128 else np.complex64
    with atomic_h5(path) as f:
        f.create_dataset("object", data=obj.astype(dtype, copy=False))
        f.create_dataset("probe", data=np.asarray(state.probe).astype(dtype, copy=False))
        f.create_dataset("loss", data=np.asarray(state.loss, dtype=np.float64))
        if state.scan_positions_A is not None:
            f.create_dataset("scan_positions_A", data=np.asarray(state.scan_positions_A, float))
        if state.positions_u is not None or state.affine is not None:
            grp = f.create_group("scan_refinement")
            for key, value in (("u", state.positions_u), ("affine", state.affine)):
                if value is not None:
                    grp.create_dataset(key, data=np.asarray(value, dtype=np.float64))
        if state.state_sites is not None and state.state_displacements is not None:
            grp = f.create_group("displaced_states")
            grp.create_dataset("sites", data=np.asarray(state.state_sites, dtype=np.float64))
            grp.create_dataset(
                "displacements", data=np.asarray(state.state_displacements, dtype=np.float64)
            )
        f.attrs["format"] = FORMAT
        f.attrs["pixel_size_A"] = np.asarray(state.pixel_size_A, dtype=np.float64)
        f.attrs["slice_thickness_A"] = np.asarray(state.slice_thickness_A, dtype=np.float64)
        f.attrs["object_origin_A"] = np.asarray(state.object_origin_A, dtype=np.float64)
        f.attrs["tilt_mrad"] = np.asarray(state.tilt_mrad, dtype=np.float64)
        f.attrs["scan_rotation_deg"] = float(state.scan_rotation_deg)
        f.attrs["source_fwhm_A"] = float(state.source_fwhm_A)
        f.attrs["configuration"] = config_json(state.config)
        f.attrs["version"] = __version__
        f.attrs["source"] = source or state.source or ""
        if state.diagnostics:
            diag = f.create_group("diagnostics")
            diag.attrs["json"] = json.dumps(state.diagnostics, default=json_default)
            for report in state.diagnostics.get("separation", []):
                grp = diag.create_group(f"separation/{report['stage']}")
                for key, value in report.items():
                    grp.attrs[key] = value
        res = f.create_group("resume")
        res.attrs["stage_index"] = int(state.stage_index)
        res.attrs["stage_iteration"] = int(state.stage_iteration)
        res.attrs["iteration"] = int(state.iteration)
        res.attrs["tilt_mrad"] = np.asarray(state.tilt_mrad, dtype=np.float64)
        for key in ("probe_variable", "object_variable"):
            if getattr(state, key) is not None:
                res.create_dataset(key, data=np.asarray(getattr(state, key)))
        for key, value in (state.penalty_best or {}).items():
            res.create_dataset(f"penalty_best/{key}", data=np.asarray(value))
        if state.rng_state is not None:
            res.attrs["rng_state"] = json.dumps(state.rng_state, default=json_default)
        if state.optimiser_state is not None:
            grp = res.create_group("optimiser")
            for key, value in state.optimiser_state.items():
                if isinstance(value, np.ndarray):
                    grp.create_dataset(key, data=value)
                else:
                    grp.attrs[key] = value


def _optional_dataset(f: h5py.File, key: str) -> np.ndarray | None:
    """Dataset ``key`` as float64, None when absent."""
    return np.asarray(f[key][()], dtype=np.float64) if key in f else None


def _read_diagnostics(f: h5py.File, name: str) -> dict[str, Any]:
    """The ``diagnostics`` group's JSON (empty for files written before it existed)."""
    if "diagnostics" not in f:
        return {}
    try:
        return json.loads(as_text(f["diagnostics"].attrs["json"]))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"{name}: the 'diagnostics' group is not readable ({exc})") from None


def checkpoint_writer(path: str | os.PathLike | None) -> Callable[[ReconState], None] | None:
    """The ``on_checkpoint`` callback of :func:`caviar_napari.core.engine.run` that writes
    ``path`` (a reconstruction file with its ``resume`` group); None when ``path`` is None.

    Each checkpoint replaces the previous one atomically, so an interrupted write leaves the last
    good checkpoint in place.
    """
    if path is None:
        return None

    def write(state: ReconState) -> None:
        save_reconstruction(path, state, source=state.source)
        log.debug("checkpoint at iteration %d written to %s", state.iteration, path)

    return write


def _read_optimiser(grp: h5py.Group) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in grp.attrs.items():
        if isinstance(value, bytes):
            value = as_text(value)
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    grp.visititems(
        lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
    )
    return out


def load_reconstruction(path: str | os.PathLike) -> ReconState:
    """Read a reconstruction (or checkpoint) file.

    Returns
    -------
    ReconState
        With the resume information when the file has it (a checkpoint continues exactly).

    Raises
    ------
    InputError
        Missing or unreadable file, or a missing item (named with the file).
    """
    name = str(Path(path))
    with open_h5(path) as f:
        obj = np.asarray(read_dataset(f, name, "object", hint=_HINT))
        probe = np.asarray(read_dataset(f, name, "probe", hint=_HINT))
        if obj.ndim != 4:
            raise InputError(f"{name}: 'object' must be (state, slice, y, x), got {obj.shape}")
        if probe.ndim != 3:
            raise InputError(f"{name}: 'probe' must be (mode, y, x), got {probe.shape}")
        loss = np.asarray(read_dataset(f, name, "loss", hint=_HINT), dtype=np.float64)
        pixel = np.asarray(read_attr(f, name, "pixel_size_A", hint=_HINT), dtype=np.float64).ravel()
        if pixel.size == 1:
            pixel = np.repeat(pixel, 2)
        thickness = np.atleast_1d(
            np.asarray(read_attr(f, name, "slice_thickness_A", hint=_HINT), dtype=np.float64)
        )
        if thickness.size == 1 and obj.shape[1] > 1:
            thickness = np.repeat(thickness, obj.shape[1])
        if thickness.size != obj.shape[1]:
            raise InputError(
                f"{name}: 'slice_thickness_A' has {thickness.size} values for {obj.shape[1]} slices"
            )
        origin = np.asarray(
            read_attr(f, name, "object_origin_A", hint=_HINT), dtype=np.float64
        ).ravel()
        raw_config = read_attr(f, name, "configuration", hint=_HINT)
        try:
            config_dict = json.loads(as_text(raw_config))
        except (TypeError, json.JSONDecodeError) as exc:
            raise InputError(f"{name}: attribute 'configuration' is not valid JSON") from exc
        config = ReconstructionConfig.from_dict(config_dict, source=f"{name} (configuration)")
        tilt = np.asarray(f.attrs.get("tilt_mrad", (0.0, 0.0)), dtype=np.float64)
        positions = np.asarray(f["scan_positions_A"][()]) if "scan_positions_A" in f else None
        state = ReconState(
            object=obj,
            probe=probe,
            tilt_mrad=tilt,
            loss=[float(v) for v in loss],
            pixel_size_A=(float(pixel[0]), float(pixel[1])),
            object_origin_A=(float(origin[0]), float(origin[1])),
            slice_thickness_A=thickness,
            config=config,
            source=str(f.attrs.get("source", "")),
            scan_positions_A=positions,
            scan_rotation_deg=float(f.attrs.get("scan_rotation_deg", 0.0)),
            source_fwhm_A=float(f.attrs.get("source_fwhm_A", 0.0)),
            version=str(f.attrs.get("version", "")),
            diagnostics=_read_diagnostics(f, name),
            positions_u=_optional_dataset(f, "scan_refinement/u"),
            affine=_optional_dataset(f, "scan_refinement/affine"),
            state_sites=_optional_dataset(f, "displaced_states/sites"),
            state_displacements=_optional_dataset(f, "displaced_states/displacements"),
            stage_index=len(config.stages) - 1,
            stage_iteration=config.stages[-1].iterations,
            iteration=int(loss.size),
        )
        if "resume" in f:
            res, where = f["resume"], f"{name}:resume"
            state.stage_index = int(read_attr(res, where, "stage_index"))
            state.stage_iteration = int(read_attr(res, where, "stage_iteration"))
            state.iteration = int(read_attr(res, where, "iteration"))
            state.tilt_mrad = np.asarray(read_attr(res, where, "tilt_mrad"), dtype=np.float64)
            for key in ("probe_variable", "object_variable"):
                if key in res:
                    setattr(state, key, np.asarray(res[key][()]))
            if "penalty_best" in res:
                best = res["penalty_best"]
                state.penalty_best = {key: np.asarray(best[key][()]) for key in best}
            if "rng_state" in res.attrs:
                state.rng_state = json.loads(as_text(res.attrs["rng_state"]))
            if "optimiser" in res:
                state.optimiser_state = _read_optimiser(res["optimiser"])
        return state
