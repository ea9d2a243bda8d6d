"""Every command's ``--help`` starts without torch, scikit-learn, matplotlib, pandas, xarray or
h5py: parsing arguments imports only what the parser needs, so asking a command what it does
is quick (0.1-0.2 s on a quiet 2-core machine; with pandas, xarray and h5py it took 1.2-1.4 s).

Each command runs in a fresh ``python -X importtime`` process; a heavy module in its import
list fails the test, naming the repsim modules through which it came in.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from paths import REPO_ROOT

from repsim.commands import COMMANDS as REPSIM_COMMANDS
from repsim.figures import FIGURES

HEAVY = ("torch", "sklearn", "matplotlib", "pandas", "xarray", "h5py")
# Seconds of imports a --help may take: well under a second on a quiet machine, but the suite
# shares its cores (with other tests, other users): a bound for gross regressions only, the
# list of modules above being the precise check.
IMPORT_SECONDS = 10.0

# The command lines (after ``python``) whose --help must be light: one line per command.
HELP_COMMANDS = [
    ["-m", "repsim"],
    *(["-m", "repsim", name] for name in REPSIM_COMMANDS),
    ["-m", "repsim.train"],
    ["-m", "repsim.extract"],
    ["-m", "repsim.study"],
    ["-m", "repsim.data"],
    ["-m", "repsim.report"],
    ["-m", "repsim.figures"],
    *(["-m", "repsim.figures", name] for name in FIGURES),
    *([f"analyses/{name}.py"] for name in FIGURES),
    *([["-m", "repsim.record"]] if importlib.util.find_spec("repsim.record") else []),
]


def imports(stderr: str) -> list[tuple[int, str, int]]:
    """``(depth, module, cumulative microseconds)`` per line of ``-X importtime`` output, in
    its order (a module after the modules it imported)."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():  # the header line
            continue
        rows.append(((len(name) - len(name.lstrip()) - 1) // 2, name.strip(),
                     int(cumulative)))
    return rows


def heavy_imports(rows: list[tuple[int, str, int]]) -> list[str]:
    """``"torch (via repsim.device <- repsim.study.cli)"`` for each heavy package imported."""
    found = {}
    for i, (depth, name, _) in enumerate(rows):
        if name not in HEAVY or name in found:
            continue
        chain, level = [], depth
        for parent_depth, parent, _ in rows[i + 1:]:
            if parent_depth < level:
                level = parent_depth
                if parent.startswith("repsim") or parent.startswith("analyses"):
                    chain.append(parent)
        via = " <- ".join(chain) or "a function, not a module's top level"
        found[name] = f"{name} (via {via})"
    return list(found.values())


def test_heavy_imports_are_found_and_traced():
    """The parser of -X importtime output on a known import: json is light, torch is not."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import json, torch"],
                          capture_output=True, text=True, timeout=300)
    rows = imports(done.stderr)
    names = [name for _, name, _ in rows]
    assert "json" in names and "torch" in names and "torch.nn" in names
    assert heavy_imports(rows) == ["torch (via a function, not a module's top level)"]
    assert heavy_imports([row for row in rows if not row[1].startswith("torch")]) == []


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=" ".join)
def test_help_imports_no_heavy_library(command):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-X", "importtime", *command, "--help"], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    rows = imports(done.stderr)
    assert not heavy_imports(rows), f"{' '.join(command)} --help imports {heavy_imports(rows)}"
    seconds = sum(cumulative for depth, _, cumulative in rows if depth == 0) / 1e6
    assert seconds < IMPORT_SECONDS, f"{' '.join(command)} --help imports for {seconds:.1f} s"
