"""Drawings of DAGs and runs: a plain-text listing, Mermaid and Graphviz DOT for a DAG; a text
table, Mermaid and DOT coloured by task status for a run report. All linear in size."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._dag import DAG

__all__ = [
    "FORMATS",
    "FORMAT_HELP",
    "RUN_FORMATS",
    "RUN_FORMAT_HELP",
    "format_report",
    "render_dag",
    "render_run",
    "trim_traceback",
]

FORMATS = ("text", "mermaid", "dot")
RUN_FORMATS = ("text", "mermaid", "dot")
# what each format is for, one line each: the CLI's --help of `graph` and `show` lists them
FORMAT_HELP: dict[str, str] = {
    "text": "a tree of the tasks and their dependencies (default)",
    "mermaid": "a Mermaid flowchart, for Markdown pages (GitHub, MkDocs)",
    "dot": "Graphviz DOT, for `dot -Tsvg` and other Graphviz tools",
}
RUN_FORMAT_HELP: dict[str, str] = {
    "text": "the report: a table of the tasks, then each failure (default)",
    "mermaid": "a Mermaid flowchart, each task coloured by its status",
    "dot": "Graphviz DOT, each task coloured by its status",
}

# fill, stroke, text colour per task status (light fills: readable in light and dark themes)
STATUS_COLOURS: dict[str, tuple[str, str, str]] = {
    "SUCCESS": ("#d3f9d8", "#2b8a3e", "#1b4332"),
    "FAILED": ("#ffe3e3", "#c92a2a", "#5c0a0a"),
    "SKIPPED": ("#f1f3f5", "#868e96", "#495057"),
    "OMITTED": ("#e7f5ff", "#74c0fc", "#1864ab"),  # pale blue: left out, not wrong
    "RUNNING": ("#fff3bf", "#e67700", "#5c3c00"),
    "PENDING": ("#ffffff", "#adb5bd", "#495057"),
}
_ERROR_CHARS = 60  # the error shown in a node of a run drawing is cut to this length
_SHOWN_INSTANCES = 20  # a mapped task's instances listed in a text report


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
        spec = dag.specs[name]
        notes = [f"map over {spec.map_source}"] if spec.map_source else []
        if spec.trigger != "all_success":
            notes.append(f"trigger {spec.trigger}")
        if spec.pool is not None:
            notes.append(f"pool {spec.pool}")
        if notes:
            suffix += f"  [{', '.join(notes)}]"
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


def render_run(
    report: Mapping[str, Any],
    format: str = "mermaid",
    parents: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Draw a run report in ``format``: ``"text"`` (``format_report``), ``"mermaid"`` or
    ``"dot"``, each node coloured by its task's status and labelled with the status, the
    attempts and the duration (and the error of a failed task). ``parents`` (e.g.
    ``engine.get_dag(name).parents``) gives the edges; without it only the nodes are drawn.
    ``engine.display_run(run_id)`` draws a stored run with the edges the run recorded."""
    if format == "text":
        return format_report(report)
    if format == "mermaid":
        return _run_mermaid(report, parents)
    if format == "dot":
        return _run_dot(report, parents)
    raise ValueError(
        f"unknown run display format {format!r}; choose one of {', '.join(RUN_FORMATS)}"
    )


def _run_edges(
    tasks: Mapping[str, Any], parents: Mapping[str, Sequence[str]] | None
) -> list[tuple[str, str]]:
    if parents is None:
        return []
    return [(p, name) for name in tasks for p in parents.get(name, ()) if p in tasks]


def _run_label_lines(name: str, info: Mapping[str, Any]) -> list[str]:
    status = info["status"]
    detail = status
    attempt = info["attempt"]
    if attempt > 1:
        detail += f", {attempt} attempts"
    started, finished = info["started_at"], info["finished_at"]
    if status in ("SUCCESS", "FAILED") and started is not None and finished is not None:
        detail += f", {finished - started:.3f}s"
    instances = info.get("instances")
    if instances is not None:  # a mapped task: one node for all its instances
        done = sum(1 for i in instances.values() if i["status"] == "SUCCESS")
        detail += f", {done}/{len(instances)} instances"
    lines = [name, detail]
    error = info.get("error")
    if status == "FAILED" and error:
        first = str(error).splitlines()[0] if str(error) else ""
        cut = first if len(first) <= _ERROR_CHARS else first[: _ERROR_CHARS - 3] + "..."
        lines.append(cut)
    return lines


def _run_header(report: Mapping[str, Any]) -> str:
    return f"run {report['run_id']} of DAG {report['dag_name']!r}: {report['status']}"


def _run_mermaid(report: Mapping[str, Any], parents: Mapping[str, Sequence[str]] | None) -> str:
    tasks: Mapping[str, Mapping[str, Any]] = report["tasks"]
    ids = {name: f"t{i}" for i, name in enumerate(tasks)}
    lines = ["flowchart TD", f"    %% {_run_header(report)}"]
    if parents is None:
        lines.append("    %% dependencies unknown: draw the run with its DAG to see the edges")
    for name, info in tasks.items():
        label = "<br/>".join(_mermaid_text(part) for part in _run_label_lines(name, info))
        lines.append(f'    {ids[name]}["{label}"]')
    for parent, child in _run_edges(tasks, parents):
        lines.append(f"    {ids[parent]} --> {ids[child]}")
    by_status: dict[str, list[str]] = {}
    for name, info in tasks.items():
        by_status.setdefault(info["status"], []).append(ids[name])
    for status, nodes in by_status.items():
        fill, stroke, colour = STATUS_COLOURS.get(status, STATUS_COLOURS["PENDING"])
        css = status.lower()
        lines.append(f"    classDef {css} fill:{fill},stroke:{stroke},color:{colour}")
        lines.append(f"    class {','.join(nodes)} {css}")
    return "\n".join(lines)


