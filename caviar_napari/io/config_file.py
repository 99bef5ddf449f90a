"""Reconstruction configuration files (YAML): :func:`load_yaml` and :func:`save_yaml`.

The layout is that of :mod:`caviar_napari.data.config` (the keys are the dataclass fields);
``resources/example-config.yaml`` is an example.  Writing is atomic.
"""

from __future__ import annotations

import os
from pathlib import Path

from caviar_napari.data.config import ReconstructionConfig, config_from_yaml, config_to_yaml
from caviar_napari.errors import InputError
from caviar_napari.io.atomic import atomic_path

__all__ = ["load_yaml", "save_yaml"]


def load_yaml(path: str | os.PathLike) -> ReconstructionConfig:
    """Read a configuration YAML file (``yaml.safe_load``) and validate it.

    Raises
    ------
    InputError
        Missing or unparsable file, unknown key (named, with the file) or invalid value.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: configuration file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not valid YAML ({exc})") from exc
    return config_from_yaml(text, source=str(p))


def save_yaml(path: str | os.PathLike, config: ReconstructionConfig) -> None:
    """Write ``config`` as YAML (readable back with :func:`load_yaml`), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(config_to_yaml(config), encoding="utf-8")
