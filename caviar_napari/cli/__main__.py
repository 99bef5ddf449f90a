import sys

from caviar_napari.cli import main

sys.exit(main())