def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: entity codes for the characters Mermaid parses."""
    return (
        text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def _run_dot(report: Mapping[str, Any], parents: Mapping[str, Sequence[str]] | None) -> str:
    tasks: Mapping[str, Mapping[str, Any]] = report["tasks"]
    lines = [
        f"digraph {_quote(report['dag_name'])} {{",
        f"    // {_run_header(report)}",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded,filled"];',
    ]
    for name, info in tasks.items():
        fill, stroke, colour = STATUS_COLOURS.get(info["status"], STATUS_COLOURS["PENDING"])
        label = "\\n".join(_quote(part)[1:-1] for part in _run_label_lines(name, info))
        lines.append(
            f'    {_quote(name)} [label="{label}", fillcolor="{fill}", color="{stroke}", '
            f'fontcolor="{colour}"];'
        )
    for parent, child in _run_edges(tasks, parents):
        lines.append(f"    {_quote(parent)} -> {_quote(child)};")
    lines.append("}")
    return "\n".join(lines)


def _kept(info: Mapping[str, Any], created_at: float | None) -> bool:
    """Whether a task's entry was kept from the run this one resumes: it finished before this
    run was created. A task of this run starts (and ends) after that; a resume copies the
    kept tasks' records as they were, timestamps included. A mapped task re-run in part ends
    after it (its newest instance does): only its reused instances are marked."""
    if created_at is None or info.get("status") not in _KEPT_STATUSES:
        return False
    ended = info.get("finished_at")
    if ended is None:
        ended = info.get("started_at")
    return ended is not None and ended < created_at


_KEPT_STATUSES = frozenset({"SUCCESS", "OMITTED"})
_KEPT_MARK = "(kept)"


def format_report(report: Mapping[str, Any], *, tracebacks: bool = True) -> str:
    """A run report as text: one line per task (status, attempt, duration; a mapped task's
    instances below it, the first ``_SHOWN_INSTANCES`` of them), the tasks' warnings, then
    the error and the traceback (trimmed to user code) of every failed task. In a resumed
    run, a task kept from the earlier run (not run again) ends with ``(kept)``."""
    tasks: Mapping[str, Mapping[str, Any]] = report["tasks"]
    created_at: float | None = report.get("created_at")
    lines = [f"run {report['run_id']} of DAG {report['dag_name']!r}: {report['status']}"]
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for name, info in tasks.items():
        rows.append((name, info))
        instances: Mapping[str, Mapping[str, Any]] = info.get("instances") or {}
        for key, instance in list(instances.items())[:_SHOWN_INSTANCES]:
            rows.append((f"  [{key}]", instance))
        if len(instances) > _SHOWN_INSTANCES:
            rows.append((f"  ... {len(instances) - _SHOWN_INSTANCES} more instances", {}))
    width = max([4, *(len(name) for name, _ in rows)])
    lines.append(f"  {'task':<{width}}  {'status':<8}  {'attempt':>7}  {'duration':>10}")
    for name, info in rows:
        if not info:
            lines.append(f"  {name}")
            continue
        started, finished = info["started_at"], info["finished_at"]
        duration = "-" if started is None or finished is None else f"{finished - started:.3f}s"
        mark = f"  {_KEPT_MARK}" if _kept(info, created_at) else ""
        lines.append(
            f"  {name:<{width}}  {info['status']:<8}  {info['attempt']:>7}  {duration:>10}{mark}"
        )
    warnings = [w for info in tasks.values() for w in info.get("warnings") or ()]
    if warnings:
        lines.append("")
        lines.extend(f"warning: {w}" for w in warnings)
    for name, info in tasks.items():
        if info["status"] != "FAILED":
            continue
        lines.append("")
        lines.append(f"task {name!r} failed on attempt {info['attempt']}: {info['error']}")
        trace = info.get("traceback")
        if tracebacks and trace:
            lines.append(trim_traceback(trace).rstrip("\n"))
    return "\n".join(lines)


def _internal_dirs() -> tuple[str, ...]:
    import concurrent.futures
    import importlib
    import os
    import threading

    return (
        os.path.dirname(__file__) + os.sep,  # flowrun itself
        os.path.dirname(asyncio.__file__) + os.sep,
        os.path.dirname(concurrent.futures.__file__) + os.sep,
        os.path.dirname(importlib.__file__) + os.sep,
        "<frozen importlib",
        threading.__file__,
    )


def trim_traceback(text: str, also: Sequence[str] = ()) -> str:
    """Drop the frames of flowrun, asyncio, the thread pool and the import machinery (and of
    the paths that start with one of ``also``, e.g. pytest's) from a formatted traceback, so
    what is left is the user's code; a traceback with no user frame is returned unchanged."""
    internal = (*_internal_dirs(), *also)
    kept: list[str] = []
    frame: list[str] = []
    dropped = kept_frames = 0

    def close_frame() -> None:
        nonlocal dropped, kept_frames
        if not frame:
            return
        match = re.match(r'\s*File "([^"]+)"', frame[0])
        if match and match.group(1).startswith(internal):
            dropped += 1
        else:
            kept_frames += 1
            kept.extend(frame)
        frame.clear()

    for line in text.splitlines(keepends=True):
        if line.startswith('  File "'):
            close_frame()
            frame.append(line)
        elif frame and line.startswith("    "):
            frame.append(line)
        else:
            close_frame()
            kept.append(line)
    close_frame()
    if not kept_frames or not dropped:
        return text
    return "".join(kept)
