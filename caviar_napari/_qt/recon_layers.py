"""Main-thread layer updates of the Reconstruction widget.

The worker computes the images (``reconstruction_images``, off the main thread); the slot here
only assigns the arrays to existing layers (or adds them the first time), resets the contrast
limits, and leaves everything the user set (visibility, colormap, opacity) alone.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np
from napari.layers import Image, Points

from caviar_napari._napari.reconstruction_layers import LayerDataTuple

#: The layer kinds updated here and their napari classes (read-only).
_LAYER_TYPES = MappingProxyType({"image": Image, "points": Points})


def _find(viewer: Any, name: str):
    for layer in viewer.layers:
        if layer.name == name:
            return layer
    return None


def apply_layer_tuples(
    viewer: Any,
    tuples: list[LayerDataTuple],
    *,
    max_new: int | None = None,
    skip_hidden: bool = False,
) -> tuple[list[Any], bool, bool]:
    """Update the named image layers in place, adding those that do not exist yet.

    The metadata of an updated layer is replaced by the new one (a running reconstruction's
    layer must not keep the saved state of an earlier result).

    Parameters
    ----------
    viewer
        The napari viewer.
    tuples
        ``(data, kwargs, "image")`` as made by ``layer_tuples``; ``kwargs["name"]`` identifies
        the layer to update.
    max_new
        Add at most this many new layers now (adding a layer costs far more than updating
        one; a live display spreads the additions over several event-loop turns).
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
    layers: list[Any] = []
    added = 0
    complete = True
    for data, kwargs, kind in tuples:
        if kind not in _LAYER_TYPES:
            raise ValueError(f"only image and points layers are updated here, got {kind!r}")
        layer = _find(viewer, kwargs["name"])
        if layer is None or not isinstance(layer, _LAYER_TYPES[kind]) or layer.ndim != data.ndim:
            if max_new is not None and added >= max_new:
                complete = False
                continue
            if layer is not None:
                viewer.layers.remove(layer)
            layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
            added += 1
        elif skip_hidden and not layer.visible:
            continue
        elif kind == "points":  # probe positions: replaced only when they changed
            if layer.data.shape != data.shape or not np.allclose(layer.data, data):
                layer.data = data
            layer.metadata = dict(kwargs.get("metadata", {}))
        else:
            # geometry only when it changed: each assignment refreshes the layer
            if not np.allclose(layer.scale, kwargs["scale"]):
                layer.scale = kwargs["scale"]
            if not np.allclose(layer.translate, kwargs["translate"]):
                layer.translate = kwargs["translate"]
            layer.data = data
            layer.metadata = dict(kwargs.get("metadata", {}))
            # limits over the whole (state, slice) stack, so the sliders compare states on
            # one scale: given ones (e.g. from the scanned area) or the data range
            layer.reset_contrast_limits_range(mode="data")
            if kwargs.get("contrast_limits") is not None:
                layer.contrast_limits = kwargs["contrast_limits"]
            else:
                layer.reset_contrast_limits(mode="data")
        layers.append(layer)
    return layers, bool(added), complete
