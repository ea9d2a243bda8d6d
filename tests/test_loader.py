"""``MODULE:FUNCTION``: one loader for dataset plugins and the recorder's command line, one set
of one-line messages (each caller adds what it was loading)."""

import json

import pytest

from repsim.data.registry import build_dataset
from repsim.loader import load_function
from repsim.record.cli import load_function as record_load_function


def test_a_module_function_and_a_file_function_load(tmp_path):
    assert load_function("json:dumps") is json.dumps
    (tmp_path / "user_code.py").write_text("def build():\n    return 42\n")
    assert load_function(f"{tmp_path / 'user_code.py'}:build", files=True)() == 42


@pytest.mark.parametrize("spec, files, message", [
    ("json", False, "'json' is not of the form MODULE:FUNCTION"),
    (":dumps", False, "':dumps' is not of the form MODULE:FUNCTION"),
    ("json:", True, "'json:' is not of the form MODULE:FUNCTION (e.g. my_model.py:build)"),
    ("json:nothing_here", False, "module json has no function nothing_here"),
    ("json:__doc__", False, "module json has no function __doc__"),  # not callable
    ("no_such_module_q:build", False,
     "cannot import no_such_module_q (ModuleNotFoundError: No module named 'no_such_module_q')"),
])
def test_every_mistake_is_one_line(spec, files, message):
    with pytest.raises(ValueError) as error:
        load_function(spec, files=files)
    assert str(error.value) == message


def test_a_file_is_a_module_only_where_files_are_allowed(tmp_path):
    path = tmp_path / "user_code.py"
    path.write_text("def build():\n    return 42\n")
    with pytest.raises(ValueError, match=r"^cannot import .*user_code\.py \(ModuleNotFoundError"):
        load_function(f"{path}:build")
    with pytest.raises(ValueError, match=r"^the file .*missing\.py does not exist$"):
        load_function(f"{tmp_path / 'missing.py'}:build", files=True)


def test_an_error_raised_while_importing_is_named_with_its_first_line(tmp_path):
    """Even a ValueError of the user's module (it once passed through unexplained)."""
    path = tmp_path / "broken_code.py"
    path.write_text("raise ValueError('no weights here\\nsecond line')\n")
    with pytest.raises(ValueError) as error:
        record_load_function(f"{path}:build")
    assert str(error.value) == (f"{path}:build: cannot import {path} (ValueError: no weights "
                                f"here)")


def test_both_callers_say_what_they_were_loading():
    with pytest.raises(ValueError, match=r"^json:nothing: module json has no function nothing$"):
        record_load_function("json:nothing")
    with pytest.raises(ValueError,
                       match=r"^dataset 'json:nothing': module json has no function nothing$"):
        build_dataset("json:nothing")
