"""repsim: where audio and vision merge inside fusion ConvLSTMs, and how to look."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0"


def __getattr__(name: str) -> Any:
    """``repsim.record`` loads on first use (``import repsim`` stays free of torch)."""
    if name == "record":
        return importlib.import_module("repsim.record")
    raise AttributeError(f"module 'repsim' has no attribute {name!r}")
