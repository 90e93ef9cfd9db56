"""Concurrency pools: ``engine.pool(name, slots=N)`` bounds the tasks that name it, across runs,
without holding engine slots while they wait; FIFO, released during retry delays, kept by a
timed-out sync call until its thread returns; ``queued_s`` in the report."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from support import new_clock

from flowrun import (
    PoolError,
    RunHook,
    SqliteStateStore,
    TaskDefinitionError,
    TaskFailureEvent,
    build_default_engine,
)
from flowrun._engine import Engine
from flowrun.testing import VirtualClock, VirtualTimeLoop, run_dag


class Timeline:
    """Records (virtual time, 'start'|'end', task) and the most tasks seen in flight at once."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.events: list[tuple[float, str, str]] = []
        self.in_flight = 0
        self.most = 0

    def task(self, name: str, seconds: float) -> Any:
        async def work() -> str:
            self.events.append((self.clock.monotonic(), "start", name))
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            await asyncio.sleep(seconds)
            self.in_flight -= 1
            self.events.append((self.clock.monotonic(), "end", name))
            return name

        return work

    def starts(self) -> dict[str, float]:
        return {name: t for t, kind, name in self.events if kind == "start"}


def _engine(max_parallel: int = 8, clock: VirtualClock | None = None) -> Engine:
    return build_default_engine(max_parallel=max_parallel, clock=clock or new_clock())


def _clocked(max_parallel: int = 8) -> tuple[Engine, VirtualClock]:
    clock = new_clock()
    return _engine(max_parallel, clock), clock


def test_a_pool_bounds_its_tasks_and_hands_slots_out_in_ready_order() -> None:
    engine, clock = _clocked()
    engine.pool("crm_api", slots=2)
    line = Timeline(clock)
    etl = engine.dag("etl")
    for i in range(6):
        etl.task(f"call_{i}", pool="crm_api")(line.task(f"call_{i}", 10))
    report = run_dag(etl)
    assert report["status"] == "SUCCESS"
    assert line.most == 2
    starts = line.starts()
    assert [starts[f"call_{i}"] for i in range(6)] == [0, 0, 10, 10, 20, 20]
    queued = [report["tasks"][f"call_{i}"]["queued_s"] for i in range(6)]
    assert queued == [0.0, 0.0, 10.0, 10.0, 20.0, 20.0]


def test_a_task_waiting_for_its_pool_holds_no_engine_slot() -> None:
    engine, clock = _clocked(max_parallel=2)
    engine.pool("api", slots=1)
    line = Timeline(clock)
    etl = engine.dag("etl")
    for i in range(3):
        etl.task(f"api_{i}", pool="api")(line.task(f"api_{i}", 10))
    etl.task("local")(line.task("local", 5))
    run_dag(etl)
    starts = line.starts()
    # api_1 and api_2 wait for the pool; local takes the second engine slot at once
    assert starts == {"api_0": 0, "local": 0, "api_1": 10, "api_2": 20}


def test_pool_slots_weigh_tasks_and_the_queue_is_first_come_first_served() -> None:
    engine, clock = _clocked()
    engine.pool("db", slots=3)
    line = Timeline(clock)
    etl = engine.dag("etl")
    etl.task("small_a", pool="db")(line.task("small_a", 10))
    etl.task("heavy", pool="db", pool_slots=3)(line.task("heavy", 10))
    etl.task("small_b", pool="db")(line.task("small_b", 10))
    run_dag(etl)
    # heavy waits for all three slots; small_b, behind it in the queue, does not overtake it
    assert line.starts() == {"small_a": 0, "heavy": 10, "small_b": 20}


def test_a_pool_is_shared_by_concurrent_runs_of_different_dags() -> None:
    clock = new_clock()
    engine = _engine(clock=clock)
    engine.pool("api", slots=1)
    line = Timeline(clock)
    for dag in ("a", "b"):
        engine.dag(dag).task("call", pool="api")(line.task(dag, 10))

    async def both() -> list[str]:
        return list(await asyncio.gather(engine.run_once("a"), engine.run_once("b")))

    loop = VirtualTimeLoop(clock)
    try:
        run_ids = loop.run_until_complete(both())
    finally:
        loop.close()
    assert sorted(line.starts().values()) == [0, 10]
    assert line.most == 1
    assert sorted(engine.get_run_report(r)["tasks"]["call"]["queued_s"] for r in run_ids) == [
        0.0,
        10.0,
    ]


def test_a_pool_slot_is_free_during_a_retry_delay() -> None:
    engine, clock = _clocked()
    engine.pool("api", slots=1)
    starts: list[tuple[str, float]] = []

    def flaky() -> str:
        starts.append(("flaky", clock.monotonic()))
        if len(starts) == 1:
            raise ConnectionError("rate limited")
        return "ok"

    etl = engine.dag("etl")
    etl.task("flaky", pool="api", retries=1, retry_delay_s=60)(flaky)
    line = Timeline(clock)
    etl.task("other", deps=[], pool="api")(line.task("other", 5))
    report = run_dag(etl)
    assert report["status"] == "SUCCESS"
    assert line.starts()["other"] == 0.0  # ran while flaky waited out its back-off
    assert starts == [("flaky", 0.0), ("flaky", 60.0)]


