"""The contract between the scheduler and a state store.

Transition-oriented: the scheduler reports each change of a task as it happens and calls
``flush()`` once per scheduling wake-up, so a persistent store can write one transaction per
batch instead of one per row. The store is the single source of truth for reports.

The store also keeps the results of cached tasks across runs (``@task(cache=True)``): entries
looked up by key (``cache_get``), written (``cache_put``) and forgotten (``cache_clear``); a
task served from the cache is recorded with ``mark_cached``.

History management (``load_run``/``list_runs`` with ``results=False``, ``prune``, and
SQLite's ``vacuum``) belongs to the built-in stores, not to this protocol: it is
``runtime_checkable``, so a method added here would make ``isinstance(store,
StateStoreProtocol)`` false for every custom store written before it, and the engine never
needs them. The command line only opens built-in stores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .records import CacheEntry, RunRecord, TaskRecord

EncodingFailures = list[tuple[str, str, Exception]]
"""(run id, task, error) of the results a group commit could not encode: those tasks FAILED."""

Durable = Callable[[BaseException | None, EncodingFailures], None]
"""The callback of a store's optional ``flush_later(callback) -> bool`` (the SQLite store
has it): called once the commit of everything reported before is over, with its error (None:
durable) and the results it could not encode. The scheduler uses it instead of ``flush()``
when the store has it, so it never waits for the commit."""

__all__ = ["StateStoreProtocol"]


@runtime_checkable
class StateStoreProtocol(Protocol):
    def create_run(self, run: RunRecord) -> None:
        """Store a new run with its task records (PENDING, or kept by ``resume``)."""
        ...

    def add_tasks(self, run_id: str, tasks: Mapping[str, TaskRecord]) -> None:
        """Tasks that joined the run while it ran: the instances of a mapped task (each with
        ``map_of`` set), after the run's other tasks, in this order."""
        ...

    def mark_running(
        self, run_id: str, task: str, attempt: int, started_at: float, queued_s: float = 0.0
    ) -> None:
        """An attempt was launched; ``queued_s``: the seconds the task has waited for slots so
        far, over all its attempts."""
        ...

    def mark_success(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        result: Any,
        keep_result: bool,
    ) -> None:
        """The attempt succeeded; ``keep_result=False`` means the result must not be stored."""
        ...

    def mark_cached(
        self,
        run_id: str,
        task: str,
        finished_at: float,
        result: Any,
        keep_result: bool,
        cached_from: str,
    ) -> None:
        """The task's result came from the cache: SUCCESS with ``attempt`` 0, ``started_at`` =
        ``finished_at``, the result stored as ``mark_success`` stores it, and ``cached_from``
        the run that computed it."""
        ...

    def mark_failed(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        error: str,
        traceback: str | None,
    ) -> None:
        """The task failed for good."""
        ...

    def mark_retry(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        error: str,
        traceback: str | None,
    ) -> None:
        """The attempt failed and the task is PENDING again, waiting for its next attempt."""
        ...

    def mark_skipped(self, run_id: str, tasks: Sequence[str], reason: str) -> None:
        """These tasks will not run because an upstream task failed."""
        ...

    def mark_omitted(
        self, run_id: str, tasks: Sequence[str], reason: str, finished_at: float | None = None
    ) -> None:
        """These tasks are left out on purpose (``raise Omit(reason)``, an omitted upstream, a
        trigger rule not met without a failure); ``reason`` is kept as their ``error``.
        ``finished_at`` is given for a task that ran and omitted itself."""
        ...

    def finish_run(self, run_id: str, status: str, finished_at: float) -> None:
        """The run is over; ``status`` follows the run-status rules."""
        ...

    def load_run(self, run_id: str) -> RunRecord:
        """A snapshot of the run; raises ``UnknownRunError`` for an unknown id."""
        ...

    def list_runs(
        self, dag_name: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Runs newest first, optionally filtered by DAG and status."""
        ...

    def flush(self) -> None:
        """Make everything reported so far durable (a no-op for in-memory stores)."""
        ...

    def cache_get(self, key: str, now: float) -> CacheEntry | None:
        """The cache entry of ``key``; None when there is none or it has expired at ``now``
        (the engine clock's wall time; an expired entry may be deleted then). The result is
        the caller's to change: it is never the stored object itself."""
        ...

    def cache_put(self, entry: CacheEntry) -> None:
        """Keep ``entry``, replacing any entry of its key. A persistent store that cannot
        encode the result raises ``ResultEncodingError`` and keeps nothing."""
        ...

    def cache_clear(self, dag: str, tasks: Sequence[str] | None = None) -> int:
        """Forget the cache entries of DAG ``dag`` (of ``tasks`` only, when given); returns
        how many were removed (expired ones included)."""
        ...
