#!/usr/bin/env python3
"""Sync tasks beyond one thread pool: threads vs processes vs Dask distributed.

A layered DAG of CPU-bound sync tasks (pure-Python work of ``--ms`` milliseconds each, which
holds the GIL) runs on three executors with ``--workers`` workers each:

  threads    ``ThreadPoolExecutor(workers)``: the GIL runs one task at a time
  processes  ``ProcessPoolExecutor(workers)`` (spawned workers)
  dask       ``dask_executor(Client(LocalCluster(n_workers=workers, processes=True,
             threads_per_worker=1)))``; cluster start-up is reported apart, not timed

For each backend: the run's wall time, the speed-up over threads, and the per-task overhead:
``(wall time x workers - total task work) / tasks``, i.e. worker time per task spent on
anything but the task (submission, pickling, transport, scheduling, idle waits on the
driver). Threads are GIL-bound: their "overhead" is mostly the other worker waiting.

The DAG: ``--tasks`` tasks in layers of ``--width``; each task after the first layer depends
on 2 tasks of the previous layer. ``max_parallel`` is ``2 x workers`` so that each worker has
the next call queued while it runs one (``--max-parallel`` to change it).

Usage:
  python benchmarks/bench_executors.py                    # 1000 x 20 ms, 2 workers (~1 min)
  python benchmarks/bench_executors.py --tasks 200 --backends processes,dask
Needs ``pip install -e ".[dask]"`` for the dask backend (skipped with a note otherwise).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager

# Workers import the task function from this module by name (not from __main__).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

BACKENDS = ("threads", "processes", "dask")


def work(upstream: Mapping[str, int], loops: int) -> int:
    """Pure-Python CPU work (holds the GIL); the result is a small int."""
    total = sum(upstream.values())
    for i in range(loops):
        total = (total + i * i) % 1_000_003
    return total


def calibrate(ms: float) -> int:
    """Loops of ``work`` that take ``ms`` milliseconds here."""
    loops = 10_000
    while True:
        started = time.perf_counter()
        work({}, loops)
        elapsed = time.perf_counter() - started
        if elapsed > 0.05:
            return max(1, round(loops * ms / 1000 / elapsed))
        loops *= 2


@contextmanager
def backend(name: str, workers: int) -> Iterator[tuple[Executor, float]]:
    """The executor of ``name`` and its start-up time in seconds."""
    started = time.perf_counter()
    if name == "threads":
        with ThreadPoolExecutor(workers) as pool:
            yield pool, 0.0
    elif name == "processes":
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            list(pool.map(abs, range(workers)))  # start the workers before timing
            yield pool, time.perf_counter() - started
    else:
        from distributed import Client, LocalCluster

        from flowrun.executors import dask_executor

        with (
            LocalCluster(
                n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            client.wait_for_workers(workers)
            yield dask_executor(client), time.perf_counter() - started


def run_dag_on(
    executor: Executor, tasks: int, width: int, loops: int, max_parallel: int
) -> tuple[float, str]:
    import asyncio

    # Register the function of the module ``bench_executors``, not of ``__main__``: Dask
    # workers have a __main__ of their own.
    from bench_executors import work as importable_work

    from flowrun import build_default_engine

    engine = build_default_engine(executor=executor, max_parallel=max_parallel)
    template = engine.task_template(importable_work, dag="layered")
    for i in range(tasks):
        layer, slot = divmod(i, width)
        deps = []
        if layer:
            previous = (layer - 1) * width
            deps = [f"t{previous + slot}", f"t{previous + (slot + 1) % width}"]
        template.bind(f"t{i}", loops=loops, deps=deps)
    started = time.perf_counter()
    run_id = asyncio.run(engine.run_once("layered"))
    elapsed = time.perf_counter() - started
    report = engine.get_run_report(run_id)
    if report["status"] != "SUCCESS":
        failed = [(n, t["error"]) for n, t in report["tasks"].items() if t["error"]][:3]
        raise RuntimeError(f"run failed: {failed}")
    return elapsed, report["status"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--width", type=int, default=50, help="tasks per layer")
    parser.add_argument("--ms", type=float, default=20.0, help="work per task")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-parallel", type=int, default=None)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(names) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s) {sorted(unknown)}; choose from {BACKENDS}")
    max_parallel = args.max_parallel or 2 * args.workers
    loops = calibrate(args.ms)
    print(
        f"# {args.tasks} tasks x {args.ms:g} ms of pure-Python work ({loops} loops), layers of "
        f"{args.width}, {args.workers} workers, max_parallel={max_parallel}; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs",
        flush=True,
    )
    ideal = args.tasks * args.ms / 1000 / args.workers
    print(f"# ideal wall time on {args.workers} workers: {ideal:.2f}s", flush=True)
    header = f"{'backend':<10} {'start-up':>9} {'wall':>8} {'vs threads':>10} {'overhead/task':>13}"
    print(header, flush=True)
    threads_time: float | None = None
    for name in names:
        if name == "dask":
            try:
                import distributed  # noqa: F401
            except ImportError:
                print(f"{name:<10} skipped: pip install -e '.[dask]'", flush=True)
                continue
        with backend(name, args.workers) as (executor, startup):
            elapsed, _ = run_dag_on(executor, args.tasks, args.width, loops, max_parallel)
        if name == "threads":
            threads_time = elapsed
        speedup = "-" if threads_time is None else f"{threads_time / elapsed:.2f}x"
        work_total = args.tasks * args.ms / 1000
        overhead_ms = (elapsed * args.workers - work_total) / args.tasks * 1000
        print(
            f"{name:<10} {startup:>8.2f}s {elapsed:>7.2f}s {speedup:>10} {overhead_ms:>10.2f} ms",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
