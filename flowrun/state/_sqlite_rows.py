"""The ``runs``, ``tasks`` and ``cache`` tables as the store holds them in memory, and the SQL
that writes and reads them.

Transitions only change a ``RunRow`` and mark it dirty; ``write_runs`` later turns whatever is
dirty into as few statements as it can, inside the caller's transaction. Every function here
takes the connection, so it can run on whichever thread owns it.
"""

from __future__ import annotations

import json
import json.encoder
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._prune import PRUNED_FORMAT
from .records import PENDING, RUNNING, PrunedRun

__all__ = [
    "CacheRow",
    "Owner",
    "RunRow",
    "RunWrite",
    "TaskRow",
    "delete_cache",
    "delete_runs",
    "drop_results",
    "holding_results",
    "select_cache",
    "select_history",
    "select_run",
    "select_run_ids",
    "snapshot",
    "undo",
    "write_cache",
    "write_runs",
]

Owner = tuple[int, str | None, str]
"""The process that creates a run: pid, start time, host (see ``_sqlite_recovery``)."""

_RUN_COLUMNS = (
    "id, run_id, dag_name, created_at, status, finished_at, targets, resumed_from, scheduled_for"
)
_STATE = (
    "status, attempt, started_at, finished_at, error, traceback, result, result_format, queued_s, "
    "cached_from, warnings, attempts"
)
_SUMMARY_STATE = _STATE.replace(" result,", " result IS NOT NULL,", 1)  # no result read
_INSERT_RUN = (
    "INSERT INTO runs (run_id, dag_name, created_at, status, finished_at, targets, "
    "resumed_from, scheduled_for, owner_pid, owner_started, owner_host) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_TASK = (
    f"INSERT INTO tasks ({_STATE}, run, position, name, deps, map_of, mapped) "
    f"VALUES ({', '.join('?' * 18)})"
)
_INSERT_NEW_TASK = (
    "INSERT INTO tasks (run, position, name, status, attempt, deps, mapped) "
    "VALUES (?, ?, ?, ?, 0, ?, ?)"
)
_UPDATE_TASK = (
    "UPDATE tasks SET status = ?, attempt = ?, started_at = ?, finished_at = ?, error = ?, "
    "traceback = ?, result = ?, result_format = ?, queued_s = ?, cached_from = ?, warnings = ?, "
    "attempts = ? "
    "WHERE run = ? AND position = ?"
)


def _plain_update(started: str, finished: str, result: str, queued: str) -> str:
    return (
        f"UPDATE tasks SET status = ?, attempt = ?, started_at = {started}, "
        f"finished_at = {finished}, error = NULL, traceback = NULL, result = {result}, "
        f"result_format = {result}, queued_s = {queued}, cached_from = NULL, warnings = NULL, "
        "attempts = NULL WHERE run = ? AND position = ?"
    )


# The same for the common row, whose other columns are NULL (no error, no cached result, no
# warning, no retried attempt), and variants for its usual shapes: a start (no end, no
# result) and an end with a result, each without or with a wait for slots. A NULL that the
# statement says costs nothing, a bound None costs sqlite3 an adapter lookup (a fifth of a
# cheap update's time; bytes cost it twice that, hence ``_bindable``).
_UPDATE_PLAIN_TASK = _plain_update("?", "?", "?", "?")
_UPDATE_STARTED = _plain_update("?", "NULL", "NULL", "NULL")
_UPDATE_STARTED_QUEUED = _plain_update("?", "NULL", "NULL", "?")
_UPDATE_ENDED = _plain_update("?", "?", "?", "NULL")
_SMALL_BLOB = 4096  # bytes copied into a bytearray to be bound (a copy costs less below it)


def _bindable(blob: bytes) -> bytes | bytearray:
    """The same BLOB for SQLite: sqlite3 binds a bytearray as it is, but first looks for an
    adapter for bytes (about a microsecond)."""
    return bytearray(blob) if len(blob) <= _SMALL_BLOB else blob


_UPDATE_RUN = "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?"
_encode_name = json.encoder.encode_basestring_ascii  # what json.dumps uses for a str, in C


def names_json(names: tuple[str, ...]) -> str:
    """``json.dumps(names)``, the same text in a quarter of the time (a new run writes one
    per task)."""
    return "[" + ", ".join(map(_encode_name, names)) + "]"


@dataclass(slots=True)
class TaskRow:
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
    queued_s: float | None = None  # seconds waited for slots (NULL in rows of schema < 3)
    cached_from: str | None = None  # the run a cached result came from (NULL: it ran)
    warnings: str | None = None  # a JSON list of what went wrong without failing it (NULL: none)
    attempts: str | None = None  # a JSON list of the retried attempts (NULL: none)
    deps: tuple[str, ...] = ()  # written once with the row, never updated, as are:
    map_of: str | None = None  # an instance: its mapped task
    mapped: bool = False  # a mapped task
    dirty: bool = False
    value: Any = None  # a result not encoded yet (``unencoded``): the writer encodes it
    unencoded: bool = False


