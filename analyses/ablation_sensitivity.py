"""Modality-ablation sensitivity per layer and time step, and accuracy with a modality removed."""

import sys

from repsim.figures.ablation_sensitivity import main

if __name__ == "__main__":
    sys.exit(main())
