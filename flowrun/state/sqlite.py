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
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar

from .._clock import Clock, SystemClock
from ..errors import UnknownRunError
from .records import FAILED, PENDING, RUNNING, SKIPPED, SUCCESS, RunRecord, TaskRecord
from .serializers import JsonSerializer, ResultEncodingError, ResultSerializer, check_serializer

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteStateStore", "StateDatabaseError"]

T = TypeVar("T")

SCHEMA_VERSION = 2
"""The schema this code writes, kept in ``PRAGMA user_version``."""
APPLICATION_ID = 0x666C7772  # "flwr" in ``PRAGMA application_id``: marks a flowrun database
SQLITE_HEADER = b"SQLite format 3\x00"
_JSON = JsonSerializer()
_KNOWN_SERIALIZERS = {"json": "JsonSerializer()", "pickle": "PickleSerializer()"}


_OPEN_STORES: weakref.WeakSet[SqliteStateStore] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    """Write what open stores still hold (e.g. the end of a run aborted by a lock that
    outlasted the busy timeout) when the interpreter exits without ``close()``."""
    for store in list(_OPEN_STORES):
        with contextlib.suppress(Exception):  # nobody to report to at exit; recover() repairs
            store.close()


class StateDatabaseError(Exception):
    """The state database cannot be used: wrong kind of file, newer schema, not writable,
    closed, or locked for longer than the busy timeout. The message says what to do.

    ``path`` is the database; ``needs_format`` is set when a result is stored in a format
    this store's serializer does not read: the name of the serializer that does."""

    def __init__(
        self, message: str, *, path: str | None = None, needs_format: str | None = None
    ) -> None:
        self.path = path
        self.needs_format = needs_format
        super().__init__(message)


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE runs (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, "
        "dag_name TEXT NOT NULL, created_at REAL NOT NULL, status TEXT NOT NULL, "
        "finished_at REAL, targets TEXT, resumed_from TEXT, owner_pid INTEGER NOT NULL, "
        "owner_started TEXT, owner_host TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX runs_newest ON runs (created_at, id)")
    conn.execute("CREATE INDEX runs_dag_newest ON runs (dag_name, created_at, id)")
    conn.execute(
        "CREATE TABLE tasks (run INTEGER NOT NULL REFERENCES runs (id), "
        "position INTEGER NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, "
        "attempt INTEGER NOT NULL, started_at REAL, finished_at REAL, error TEXT, "
        "traceback TEXT, result BLOB, result_format TEXT, PRIMARY KEY (run, position))"
    )


def _add_task_deps(conn: sqlite3.Connection) -> None:
    """Version 2: each task row keeps its parents (a JSON list), so a run can be drawn
    without its code; rows written by version 1 have NULL there, read back as ``()``."""
    conn.execute("ALTER TABLE tasks ADD COLUMN deps TEXT")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _create_v1, 2: _add_task_deps}
"""Version N -> the function that upgrades a version N-1 database to N, inside the open's
write transaction (a new file goes through every step from 0)."""

_RUN_COLUMNS = "id, run_id, dag_name, created_at, status, finished_at, targets, resumed_from"
_STATE = "status, attempt, started_at, finished_at, error, traceback, result, result_format"
_INSERT_RUN = (
    "INSERT INTO runs (run_id, dag_name, created_at, status, finished_at, targets, "
    "resumed_from, owner_pid, owner_started, owner_host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_TASK = (
    f"INSERT INTO tasks ({_STATE}, run, position, name, deps) VALUES ({', '.join('?' * 12)})"
)
_INSERT_NEW_TASK = (
    "INSERT INTO tasks (run, position, name, status, attempt, deps) VALUES (?, ?, ?, ?, 0, ?)"
)
_UPDATE_TASK = (
    "UPDATE tasks SET status = ?, attempt = ?, started_at = ?, finished_at = ?, error = ?, "
    "traceback = ?, result = ?, result_format = ? WHERE run = ? AND position = ?"
)


@dataclass(slots=True)
class _Task:
    """One task row as stored: the result stays encoded, so every read decodes a fresh copy."""

    position: int
    name: str
    status: str
    attempt: int
    started_at: float | None
    finished_at: float | None
    error: str | None
    traceback: str | None
    blob: bytes | None
    fmt: str | None  # the serializer name that encoded ``blob``
    deps: tuple[str, ...] = ()  # written once with the row, never updated
    dirty: bool = False


