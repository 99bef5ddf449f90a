"""Per-layer ground truth of layered simulated specimens: ``ground_truth/layers/<name>``.

Layout (one group per layer, in beam order; the group ``layers`` has the attribute ``order``,
a JSON list of the names)::

    atoms               (n,)        int      indices into ground_truth/positions_A etc.
    truth_slices        (k,)        int      slices of ground_truth/phase the layer occupies
    cell_index          (n, 2)      int      in the layer's own lattice frame
    basis_index         (n,)        int
    green_model_A2      (2n, 2n)    float64  exact model Green's tensor of the layer
    green_realised_A2   (2n, 2n)    float64  realised over the configurations used
    phase               (H, W)      float32  projected phase of the layer alone (rad)
    attrs: z_A, entrance_z_A, lattice_vectors_A (2, 2), origin_A (2,) scan frame,
           rotation_deg, springs_json
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from caviar_napari.data.layers import TruthLayer
from caviar_napari.errors import InputError
from caviar_napari.io._h5util import open_h5, read_attr, read_dataset

__all__ = ["read_truth_box_A", "read_truth_layers", "write_truth_layers"]


def write_truth_layers(group: Any, layers: Sequence[TruthLayer]) -> None:
    """Write ``layers`` into the open HDF5 group ``group`` (the ``ground_truth`` group)."""
    gz = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    top = group.create_group("layers")
    top.attrs["order"] = json.dumps([layer.name for layer in layers])
    for layer in layers:
        g = top.create_group(layer.name)
        g.create_dataset("atoms", data=layer.atoms.astype(np.int64))
        g.create_dataset("truth_slices", data=layer.truth_slices.astype(np.int64))
        g.create_dataset("cell_index", data=layer.cell_index.astype(np.int64))
        g.create_dataset("basis_index", data=layer.basis_index.astype(np.int64))
        g.create_dataset("green_model_A2", data=layer.green_model_A2, **gz)
        g.create_dataset("green_realised_A2", data=layer.green_realised_A2, **gz)
        g.create_dataset("phase", data=layer.phase.astype(np.float32), **gz)
        g.attrs["z_A"] = float(layer.z_A)
        g.attrs["entrance_z_A"] = float(layer.entrance_z_A)
        g.attrs["lattice_vectors_A"] = layer.lattice_vectors_A
        g.attrs["origin_A"] = layer.origin_A
        g.attrs["rotation_deg"] = float(layer.rotation_deg)
        g.attrs["springs_json"] = json.dumps(layer.springs, sort_keys=True)


def read_truth_layers(path: str | os.PathLike) -> tuple[TruthLayer, ...]:
    """The layers of a simulated dataset's ground truth, in beam order (empty if it has none).

    Raises
    ------
    InputError
        Unreadable file, no ``ground_truth`` group, or a malformed layer (named).
    """
    with open_h5(path) as f:
        if "ground_truth" not in f:
            raise InputError(f"{path}: no group 'ground_truth' (not a simulated dataset?)")
        if "layers" not in f["ground_truth"]:
            return ()
        top = f["ground_truth/layers"]
        try:
            order = json.loads(read_attr(top, f"{path}:ground_truth/layers", "order"))
        except (TypeError, json.JSONDecodeError):
            raise InputError(f"{path}:ground_truth/layers: attribute 'order' is not JSON") from None
        out = []
        for name in order:
            where = f"{path}:ground_truth/layers/{name}"
            if name not in top:
                raise InputError(f"{where}: missing (listed in 'order')")
            g = top[name]
            try:
                springs = json.loads(g.attrs.get("springs_json", "{}"))
            except (TypeError, json.JSONDecodeError):
                raise InputError(f"{where}: attribute 'springs_json' is not JSON") from None
            try:
                out.append(
                    TruthLayer(
                        name=str(name),
                        atoms=read_dataset(g, where, "atoms"),
                        z_A=float(read_attr(g, where, "z_A")),
                        entrance_z_A=float(read_attr(g, where, "entrance_z_A")),
                        truth_slices=read_dataset(g, where, "truth_slices"),
                        lattice_vectors_A=np.asarray(read_attr(g, where, "lattice_vectors_A")),
                        origin_A=np.asarray(read_attr(g, where, "origin_A")),
                        cell_index=read_dataset(g, where, "cell_index"),
                        basis_index=read_dataset(g, where, "basis_index"),
                        rotation_deg=float(read_attr(g, where, "rotation_deg")),
                        green_model_A2=read_dataset(g, where, "green_model_A2"),
                        green_realised_A2=read_dataset(g, where, "green_realised_A2"),
                        phase=read_dataset(g, where, "phase"),
                        springs=springs if isinstance(springs, dict) else {},
                    )
                )
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from exc
    return tuple(out)


def read_truth_box_A(path: str | os.PathLike) -> tuple[float, float]:
    """The periodic simulation box ``(Ly, Lx)`` of a simulated dataset (``ground_truth``
    attribute ``box_A``), Å.

    Raises
    ------
    InputError
        Unreadable file, no ``ground_truth`` group or no valid ``box_A`` (named).
    """
    with open_h5(path) as f:
        if "ground_truth" not in f:
            raise InputError(f"{path}: no group 'ground_truth' (not a simulated dataset?)")
        box = np.ravel(read_attr(f["ground_truth"], f"{path}:ground_truth", "box_A"))
    if box.size < 2 or not np.all(np.isfinite(box[:2])) or np.any(box[:2] <= 0):
        raise InputError(f"{path}:ground_truth: attribute 'box_A' {box.tolist()} is not a box")
    return float(box[0]), float(box[1])
