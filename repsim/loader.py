"""``MODULE:FUNCTION``: the one rule by which a user names a function of their own code.

Dataset plugins ([repsim.data.registry][]) and the recorder's command line
(``repsim.record.cli``) both take functions named this way; this one loader imports them, so
that both accept the same forms and fail with the same one-line messages, each caller adding
what was being loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any


def load_function(spec: str, files: bool = False) -> Callable[..., Any]:
    """The function that ``spec`` names.

    Parameters
    ----------
    spec
        ``module.name:function``: a function of an importable module; with ``files``, also
        ``path/file.py:function``: a function of a Python file, which is run as a module.
    files
        Whether a ``.py`` file may stand for the module (the recorder's command line allows
        it; a dataset name does not, so that a study file names only installed code).

    Returns
    -------
    Callable
        The function (any callable attribute of the module).

    Raises
    ------
    ValueError
        One line, without the caller's context, when ``spec`` is not ``MODULE:FUNCTION``,
        the file does not exist, the module fails to import (naming the error it raised), or
        it has no callable of that name.
    """
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute:
        example = " (e.g. my_model.py:build)" if files else ""
        raise ValueError(f"{spec!r} is not of the form MODULE:FUNCTION{example}")
    path = Path(module_name)
    if files and module_name.endswith(".py") and not path.is_file():
        raise ValueError(f"the file {path} does not exist")
    try:
        if files and module_name.endswith(".py"):
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except Exception as error:  # whatever the user's module raised while importing
        lines = str(error).splitlines()
        raise ValueError(f"cannot import {module_name} ({type(error).__name__}: "
                         f"{lines[0] if lines else ''})") from error
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"module {module_name} has no function {attribute}")
    return function
