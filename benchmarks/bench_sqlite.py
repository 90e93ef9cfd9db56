#!/usr/bin/env python3
"""SQLite state-store benchmark for flowrun: what durability costs against the in-memory store.

Every case runs one DAG of no-op tasks through two engines in the same process that differ
only in their state store: ``InMemoryStateStore`` and ``SqliteStateStore`` on a fresh
database file. The ratio sqlite/memory is the cost of durability. It also reports how many
write transactions the SQLite store committed per run: its writer thread commits everything
reported since its last commit in one transaction (a group commit), so this is far below one
per task, and below one per scheduler wake-up.

Cases (``--shape``, ``--kind``, ``--tasks``; by default all of them, 1k and 10k tasks):

- ``layered``: layers of width ~sqrt(n); each task outside the first layer has 1..3 distinct
  random parents drawn from all earlier layers (seeded RNG), as ``bench_scheduler.py``.
- ``chain``: t0 -> t1 -> ... -> t(n-1). A task starts only once its parent's success is
  committed (the durability rule), so a chain costs one commit per link.
- ``fanout``: one root, n-1 leaves that depend on it.
- ``async`` tasks (``async def``, on the loop) or ``sync`` ones (``def``, on the thread pool).

``--big N`` adds a run of N independent sync tasks each returning a ``--big-mb`` MB string
(default 1000 x 1 MB), and reports its time and the file size.

``free commit``: the same run on ``FreeCommitStore``, an in-memory store whose group commits
cost nothing and end at once (``flush_later`` calls back before it returns). The scheduler
treats it as a durable store: it holds each success until the commit after it, as it does
for SQLite. So ``free commit``/``memory`` is what the durability rule costs the scheduler
alone, a floor under any durable store; ``sqlite``/``free commit`` is what the SQLite store
adds to it (its bookkeeping and its statements).

Commit latency (``commit p50/p99``): for each group commit the scheduler asks for, the time
from its request (``flush_later``) to the callback that makes the batch durable (a consumer of
a success can start only then), over every SQLite run of the case.

Timed region: ``await engine.run_once(dag)`` only; engine and store construction, task
registration and the report check are outside it. The database file is new for every
measurement (in a temporary directory, removed afterwards). Each store runs ``--repeat``
times, taking turns, and the best time is kept.

Targets (issue 13): async layered 10k <= 1.5x, sync layered 10k <= 1.2x.

Usage:
  python benchmarks/bench_sqlite.py                          # the whole matrix, best of 3
  python benchmarks/bench_sqlite.py --shape layered --kind async --tasks 10000
  python benchmarks/bench_sqlite.py --big 1000 --json out.json
  python benchmarks/bench_sqlite.py --start-delay 0.002   # SqliteStateStore(start_delay_s=...)
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
TARGETS = {("layered", "async", 10_000): 1.5, ("layered", "sync", 10_000): 1.2}
SHAPES = ("layered", "chain", "fanout")
STORE_OPTIONS: dict[str, Any] = {}  # --start-delay
KINDS = ("async", "sync")

Graph = dict[str, tuple[str, ...]]


async def noop() -> None:
    return None


def noop_sync() -> None:
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


def make_graph(shape: str, n: int, seed: int) -> Graph:
    if shape == "layered":
        return make_layered(n, seed=seed)
    if shape == "chain":
        return {f"t{i}": (f"t{i - 1}",) if i else () for i in range(n)}
    return {"t0": (), **{f"t{i}": ("t0",) for i in range(1, n)}}


class TimedStore(flowrun.SqliteStateStore):
    """The SQLite store, keeping each group commit's latency (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latencies: list[float] = []

    def flush_later(self, callback: Any) -> bool:
        asked = time.perf_counter()
        latencies = self.latencies

        def durable(error: Any, failures: Any) -> None:
            latencies.append(time.perf_counter() - asked)
            callback(error, failures)

        return super().flush_later(durable)


class FreeCommitStore(flowrun.InMemoryStateStore):
    """A durable store whose commits cost nothing (see the module docstring): what
    ``flush_later`` commits is whatever was reported since the last call, at once."""

    def __init__(self) -> None:
        super().__init__()
        self.reported = False  # something to commit: flush_later is False without it

    def flush_later(self, callback: Any) -> bool:
        if not self.reported:
            return False
        self.reported = False
        callback(None, [])
        return True


def _reporting(name: str) -> Any:
    base = getattr(flowrun.InMemoryStateStore, name)

    def report(self: FreeCommitStore, *args: Any, **kwargs: Any) -> Any:
        self.reported = True
        return base(self, *args, **kwargs)

    return report


for _name in (
    "create_run",
    "add_tasks",
    "add_warning",
    "mark_running",
    "mark_success",
    "mark_cached",
    "mark_failed",
    "mark_retry",
    "mark_skipped",
    "mark_omitted",
    "finish_run",
):
    setattr(FreeCommitStore, _name, _reporting(_name))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


async def time_run(
    graph: Graph, store: Any, max_parallel: int, function: Any = noop
) -> tuple[float, int]:
    """Seconds for one ``run_once`` and the write transactions the store committed in it."""
    engine = flowrun.build_default_engine(max_parallel=max_parallel, state_store=store)
    try:
        for name, deps in graph.items():
            engine.task(name=name, dag=DAG_NAME, deps=list(deps))(function)
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


async def measure(
    graph: Graph, repeat: int, max_parallel: int, function: Any = noop
) -> dict[str, Any]:
    memory_times: list[float] = []
    free_times: list[float] = []
    sqlite_times: list[float] = []
    transactions: list[int] = []
    file_sizes: list[int] = []
    latencies: list[float] = []
    for _ in range(repeat):
        elapsed, _ = await time_run(graph, flowrun.InMemoryStateStore(), max_parallel, function)
        memory_times.append(elapsed)
        elapsed, _ = await time_run(graph, FreeCommitStore(), max_parallel, function)
        free_times.append(elapsed)
        with tempfile.TemporaryDirectory(prefix="flowrun-bench-") as tmp:
            path = os.path.join(tmp, "state.db")
            with TimedStore(path, **STORE_OPTIONS) as store:
                elapsed, count = await time_run(graph, store, max_parallel, function)
                latencies.extend(store.latencies)
            sqlite_times.append(elapsed)
            transactions.append(count)
            file_sizes.append(sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)))
    return {
        "memory_s": min(memory_times),
        "free_commit_s": min(free_times),
        "sqlite_s": min(sqlite_times),
        "memory_runs_s": memory_times,
        "free_commit_runs_s": free_times,
        "sqlite_runs_s": sqlite_times,
        "ratio": min(sqlite_times) / min(memory_times),
        "free_commit_ratio": min(free_times) / min(memory_times),
        "transactions_per_run": transactions,
        "database_bytes": max(file_sizes),
        "commit_latency_s": {
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies, default=0.0),
        },
    }


def latency(result: dict[str, Any]) -> str:
    commit = result["commit_latency_s"]
    return f"{commit['p50'] * 1e3:.2f}/{commit['p99'] * 1e3:.2f} ms"


def free(result: dict[str, Any]) -> str:
    return f"{result['free_commit_s']:.3f}s {result['free_commit_ratio']:.2f}x"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", choices=SHAPES, action="append", help="default: all")
    p.add_argument("--kind", choices=KINDS, action="append", help="default: both")
    p.add_argument("--tasks", type=int, action="append", help="default: 1000 and 10000")
    p.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    p.add_argument("--max-parallel", type=int, default=8, help="engine max_parallel (default 8)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed of the layered shape")
    p.add_argument("--big", type=int, default=0, metavar="N", help="add N tasks returning MBs")
    p.add_argument("--big-mb", type=float, default=1.0, help="each big result's size (1 MB)")
    p.add_argument(
        "--start-delay", type=float, default=0.0, help="SqliteStateStore's start_delay_s"
    )
    p.add_argument("--json", metavar="PATH", default=None, help="also write results as JSON")
    ns = p.parse_args(argv)
    sizes = ns.tasks or [1000, 10_000]
    if ns.start_delay:
        STORE_OPTIONS["start_delay_s"] = ns.start_delay
    if min(sizes) < 1 or ns.repeat < 1 or ns.max_parallel < 1 or ns.big < 0:
        p.error("--tasks, --repeat and --max-parallel must be >= 1, --big >= 0")
    print(
        f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; sqlite {sqlite3.sqlite_version}; no-op tasks; "
        f"max_parallel={ns.max_parallel}; best of {ns.repeat}"
    )
    asyncio.run(measure(make_layered(200, seed=ns.seed), 1, ns.max_parallel))  # warm-up
    header = (
        f"{'case':<22}{'memory':>9}{'free commit':>18}{'sqlite':>9}{'ratio':>8}{'transactions':>14}"
        f"{'commit p50/p99':>18}{'target':>11}"
    )
    print(header)
    results: list[dict[str, Any]] = []
    missed = 0
    for shape in ns.shape or SHAPES:
        for kind in ns.kind or KINDS:
            for n in sizes:
                graph = make_graph(shape, n, ns.seed)
                function = noop if kind == "async" else noop_sync
                result = asyncio.run(measure(graph, ns.repeat, ns.max_parallel, function))
                target = TARGETS.get((shape, kind, n))
                ok = target is None or result["ratio"] <= target
                missed += not ok
                verdict = "-" if target is None else f"{target}x {'ok' if ok else 'MISS'}"
                tx = result["transactions_per_run"]
                label = f"{shape} {kind} {n}"
                print(
                    f"{label:<22}{result['memory_s']:>8.3f}s{free(result):>18}"
                    f"{result['sqlite_s']:>8.3f}s{result['ratio']:>7.2f}x{min(tx):>14}"
                    f"{latency(result):>18}{verdict:>11}"
                )
                results.append({"shape": shape, "kind": kind, "tasks": n, **result})
    if ns.big:
        blob = "x" * int(ns.big_mb * 1_000_000)

        def big() -> str:
            return blob

        graph = {f"t{i}": () for i in range(ns.big)}
        result = asyncio.run(measure(graph, 1, ns.max_parallel, big))
        size_mb = result["database_bytes"] / 1e6
        label = f"{ns.big} x {ns.big_mb:g} MB sync"
        print(
            f"{label:<22}{result['memory_s']:>8.3f}s{free(result):>18}"
            f"{result['sqlite_s']:>8.3f}s{result['ratio']:>7.2f}x"
            f"{min(result['transactions_per_run']):>14}"
            f"{latency(result):>18}{'-':>11}   (database file {size_mb:.0f} MB)"
        )
        results.append({"shape": "big", "kind": "sync", "tasks": ns.big, **result})
    if ns.json:
        with open(ns.json, "w", encoding="utf-8") as fh:
            json.dump({"max_parallel": ns.max_parallel, "cases": results}, fh, indent=2)
        print(f"wrote {ns.json}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
