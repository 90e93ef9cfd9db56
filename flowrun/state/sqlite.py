"""A durable state store on the standard library's ``sqlite3``.

Why it looks the way it does:

- The scheduler reports transitions as they happen and calls ``flush()`` once per wake-up.
  Transitions only change in-memory rows and mark them dirty; ``flush()`` writes every dirty
  row in one ``BEGIN IMMEDIATE`` transaction. A task that ran and finished within one wake-up
  costs one row write, and a run costs about one commit per wake-up, never one per row.
- WAL mode lets readers (reports, ``list_runs``) work while another process writes; writers
  take turns through SQLite's lock, waiting up to the busy timeout, with our own retry for the
  few cases where SQLite reports "busy" without waiting. ``synchronous=NORMAL``: a process
  crash loses nothing that was flushed; a power cut may lose the last few transactions but
  never corrupts the file.
- A file is checked before anything is written to it: a file that is not SQLite, a SQLite
  database of another application, or a flowrun database of a newer schema is refused with
  an error naming the path and what to do, and its bytes stay as they were.
- Each run records the pid, start time and host of the process that created it, so
  ``recover`` can tell a crashed run from one a live process is still executing.
- Cached task results (``@task(cache=True)``) live in the ``cache`` table, shared by every
  process on the file. ``cache_put`` encodes the result at once (so an encoding failure is
  the caller's to handle) and queues the row: it is written by the next ``flush()``, in the
  same transaction as the run's transitions. ``cache_get`` sees this store's queued entries
  first (read your writes), then reads the database, so another process's entries count as
  soon as that process has flushed them. An entry found expired is deleted at the next
  flush (only if it is still expired then). ``cache_clear`` flushes, then deletes at once.

This module holds the store's bookkeeping (which runs are live, pending, cached); the
private ``_sqlite_*`` modules hold the rest: ``_sqlite_connection`` (opening, transactions,
retries), ``_sqlite_schema`` (versions, migrations), ``_sqlite_rows`` (rows and their SQL),
``_sqlite_results`` (encoding results, rows to records), ``_sqlite_recovery`` (dead owners).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from .._clock import Clock, SystemClock
from ..errors import UnknownRunError
from ._prune import choose, prune_rule
from ._sqlite_connection import Database
from ._sqlite_errors import StateDatabaseError
from ._sqlite_recovery import fail_dead_runs, this_process
from ._sqlite_results import DEFAULT_SERIALIZER, ResultCodec
from ._sqlite_rows import (
    CacheRow,
    RunRow,
    TaskRow,
    delete_cache,
    delete_runs,
    drop_results,
    holding_results,
    select_cache,
    select_history,
    select_run,
    select_run_ids,
    write_cache,
    write_runs,
)
from ._sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from ._sqlite_ticks import insert_tick, select_ticks, update_tick
from ._ticks import check_limit
from .records import (
    FAILED,
    OMITTED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCESS,
    CacheEntry,
    PrunedRun,
    RunRecord,
    TaskRecord,
    TickRecord,
)
from .serializers import ResultSerializer

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteStateStore", "StateDatabaseError"]

_OPEN_STORES: weakref.WeakSet[SqliteStateStore] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    """Write what open stores still hold (e.g. the end of a run aborted by a lock that
    outlasted the busy timeout) when the interpreter exits without ``close()``."""
    for store in list(_OPEN_STORES):
        with contextlib.suppress(Exception):  # nobody to report to at exit; recover() repairs
            store.close()


class SqliteStateStore:
    """Runs and task states in a SQLite file, shared safely by several processes and engines.

    ``SqliteStateStore(db_path, serializer=JsonSerializer(), cache_ttl_s=None, recover=False)``

    - ``serializer`` encodes results (``JsonSerializer``, ``PickleSerializer`` or a
      ``ResultSerializer`` subclass implementing ``serialize``/``deserialize``). A result it
      cannot encode fails that task with a ``ResultEncodingError`` naming the task, the type
      and the fix; ``retain_result=False`` results are never encoded nor written.
    - ``cache_ttl_s=None``: the runs this store created are served from a write-through
      in-process cache that never expires (this process is their only writer, so the cache is
      always right); every other run is read from the database on each ``load_run`` /
      ``list_runs``, so runs of other processes are always current. Memory grows with the
      runs this store creates.
    - ``cache_ttl_s=<seconds>``: any run read (from the database, or one this store
      finished writing) is cached for that many seconds, so a run of another process may
      look up to that old; ``0`` caches nothing once it is written. Runs still being written
      by this store are always served from memory. ``list_runs`` asks the database which runs
      match, then serves each from the cache when it can.
    - ``recover=True`` runs ``recover()`` at open: see there. ``recovered`` lists the ids.
    - ``busy_timeout_s``: how long a write waits for another process's transaction.

    Cached task results are shared by every store on the file: ``cache_put`` is written at
    the next ``flush()`` (this store's ``cache_get`` sees it before), ``cache_get`` always
    reads the database for what this store has not queued. A cached result is encoded with
    ``serializer`` (``cache_put`` raises ``ResultEncodingError`` for one it cannot encode,
    keeping nothing) and so comes back as the serializer returns it (JSON: tuples as lists);
    an entry this store cannot decode (another serializer's format, a pickled class that is
    gone) is a miss, replaced when the task has run again.

    Open one store per process (a connection must not cross ``fork``); ``close()`` it, or use
    it as a context manager. Methods may be called from any thread. ``flush()`` runs on the
    event loop: it takes microseconds, unless another process holds the write lock, when it
    waits for it (at most ``busy_timeout_s``, then ``StateDatabaseError``; nothing is lost,
    the next flush writes it).
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        serializer: ResultSerializer = DEFAULT_SERIALIZER,
        cache_ttl_s: float | None = None,
        recover: bool = False,
        *,
        busy_timeout_s: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self._results = ResultCodec(serializer)  # refuses a serializer that cannot be used
        for label, value in (("cache_ttl_s", cache_ttl_s), ("busy_timeout_s", busy_timeout_s)):
            if value is None and label == "cache_ttl_s":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{label!r} must be a number of seconds >= 0 (got {value!r})")
        self.path = os.path.abspath(os.fspath(db_path))
        self.serializer = serializer
        self.cache_ttl_s = cache_ttl_s
        self.busy_timeout_s = float(busy_timeout_s)
        self.clock: Clock = clock if clock is not None else SystemClock()  # recovery timestamps
        self._lock = threading.RLock()
        self._live: dict[str, RunRow] = {}  # runs this store is writing: the source of truth
        self._cache: dict[str, RunRow] = {}  # finished or read runs, in expiry order
        self._pending: dict[str, RunRow] = {}  # runs with transitions not flushed yet
        self._cache_puts: dict[str, CacheRow] = {}  # cache entries not flushed yet, by key
        self._cache_expired: dict[str, float] = {}  # keys found expired: deleted at flush
        self._owner = this_process()
        self._db = Database(self.path, self.busy_timeout_s)
        _OPEN_STORES.add(self)  # closed (so flushed) at interpreter exit if the user forgot
        self.recovered: list[str] = self.recover() if recover else []

    @property
    def transactions(self) -> int:
        """Write transactions committed by this store so far (the benchmark reports it)."""
        return self._db.transactions

    # -- transitions -------------------------------------------------------------------------
    def create_run(self, run: RunRecord) -> None:
        new = self._results.new_row(run)
        with self._lock:
            if run.run_id in self._live or self._find(run.run_id) is not None:
                raise ValueError(f"run id {run.run_id!r} already exists in the state store")
            self._live[run.run_id] = new
            self._pending[run.run_id] = new

    def _live_run(self, run_id: str) -> RunRow:
        run = self._live.get(run_id)
        if run is None:  # not being written by this store: take it over from the database
            run = self._find_or_raise(run_id)
            self._cache.pop(run_id, None)
            run.expires = None
            self._live[run_id] = run
        return run

    def _task(self, run_id: str, task: str) -> TaskRow:
        run = self._live_run(run_id)
        rec = run.tasks[task]
        if not rec.dirty:
            rec.dirty = True
            run.dirty_tasks.append(rec)
            self._pending[run_id] = run
        return rec

    def add_tasks(self, run_id: str, tasks: Mapping[str, TaskRecord]) -> None:
        with self._lock:
            run = self._live_run(run_id)
            position = len(run.tasks)
            for offset, (name, rec) in enumerate(tasks.items()):
                row = self._results.task_row(run_id, position + offset, name, rec)
                run.tasks[name] = row
                if run.key is not None:  # a run not written yet inserts all its rows at once
                    run.new_tasks.append(row)
            self._pending[run_id] = run

    def mark_running(
        self, run_id: str, task: str, attempt: int, started_at: float, queued_s: float = 0.0
    ) -> None:
        with self._lock:
            rec = self._task(run_id, task)
            rec.status, rec.attempt, rec.started_at = RUNNING, attempt, started_at
            rec.queued_s = queued_s
            rec.finished_at = rec.error = rec.traceback = rec.cached_from = None

    def mark_success(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        result: Any,
        keep_result: bool,
    ) -> None:
        blob = self._results.encode(run_id, task, result) if keep_result else None
        with self._lock:
            rec = self._task(run_id, task)
            rec.status, rec.started_at, rec.finished_at = SUCCESS, started_at, finished_at
            if blob is not None:
                rec.blob, rec.fmt = blob, self._results.format

    def mark_cached(
        self,
        run_id: str,
        task: str,
        finished_at: float,
        result: Any,
        keep_result: bool,
        cached_from: str,
    ) -> None:
        blob = self._results.encode(run_id, task, result) if keep_result else None
        with self._lock:
            rec = self._task(run_id, task)
            rec.status, rec.attempt, rec.cached_from = SUCCESS, 0, cached_from
            rec.started_at = rec.finished_at = finished_at
            rec.error = rec.traceback = None
            if blob is not None:
                rec.blob, rec.fmt = blob, self._results.format

    def mark_failed(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        error: str,
        traceback: str | None,
    ) -> None:
        self._mark_attempt_failed(run_id, task, FAILED, started_at, finished_at, error, traceback)

    def mark_retry(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        error: str,
        traceback: str | None,
    ) -> None:
        self._mark_attempt_failed(run_id, task, PENDING, started_at, finished_at, error, traceback)

    def _mark_attempt_failed(
        self,
        run_id: str,
        task: str,
        status: str,
        started_at: float,
        finished_at: float,
        error: str,
        traceback: str | None,
    ) -> None:
        with self._lock:
            rec = self._task(run_id, task)
            rec.status, rec.started_at, rec.finished_at = status, started_at, finished_at
            rec.error, rec.traceback = error, traceback

    def mark_skipped(self, run_id: str, tasks: Sequence[str], reason: str) -> None:
        with self._lock:
            for name in tasks:
                rec = self._task(run_id, name)
                rec.status, rec.error = SKIPPED, reason

    def mark_omitted(
        self, run_id: str, tasks: Sequence[str], reason: str, finished_at: float | None = None
    ) -> None:
        with self._lock:
            for name in tasks:
                rec = self._task(run_id, name)
                rec.status, rec.error = OMITTED, reason
                if finished_at is not None:
                    rec.finished_at = finished_at

    def finish_run(self, run_id: str, status: str, finished_at: float) -> None:
        with self._lock:
            run = self._live_run(run_id)
            run.status, run.finished_at, run.dirty = status, finished_at, True
            self._pending[run_id] = run

    def flush(self) -> None:
        """Write every transition (and cache entry) reported since the last flush in one
        transaction."""
        with self._lock:
            if not (self._pending or self._cache_puts or self._cache_expired):
                return
            pending = list(self._pending.values())
            owner = self._owner
            puts = list(self._cache_puts.values())
            expired = list(self._cache_expired.items())

            def write(conn: sqlite3.Connection) -> list[tuple[RunRow, int]]:
                created = write_runs(conn, pending, owner)
                if puts or expired:
                    write_cache(conn, puts, expired)
                return created

            created = self._db.run(write, write=True)
            self._cache_puts = {}
            self._cache_expired = {}
            for run, key in created:
                run.key = key
            now = time.monotonic()
            for run in pending:
                for rec in run.dirty_tasks:
                    rec.dirty = False
                run.dirty_tasks = []
                run.new_tasks = []
                run.dirty = False
                if run.finished_at is not None and run.status != RUNNING:
                    del self._live[run.run_id]  # done: from now on a cached copy
                    self._remember(run, now)
            self._pending = {}

    # -- reads -----------------------------------------------------------------------------
    def load_run(self, run_id: str, *, results: bool = True) -> RunRecord:
        """A snapshot of the run, its results decoded anew; a result of another serializer
        raises ``StateDatabaseError`` naming the tasks and the serializer to use.
        ``results=False``: a summary that reads no result from the file (``result`` None,
        ``has_result``/``result_format`` as stored), whatever serializer stored them."""
        with self._lock:
            return self._results.record(self._find_or_raise(run_id, results), self.path, results)

    def list_runs(
        self,
        dag_name: str | None = None,
        status: str | None = None,
        limit: int = 50,
        *,
        results: bool = True,
    ) -> list[RunRecord]:
        """Runs newest first; ``results=False`` gives summaries (see ``load_run``), which
        neither read nor decode a result: the fast way to list a history of big results."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"'limit' must be >= 0 (got {limit})")

        def select(conn: sqlite3.Connection) -> list[RunRow]:
            found = []
            for run_id in select_run_ids(conn, dag_name, status, limit):
                run = self._cached(run_id)
                if run is None or (status is not None and run.status != status):
                    run = select_run(conn, run_id, results)  # never list a stale cached copy
                if run is not None:
                    found.append(run)
            return found

        with self._lock:
            self.flush()  # so the filters see this store's own latest transitions
            runs = self._db.run(select, write=False)
            now = time.monotonic()
            for run in runs:
                if results and run.run_id not in self._live and run.run_id not in self._cache:
                    self._remember(run, now, read=True)  # summaries are never cached
            return [self._results.record(run, self.path, results) for run in runs]

    def _find_or_raise(self, run_id: str, results: bool = True) -> RunRow:
        run = self._find(run_id, results)
        if run is None:
            raise UnknownRunError(run_id)
        return run

    def _find(self, run_id: str, results: bool = True) -> RunRow | None:
        run = self._cached(run_id)
        if run is None:
            run = self._db.run(lambda conn: select_run(conn, run_id, results), write=False)
            if run is not None and results:  # a summary row must never stand for the run
                self._remember(run, time.monotonic(), read=True)
        return run

    def _cached(self, run_id: str) -> RunRow | None:
        run = self._live.get(run_id)
        if run is not None:
            return run
        run = self._cache.get(run_id)
        if run is not None and run.expires is not None and run.expires <= time.monotonic():
            del self._cache[run_id]
            return None
        return run

    def _remember(self, run: RunRow, now: float, read: bool = False) -> None:
        """Cache a finished or read run per ``cache_ttl_s`` (see the class docstring)."""
        ttl = self.cache_ttl_s
        if ttl is None:
            if read:
                return  # other runs are always read from the database
            run.expires = None
        else:
            run.expires = now + ttl
        cache = self._cache
        cache.pop(run.run_id, None)
        cache[run.run_id] = run  # entries with a finite expiry are kept in expiry order
        while cache:  # drop the expired entries at the front
            old = next(iter(cache.values()))
            if old.expires is None or old.expires > now:
                break
            del cache[old.run_id]

    # -- the cache ---------------------------------------------------------------------------
    def cache_get(self, key: str, now: float) -> CacheEntry | None:
        with self._lock:
            row = self._cache_puts.get(key)
            if row is None:
                row = self._db.run(lambda conn: select_cache(conn, key), write=False)
                if row is None:
                    return None
                if row.expires_at is not None and row.expires_at <= now:
                    self._cache_expired[key] = now
                    return None
            elif row.expires_at is not None and row.expires_at <= now:
                return None
        return self._results.cache_entry(row)

    def cache_put(self, entry: CacheEntry) -> None:
        row = self._results.cache_row(entry)  # raises before anything is queued
        with self._lock:
            self._cache_puts[entry.key] = row

    def cache_clear(self, dag: str, tasks: Sequence[str] | None = None) -> int:
        if isinstance(tasks, str):
            raise TypeError(f"tasks must be a list of task names; write tasks=[{tasks!r}]")
        names = None if tasks is None else list(tasks)
        with self._lock:
            self.flush()  # queued entries are written first, so they are cleared too
            removed: int = self._db.run(lambda conn: delete_cache(conn, dag, names), write=True)
            return removed

    # -- schedule ticks ----------------------------------------------------------------------
    def record_tick(self, tick: TickRecord) -> bool:
        """Claim ``tick`` at once: True if this store wrote it, False if (schedule, due_at) is
        already in the file (another server claimed it)."""
        with self._lock:
            claimed: bool = self._db.run(lambda conn: insert_tick(conn, tick), write=True)
            return claimed

    def update_tick(self, tick: TickRecord) -> None:
        """Replace the tick of (schedule, due_at) at once (a queued tick that started)."""
        with self._lock:
            self._db.run(lambda conn: update_tick(conn, tick), write=True)

    def list_ticks(self, schedule: str | None = None, limit: int | None = None) -> list[TickRecord]:
        """The ticks in the file, newest due time first (of one schedule, or all)."""
        check_limit(limit)
        with self._lock:
            ticks: list[TickRecord] = self._db.run(
                lambda conn: select_ticks(conn, schedule, limit), write=False
            )
            return ticks

    # -- history -------------------------------------------------------------------------
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
        were created more than ``older_than_s`` seconds before ``now`` (default: the store's
        ``clock``), of DAG ``dag`` only if given, with their task rows, in one transaction;
        never a RUNNING run nor one this store is writing. Returns them, newest first.

        ``results_only``: drop their stored results instead (runs and task rows stay; each
        such task reads back ``result_pruned``), only runs still holding one are returned;
        ``dry_run``: change nothing. Cache entries (``cached_from`` may name a pruned run)
        and schedule ticks stay. The file keeps its size until ``vacuum()``."""
        rule = prune_rule(keep_last, older_than_s, dag, results_only, dry_run, now, self.clock.time)

        def work(conn: sqlite3.Connection) -> list[PrunedRun]:
            history = select_history(conn, rule.dag)
            chosen = [(r, k) for r, k in choose(history, rule) if r.run_id not in self._live]
            if results_only:
                holding = holding_results(conn, [key for _, key in chosen])
                chosen = [(r, key) for r, key in chosen if key in holding]
            keys = [key for _, key in chosen]
            if keys and not dry_run:
                (drop_results if results_only else delete_runs)(conn, keys)
            return [r for r, _ in chosen]

        with self._lock:
            self.flush()  # this store's finished runs are in the file, and leave ``_live``
            pruned: list[PrunedRun] = self._db.run(work, write=not dry_run)
            if not dry_run:
                for run in pruned:
                    self._cache.pop(run.run_id, None)
            return pruned

    def vacuum(self) -> None:
        """Give the space of deleted rows and results back to the file system (SQLite's
        ``VACUUM``, then a WAL checkpoint that truncates the ``-wal`` file). It rewrites the
        whole file, waiting (``busy_timeout_s``) for other processes' writes."""
        with self._lock:
            self.flush()
            self._db.vacuum()

    # -- crash recovery ----------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Fail the runs left RUNNING by a process of this host that is gone; returns their ids.

        Their RUNNING tasks become FAILED (``"ProcessDied: the process running this task (pid
        P on host H) died"``), their PENDING tasks SKIPPED, the run FAILED, so that
        ``engine.resume(run_id)`` continues them. A run whose process is still alive (same pid
        and same start time) is left alone, and so is a run of another host: its process
        cannot be checked from here (``resume`` still works on it).
        """
        host = self._owner[2]
        with self._lock:
            dead = self._db.run(lambda conn: fail_dead_runs(conn, host, self.clock), write=True)
            for run_id in dead:
                self._cache.pop(run_id, None)
            return dead

    # -- resources ---------------------------------------------------------------------------
    def close(self) -> None:
        """Flush what is pending, then close the connection. Closing twice is harmless."""
        with self._lock:
            if self._db.closed:
                return
            try:
                if not self._db.forked:  # a forked child: the connection is the parent's
                    self.flush()
            finally:
                self._db.close()

    def __enter__(self) -> SqliteStateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStateStore({self.path!r}, serializer={self.serializer!r})"
