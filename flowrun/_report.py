"""The run report (the dict ``get_run_report`` returns) and the run-status rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._mapping import instance_key
from .state.records import FAILED, OMITTED, RUNNING, SKIPPED, SUCCESS, RunRecord, TaskRecord

__all__ = ["build_report", "run_status"]


def run_status(statuses: Iterable[str]) -> str:
    """FAILED if any task FAILED or was SKIPPED, SUCCESS if every task succeeded or was
    OMITTED (left out on purpose), RUNNING otherwise."""
    seen = set(statuses)
    if FAILED in seen or SKIPPED in seen:
        return FAILED
    return SUCCESS if seen <= _DONE_WELL else RUNNING


_DONE_WELL = frozenset({SUCCESS, OMITTED})


def build_report(run: RunRecord) -> dict[str, Any]:
    """The report of a run snapshot; tasks in topological order, plus ``traceback``,
    ``queued_s``, ``cached_from`` and ``warnings`` per task. A mapped task's entry aggregates
    its instances, which it lists under ``instances`` (KEY -> the same fields), in input
    order."""
    instances: dict[str, list[tuple[str, TaskRecord]]] = {}
    for name, rec in run.tasks.items():
        if rec.map_of is not None:
            instances.setdefault(rec.map_of, []).append((name, rec))
    tasks: dict[str, dict[str, Any]] = {}
    for name, rec in run.tasks.items():
        if rec.map_of is not None:
            continue
        entry = _entry(rec)
        if rec.mapped:
            own = instances.get(name, [])
            entry["instances"] = {instance_key(name, n): _entry(r) for n, r in own}
            if own:
                _aggregate(entry, [r for _, r in own])
        tasks[name] = entry
    return {
        "run_id": run.run_id,
        "dag_name": run.dag_name,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "status": run.status,
        "tasks": tasks,
        "trigger": run.trigger,
        "scheduled_for": run.scheduled_for,
    }


def _entry(rec: TaskRecord) -> dict[str, Any]:
    return {
        "status": rec.status,
        "attempt": rec.attempt,
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
        "error": rec.error,
        "result": rec.result,
        "traceback": rec.traceback,
        "queued_s": rec.queued_s,
        "cached_from": rec.cached_from,
        "warnings": list(rec.warnings),
    }


def _aggregate(entry: dict[str, Any], own: list[TaskRecord]) -> None:
    """The highest attempt, the first start, the last finish, the first final error (input
    order), the succeeded instances' results in input order, the total wait for slots, the
    instances' warnings after the task's own."""
    entry["attempt"] = max(r.attempt for r in own)
    starts = [r.started_at for r in own if r.started_at is not None]
    finishes = [r.finished_at for r in own if r.finished_at is not None]
    if starts:
        entry["started_at"] = min(starts)
    if finishes:
        entry["finished_at"] = max(finishes)
    failed = [r for r in own if r.status in (FAILED, SKIPPED)]
    if failed:
        entry["error"], entry["traceback"] = failed[0].error, failed[0].traceback
    entry["result"] = [r.result for r in own if r.status == SUCCESS] if not failed else None
    entry["queued_s"] = sum(r.queued_s for r in own)
    entry["warnings"] = [*entry["warnings"], *(w for r in own for w in r.warnings)]
