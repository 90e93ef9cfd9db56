"""A run's DAG drawn as SVG on the server, each task coloured by its status.

Why on the server: the page stays plain JavaScript with no drawing library, and a run is drawn
the same for the page, for ``curl`` and for the tests. The layout is layered (Sugiyama-style,
simplified): a task's column is the longest path from a root, rows are ordered by the mean
row of each task's parents, then of its children (one sweep each way), which untangles the
common fan-out/fan-in shapes. Everything is linear in tasks plus edges (sorting a column aside),
so a 1,000-task run draws in milliseconds. Every user-controlled string (task names, errors,
the run id) is escaped, and characters XML cannot carry are replaced, so an error holding
``<script>`` is text and the document always parses.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from .._render import STATUS_COLOURS

__all__ = ["NODE_H", "NODE_W", "layered_layout", "render_run_svg"]

NODE_W = 200
NODE_H = 46
COL_GAP = 44
ROW_GAP = 14
PAD = 16
_NAME_CHARS = 26  # a longer task name is cut in the box (the full name is in its tooltip)
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(text: object) -> str:
    """``text`` safe inside an XML element or a quoted attribute."""
    return escape(_XML_INVALID.sub("\ufffd", str(text)), quote=True)


def layered_layout(parents: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """The tasks of ``parents`` (task -> its parents) in columns: column ``i`` holds the tasks
    whose longest path from a root has ``i`` edges (a root itself sits one column before its
    nearest child, so a late input has a short edge), each column in drawing order (top
    first). Parents that are not keys are ignored; tasks on a cycle (a corrupt record) go
    last."""
    children: dict[str, list[str]] = {name: [] for name in parents}
    waiting: dict[str, int] = {}
    for name, deps in parents.items():
        known = [p for p in dict.fromkeys(deps) if p in children and p != name]
        waiting[name] = len(known)
        for parent in known:
            children[parent].append(name)
    waiting_at_start = dict(waiting)
    ready = deque(name for name, count in waiting.items() if count == 0)
    level: dict[str, int] = {}
    order: list[str] = []
    while ready:
        name = ready.popleft()
        order.append(name)
        mine = level.setdefault(name, 0)
        for child in children[name]:
            if level.get(child, -1) < mine + 1:
                level[child] = mine + 1
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    last = max(level.values(), default=-1) + 1
    for name in parents:
        if name not in level or waiting[name] > 0:  # on a cycle: never became ready
            level[name] = last
            if name not in order:
                order.append(name)
    for name in order:  # a root sits just before its first child, not far left of it
        if not waiting_at_start[name] and children[name]:
            level[name] = max(0, min(level[c] for c in children[name]) - 1)
    columns: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for name in order:
        columns[level[name]].append(name)
    _untangle(columns, parents, children)
    return columns


def _untangle(
    columns: list[list[str]],
    parents: Mapping[str, Sequence[str]],
    children: Mapping[str, Sequence[str]],
) -> None:
    """One barycentre sweep left to right (by parents' rows), one back (by children's)."""
    row = {name: i for column in columns for i, name in enumerate(column)}

    def sweep(indices: range, neighbours: Mapping[str, Sequence[str]]) -> None:
        for c in indices:
            column = columns[c]
            keys = {}
            for name in column:
                near = [row[n] for n in neighbours[name] if n in row and n != name]
                keys[name] = sum(near) / len(near) if near else row[name]
            column.sort(key=keys.__getitem__)  # stable: ties keep their order
            for i, name in enumerate(column):
                row[name] = i

    sweep(range(1, len(columns)), parents)
    sweep(range(len(columns) - 2, -1, -1), children)


def _detail(info: Mapping[str, Any]) -> str:
    status = str(info.get("status"))
    parts = [status]
    attempt = info.get("attempt") or 0
    if attempt > 1:
        parts.append(f"{attempt} attempts")
    instances = info.get("instances")
    if instances is not None:
        done = sum(1 for i in instances if i.get("status") == "SUCCESS")
        parts.append(f"{done}/{len(instances)} instances")
    duration = info.get("duration_s")
    if duration is not None and info.get("finished_at") is not None:  # a running one's grows:
        parts.append(f"{duration:.2f}s")  # the drawing is redrawn only when a status changes
    return ", ".join(parts)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def render_run_svg(tasks: Sequence[Mapping[str, Any]], title: str) -> str:
    """An SVG document of the tasks (each a mapping with ``name``, ``status``, ``deps`` and
    optionally ``attempt``, ``duration_s``, ``error``, ``instances``), coloured by status:
    a ``<g class="node" data-task=... data-status=...>`` per task, a ``<path class="edge">``
    per dependency. ``title`` labels the drawing for screen readers."""
    by_name = {str(t["name"]): t for t in tasks}
    parents = {name: [str(p) for p in t.get("deps") or ()] for name, t in by_name.items()}
    columns = layered_layout(parents)
    tallest = max((len(c) for c in columns), default=0)
    step_x, step_y = NODE_W + COL_GAP, NODE_H + ROW_GAP
    height = max(PAD * 2 + tallest * step_y - ROW_GAP, NODE_H + PAD * 2)
    width = max(PAD * 2 + len(columns) * step_x - COL_GAP, NODE_W + PAD * 2)
    where: dict[str, tuple[int, int]] = {}
    for c, column in enumerate(columns):
        top = PAD + (tallest - len(column)) * step_y // 2  # short columns centred
        for r, name in enumerate(column):
            where[name] = (PAD + c * step_x, top + r * step_y)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{xml_text(title)}" font-family="system-ui, sans-serif" font-size="12">',
        f"<title>{xml_text(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#868e96"/></marker>'
        "</defs>",
        '<g class="edges" fill="none" stroke="#adb5bd" stroke-width="1.2">',
    ]
    half = NODE_H // 2
    bend = COL_GAP // 2
    for name, deps in parents.items():
        x2, y2 = where[name]
        y2 += half
        for parent in dict.fromkeys(deps):
            if parent not in where or parent == name:
                continue
            x1, y1 = where[parent]
            x1, y1 = x1 + NODE_W, y1 + half
            out.append(
                f'<path class="edge" d="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}" '
                'marker-end="url(#arrow)"/>'
            )
    out.append("</g>")
    for name, (x, y) in where.items():
        info = by_name[name]
        status = str(info.get("status"))
        fill, stroke, colour = STATUS_COLOURS.get(status, STATUS_COLOURS["PENDING"])
        tip = f"{name}\n{_detail(info)}"
        error = info.get("error")
        if error:
            tip += f"\n{error}"
        out.append(
            f'<g class="node" data-task="{xml_text(name)}" data-status="{xml_text(status)}">'
            f"<title>{xml_text(tip)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{x + 10}" y="{y + 19}" fill="{colour}" font-weight="600">'
            f"{xml_text(_cut(name, _NAME_CHARS))}</text>"
            f'<text x="{x + 10}" y="{y + 36}" fill="{colour}">'
            f"{xml_text(_cut(_detail(info), _NAME_CHARS + 3))}</text></g>"
        )
    out.append("</svg>")
    return "\n".join(out)
