#!/usr/bin/env python3
"""SQLite state-store benchmark for flowrun.

Runs one layered DAG of no-op async tasks (10k by default) through two engines in the same
process that differ only in their state store: ``InMemoryStateStore`` and
``SqliteStateStore`` on a fresh database file. The ratio sqlite/memory is the cost of
durability; the target is at most 3x. It also reports how many write transactions the SQLite
store committed per run: the scheduler flushes once per wake-up, and the store writes each
flush as one transaction, so this is about (tasks / tasks finished per wake-up) + 2, never one
per task.

Shape: layers of width ~sqrt(n) (``--layer-width`` to fix it); each task outside the first
layer has 1..3 distinct random parents drawn from all earlier layers (seeded RNG), the same
shape as ``bench_scheduler.py``'s ``layered``.

Timed region: ``await engine.run_once(dag)`` only; engine and store construction, task
registration and the report check are outside it. The database file is new for every
measurement (in a temporary directory, removed afterwards), so each run starts from the same
state. Each store runs ``--repeat`` times, taking turns, and the best time is kept.

Usage:
  python benchmarks/bench_sqlite.py                 # 10k tasks, best of 3
  python benchmarks/bench_sqlite.py --tasks 1000 --repeat 5 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import flowrun

DAG_NAME = "bench"
TARGET_RATIO = 3.0

Graph = dict[str, tuple[str, ...]]


async def noop() -> None:
    return None


def make_layered(n: int, *, seed: int, layer_width: int = 0) -> Graph:
    width = layer_width if layer_width > 0 else max(1, round(math.sqrt(n)))
    rng = random.Random(seed)
    graph: Graph = {}
    for i in range(n):
        layer_start = (i // width) * width  # tasks [0, layer_start) are in earlier layers
        if layer_start == 0:
            graph[f"t{i}"] = ()
        else:
            k = min(rng.randint(1, 3), layer_start)
            graph[f"t{i}"] = tuple(f"t{p}" for p in sorted(rng.sample(range(layer_start), k)))
    return graph


async def time_run(graph: Graph, store: Any, max_parallel: int) -> tuple[float, int]:
    """Seconds for one ``run_once`` and the write transactions the store committed in it."""
    engine = flowrun.build_default_engine(max_parallel=max_parallel, state_store=store)
    try:
        for name, deps in graph.items():
            engine.task(name=name, dag=DAG_NAME, deps=list(deps))(noop)
        before = getattr(store, "transactions", 0)
        gc.collect()
        t0 = time.perf_counter()
        run_id = await engine.run_once(DAG_NAME)
        elapsed = time.perf_counter() - t0
        transactions = getattr(store, "transactions", 0) - before
        report = engine.get_run_report(run_id)
        if report["status"] != "SUCCESS" or len(report["tasks"]) != len(graph):
            raise RuntimeError(f"run {run_id} of {type(store).__name__}: {report['status']}")
        return elapsed, transactions
    finally:
        engine.close()


async def measure(graph: Graph, repeat: int, max_parallel: int) -> dict[str, Any]:
    memory_times: list[float] = []
    sqlite_times: list[float] = []
    transactions: list[int] = []
    file_sizes: list[int] = []
    for _ in range(repeat):
        elapsed, _ = await time_run(graph, flowrun.InMemoryStateStore(), max_parallel)
        memory_times.append(elapsed)
        with tempfile.TemporaryDirectory(prefix="flowrun-bench-") as tmp:
            path = os.path.join(tmp, "state.db")
            with flowrun.SqliteStateStore(path) as store:
                elapsed, count = await time_run(graph, store, max_parallel)
            sqlite_times.append(elapsed)
            transactions.append(count)
            file_sizes.append(sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)))
    return {
        "memory_s": min(memory_times),
        "sqlite_s": min(sqlite_times),
        "memory_runs_s": memory_times,
        "sqlite_runs_s": sqlite_times,
        "ratio": min(sqlite_times) / min(memory_times),
        "transactions_per_run": transactions,
        "database_bytes": max(file_sizes),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=10_000, help="number of tasks (default 10000)")
    p.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    p.add_argument("--max-parallel", type=int, default=8, help="engine max_parallel (default 8)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed of the DAG shape (default 0)")
    p.add_argument("--layer-width", type=int, default=0, help="default round(sqrt(n))")
    p.add_argument("--json", metavar="PATH", default=None, help="also write results as JSON")
    ns = p.parse_args(argv)
    if ns.tasks < 1 or ns.repeat < 1 or ns.max_parallel < 1:
        p.error("--tasks, --repeat and --max-parallel must be >= 1")

    graph = make_layered(ns.tasks, seed=ns.seed, layer_width=ns.layer_width)
    edges = sum(len(d) for d in graph.values())
    print(
        f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; sqlite {sqlite3.sqlite_version}; "
        f"layered DAG: {ns.tasks} async no-op tasks, {edges} edges; "
        f"max_parallel={ns.max_parallel}; best of {ns.repeat}"
    )
    asyncio.run(measure(make_layered(200, seed=ns.seed), 1, ns.max_parallel))  # warm-up
    result = asyncio.run(measure(graph, ns.repeat, ns.max_parallel))
    n = ns.tasks
    tx = result["transactions_per_run"]
    print(f"{'store':<20}{'best':>10}{'per task':>12}{'transactions/run':>20}")
    for label, best, count in (
        ("InMemoryStateStore", result["memory_s"], "-"),
        ("SqliteStateStore", result["sqlite_s"], str(min(tx))),
    ):
        print(f"{label:<20}{best:>9.3f}s{best / n * 1e6:>9.1f} µs{count:>20}")
    verdict = "OK" if result["ratio"] <= TARGET_RATIO else "ABOVE TARGET"
    print(f"ratio sqlite/memory: {result['ratio']:.2f}x (target <= {TARGET_RATIO:.0f}x: {verdict})")
    size_mb = result["database_bytes"] / 1e6
    print(
        f"transactions per run: {min(tx)}-{max(tx)} for {n} tasks "
        f"({n / min(tx):.1f} tasks per transaction); database file {size_mb:.1f} MB"
    )
    if ns.json:
        payload = {"tasks": n, "edges": edges, "max_parallel": ns.max_parallel, **result}
        with open(ns.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
        print(f"wrote {ns.json}")
    return 0 if result["ratio"] <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
