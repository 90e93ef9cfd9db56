"""What the web view shows, as plain JSON-ready dicts built from run summaries.

Only summaries are read (``results=False``): the page never shows a result, so nothing is
decoded (a database of pickled results is safe to browse) and a run of big results costs what
a run of small ones does. Mapped instances are folded under their task, as in run reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._mapping import instance_name
from .._render import trim_traceback
from .._report import build_report
from ..errors import UnknownRunError, suggest
from ..state.memory import InMemoryStateStore
from ..state.records import FAILED, RUNNING, SUCCESS, RunRecord, TaskRecord
from ..state.sqlite import SqliteStateStore

__all__ = [
    "STATUSES",
    "Store",
    "UnknownError",
    "dag_grid",
    "dag_names",
    "run_detail",
    "run_list",
]

Store = InMemoryStateStore | SqliteStateStore
"""The stores the view reads: the built-in ones, whose summaries it needs."""

STATUSES = (SUCCESS, FAILED, RUNNING)  # a run's statuses, for the runs page's filter
DAG_SCAN = 500  # DAG names (the filter, suggestions) are those of this many newest runs
MAX_LIMIT = 500
TRACEBACK_LINES = 60  # a traceback longer than this (after trimming) keeps its last lines
ERROR_CHARS = 4000


class UnknownError(LookupError):
    """A run id or DAG the database does not know: the page and the API answer 404 with this
    message (it names what was asked for, and the closest known name)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _duration(start: float | None, end: float | None, now: float) -> float | None:
    if start is None:
        return None
    return (end if end is not None else now) - start


def _first_failed(run: RunRecord) -> dict[str, Any] | None:
    for name, rec in run.tasks.items():
        if rec.status == FAILED and rec.map_of is None:
            return {"task": name, "error": _first_line(rec.error)}
    for name, rec in run.tasks.items():  # only an instance failed: name its task
        if rec.status == FAILED:
            return {"task": rec.map_of or name, "error": _first_line(rec.error)}
    return None


def _first_line(text: str | None) -> str | None:
    return text.partition("\n")[0][:ERROR_CHARS] if text else text


def run_summary(run: RunRecord, now: float) -> dict[str, Any]:
    """One row of the runs page."""
    counts: dict[str, int] = {}
    for rec in run.tasks.values():
        if rec.map_of is None:
            counts[rec.status] = counts.get(rec.status, 0) + 1
    return {
        "run_id": run.run_id,
        "dag_name": run.dag_name,
        "status": run.status,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "duration_s": _duration(run.created_at, run.finished_at, now),
        "first_failed": _first_failed(run),
        "counts": counts,
        "trigger": run.trigger,
        "scheduled_for": run.scheduled_for,
        "resumed_from": run.resumed_from,
        "final": run.status != RUNNING,
    }


def run_list(
    store: Store, dag: str | None, status: str | None, limit: int, now: float
) -> list[dict[str, Any]]:
    """The runs page, newest first; an unknown DAG raises ``UnknownError``."""
    if dag is not None:
        known_dag(store, dag)
    runs = store.list_runs(dag_name=dag, status=status, limit=limit, results=False)
    return [run_summary(run, now) for run in runs]


def dag_names(store: Store, also: Iterable[str] = ()) -> list[str]:
    """The DAGs of the ``DAG_SCAN`` newest runs, sorted."""
    names = {run.dag_name for run in store.list_runs(limit=DAG_SCAN, results=False)}
    return sorted(names.union(also))


def known_dag(store: Store, dag: str) -> None:
    """Raise ``UnknownError`` unless the database holds a run of ``dag``."""
    if not store.list_runs(dag_name=dag, limit=1, results=False):
        where = f" in the database {store.path!r}" if isinstance(store, SqliteStateStore) else ""
        raise UnknownError(
            f"unknown DAG {dag!r}: no run of it{where}.{suggest(dag, dag_names(store))}"
        )


def load(store: Store, run_id: str) -> RunRecord:
    """A run's summary; an unknown id raises ``UnknownError`` naming the closest ids."""
    try:
        return store.load_run(run_id, results=False)
    except UnknownRunError:
        recent = [r.run_id for r in store.list_runs(limit=DAG_SCAN, results=False)]
        prefixed = [r for r in recent if run_id and r.startswith(run_id)]
        hint = f" Did you mean {prefixed[0]!r}?" if len(prefixed) == 1 else suggest(run_id, recent)
        raise UnknownError(
            f"unknown run id {run_id!r}: the database has no such run.{hint}"
        ) from None


def _trimmed(trace: str | None) -> str | None:
    if not trace:
        return trace
    lines = trim_traceback(trace).rstrip("\n").splitlines()
    if len(lines) > TRACEBACK_LINES:
        cut = len(lines) - TRACEBACK_LINES
        lines = [f"... {cut} line{'s' if cut != 1 else ''} above not shown", *lines[cut:]]
    return "\n".join(lines)


def _task(name: str, entry: dict[str, Any], rec: TaskRecord | None, now: float) -> dict[str, Any]:
    error = entry["error"]
    earlier = () if rec is None else rec.earlier_attempts
    return {
        "name": name,
        "status": entry["status"],
        "attempt": entry["attempt"],
        "started_at": entry["started_at"],
        "finished_at": entry["finished_at"],
        "duration_s": _duration(entry["started_at"], entry["finished_at"], now),
        "queued_s": entry["queued_s"],
        "error": error if error is None else str(error)[:ERROR_CHARS],
        "traceback": _trimmed(entry["traceback"]),
        "cached_from": entry["cached_from"],
        "warnings": list(entry.get("warnings") or ()),  # what went wrong without failing it
        "deps": [] if rec is None or rec.map_of is not None else list(rec.deps),
        "earlier_attempts": [  # the attempts that failed and were retried, for the timeline
            {
                "attempt": a.attempt,
                "started_at": a.started_at,
                "finished_at": a.finished_at,
                "error": a.error if a.error is None else a.error[:ERROR_CHARS],
            }
            for a in earlier
        ],
    }


def run_detail(run: RunRecord, now: float) -> dict[str, Any]:
    """The run page: the summary, then every task in topological order, a mapped task with
    its ``instances`` (the same fields; ``name`` is the instance's key)."""
    report = build_report(run)
    tasks = []
    for name, entry in report["tasks"].items():
        task = _task(name, entry, run.tasks[name], now)
        instances = entry.get("instances")
        task["instances"] = (
            None
            if instances is None
            else [
                _task(key, e, run.tasks.get(instance_name(name, key)), now)
                for key, e in instances.items()
            ]
        )
        tasks.append(task)
    return {**run_summary(run, now), "now": now, "tasks": tasks}


def dag_grid(store: Store, dag: str, limit: int, now: float) -> dict[str, Any]:
    """The DAG grid: the ``limit`` newest runs of ``dag`` (oldest first, as columns) and each
    task's status in each (None: not in that run), tasks in the newest run's order first."""
    known_dag(store, dag)
    runs = store.list_runs(dag_name=dag, limit=limit, results=False)[::-1]
    order: dict[str, None] = {}
    for run in reversed(runs):  # the newest run's order, then tasks only older runs had
        for name, rec in run.tasks.items():
            if rec.map_of is None:
                order.setdefault(name)
    rows = []
    for name in order:
        cells = []
        for run in runs:
            task = run.tasks.get(name)
            cells.append(None if task is None else task.status)
        rows.append({"task": name, "cells": cells})
    return {
        "dag_name": dag,
        "runs": [run_summary(run, now) for run in runs],
        "tasks": rows,
        "final": all(run.status != RUNNING for run in runs),
        "now": now,
    }
