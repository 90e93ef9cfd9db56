#!/usr/bin/env python3
"""Mapped-task benchmark: the cost of one instance of a task mapped over N items against the
cost of one task of a static fan-out of N tasks (a root and N children), the same work.

Both DAGs run no-op tasks through ``engine.run_once`` on one engine per case; the timed region
is the run only (registration excluded). Cases alternate (static, mapped, static, ...) and the
best of ``--repeat`` is kept. The target (benchmarks/README.md): per item, a mapped instance
costs at most 1.3x a static fan-out task at 10k.

Usage:
  python benchmarks/bench_map.py                  # 10k items, async and sync
  python benchmarks/bench_map.py --items 1000 --repeat 3 --kinds async
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from flowrun import SchedulerConfig
from flowrun._engine import Engine

TARGET_RATIO = 1.3


async def noop_async(item: int = 0) -> None:
    return None


def noop_sync(item: int = 0) -> None:
    return None


def static_engine(n: int, kind: str) -> Engine:
    engine = Engine(config=SchedulerConfig(max_parallel=64, max_workers=8))
    scope = engine.dag("bench")
    task: Callable[..., Any] = noop_async if kind == "async" else noop_sync
    scope.task("root")(lambda: None)
    for i in range(n):
        scope.task(f"t{i}", deps=["root"])(task)
    return engine


def mapped_engine(n: int, kind: str) -> Engine:
    engine = Engine(config=SchedulerConfig(max_parallel=64, max_workers=8))
    scope = engine.dag("bench")
    items = list(range(n))
    scope.task("root")(lambda: items)
    task: Callable[..., Any] = noop_async if kind == "async" else noop_sync
    scope.task("each", map={"item": "root"})(task)
    return engine


async def time_run(engine: Engine) -> float:
    gc.collect()
    start = time.perf_counter()
    await engine.run_once("bench")
    elapsed = time.perf_counter() - start
    engine.close()
    return elapsed


def run(items: int, kinds: Sequence[str], repeat: int) -> list[dict[str, Any]]:
    rows = []
    for kind in kinds:
        best_static = best_mapped = float("inf")
        for _ in range(repeat):
            best_static = min(best_static, asyncio.run(time_run(static_engine(items, kind))))
            best_mapped = min(best_mapped, asyncio.run(time_run(mapped_engine(items, kind))))
        static_us = best_static / (items + 1) * 1e6
        mapped_us = best_mapped / (items + 1) * 1e6
        rows.append(
            {
                "kind": kind,
                "items": items,
                "static_us_per_task": static_us,
                "mapped_us_per_item": mapped_us,
                "ratio": mapped_us / static_us,
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kinds", default="async,sync")
    parser.add_argument("--pin-cpu", type=int, default=None, help="run on this CPU only")
    args = parser.parse_args(argv)
    if args.pin_cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.pin_cpu})
    rows = run(args.items, args.kinds.split(","), args.repeat)
    print(f"{'kind':6} {'items':>7} {'static us/task':>15} {'mapped us/item':>15} {'ratio':>6}")
    for row in rows:
        ok = "yes" if row["ratio"] <= TARGET_RATIO else "NO"
        print(
            f"{row['kind']:6} {row['items']:>7} {row['static_us_per_task']:>15.2f} "
            f"{row['mapped_us_per_item']:>15.2f} {row['ratio']:>6.2f}  <= {TARGET_RATIO} {ok}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
