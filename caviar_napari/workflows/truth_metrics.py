"""Re-export shim: the truth metrics moved to :mod:`caviar_napari.analysis.truth` (issue 18).

Kept for code in other branches that still imports the old path; the lead's final import sweep
deletes it.
"""

from caviar_napari.analysis.truth import *  # noqa: F403
from caviar_napari.analysis.truth import __all__  # noqa: F401
