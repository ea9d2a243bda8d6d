"""Look inside any PyTorch network: ``repsim.record(model, stimuli, layers=[...], out=...)``
records the chosen layers per time step into an activation file that every repsim analysis
reads (``python -m repsim.record`` from the command line).

This package is callable: ``repsim.record(...)`` is :func:`repsim.record.api.record`. Its
parts load on first use, so that importing it (and ``--help``) stays light:
:mod:`~repsim.record.hooks` (module selection, outputs, time rules),
:mod:`~repsim.record.stimuli` (batches, the stimulus table, conditions),
:mod:`~repsim.record.pooling` and :mod:`~repsim.record.api`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# public name: the module that defines it
_EXPORTS = {
    "record": "repsim.record.api",
    "RecordResult": "repsim.record.result",
    "RecordingStopped": "repsim.record.api",
    "state_dict_sha256": "repsim.record.api",
    "Layer": "repsim.record.hooks",
    "select_layers": "repsim.record.hooks",
    "RecordBatch": "repsim.record.stimuli",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Lets ``repsim.record(...)`` call :func:`repsim.record.api.record`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module("repsim.record.api").record(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
