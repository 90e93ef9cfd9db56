"""``max_parallel`` across tasks and runs, isolation of concurrent runs, and pool ownership."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import new_clock

from flowrun import RunContext, build_default_engine

WAIT_S = 5.0  # generous upper bound for something that is expected to happen


class InFlight:
    """Counts tasks currently running (thread-safe) and remembers the peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.started: Counter[str] = Counter()

    def enter(self, name: str) -> int:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.started[name] += 1
            return self.now

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


@pytest.mark.parametrize("max_parallel", [1, 2, 3])
async def test_independent_async_tasks_run_concurrently_up_to_max_parallel(
    max_parallel: int,
) -> None:
    engine = build_default_engine(max_parallel=max_parallel, clock=new_clock())
    scope = engine.dag("wide")
    flight = InFlight()
    # Each task waits until max_parallel tasks are in flight together: this finishes only if
    # the engine runs that many at once, and the peak shows it never runs more.
    barrier = asyncio.Barrier(max_parallel)
    count = 3 * max_parallel

    for i in range(count):

        @scope.task(name=f"t{i}")
        async def t() -> None:
            flight.enter("t")
            try:
                await barrier.wait()
            finally:
                flight.leave()

    run_id = await asyncio.wait_for(scope.run_once(), WAIT_S)

    assert engine.get_run_report(run_id)["status"] == "SUCCESS"
    assert flight.started["t"] == count
    assert flight.peak == max_parallel


async def test_independent_sync_tasks_run_concurrently_up_to_max_parallel() -> None:
    max_parallel = 3
    engine = build_default_engine(max_parallel=max_parallel, max_workers=8, clock=new_clock())
    scope = engine.dag("wide")
    flight = InFlight()
    barrier = threading.Barrier(max_parallel, timeout=WAIT_S)

    for i in range(2 * max_parallel):

        @scope.task(name=f"t{i}")
        def t() -> None:
            flight.enter("t")
            try:
                barrier.wait()
            finally:
                flight.leave()

    async with engine:
        run_id = await scope.run_once()

    assert engine.get_run_report(run_id)["status"] == "SUCCESS"
    assert flight.peak == max_parallel


async def test_max_parallel_bounds_mixed_sync_and_async_tasks() -> None:
    engine = build_default_engine(max_parallel=2, max_workers=8, clock=new_clock())
    scope = engine.dag("mixed")
    flight = InFlight()
    reached = asyncio.Event()
    gate = threading.Event()
    loop = asyncio.get_running_loop()

    def note_entry() -> None:
        if flight.enter("t") >= 2:
            loop.call_soon_threadsafe(reached.set)

    for i in range(4):

        @scope.task(name=f"a{i}")
        async def a() -> None:
            note_entry()
            await asyncio.to_thread(gate.wait, WAIT_S)
            flight.leave()

        @scope.task(name=f"s{i}")
        def s() -> None:
            note_entry()
            gate.wait(WAIT_S)
            flight.leave()

    running = asyncio.create_task(scope.run_once())
    try:
        await asyncio.wait_for(reached.wait(), WAIT_S)
    finally:
        gate.set()
    run_id = await running
    engine.close()

    assert engine.get_run_report(run_id)["status"] == "SUCCESS"
    assert flight.started["t"] == 8
    assert flight.peak == 2


async def test_max_parallel_holds_across_concurrent_runs_of_one_engine() -> None:
    max_parallel = 3
    engine = build_default_engine(max_parallel=max_parallel, clock=new_clock())
    flight = InFlight()
    reached = asyncio.Event()
    gate = asyncio.Event()

    for dag in ("left", "right"):
        scope = engine.dag(dag)
        for i in range(4):

            @scope.task(name=f"{dag}{i}")
            async def t() -> None:
                if flight.enter("t") >= max_parallel:
                    reached.set()
                await gate.wait()
                flight.leave()

    both = asyncio.gather(engine.run_once("left"), engine.run_once("right"))
    await asyncio.wait_for(reached.wait(), WAIT_S)
    # every task that the engine would launch without waiting for a slot has started now
    gate.set()
    left, right = await asyncio.wait_for(both, WAIT_S)

    assert flight.started["t"] == 8
    assert flight.peak == max_parallel
    assert engine.get_run_report(left)["status"] == "SUCCESS"
    assert engine.get_run_report(right)["status"] == "SUCCESS"


async def test_concurrent_runs_of_one_dag_are_isolated() -> None:
    engine = build_default_engine(max_parallel=2, clock=new_clock())
    scope = engine.dag("iso")
    both_started = asyncio.Barrier(2)

    @scope.task(name="base")
    async def base(context: RunContext[dict[str, int]]) -> int:
        await both_started.wait()  # both runs are in flight at the same time
        return context.deps["k"]

    @scope.task(name="double", deps=[base])
    def double(base: int) -> int:
        if base < 0:
            raise ValueError(f"negative base {base}")
        return base * 2

    ok, failed = await asyncio.wait_for(
        asyncio.gather(
            scope.run_once(context=RunContext({"k": 21})),
            scope.run_once(context=RunContext({"k": -1})),
        ),
        WAIT_S,
    )

    assert ok != failed
    good = engine.get_run_report(ok)
    bad = engine.get_run_report(failed)
    assert good["run_id"] == ok
    assert bad["run_id"] == failed
    assert good["status"] == "SUCCESS"
    assert good["tasks"]["double"]["result"] == 42
    assert bad["status"] == "FAILED"
    assert bad["tasks"]["base"]["result"] == -1
    assert bad["tasks"]["double"]["status"] == "FAILED"
    assert "negative base -1" in bad["tasks"]["double"]["error"]


