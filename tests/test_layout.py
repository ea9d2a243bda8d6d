"""The package's shape: one home per concept, no import cycles, light imports for readers."""

import ast
import subprocess
import sys

import pytest
from paths import REPO_ROOT

PACKAGE = REPO_ROOT / "repsim"
RUN_FILES = ("ckpt.pt", "config.json", "log.csv", "metrics.json", "activations.h5")
CONDITION_NAMES = ("clean", "incongruent", "audio_removed", "visual_removed")


def _module_name(path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(path): ast.parse(path.read_text(), str(path))
            for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The repsim modules ``name`` imports anywhere (module level or inside functions)."""
    package = name if name in known and any(k.startswith(name + ".") for k in known) \
        else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {module for module in found if module in known and module != name}


def test_no_two_repsim_modules_import_each_other():
    modules = _modules()
    graph = {name: _imports(name, tree, set(modules)) for name, tree in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            current = stack.pop()
            if current == goal:
                return True
            if current not in seen:
                seen.add(current)
                stack.extend(graph[current])
        return False

    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})
    assert cycles == [], f"import cycles through: {cycles}"


def test_readers_do_not_import_the_training_loop():
    code = ("import sys, repsim.extract, repsim.checkpoint, repsim.analysis, "
            "repsim.activations; print(sorted(m for m in sys.modules "
            "if m.startswith('repsim.train')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO_ROOT)
    assert done.stdout.strip() == "[]"


def _string_literals(tree: ast.Module) -> set[str]:
    """String constants of a module, docstrings excluded."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings}


def test_run_file_and_condition_names_are_spelled_in_one_module():
    sources = {**_modules(), **{f"analyses.{path.stem}": ast.parse(path.read_text())
                                for path in sorted((REPO_ROOT / "analyses").glob("*.py"))}}
    literals = {name: _string_literals(tree) for name, tree in sources.items()}
    for word in RUN_FILES + CONDITION_NAMES:
        homes = [name for name, strings in literals.items() if word in strings]
        assert len(homes) == 1, f"{word!r} is spelled in {homes}"


def test_the_analyses_import_nothing_of_the_activation_files():
    modules = _modules()
    file_format = {name for name in modules if name.split(".")[:2] == ["repsim", "activations"]}
    for name, tree in modules.items():
        if name.split(".")[:2] == ["repsim", "analysis"]:
            assert not _imports(name, tree, set(modules)) & file_format, name
    code = ("import sys, repsim.analysis as analysis; [getattr(analysis, name) for name in "
            "analysis.__all__]; print(sorted(m for m in sys.modules "
            "if m.startswith(('repsim.activations', 'repsim.labelled'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO_ROOT)
    assert done.stdout.strip() == "[]"


def test_the_analyses_of_whole_files_keep_their_old_names():
    import repsim.analysis
    import repsim.labelled

    assert repsim.analysis.probe_all is repsim.labelled.probe_all
    assert repsim.analysis.ablation_sensitivity is repsim.labelled.ablation_sensitivity
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        repsim.analysis.nothing  # noqa: B018


def _public_functions(tree: ast.Module):
    """Module-level functions and methods of public classes, without a leading underscore."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield from (item for item in node.body
                        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef))


def test_public_functions_are_fully_annotated():
    unannotated = []
    for name, tree in _modules().items():
        if any(part.startswith("_") and part not in ("__init__", "__main__")
               for part in name.split(".")):
            continue
        for function in _public_functions(tree):
            if function.name.startswith("_") and function.name != "__init__":
                continue
            arguments = function.args
            parameters = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                          *filter(None, (arguments.vararg, arguments.kwarg))]
            missing = [p.arg for p in parameters
                       if p.annotation is None and p.arg not in ("self", "cls")]
            if function.returns is None and function.name != "__init__":
                missing.append("return")
            if missing:
                unannotated.append(f"{name}.{function.name}: {', '.join(missing)}")
    assert unannotated == []
