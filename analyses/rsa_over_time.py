"""How a layer's representational geometry evolves, and when two networks' geometries agree."""

import sys

from repsim.figures.rsa_over_time import main

if __name__ == "__main__":
    sys.exit(main())
