"""The run report (the dict ``get_run_report`` returns) and the run-status rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .state.records import FAILED, OMITTED, RUNNING, SKIPPED, SUCCESS, RunRecord

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
    """The report of a run snapshot; tasks in topological order, plus ``traceback`` per task."""
    tasks: dict[str, dict[str, Any]] = {}
    for name, rec in run.tasks.items():
        tasks[name] = {
            "status": rec.status,
            "attempt": rec.attempt,
            "started_at": rec.started_at,
            "finished_at": rec.finished_at,
            "error": rec.error,
            "result": rec.result,
            "traceback": rec.traceback,
            "queued_s": rec.queued_s,
        }
    return {
        "run_id": run.run_id,
        "dag_name": run.dag_name,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "status": run.status,
        "tasks": tasks,
    }
