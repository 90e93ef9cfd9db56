"""flowrun.testing: the virtual clock and the virtual-time event loop (no pytest plugin)."""

from __future__ import annotations

import asyncio
import socketserver
import threading
import time
from typing import Any

import pytest

from flowrun import RunContext, SystemClock, TaskRetryEvent, build_default_engine
from flowrun.testing import (
    DEFAULT_EPOCH,
    RecordingHook,
    VirtualClock,
    VirtualTimeLoop,
    VirtualTimeLoopPolicy,
    current_clock,
    run_dag,
    run_virtual,
    virtual_loop_factory,
)


def test_clock_starts_at_the_epoch_and_advances() -> None:
    clock = VirtualClock()
    assert (clock.monotonic(), clock.time()) == (0.0, DEFAULT_EPOCH)
    clock.advance(90)
    assert (clock.monotonic(), clock.time()) == (90.0, DEFAULT_EPOCH + 90)
    assert VirtualClock(epoch=0).time() == 0.0
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="advance"):
            clock.advance(bad)  # type: ignore[arg-type]


def test_sleep_timeout_and_wait_for_take_no_real_time() -> None:
    async def main() -> tuple[float, bool, bool]:
        await asyncio.sleep(3600)
        timed_out = False
        try:
            async with asyncio.timeout(7200):
                await asyncio.sleep(10**6)
        except TimeoutError:
            timed_out = True
        waited = False
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=60)
        except TimeoutError:
            waited = True
        return asyncio.get_running_loop().time(), timed_out, waited

    clock = VirtualClock()
    real = time.perf_counter()
    assert run_virtual(main(), clock=clock) == (3600 + 7200 + 60, True, True)
    assert time.perf_counter() - real < 5
    assert clock.time() == DEFAULT_EPOCH + 10860


def test_timers_fire_in_order_at_their_exact_times() -> None:
    fired: list[tuple[str, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def at(delay: float, name: str) -> None:
            await asyncio.sleep(delay)
            fired.append((name, loop.time()))

        await asyncio.gather(at(0.3, "c"), at(0.1, "a"), at(0.2, "b"), at(86400 * 3, "d"))

    run_virtual(main())
    assert fired == [("a", 0.1), ("b", 0.2), ("c", 0.3), ("d", 259200.0)]


def test_executor_work_is_waited_for_in_real_time() -> None:
    async def main() -> tuple[float, str]:
        loop = asyncio.get_running_loop()
        sleeper = asyncio.ensure_future(asyncio.sleep(30))

        def work() -> str:
            time.sleep(0.05)
            return "done"

        result = await loop.run_in_executor(None, work)
        # The thread finished long before the 30 s timer: the clock did not move meanwhile.
        now = loop.time()
        await sleeper
        return now, result

    assert run_virtual(main()) == (0.0, "done")


def test_a_timer_due_while_a_thread_runs_fires_after_real_time() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, time.sleep, 0.3)
        await asyncio.sleep(0.05)  # the thread still runs: wait 0.05 s for real
        during = loop.time()
        await job
        return during, loop.time()

    real = time.perf_counter()
    during, after = run_virtual(main())
    assert during == 0.05
    assert after == 0.05  # the thread's end does not move the clock
    assert time.perf_counter() - real >= 0.25


def test_advance_fires_due_timers_on_the_next_iteration() -> None:
    async def main() -> list[str]:
        clock = current_clock()
        seen: list[str] = []
        asyncio.get_running_loop().call_later(10, seen.append, "timer")
        clock.advance(10)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(f"at {clock.monotonic()}")
        return seen

    assert run_virtual(main()) == ["timer", "at 10.0"]


def test_current_clock_outside_a_virtual_loop() -> None:
    async def main() -> None:
        current_clock()

    with pytest.raises(RuntimeError, match="not a VirtualTimeLoop"):
        asyncio.run(main())


def test_clock_sleep_on_a_regular_loop_advances_the_clock() -> None:
    clock = VirtualClock()

    async def main() -> None:
        await clock.sleep(120)
        await clock.sleep(-1)

    real = time.perf_counter()
    asyncio.run(main())
    assert clock.monotonic() == 120.0
    assert time.perf_counter() - real < 5


def test_loop_factory_and_policy_share_the_clock() -> None:
    clock = VirtualClock()
    with asyncio.Runner(loop_factory=virtual_loop_factory(clock)) as runner:
        runner.run(asyncio.sleep(5))
        assert isinstance(runner.get_loop(), VirtualTimeLoop)
    policy = VirtualTimeLoopPolicy(clock)
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, VirtualTimeLoop)
        assert loop.clock is clock
        loop.run_until_complete(asyncio.sleep(5))
    finally:
        loop.close()
    assert clock.monotonic() == 10.0


