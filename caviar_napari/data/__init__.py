"""The data layer: the types every other layer passes around, with their validation.

It sits at the bottom of the package (docs/ARCHITECTURE.md): its modules import nothing of
caviar_napari but :mod:`caviar_napari.errors`.  Physics (``core``) computes on these types and
``io`` reads and writes them; neither is needed to build or check one.

* :mod:`~caviar_napari.data.beam`: relativistic wavelength and interaction constant;
* :mod:`~caviar_napari.data.dataset`: :class:`STEMDataset` (a calibrated 4D-STEM dataset);
* :mod:`~caviar_napari.data.config`: the reconstruction configuration and its presets;
* :mod:`~caviar_napari.data.recon`: :class:`ReconState` (a reconstruction and its resume state);
* :mod:`~caviar_napari.data.atoms`, :mod:`~caviar_napari.data.correlations`,
  :mod:`~caviar_napari.data.dispersion`: the records of the ATOMS, CORR and DISP files;
* :mod:`~caviar_napari.data.checks`: the field checks they share.
"""
