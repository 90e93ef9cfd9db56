"""Databases for the web view's tests: real runs made by the engine, and a RUNNING run written
through the store's transition API, so a test decides when it ends."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from flowrun import Omit, SqliteStateStore, build_default_engine
from flowrun.state.records import RUNNING, SUCCESS, RunRecord, TaskRecord

EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
"""In an error message and a task name: the page must show it as text and run nothing."""


@dataclass(frozen=True)
class Runs:
    db: Path
    success: str  # etl, SUCCESS
    failed: str  # etl, FAILED at transform (the error holds EVIL)
    mapped: str  # fan, SUCCESS, with a mapped task of 3 instances


def make_runs(db: Path) -> Runs:
    """Two runs of ``etl`` (the second fails with an error holding ``EVIL``) and one of
    ``fan`` (a mapped task), written by the engine to ``db``."""
    broken = {"on": False}
    with SqliteStateStore(db) as store:
        engine = build_default_engine(state_store=store)

        @engine.task(dag="etl")
        def extract() -> list[int]:
            return [1, 2, 3]

        @engine.task(dag="etl", deps=[extract])
        def transform(extract: list[int]) -> list[int]:
            if broken["on"]:
                raise ValueError(f"bad row {EVIL}")
            return [x * 10 for x in extract]

        @engine.task(dag="etl", deps=[transform])
        def load(transform: list[int]) -> int:
            return sum(transform)

        @engine.task(dag="etl", deps=[extract])
        def audit(extract: list[int]) -> None:
            raise Omit("nothing to audit")

        @engine.task(dag="fan")
        def items() -> list[int]:
            return [1, 2, 3]

        @engine.task(dag="fan", map={"item": items})
        def square(item: int) -> int:
            return item * item

        @engine.task(dag="fan", deps=[square])
        def total(square: list[int]) -> int:
            return sum(square)

        async def main() -> tuple[str, str, str]:
            async with engine:
                ok = await engine.run_once("etl")
                broken["on"] = True
                bad = await engine.run_once("etl")
                fan = await engine.run_once("fan")
                return ok, bad, fan

        ok, bad, fan = asyncio.run(main())
    return Runs(db, ok, bad, fan)


class LiveRun:
    """A run of DAG ``dag`` (``first`` -> ``second``) left RUNNING in the database, as a
    process executing it would leave it between two flushes; ``finish()`` ends it."""

    def __init__(self, db: Path, run_id: str = "live-run-1", dag: str = "live") -> None:
        self.run_id = run_id
        self.store = SqliteStateStore(db)
        now = time.time()
        tasks = {"first": TaskRecord(), "second": TaskRecord(deps=("first",))}
        self.store.create_run(RunRecord(run_id, dag, now, status=RUNNING, tasks=tasks))
        self.store.mark_running(run_id, "first", 1, now)
        self.store.flush()

    def finish(self) -> None:
        """Both tasks succeed and the run ends SUCCESS, in one flush."""
        now = time.time()
        run = self.run_id
        self.store.mark_success(run, "first", now - 0.5, now - 0.2, 1, keep_result=False)
        self.store.mark_running(run, "second", 1, now - 0.2)
        self.store.mark_success(run, "second", now - 0.2, now, 2, keep_result=False)
        self.store.finish_run(run, SUCCESS, now)
        self.store.flush()

    def close(self) -> None:
        self.store.close()


CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # without these, Chromium's own connections to
    "--disable-component-update",  # the network are refused here and slow it down
    "--disable-sync",
    "--window-size=1280,860",
)
"""How the browser tests and ``benchmarks/bench_ui.py`` start Debian's headless Chromium
(with a new ``--user-data-dir`` each)."""


def make_big_run(db: Path, tasks: int = 1000, width: int = 40) -> str:
    """One run of DAG ``big``: ``tasks`` no-op tasks in layers of ``width``, each after the
    first layer depending on two tasks of the layer before; the last task fails."""
    with SqliteStateStore(db) as store:
        engine = build_default_engine(state_store=store, max_parallel=64)
        names = [f"step_{i:04d}" for i in range(tasks)]
        for i, name in enumerate(names):
            layer = i // width
            deps = []
            if layer:
                before = names[(layer - 1) * width : layer * width]
                deps = sorted({before[i % len(before)], before[(i * 7 + 3) % len(before)]})

            def work(i: int = i) -> int:
                if i == tasks - 1:
                    raise RuntimeError("the last step fails")
                return i

            engine.task(name, dag="big", deps=deps, retain_result=False)(work)

        async def main() -> str:
            async with engine:
                return await engine.run_once("big")

        return asyncio.run(main())


def make_showcase(db: Path) -> tuple[str, str]:
    """The README's screenshots: three good runs of ``daily_etl`` then a failed one (a
    retried task, a mapped task, a skip, an always-run notification), and ``hourly_sync``
    left RUNNING. Returns (the failed run, the running run); the tasks sleep a little so the
    timeline has a shape."""
    fail = {"on": False}
    with SqliteStateStore(db) as store:
        engine = build_default_engine(state_store=store, max_parallel=4)
        etl = engine.dag("daily_etl")

        @etl.task()
        def extract() -> list[str]:
            time.sleep(0.06)
            return ["eu", "us", "apac"]

        @etl.task()
        def fetch_rates() -> dict[str, float]:
            time.sleep(0.1)
            return {"EUR": 1.0, "USD": 1.08}

        @etl.task(map={"region": extract})
        def clean(region: str) -> str:
            time.sleep(0.03)
            return region

        @etl.task(deps=[clean, fetch_rates], retries=1)
        def transform(clean: list[str], fetch_rates: dict[str, float]) -> int:
            time.sleep(0.05)
            if fail["on"]:
                row: dict[str, float | None] = {"id": 17, "amount_eur": None}
                return int(row["amount"] or 0)
            return len(clean)

        @etl.task(deps=[transform])
        def load(transform: int) -> int:
            time.sleep(0.04)
            return transform

        @etl.task(deps=[load], trigger="all_done")
        def notify() -> str:
            return "sent"

        async def main() -> str:
            async with engine:
                for _ in range(3):
                    await engine.run_once("daily_etl")
                fail["on"] = True
                return await engine.run_once("daily_etl")

        failed = asyncio.run(main())
    live = LiveRun(db, run_id="5f0c9a1e7d2b4c8e9a3f6b1d0e2c4a7b", dag="hourly_sync")
    live.close()
    return failed, live.run_id
