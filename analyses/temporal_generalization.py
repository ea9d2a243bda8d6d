"""When information appears in each layer, and whether its code holds over time."""

import sys

from repsim.figures.temporal_generalization import main

if __name__ == "__main__":
    sys.exit(main())
