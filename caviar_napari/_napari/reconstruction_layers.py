"""napari reader and writer hooks of reconstruction files.

The layers are those of :func:`caviar_napari.viewmodels.recon_images.layer_tuples` (world
coordinates in Å of the scan frame, docs/ARCHITECTURE.md).  The phase layer's metadata carries the
full reconstruction state (complex object and probe, tilt, loss, configuration, optimiser memory)
under ``"caviar_state"``, so that a reopened file can be continued and saved again with
:func:`write_reconstruction`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from caviar_napari.errors import InputError
from caviar_napari.viewmodels.layer_keys import SOURCE_KEY, STATE_KEY
from caviar_napari.viewmodels.recon_images import (
    LayerDataTuple,
    layer_tuples,
    reconstruction_images,
)
from caviar_napari.viewmodels.recon_positions import scan_refinement

__all__ = ["SOURCE_KEY", "STATE_KEY", "reconstruction_layer_data", "write_reconstruction"]


def reconstruction_layer_data(path: str | os.PathLike) -> list[LayerDataTuple]:
    """Reader hook: the layers of a conventions §6 reconstruction file.

    The phase layer's metadata holds the loaded ``ReconState`` under ``"caviar_state"`` (so the
    Reconstruction widget can continue it and the writer can save it again) and the input file
    name under ``"caviar_source"``.  A reconstruction whose scan positions were refined
    (``scan_refinement`` group) adds the refined positions and the arrows from the nominal ones
    (:mod:`caviar_napari.viewmodels.recon_positions`).
    """
    from caviar_napari.io.reconstruction import load_reconstruction

    state = load_reconstruction(path)
    images = reconstruction_images(
        np.asarray(state.object),
        np.asarray(state.probe),
        state.pixel_size_A,
        state.object_origin_A,
        state.scan_positions_A,
        refinement=scan_refinement(state),
    )
    source = getattr(state, "source", "") or ""
    return layer_tuples(
        images,
        name=Path(path).stem,
        metadata={STATE_KEY: state, SOURCE_KEY: source, "caviar_path": str(path)},
    )


def write_reconstruction(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Writer hook: save the reconstruction held by a phase layer to the conventions §6 file.

    Parameters
    ----------
    path
        Output file (``.h5`` / ``.hdf5``), written atomically.
    data
        The layer data (unused: the complex state in the metadata is what is saved).
    attributes
        The layer attributes; ``attributes["metadata"]["caviar_state"]`` must hold the state.

    Returns
    -------
    list of str
        ``[path]``.
    """
    from caviar_napari.io.reconstruction import save_reconstruction

    metadata = attributes.get("metadata") or {}
    state = metadata.get(STATE_KEY)
    layer = attributes.get("name", "?")
    if state is None:
        raise InputError(
            f"layer {layer!r} carries no reconstruction state (metadata key {STATE_KEY!r}): "
            "save the phase layer made by the Reconstruction widget or opened from a "
            "reconstruction file"
        )
    save_reconstruction(path, state, source=str(metadata.get(SOURCE_KEY, "")))
    return [str(path)]
