"""DIAG file (``caviar diagnostics``; conventions §6 kind ``diag``) and its JSON numbers.

Layout (HDF5)::

    power_spectrum      (Ky, Kx)   float64  fft-shifted, mean |FFT|² over slices and states
    k_invA, radial_mean, radial_max   (n,)  its rings (1/Å)
    kz/k_r_invA (n_r,), kz/k_z_invA (n_z,), kz/power (n_z, n_r)   3-D power (multislice only)
    reflections/<i>/profile (n_z,)  attrs q_invA, kz_half_invA, dz_A, optics_dz_A,
                                    single_scattering_dz_A, bound
    zrange/<label>/phase (S, n_r), r_A, z_A, column_profile   attrs slices, n_columns
    attrs: numbers_json (every scalar, see DiagnosticsData.numbers), power_pixel_invA, source
"""

from __future__ import annotations

import json
import os

import numpy as np

from caviar_napari import __version__
from caviar_napari.data.diagnostics import DiagnosticsData, ReflectionDepth, ZRangeProfile
from caviar_napari.errors import InputError
from caviar_napari.io._h5util import (
    SOFTWARE,
    as_text,
    json_default,
    open_h5,
    read_attr,
    read_dataset,
)
from caviar_napari.io.atomic import atomic_h5, atomic_path

__all__ = ["read_diagnostics", "write_diagnostics", "write_diagnostics_json"]

_HINT = " (not a DIAG file?)"


def write_diagnostics(path: str | os.PathLike, data: DiagnosticsData) -> None:
    """Write a DIAG file atomically."""
    with atomic_h5(path) as f:
        f.create_dataset("power_spectrum", data=np.asarray(data.power, dtype=np.float64))
        f.create_dataset("k_invA", data=data.k_invA)
        f.create_dataset("radial_mean", data=data.radial_mean)
        f.create_dataset("radial_max", data=data.radial_max)
        kz = f.create_group("kz")
        kz.create_dataset("k_r_invA", data=data.kz_k_r_invA)
        kz.create_dataset("k_z_invA", data=data.kz_k_z_invA)
        kz.create_dataset("power", data=data.kz_power)
        refl = f.create_group("reflections")
        for i, r in enumerate(data.reflections):
            g = refl.create_group(str(i))
            g.create_dataset("profile", data=r.profile)
            for key in ("q_invA", "kz_half_invA", "dz_A", "optics_dz_A", "single_scattering_dz_A"):
                g.attrs[key] = float(getattr(r, key))
            g.attrs["bound"] = r.bound
        zr = f.create_group("zrange")
        for z in data.zranges:
            g = zr.create_group(z.label or "all")
            for key in ("phase", "r_A", "z_A", "column_profile"):
                g.create_dataset(key, data=getattr(z, key))
            g.attrs["slices"] = z.slices
            g.attrs["n_columns"] = int(z.n_columns)
            g.attrs["label"] = z.label
        f.attrs["numbers_json"] = json.dumps(data.numbers, default=json_default)
        f.attrs["power_pixel_invA"] = np.asarray(data.power_pixel_invA, dtype=np.float64)
        f.attrs["source"] = data.source
        f.attrs["units"] = "Å, 1/Å (frequencies without 2π), rad, mrad"


def write_diagnostics_json(path: str | os.PathLike, data: DiagnosticsData) -> None:
    """The numbers (and per-reflection / per-range summaries) as a JSON file, atomically; the
    keys ``software``, ``kind`` (``"diag"``) and ``version`` say who wrote it."""
    doc = {
        "software": SOFTWARE,
        "kind": "diag",
        "version": __version__,
        "source": data.source,
        **data.numbers,
        "reflections": [
            {
                "q_invA": r.q_invA,
                "kz_half_invA": r.kz_half_invA,
                "dz_A": r.dz_A,
                "optics_dz_A": r.optics_dz_A,
                "single_scattering_dz_A": r.single_scattering_dz_A,
                "bound": r.bound,
            }
            for r in data.reflections
        ],
        "zranges": [
            {
                "label": z.label,
                "slices": z.slices,
                "n_columns": z.n_columns,
                "z_A": z.z_A.tolist(),
                "column_profile_rad": z.column_profile.tolist(),
            }
            for z in data.zranges
        ],
    }
    text = json.dumps(doc, indent=2, default=json_default, allow_nan=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")


def read_diagnostics(path: str | os.PathLike) -> DiagnosticsData:
    """Read a DIAG file (missing items named in an InputError)."""
    where = str(path)
    with open_h5(path) as f:

        def get(key: str) -> np.ndarray:
            return np.asarray(read_dataset(f, where, key, hint=_HINT))

        try:
            numbers = json.loads(as_text(read_attr(f, where, "numbers_json", hint=_HINT)))
        except json.JSONDecodeError:
            raise InputError(f"{where}: attribute 'numbers_json' is not JSON") from None
        reflections = []
        for key in sorted(f.get("reflections", {}), key=int):
            g = f[f"reflections/{key}"]
            w = f"{where}:reflections/{key}"
            reflections.append(
                ReflectionDepth(
                    q_invA=float(read_attr(g, w, "q_invA")),
                    kz_half_invA=float(read_attr(g, w, "kz_half_invA")),
                    dz_A=float(read_attr(g, w, "dz_A")),
                    optics_dz_A=float(read_attr(g, w, "optics_dz_A")),
                    single_scattering_dz_A=float(g.attrs.get("single_scattering_dz_A", np.nan)),
                    bound=as_text(read_attr(g, w, "bound")),
                    profile=np.asarray(read_dataset(g, w, "profile")),
                )
            )
        zranges = []
        for key in f.get("zrange", {}):
            g = f[f"zrange/{key}"]
            w = f"{where}:zrange/{key}"
            zranges.append(
                ZRangeProfile(
                    label=as_text(g.attrs.get("label", key)),
                    slices=as_text(read_attr(g, w, "slices")),
                    r_A=np.asarray(read_dataset(g, w, "r_A")),
                    z_A=np.asarray(read_dataset(g, w, "z_A")),
                    phase=np.asarray(read_dataset(g, w, "phase")),
                    column_profile=np.asarray(read_dataset(g, w, "column_profile")),
                    n_columns=int(read_attr(g, w, "n_columns")),
                )
            )
        return DiagnosticsData(
            numbers=numbers,
            power=get("power_spectrum"),
            power_pixel_invA=tuple(np.asarray(read_attr(f, where, "power_pixel_invA")).tolist()),
            k_invA=get("k_invA"),
            radial_mean=get("radial_mean"),
            radial_max=get("radial_max"),
            kz_k_r_invA=get("kz/k_r_invA"),
            kz_k_z_invA=get("kz/k_z_invA"),
            kz_power=get("kz/power"),
            reflections=tuple(reflections),
            zranges=tuple(zranges),
            source=as_text(f.attrs.get("source", "")),
        )