def test_retries_with_hours_of_backoff_and_an_hour_timeout_take_no_real_time() -> None:
    """5 retries from 60 s doubling, then a 1-hour async timeout: exact virtual timestamps."""
    clock = VirtualClock()
    events = RecordingHook()
    engine = build_default_engine(clock=clock, hooks=[events])
    calls: list[float] = []

    @engine.task(dag="etl", retries=5, retry_delay_s=60, retry_backoff=2)
    async def flaky() -> int:
        calls.append(clock.monotonic())
        raise ConnectionError("API down")

    @engine.task(dag="etl", timeout_s=3600)
    async def hang() -> None:
        await asyncio.Event().wait()

    real = time.perf_counter()
    report = run_dag(engine, "etl")
    assert time.perf_counter() - real < 5  # loose sanity bound; real cost is milliseconds
    assert calls == [0.0, 60.0, 180.0, 420.0, 900.0, 1860.0]
    assert [e.delay_s for e in events.of(TaskRetryEvent)] == [60.0, 120.0, 240.0, 480.0, 960.0]
    tasks = report["tasks"]
    assert tasks["flaky"]["attempt"] == 6
    assert tasks["flaky"]["started_at"] == DEFAULT_EPOCH + 1860
    assert tasks["flaky"]["error"] == "ConnectionError: API down"
    assert tasks["hang"]["started_at"] == DEFAULT_EPOCH
    assert tasks["hang"]["finished_at"] == DEFAULT_EPOCH + 3600
    assert tasks["hang"]["error"].startswith("TaskTimeoutError: task 'hang' timed out after 3600s")
    assert report["created_at"] == DEFAULT_EPOCH
    assert report["finished_at"] == DEFAULT_EPOCH + 3600
    assert report["status"] == "FAILED"


def test_sync_task_timeout_fires_at_its_virtual_deadline() -> None:
    clock = VirtualClock()
    engine = build_default_engine(clock=clock)

    @engine.task(timeout_s=0.2)
    def blocking(context: RunContext[None]) -> None:
        while not context.cancelled():
            time.sleep(0.01)

    try:
        report = run_dag(engine)
    finally:
        engine.close()
    task = report["tasks"]["blocking"]
    assert task["status"] == "FAILED"
    assert "timed out after 0.2s" in task["error"]
    assert task["finished_at"] - task["started_at"] == pytest.approx(0.2, abs=1e-6)


def _deterministic(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "run_id"}


def test_reports_are_identical_run_after_run() -> None:
    def build() -> Any:
        engine = build_default_engine()

        @engine.task(retries=2, retry_delay_s=5)
        async def a() -> int:
            await asyncio.sleep(1.5)
            return 1

        @engine.task(deps=[a], timeout_s=10)
        async def b(a: int) -> int:
            await asyncio.sleep(a * 2)
            return a + 1

        @engine.task(deps=[b])
        def c(b: int) -> int:
            return b * 10

        return engine

    first = run_dag(build())
    second = run_dag(build())
    assert _deterministic(first) == _deterministic(second)
    assert first["tasks"]["b"]["finished_at"] == DEFAULT_EPOCH + 3.5


def test_jittered_retries_are_identical_run_after_run() -> None:
    """Jitter draws from the virtual clock's seeded random(): reproducible, yet jittered."""

    def build() -> Any:
        engine = build_default_engine()
        attempts: list[int] = []

        @engine.task(retries=3, retry_delay_s=60, retry_jitter=0.5)
        async def flaky() -> int:
            attempts.append(1)
            if len(attempts) < 4:
                raise ConnectionError("try later")
            return len(attempts)

        return engine

    first, second = run_dag(build()), run_dag(build())
    assert _deterministic(first) == _deterministic(second)
    started = first["tasks"]["flaky"]["started_at"] - DEFAULT_EPOCH
    assert started != 60 + 120 + 240  # the delays were jittered...
    assert 0.5 * 420 <= started <= 1.5 * 420  # ...within +-50% each
    third = run_dag(build(), clock=VirtualClock(seed=7))
    assert third["tasks"]["flaky"]["started_at"] != first["tasks"]["flaky"]["started_at"]


def test_run_dag_with_a_system_clock_runs_on_real_time() -> None:
    engine = build_default_engine()

    @engine.task
    async def nap() -> float:
        await asyncio.sleep(0.01)
        return asyncio.get_running_loop().time()

    before = time.time()
    report = run_dag(engine, clock=SystemClock())
    assert report["status"] == "SUCCESS"
    assert report["created_at"] >= before
    assert isinstance(engine.clock, SystemClock)


