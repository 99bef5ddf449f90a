"""The ground truth of a simulated 4D-STEM file (its ``ground_truth`` group, ARCHITECTURE).

Read by :func:`caviar_napari.io.correlations_file.read_ground_truth`; written by
:mod:`caviar_napari.simulate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GroundTruth"]


@dataclass(frozen=True)
class GroundTruth:
    """The ``ground_truth`` group of a simulated 4D-STEM file (see ARCHITECTURE).

    Attributes
    ----------
    positions_A
        ``(config, M, 2)`` positions of every configuration, ``(y, x)`` Å, scan frame.
    mean_positions_A
        ``(M, 2)`` ideal sites, Å.
    green_realised_A2
        ``(2M, 2M)`` realised Green's tensor of the configurations used (compare against this).
    green_model_A2
        ``(2M, 2M)`` the thermal model's exact tensor (None if the file has none).
    cell_index, basis_index, species, lattice_vectors_A
        Lattice indexing of the truth atoms (None where absent).
    """

    positions_A: np.ndarray
    mean_positions_A: np.ndarray
    green_realised_A2: np.ndarray
    green_model_A2: np.ndarray | None
    cell_index: np.ndarray | None
    basis_index: np.ndarray | None
    species: np.ndarray | None
    lattice_vectors_A: np.ndarray | None
