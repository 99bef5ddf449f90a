"""Atom sites in a phase image: Laplacian-of-Gaussian peaks, merged when closer than a distance.

The detection the atoms step starts from (:func:`caviar_napari.analysis.atoms.detect_atoms`)
and the displacement-parametrised object states (:mod:`caviar_napari.core.displaced_states`)
both use it, so it lives in the physics layer. Conventions (docs/conventions.md §1): images
are ``(y, x)``; pixel ``[iy, ix]`` sits at ``origin_A + (iy * dy, ix * dx)`` Å; atoms are bright
(positive phase).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.feature import blob_log

from caviar_napari.core.grid import as_pair, px_to_A
from caviar_napari.errors import InputError

__all__ = ["log_peaks_A", "merge_close", "nearest_neighbour_distance"]


def merge_close(positions_A: ArrayLike, min_distance_A: float) -> np.ndarray:
    """Merge points closer than ``min_distance_A`` (transitively) into their mean position.

    Parameters
    ----------
    positions_A
        ``(n, 2)`` positions ``(y, x)``, Å.
    min_distance_A
        Merging distance, Å; 0 returns the points unchanged.

    Returns
    -------
    numpy.ndarray
        ``(m, 2)`` merged positions, ordered by their first member.

    Examples
    --------
    >>> merge_close([[0.0, 0.0], [0.0, 0.2], [3.0, 3.0]], 0.5).round(2).tolist()
    [[0.0, 0.1], [3.0, 3.0]]
    """
    pos = np.asarray(positions_A, dtype=float).reshape(-1, 2)
    if min_distance_A <= 0 or len(pos) < 2:
        return pos.copy()
    pairs = cKDTree(pos).query_pairs(min_distance_A, output_type="ndarray")
    n = len(pos)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_groups, labels = connected_components(graph, directed=False)
    counts = np.bincount(labels, minlength=n_groups)
    merged = np.stack(
        [np.bincount(labels, pos[:, a], minlength=n_groups) / counts for a in range(2)], axis=-1
    )
    return merged


def log_peaks_A(
    image: ArrayLike,
    pixel_size_A: float | ArrayLike,
    origin_A: ArrayLike = (0.0, 0.0),
    *,
    sigma_A: tuple[float, float] = (0.15, 0.6),
    num_sigma: int = 6,
    threshold_rel: float = 0.1,
    min_distance_A: float = 0.5,
    exclude_border_A: float = 0.0,
) -> np.ndarray:
    """Bright blobs of ``image`` by Laplacian of Gaussian (:func:`skimage.feature.blob_log`).

    Parameters
    ----------
    image
        ``(y, x)`` real image, atoms bright.
    pixel_size_A, origin_A
        Pixel size ``(dy, dx)`` (or scalar) and position of pixel ``[0, 0]``, Å.
    sigma_A
        Range of blob standard deviations searched, Å.
    num_sigma
        Number of sizes tried in the range.
    threshold_rel
        Minimum LoG response relative to the strongest blob, in ``(0, 1]``.
    min_distance_A
        Blobs closer than this are merged into their mean position.
    exclude_border_A
        Blobs closer than this to the image border are dropped (0 keeps all).

    Returns
    -------
    numpy.ndarray
        ``(atoms, 2)`` positions ``(y, x)`` in Å, to the nearest pixel, sorted by y then x.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise InputError(f"detection image must be 2D (y, x), got shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise InputError("detection image contains non-finite values")
    d = np.asarray(as_pair(pixel_size_A, "pixel_size_A"))
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return np.zeros((0, 2))
    norm = (img - lo) / (hi - lo)
    border = int(round(exclude_border_A / float(d.min()))) if exclude_border_A else False
    blobs = blob_log(
        norm,
        min_sigma=tuple(sigma_A[0] / d),
        max_sigma=tuple(sigma_A[1] / d),
        num_sigma=int(num_sigma),
        threshold=None,
        threshold_rel=float(threshold_rel),
        overlap=0.5,
        exclude_border=border,
    )
    if len(blobs) == 0:
        return np.zeros((0, 2))
    pos = merge_close(px_to_A(blobs[:, :2], origin_A, d), min_distance_A)
    return pos[np.lexsort((pos[:, 1], pos[:, 0]))]


def nearest_neighbour_distance(positions_A: ArrayLike) -> float:
    """Median nearest-neighbour distance of the finite positions ``(n, 2)``, Å.

    Examples
    --------
    >>> nearest_neighbour_distance([[0.0, 0.0], [0.0, 1.5], [0.0, 4.0]])
    1.5
    """
    pos = np.asarray(positions_A, dtype=float).reshape(-1, 2)
    pos = pos[np.all(np.isfinite(pos), axis=1)]
    if len(pos) < 2:
        raise InputError(
            "at least two atoms are needed to estimate a nearest-neighbour distance "
            f"(got {len(pos)}); give the radius explicitly"
        )
    dist, _ = cKDTree(pos).query(pos, k=2)
    dnn = float(np.median(dist[:, 1]))
    if dnn <= 0:
        raise InputError("atom positions contain duplicates: nearest-neighbour distance is 0")
    return dnn
