"""CORR file (conventions §6) and the ground truth of simulated 4D-STEM files (ARCHITECTURE).

CORR layout (HDF5)::

    green_A2          (2·atoms, 2·atoms) float64  Green's tensor, dof 2i + a (a = 0 y, 1 x);
                                                  NaN rows/columns for excluded atoms
    b_factor_A2       (atoms,)            float64  8π²(⟨u_y²⟩ + ⟨u_x²⟩), NaN when excluded
    slices            (s,)                int      slices whose tensors were averaged
    mean_positions_A  (atoms, 2)          float64  (y, x) in the scan frame
    excluded_atoms    (k,)                int      atoms with a NaN position in a used state/slice,
                                                  or the same position in every state
    cell_index        (atoms, 2)          int      optional
    basis_index       (atoms,)            int      optional
    species           (atoms,)            str      optional
    green_stderr_A2   (2·atoms, 2·atoms)  float64  optional: standard error of green_A2
    b_factor_stderr_A2 (atoms,)           float64  optional: standard error of b_factor_A2
    attrs: n_states, lattice_vectors_A (2, 2) (optional), source, dof_convention, units,
           software, version;
           optional (issue 13): error_method ("jackknife" | "bootstrap"), error_replicas,
           error_seed (bootstrap), green_dof (Wishart degrees of freedom of the significance
           tests), rho_nn, rho_nn_stderr, rms_displacement_A, rms_displacement_stderr_A,
           offset_A2 (2,) (c_y, c_x), offset_stderr_A2 (2,), offset_min_distance_A,
           offset_pairs, offset_subtracted (green_A2 and b_factor_A2 are then corrected),
           noise_floor_A (NaN: unknown), noise_floor_method, noise_fraction
    truth_comparison  group, optional: attrs truth, lsm_sum, lsm_sum_stderr, lsm_mean,
                      lsm_mean_stderr, csm, csm_stderr, rho_nn_truth, n_pairs, n_vectors,
                      pairing ("paired" | "truth fixed")
    layer_comparison/<layer>  groups, optional (a layered truth, issue 16): attrs matched,
                      lsm_sum, lsm_mean, csm, rho_nn_reconstructed, rho_nn_truth, n_matched;
                      attribute ``order`` of ``layer_comparison``: JSON list of the layers
    unit_cell_averages  group, optional (lattice indices needed): the blocks averaged over
                      identical unit-cell pairs in the local lattice frame, one row per class
                      (a class and its reverse listed once):
        keys             (C, 4) int     (Δl1, Δl2, κ, κ'), Δl = l_j − l_i of the pairs (i, j)
        shell            (C,) int       0 self, 1 nearest neighbours, 2 second neighbours
        counts           (C,) int       atom pairs averaged
        separation_A     (C, 2)         mean r_j − r_i (y, x), lab frame
        blocks_A2        (C, 2, 2)      mean R G_ij Rᵀ, local frame, rows/columns (y, x)
        blocks_stderr_A2 (C, 2, 2)      standard errors (NaN without errors)
        block_sigma      (C,)           significance (σ) of the averaged block (inf: self)
        arrow_sigma      (C, 2)         significance of its local y and x rows
        attrs: rotation (2, 2) lab → local (rows local y, local x in lab (y, x)),
               frame_key (4,) the class whose mean bond is local x, max_distance_A
    z-range attrs (optional; the correlations of one depth range, issue 16): those of
                      :mod:`caviar_napari.io.zranges` (slices, slice_start, slice_stop, …);
                      ``slices`` above then count from the range's first slice

Several z-ranges (``caviar correlations`` on a multi-range ATOMS file) go in one file as groups
``zrange/<label>``, each with the layout above, and the root attribute ``zrange_labels``
(:mod:`caviar_napari.io.zranges`); :func:`read_correlations` then needs a label and
:func:`read_correlations_zranges` reads them all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import h5py
import numpy as np

from caviar_napari.data.correlations import (
    CorrelationsData,
    Estimate,
    LayerMetrics,
    NoiseFloor,
    TruthMetrics,
    Uncertainty,
    UniformOffset,
    UnitCellTable,
)
from caviar_napari.data.ground_truth import GroundTruth
from caviar_napari.errors import InputError
from caviar_napari.io._h5util import (
    as_strings,
    as_text,
    naming_file,
    open_h5,
    read_attr,
    read_dataset,
    write_stamp,
)
from caviar_napari.io.atomic import atomic_h5
from caviar_napari.io.zranges import (
    ZRANGE_GROUP,
    ZRANGE_LABELS,
    check_unique_labels,
    read_every_zrange,
    read_zrange_attrs,
    write_zrange_attrs,
    zrange_group,
    zrange_labels,
)

__all__ = [
    "DOF_CONVENTION",
    "CorrelationsData",
    "GroundTruth",
    "correlations_zrange_labels",
    "read_correlations",
    "read_correlations_zranges",
    "read_ground_truth",
    "write_correlations",
    "write_correlations_zranges",
]

DOF_CONVENTION = "dof index 2*i + a; a = 0 for y, a = 1 for x"


def write_correlations(path: str | os.PathLike, data: CorrelationsData) -> None:
    """Write a CORR file atomically (temporary file, then rename)."""
    with atomic_h5(path) as f:
        _write_items(f, data)
        write_stamp(f, source=data.source, units=_UNITS)


def write_correlations_zranges(path: str | os.PathLike, ranges: Sequence[CorrelationsData]) -> None:
    """Write the correlations of several labelled z-ranges into one CORR file atomically.

    Parameters
    ----------
    path
        Output ``.h5`` file.
    ranges
        One :class:`CorrelationsData` per range, each with a :class:`ZRange` whose label is
        unique and not empty.
    """
    if any(data.zrange is None for data in ranges):
        raise InputError("every z-range of a multi-range CORR file needs a labelled zrange")
    labels = [data.zrange.label for data in ranges]
    check_unique_labels(labels)
    with atomic_h5(path) as f:
        top = f.create_group(ZRANGE_GROUP)
        for data in ranges:
            group = top.create_group(data.zrange.label)
            _write_items(group, data)
            group.attrs["source"] = data.source
        f.attrs[ZRANGE_LABELS] = json.dumps(labels)
        write_stamp(f, source="; ".join(sorted({d.source for d in ranges})), units=_UNITS)


_UNITS = "green_A2, b_factor_A2, offset and their *_stderr: Å²; positions, rms, noise floor: Å"


def _write_items(f: h5py.Group, data: CorrelationsData) -> None:
    """The datasets and attributes of one CORR (one range) into the group ``f``."""
    f.create_dataset("green_A2", data=np.asarray(data.green_A2, dtype=np.float64))
    f.create_dataset("b_factor_A2", data=np.asarray(data.b_factor_A2, dtype=np.float64))
    f.create_dataset("slices", data=np.asarray(data.slices, dtype=np.int64))
    f.create_dataset("mean_positions_A", data=np.asarray(data.mean_positions_A, float))
    f.create_dataset("excluded_atoms", data=np.asarray(data.excluded_atoms, dtype=np.int64))
    if data.cell_index is not None:
        f.create_dataset("cell_index", data=np.asarray(data.cell_index, dtype=np.int64))
    if data.basis_index is not None:
        f.create_dataset("basis_index", data=np.asarray(data.basis_index, dtype=np.int64))
    if data.species is not None:
        f.create_dataset(
            "species",
            data=np.asarray(data.species, dtype=str).astype(object),
            dtype=h5py.string_dtype(),
        )
    if data.lattice_vectors_A is not None:
        f.attrs["lattice_vectors_A"] = np.asarray(data.lattice_vectors_A, dtype=float)
    f.attrs["n_states"] = int(data.n_states)
    f.attrs["dof_convention"] = DOF_CONVENTION
    _write_statistics(f, data)
    if data.zrange is not None:
        write_zrange_attrs(f.attrs, data.zrange)
    if data.unit_cell_averages is not None:
        _write_unit_cell_table(f.create_group(_TABLE_GROUP), data.unit_cell_averages)
    if data.layer_comparisons:
        top = f.create_group("layer_comparison")
        top.attrs["order"] = json.dumps([m.layer for m in data.layer_comparisons])
        for m in data.layer_comparisons:
            a = top.create_group(m.layer).attrs
            a["matched"] = bool(m.matched)
            for key in ("lsm_sum", "lsm_mean", "csm", "rho_nn_reconstructed", "rho_nn_truth"):
                a[key] = float(getattr(m, key))
            a["n_matched"] = int(m.n_matched)


#: Group of the unit-cell averages in a CORR file (or in one z-range's group).
_TABLE_GROUP = "unit_cell_averages"
#: Its datasets: name in the file → attribute of :class:`UnitCellTable`.
_TABLE_DATASETS = {
    "keys": "keys",
    "shell": "shell",
    "counts": "counts",
    "separation_A": "separation_A",
    "blocks_A2": "blocks_A2",
    "blocks_stderr_A2": "stderr_A2",
    "block_sigma": "block_sigma",
    "arrow_sigma": "arrow_sigma",
}
_TABLE_INTEGERS = ("keys", "shell", "counts")


def _write_unit_cell_table(g: h5py.Group, table: UnitCellTable) -> None:
    for name, attr in _TABLE_DATASETS.items():
        dtype = np.int64 if name in _TABLE_INTEGERS else np.float64
        g.create_dataset(name, data=np.asarray(getattr(table, attr), dtype=dtype))
    g.attrs["rotation"] = np.asarray(table.rotation, dtype=float)
    g.attrs["frame_key"] = np.asarray(table.frame_key, dtype=np.int64)
    g.attrs["max_distance_A"] = float(table.max_distance_A)


def _read_unit_cell_table(f: h5py.Group, where: str) -> UnitCellTable | None:
    """The ``unit_cell_averages`` group (None when absent)."""
    if _TABLE_GROUP not in f:
        return None
    g, w = f[_TABLE_GROUP], f"{where}/{_TABLE_GROUP}"
    items = {
        attr: np.asarray(
            read_dataset(g, w, name), dtype=np.int64 if name in _TABLE_INTEGERS else float
        )
        for name, attr in _TABLE_DATASETS.items()
    }
    with naming_file(w):
        return UnitCellTable(
            **items,
            rotation=np.asarray(read_attr(g, w, "rotation"), dtype=float),
            frame_key=np.asarray(read_attr(g, w, "frame_key"), dtype=np.int64).ravel(),
            max_distance_A=float(read_attr(g, w, "max_distance_A")),
        )


def _write_estimate(attrs: h5py.AttributeManager, name: str, value: Estimate | None) -> None:
    if value is not None:
        attrs[name] = float(value.value)
        attrs[f"{name}_stderr"] = float(value.stderr)


def _write_statistics(f: h5py.Group, data: CorrelationsData) -> None:
    """The optional items of issue 13 (errors, ρ_nn, rms, offset, noise floor, LSM/CSM)."""
    for key in ("green_stderr_A2", "b_factor_stderr_A2"):
        value = getattr(data, key)
        if value is not None:
            f.create_dataset(key, data=np.asarray(value, dtype=np.float64))
    u = data.uncertainty
    if u is not None:
        f.attrs["error_method"] = u.method
        f.attrs["error_replicas"] = int(u.replicas)
        if u.seed is not None:
            f.attrs["error_seed"] = int(u.seed)
        f.attrs["green_dof"] = float(u.green_dof)
    _write_estimate(f.attrs, "rho_nn", data.rho_nn)
    if data.rms_displacement_A is not None:
        f.attrs["rms_displacement_A"] = float(data.rms_displacement_A.value)
        f.attrs["rms_displacement_stderr_A"] = float(data.rms_displacement_A.stderr)
    o = data.offset
    if o is not None:
        f.attrs["offset_A2"] = np.asarray(o.offset_A2, dtype=float)
        f.attrs["offset_stderr_A2"] = np.asarray(o.stderr_A2, dtype=float)
        f.attrs["offset_min_distance_A"] = float(o.min_distance_A)
        f.attrs["offset_pairs"] = int(o.n_pairs)
        f.attrs["offset_subtracted"] = bool(o.subtracted)
    n = data.noise_floor
    if n is not None:
        f.attrs["noise_floor_A"] = float(n.floor_A)
        f.attrs["noise_floor_method"] = n.method
        f.attrs["noise_fraction"] = float(n.noise_fraction)
    m = data.truth_metrics
    if m is not None:
        g = f.create_group("truth_comparison")
        g.attrs["truth"] = m.truth
        for name in ("lsm_sum", "lsm_mean", "csm"):
            _write_estimate(g.attrs, name, getattr(m, name))
        g.attrs["rho_nn_truth"] = float(m.rho_nn_truth)
        g.attrs["n_pairs"] = int(m.n_pairs)
        g.attrs["n_vectors"] = int(m.n_vectors)
        g.attrs["pairing"] = m.pairing


def _read_estimate(attrs: h5py.AttributeManager, name: str) -> Estimate | None:
    if name not in attrs:
        return None
    return Estimate(float(attrs[name]), float(attrs.get(f"{name}_stderr", np.nan)))


def _read_statistics(f: h5py.Group, where: str) -> dict:
    """The optional items written by :func:`_write_statistics` (absent ones are None)."""
    a = f.attrs
    out: dict = {
        key: read_dataset(f, where, key, required=False)
        for key in ("green_stderr_A2", "b_factor_stderr_A2")
    }
    out = {k: None if v is None else np.asarray(v, dtype=float) for k, v in out.items()}
    if "error_method" in a:
        seed = a.get("error_seed")
        out["uncertainty"] = Uncertainty(
            method=as_text(a["error_method"]),
            replicas=int(a.get("error_replicas", 0)),
            seed=None if seed is None else int(seed),
            green_dof=float(a.get("green_dof", np.nan)),
        )
    out["rho_nn"] = _read_estimate(a, "rho_nn")
    if "rms_displacement_A" in a:
        out["rms_displacement_A"] = Estimate(
            float(a["rms_displacement_A"]), float(a.get("rms_displacement_stderr_A", np.nan))
        )
    if "offset_A2" in a:
        out["offset"] = UniformOffset(
            offset_A2=np.asarray(a["offset_A2"], dtype=float),
            stderr_A2=np.asarray(a.get("offset_stderr_A2", [np.nan, np.nan]), dtype=float),
            min_distance_A=float(a.get("offset_min_distance_A", 0.0)),
            n_pairs=int(a.get("offset_pairs", 0)),
            subtracted=bool(a.get("offset_subtracted", False)),
        )
    if "noise_floor_A" in a:
        out["noise_floor"] = NoiseFloor(
            floor_A=float(a["noise_floor_A"]),
            method=as_text(a.get("noise_floor_method", "")),
            rms_displacement_A=float(a.get("rms_displacement_A", np.nan)),
            noise_fraction=float(a.get("noise_fraction", np.nan)),
        )
    if "truth_comparison" in f:
        g = f["truth_comparison"].attrs
        out["truth_metrics"] = TruthMetrics(
            truth=as_text(g.get("truth", "")),
            lsm_sum=_read_estimate(g, "lsm_sum"),
            lsm_mean=_read_estimate(g, "lsm_mean"),
            csm=_read_estimate(g, "csm"),
            rho_nn_truth=float(g.get("rho_nn_truth", np.nan)),
            n_pairs=int(g.get("n_pairs", 0)),
            n_vectors=int(g.get("n_vectors", 0)),
            pairing=as_text(g.get("pairing", "")),
        )
    return out


def correlations_zrange_labels(path: str | os.PathLike) -> list[str]:
    """The z-range labels of a CORR file: those of a multi-range file, in order; for a file of
    one range its label (``[""]`` when unnamed or of no z-range)."""
    with open_h5(path) as f:
        return zrange_labels(f, str(path)) or [as_text(f.attrs.get("zrange_label", ""))]


def read_correlations(path: str | os.PathLike, zrange: str | None = None) -> CorrelationsData:
    """Read a CORR file (one z-range of it); a missing or inconsistent item raises InputError
    naming it.

    Parameters
    ----------
    path
        CORR ``.h5`` file.
    zrange
        Label of the z-range to read: required for a multi-range file; for a file of one range
        None or that range's label.
    """
    with open_h5(path) as f:
        group, where = zrange_group(f, str(path), zrange)
        return _read_items(group, where)


def read_correlations_zranges(path: str | os.PathLike) -> dict[str, CorrelationsData]:
    """Every z-range of a CORR file by label, in file order (a file of one range: one entry,
    keyed by its label or ``""``)."""
    return read_every_zrange(path, correlations_zrange_labels(path), read_correlations)


def _read_items(f: h5py.Group, where: str) -> CorrelationsData:
    """One range's contents from the group ``f`` (the root of a file of one range)."""
    green = read_dataset(f, where, "green_A2")
    b = read_dataset(f, where, "b_factor_A2")
    slices = read_dataset(f, where, "slices")
    mean = read_dataset(f, where, "mean_positions_A")
    excluded = read_dataset(f, where, "excluded_atoms")
    cells = read_dataset(f, where, "cell_index", required=False)
    basis = read_dataset(f, where, "basis_index", required=False)
    species = as_strings(read_dataset(f, where, "species", required=False))
    n_states = int(read_attr(f, where, "n_states"))
    lattice = f.attrs.get("lattice_vectors_A")
    source = f.attrs.get("source", "")
    zrange = read_zrange_attrs(f.attrs, where)
    layers = _read_layer_comparisons(f, where)
    table = _read_unit_cell_table(f, where)
    with naming_file(where):
        statistics = _read_statistics(f, where)
        return CorrelationsData(
            green_A2=np.asarray(green, dtype=float),
            b_factor_A2=np.asarray(b, dtype=float),
            slices=np.asarray(slices, dtype=int).ravel(),
            n_states=n_states,
            mean_positions_A=np.asarray(mean, dtype=float),
            excluded_atoms=np.asarray(excluded, dtype=int).ravel(),
            cell_index=None if cells is None else np.asarray(cells, dtype=int),
            basis_index=None if basis is None else np.asarray(basis, dtype=int),
            species=species,
            lattice_vectors_A=None if lattice is None else np.asarray(lattice, float),
            source=as_text(source),
            zrange=zrange,
            layer_comparisons=layers,
            unit_cell_averages=table,
            **statistics,
        )


