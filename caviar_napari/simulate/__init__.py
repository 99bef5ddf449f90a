"""Simulated 4D-STEM datasets with known truth (abTEM multislice; ``caviar simulate``).

* the harmonic lattice dynamics (exact Green's tensor, dispersion and thermal snapshots) is the
  analysis layer's phonon model, :mod:`caviar_napari.analysis.phonons`

* :mod:`~caviar_napari.simulate.thermal` — static, Einstein and correlated ensembles;
* :mod:`~caviar_napari.simulate.psc` — partial spatial coherence (Gaussian scan average);
* :mod:`~caviar_napari.simulate.presets` — typed presets, structures, abTEM simulation and the
  ground-truth file group.

Import the submodules directly; this package imports nothing heavy (abTEM is loaded only when
a simulation runs).
"""
