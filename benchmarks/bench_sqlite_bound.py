#!/usr/bin/env python3
"""How fast a durable run could be: the bound under any SQLite store this scheduler can have.

``bench_sqlite.py`` compares ``SqliteStateStore`` with the in-memory store. This script puts
two stores between them, to tell what the durability rule costs from what this store costs:

- ``free commit`` (``bench_sqlite.FreeCommitStore``): an in-memory store whose group commits
  cost nothing. The scheduler treats it as durable (each success waits for the commit after
  it), so its ratio to ``memory`` is the scheduler's own cost of the rule.
- ``journal bound`` (``JournalBound`` below): the leanest durable store there could be on
  SQLite. Its reads come from the in-memory store's records; each transition a run of no-op
  tasks makes (the run's start and end, each task's start and success: the only ones it logs)
  is appended as a tuple to a list, and each group commit ``INSERT``s that list, ``marshal``ed,
  as one row of an append-only table (WAL, ``synchronous=NORMAL``, on the event loop while a
  thread of its own checkpoints every 200 commits, as ``SqliteStateStore`` does). Results are
  encoded with the store's default serializer. It keeps no task rows, so a crash leaves nothing
  that recovery, ``resume`` or another process could read, and ``marshal`` is no format to keep
  across Python versions: it is a floor, not a design. A real store that keeps readable rows
  can only cost more.

Each round runs the four stores in turn on the same DAG of no-op tasks (``max_parallel=8``);
the best of ``--rounds`` is kept. Timed region: ``await engine.run_once(dag)``, as in
``bench_sqlite.py``. This VM's timings swing by tens of percent from run to run: pin the
process (``taskset -c 1``) and take several rounds.

Usage:
  taskset -c 1 python benchmarks/bench_sqlite_bound.py                 # layered async+sync
  python benchmarks/bench_sqlite_bound.py --shape chain --kind async --tasks 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import marshal
import os
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

from bench_sqlite import KINDS, SHAPES, FreeCommitStore, make_graph, noop, noop_sync, time_run

import flowrun
from flowrun.state.records import RunRecord
from flowrun.state.serializers import JsonSerializer

_CHECKPOINT_EVERY = 200  # commits between two checkpoints, as SqliteStateStore


class JournalBound(flowrun.InMemoryStateStore):
    """See the module docstring: the in-memory store plus one appended blob per commit."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._conn = _connect(path)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY, data BLOB NOT NULL)"
        )
        self._cursor = self._conn.cursor()
        self._encode = JsonSerializer().serialize
        self._log: list[tuple[Any, ...]] = []
        self._commits = 0
        self._checkpoints = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._checkpoint, args=(path,), daemon=True)
        self._thread.start()

    def create_run(self, run: RunRecord) -> None:
        super().create_run(run)
        tasks = [(name, rec.deps) for name, rec in run.tasks.items()]
        self._log.append(("run", run.run_id, run.dag_name, run.created_at, tasks))

    def mark_running(
        self, run_id: str, task: str, attempt: int, started_at: float, queued_s: float = 0.0
    ) -> None:
        super().mark_running(run_id, task, attempt, started_at, queued_s)
        self._log.append((1, task, attempt, started_at, queued_s))

    def mark_success(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        result: Any,
        keep_result: bool,
    ) -> None:
        super().mark_success(run_id, task, started_at, finished_at, result, keep_result)
        blob = self._encode(result) if keep_result else None
        self._log.append((2, task, started_at, finished_at, blob))

    def finish_run(self, run_id: str, status: str, finished_at: float) -> None:
        super().finish_run(run_id, status, finished_at)
        self._log.append((3, run_id, status, finished_at))

    def flush_later(self, callback: Callable[[BaseException | None, list[Any]], None]) -> bool:
        log = self._log
        if not log:
            return False
        self._log = []
        cursor = self._cursor
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute("INSERT INTO journal (data) VALUES (?)", (marshal.dumps(log),))
        cursor.execute("COMMIT")
        self._commits += 1
        if self._commits % _CHECKPOINT_EVERY == 0:
            self._checkpoints.set()
        callback(None, [])
        return True

    def close(self) -> None:
        self._closing = True
        self._checkpoints.set()
        self._thread.join()
        self._conn.close()

    def _checkpoint(self, path: str) -> None:
        conn = _connect(path)
        while True:
            self._checkpoints.wait()
            self._checkpoints.clear()
            if self._closing:
                conn.close()
                return
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


STORES: dict[str, Callable[[str], Any]] = {
    "memory": lambda tmp: flowrun.InMemoryStateStore(),
    "free commit": lambda tmp: FreeCommitStore(),
    "journal bound": lambda tmp: JournalBound(os.path.join(tmp, "journal.db")),
    "sqlite": lambda tmp: flowrun.SqliteStateStore(os.path.join(tmp, "state.db")),
}


async def measure(
    graph: dict[str, tuple[str, ...]], rounds: int, function: Any
) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(rounds):
        for label, make in STORES.items():
            with tempfile.TemporaryDirectory(prefix="flowrun-bound-") as tmp:
                store = make(tmp)
                try:
                    elapsed, _ = await time_run(graph, store, 8, function)
                finally:
                    if hasattr(store, "close"):
                        store.close()
            best[label] = min(best.get(label, elapsed), elapsed)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=SHAPES, action="append", help="default: layered")
    parser.add_argument("--kind", choices=KINDS, action="append", help="default: both")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="best of N (default 5)")
    ns = parser.parse_args(argv)
    if ns.tasks < 1 or ns.rounds < 1:
        parser.error("--tasks and --rounds must be >= 1")
    print(f"python {sys.version.split()[0]}; sqlite {sqlite3.sqlite_version}; best of {ns.rounds}")
    print(f"{'case':<22}" + "".join(f"{label:>20}" for label in STORES))
    for shape in ns.shape or ["layered"]:
        for kind in ns.kind or list(KINDS):
            function = noop if kind == "async" else noop_sync
            best = asyncio.run(measure(make_graph(shape, ns.tasks, 0), ns.rounds, function))
            memory = best["memory"]
            cells = "".join(f"{f'{s:.3f}s {s / memory:.2f}x':>20}" for s in best.values())
            print(f"{shape + ' ' + kind + ' ' + str(ns.tasks):<22}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
