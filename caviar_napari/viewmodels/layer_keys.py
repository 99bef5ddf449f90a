"""Metadata keys of the napari layers made by the plugin (the contract between the reader
hooks, the view-models and the dock widgets)."""

from __future__ import annotations

#: 4D-STEM layer: the :class:`~caviar_napari.io.dataset.STEMDataset`.
DATASET_KEY = "caviar_dataset"
#: 4D-STEM or reconstruction layer: the file it was read from.
PATH_KEY = "caviar_path"
#: Reconstruction phase layer: the full ``ReconState`` (continue, save).
STATE_KEY = "caviar_state"
#: Reconstruction layers: the 4D-STEM file the reconstruction came from.
SOURCE_KEY = "caviar_source"
#: Reconstruction layers: role of the layer ("phase", "amplitude", "probe", "scan").
RECON_ROLE_KEY = "caviar_recon_role"
#: Points layer carrying an :class:`~caviar_napari.io.atoms_file.AtomsData` (Atoms widget,
#: ATOMS reader), read by the Correlations and Dispersion docks.
ATOMS_METADATA_KEY = "caviar_atoms"
#: Atom layers: role of the layer ("mean", "states", "lattice").
ATOMS_ROLE_KEY = "caviar_atoms_role"
