"""Re-export shim: the reconstruction configuration moved to :mod:`caviar_napari.data.config`
and its YAML files to :mod:`caviar_napari.io.config_file`.

Kept so that code importing ``caviar_napari.core.config`` works until the final import sweep;
new code imports from the new modules.
"""

from caviar_napari.data.config import (
    DEVICES,
    LOSSES,
    OPTIMIZERS,
    PADDINGS,
    PRECISIONS,
    REFINABLE,
    ReconstructionConfig,
    StageConfig,
    apply_overrides,
    config_from_yaml,
    config_json,
    config_to_yaml,
    single_stage,
    two_stage_preset,
)
from caviar_napari.io.config_file import load_yaml, save_yaml

__all__ = [
    "DEVICES",
    "LOSSES",
    "OPTIMIZERS",
    "PADDINGS",
    "PRECISIONS",
    "REFINABLE",
    "ReconstructionConfig",
    "StageConfig",
    "apply_overrides",
    "config_from_yaml",
    "config_json",
    "config_to_yaml",
    "load_yaml",
    "save_yaml",
    "single_stage",
    "two_stage_preset",
]