async def test_many_concurrent_runs_each_report_their_own_results() -> None:
    engine = build_default_engine(max_parallel=3, clock=new_clock())
    scope = engine.dag("many")

    @scope.task(name="a")
    async def a(context: RunContext[dict[str, int]]) -> int:
        await asyncio.sleep(0)
        return context.deps["n"]

    @scope.task(name="b", deps=[a])
    def b(a: int) -> int:
        return a + 1000

    ids = await asyncio.gather(*(scope.run_once(RunContext({"n": n})) for n in range(12)))

    assert len(set(ids)) == 12
    for n, run_id in enumerate(ids):
        report = engine.get_run_report(run_id)
        assert report["status"] == "SUCCESS"
        assert report["tasks"]["b"]["result"] == n + 1000
    engine.close()


# -- pool ownership ------------------------------------------------------------------------


async def test_close_leaves_a_user_executor_working() -> None:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="users-pool")
    try:
        engine = build_default_engine(executor=pool, clock=new_clock())
        scope = engine.dag("p")
        threads: list[str] = []

        @scope.task(name="where")
        def where() -> str:
            threads.append(threading.current_thread().name)
            return "ok"

        async with engine as entered:
            assert entered is engine
            await scope.run_once()
        engine.close()

        assert pool.submit(lambda: 7).result(timeout=WAIT_S) == 7
        run_id = await scope.run_once()  # still usable, still on the user's pool
        assert engine.get_run_report(run_id)["status"] == "SUCCESS"
        assert len(threads) == 2
        assert all(name.startswith("users-pool") for name in threads)
    finally:
        pool.shutdown(wait=True)


async def test_close_shuts_down_the_owned_pool_and_a_later_run_gets_a_new_one() -> None:
    engine = build_default_engine(max_workers=2, clock=new_clock())
    scope = engine.dag("p")
    threads: list[threading.Thread] = []

    @scope.task(name="where")
    def where() -> int:
        threads.append(threading.current_thread())
        return len(threads)

    async with engine:
        first = await scope.run_once()
    assert engine.get_run_report(first)["status"] == "SUCCESS"
    threads[0].join(WAIT_S)
    assert not threads[0].is_alive()  # the owned pool's worker exited

    second = await scope.run_once()
    engine.close()

    report = engine.get_run_report(second)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["where"]["result"] == 2
    assert threads[1] is not threads[0]
    threads[1].join(WAIT_S)
    assert not threads[1].is_alive()


async def test_close_is_idempotent_and_safe_before_any_run() -> None:
    engine = build_default_engine(clock=new_clock())
    engine.close()
    engine.close()
    scope = engine.dag("p")

    @scope.task(name="s")
    def s() -> int:
        return 5

    run_id = await scope.run_once()
    engine.close()
    engine.close()

    assert engine.get_run_report(run_id)["tasks"]["s"]["result"] == 5


async def test_async_with_closes_the_pool_even_when_the_body_raises() -> None:
    engine = build_default_engine(max_workers=1, clock=new_clock())
    scope = engine.dag("p")
    threads: list[threading.Thread] = []

    @scope.task(name="s")
    def s() -> None:
        threads.append(threading.current_thread())

    async def use_engine() -> None:
        async with engine:
            await scope.run_once()
            raise RuntimeError("body failed")

    with pytest.raises(RuntimeError, match="body failed"):
        await use_engine()

    threads[0].join(WAIT_S)
    assert not threads[0].is_alive()


@pytest.mark.parametrize("max_parallel", [1, 2])
async def test_many_runs_share_few_slots_without_starving(max_parallel: int) -> None:
    engine = build_default_engine(max_parallel=max_parallel, clock=new_clock())
    scope = engine.dag("chain")
    flight = InFlight()

    @scope.task(name="a")
    async def a() -> int:
        flight.enter("a")
        await asyncio.sleep(0)
        flight.leave()
        return 1

    @scope.task(name="b", deps=[a])
    def b(a: int) -> int:
        flight.enter("b")
        flight.leave()
        return a + 1

    @scope.task(name="c", deps=[b], retries=1)
    async def c(b: int, context: RunContext[None]) -> int:
        flight.enter("c")
        flight.leave()
        if context.attempt == 1:  # each run's first attempt fails
            raise ConnectionError("flaky")
        return b + 1

    ids = await asyncio.wait_for(asyncio.gather(*(scope.run_once() for _ in range(5))), WAIT_S)
    engine.close()

    assert len(set(ids)) == 5
    for run_id in ids:
        report = engine.get_run_report(run_id)
        assert report["status"] == "SUCCESS"
        assert report["tasks"]["c"]["result"] == 3
    assert flight.peak <= max_parallel
    assert flight.started == Counter(a=5, b=5, c=10)
