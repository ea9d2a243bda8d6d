"""Packages whose public names are imported on first use.

A package's ``__init__`` lists its public names as ordinary imports under
``if TYPE_CHECKING:`` (so that type checkers and documentation tools see them) and ends with
``lazy_package(__name__)``, which reads those imports from the ``__init__``'s source and runs
each one when its name is first used. Importing a light submodule (``repsim.models.config``)
then no longer loads every heavy one (torch, scikit-learn) through the package's
``__init__``, which keeps command lines' ``--help`` quick.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


class _LazyPackage(ModuleType):
    """A package module that imports an exported name on first access."""

    _lazy_sources: dict[str, tuple[str, str]]

    def __getattr__(self, name: str) -> Any:
        sources = self.__dict__.get("_lazy_sources", {})
        if name not in sources:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        module, attribute = sources[name]
        value = getattr(importlib.import_module(module), attribute)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing a submodule binds it on its package; where an exported name is also a
        # submodule's name (repsim.analysis.cka, the module and the function), the exported
        # object wins, as it does when the package imports it eagerly.
        source = self.__dict__.get("_lazy_sources", {}).get(name)
        submodule = f"{self.__name__}.{name}"
        if (source is not None and source != (self.__name__, name)
                and isinstance(value, ModuleType) and value.__name__ == submodule):
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(self.__dict__) | set(self.__dict__.get("_lazy_sources", {})))


def lazy_package(name: str) -> None:
    """Make package ``name`` import the names of its ``if TYPE_CHECKING:`` imports lazily."""
    package = sys.modules[name]
    tree = ast.parse(Path(package.__file__ or "").read_text())
    sources = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if not isinstance(statement, ast.ImportFrom):
                    raise ValueError(f"{name}: only 'from ... import ...' may be lazy")
                module = importlib.util.resolve_name(
                    "." * statement.level + (statement.module or ""), name)
                for alias in statement.names:
                    sources[alias.asname or alias.name] = (module, alias.name)
    package.__class__ = _LazyPackage
    package.__dict__["_lazy_sources"] = sources
