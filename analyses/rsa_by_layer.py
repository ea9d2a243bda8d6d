"""RSA per layer: digit RDMs, and whether each layer follows the heard or the seen digit."""

import sys

from repsim.figures.rsa_by_layer import main

if __name__ == "__main__":
    sys.exit(main())
