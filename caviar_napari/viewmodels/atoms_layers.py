"""Layer tuples of atom positions (Qt-free): what the Atoms dock and the ATOMS reader draw.

World coordinates are Å in the scan frame, the frame of the reconstruction's phase layer
(``scale (1, 1, dy, dx)``, ``translate (0, 0, y0, x0)``, dims ``(state, slice, y, x)``):

* ``atoms``: 2D Points (rings) at the mean positions, editable (napari's add / move / delete
  tools are the manual picking), coloured by the per-atom spread (rms displacement over states,
  pm) with features ``atom``, ``spread_pm``, ``refined`` and, when known, ``basis``, ``l1``,
  ``l2``, ``species``; atoms whose refinement failed have a red border;
* ``atoms per state``: 4D Points (small dots) ``(state, slice, y, x)`` at the refined positions
  of every state and slice (failed ones left out), so that the sliders of the phase layer show
  each state's atoms on that state's phase; same colouring;
* ``lattice vectors``: Vectors ``a1`` (orange) and ``a2`` (cyan) drawn from the atom nearest the
  centre.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.errors import InputError
from caviar_napari.viewmodels.layer_keys import ATOMS_ROLE_KEY

LayerDataTuple = tuple[Any, dict[str, Any], str]

#: Colormap of the per-atom spread.
SPREAD_COLORMAP = "plasma"
#: Name of the colour feature and its legend label.
SPREAD_FEATURE = "spread_pm"
SPREAD_LABEL = "rms displacement over states (pm)"
#: Colours of the lattice vectors a1, a2 and of the border of failed atoms.
VECTOR_COLORS = ("#ff9f1c", "#2ec4f1")
FAILED_BORDER = "#ff3030"
OK_BORDER = "transparent"
#: Metadata key marking a layer made here, with its role ("mean", "states", "lattice").
ROLE_KEY = ATOMS_ROLE_KEY


def point_size_A(mean_positions_A: ArrayLike) -> float:
    """Diameter of the mean-position rings, Å: 0.6 × the median nearest-neighbour distance
    (0.5 Å if fewer than two atoms).  Per-state dots are a third of it."""
    from scipy.spatial import cKDTree

    pos = np.asarray(mean_positions_A, dtype=float).reshape(-1, 2)
    pos = pos[np.all(np.isfinite(pos), axis=1)]
    if len(pos) < 2:
        return 0.5
    d = cKDTree(pos).query(pos, k=2)[0][:, 1]
    dnn = float(np.median(d))
    return 0.6 * dnn if dnn > 0 else 0.5


def spread_limits(spread_pm: ArrayLike) -> tuple[float, float]:
    """Colour limits ``(low, high)`` of the spread, pm: 2nd to 98th percentile of finite values."""
    s = np.asarray(spread_pm, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(s, [2, 98]))
    if hi <= lo:
        hi = lo + max(abs(lo) * 0.1, 1e-3)
    return lo, hi


def mean_points_features(
    n_atoms: int,
    spread_pm: ArrayLike | None = None,
    refined: ArrayLike | None = None,
    cell_index: ArrayLike | None = None,
    basis_index: ArrayLike | None = None,
    species: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """Per-atom features of the mean Points layer (columns of ``layer.features``)."""
    spread = np.zeros(n_atoms) if spread_pm is None else np.asarray(spread_pm, float)
    features: dict[str, np.ndarray] = {
        "atom": np.arange(n_atoms),
        SPREAD_FEATURE: spread,
        "refined": np.ones(n_atoms, bool) if refined is None else np.asarray(refined, bool),
    }
    if basis_index is not None:
        features["basis"] = np.asarray(basis_index, int)
    if cell_index is not None:
        cells = np.asarray(cell_index, int)
        features["l1"], features["l2"] = cells[:, 0], cells[:, 1]
    if species is not None:
        features["species"] = np.asarray(species, dtype=str)
    return features


def colour_kwargs(spread_pm: ArrayLike, refined: ArrayLike) -> dict[str, Any]:
    """Face colour by spread (NaN → the low limit) and red borders for failed atoms."""
    lo, hi = spread_limits(spread_pm)
    border = np.where(np.asarray(refined, bool), OK_BORDER, FAILED_BORDER)
    return {
        "face_color": SPREAD_FEATURE,
        "face_colormap": SPREAD_COLORMAP,
        "face_contrast_limits": (lo, hi),
        "border_color": list(border),
    }


def mean_points_layer(
    mean_positions_A: ArrayLike,
    *,
    name: str,
    spread_pm: ArrayLike | None = None,
    refined: ArrayLike | None = None,
    cell_index: ArrayLike | None = None,
    basis_index: ArrayLike | None = None,
    species: ArrayLike | None = None,
    size_A: float | None = None,
) -> LayerDataTuple:
    """Points layer tuple of the mean positions ``(atom, 2)`` Å, coloured by ``spread_pm``.

    The positions must be finite (the caller shows failed atoms at their start position and
    passes ``refined=False`` for them: red border).  A NaN spread is drawn with the low colour.
    """
    pos = np.asarray(mean_positions_A, dtype=float).reshape(-1, 2)
    n = len(pos)
    features = mean_points_features(n, spread_pm, refined, cell_index, basis_index, species)
    features[SPREAD_FEATURE] = np.nan_to_num(
        features[SPREAD_FEATURE], nan=spread_limits(features[SPREAD_FEATURE])[0]
    )
    kwargs = {
        "name": name,
        "size": point_size_A(pos) if size_A is None else float(size_A),
        "features": features,
        "symbol": "ring",
        "border_width": 0.15,
        "border_width_is_relative": True,
        "opacity": 0.9,
        "metadata": {ROLE_KEY: "mean", "caviar_colour_label": SPREAD_LABEL},
        **colour_kwargs(features[SPREAD_FEATURE], features["refined"]),
    }
    if n == 0:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("face_color", "border_color")}
    return pos, kwargs, "points"


def per_state_points(
    positions_A: ArrayLike, spread_pm: ArrayLike, slice_offset: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """4D point data ``(state, slice, y, x)`` of the finite positions, and their features.

    Parameters
    ----------
    positions_A
        ``(state, slice, atom, 2)`` Å (NaN = failed, left out).
    spread_pm
        ``(atom,)`` per-atom spread, pm.
    slice_offset
        The reconstruction's slice of ``positions_A[:, 0]`` (a z-range's first slice), so the
        points sit on the phase layer's slices.

    Returns
    -------
    data
        ``(points, 4)`` rows ``(state, slice, y, x)``.
    features
        ``atom`` and ``spread_pm`` per point.
    """
    pos = np.asarray(positions_A, dtype=float)
    if pos.ndim != 4 or pos.shape[-1] != 2:
        raise InputError(f"positions_A must be (state, slice, atom, 2), got shape {pos.shape}")
    n_states, n_slices, n_atoms, _ = pos.shape
    n, j, a = np.meshgrid(
        np.arange(n_states), np.arange(n_slices), np.arange(n_atoms), indexing="ij"
    )
    ok = np.all(np.isfinite(pos), axis=-1)
    data = np.column_stack([n[ok], j[ok] + int(slice_offset), pos[ok]]).astype(float)
    spread = np.asarray(spread_pm, dtype=float)
    lo = spread_limits(spread)[0]
    features = {"atom": a[ok], SPREAD_FEATURE: np.nan_to_num(spread, nan=lo)[a[ok]]}
    return data, features


def states_points_layer(
    positions_A: ArrayLike,
    spread_pm: ArrayLike,
    *,
    name: str,
    size_A: float,
    slice_offset: int = 0,
) -> LayerDataTuple:
    """Points layer tuple of the per-state, per-slice positions (see :func:`per_state_points`)."""
    data, features = per_state_points(positions_A, spread_pm, slice_offset)
    lo, hi = spread_limits(spread_pm)
    kwargs: dict[str, Any] = {
        "name": name,
        "ndim": 4,
        "size": float(size_A) / 3,
        "features": features,
        "face_color": SPREAD_FEATURE,
        "face_colormap": SPREAD_COLORMAP,
        "face_contrast_limits": (lo, hi),
        "border_color": "black",
        "border_width": 0.15,
        "border_width_is_relative": True,
        "symbol": "disc",
        "projection_mode": "none",
        "axis_labels": ("state", "slice", "y", "x"),
        "metadata": {ROLE_KEY: "states", "caviar_colour_label": SPREAD_LABEL},
    }
    if len(data) == 0:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("face_color",)}
    return data, kwargs, "points"


def lattice_vectors_data(lattice_vectors_A: ArrayLike, mean_positions_A: ArrayLike) -> np.ndarray:
    """Vectors-layer data ``(2, 2, 2)``: ``[start, projection]`` for a1 and a2, from the atom
    nearest the centroid of the finite positions (or the origin when none is finite)."""
    L = np.asarray(lattice_vectors_A, dtype=float)
    if L.shape != (2, 2):
        raise InputError(f"lattice_vectors_A must be (2, 2), got shape {L.shape}")
    pos = np.asarray(mean_positions_A, dtype=float).reshape(-1, 2)
    pos = pos[np.all(np.isfinite(pos), axis=1)]
    if len(pos):
        start = pos[np.argmin(np.hypot(*(pos - pos.mean(axis=0)).T))]
    else:
        start = np.zeros(2)
    return np.stack([np.stack([start, L[0]]), np.stack([start, L[1]])])


def lattice_layer(
    lattice_vectors_A: ArrayLike, mean_positions_A: ArrayLike, *, name: str
) -> LayerDataTuple:
    """Vectors layer tuple of the lattice vectors (a1 orange, a2 cyan)."""
    data = lattice_vectors_data(lattice_vectors_A, mean_positions_A)
    kwargs = {
        "name": name,
        "edge_color": list(VECTOR_COLORS),
        "edge_width": 0.08,
        "length": 1.0,
        "vector_style": "arrow",
        "features": {"vector": np.array(["a1", "a2"])},
        "metadata": {ROLE_KEY: "lattice"},
    }
    return data, kwargs, "vectors"