def test_run_dag_gives_the_engine_the_clock_only_for_the_run() -> None:
    engine = build_default_engine()

    @engine.task
    async def wait() -> None:
        await asyncio.sleep(3)

    clock = VirtualClock()
    report = run_dag(engine, clock=clock)
    assert report["finished_at"] == DEFAULT_EPOCH + 3
    assert isinstance(engine.clock, SystemClock)
    assert clock.monotonic() == 3.0


def test_a_local_servers_reply_arrives_before_a_virtual_timeout() -> None:
    """Sockets are seen: the loop gives open connections a grace of real time before it jumps,
    so an async client of a server in another thread is not timed out in zero real time."""

    class SlowPong(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()
            time.sleep(0.05)  # the server's own work; the loop only sees a silent socket
            self.wfile.write(b"pong\n")

    with socketserver.TCPServer(("127.0.0.1", 0), SlowPong) as server:
        port = server.server_address[1]
        serving = threading.Thread(target=server.serve_forever, daemon=True)
        serving.start()

        async def main() -> tuple[dict[str, Any], float]:
            engine = build_default_engine(clock=current_clock())

            @engine.task(dag="io", timeout_s=30)
            async def fetch() -> bytes:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"ping\n")
                line = await reader.readline()
                writer.close()
                return line

            async with engine:
                report = engine.get_run_report(await engine.run_once("io"))
            return report, current_clock().monotonic()

        try:
            report, virtual_now = run_virtual(main())
        finally:
            server.shutdown()
    assert report["status"] == "SUCCESS", report["tasks"]["fetch"]["error"]
    assert report["tasks"]["fetch"]["result"] == b"pong\n"
    assert virtual_now < 30  # never jumped to the timeout


def test_io_grace_must_be_a_non_negative_number() -> None:
    with pytest.raises(ValueError, match=r"io_grace_s must be >= 0 \(got -1\)"):
        VirtualTimeLoop(io_grace_s=-1)
    with pytest.raises(TypeError, match="io_grace_s must be a number"):
        VirtualTimeLoop(io_grace_s="1")  # type: ignore[arg-type]


def test_virtual_clock_records_every_sleep_on_any_loop() -> None:
    clock = VirtualClock()

    async def nap() -> float:
        await clock.sleep(30)
        await clock.sleep(0.5)
        return clock.monotonic()

    assert run_virtual(nap(), clock=clock) == 30.5  # on its virtual-time loop
    assert asyncio.run(nap()) == 61.0  # on any other loop it advances itself
    assert clock.sleeps == [30, 0.5, 30, 0.5]


@pytest.mark.timeout(30)
def test_a_sleep_past_2_25_seconds_returns_at_exactly_its_end() -> None:
    """Past 2**24 s, asyncio's timer margin (1e-9 s) is below one float step of the time: the
    loop used to spin at 100 % CPU on a timer it had jumped to but never found due."""
    delay = 2**25 + 1000.5

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(delay)
        return loop.time(), current_clock().time()

    clock = VirtualClock()
    real = time.perf_counter()
    assert run_virtual(main(), clock=clock) == (delay, DEFAULT_EPOCH + delay)
    assert time.perf_counter() - real < 5
    assert clock.monotonic() == delay


@pytest.mark.timeout(60)
def test_a_year_of_quarter_hour_sleeps_lands_on_exact_times() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        woke = []
        for _ in range(35_040):
            await asyncio.sleep(900)
            woke.append(loop.time())
        return woke

    clock = VirtualClock()
    real = time.perf_counter()
    woke = run_virtual(main(), clock=clock)
    assert time.perf_counter() - real < 30  # loose sanity bound; measured ~0.4 s
    assert woke == [900.0 * k for k in range(1, 35_041)]
    assert clock.time() == DEFAULT_EPOCH + 365 * 86400


@pytest.mark.timeout(30)
def test_timers_timeouts_and_advance_far_into_virtual_time() -> None:
    fired: list[tuple[str, float]] = []

    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        clock = current_clock()
        clock.advance(2**26)  # ~2 years
        await asyncio.sleep(0)

        async def at(delay: float, name: str) -> None:
            await asyncio.sleep(delay)
            fired.append((name, loop.time()))

        await asyncio.gather(at(0.5, "c"), at(0.25, "b"), at(0.125, "a"), at(86400, "d"))
        timed_out = waited = False
        try:
            async with asyncio.timeout(60):
                await asyncio.Event().wait()
        except TimeoutError:
            timed_out = True
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=30)
        except TimeoutError:
            waited = True
        loop.call_later(10, fired.append, ("later", -1.0))
        clock.advance(10)  # due now: fires on the next iteration
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return timed_out, waited

    assert run_virtual(main()) == (True, True)
    base = float(2**26)
    assert fired == [
        ("a", base + 0.125),
        ("b", base + 0.25),
        ("c", base + 0.5),
        ("d", base + 86400),
        ("later", -1.0),
    ]
