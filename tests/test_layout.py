"""The code's layout rules: public modules apart from private ones, and no import cycle."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import flowrun

PACKAGE = Path(flowrun.__file__).resolve().parent
PUBLIC = {"__init__", "__main__", "cli", "errors", "executors", "otel", "testing", "state", "web"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def test_only_the_public_modules_have_names_without_an_underscore() -> None:
    top_level = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()
    }
    assert {name for name in top_level if not name.startswith("_")} | {"__init__", "__main__"} == (
        PUBLIC
    )


def _runtime_imports(tree: ast.Module) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:``: an import only mypy reads is no
    cycle at run time (it lets a module of a class's functions name the class)."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def test_no_import_cycle_among_the_modules() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.module else base
            if target in modules:
                deps.add(target)
            for alias in node.names:  # from . import _engine
                if f"{target}.{alias.name}" in modules:
                    deps.add(f"{target}.{alias.name}")
        # a package's __init__ imports its children; a child importing its package's other
        # children through the parent name is the same edge the other way: not a cycle
        graph[name] = {d for d in deps if d != name and d != package}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle
