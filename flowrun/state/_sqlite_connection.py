"""The connection to the database file and the one way it is used: a whole transaction,
retried while another process holds the lock (WAL, ``synchronous=NORMAL`` and why: see
``flowrun.state.sqlite``). Kept apart from the store's bookkeeping, so that a writer thread
can own one.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from . import _sqlite_schema
from ._sqlite_errors import database_error, explain, fail, not_ours
from ._sqlite_schema import SQLITE_HEADER, migrate, schema_version

__all__ = ["Busy", "Database"]

T = TypeVar("T")


class Busy(Exception):
    """``Database.attempt``: another connection holds the write lock (nothing was written)."""


_process = [os.getpid()]  # this process's id, set anew in a forked child


def _forked_child() -> None:
    _process[0] = os.getpid()


# ``forked`` is asked on every transaction, and os.getpid() is a system call: a fork hook
# keeps the id instead (it runs in every child that goes on running Python). No fork, no hook.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked_child)


class Database:
    """One open state database. Not thread-safe: the caller serialises its calls.

    Opening checks the file before anything is written to it, so a file that is not ours or
    is of a newer schema keeps its bytes. The connection belongs to the process that opened
    it: after a ``fork`` the child refuses to use it, and ``close()`` only forgets it.
    """

    def __init__(self, path: str, busy_timeout_s: float, *, reader: bool = False) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.transactions = 0  # write transactions committed, the migration's included
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = self._connect() if reader else self._open()

    def reader(self) -> Database:
        """A second connection to the same (opened, so checked and migrated) file, for reads:
        in WAL mode they never wait for a writer, so the event loop can use it while this
        one is busy committing or waiting for another process's lock."""
        return Database(self.path, self.busy_timeout_s, reader=True)

    def sibling(self) -> Database:
        """A second connection that never waits for the write lock (``attempt``) and never
        checkpoints by itself (a checkpoint syncs the file: ``checkpoint()`` on another
        thread does it)."""
        other = Database(self.path, 0.0, reader=True)
        other._connection().execute("PRAGMA wal_autocheckpoint = 0")
        other._connection().execute("PRAGMA synchronous = NORMAL")
        return other

    def attempt(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(conn)`` in one write transaction if the write lock is free at once; raises
        ``Busy`` (nothing written) if another connection holds it."""
        conn = self._connection()
        try:
            return self._transaction(conn, work, write=True)
        except sqlite3.OperationalError as error:
            code = getattr(error, "sqlite_errorcode", 0) & 0xFF
            if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise Busy(str(error)) from error
            raise database_error(self.path, explain(error)) from error
        except sqlite3.Error as error:
            raise database_error(self.path, explain(error)) from error

    def checkpoint(self) -> None:
        """Move committed pages from the WAL into the file, without waiting for anyone."""
        conn = self._connection()
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as error:
            raise database_error(self.path, explain(error)) from error

    @property
    def closed(self) -> bool:
        return self._conn is None

    @property
    def forked(self) -> bool:
        """True in a child forked after the open: the connection is the parent's."""
        return _process[0] != self._pid

    def run(self, work: Callable[[sqlite3.Connection], T], write: bool) -> T:
        """``work(conn)`` in one transaction (``BEGIN IMMEDIATE`` if ``write``): committed
        whole or not at all, and run again from the start if the lock was busy."""
        conn = self._connection()
        try:
            return self._retry(lambda: self._transaction(conn, work, write))
        except sqlite3.Error as error:
            raise database_error(self.path, explain(error)) from error

    def vacuum(self) -> None:
        """``VACUUM`` (it cannot run inside a transaction), then a checkpoint that moves the
        rewritten pages into the file and truncates the WAL: only then does the file shrink."""
        conn = self._connection()
        try:
            self._retry(lambda: conn.execute("VACUUM"))
            self._retry(lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        except sqlite3.Error as error:
            raise database_error(self.path, explain(error)) from error

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not self.forked:
            conn.close()

    # -- opening -------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        """Check the file, then switch to WAL and migrate: nothing is written before the
        file is known to be a flowrun database this code can read (or a new one)."""
        path = Path(self.path)
        if path.is_dir():
            fail(self.path, f"is a directory; pass a file path such as '{path / 'flowrun.db'}'")
        if not path.parent.is_dir():
            what = "is not a directory" if path.parent.exists() else "does not exist"
            fail(
                self.path,
                f"cannot be created: '{path.parent}' {what}; create the directory first",
            )
        if path.exists():
            try:
                with path.open("rb") as fh:
                    head = fh.read(len(SQLITE_HEADER))
            except OSError as error:
                msg = f"cannot be read ({error}); fix its permissions or choose another path"
                raise database_error(self.path, msg) from error
            if head and head != SQLITE_HEADER:
                not_ours(self.path, f"not a SQLite database (it starts with {head[:8]!r})")
        conn = self._connect()
        try:
            check = functools.partial(schema_version, path=self.path)
            version = self._retry(lambda: self._transaction(conn, check, write=False))
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchall())
            conn.execute("PRAGMA synchronous = NORMAL")
            if version < _sqlite_schema.SCHEMA_VERSION:  # a current file: no write lock taken
                upgrade = functools.partial(migrate, path=self.path)
                self._retry(lambda: self._transaction(conn, upgrade))
        except BaseException as error:
            conn.close()
            if isinstance(error, sqlite3.Error):
                raise database_error(self.path, explain(error)) from error
            raise
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            return sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as error:
            raise database_error(self.path, explain(error)) from error

    # -- transactions ----------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            fail(self.path, "is closed: this SqliteStateStore was closed; open a new one")
        if self.forked:
            fail(
                self.path,
                f"was opened in process {self._pid} and used in process {os.getpid()} (after "
                "a fork); open a new SqliteStateStore in each process",
            )
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
            self.transactions += 1
        return result

    def _retry(self, action: Callable[[], T]) -> T:
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
                    raise database_error(
                        self.path,
                        f"stayed locked by another connection{lock_holders(self.path)} for "
                        f"more than {self.busy_timeout_s}s ({error}); retry later or raise "
                        "busy_timeout_s",
                    ) from error
                time.sleep(delay)  # back-off between retries, not synchronization
                delay = min(delay * 2, 0.05)


def lock_holders(path: str) -> str:
    """`` (held by pid 123: python etl.py)``: the other processes that have the database open,
    found through ``/proc`` where there is one (best effort: empty when nothing is found)."""
    names = {path, f"{path}-wal", f"{path}-shm"}
    found: list[str] = []
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]
    except OSError:
        return ""
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.readlink(f"/proc/{pid}/fd/{fd}") in names for fd in fds):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                command = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone, or not ours to look at
            continue
        found.append(f"pid {pid}: {command[:80]}" if command else f"pid {pid}")
    return f" (open in {'; '.join(found[:3])})" if found else ""
