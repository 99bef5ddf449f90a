"""caviar-napari: CAVIAR (Correlated Atomic Vibration Imaging, sub-Å resolution) in napari.

The package has three layers:

* ``caviar_napari.core``, ``analysis``, ``simulate``, ``io`` — Qt-free numerics and files;
* ``caviar_napari._qt`` — napari dock widgets (every Qt import lives there);
* ``caviar_napari.cli`` — the ``caviar`` command line over the same core.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
