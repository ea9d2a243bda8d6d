"""Look inside any PyTorch network: ``repsim.record(model, stimuli, layers=[...], out=...)``
records the chosen layers per time step into an activation file that every repsim analysis
reads (``python -m repsim.record`` from the command line).

This package is callable: ``repsim.record(...)`` is :func:`repsim.record.api.record`, whose
signature and docstring ``help(repsim.record)``, ``inspect.signature`` and IDEs show.
``repsim.record.layers(model, example_batch)`` lists a model's modules with their output
shapes and calls per forward, to choose layers from. Its parts load on first use, so that
importing it (and ``--help``) stays light: :mod:`~repsim.record.hooks` (module selection,
outputs, time rules), :mod:`~repsim.record.stimuli` (batches, the stimulus table,
conditions), :mod:`~repsim.record.listing`, :mod:`~repsim.record.pooling` and
:mod:`~repsim.record.api`.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import Any

_PACKAGE_DOC = __doc__ or ""

# public name: the module that defines it
_EXPORTS = {
    "record": "repsim.record.api",
    "RecordResult": "repsim.record.result",
    "RecordingStopped": "repsim.record.api",
    "state_dict_sha256": "repsim.record.api",
    "Layer": "repsim.record.hooks",
    "select_layers": "repsim.record.hooks",
    "RecordBatch": "repsim.record.stimuli",
    "layers": "repsim.record.listing",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _record() -> Any:
    return importlib.import_module("repsim.record.api").record


class _CallableModule(types.ModuleType):
    """Lets ``repsim.record(...)`` call :func:`repsim.record.api.record`, and shows that
    function's signature and docstring (the call form alone would show ``(*args,
    **kwargs)``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _record()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(_record())

    # a module's __doc__ is a plain attribute; a property on the class is read before it
    @property
    def __doc__(self) -> str:  # type: ignore[override]
        record = _record()
        return (f"{_PACKAGE_DOC}\nrepsim.record{inspect.signature(record)}\n\n"
                f"{inspect.getdoc(record)}")


sys.modules[__name__].__class__ = _CallableModule
