"""CKA between every layer of the early-fusion and every layer of the late-fusion model."""

import sys

from repsim.figures.cka_by_layer import main

if __name__ == "__main__":
    sys.exit(main())
