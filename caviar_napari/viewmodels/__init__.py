"""Qt-free view-models of the dock widgets (the split of napari-animation: model here, thin
widgets in :mod:`caviar_napari._qt`).

Each dock has one module here holding its parameter state as typed dataclasses, the validation
of what the user typed, the calls into :mod:`~caviar_napari.core`, :mod:`~caviar_napari.analysis`
and :mod:`~caviar_napari.io`, and results ready to draw (layer-data tuples, arrows, plot series,
texts).  Work that takes time is offered as generator *jobs* that a widget runs in a worker
thread; the widgets only bind controls to the view-model and put its results into layers.

Nothing here imports Qt or napari, so every module is tested without a display
(``tests/viewmodels``).

Modules
-------
layer_keys
    Metadata keys of the layers the plugin makes (shared with the napari hooks).
notices
    Warnings carried by results, collected for display.
recon_images
    Phase, amplitude and probe images of a reconstruction and their layer tuples.
reconstruction
    Reconstruction dock: calibration, configuration, data sources, run jobs, live pacing.
atoms_layers
    Layer tuples of atom positions, per-state positions and lattice vectors.
atoms
    Atoms dock: detection and refinement parameters, jobs, drawables, files.
correlation_blocks
    Which 2×2 Green's-tensor blocks the arrows show (per atom or unit-cell averaged).
correlations
    Correlations dock: selection, arrow options, compute and comparison jobs, drawables.
dispersion
    Dispersion dock: parameters, masses, compute job, plot series and table rows.
"""
