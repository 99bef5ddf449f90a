"""napari reader hook: one entry point that opens every file kind caviar-napari knows.

The kind is decided from the file's content by the io reader registry
(:data:`caviar_napari.io.readers.READERS` through :func:`~caviar_napari.io.readers.detect_kind`),
not only from its extension: a 4D-STEM dataset in any registered format, a reconstruction
(``object`` and ``probe``) or an ATOMS file.  napari.yaml offers exactly the registry's
extensions (:func:`filename_patterns`; ``tests/test_manifest.py`` checks it).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from caviar_napari.errors import InputError

__all__ = ["LAYER_FUNCTIONS", "filename_patterns", "get_reader"]

#: File kind (:data:`caviar_napari.io.readers.Kind`) → ``"module:function"`` that turns a path
#: of that kind into napari layer data (imported when a file of that kind is opened).
LAYER_FUNCTIONS: Mapping[str, str] = MappingProxyType(
    {
        "stem": "caviar_napari._napari.stem_layers:stem_layer_data",
        "reconstruction": "caviar_napari._napari.reconstruction_layers:reconstruction_layer_data",
        "atoms": "caviar_napari._napari.atoms_layers:atoms_layer_data",
    }
)


def filename_patterns() -> list[str]:
    """The reader's napari.yaml ``filename_patterns``: ``*<ext>`` for every registry extension.

    Reconstruction and ATOMS files are HDF5, so the HDF5 entry's extensions cover them.
    """
    from caviar_napari.io.readers import reader_extensions

    return [f"*{ext}" for ext in reader_extensions()]


def _layer_function(kind: str) -> Callable[[str], list]:
    if kind not in LAYER_FUNCTIONS:
        raise InputError(f"unknown file kind {kind!r}")
    module, name = LAYER_FUNCTIONS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list] | None:
    """Return a reader for ``path`` if caviar-napari understands it, else ``None``.

    napari calls this with a single path or a list of paths; each path is read on its own.
    """
    from caviar_napari.io.readers import detect_kind

    paths = [path] if isinstance(path, str | Path) else list(path)
    kinds = []
    for p in paths:
        try:
            kind = detect_kind(str(p))
        except InputError:
            return None
        if kind is None:
            return None
        kinds.append(kind)
    return functools.partial(_read_all, kinds=kinds)


def _read_all(path: str | list[str], *, kinds: list[str]) -> list:
    paths = [path] if isinstance(path, str | Path) else list(path)
    layers: list = []
    for p, kind in zip(paths, kinds, strict=True):
        layers.extend(_layer_function(kind)(str(p)))
    return layers
