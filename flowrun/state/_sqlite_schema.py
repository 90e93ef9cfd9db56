"""The database's schema and how a file gets to the current one.

A schema change is one more step in ``MIGRATIONS``: a function upgrading the previous
version, run inside the open's write transaction (so a failing step leaves the file as it
was). A new file goes through every step from 0, so there is no second "latest" DDL to keep
in step with the migrations.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ._sqlite_errors import fail, not_ours

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLITE_HEADER",
    "migrate",
    "schema_version",
]

APPLICATION_ID = 0x666C7772  # "flwr" in ``PRAGMA application_id``: marks a flowrun database
SQLITE_HEADER = b"SQLite format 3\x00"


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


def _add_queued_s(conn: sqlite3.Connection) -> None:
    """Version 3: the seconds each task waited for slots (engine or pool); NULL in older rows,
    read back as 0."""
    conn.execute("ALTER TABLE tasks ADD COLUMN queued_s REAL")


def _add_map_columns(conn: sqlite3.Connection) -> None:
    """Version 4: mapped tasks. ``mapped`` marks a mapped task's row; ``map_of`` an instance's,
    with the mapped task's name (its rows follow the run's other tasks); NULL in older rows."""
    conn.execute("ALTER TABLE tasks ADD COLUMN map_of TEXT")
    conn.execute("ALTER TABLE tasks ADD COLUMN mapped INTEGER")


def _add_cache(conn: sqlite3.Connection) -> None:
    """Version 5: cached task results (``@task(cache=True)``). The ``cache`` table holds one
    entry per cache key: the DAG and task it belongs to (cleared by them), the run that
    computed it, its engine-clock wall times, and the result encoded like a task's. A task
    row's ``cached_from`` is the run id its result came from; NULL for a task that ran (and
    in older rows)."""
    conn.execute(
        "CREATE TABLE cache (key TEXT PRIMARY KEY, dag TEXT NOT NULL, task TEXT NOT NULL, "
        "run_id TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL, "
        "result BLOB NOT NULL, result_format TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX cache_dag_task ON cache (dag, task)")
    conn.execute("ALTER TABLE tasks ADD COLUMN cached_from TEXT")


def _add_schedules(conn: sqlite3.Connection) -> None:
    """Version 6: schedules (``engine.serve``). ``ticks`` holds one row per (schedule, due
    time): the primary key is what makes two servers on one file never run a tick twice. A
    run row gains ``scheduled_for``, its tick's due time; NULL (a manual run) in older rows and
    in runs started otherwise."""
    conn.execute(
        "CREATE TABLE ticks (schedule TEXT NOT NULL, due_at REAL NOT NULL, dag TEXT NOT NULL, "
        "outcome TEXT NOT NULL, run_id TEXT, reason TEXT, recorded_at REAL NOT NULL, "
        "PRIMARY KEY (schedule, due_at))"
    )
    conn.execute("ALTER TABLE runs ADD COLUMN scheduled_for REAL")


def _add_task_warnings(conn: sqlite3.Connection) -> None:
    """Version 7: a task row gains ``warnings``, a JSON list of what went wrong without failing
    it (an async attempt that blocked the event loop past its timeout), and ``attempts``, a
    JSON list of its attempts that failed and were retried ([attempt, started, finished,
    error] each); NULL: none."""
    conn.execute("ALTER TABLE tasks ADD COLUMN warnings TEXT")
    conn.execute("ALTER TABLE tasks ADD COLUMN attempts TEXT")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _create_v1,
    2: _add_task_deps,
    3: _add_queued_s,
    4: _add_map_columns,
    5: _add_cache,
    6: _add_schedules,
    7: _add_task_warnings,
}
"""Version N -> the step that upgrades a version N-1 database to N."""

SCHEMA_VERSION = max(MIGRATIONS)
"""The schema this code writes, kept in ``PRAGMA user_version``."""


def schema_version(conn: sqlite3.Connection, path: str) -> int:
    """The schema version of the file (0: empty); refuses files that are not ours."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            fail(
                path,
                f"was written by a newer flowrun (schema version {version}; this flowrun "
                f"reads up to version {SCHEMA_VERSION}); upgrade flowrun to use it. The "
                "file was left untouched",
            )
        return version
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    if app_id or version or names:
        shown = ", ".join(names[:5]) or "none"
        not_ours(
            path,
            f"a SQLite database of another application (application_id {app_id}, "
            f"user_version {version}, tables: {shown})",
        )
    return 0


def migrate(conn: sqlite3.Connection, path: str) -> None:
    version = schema_version(conn, path)  # again, under the write lock: another process
    for target in range(version + 1, SCHEMA_VERSION + 1):  # may have just created it
        MIGRATIONS[target](conn)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
