#!/usr/bin/env python3
"""Scheduler-overhead benchmark for flowrun.

Runs DAGs of no-op tasks through ``flowrun`` and, in the same process and with the
same ``max_parallel`` / ``max_workers``, through a minimal hand-written baseline built on
``graphlib.TopologicalSorter`` + asyncio. The ratio flowrun/baseline is the scheduler
overhead we care about.

Shapes:
  chain    t_i depends on t_{i-1}
  fanout   t_0 is the root, every other task depends on it
  layered  layers of width ~sqrt(n) (``--layer-width`` to fix it); each task outside the
           first layer has 1..3 distinct random parents drawn uniformly from all tasks of
           the previous layers (seeded RNG, ``--seed``)

Kinds:
  async    ``async def noop()``; baseline launches each ready node with ``create_task``
  sync     ``def noop_sync()``; baseline uses ``loop.run_in_executor`` on a
           ``ThreadPoolExecutor(max_workers)``

Timed region: flowrun -> ``await engine.run_once(dag)`` only (engine construction and
task registration are excluded). Baseline -> building + preparing the
``TopologicalSorter`` from the prebuilt dependency dict and running it to completion (the
work ``run_once`` has to do per run). Each case is repeated ``--repeat`` times, alternating
flowrun and baseline, and the best time of each is kept.

Usage:
  python benchmarks/bench_scheduler.py --quick
  python benchmarks/bench_scheduler.py                 # 1k, 10k, 100k (~3 min on 2 cores)
  python benchmarks/bench_scheduler.py --baseline-only --quick
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
import os
import platform
import random
import sys
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from graphlib import TopologicalSorter
from typing import Any

Graph = dict[str, tuple[str, ...]]
"""Task name -> names of the tasks it depends on, in topological (insertion) order."""

DAG_NAME = "bench"
SHAPES: tuple[str, ...] = ("chain", "fanout", "layered")
KINDS: tuple[str, ...] = ("async", "sync")
DEFAULT_SIZES: tuple[int, ...] = (1_000, 10_000, 100_000)
QUICK_SIZES: tuple[int, ...] = (1_000, 10_000)

# Targets printed beside the results.
ASYNC_LAYERED_TARGET_N = 10_000
ASYNC_LAYERED_TARGET_RATIO = 2.0
SYNC_TARGET_RATIO = 1.3
SCALING_SLACK = 1.2  # allowed cost growth = size ratio * slack (100k/10k -> at most 12x)


# --------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------


async def noop() -> None:
    """Async no-op task (no parameters, so flowrun injects nothing)."""
    return None


def noop_sync() -> None:
    """Sync no-op task (no parameters, so flowrun injects nothing)."""
    return None


# --------------------------------------------------------------------------------------
# DAG shapes
# --------------------------------------------------------------------------------------


def _name(i: int) -> str:
    return f"t{i}"


def make_chain(n: int) -> Graph:
    graph: Graph = {_name(0): ()}
    for i in range(1, n):
        graph[_name(i)] = (_name(i - 1),)
    return graph


def make_fanout(n: int) -> Graph:
    root = _name(0)
    graph: Graph = {root: ()}
    dep = (root,)
    for i in range(1, n):
        graph[_name(i)] = dep
    return graph


def layer_width_for(n: int, layer_width: int) -> int:
    if layer_width > 0:
        return layer_width
    return max(1, round(math.sqrt(n)))


def make_layered(n: int, *, seed: int, layer_width: int = 0) -> Graph:
    width = layer_width_for(n, layer_width)
    rng = random.Random(seed)
    graph: Graph = {}
    for i in range(n):
        layer_start = (i // width) * width  # tasks [0, layer_start) are in previous layers
        if layer_start == 0:
            graph[_name(i)] = ()
        else:
            k = min(rng.randint(1, 3), layer_start)
            parents = sorted(rng.sample(range(layer_start), k))
            graph[_name(i)] = tuple(_name(p) for p in parents)
    return graph


def make_graph(shape: str, n: int, *, seed: int, layer_width: int) -> Graph:
    if shape == "chain":
        return make_chain(n)
    if shape == "fanout":
        return make_fanout(n)
    if shape == "layered":
        return make_layered(n, seed=seed, layer_width=layer_width)
    raise ValueError(f"unknown shape {shape!r}")


def edge_count(graph: Graph) -> int:
    return sum(len(deps) for deps in graph.values())


# --------------------------------------------------------------------------------------
# Baseline: graphlib.TopologicalSorter + asyncio, bounded by max_parallel
# --------------------------------------------------------------------------------------


async def run_baseline(
    graph: Graph,
    start: Callable[[], Awaitable[None]],
    max_parallel: int,
) -> int:
    """Run ``graph`` to completion, ``start()`` being the per-node work. Returns #nodes run.

    ``start`` must return an asyncio future/task (``create_task`` or ``run_in_executor``).
    Completion is reported by a done-callback that appends the node to a list and resolves
    a single waiter future, so each wake of the driver costs O(nodes that finished), not
    O(nodes in flight).
    """
    loop = asyncio.get_running_loop()
    sorter: TopologicalSorter[str] = TopologicalSorter(graph)
    sorter.prepare()
    ready: deque[str] = deque(sorter.get_ready())
    finished: list[str] = []
    errors: list[BaseException] = []
    waiter: asyncio.Future[None] | None = None
    inflight = 0
    completed = 0

    def on_done(node: str, fut: asyncio.Future[None]) -> None:
        nonlocal waiter
        if fut.cancelled():
            errors.append(asyncio.CancelledError(node))
        else:
            exc = fut.exception()
            if exc is not None:
                errors.append(exc)
        finished.append(node)
        if waiter is not None:
            waiter.set_result(None)
            waiter = None

    while True:
        while ready and inflight < max_parallel:
            node = ready.popleft()
            fut = asyncio.ensure_future(start())
            fut.add_done_callback(partial(on_done, node))
            inflight += 1
        if inflight == 0:
            break
        if not finished:
            waiter = loop.create_future()
            await waiter
        if errors:
            raise errors[0]
        sorter.done(*finished)
        inflight -= len(finished)
        completed += len(finished)
        finished.clear()
        ready.extend(sorter.get_ready())

    if sorter.is_active() or completed != len(graph):
        raise RuntimeError(f"baseline finished {completed}/{len(graph)} nodes")
    return completed


async def time_baseline(graph: Graph, kind: str, max_parallel: int, max_workers: int) -> float:
    loop = asyncio.get_running_loop()
    pool: ThreadPoolExecutor | None = None
    start: Callable[[], Awaitable[None]]
    if kind == "async":

        def start() -> Awaitable[None]:
            return loop.create_task(noop())
    else:
        pool = ThreadPoolExecutor(max_workers=max_workers)
        executor: Executor = pool

        def start() -> Awaitable[None]:
            return loop.run_in_executor(executor, noop_sync)

    try:
        gc.collect()
        t0 = time.perf_counter()
        await run_baseline(graph, start, max_parallel)
        return time.perf_counter() - t0
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


# --------------------------------------------------------------------------------------
# flowrun
# --------------------------------------------------------------------------------------


class FlowrunRunFailed(RuntimeError):
    pass


async def time_flowrun(graph: Graph, kind: str, max_parallel: int, max_workers: int) -> float:
    import flowrun  # imported lazily so --baseline-only works without it

    engine: Any = flowrun.build_default_engine(max_workers=max_workers, max_parallel=max_parallel)
    try:
        func: Callable[[], Any] = noop if kind == "async" else noop_sync
        for name, deps in graph.items():  # topological order: deps are registered first
            engine.task(name=name, dag=DAG_NAME, deps=list(deps))(func)
        gc.collect()
        t0 = time.perf_counter()
        run_id = await engine.run_once(DAG_NAME)
        elapsed = time.perf_counter() - t0
        report = engine.get_run_report(run_id)
        status = report["status"] if isinstance(report, dict) else getattr(report, "status", None)
        if status != "SUCCESS":
            raise FlowrunRunFailed(f"run {run_id!r} status={status!r}; report={report!r:.2000}")
        return elapsed
    finally:
        engine.close()


# --------------------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------------------


@dataclass
class CaseResult:
    shape: str
    n: int
    kind: str
    edges: int
    baseline_runs_s: list[float] = field(default_factory=list)
    flowrun_runs_s: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def baseline_s(self) -> float | None:
        return min(self.baseline_runs_s) if self.baseline_runs_s else None

    @property
    def flowrun_s(self) -> float | None:
        return min(self.flowrun_runs_s) if self.flowrun_runs_s else None

    @property
    def baseline_us_per_task(self) -> float | None:
        b = self.baseline_s
        return None if b is None else b / self.n * 1e6

    @property
    def flowrun_us_per_task(self) -> float | None:
        f = self.flowrun_s
        return None if f is None else f / self.n * 1e6

    @property
    def ratio(self) -> float | None:
        b, f = self.baseline_s, self.flowrun_s
        return None if b is None or f is None or b == 0 else f / b

    def target(self) -> float | None:
        if self.kind == "sync":
            return SYNC_TARGET_RATIO
        if self.kind == "async" and self.shape == "layered" and self.n == ASYNC_LAYERED_TARGET_N:
            return ASYNC_LAYERED_TARGET_RATIO
        return None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            baseline_best_s=self.baseline_s,
            flowrun_best_s=self.flowrun_s,
            baseline_us_per_task=self.baseline_us_per_task,
            flowrun_us_per_task=self.flowrun_us_per_task,
            ratio=self.ratio,
            target_ratio=self.target(),
        )
        return d


@dataclass
class Config:
    shapes: list[str]
    sizes: list[int]
    kinds: list[str]
    repeat: int
    max_parallel: int
    max_workers: int
    seed: int
    layer_width: int
    baseline_only: bool
    json_path: str | None = None
    pin_cpu: int | None = None
    timeout: float = 600.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def flowrun_with_timeout(cfg: Config, graph: Graph, kind: str) -> float:
    coro = time_flowrun(graph, kind, cfg.max_parallel, cfg.max_workers)
    return await asyncio.wait_for(coro, cfg.timeout)  # timing is taken inside, unaffected


def run_case(cfg: Config, shape: str, n: int, kind: str) -> CaseResult:
    graph = make_graph(shape, n, seed=cfg.seed, layer_width=cfg.layer_width)
    res = CaseResult(shape=shape, n=n, kind=kind, edges=edge_count(graph))
    for rep in range(cfg.repeat):
        b = asyncio.run(time_baseline(graph, kind, cfg.max_parallel, cfg.max_workers))
        res.baseline_runs_s.append(b)
        msg = f"  [{shape:7s} n={n:>6d} {kind:5s} rep {rep + 1}/{cfg.repeat}] baseline {b:8.3f}s"
        if not cfg.baseline_only and res.error is None:
            try:
                f = asyncio.run(flowrun_with_timeout(cfg, graph, kind))
                res.flowrun_runs_s.append(f)
                msg += f"  flowrun {f:8.3f}s"
            except Exception:
                res.error = traceback.format_exc()
                msg += "  flowrun ERROR"
                log(msg)
                log(res.error)
                continue
        log(msg)
    return res


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(results: Sequence[CaseResult], cfg: Config) -> None:
    header = (
        f"{'shape':8s} {'n':>7s} {'kind':5s} {'edges':>7s} {'flowrun us/task':>16s} "
        f"{'baseline us/task':>17s} {'ratio':>7s} {'target':>8s}  ok"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        tgt = r.target()
        ratio = r.ratio
        if r.error is not None:
            ok = "ERROR"
        elif tgt is None or ratio is None:
            ok = ""
        else:
            ok = "yes" if ratio <= tgt else "NO"
        print(
            f"{r.shape:8s} {r.n:>7d} {r.kind:5s} {r.edges:>7d} "
            f"{_fmt(r.flowrun_us_per_task, '.2f'):>16s} {_fmt(r.baseline_us_per_task, '.2f'):>17s} "
            f"{_fmt(ratio, '.2f'):>7s} {('<= ' + format(tgt, '.1f')) if tgt else '':>8s}  {ok}"
        )


def scaling_rows(results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    """Total-cost growth between consecutive sizes of the same shape/kind."""
    by_key: dict[tuple[str, str], dict[int, CaseResult]] = {}
    for r in results:
        by_key.setdefault((r.shape, r.kind), {})[r.n] = r
    rows: list[dict[str, Any]] = []
    for (shape, kind), by_n in by_key.items():
        ns = sorted(by_n)
        for small, big in itertools.pairwise(ns):
            rs, rb = by_n[small], by_n[big]
            f_s, f_b = rs.flowrun_s, rb.flowrun_s
            b_s, b_b = rs.baseline_s, rb.baseline_s
            rows.append(
                {
                    "shape": shape,
                    "kind": kind,
                    "small_n": small,
                    "big_n": big,
                    "flowrun_cost_ratio": f_b / f_s if f_s and f_b else None,
                    "baseline_cost_ratio": b_b / b_s if b_s and b_b else None,
                    "limit": big / small * SCALING_SLACK,
                }
            )
    for row in rows:
        fr, br = row["flowrun_cost_ratio"], row["baseline_cost_ratio"]
        row["flowrun_vs_baseline_growth"] = fr / br if fr and br else None
    return rows


def warm_up(cfg: Config) -> None:
    """Untimed small runs so thread pools, imports and allocators are warm before case 1."""
    graph = make_fanout(500)
    for kind in cfg.kinds:
        asyncio.run(time_baseline(graph, kind, cfg.max_parallel, cfg.max_workers))
        if not cfg.baseline_only:
            try:
                asyncio.run(flowrun_with_timeout(cfg, graph, kind))
            except Exception as exc:  # the real cases report the full traceback
                log(f"warm-up: flowrun {kind} run failed: {exc!r}")


def print_scaling(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        print("\nscaling check: needs at least two sizes")
        return
    print(
        "\nscaling check (total-time ratio between sizes; linear = size ratio, "
        f"limit = size ratio x {SCALING_SLACK}, i.e. 100k/10k <= 12x; fr/base = flowrun "
        "growth / baseline growth, since graphlib itself grows superlinearly at 100k):"
    )
    header = (
        f"{'shape':8s} {'kind':5s} {'sizes':>14s} {'flowrun':>8s} {'baseline':>9s} "
        f"{'fr/base':>8s} {'limit':>7s}  ok"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        fr = row["flowrun_cost_ratio"]
        ok = "" if fr is None else ("yes" if fr <= row["limit"] else "NO")
        label = f"{row['big_n'] // 1000}k/{row['small_n'] // 1000}k"
        if row["small_n"] % 1000 or row["big_n"] % 1000:
            label = f"{row['big_n']}/{row['small_n']}"
        print(
            f"{row['shape']:8s} {row['kind']:5s} {label:>14s} {_fmt(fr, '.1f'):>7s}x "
            f"{_fmt(row['baseline_cost_ratio'], '.1f'):>8s}x "
            f"{_fmt(row['flowrun_vs_baseline_growth'], '.2f'):>8s} {row['limit']:>6.1f}x  {ok}"
        )


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _sizes(value: str) -> list[int]:
    out: list[int] = []
    for raw in _csv(value):
        text = raw.lower().replace("_", "")
        mult = 1
        if text.endswith("k"):
            text, mult = text[:-1], 1000
        out.append(int(float(text) * mult))
    if not out or any(s < 1 for s in out):
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sorted(set(out))


def parse_args(argv: Sequence[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        description="flowrun scheduler overhead vs a graphlib+asyncio baseline",
    )
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        help="comma-separated task counts (e.g. 1000,10k); default 1000,10000,100000",
    )
    p.add_argument("--quick", action="store_true", help="only 1k and 10k tasks")
    p.add_argument(
        "--shapes",
        type=_csv,
        default=list(SHAPES),
        help="comma-separated subset of " + ",".join(SHAPES),
    )
    p.add_argument(
        "--kinds",
        type=_csv,
        default=list(KINDS),
        help="comma-separated subset of " + ",".join(KINDS),
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per case, best is kept")
    p.add_argument("--max-parallel", type=int, default=8)
    p.add_argument("--max-workers", type=int, default=8)
    p.add_argument("--seed", type=int, default=12345, help="RNG seed for the layered DAG")
    p.add_argument(
        "--layer-width",
        type=int,
        default=0,
        help="layered DAG layer width (default 0 = round(sqrt(n)))",
    )
    p.add_argument(
        "--baseline-only", action="store_true", help="do not import flowrun; only time the baseline"
    )
    p.add_argument(
        "--pin-cpu",
        type=int,
        default=None,
        metavar="N",
        help="pin the process (and its worker threads) to CPU N; makes sync timings far "
        "less noisy on VMs where cross-CPU thread wake-ups are slow (Linux only)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="fail a single flowrun measurement (registration + run) after this long",
    )
    p.add_argument("--json", metavar="PATH", default=None, help="write results as JSON")
    ns = p.parse_args(argv)

    for s in ns.shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s!r} (choose from {', '.join(SHAPES)})")
    for k in ns.kinds:
        if k not in KINDS:
            p.error(f"unknown kind {k!r} (choose from {', '.join(KINDS)})")
    if ns.repeat < 1 or ns.max_parallel < 1 or ns.max_workers < 1:
        p.error("--repeat, --max-parallel and --max-workers must be >= 1")
    if ns.sizes is not None:
        sizes = ns.sizes
    elif ns.quick:
        sizes = list(QUICK_SIZES)
    else:
        sizes = list(DEFAULT_SIZES)
    cfg = Config(
        shapes=ns.shapes,
        sizes=sizes,
        kinds=ns.kinds,
        repeat=ns.repeat,
        max_parallel=ns.max_parallel,
        max_workers=ns.max_workers,
        seed=ns.seed,
        layer_width=ns.layer_width,
        baseline_only=ns.baseline_only,
        json_path=ns.json,
        pin_cpu=ns.pin_cpu,
        timeout=ns.timeout,
    )
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)

    if cfg.pin_cpu is not None:
        if not hasattr(os, "sched_setaffinity"):
            log("--pin-cpu needs os.sched_setaffinity (Linux)")
            return 2
        os.sched_setaffinity(0, {cfg.pin_cpu})

    if not cfg.baseline_only:
        try:
            import flowrun

            flowrun.build_default_engine  # noqa: B018  (fail early if the API is missing)
        except Exception:
            traceback.print_exc()
            log("flowrun is not importable; use --baseline-only to time the baseline alone")
            return 2

    print(
        f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; max_parallel={cfg.max_parallel} "
        f"max_workers={cfg.max_workers} repeat={cfg.repeat} (best of) seed={cfg.seed}"
        + ("" if cfg.pin_cpu is None else f"; pinned to CPU {cfg.pin_cpu}")
        + ("; BASELINE ONLY" if cfg.baseline_only else "")
    )

    results: list[CaseResult] = []
    t_start = time.perf_counter()
    warm_up(cfg)
    for kind in cfg.kinds:
        for shape in cfg.shapes:
            for n in cfg.sizes:
                results.append(run_case(cfg, shape, n, kind))
    wall = time.perf_counter() - t_start

    print()
    print_table(results, cfg)
    rows = scaling_rows(results)
    print_scaling(rows)
    print(
        f"\ntargets: async layered {ASYNC_LAYERED_TARGET_N // 1000}k ratio <= "
        f"{ASYNC_LAYERED_TARGET_RATIO}; sync ratio <= {SYNC_TARGET_RATIO}; "
        f"100k/10k cost ratio <= 12x"
    )
    errors = [r for r in results if r.error is not None]
    if errors:
        print(f"\n{len(errors)} case(s) failed in flowrun:")
        for r in errors:
            print(f"--- {r.shape} n={r.n} {r.kind} ---\n{r.error}")
    print(f"total wall time {wall:.1f}s")

    if cfg.json_path:
        payload = {
            "config": asdict(cfg),
            "environment": {
                "python": sys.version,
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
            },
            "results": [r.to_json() for r in results],
            "scaling": rows,
            "wall_time_s": wall,
        }
        with open(cfg.json_path, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
        print(f"wrote {cfg.json_path}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
