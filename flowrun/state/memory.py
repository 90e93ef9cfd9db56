"""The default state store: plain records in a dict, process-local and ephemeral (its cache of
task results too: it lasts as long as the store)."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UnknownRunError
from ._prune import choose, prune_rule
from ._ticks import TickBook
from .records import (
    FAILED,
    OMITTED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCESS,
    AttemptRecord,
    CacheEntry,
    PrunedRun,
    RunRecord,
    TaskRecord,
    TickRecord,
)

__all__ = ["InMemoryStateStore", "StateStore"]


class InMemoryStateStore:
    """Keeps every run in memory; ``load_run`` returns deep copies that callers may change
    (``results=False``: a summary without the results, which copies none of them).

    Cache entries are kept by key, their results deep-copied in and out (an object that
    cannot be copied is shared), so that changing a result changes no entry."""

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._cache: dict[str, CacheEntry] = {}
        self._ticks = TickBook()

    def create_run(self, run: RunRecord) -> None:
        if run.run_id in self._runs:
            raise ValueError(f"run id {run.run_id!r} already exists in the state store")
        self._runs[run.run_id] = run

    def _task(self, run_id: str, task: str) -> TaskRecord:
        try:
            return self._runs[run_id].tasks[task]
        except KeyError:
            if run_id not in self._runs:
                raise UnknownRunError(run_id) from None
            raise KeyError(f"run {run_id!r} has no task {task!r}") from None

    def add_tasks(self, run_id: str, tasks: Mapping[str, TaskRecord]) -> None:
        try:
            run = self._runs[run_id]
        except KeyError:
            raise UnknownRunError(run_id) from None
        run.tasks.update(tasks)  # the store owns them from now on, as create_run's

    def mark_running(
        self, run_id: str, task: str, attempt: int, started_at: float, queued_s: float = 0.0
    ) -> None:
        rec = self._task(run_id, task)
        rec.status = RUNNING
        rec.attempt = attempt
        rec.started_at = started_at
        rec.queued_s = queued_s
        rec.cached_from = None
        rec.finished_at = None
        rec.error = None
        rec.traceback = None

    def mark_success(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        result: Any,
        keep_result: bool,
    ) -> None:
        rec = self._task(run_id, task)
        rec.status = SUCCESS
        rec.started_at = started_at
        rec.finished_at = finished_at
        if keep_result:
            rec.result = result
            rec.has_result = True

    def add_warning(self, run_id: str, task: str, warning: str) -> None:
        """Keep ``warning`` about the task (e.g. its attempt blocked the event loop past its
        timeout); its status does not change. Not part of ``StateStoreProtocol``: the engine
        calls it on stores that have it."""
        rec = self._task(run_id, task)
        rec.warnings = (*rec.warnings, warning)

    def mark_cached(
        self,
        run_id: str,
        task: str,
        finished_at: float,
        result: Any,
        keep_result: bool,
        cached_from: str,
    ) -> None:
        rec = self._task(run_id, task)
        rec.status = SUCCESS
        rec.attempt = 0
        rec.started_at = rec.finished_at = finished_at
        rec.error = rec.traceback = None
        rec.cached_from = cached_from
        if keep_result:
            rec.result = result
            rec.has_result = True

    def mark_failed(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        error: str,
        traceback: str | None,
    ) -> None:
        self._attempt_failed(run_id, task, FAILED, started_at, finished_at, error, traceback)

    def mark_retry(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        error: str,
        traceback: str | None,
    ) -> None:
        self._attempt_failed(run_id, task, PENDING, started_at, finished_at, error, traceback)
        rec = self._task(run_id, task)
        retried = AttemptRecord(rec.attempt, started_at, finished_at, error)
        rec.earlier_attempts = (*rec.earlier_attempts, retried)

    def _attempt_failed(
        self,
        run_id: str,
        task: str,
        status: str,
        started_at: float,
        finished_at: float,
        error: str,
        traceback: str | None,
    ) -> None:
        """FAILED for good, or PENDING again for a retry; the attempt's error stays visible."""
        rec = self._task(run_id, task)
        rec.status = status
        rec.started_at = started_at
        rec.finished_at = finished_at
        rec.error = error
        rec.traceback = traceback

    def mark_skipped(self, run_id: str, tasks: Sequence[str], reason: str) -> None:
        self._mark_final(run_id, tasks, SKIPPED, reason, None)

    def mark_omitted(
        self, run_id: str, tasks: Sequence[str], reason: str, finished_at: float | None = None
    ) -> None:
        self._mark_final(run_id, tasks, OMITTED, reason, finished_at)

    def _mark_final(
        self,
        run_id: str,
        tasks: Sequence[str],
        status: str,
        reason: str,
        finished_at: float | None,
    ) -> None:
        for task in tasks:
            rec = self._task(run_id, task)
            rec.status = status
            rec.error = reason
            if finished_at is not None:
                rec.finished_at = finished_at

    def finish_run(self, run_id: str, status: str, finished_at: float) -> None:
        try:
            run = self._runs[run_id]
        except KeyError:
            raise UnknownRunError(run_id) from None
        run.status = status
        run.finished_at = finished_at

    def load_run(self, run_id: str, *, results: bool = True) -> RunRecord:
        try:
            run = self._runs[run_id]
        except KeyError:
            raise UnknownRunError(run_id) from None
        return _snapshot(run, results)

    def list_runs(
        self,
        dag_name: str | None = None,
        status: str | None = None,
        limit: int = 50,
        *,
        results: bool = True,
    ) -> list[RunRecord]:
        """Runs newest first; ``results=False`` gives summaries (see ``load_run``)."""
        if limit < 0:
            raise ValueError(f"'limit' must be >= 0 (got {limit})")
        found: list[RunRecord] = []
        for run in reversed(self._runs.values()):  # insertion order is creation order
            if len(found) >= limit:
                break
            if dag_name is not None and run.dag_name != dag_name:
                continue
            if status is not None and run.status != status:
                continue
            found.append(_snapshot(run, results))
        return found

    def prune(
        self,
        *,
        keep_last: int | None = None,
        older_than_s: float | None = None,
        dag: str | None = None,
        results_only: bool = False,
        dry_run: bool = False,
        now: float | None = None,
    ) -> list[PrunedRun]:
        """Delete the runs that are not among the ``keep_last`` newest of their DAG and/or
        were created more than ``older_than_s`` seconds before ``now`` (default
        ``time.time()``), of DAG ``dag`` only if given; never a RUNNING run. Returns them,
        newest first. ``results_only``: drop their results instead (the runs and tasks stay,
        each such task ``result_pruned``); ``dry_run``: change nothing. Cache entries stay."""
        rule = prune_rule(keep_last, older_than_s, dag, results_only, dry_run, now, time.time)
        history = (
            (PrunedRun(r.run_id, r.dag_name, r.created_at, r.status), r)
            for r in reversed(self._runs.values())
        )
        chosen = [
            (pruned, run)
            for pruned, run in choose(history, rule)
            if not results_only or any(t.has_result for t in run.tasks.values())
        ]
        if not dry_run:
            for pruned, run in chosen:
                if not results_only:
                    del self._runs[pruned.run_id]
                    continue
                for rec in run.tasks.values():
                    if rec.has_result:
                        rec.result, rec.has_result, rec.result_pruned = None, False, True
        return [pruned for pruned, _ in chosen]

    def flush(self) -> None:
        return None

    # -- the cache ---------------------------------------------------------------------------
    def cache_get(self, key: str, now: float) -> CacheEntry | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry.expired(now):
            del self._cache[key]
            return None
        return dataclasses.replace(entry, result=_copy_result(entry.result))

    def cache_put(self, entry: CacheEntry) -> None:
        self._cache[entry.key] = dataclasses.replace(entry, result=_copy_result(entry.result))

    def cache_clear(self, dag: str, tasks: Sequence[str] | None = None) -> int:
        wanted = _task_filter(tasks)
        gone = [
            key
            for key, entry in self._cache.items()
            if entry.dag == dag and (wanted is None or entry.task in wanted)
        ]
        for key in gone:
            del self._cache[key]
        return len(gone)

    # -- schedule ticks ----------------------------------------------------------------------
    def record_tick(self, tick: TickRecord) -> bool:
        """Claim ``tick``: True if it is new, False if (schedule, due_at) is already kept."""
        return self._ticks.record(tick)

    def update_tick(self, tick: TickRecord) -> None:
        """Replace the kept tick of (schedule, due_at) (a queued tick that started)."""
        self._ticks.update(tick)

    def list_ticks(self, schedule: str | None = None, limit: int | None = None) -> list[TickRecord]:
        """The kept ticks, newest due time first (of one schedule, or all)."""
        return self._ticks.list(schedule, limit)


def _task_filter(tasks: Sequence[str] | None) -> frozenset[str] | None:
    if isinstance(tasks, str):
        raise TypeError(f"tasks must be a list of task names; write tasks=[{tasks!r}]")
    return None if tasks is None else frozenset(tasks)


def _snapshot(run: RunRecord, results: bool = True) -> RunRecord:
    tasks = {}
    for name, rec in run.tasks.items():
        tasks[name] = TaskRecord(
            rec.status,
            rec.attempt,
            rec.started_at,
            rec.finished_at,
            rec.error,
            rec.traceback,
            _copy_result(rec.result) if results else None,
            rec.has_result,
            rec.deps,
            rec.queued_s,
            rec.map_of,
            rec.mapped,
            rec.cached_from,
            rec.result_format,
            rec.result_pruned,
            rec.warnings,
            rec.earlier_attempts,
        )
    return dataclasses.replace(run, tasks=tasks)


def _copy_result(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return value
    try:
        return copy.deepcopy(value)
    except Exception:  # uncopyable objects (locks, sockets...) are shared, not lost
        return value


StateStore = InMemoryStateStore
