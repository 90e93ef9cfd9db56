"""A durable state store on the standard library's ``sqlite3``.

Why it looks the way it does:

- The scheduler reports transitions as they happen; they only change in-memory rows and mark
  them dirty. ``flush_later`` has everything reported since the last commit written in one
  ``BEGIN IMMEDIATE`` transaction (a group commit): by the caller itself when the batch is
  small and the write lock is free at once (a second connection that never waits and never
  checkpoints), else by a writer thread that owns the main connection (``_sqlite_writer``),
  which also encodes big results and waits out another process's lock. So the event loop
  never waits on the disk, on encoding a big result, or on another process's lock.
- Durability: ``flush_later(callback)`` tells the scheduler when what it reported is
  committed, and a success takes effect only then: no hook, consumer or report sees a
  SUCCESS (or its result) that a crash could lose. A task's start (RUNNING) is committed as
  it is launched, unless ``start_delay_s`` lets a batch of mere starts wait (see the class
  docstring). Reads see every transition reported before them (they wait for the commit),
  from any thread.
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
  the caller's to handle) and queues the row: it is written by the next group commit, in the
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
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from .._clock import Clock, SystemClock
from ..errors import UnknownRunError, describe_failure
from ._prune import choose, prune_rule
from ._sqlite_connection import Busy, Database
from ._sqlite_errors import StateDatabaseError
from ._sqlite_recovery import fail_dead_runs, this_process
from ._sqlite_results import DEFAULT_SERIALIZER, ResultCodec
from ._sqlite_rows import (
    CacheRow,
    RunRow,
    RunWrite,
    TaskRow,
    delete_cache,
    delete_runs,
    drop_results,
    holding_results,
    select_cache,
    select_history,
    select_run,
    select_run_ids,
    snapshot,
    undo,
    write_cache,
    write_runs,
)
from ._sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from ._sqlite_ticks import insert_tick, select_ticks, update_tick
from ._sqlite_writer import Writer
from ._ticks import check_limit
from .protocol import Durable, EncodingFailures
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

T = TypeVar("T")

_BEING_WRITTEN = 0  # a new run's key while its insert is in flight (SQLite row ids are >= 1)


_SMALL_ROWS = 256  # results a caller encodes itself in one commit, at most
_SMALL_TEXT = 16_384  # characters (or bytes) of a result a caller encodes itself, at most
_CHECKPOINT_EVERY = 200  # the caller's own commits between two checkpoints by the writer
_COMMIT_BYTES = 8_000_000  # results written by one of the writer's transactions, about
_SCALARS = (str, int, float, bool)


def _small(value: Any) -> bool:
    """A result cheap to encode on the caller's thread (the event loop)."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float:
        return True
    if kind is str or kind is bytes:
        return len(value) <= _SMALL_TEXT
    if kind is list or kind is tuple or kind is dict:
        items = value.values() if kind is dict else value
        return len(value) <= 64 and all(
            v is None or (type(v) in _SCALARS and (type(v) is not str or len(v) <= 1024))
            for v in items
        )
    return False


class _Budget:
    """``snapshot``'s ``ready`` for the writer's transactions: a row (its result encoded:
    ``snapshot`` asks only then) is ready while the bytes of results taken so far stay within
    the budget."""

    __slots__ = ("left",)

    def __init__(self, budget: int) -> None:
        self.left = budget

    def __call__(self, row: TaskRow) -> bool:
        if row.blob is None:
            return True
        if self.left <= 0:
            return False
        self.left -= len(row.blob)
        return True


def _nothing(db: Database) -> None:
    """The job of ``flush()``: the writer commits before every job."""


