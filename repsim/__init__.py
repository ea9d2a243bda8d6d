"""repsim: where audio and vision merge inside fusion ConvLSTMs, and how to look."""

__version__ = "0.3.0"
