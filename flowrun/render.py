"""Drawings of a DAG: a plain-text listing, Mermaid and Graphviz DOT. All linear in size."""

from __future__ import annotations

from .dag import DAG

__all__ = ["FORMATS", "render_dag"]

FORMATS = ("text", "mermaid", "dot")


def render_dag(dag: DAG, format: str = "text") -> str:
    """Draw ``dag`` in ``format``: ``"text"``, ``"mermaid"`` or ``"dot"``."""
    if format == "text":
        return _text(dag)
    if format == "mermaid":
        return _mermaid(dag)
    if format == "dot":
        return _dot(dag)
    raise ValueError(f"unknown display format {format!r}; choose one of {', '.join(FORMATS)}")


def _text(dag: DAG) -> str:
    lines = [f"DAG {dag.name} ({len(dag)} task{'s' if len(dag) != 1 else ''})"]
    last = len(dag.order) - 1
    for i, name in enumerate(dag.order):
        branch = "└── " if i == last else "├── "
        parents = dag.parents[name]
        suffix = f"  <- {', '.join(parents)}" if parents else ""
        lines.append(f"{branch}{name}{suffix}")
    return "\n".join(lines)


def _mermaid(dag: DAG) -> str:
    ids = {name: f"t{i}" for i, name in enumerate(dag.order)}
    lines = ["flowchart TD"]
    for name in dag.order:
        label = name.replace('"', "#quot;")
        lines.append(f'    {ids[name]}["{label}"]')
    for name in dag.order:
        for parent in dag.parents[name]:
            lines.append(f"    {ids[parent]} --> {ids[name]}")
    return "\n".join(lines)


def _dot(dag: DAG) -> str:
    lines = [f"digraph {_quote(dag.name)} {{", "    rankdir=LR;"]
    for name in dag.order:
        lines.append(f"    {_quote(name)};")
    for name in dag.order:
        for parent in dag.parents[name]:
            lines.append(f"    {_quote(parent)} -> {_quote(name)};")
    lines.append("}")
    return "\n".join(lines)


def _quote(name: str) -> str:
    """A DOT string literal; UTF-8 stays as is (Graphviz reads UTF-8, not \\u escapes)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
