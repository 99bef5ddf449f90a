"""napari reader hook: one entry point that opens every file kind caviar-napari knows.

The kind is decided from the file's content (``caviar_napari.io.readers.detect_kind``), not only
its extension: a 4D-STEM dataset, a reconstruction (``object`` and ``probe``) or an ATOMS file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from caviar_napari.errors import InputError


def _layer_function(kind: str) -> Callable[[str], list]:
    if kind == "stem":
        from caviar_napari._napari.stem_layers import stem_layer_data

        return stem_layer_data
    if kind == "reconstruction":
        from caviar_napari._napari.reconstruction_layers import reconstruction_layer_data

        return reconstruction_layer_data
    if kind == "atoms":
        from caviar_napari._napari.atoms_layers import atoms_layer_data

        return atoms_layer_data
    raise InputError(f"unknown file kind {kind!r}")


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