@dataclass(slots=True)
class RunRow:
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
    tasks: dict[str, TaskRow]
    dirty: bool = False
    dirty_tasks: list[TaskRow] = field(default_factory=list)
    new_tasks: list[TaskRow] = field(default_factory=list)  # added to a written run
    expires: float | None = None
    scheduled_for: float | None = None  # a schedule's run: its tick's due time


Rows = Sequence[tuple[Any, ...]]
_NO_ROWS: Rows = ()


class RunWrite:
    """What one group commit writes of one run, copied from its rows while the store's lock
    is held, so the statements can run on the writer thread while transitions go on. A plain
    class: one is made per run per commit, and the lists a dataclass builds by default
    factories cost a small commit more than copying its rows does."""

    __slots__ = (
        "ends",
        "finished",
        "fresh",
        "full",
        "insert",
        "plain",
        "queued_starts",
        "rows",
        "run",
        "starts",
        "updates",
    )

    def __init__(self, run: RunRow) -> None:
        self.run = run
        self.insert: tuple[Any, ...] | None = None  # a new run's row (its key comes later)
        self.fresh: Rows = _NO_ROWS  # a new run's untouched tasks
        self.full: Rows = _NO_ROWS  # whole task rows, keyless
        self.updates: Rows = _NO_ROWS  # task states + key, position (_UPDATE_TASK's)
        self.plain: Rows = _NO_ROWS  # the same, _UPDATE_PLAIN_TASK's
        self.starts: Rows = _NO_ROWS  # _UPDATE_STARTED's
        self.queued_starts: Rows = _NO_ROWS  # _UPDATE_STARTED_QUEUED's
        self.ends: Rows = _NO_ROWS  # _UPDATE_ENDED's
        self.finished: tuple[Any, ...] | None = None  # (status, finished_at, key)
        self.rows: list[TaskRow] = []  # the rows copied: dirty again on failure


def snapshot(run: RunRow, owner: Owner, ready: Callable[[TaskRow], bool] | None = None) -> RunWrite:
    """Copy what is dirty in ``run`` (and clear its dirty marks); a dirty task row whose
    result is not encoded yet, or for which ``ready`` is false, stays dirty, for the next
    commit."""
    out = RunWrite(run)
    key = run.key
    rows = out.rows
    if key is None:
        targets = None if run.targets is None else json.dumps(list(run.targets))
        out.insert = (
            run.run_id,
            run.dag_name,
            run.created_at,
            run.status,
            run.finished_at,
            targets,
            run.resumed_from,
            run.scheduled_for,
            *owner,
        )
        later = []
        fresh: list[tuple[Any, ...]] = []
        full: list[tuple[Any, ...]] = []
        for t in run.tasks.values():
            if t.dirty and (t.unencoded or (ready is not None and not ready(t))):
                # written as still running until its result is
                later.append(t)
                full.append(_full_row(t, _running(t)))
                continue
            state = _state(t)
            if state == _NEW_TASK_STATE and t.map_of is None:
                fresh.append((t.position, t.name, PENDING, names_json(t.deps), int(t.mapped)))
            else:
                full.append(_full_row(t, state))
        out.fresh, out.full = fresh, full
        for t in run.dirty_tasks:
            if t.dirty and not t.unencoded and (ready is None or ready(t)):
                t.dirty = False
                rows.append(t)
        run.dirty_tasks = later
        run.dirty = False
        return out
    if run.new_tasks:
        out.full = [_full_row(t, _state(t)) for t in run.new_tasks]
        run.new_tasks = []
    later = []
    updates: list[tuple[Any, ...]] = []
    plain: list[tuple[Any, ...]] = []
    starts: list[tuple[Any, ...]] = []
    queued_starts: list[tuple[Any, ...]] = []
    ends: list[tuple[Any, ...]] = []
    for t in run.dirty_tasks:
        if t.unencoded or (ready is not None and not ready(t)):
            later.append(t)
            continue
        t.dirty = False
        rows.append(t)
        if (
            t.error is not None
            or t.traceback is not None
            or t.cached_from is not None
            or t.warnings is not None
            or t.attempts is not None
        ):
            updates.append((*_state(t), key, t.position))
            continue
        started, finished, blob = t.started_at, t.finished_at, t.blob
        queued = t.queued_s or None  # 0 s: NULL, like a new row
        if started is not None and finished is None and blob is None:  # a start
            if queued is None:
                starts.append((t.status, t.attempt, started, key, t.position))
            else:
                queued_starts.append((t.status, t.attempt, started, queued, key, t.position))
            continue
        result = None if blob is None else _bindable(blob)
        if result is not None and started is not None and finished is not None and queued is None:
            ends.append((t.status, t.attempt, started, finished, result, t.fmt, key, t.position))
        else:
            plain.append(
                (t.status, t.attempt, started, finished, result, t.fmt, queued, key, t.position)
            )
    out.updates, out.plain, out.starts, out.queued_starts, out.ends = (
        updates,
        plain,
        starts,
        queued_starts,
        ends,
    )
    run.dirty_tasks = later
    if run.dirty:
        out.finished = (run.status, run.finished_at, key)
        run.dirty = False
    return out


