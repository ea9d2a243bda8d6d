"""Linear decoding of the digit per layer and time step, and of the heard vs the seen digit."""

import sys

from repsim.figures.probes_by_layer import main

if __name__ == "__main__":
    sys.exit(main())
