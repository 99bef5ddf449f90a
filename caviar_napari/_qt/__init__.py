"""Every Qt import of caviar-napari lives in this subpackage: dock widgets, plots, workers."""