@dataclass(slots=True)
class _Run:
    """One run row plus its tasks; ``key`` is the row id once written, ``expires`` the
    monotonic time after which a cached copy must be re-read (None: never)."""

    key: int | None
    run_id: str
    dag_name: str
    created_at: float
    status: str
    finished_at: float | None
    targets: tuple[str, ...] | None
    resumed_from: str | None
    tasks: dict[str, _Task]
    dirty: bool = False
    dirty_tasks: list[_Task] = field(default_factory=list)
    expires: float | None = None


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

    Open one store per process (a connection must not cross ``fork``); ``close()`` it, or use
    it as a context manager. Methods may be called from any thread. ``flush()`` runs on the
    event loop: it takes microseconds, unless another process holds the write lock, when it
    waits for it (at most ``busy_timeout_s``, then ``StateDatabaseError``; nothing is lost,
    the next flush writes it).
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        serializer: ResultSerializer = _JSON,
        cache_ttl_s: float | None = None,
        recover: bool = False,
        *,
        busy_timeout_s: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self._format = check_serializer(serializer)  # the name stored beside each result
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
        self._live: dict[str, _Run] = {}  # runs this store is writing: the source of truth
        self._cache: dict[str, _Run] = {}  # finished or read runs, in expiry order
        self._pending: dict[str, _Run] = {}  # runs with transitions not flushed yet
        self._transactions = 0
        self._pid = os.getpid()
        self._owner = (os.getpid(), _process_start(os.getpid()), socket.gethostname())
        self._conn: sqlite3.Connection | None = self._open()
        _OPEN_STORES.add(self)  # closed (so flushed) at interpreter exit if the user forgot
        self.recovered: list[str] = self.recover() if recover else []

    @property
    def transactions(self) -> int:
        """Write transactions committed by this store so far (the benchmark reports it)."""
        return self._transactions

    # -- opening -------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        """Check the file, then switch to WAL and migrate: nothing is written before the
        file is known to be a flowrun database this code can read (or a new one)."""
        path = Path(self.path)
        if path.is_dir():
            self._fail(f"is a directory; pass a file path such as '{path / 'flowrun.db'}'")
        if not path.parent.is_dir():
            what = "is not a directory" if path.parent.exists() else "does not exist"
            self._fail(f"cannot be created: '{path.parent}' {what}; create the directory first")
        if path.exists():
            try:
                with path.open("rb") as fh:
                    head = fh.read(len(SQLITE_HEADER))
            except OSError as error:
                msg = f"cannot be read ({error}); fix its permissions or choose another path"
                raise self._error(msg) from error
            if head and head != SQLITE_HEADER:
                self._not_ours(f"not a SQLite database (it starts with {head[:8]!r})")
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as error:
            raise self._error(self._explain(error)) from error
        try:
            check = self._schema_version  # in a read transaction: one consistent view
            self._retry(conn, lambda: self._transaction(conn, check, write=False))
            self._retry(conn, lambda: conn.execute("PRAGMA journal_mode = WAL").fetchall())
            conn.execute("PRAGMA synchronous = NORMAL")
            self._retry(conn, lambda: self._transaction(conn, self._migrate))
        except BaseException as error:
            conn.close()
            if isinstance(error, sqlite3.Error):
                raise self._error(self._explain(error)) from error
            raise
        return conn

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        """The schema version of the file (0: empty); refuses files that are not ours."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                self._fail(
                    f"was written by a newer flowrun (schema version {version}; this flowrun "
                    f"reads up to version {SCHEMA_VERSION}); upgrade flowrun to use it. The "
                    "file was left untouched"
                )
            return version
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        if app_id or version or names:
            shown = ", ".join(names[:5]) or "none"
            self._not_ours(
                f"a SQLite database of another application (application_id {app_id}, "
                f"user_version {version}, tables: {shown})"
            )
        return 0

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = self._schema_version(conn)  # again, under the write lock: another process
        for target in range(version + 1, SCHEMA_VERSION + 1):  # may have just created it
            MIGRATIONS[target](conn)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _fail(self, problem: str, needs_format: str | None = None) -> NoReturn:
        raise self._error(problem, needs_format)

    def _error(self, problem: str, needs_format: str | None = None) -> StateDatabaseError:
        return StateDatabaseError(
            f"flowrun state database '{self.path}' {problem}",
            path=str(self.path),
            needs_format=needs_format,
        )

    def _not_ours(self, what: str) -> NoReturn:
        self._fail(
            f"is {what}; flowrun left it untouched. Pass the path of a flowrun state database "
            "or of a file that does not exist yet"
        )

    def _explain(self, error: sqlite3.Error) -> str:
        text = str(error)
        if "not a database" in text or "malformed" in text:
            return f"is not a usable SQLite database ({text}); flowrun left it untouched"
        if "readonly" in text or "unable to open" in text or "read-only" in text:
            return (
                f"is not writable ({text}): this process must be able to write the file and "
                "its directory (SQLite creates the -wal and -shm files beside it)"
            )
        return f"failed: {text}"

    # -- transactions ----------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._fail("is closed: this SqliteStateStore was closed; open a new one")
        if os.getpid() != self._pid:
            self._fail(
                f"was opened in process {self._pid} and used in process {os.getpid()} (after "
                "a fork); open a new SqliteStateStore in each process"
            )
        assert self._conn is not None
        return self._conn

    def _transaction(
        self, conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], write: bool = True
    ) -> T:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if write:
            self._transactions += 1
        return result

    def _retry(self, conn: sqlite3.Connection, action: Callable[[], T]) -> T:
        """Run ``action``, retrying while another connection holds the lock (SQLite's busy
        handler already waits; this covers "busy" returned without waiting, e.g. during WAL
        recovery or a journal-mode switch) until the busy timeout is spent."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.001
        while True:
            try:
                return action()
            except sqlite3.OperationalError as error:
                code = getattr(error, "sqlite_errorcode", 0) & 0xFF
                if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
                if time.monotonic() >= deadline:
                    raise self._error(
                        f"stayed locked by another connection for more than "
                        f"{self.busy_timeout_s}s ({error}); retry later or raise busy_timeout_s"
                    ) from error
                time.sleep(delay)  # back-off between retries, not synchronization
                delay = min(delay * 2, 0.05)

    def _run_sql(self, work: Callable[[sqlite3.Connection], T], write: bool) -> T:
        conn = self._connection()
        try:
            return self._retry(conn, lambda: self._transaction(conn, work, write))
        except sqlite3.Error as error:
            raise self._error(self._explain(error)) from error

    # -- transitions -------------------------------------------------------------------------
    def create_run(self, run: RunRecord) -> None:
        tasks: dict[str, _Task] = {}
        for position, (name, rec) in enumerate(run.tasks.items()):
            blob = self._encode(run.run_id, name, rec.result) if rec.has_result else None
            tasks[name] = _Task(
                position,
                name,
                rec.status,
                rec.attempt,
                rec.started_at,
                rec.finished_at,
                rec.error,
                rec.traceback,
                blob,
                self._format if blob is not None else None,
                rec.deps,
            )
        with self._lock:
            if run.run_id in self._live or self._find(run.run_id) is not None:
                raise ValueError(f"run id {run.run_id!r} already exists in the state store")
            new = _Run(
                None,
                run.run_id,
                run.dag_name,
                run.created_at,
                run.status,
                run.finished_at,
                run.targets,
                run.resumed_from,
                tasks,
            )
            self._live[run.run_id] = new
            self._pending[run.run_id] = new

    def _live_run(self, run_id: str) -> _Run:
        run = self._live.get(run_id)
        if run is None:  # not being written by this store: take it over from the database
            run = self._find_or_raise(run_id)
            self._cache.pop(run_id, None)
            run.expires = None
            self._live[run_id] = run
        return run

    def _task(self, run_id: str, task: str) -> _Task:
        run = self._live_run(run_id)
        rec = run.tasks[task]
        if not rec.dirty:
            rec.dirty = True
            run.dirty_tasks.append(rec)
            self._pending[run_id] = run
        return rec

    def mark_running(self, run_id: str, task: str, attempt: int, started_at: float) -> None:
        with self._lock:
            rec = self._task(run_id, task)
            rec.status, rec.attempt, rec.started_at = RUNNING, attempt, started_at
            rec.finished_at = rec.error = rec.traceback = None

    def mark_success(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        result: Any,
        keep_result: bool,
    ) -> None:
        blob = self._encode(run_id, task, result) if keep_result else None
        with self._lock:
            rec = self._task(run_id, task)
            rec.status, rec.started_at, rec.finished_at = SUCCESS, started_at, finished_at
            if blob is not None:
                rec.blob, rec.fmt = blob, self._format

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

    def finish_run(self, run_id: str, status: str, finished_at: float) -> None:
        with self._lock:
            run = self._live_run(run_id)
            run.status, run.finished_at, run.dirty = status, finished_at, True
            self._pending[run_id] = run

    def _encode(self, run_id: str, task: str, result: Any) -> bytes:
        serializer = self.serializer
        try:
            blob = serializer.serialize(result)
        except Exception as error:
            raise ResultEncodingError(
                f"task {task!r} returned a {type(result).__name__} that the state store cannot "
                f"save (run {run_id}): {error} (or set retain_result=False on the task if "
                "nothing needs its result after the run)"
            ) from error
        if not isinstance(blob, bytes):
            raise ResultEncodingError(
                f"task {task!r} (run {run_id}): serializer {serializer!r} returned "
                f"{type(blob).__name__}, not bytes; fix its serialize()"
            )
        return blob

    def flush(self) -> None:
        """Write every transition reported since the last flush in one transaction."""
        with self._lock:
            if not self._pending:
                return
            pending = list(self._pending.values())
            created = self._run_sql(lambda conn: self._write(conn, pending), write=True)
            for run, key in created:
                run.key = key
            now = time.monotonic()
            for run in pending:
                for rec in run.dirty_tasks:
                    rec.dirty = False
                run.dirty_tasks = []
                run.dirty = False
                if run.finished_at is not None and run.status != RUNNING:
                    del self._live[run.run_id]  # done: from now on a cached copy
                    self._remember(run, now)
            self._pending = {}

    def _write(self, conn: sqlite3.Connection, runs: list[_Run]) -> list[tuple[_Run, int]]:
        created: list[tuple[_Run, int]] = []
        for run in runs:
            if run.key is None:
                created.append((run, self._insert(conn, run)))
                continue
            if run.dirty_tasks:
                rows = [(*_state(t), run.key, t.position) for t in run.dirty_tasks]
                conn.executemany(_UPDATE_TASK, rows)
            if run.dirty:
                conn.execute(
                    "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
                    (run.status, run.finished_at, run.key),
                )
        return created

    def _insert(self, conn: sqlite3.Connection, run: _Run) -> int:
        """A new run row and its task rows; untouched PENDING tasks take a shorter statement
        (three times faster for a 10k-task run), tasks kept by ``resume`` the full one."""
        targets = None if run.targets is None else json.dumps(list(run.targets))
        row = (run.run_id, run.dag_name, run.created_at, run.status, run.finished_at, targets)
        key = conn.execute(_INSERT_RUN, (*row, run.resumed_from, *self._owner)).lastrowid
        assert key is not None
        fresh: list[tuple[Any, ...]] = []
        kept: list[tuple[Any, ...]] = []
        for t in run.tasks.values():
            state = _state(t)
            deps = json.dumps(t.deps)  # a JSON list
            if state == _NEW_TASK_STATE:
                fresh.append((key, t.position, t.name, PENDING, deps))
            else:
                kept.append((*state, key, t.position, t.name, deps))
        conn.executemany(_INSERT_NEW_TASK, fresh)
        conn.executemany(_INSERT_TASK, kept)
        return key

    # -- reads -----------------------------------------------------------------------------
    def load_run(self, run_id: str) -> RunRecord:
        with self._lock:
            return self._record(self._find_or_raise(run_id))

    def list_runs(
        self, dag_name: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"'limit' must be >= 0 (got {limit})")
        where, params = [], []
        for column, value in (("dag_name", dag_name), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        query = "SELECT run_id FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        query += " ORDER BY created_at DESC, id DESC LIMIT ?"

        def select(conn: sqlite3.Connection) -> list[_Run]:
            found = []
            for (run_id,) in conn.execute(query, (*params, limit)).fetchall():
                run = self._cached(run_id)
                if run is None or (status is not None and run.status != status):
                    run = _select_run(conn, run_id)  # a stale cached copy must not be listed
                if run is not None:
                    found.append(run)
            return found

        with self._lock:
            self.flush()  # so the filters see this store's own latest transitions
            runs = self._run_sql(select, write=False)
            now = time.monotonic()
            for run in runs:
                if run.run_id not in self._live and run.run_id not in self._cache:
                    self._remember(run, now, read=True)
            return [self._record(run) for run in runs]

    def _find_or_raise(self, run_id: str) -> _Run:
        run = self._find(run_id)
        if run is None:
            raise UnknownRunError(run_id)
        return run

    def _find(self, run_id: str) -> _Run | None:
        run = self._cached(run_id)
        if run is None:
            run = self._run_sql(lambda conn: _select_run(conn, run_id), write=False)
            if run is not None:
                self._remember(run, time.monotonic(), read=True)
        return run

    def _cached(self, run_id: str) -> _Run | None:
        run = self._live.get(run_id)
        if run is not None:
            return run
        run = self._cache.get(run_id)
        if run is not None and run.expires is not None and run.expires <= time.monotonic():
            del self._cache[run_id]
            return None
        return run

    def _remember(self, run: _Run, now: float, read: bool = False) -> None:
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

    def _record(self, run: _Run) -> RunRecord:
        tasks = {}
        for name, t in run.tasks.items():
            result = None if t.blob is None else self._decode(run, t, t.blob)
            tasks[name] = TaskRecord(
                t.status,
                t.attempt,
                t.started_at,
                t.finished_at,
                t.error,
                t.traceback,
                result,
                t.blob is not None,
                t.deps,
            )
        return RunRecord(
            run.run_id,
            run.dag_name,
            run.created_at,
            run.status,
            run.finished_at,
            tasks,
            run.targets,
            run.resumed_from,
        )

    def _decode(self, run: _Run, task: _Task, blob: bytes) -> Any:
        if task.fmt == _JSON.name and self._format != _JSON.name:
            return _JSON.deserialize(blob)  # JSON is safe to load whatever this store writes
        if task.fmt != self._format:
            known = _KNOWN_SERIALIZERS.get(task.fmt or "")
            fix = f"serializer={known}" if known else f"the serializer named {task.fmt!r}"
            self._fail(
                f"holds the result of task {task.name!r} of run {run.run_id} in the "
                f"{task.fmt!r} format, but this store's serializer is {self._format!r}; "
                f"open the database with {fix} to read it",
                needs_format=task.fmt,
            )
        return self.serializer.deserialize(blob)

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

        def fail_dead_runs(conn: sqlite3.Connection) -> list[str]:
            now = self.clock.time()
            rows = conn.execute(
                "SELECT id, run_id, owner_pid, owner_started FROM runs "
                "WHERE status = ? AND owner_host = ?",
                (RUNNING, host),
            ).fetchall()
            dead = []
            for key, run_id, pid, started in rows:
                if _process_alive(pid, started):
                    continue
                where = f"pid {pid} on host {host}"
                conn.execute(
                    "UPDATE tasks SET status = ?, finished_at = ?, error = ? "
                    "WHERE run = ? AND status = ?",
                    (
                        FAILED,
                        now,
                        f"ProcessDied: the process running this task ({where}) died",
                        key,
                        RUNNING,
                    ),
                )
                conn.execute(
                    "UPDATE tasks SET status = ?, error = ? WHERE run = ? AND status = ?",
                    (
                        SKIPPED,
                        f"ProcessDied: the process running this run ({where}) died "
                        "before this task could run",
                        key,
                        PENDING,
                    ),
                )
                conn.execute(
                    "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (FAILED, now, key)
                )
                dead.append(run_id)
            return dead

        with self._lock:
            dead = self._run_sql(fail_dead_runs, write=True)
            for run_id in dead:
                self._cache.pop(run_id, None)
            return dead

    # -- resources ---------------------------------------------------------------------------
    def close(self) -> None:
        """Flush what is pending, then close the connection. Closing twice is harmless."""
        with self._lock:
            if self._conn is None:
                return
            if os.getpid() != self._pid:  # a forked child: the connection is the parent's
                self._conn = None
                return
            try:
                self.flush()
            finally:
                conn, self._conn = self._conn, None
                conn.close()

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


_NEW_TASK_STATE = (PENDING, 0, None, None, None, None, None, None)


def _state(t: _Task) -> tuple[Any, ...]:
    return (t.status, t.attempt, t.started_at, t.finished_at, t.error, t.traceback, t.blob, t.fmt)


def _select_run(conn: sqlite3.Connection, run_id: str) -> _Run | None:
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    key, run_id, dag_name, created_at, status, finished_at, targets, resumed_from = row
    rows: Iterable[tuple[Any, ...]] = conn.execute(
        f"SELECT position, name, {_STATE}, deps FROM tasks WHERE run = ? ORDER BY position",
        (key,),
    )
    tasks = {}
    for *state, deps in rows:
        task = _Task(*state)
        if deps is not None:  # NULL: a row written before schema version 2
            task.deps = tuple(json.loads(deps))
        tasks[task.name] = task
    return _Run(
        key,
        run_id,
        dag_name,
        created_at,
        status,
        finished_at,
        None if targets is None else tuple(json.loads(targets)),
        resumed_from,
        tasks,
    )


def _process_start(pid: int) -> str | None:
    """When ``pid`` started (Linux: clock ticks since boot, plus the boot id), so a pid that
    was reused by a new process (pid 1 in every container, say) is not taken for the owner."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
    except OSError:
        return None
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"


def _process_alive(pid: int, started: str | None) -> bool:
    """``os.kill(pid, 0)``: does a process with that pid exist (a zombie counts as alive)?
    and, where the start time was recorded, is it the same process?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    return started is None or _process_start(pid) in (started, None)
