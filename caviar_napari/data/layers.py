"""The ground truth of one layer of a layered simulated specimen (issue 16).

Written by ``caviar simulate`` for the bilayer presets into ``ground_truth/layers/<name>`` and
read by :func:`caviar_napari.io.truth_layers.read_truth_layers`; the depth-resolved analysis
(:mod:`caviar_napari.analysis.depth`) matches reconstructed z-ranges to these layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["TruthLayer"]


@dataclass(frozen=True, eq=False)
class TruthLayer:
    """What a simulation knows about one of its layers.

    Attributes
    ----------
    name
        ``"upper"`` (met first by the beam) or ``"lower"``.
    atoms
        ``(n,)`` int indices of the layer's atoms in the ground truth's atom list.
    z_A
        Depth of the layer's atom plane below the entrance surface, Å.
    entrance_z_A
        Depth of the top of the simulation slice that transmits the layer (where a multislice
        model puts its phase), Å.
    truth_slices
        ``(k,)`` int: the slices of ``ground_truth/phase`` the layer occupies.
    lattice_vectors_A
        ``(2, 2)`` rows a1, a2 ``(y, x)`` of the layer's own lattice, Å.
    origin_A
        ``(2,)`` scan-frame position of the layer's cell ``(0, 0)``, basis atom 0, Å.
    cell_index, basis_index
        ``(n, 2)`` and ``(n,)`` int indices in the layer's own frame.
    rotation_deg
        Angle the layer is turned by from the standard orientation (a1 along x), degrees.
    springs
        The layer's harmonic springs, ``{"k_nn": …, …}`` eV/Å².
    green_model_A2, green_realised_A2
        ``(2n, 2n)`` the layer's exact model Green's tensor and the realised one of the
        configurations used (in-plane, dof ``2i + a`` over the layer's atoms in order).
    phase
        ``(H, W)`` float32 projected phase of the layer's ideal atoms alone, on the grid of
        ``ground_truth/phase`` (rad).
    """

    name: str
    atoms: np.ndarray
    z_A: float
    entrance_z_A: float
    truth_slices: np.ndarray
    lattice_vectors_A: np.ndarray
    origin_A: np.ndarray
    cell_index: np.ndarray
    basis_index: np.ndarray
    rotation_deg: float
    green_model_A2: np.ndarray
    green_realised_A2: np.ndarray
    phase: np.ndarray
    springs: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        atoms = np.asarray(self.atoms, dtype=np.int64).ravel()
        n = atoms.size
        shapes = {
            "lattice_vectors_A": (self.lattice_vectors_A, (2, 2)),
            "origin_A": (self.origin_A, (2,)),
            "cell_index": (self.cell_index, (n, 2)),
            "basis_index": (self.basis_index, (n,)),
            "green_model_A2": (self.green_model_A2, (2 * n, 2 * n)),
            "green_realised_A2": (self.green_realised_A2, (2 * n, 2 * n)),
        }
        for key, (value, want) in shapes.items():
            if np.shape(value) != want:
                raise InputError(
                    f"layer {self.name!r}: {key} has shape {np.shape(value)}, expected {want}"
                )
        if np.ndim(self.phase) != 2:
            raise InputError(
                f"layer {self.name!r}: phase must be (H, W), got {np.shape(self.phase)}"
            )
        object.__setattr__(self, "atoms", atoms)
        object.__setattr__(self, "truth_slices", np.asarray(self.truth_slices, np.int64).ravel())
        for key in ("lattice_vectors_A", "origin_A", "green_model_A2", "green_realised_A2"):
            object.__setattr__(self, key, np.asarray(getattr(self, key), dtype=float))
        object.__setattr__(self, "cell_index", np.asarray(self.cell_index, dtype=np.int64))
        object.__setattr__(self, "basis_index", np.asarray(self.basis_index, dtype=np.int64))
        object.__setattr__(self, "phase", np.asarray(self.phase, dtype=np.float32))

    @property
    def n_atoms(self) -> int:
        """Number of atoms of the layer."""
        return int(self.atoms.size)
