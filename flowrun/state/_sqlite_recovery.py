"""Runs left RUNNING by a process that died, told apart by the owner each run records.

Only runs of this host can be checked; the owner's start time keeps a reused pid (pid 1 in
every container, say) from passing for the owner.
"""

from __future__ import annotations

import os
import socket
import sqlite3

from .._clock import Clock
from ._sqlite_rows import Owner
from .records import FAILED, PENDING, RUNNING, SKIPPED

__all__ = ["fail_dead_runs", "this_process"]


def this_process() -> Owner:
    """What each run this process creates records about its owner."""
    return (os.getpid(), _process_start(os.getpid()), socket.gethostname())


def fail_dead_runs(conn: sqlite3.Connection, host: str, clock: Clock) -> list[str]:
    """Fail the RUNNING runs of ``host`` whose process is gone (inside the caller's write
    transaction): RUNNING tasks FAILED; a task waiting out a retry back-off (PENDING after an
    attempt: ``mark_retry`` left its attempt and that attempt's error) FAILED too, its error
    kept and the death added; the other PENDING tasks SKIPPED; the run FAILED. Each FAILED
    task is one a resume runs again. Returns their ids."""
    now = clock.time()
    rows = conn.execute(
        "SELECT id, run_id, owner_pid, owner_started FROM runs WHERE status = ? AND owner_host = ?",
        (RUNNING, host),
    ).fetchall()
    dead = []
    for key, run_id, pid, started in rows:
        if _process_alive(pid, started):
            continue
        where = f"pid {pid} on host {host}"
        conn.execute(
            "UPDATE tasks SET status = ?, finished_at = ?, error = ? WHERE run = ? AND status = ?",
            (
                FAILED,
                now,
                f"ProcessDied: the process running this task ({where}) died",
                key,
                RUNNING,
            ),
        )
        # It ran and failed, and was to run again: it did not "never run". Its attempt's
        # error and traceback stay (the cause to fix); finished_at stays that attempt's end.
        conn.execute(
            "UPDATE tasks SET status = ?, error = coalesce(error, 'error not recorded') || ? "
            "|| (attempt + 1) || ')' WHERE run = ? AND status = ? AND attempt >= 1",
            (
                FAILED,
                f"; then ProcessDied: the process running this run ({where}) died while the "
                "task waited to retry (before attempt ",
                key,
                PENDING,
            ),
        )
        conn.execute(
            "UPDATE tasks SET status = ?, error = ? WHERE run = ? AND status = ?",
            (
                SKIPPED,
                f"ProcessDied: the process running this run ({where}) died "
                "before this task's start was recorded",
                key,
                PENDING,
            ),
        )
        conn.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (FAILED, now, key))
        dead.append(run_id)
    return dead


def _process_start(pid: int) -> str | None:
    """When ``pid`` started (Linux: clock ticks since boot, plus the boot id)."""
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