def _read_layer_comparisons(f: h5py.Group, where: str) -> tuple[LayerMetrics, ...]:
    """The ``layer_comparison`` groups, in their recorded order (empty when absent)."""
    if "layer_comparison" not in f:
        return ()
    top = f["layer_comparison"]
    try:
        order = json.loads(as_text(read_attr(top, f"{where}/layer_comparison", "order")))
        out = []
        for name in order:
            a = top[name].attrs
            out.append(
                LayerMetrics(
                    layer=str(name),
                    matched=bool(a["matched"]),
                    lsm_sum=float(a["lsm_sum"]),
                    lsm_mean=float(a["lsm_mean"]),
                    csm=float(a["csm"]),
                    rho_nn_reconstructed=float(a["rho_nn_reconstructed"]),
                    rho_nn_truth=float(a["rho_nn_truth"]),
                    n_matched=int(a["n_matched"]),
                )
            )
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise InputError(f"{where}/layer_comparison: malformed ({exc})") from None
    return tuple(out)


def read_ground_truth(path: str | os.PathLike) -> GroundTruth:
    """Read the ``ground_truth`` group of a simulated 4D-STEM HDF5 file.

    Raises
    ------
    InputError
        If the file, the group or a required item is missing or inconsistent (named).
    """
    with open_h5(path) as f:
        if "ground_truth" not in f or not isinstance(f["ground_truth"], h5py.Group):
            raise InputError(f"{path}: no group 'ground_truth' (not a simulated dataset?)")
        g = f["ground_truth"]
        where = f"{path}:ground_truth"
        positions = np.asarray(read_dataset(g, where, "positions_A"), dtype=float)
        mean = np.asarray(read_dataset(g, where, "mean_positions_A"), dtype=float)
        realised = np.asarray(read_dataset(g, where, "green_realised_A2"), dtype=float)
        model = read_dataset(g, where, "green_model_A2", required=False)
        cells = read_dataset(g, where, "cell_index", required=False)
        basis = read_dataset(g, where, "basis_index", required=False)
        species = as_strings(read_dataset(g, where, "species", required=False))
        lattice = g.attrs.get("lattice_vectors_A")
    m = mean.shape[0] if mean.ndim == 2 and mean.shape[1] == 2 else -1
    if m < 0:
        raise InputError(f"{where}/mean_positions_A: shape {mean.shape}, expected (atoms, 2)")
    if positions.ndim != 3:
        raise InputError(f"{where}/positions_A: shape {positions.shape}, expected (config, {m}, 2)")
    expected = {
        "positions_A": (positions.shape[1:], (m, 2)),
        "green_realised_A2": (realised.shape, (2 * m, 2 * m)),
    }
    if model is not None:
        expected["green_model_A2"] = (np.shape(model), (2 * m, 2 * m))
    if cells is not None:
        expected["cell_index"] = (np.shape(cells), (m, 2))
    if basis is not None:
        expected["basis_index"] = (np.shape(basis), (m,))
    if lattice is not None:
        expected["lattice_vectors_A (attribute)"] = (np.shape(lattice), (2, 2))
    for key, (got, want) in expected.items():
        if tuple(got) != want:
            raise InputError(f"{where}/{key}: shape {tuple(got)}, expected {want} for {m} atoms")
    return GroundTruth(
        positions_A=positions,
        mean_positions_A=mean,
        green_realised_A2=realised,
        green_model_A2=None if model is None else np.asarray(model, dtype=float),
        cell_index=None if cells is None else np.asarray(cells, dtype=int),
        basis_index=None if basis is None else np.asarray(basis, dtype=int),
        species=species,
        lattice_vectors_A=None if lattice is None else np.asarray(lattice, dtype=float),
    )