def write_runs(conn: sqlite3.Connection, writes: list[RunWrite]) -> list[tuple[RunRow, int]]:
    """Run the statements of ``writes`` in the caller's transaction; returns the new runs with
    their row ids, which the caller sets once the transaction has committed (a rolled-back
    run stays unwritten). Untouched PENDING tasks of a new run take a shorter statement
    (three times faster for a 10k-task run), tasks kept by ``resume`` the full one."""
    created: list[tuple[RunRow, int]] = []
    for w in writes:
        key = w.run.key
        if w.insert is not None:
            key = conn.execute(_INSERT_RUN, w.insert).lastrowid
            assert key is not None
            created.append((w.run, key))
            conn.executemany(_INSERT_NEW_TASK, [(key, *row) for row in w.fresh])
        if w.full:
            conn.executemany(_INSERT_TASK, [(*row[:12], key, *row[12:]) for row in w.full])
        if w.updates:
            conn.executemany(_UPDATE_TASK, w.updates)
        if w.plain:
            conn.executemany(_UPDATE_PLAIN_TASK, w.plain)
        if w.starts:
            conn.executemany(_UPDATE_STARTED, w.starts)
        if w.queued_starts:
            conn.executemany(_UPDATE_STARTED_QUEUED, w.queued_starts)
        if w.ends:
            conn.executemany(_UPDATE_ENDED, w.ends)
        if w.finished is not None:
            conn.execute(_UPDATE_RUN, w.finished)
    return created


def undo(w: RunWrite) -> None:
    """A group commit that failed: mark what it copied dirty again, so the next one writes
    it (nothing a transition reported is lost)."""
    run = w.run
    for t in w.rows:
        if not t.dirty:
            t.dirty = True
            run.dirty_tasks.append(t)
    if w.run.key is not None:
        if w.full:  # added to a written run: inserted again, whole
            run.new_tasks[:0] = [run.tasks[row[13]] for row in w.full]
        if w.finished is not None:
            run.dirty = True
    else:
        run.dirty = True


_NEW_TASK_STATE = (PENDING, 0, None, None, None, None, None, None, None, None, None, None)


def _full_row(t: TaskRow, state: tuple[Any, ...]) -> tuple[Any, ...]:
    """A whole task row without its run's key (the 13th column, put in by ``write_runs``)."""
    deps = names_json(t.deps)  # a JSON list
    return (*state, t.position, t.name, deps, t.map_of, int(t.mapped))


def _running(t: TaskRow) -> tuple[Any, ...]:
    """The state of a task that succeeded but whose result is not encoded yet: on disk it is
    still running (a crash then fails it; it never reads back SUCCESS without its result)."""
    return (
        RUNNING,
        t.attempt,
        t.started_at,
        None,
        None,
        None,
        None,
        None,
        t.queued_s,
        None,
        t.warnings,
        t.attempts,
    )


def _state(t: TaskRow) -> tuple[Any, ...]:
    return (
        t.status,
        t.attempt,
        t.started_at,
        t.finished_at,
        t.error,
        t.traceback,
        t.blob,
        t.fmt,
        t.queued_s or None,  # 0: NULL, like a new row
        t.cached_from,
        t.warnings,
        t.attempts,
    )


def select_run(conn: sqlite3.Connection, run_id: str, results: bool = True) -> RunRow | None:
    """The run ``run_id`` with its tasks; ``results=False``: a summary whose rows hold no
    result (``blob`` None; ``fmt`` set only where a result is stored, or ``PRUNED_FORMAT``),
    which must never be cached as the run."""
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    key, run_id, dag_name, created_at, status, finished_at, targets, resumed_from = row[:8]
    scheduled_for = row[8]  # NULL in rows written before schema version 6
    rows: Iterable[tuple[Any, ...]] = conn.execute(
        f"SELECT position, name, {_STATE if results else _SUMMARY_STATE}, deps, map_of, mapped "
        "FROM tasks WHERE run = ? ORDER BY position",
        (key,),
    )
    tasks = {}
    for *state, deps, map_of, mapped in rows:
        task = TaskRow(*state)
        if not results:
            stored, task.blob = task.blob, None  # the blob column holds `result IS NOT NULL`
            if not stored and task.fmt != PRUNED_FORMAT:
                task.fmt = None
        if deps is not None:  # NULL: a row written before schema version 2
            task.deps = tuple(json.loads(deps))
        task.map_of, task.mapped = map_of, bool(mapped)
        tasks[task.name] = task
    return RunRow(
        key,
        run_id,
        dag_name,
        created_at,
        status,
        finished_at,
        None if targets is None else tuple(json.loads(targets)),
        resumed_from,
        tasks,
        scheduled_for=scheduled_for,
    )


