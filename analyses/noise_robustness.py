"""Accuracy under white noise for every fusion layer: the paper's main figure."""

import sys

from repsim.figures.noise_robustness import main

if __name__ == "__main__":
    sys.exit(main())
