"""The project's layers, held by its imports (docs/DESIGN.md, "Rules").

Imports are read with `ast`, at module level and inside functions alike, so an import cannot hide from a
rule by moving into a function. Nothing is imported or run.

(a) A model folder's config.py, torch_impl.py, keras_impl.py and weights.py import only their framework,
    their own folder (relative imports), numpy, the standard library and the copyable helpers
    (torchlike.py for Keras, weightmap.py).
(b) The building blocks import nothing from zoo/, the hub, shared/tasks or shared/train; the hub imports
    nothing from zoo/, shared/tasks or shared/train; shared/cli.py imports nothing from zoo/.
(c) No import cycle among the project's modules, and no project module imported inside a function unless
    importing it loads a framework (the one good reason to defer an import).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = {"torch", "torchvision", "keras", "tensorflow", "keras_hub", "jax"}
PROJECT_ROOTS = {"shared", "zoo", "tools", "tests", "weightmap", "torchlike"}
COPYABLE_HELPERS = {"weightmap", "torchlike"}
TWIN_FILES = ("config.py", "torch_impl.py", "keras_impl.py", "weights.py")
# What each file of a model folder may import beyond the standard library, numpy and its own folder.
FOLDER_ALLOWED = {
    "config.py": set(),
    "weights.py": {"weightmap"},
    "torch_impl.py": {"torch", "weightmap"},
    "keras_impl.py": {"keras", "keras_hub", "torchlike", "weightmap"},
}
# A twin never imports the other twin: it would load the other framework.
FOLDER_REFUSED_SIBLINGS = {"torch_impl.py": {"keras_impl"}, "keras_impl.py": {"torch_impl"}}
BUILDING_BLOCKS = (
    "shared.data",
    "shared.checkpoint",
    "shared.recipe",
    "shared.metrics",
    "shared.errors",
    "weightmap",
)
ABOVE_BUILDING_BLOCKS = ("zoo", "shared.hub", "shared.tasks", "shared.train")
ABOVE_THE_HUB = ("zoo", "shared.tasks", "shared.train")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module ("shared.hub.publish")
    target: str  # the imported module, resolved ("shared.checkpoint", "numpy", "zoo.vision.cnn.config")
    level: int  # 0 for an absolute import, 1 for "from . import", 2 for "from .. import"...
    in_function: bool
    line: int

    def __str__(self) -> str:
        where = "inside a function" if self.in_function else "at module level"
        return f"{self.source}:{self.line} imports {self.target} {where}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def project_files() -> dict[str, Path]:
    files = [ROOT / f"{name}.py" for name in sorted(COPYABLE_HELPERS)]
    for folder in ("shared", "zoo", "tools", "tests"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return {module_name(p): p for p in files if "fixtures" not in p.parts}


def _resolve(source: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[tuple[str, int]]:
    """The modules an import statement names: `from a import b` names a.b when that is a module."""
    modules = project_files()
    if isinstance(node, ast.Import):
        return [(alias.name, 0) for alias in node.names]
    base = node.module or ""
    if node.level:
        package = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    if source.startswith("tools.") and base == "_path":  # tools/*.py run as scripts: tools/ is on sys.path
        base = "tools._path"
    found = []
    for alias in node.names:
        full = f"{base}.{alias.name}"
        found.append((full if full in modules else base, node.level))
    return found


@cache
def imports_of(source: str) -> tuple[Import, ...]:
    path = project_files()[source]
    found: list[Import] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target, level in dict.fromkeys(_resolve(source, path, child)):
                    found.append(Import(source, target, level, in_function, child.lineno))
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            walk(child, inner)

    walk(ast.parse(path.read_text(), str(path)), False)
    return tuple(found)


def project_module(target: str) -> str | None:
    """The project module an import reaches (`shared.data.load` -> shared.data), or None outside it."""
    if target.split(".")[0] not in PROJECT_ROOTS:
        return None
    modules = project_files()
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def is_framework(target: str) -> bool:
    return target.split(".")[0] in FRAMEWORKS


def matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@cache
def loads_framework(module: str) -> bool:
    """Importing `module` imports a framework (directly or through project modules, at module level)."""
    for imp in imports_of(module):
        if imp.in_function:
            continue
        if is_framework(imp.target):
            return True
        target = project_module(imp.target)
        if target and target != module and loads_framework(target):
            return True
    return False


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (module level and inside functions)."""
    graph: dict[str, set[str]] = {}
    for source in project_files():
        for imp in imports_of(source):
            target = project_module(imp.target)
            if target and target != source:
                graph.setdefault(source, set()).add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def deferred_project_imports(include_tests: bool = False) -> list[Import]:
    """Imports of project modules inside functions (tests/ only when asked)."""
    return [
        imp
        for source in project_files()
        if include_tests or not source.startswith("tests.")
        for imp in imports_of(source)
        if imp.in_function and project_module(imp.target)
    ]