def _writing(
    writes: list[RunWrite], puts: list[CacheRow], expired: dict[str, float]
) -> Callable[[sqlite3.Connection], list[tuple[RunRow, int]]]:
    """The transaction of one group commit."""

    def write(conn: sqlite3.Connection) -> list[tuple[RunRow, int]]:
        created = write_runs(conn, writes)
        if puts or expired:
            write_cache(conn, puts, list(expired.items()))
        return created

    return write


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
    - ``start_delay_s`` (default 0): how long the commit of a batch of mere task starts may
      wait. 0: a task's RUNNING is committed as it is launched (before an async task's code
      runs, while the write lock is free), so a crash always finds it RUNNING. A few
      milliseconds: a task that ends within them costs one commit instead of two (a chain of
      short tasks runs faster), but one killed in that window reads back PENDING, and
      recovery records it SKIPPED ("died before this task's start was recorded").

    Cached task results are shared by every store on the file: ``cache_put`` is written at
    the next ``flush()`` (this store's ``cache_get`` sees it before), ``cache_get`` always
    reads the database for what this store has not queued. A cached result is encoded with
    ``serializer`` (``cache_put`` raises ``ResultEncodingError`` for one it cannot encode,
    keeping nothing) and so comes back as the serializer returns it (JSON: tuples as lists);
    an entry this store cannot decode (another serializer's format, a pickled class that is
    gone) is a miss, replaced when the task has run again.

    Open one store per process (a connection must not cross ``fork``); ``close()`` it, or use
    it as a context manager. Methods may be called from any thread. Writes happen on the
    store's writer thread (see the module docstring): ``flush()`` waits for the commit of
    everything reported so far; while another process holds the write lock the writer waits
    for it (at most ``busy_timeout_s``, then ``StateDatabaseError`` naming the file, the runs
    and the process holding it; nothing is lost, the next commit writes it).
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
        start_delay_s: float = 0.0,
    ) -> None:
        self._results = ResultCodec(serializer)  # refuses a serializer that cannot be used
        checked = (
            ("cache_ttl_s", cache_ttl_s),
            ("busy_timeout_s", busy_timeout_s),
            ("start_delay_s", start_delay_s),
        )
        for label, value in checked:
            if value is None and label == "cache_ttl_s":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{label!r} must be a number of seconds >= 0 (got {value!r})")
        self.path = os.path.abspath(os.fspath(db_path))
        self.serializer = serializer
        self.cache_ttl_s = cache_ttl_s
        self.busy_timeout_s = float(busy_timeout_s)
        self.start_delay_s = float(start_delay_s)  # read by the scheduler
        self.clock: Clock = clock if clock is not None else SystemClock()  # recovery timestamps
        self._lock = threading.RLock()  # the rows below; never held while waiting on the writer
        self._live: dict[str, RunRow] = {}  # runs this store is writing: the source of truth
        self._cache: dict[str, RunRow] = {}  # finished or read runs, in expiry order
        self._pending: dict[str, RunRow] = {}  # runs with transitions not committed yet
        self._writing: set[str] = set()  # runs whose transitions a group commit is writing
        self._unencoded: list[tuple[str, TaskRow]] = []  # results the writer encodes
        self._callbacks: list[Durable] = []  # to call once the next group commit is over
        self._cache_puts: dict[str, CacheRow] = {}  # cache entries not written yet, by key
        self._cache_expired: dict[str, float] = {}  # keys found expired: deleted at flush
        self._owner = this_process()
        self._db = Database(self.path, self.busy_timeout_s)
        self._reader = self._db.reader()
        self._read_lock = threading.Lock()  # the reader connection, one caller at a time
        self._inline = self._db.sibling()  # the caller's own commits, when they cost less
        self._inline_commits = 0
        self._connections = threading.Lock()  # one group commit at a time, whoever makes it
        self._carried: EncodingFailures = []  # of a commit that found the lock taken
        self._writer = Writer(self._db, self._group_commit, self._connections)
        self._closed = False
        _OPEN_STORES.add(self)  # closed (so flushed) at interpreter exit if the user forgot
        self.recovered: list[str] = self.recover() if recover else []

    @property
    def transactions(self) -> int:
        """Write transactions committed by this store so far (the benchmark reports it)."""
        return self._db.transactions + self._inline.transactions

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in a read transaction of the reader connection: it sees what is
        committed, and never waits for a writer (WAL), this store's or another process's."""
        with self._read_lock:
            return self._reader.run(work, write=False)

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in a write transaction on the writer, after what is pending is committed."""
        return self._writer.call(lambda db: db.run(work, write=True))

    # -- transitions -------------------------------------------------------------------------
    def create_run(self, run: RunRecord) -> None:
        new = self._results.new_row(run)
        run_id = run.run_id
        with self._lock:
            known = run_id in self._live or self._cached(run_id) is not None
        if known or self._read(lambda conn: select_run(conn, run_id, False)) is not None:
            raise ValueError(f"run id {run_id!r} already exists in the state store")
        with self._lock:
            if run_id in self._live:
                raise ValueError(f"run id {run_id!r} already exists in the state store")
            self._live[run_id] = new
            self._pending[run_id] = new

    def _live_run(self, run_id: str) -> RunRow:
        run = self._live.get(run_id)
        if run is None:  # not being written by this store: take it over from the database
            run = self._find_or_raise(run_id)
            self._cache.pop(run_id, None)
            run.expires = None
            self._live[run_id] = run
        return run

    def _task(self, run_id: str, task: str) -> TaskRow:
        run = self._live.get(run_id) or self._live_run(run_id)
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
        with self._lock:
            rec = self._task(run_id, task)
            rec.status, rec.started_at, rec.finished_at = SUCCESS, started_at, finished_at
            if keep_result:
                self._keep(run_id, rec, result)

    def _keep(self, run_id: str, rec: TaskRow, result: Any) -> None:
        """Queue ``result`` for the writer to encode (off the event loop): until it is, the
        row reads back as still running, on disk and to ``load_run``."""
        rec.value, rec.unencoded = result, True
        self._unencoded.append((run_id, rec))

    def add_warning(self, run_id: str, task: str, warning: str) -> None:
        """Keep ``warning`` about the task (e.g. its attempt blocked the event loop past its
        timeout), written with its next transition; its status does not change."""
        with self._lock:
            rec = self._task(run_id, task)
            known = json.loads(rec.warnings) if rec.warnings else []
            rec.warnings = json.dumps([*known, warning])

    def mark_cached(
        self,
        run_id: str,
        task: str,
        finished_at: float,
        result: Any,
        keep_result: bool,
        cached_from: str,
    ) -> None:
        with self._lock:
            rec = self._task(run_id, task)
            rec.status, rec.attempt, rec.cached_from = SUCCESS, 0, cached_from
            rec.started_at = rec.finished_at = finished_at
            rec.error = rec.traceback = None
            if keep_result:
                self._keep(run_id, rec, result)

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
            if status == PENDING:  # retried: the attempt joins the task's earlier ones
                known = json.loads(rec.attempts) if rec.attempts else []
                rec.attempts = json.dumps([*known, [rec.attempt, started_at, finished_at, error]])
            rec.status, rec.started_at, rec.finished_at = status, started_at, finished_at
            rec.error, rec.traceback = error, traceback
            rec.unencoded, rec.value = False, None

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

    # -- group commits -----------------------------------------------------------------------
    def flush(self) -> None:
        """Commit every transition (and cache entry) reported so far, and wait for it: the
        writer's next group commit, on its thread. Raises what that commit raised."""
        self._writer.call(_nothing)

    def flush_later(self, callback: Durable) -> bool:
        """Have what is pending committed, without waiting for the disk or a lock:
        ``callback(error, failures)`` runs once the commit holding every transition reported
        so far is over. False (and no callback) when there is nothing to commit.

        When the writer is idle, the results to encode are small (none bigger than a few
        KB) and the write lock is free at once, the caller commits it itself: that costs
        tens of microseconds, less than handing it to the writer's thread and back.
        Otherwise, or if another connection holds the lock, the writer does."""
        with self._lock:
            if not (self._pending or self._unencoded or self._writing or self._cache_puts):
                return False
            self._callbacks.append(callback)
            here = not self._writer.working and self._small()
        if here and self._connections.acquire(blocking=False):
            try:
                done = self._group_commit(inline=True)
            finally:
                self._connections.release()
            if done:
                return True
        self._writer.commit_soon()
        return True

    def _small(self) -> bool:
        """Whether the results to encode are cheap enough to encode on the caller's thread."""
        unencoded = self._unencoded
        if not unencoded:
            return True
        return len(unencoded) <= _SMALL_ROWS and all(_small(rec.value) for _, rec in unencoded)

    def _group_commit(self, inline: bool = False) -> bool:
        """Write everything reported since the last group commit in one transaction (on the
        writer's thread, or ``inline`` on the caller's if the write lock is free at once:
        False, nothing written, if it is not). The writer encodes results first, outside the
        lock, so transitions go on meanwhile; the caller's are small, encoded under it. A
        result that cannot be encoded fails its task (``failures``)."""
        with self._lock:
            callbacks, self._callbacks = self._callbacks, []
            failures, self._carried = self._carried, []
            unencoded, self._unencoded = self._unencoded, []
            if inline and unencoded:
                self._settle(self._encoded(unencoded), failures)
                unencoded = []
            if not unencoded:
                writes, more, puts, expired = self._take(inline)
        if unencoded:
            encoded = self._encoded(unencoded)
            with self._lock:
                self._settle(encoded, failures)
                writes, more, puts, expired = self._take(inline)
        error: BaseException | None = None
        created: list[tuple[RunRow, int]] = []
        try:
            if writes or puts or expired:
                work = _writing(writes, list(puts.values()), expired)
                created = self._inline.attempt(work) if inline else self._db.run(work, True)
        except Busy:  # inline only: the writer will wait for the lock instead
            self._rewind(writes, puts, expired)
            with self._lock:
                self._callbacks[:0] = callbacks
                self._carried[:0] = failures
            return False
        except StateDatabaseError as exc:
            runs = ", ".join(sorted({w.run.run_id for w in writes})) or "none"
            error = StateDatabaseError(f"{exc} (writing run(s) {runs})", path=exc.path)
            error.__cause__ = exc
            self._rewind(writes, puts, expired)
        except BaseException as exc:
            error = exc
            self._rewind(writes, puts, expired)
        else:
            self._written(writes, created)
        while more and error is None:  # big results: a few MB per transaction, the WAL small
            with self._lock:
                writes, more = self._snapshot(_COMMIT_BYTES)
            try:
                created = self._db.run(_writing(writes, [], {}), True)
            except BaseException as exc:
                error = exc
                self._rewind(writes, {}, {})
            else:
                self._written(writes, created)
        if inline and error is None and writes:
            self._inline_commits += 1
            if self._inline_commits % _CHECKPOINT_EVERY == 0:  # off this thread: it syncs
                self._writer.checkpoint_soon()
        for callback in callbacks:
            with contextlib.suppress(Exception):  # a callback's failure is its owner's
                callback(error, failures)
        if error is not None and not (inline and callbacks):  # else theirs to raise
            raise error
        return True

    def _encoded(
        self, unencoded: list[tuple[str, TaskRow]]
    ) -> list[tuple[str, TaskRow, Any, bytes | Exception]]:
        """Each result encoded, or the error that refused it; the values are read first, so
        ``_settle`` can tell a row that changed meanwhile."""
        encode = self._results.encode
        encoded: list[tuple[str, TaskRow, Any, bytes | Exception]] = []
        for run_id, rec in unencoded:
            value = rec.value
            try:
                outcome: bytes | Exception = encode(run_id, rec.name, value)
            except Exception as exc:  # the task fails with it
                outcome = exc
            encoded.append((run_id, rec, value, outcome))
        return encoded

    def _settle(
        self,
        encoded: list[tuple[str, TaskRow, Any, bytes | Exception]],
        failures: EncodingFailures,
    ) -> None:
        """Keep what ``_encoded`` made (the lock is held): a blob, or the task FAILED."""
        for run_id, rec, value, outcome in encoded:
            if not rec.unencoded or rec.value is not value:
                continue  # the task changed since (a retry, a failure): nothing to keep
            rec.unencoded, rec.value = False, None
            if isinstance(outcome, bytes):
                rec.blob, rec.fmt = outcome, self._results.format
                continue
            rec.status = FAILED
            rec.error, rec.traceback = describe_failure(outcome)
            failures.append((run_id, rec.name, outcome))

    def _take(
        self, inline: bool
    ) -> tuple[list[RunWrite], bool, dict[str, CacheRow], dict[str, float]]:
        """What the next transaction writes (the lock is held): the runs' rows (``_snapshot``,
        the caller's whole, the writer's within ``_COMMIT_BYTES``) and the cache's."""
        writes, more = self._snapshot(None if inline else _COMMIT_BYTES)
        puts, self._cache_puts = self._cache_puts, {}  # swapped even when empty: the caller
        expired, self._cache_expired = self._cache_expired, {}  # reads them outside the lock
        return writes, more, puts, expired

    def _snapshot(self, budget: int | None) -> tuple[list[RunWrite], bool]:
        """Copy what is pending (under the lock), and whether ``budget`` (bytes of results)
        left some of it for another transaction; a run with a result still to encode stays
        pending for the next commit."""
        owner = self._owner
        writes = []
        later: dict[str, RunRow] = {}
        writing = set()
        within = None if budget is None else _Budget(budget)
        for run_id, run in self._pending.items():
            new = run.key is None
            writes.append(snapshot(run, owner, within))
            writing.add(run_id)
            if new:
                run.key = _BEING_WRITTEN  # tasks added meanwhile join ``new_tasks``
            if run.dirty_tasks or run.new_tasks or run.dirty:
                later[run_id] = run
        self._pending = later
        self._writing = writing
        return writes, within is not None and within.left <= 0 and bool(later)

    def _rewind(
        self, writes: list[RunWrite], puts: dict[str, CacheRow], expired: dict[str, float]
    ) -> None:
        """A group commit failed: what it was writing is pending again (nothing is lost)."""
        with self._lock:
            for w in writes:
                run = w.run
                if run.key == _BEING_WRITTEN:
                    run.key = None
                    run.new_tasks = []  # the run's insert writes every task row
                undo(w)
                self._pending[run.run_id] = run
            for key, row in puts.items():
                self._cache_puts.setdefault(key, row)
            for key, when in expired.items():
                self._cache_expired.setdefault(key, when)
            self._writing = set()

    def _written(self, writes: list[RunWrite], created: list[tuple[RunRow, int]]) -> None:
        with self._lock:
            for run, key in created:
                run.key = key
            for w in writes:
                run = w.run
                if run.finished_at is None or run.status == RUNNING:
                    continue
                run_id = run.run_id
                if run_id not in self._pending and self._live.get(run_id) is run:
                    del self._live[run_id]  # done: from now on a cached copy
                    self._remember(run, time.monotonic())
            self._writing = set()

    # -- reads -----------------------------------------------------------------------------
    def load_run(self, run_id: str, *, results: bool = True) -> RunRecord:
        """A snapshot of the run, its results decoded anew; a result of another serializer
        raises ``StateDatabaseError`` naming the tasks and the serializer to use.
        ``results=False``: a summary that reads no result from the file (``result`` None,
        ``has_result``/``result_format`` as stored), whatever serializer stored them.

        A run this store is writing shows only what is committed: its pending transitions
        are committed first (read your writes, from any thread)."""
        for _ in range(3):
            with self._lock:
                live = self._live.get(run_id)
                if live is None or not self._unsettled(run_id):
                    if live is not None:
                        return self._results.record(live, self.path, results)
                    break
            self.flush()
        else:  # still being written to: what is committed is in the file
            found = self._read(lambda conn: select_run(conn, run_id, results))
            if found is None:  # pragma: no cover - a live run is written by its first commit
                raise UnknownRunError(run_id)
            return self._results.record(found, self.path, results)
        return self._results.record(self._find_or_raise(run_id, results), self.path, results)

    def _unsettled(self, run_id: str) -> bool:
        return run_id in self._pending or run_id in self._writing

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

        self.flush()  # so the filters see this store's own latest transitions
        run_ids = self._read(lambda conn: select_run_ids(conn, dag_name, status, limit))
        with self._lock:
            known = {run_id: self._cached(run_id) for run_id in run_ids}
        stale = [
            run_id
            for run_id, run in known.items()
            if run is None or (status is not None and run.status != status)
        ]  # never list a stale cached copy

        def select(conn: sqlite3.Connection) -> dict[str, RunRow | None]:
            return {run_id: select_run(conn, run_id, results) for run_id in stale}

        if stale:
            known.update(self._read(select))
        runs = [run for run in known.values() if run is not None]
        with self._lock:
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
        with self._lock:
            run = self._cached(run_id)
        if run is None:
            run = self._read(lambda conn: select_run(conn, run_id, results))
            if run is not None and results:  # a summary row must never stand for the run
                with self._lock:
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
            row = self._read(lambda conn: select_cache(conn, key))
            if row is None:
                return None
            if row.expires_at is not None and row.expires_at <= now:
                with self._lock:
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
        # The writer commits queued entries first, so they are cleared too.
        removed: int = self._write(lambda conn: delete_cache(conn, dag, names))
        return removed

    # -- schedule ticks ----------------------------------------------------------------------
    def record_tick(self, tick: TickRecord) -> bool:
        """Claim ``tick`` at once: True if this store wrote it, False if (schedule, due_at) is
        already in the file (another server claimed it)."""
        claimed: bool = self._write(lambda conn: insert_tick(conn, tick))
        return claimed

    def update_tick(self, tick: TickRecord) -> None:
        """Replace the tick of (schedule, due_at) at once (a queued tick that started)."""
        self._write(lambda conn: update_tick(conn, tick))

    def list_ticks(self, schedule: str | None = None, limit: int | None = None) -> list[TickRecord]:
        """The ticks in the file, newest due time first (of one schedule, or all)."""
        check_limit(limit)
        ticks: list[TickRecord] = self._read(lambda conn: select_ticks(conn, schedule, limit))
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
            with self._lock:
                live = set(self._live)
            chosen = [(r, k) for r, k in choose(history, rule) if r.run_id not in live]
            if results_only:
                holding = holding_results(conn, [key for _, key in chosen])
                chosen = [(r, key) for r, key in chosen if key in holding]
            keys = [key for _, key in chosen]
            if keys and not dry_run:
                (drop_results if results_only else delete_runs)(conn, keys)
            return [r for r, _ in chosen]

        # The writer commits this store's finished runs first, so they leave ``_live``.
        pruned: list[PrunedRun] = self._writer.call(lambda db: db.run(work, write=not dry_run))
        if not dry_run:
            with self._lock:
                for run in pruned:
                    self._cache.pop(run.run_id, None)
        return pruned

    def vacuum(self) -> None:
        """Give the space of deleted rows and results back to the file system (SQLite's
        ``VACUUM``, then a WAL checkpoint that truncates the ``-wal`` file). It rewrites the
        whole file, waiting (``busy_timeout_s``) for other processes' writes."""
        with self._read_lock:  # VACUUM waits for no reader of this store
            self._writer.call(lambda db: db.vacuum())

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
        dead: list[str] = self._write(lambda conn: fail_dead_runs(conn, host, self.clock))
        with self._lock:
            for run_id in dead:
                self._cache.pop(run_id, None)
        return dead

    # -- resources ---------------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is pending (the writer drains its queue), then close the connections.
        Closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if not self._db.forked:  # a forked child: the connection is the parent's
                self.flush()
        finally:
            self._writer.stop()
            self._db.close()
            self._reader.close()
            self._inline.close()

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