def select_run_ids(
    conn: sqlite3.Connection, dag_name: str | None, status: str | None, limit: int
) -> list[str]:
    """The ids of the matching runs, newest first."""
    where, params = [], []
    for column, value in (("dag_name", dag_name), ("status", status)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    query = "SELECT run_id FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
    query += " ORDER BY created_at DESC, id DESC LIMIT ?"
    return [run_id for (run_id,) in conn.execute(query, (*params, limit)).fetchall()]


# -- pruning --------------------------------------------------------------------------------


def select_history(conn: sqlite3.Connection, dag: str | None) -> list[tuple[PrunedRun, int]]:
    """Every run (of ``dag`` if given), newest first as ``list_runs`` orders them, with its
    row id: what ``prune`` chooses from (run rows only: no task row is read)."""
    query = "SELECT id, run_id, dag_name, created_at, status FROM runs"
    params: tuple[Any, ...] = ()
    if dag is not None:
        query, params = query + " WHERE dag_name = ?", (dag,)
    rows = conn.execute(query + " ORDER BY created_at DESC, id DESC", params).fetchall()
    return [
        (PrunedRun(run_id, name, created, status), key)
        for key, run_id, name, created, status in rows
    ]


def holding_results(conn: sqlite3.Connection, keys: Iterable[int]) -> set[int]:
    """Those of the runs ``keys`` that still hold a stored result (``typeof`` reads no blob)."""
    query = "SELECT 1 FROM tasks WHERE run = ? AND typeof(result) != 'null' LIMIT 1"
    return {key for key in keys if conn.execute(query, (key,)).fetchone() is not None}


def delete_runs(conn: sqlite3.Connection, keys: list[int]) -> None:
    """Delete the runs ``keys`` and their task rows (cache entries and ticks stay)."""
    rows = [(key,) for key in keys]
    conn.executemany("DELETE FROM tasks WHERE run = ?", rows)
    conn.executemany("DELETE FROM runs WHERE id = ?", rows)


def drop_results(conn: sqlite3.Connection, keys: list[int]) -> None:
    """Drop the stored results of the runs ``keys``, marking each dropped one as pruned."""
    conn.executemany(
        "UPDATE tasks SET result = NULL, result_format = ? WHERE run = ? AND result IS NOT NULL",
        [(PRUNED_FORMAT, key) for key in keys],
    )


# -- the cache ------------------------------------------------------------------------------

_CACHE_COLUMNS = "key, dag, task, run_id, created_at, expires_at, result, result_format"


@dataclass(frozen=True, slots=True)
class CacheRow:
    """One cache entry as stored: the result encoded by the store's serializer."""

    key: str
    dag: str
    task: str
    run_id: str
    created_at: float
    expires_at: float | None
    blob: bytes
    fmt: str


def write_cache(
    conn: sqlite3.Connection, puts: Iterable[CacheRow], expired: Iterable[tuple[str, float]]
) -> None:
    """Delete the entries found expired (``(key, now)``: only if still expired, since another
    process may have replaced one since), then write the new ones over any of their keys."""
    conn.executemany(
        "DELETE FROM cache WHERE key = ? AND expires_at IS NOT NULL AND expires_at <= ?",
        list(expired),
    )
    conn.executemany(
        f"INSERT OR REPLACE INTO cache ({_CACHE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(r.key, r.dag, r.task, r.run_id, r.created_at, r.expires_at, r.blob, r.fmt) for r in puts],
    )


def select_cache(conn: sqlite3.Connection, key: str) -> CacheRow | None:
    row = conn.execute(f"SELECT {_CACHE_COLUMNS} FROM cache WHERE key = ?", (key,)).fetchone()
    return None if row is None else CacheRow(*row)


def delete_cache(conn: sqlite3.Connection, dag: str, tasks: Iterable[str] | None) -> int:
    """Delete the entries of ``dag`` (of ``tasks`` only, if given); returns how many."""
    if tasks is None:
        return conn.execute("DELETE FROM cache WHERE dag = ?", (dag,)).rowcount
    rows = [(dag, task) for task in dict.fromkeys(tasks)]
    removed = 0
    for row in rows:  # one statement per task: the (dag, task) index, no parameter limit
        removed += conn.execute("DELETE FROM cache WHERE dag = ? AND task = ?", row).rowcount
    return removed