def model_folder_files() -> list[Path]:
    return sorted(p for name in TWIN_FILES for p in (ROOT / "zoo").glob(f"*/*/{name}"))


# ---------------------------------------------------------------- (a) model folders


def folder_violations(path: Path) -> list[str]:
    source = module_name(path)
    allowed = FOLDER_ALLOWED[path.name]
    refused_siblings = FOLDER_REFUSED_SIBLINGS.get(path.name, set())
    bad = []
    for imp in imports_of(source):
        top = imp.target.split(".")[0]
        if imp.level == 1:  # its own folder
            sibling = imp.target.split(".")[3] if imp.target.count(".") >= 3 else ""
            if sibling in refused_siblings:
                bad.append(f"{imp} (the other twin's framework)")
            continue
        if imp.level > 1:
            bad.append(f"{imp} (a relative import leaving the folder)")
        elif top == "__future__" or top in sys.stdlib_module_names or top == "numpy" or top in allowed:
            continue
        elif project_module(imp.target):
            where = "absolute, not relative" if imp.target.startswith(source.rpartition(".")[0]) else ""
            bad.append(f"{imp} ({where or 'outside the folder and the copyable helpers'})")
        else:
            bad.append(f"{imp} (not this file's framework)")
    return bad


@pytest.mark.parametrize("path", model_folder_files(), ids=lambda p: str(p.relative_to(ROOT / "zoo")))
def test_a_model_folder_imports_only_its_framework_its_folder_and_the_copyable_helpers(path):
    bad = folder_violations(path)
    assert not bad, "\n".join(bad)


def test_the_copyable_helpers_import_only_numpy_keras_and_the_standard_library():
    allowed = {"weightmap": {"numpy"}, "torchlike": {"numpy", "keras"}}
    for helper, extra in allowed.items():
        bad = [
            str(imp)
            for imp in imports_of(helper)
            if imp.target.split(".")[0] not in (sys.stdlib_module_names | extra | {"__future__"})
        ]
        assert not bad, "\n".join(bad)


# ---------------------------------------------------------------- (b) building blocks, the hub, the CLI


def reaches(prefixes_from: tuple[str, ...], prefixes_to: tuple[str, ...]) -> list[str]:
    return [
        str(imp)
        for source in project_files()
        if matches(source, prefixes_from)
        for imp in imports_of(source)
        if (target := project_module(imp.target)) and matches(target, prefixes_to)
    ]


def test_building_blocks_import_nothing_from_the_zoo_the_hub_tasks_or_trainers():
    assert "shared.data.dna" in project_files() and "shared.checkpoint" in project_files()
    bad = reaches(BUILDING_BLOCKS, ABOVE_BUILDING_BLOCKS)
    assert not bad, "\n".join(bad)


def test_the_hub_imports_nothing_from_the_zoo_tasks_or_trainers():
    assert any(matches(m, ("shared.hub",)) for m in project_files())
    bad = reaches(("shared.hub",), ABOVE_THE_HUB)
    assert not bad, "\n".join(bad)


def test_the_cli_helpers_import_nothing_from_the_zoo():
    bad = reaches(("shared.cli",), ("zoo",))
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------- (c) no cycles, no dodging


def test_no_import_cycle_among_project_modules():
    graph = import_graph()
    assert "shared.checkpoint" in graph and "zoo.spec" in graph
    found = cycles(graph)
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_a_project_module_is_imported_inside_a_function_only_when_it_loads_a_framework():
    assert loads_framework("shared.torch_weights") and not loads_framework("shared.checkpoint")
    dodging = [
        str(imp) for imp in deferred_project_imports() if not loads_framework(project_module(imp.target))
    ]
    assert not dodging, "\n".join(dodging)
