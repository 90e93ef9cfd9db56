"""The records a state store keeps: one per run, one per task of the run, one per cached
result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FAILED",
    "OMITTED",
    "PENDING",
    "RUNNING",
    "SKIPPED",
    "SUCCESS",
    "AttemptRecord",
    "CacheEntry",
    "PrunedRun",
    "RunRecord",
    "TaskRecord",
    "TickRecord",
]

PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCESS = "SUCCESS"
FAILED = "FAILED"
SKIPPED = "SKIPPED"  # blocked by a failed upstream task
OMITTED = "OMITTED"  # left out on purpose: raise Omit(...), or a trigger rule not met

FINISHED_STATUSES = frozenset({SUCCESS, FAILED, SKIPPED, OMITTED})


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """An attempt of a task that failed and was retried: which one, when it ran, its error."""

    attempt: int
    started_at: float | None
    finished_at: float | None
    error: str | None


@dataclass(slots=True)
class TaskRecord:
    """State of one task in one run. ``has_result`` tells a kept ``None`` from no result;
    ``deps`` are the task's parents in the run's DAG (so a run can be drawn without its code;
    ``()`` for a task with none, or one recorded before runs kept their edges).

    A summary (``load_run(..., results=False)``, ``list_runs(..., results=False)`` of the
    built-in stores) reads no result: ``result`` is None there, while ``has_result`` and
    ``result_format`` (the serializer that stored it, so a reader can tell which it needs)
    still describe the stored one. ``result_pruned`` marks a result that ``prune`` dropped.
    ``warnings`` says what went wrong without failing it (``add_warning`` of the built-in
    stores), over all its attempts, in order. ``earlier_attempts`` are the attempts that
    failed and were retried (``AttemptRecord``: number, start, end, error), oldest first; the
    fields above describe the last one."""

    status: str = PENDING
    attempt: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    traceback: str | None = None
    result: Any = None
    has_result: bool = False
    deps: tuple[str, ...] = ()
    queued_s: float = 0.0  # seconds the task waited for slots (engine or pool), all attempts
    map_of: str | None = None  # an instance of a mapped task: that task's name
    mapped: bool = False  # a mapped task (its instances carry its name in ``map_of``)
    cached_from: str | None = None  # a result served from the cache: the run that computed it
    result_format: str | None = None  # a persistent store: the serializer name of the result
    result_pruned: bool = False  # its result was dropped by ``prune(results_only=True)``
    warnings: tuple[str, ...] = ()  # what went wrong without failing it (a blocked event loop)
    earlier_attempts: tuple[AttemptRecord, ...] = ()  # the failed attempts before the last


@dataclass(slots=True)
class RunRecord:
    """State of one run. ``targets`` is set for ``run_subgraph`` runs (resume keeps to them)."""

    run_id: str
    dag_name: str
    created_at: float
    status: str = RUNNING
    finished_at: float | None = None
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    targets: tuple[str, ...] | None = None
    resumed_from: str | None = None
    scheduled_for: float | None = None  # a scheduled run: its tick's due time (epoch seconds)

    @property
    def trigger(self) -> str:
        """What started the run: ``"schedule"`` (it has a tick) or ``"manual"``."""
        return "manual" if self.scheduled_for is None else "schedule"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached task result (``@task(cache=True)``), kept by the state store across runs.

    ``key`` is the task's cache key (``flowrun._cache.cache_key``); ``dag`` and ``task`` name
    the DAG's task (a mapped instance's entry carries its mapped task's name, so clearing the
    task clears its instances); ``run_id`` is the run that computed the result;
    ``created_at`` and ``expires_at`` are wall times of the engine's clock (``expires_at``
    None: never expires)."""

    key: str
    dag: str
    task: str
    run_id: str
    created_at: float
    expires_at: float | None
    result: Any

    def expired(self, now: float) -> bool:
        """True once ``now`` (the engine clock's wall time) has reached ``expires_at``."""
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class PrunedRun:
    """A run that ``store.prune(...)`` deleted (or, with ``dry_run=True``, would delete; with
    ``results_only=True``, whose stored results it dropped): enough to tell the user which."""

    run_id: str
    dag_name: str
    created_at: float
    status: str


@dataclass(frozen=True, slots=True)
class TickRecord:
    """One due time of a schedule (``engine.schedule``), as ``serve`` recorded it.

    A store keeps one per (``schedule``, ``due_at``): claiming it is how a restarted server
    knows where it stopped and how two servers on one database never both run it.
    ``outcome`` is ``"started"`` (``run_id`` is its run), ``"queued"`` (waiting for the
    schedule's previous run, ``overlap="queue"``), ``"skipped"`` (``reason`` says why),
    ``"missed"`` (not run after a downtime: one record stands for ``reason``'s count of ticks
    up to ``due_at``) or ``"error"`` (the run could not start: ``reason``). ``recorded_at`` is
    the engine clock's wall time of the last change."""

    schedule: str
    due_at: float
    dag: str
    outcome: str
    run_id: str | None = None
    reason: str | None = None
    recorded_at: float = 0.0