def test_a_timed_out_sync_call_keeps_its_pool_slot_until_its_thread_returns() -> None:
    release = threading.Event()
    seen: dict[str, Any] = {}

    class ReleaseOnFailure(RunHook):
        def on_task_failure(self, event: TaskFailureEvent) -> None:
            # the stuck call timed out; its thread still runs: 'after' must not have started
            seen["after started at failure"] = "after" in seen
            release.set()

    engine = build_default_engine(hooks=[ReleaseOnFailure()])
    engine.pool("api", slots=1)

    def stuck() -> None:
        release.wait(30)
        seen["stuck returned"] = True

    def after() -> str:
        seen["after"] = seen.get("stuck returned", False)
        return "ran"

    etl = engine.dag("etl")
    etl.task("stuck", pool="api", timeout_s=0.05)(stuck)
    etl.task("after", pool="api")(after)

    async def main() -> dict[str, Any]:
        async with engine:
            return engine.get_run_report(await engine.run_once("etl"))

    report = asyncio.run(main())
    assert report["tasks"]["stuck"]["status"] == "FAILED"
    assert "timed out" in report["tasks"]["stuck"]["error"]
    assert report["tasks"]["after"]["status"] == "SUCCESS"
    assert seen["after started at failure"] is False
    assert seen["after"] is True  # it started only once the stuck thread had returned


def test_a_cancelled_run_gives_its_pool_slots_back() -> None:
    clock = new_clock()
    engine = _engine(clock=clock)
    engine.pool("api", slots=1)
    line = Timeline(clock)
    slow = engine.dag("slow")
    slow.task("hog", pool="api")(line.task("hog", 1000))
    slow.task("queued", pool="api")(line.task("queued", 1))
    fast = engine.dag("fast")
    fast.task("call", pool="api")(line.task("call", 1))

    async def main() -> str:
        run = asyncio.ensure_future(engine.run_once("slow"))
        await asyncio.sleep(10)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        return await engine.run_once("fast")

    loop = VirtualTimeLoop(clock)
    try:
        fast_id = loop.run_until_complete(main())
    finally:
        loop.close()
    assert engine.get_run_report(fast_id)["status"] == "SUCCESS"
    assert "queued" not in line.starts()  # parked in the pool when its run was cancelled


# -- declaring and validating -------------------------------------------------------------


def test_an_unknown_pool_is_refused_with_the_closest_name() -> None:
    engine = _engine()
    engine.pool("crm_api", slots=2)
    engine.task("t", dag="etl", pool="crm_apj")(lambda: 1)
    with pytest.raises(PoolError) as info:
        engine.validate("etl")
    error = info.value
    assert (error.dag_name, error.task_name, error.pool) == ("etl", "t", "crm_apj")
    assert "engine.pool('crm_apj', slots=N)" in str(error)
    assert "Did you mean 'crm_api'?" in str(error)


def test_a_pool_declared_after_the_task_makes_the_dag_valid() -> None:
    engine = _engine()
    engine.task("t", dag="etl", pool="api")(lambda: 1)
    with pytest.raises(PoolError):
        engine.validate("etl")
    engine.pool("api", slots=1)
    engine.validate("etl")
    assert run_dag(engine, "etl")["status"] == "SUCCESS"


def test_more_pool_slots_than_the_pool_has_is_refused() -> None:
    engine = _engine()
    engine.pool("api", slots=2)
    engine.task("t", dag="etl", pool="api", pool_slots=3)(lambda: 1)
    with pytest.raises(PoolError, match=r"pool_slots=3 of pool 'api', which has only 2 slot"):
        engine.validate("etl")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool": ""}, "'pool' must be the name of a pool"),
        ({"pool": 3}, "'pool' must be the name of a pool"),
        ({"pool": "api", "pool_slots": 0}, "'pool_slots' must be an int >= 1"),
        ({"pool": "api", "pool_slots": True}, "'pool_slots' must be an int >= 1"),
        ({"pool_slots": 2}, "'pool_slots' needs a 'pool'"),
    ],
)
def test_bad_pool_options_are_definition_errors(options: dict[str, Any], message: str) -> None:
    engine = _engine()
    with pytest.raises(TaskDefinitionError, match=message) as info:
        engine.task("t", dag="etl", **options)(lambda: 1)
    assert (info.value.dag, info.value.task) == ("etl", "t")


def test_declaring_a_pool() -> None:
    engine = _engine()
    engine.pool("api", slots=2)
    engine.pool("api", slots=2)  # again, the same: nothing happens
    assert engine.pools == {"api": 2}
    with pytest.raises(ValueError, match=r"pool 'api' is already declared with slots=2"):
        engine.pool("api", slots=3)
    with pytest.raises(ValueError, match="'slots' must be an int >= 1"):
        engine.pool("db", slots=0)
    with pytest.raises(ValueError, match="a pool name must be a non-empty string"):
        engine.pool("", slots=1)
    assert engine.derive().pools == {"api": 2}  # the CLI's engine keeps the user's pools


def test_queued_s_is_stored_by_sqlite_and_read_back(tmp_path: Any) -> None:
    clock = new_clock()
    with SqliteStateStore(tmp_path / "state.db") as store:
        engine = build_default_engine(state_store=store, clock=clock, max_parallel=1)
        line = Timeline(clock)
        etl = engine.dag("etl")
        etl.task("first")(line.task("first", 30))
        etl.task("second")(line.task("second", 1))
        run_id = run_dag(etl, clock=clock)["run_id"]
    with SqliteStateStore(tmp_path / "state.db") as again:
        tasks = again.load_run(run_id).tasks
        assert (tasks["first"].queued_s, tasks["second"].queued_s) == (0.0, 30.0)
