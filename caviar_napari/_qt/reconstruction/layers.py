"""Main-thread layer updates of the Reconstruction dock.

The worker computes the images, their contrast limits and the limits' ranges
(:mod:`caviar_napari.viewmodels.recon_images`); the functions here only put them into existing
layers (or add the layers the first time), and leave everything the user set (visibility,
colormap, opacity) alone.  An image of the layer's shape is copied into the layer's own array,
followed by a refresh of what is displayed: assigning ``layer.data`` makes napari re-check the
viewer's dims and costs several times more main-thread time.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from napari.layers import Image, Points, Vectors

from caviar_napari.viewmodels.layer_keys import RECON_ROLE_KEY
from caviar_napari.viewmodels.recon_images import LayerDataTuple

#: The layer kinds updated here and their napari classes (read-only).
_LAYER_TYPES = MappingProxyType({"image": Image, "points": Points, "vectors": Vectors})


def _find(viewer: Any, name: str) -> Any:
    for layer in viewer.layers:
        if layer.name == name:
            return layer
    return None


def _differ(a: Any, b: Any) -> bool:
    return tuple(float(v) for v in a) != tuple(float(v) for v in b)


def _set_contrast(layer: Any, kwargs: Mapping[str, Any], ranges: Mapping[str, Any]) -> None:
    """Slider range (given, by the layer's role) and limits (given) of an image layer; each
    assignment only when it changes something (each one refreshes the layer)."""
    role = kwargs.get("metadata", {}).get(RECON_ROLE_KEY)
    if role in ranges and _differ(layer.contrast_limits_range, ranges[role]):
        layer.contrast_limits_range = ranges[role]
    limits = kwargs.get("contrast_limits")
    if limits is not None and _differ(layer.contrast_limits, limits):
        layer.contrast_limits = limits


def _put_image(layer: Any, data: np.ndarray) -> None:
    """Show ``data`` in an Image layer: copied into the layer's own array when the shapes and
    types match, else as a private copy (the layer never shares the worker's arrays)."""
    current = layer.data
    if (
        isinstance(current, np.ndarray)
        and current.flags.writeable
        and current.shape == data.shape
        and current.dtype == data.dtype
    ):
        np.copyto(current, data)
        layer.refresh(extent=False, highlight=False)
    else:
        layer.data = np.array(data)


def _remove_replaced(viewer: Any, kwargs: Mapping[str, Any]) -> None:
    """Remove the layers of the same run and role under another name (the arrows of an earlier
    result drawn with another factor, ``<name> position shifts ×F``)."""
    metadata = kwargs.get("metadata", {})
    role, run = metadata.get(RECON_ROLE_KEY), metadata.get("caviar_run")
    if role is None or run is None:
        return
    for layer in list(viewer.layers):
        meta = layer.metadata
        same = meta.get(RECON_ROLE_KEY) == role and meta.get("caviar_run") == run
        if same and layer.name != kwargs["name"]:
            viewer.layers.remove(layer)


def _set_metadata(layer: Any, metadata: Mapping[str, Any]) -> None:
    """Replace the layer's metadata unless it holds the same objects already."""
    if dict(layer.metadata).keys() != metadata.keys() or any(
        layer.metadata[k] is not v for k, v in metadata.items()
    ):
        layer.metadata = dict(metadata)


def apply_layer_tuples(
    viewer: Any,
    tuples: list[LayerDataTuple],
    *,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    max_new: int | None = None,
    skip_hidden: bool = False,
) -> tuple[list[Any], bool, bool]:
    """Update the named layers in place, adding those that do not exist yet.

    The metadata of an updated layer is replaced by the new one (a running reconstruction's
    layer must not keep the saved state of an earlier result).

    Parameters
    ----------
    viewer
        The napari viewer.
    tuples
        ``(data, kwargs, "image" | "points" | "vectors")`` as made by ``layer_tuples``;
        ``kwargs["name"]`` identifies the layer to update (a layer of the same run and role
        under another name is replaced).
    ranges
        Contrast-slider range of the image layers by role (``RECON_ROLE_KEY``), computed with
        the images (nothing is computed from the data here).
    max_new
        Add at most this many new layers now (adding a layer costs far more than updating
        one).
    skip_hidden
        Leave invisible layers untouched (a live display updates what is seen).

    Returns
    -------
    layers
        The layers updated or added, in the order of ``tuples``.
    added
        Whether any layer was added (the caller may then fit the view).
    complete
        False when some layers were left out because of ``max_new``.
    """
    ranges = ranges or {}
    layers: list[Any] = []
    added = 0
    complete = True
    for data, kwargs, kind in tuples:
        if kind not in _LAYER_TYPES:
            raise ValueError(f"only image, points and vectors layers are updated here: {kind!r}")
        _remove_replaced(viewer, kwargs)
        layer = _find(viewer, kwargs["name"])
        ndim = data.ndim if kind == "image" else int(np.shape(data)[-1])  # world dims
        if layer is None or not isinstance(layer, _LAYER_TYPES[kind]) or layer.ndim != ndim:
            if max_new is not None and added >= max_new:
                complete = False
                continue
            if layer is not None:
                viewer.layers.remove(layer)
            layer = getattr(viewer, f"add_{kind}")(np.array(data), **kwargs)
            if kind == "image":
                _set_contrast(layer, kwargs, ranges)
            added += 1
        elif skip_hidden and not layer.visible:
            continue
        elif kind in ("points", "vectors"):  # positions: replaced only when they changed
            if layer.data.shape != data.shape or not np.array_equal(layer.data, data):
                layer.data = data
                if kind == "vectors" and "features" in kwargs:
                    layer.features = kwargs["features"]
            _set_metadata(layer, kwargs.get("metadata", {}))
        else:
            # geometry only when it changed: each assignment refreshes the layer
            if tuple(layer.scale) != tuple(kwargs["scale"]):
                layer.scale = kwargs["scale"]
            if tuple(layer.translate) != tuple(kwargs["translate"]):
                layer.translate = kwargs["translate"]
            _put_image(layer, data)
            _set_metadata(layer, kwargs.get("metadata", {}))
            _set_contrast(layer, kwargs, ranges)
        layers.append(layer)
    return layers, bool(added), complete
