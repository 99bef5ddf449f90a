"""The parts of the Reconstruction dock (:mod:`caviar_napari._qt.reconstruction_widget`).

Modules
-------
data_panel
    Which 4D-STEM data to reconstruct (layers, files opened here, data kept after their
    layers left the view).
optics_form
    The editable beam and scan calibration.
settings_panel
    The configuration: a magicgui form of the global fields and the stage table.
stage_table
    The editable table of stages.
live_display
    Status, progress, loss plot and layers during a run, paced by the view-model.
loss_plot
    The loss-versus-iteration plot (painted with QPainter).
layers
    Assigning computed images to the run's layers.

The state, the validation and the jobs are in :mod:`caviar_napari.viewmodels.reconstruction`.
"""
