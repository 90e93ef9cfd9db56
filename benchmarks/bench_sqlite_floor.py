"""What SQLite itself costs per task, with none of flowrun's Python around it.

The floor under ``bench_sqlite.py``: a run of N tasks on ``SqliteStateStore`` writes each task
row once (the run's insert) and updates it twice (RUNNING, then SUCCESS), in group commits of a
few tasks each. This script runs exactly those statements (the store's own SQL, on a database
whose schema the store created) through ``sqlite3`` on one thread, and prints microseconds per
task for:

- the insert of N new PENDING rows in one transaction;
- two updates per task, in transactions of B tasks, with the full update statement, the plain
  one (no error, warning or cached result: those columns are SQL NULLs) and the shaped ones the
  store uses for such rows now (a start: no end or result; an end with its result, bound as a
  bytearray), which bind no None and no bytes;
- a transition log's floor: one row appended per transaction, holding the B tasks' two
  transitions as one blob (48 bytes a task: about a packed status, attempt and two times),
  to an append-only table (the store has none; this is what one would cost at least);
- an empty ``BEGIN IMMEDIATE``/``COMMIT``, per transaction.

Compare the sum with the in-memory store's whole cost per task (``bench_scheduler.py``, or the
memory column of ``bench_sqlite.py``): what is left for a durable run to be within 1.5x of it.

Usage:
  python benchmarks/bench_sqlite_floor.py                 # 10k tasks, batches of 5, 10, 100
  python benchmarks/bench_sqlite_floor.py --tasks 1000 --batches 1,10 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from flowrun import SqliteStateStore
from flowrun.state._sqlite_rows import (
    _INSERT_NEW_TASK,
    _INSERT_RUN,
    _UPDATE_ENDED,
    _UPDATE_PLAIN_TASK,
    _UPDATE_STARTED,
    _UPDATE_TASK,
    names_json,
)


def _best(repeat: int, work: Callable[[], float]) -> float:
    return min(work() for _ in range(repeat))


def measure(tasks: int, batches: Sequence[int], repeat: int) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="flowrun-floor-") as tmp:
        path = os.path.join(tmp, "state.db")
        SqliteStateStore(path).close()  # the store's schema, WAL mode
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE floor_log (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        run_number = 0

        def new_run() -> int:
            nonlocal run_number
            run_number += 1
            owner = (os.getpid(), None, "host")
            values = (f"run{run_number}", "floor", 0.0, "RUNNING", None, None, None, None)
            key = conn.execute(_INSERT_RUN, (*values, *owner)).lastrowid
            assert key is not None
            return key

        def insert() -> float:
            conn.execute("BEGIN IMMEDIATE")
            key = new_run()
            fresh = [
                (key, i, f"t{i}", "PENDING", names_json((f"t{i - 1}", f"t{i - 2}")), 0)
                for i in range(tasks)
            ]
            start = time.perf_counter()
            conn.executemany(_INSERT_NEW_TASK, fresh)
            conn.execute("COMMIT")
            return (time.perf_counter() - start) / tasks

        rows.append((f"insert {tasks} new rows, one transaction", _best(repeat, insert)))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        key = run_number  # the runs' row ids are 1, 2, ...: update the last run's rows

        def wide(status: str, i: int) -> tuple[Any, ...]:
            blob = b"null" if status == "SUCCESS" else None
            fmt = "json" if blob else None
            finished = 2.0 if blob else None
            return (status, 1, 1.0, finished, None, None, blob, fmt, None, None, None, None, key, i)

        def plain(status: str, i: int) -> tuple[Any, ...]:
            blob = b"null" if status == "SUCCESS" else None
            fmt = "json" if blob else None
            finished = 2.0 if blob else None
            return (status, 1, 1.0, finished, blob, fmt, None, key, i)

        def started(status: str, i: int) -> tuple[Any, ...]:
            return (status, 1, 1.0, key, i)

        def ended(status: str, i: int) -> tuple[Any, ...]:
            return (status, 1, 1.0, 2.0, bytearray(b"null"), "json", key, i)

        for batch in batches:
            for label, start_sql, start_values, end_sql, end_values in (
                ("full update", _UPDATE_TASK, wide, _UPDATE_TASK, wide),
                ("plain update", _UPDATE_PLAIN_TASK, plain, _UPDATE_PLAIN_TASK, plain),
                ("shaped update", _UPDATE_STARTED, started, _UPDATE_ENDED, ended),
            ):

                def updates(
                    start_sql: str = start_sql,
                    start_values: Any = start_values,
                    end_sql: str = end_sql,
                    end_values: Any = end_values,
                    batch: int = batch,
                ) -> float:
                    start = time.perf_counter()
                    for first in range(0, tasks, batch):
                        ids = range(first, min(first + batch, tasks))
                        conn.execute("BEGIN IMMEDIATE")
                        conn.executemany(start_sql, [start_values("RUNNING", i) for i in ids])
                        conn.executemany(end_sql, [end_values("SUCCESS", i) for i in ids])
                        conn.execute("COMMIT")
                    elapsed = (time.perf_counter() - start) / tasks
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    return elapsed

                rows.append((f"2 x {label}, commits of {batch} tasks", _best(repeat, updates)))

            def append(batch: int = batch) -> float:
                blob = os.urandom(48 * batch)
                start = time.perf_counter()
                for _ in range(0, tasks, batch):
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("INSERT INTO floor_log (data) VALUES (?)", (blob,))
                    conn.execute("COMMIT")
                elapsed = (time.perf_counter() - start) / tasks
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return elapsed

            label = f"transition log: 1 blob per commit of {batch} tasks"
            rows.append((label, _best(repeat, append)))

        def empty() -> float:
            count = 1000
            start = time.perf_counter()
            for _ in range(count):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("COMMIT")
            return (time.perf_counter() - start) / count

        rows.append(("empty BEGIN IMMEDIATE/COMMIT (per transaction)", _best(repeat, empty)))
        conn.close()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--batches", default="5,10,100", help="tasks per transaction")
    parser.add_argument("--repeat", type=int, default=3, help="best of N")
    ns = parser.parse_args(argv)
    batches = [int(b) for b in ns.batches.split(",") if b]
    if ns.tasks < 1 or not batches or min(batches) < 1 or ns.repeat < 1:
        parser.error("--tasks, --batches and --repeat must be positive")
    print(f"python {sys.version.split()[0]}; sqlite {sqlite3.sqlite_version}; best of {ns.repeat}")
    for label, seconds in measure(ns.tasks, batches, ns.repeat):
        print(f"{label:55s} {seconds * 1e6:7.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
