"""Retries (count, back-off on the engine clock, jitter, retry_on) and per-attempt timeouts of
async and sync tasks (what a timed-out thread is told, and when its timeout starts)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support import WAIT_S, WALL_START

from flowrun import (
    RunContext,
    RunHook,
    TaskCancelledError,
    TaskFailureEvent,
    TaskRetryEvent,
    TaskSkipEvent,
    TaskStartEvent,
    TaskTimeoutError,
    build_default_engine,
    fn_hook,
)
from flowrun.testing import VirtualClock


class BrokenSleepClock(VirtualClock):
    """A clock whose ``sleep`` raises: retries must not be stranded by it."""

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        raise RuntimeError("the clock is broken")


# -- retries ----------------------------------------------------------------------------------


async def test_attempts_never_exceed_retries_plus_one() -> None:
    engine = build_default_engine()
    calls = {"sync": 0, "async": 0}

    @engine.task(name="flaky_sync", dag="r", retries=2)
    def flaky_sync() -> None:
        calls["sync"] += 1
        raise ValueError(f"sync boom {calls['sync']}")

    @engine.task(name="flaky_async", dag="r", retries=3)
    async def flaky_async() -> None:
        calls["async"] += 1
        raise ValueError(f"async boom {calls['async']}")

    @engine.task(name="once", dag="r")
    def once() -> None:
        raise ValueError("no retries by default")

    async with engine:
        run_id = await engine.run_once("r")
    tasks = engine.get_run_report(run_id)["tasks"]
    assert calls == {"sync": 3, "async": 4}
    assert tasks["flaky_sync"]["status"] == "FAILED"
    assert tasks["flaky_sync"]["attempt"] == 3
    assert tasks["flaky_sync"]["error"] == "ValueError: sync boom 3"  # the last attempt's error
    assert tasks["flaky_async"]["attempt"] == 4
    assert tasks["flaky_async"]["error"] == "ValueError: async boom 4"
    assert tasks["once"]["attempt"] == 1


async def test_success_on_a_later_attempt() -> None:
    engine = build_default_engine()
    calls = 0

    @engine.task(name="flaky", dag="r", retries=3)
    def flaky(context: RunContext[None]) -> int:
        nonlocal calls
        calls += 1
        if context.attempt < 3:
            raise ConnectionError(f"attempt {context.attempt} lost the connection")
        return context.attempt

    @engine.task(name="after", dag="r", deps=[flaky])
    async def after(flaky: int) -> int:
        return flaky * 10

    async with engine:
        run_id = await engine.run_once("r")
    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    flaky_report = report["tasks"]["flaky"]
    assert calls == 3
    assert flaky_report["status"] == "SUCCESS"
    assert flaky_report["attempt"] == 3
    assert flaky_report["result"] == 3
    assert flaky_report["error"] is None
    assert flaky_report["traceback"] is None
    assert report["tasks"]["after"]["result"] == 30


async def test_retry_delays_back_off_on_the_engine_clock(virtual_clock: VirtualClock) -> None:
    engine = build_default_engine(clock=virtual_clock)

    @engine.task(name="flaky", dag="r", retries=3, retry_delay_s=1.0, retry_backoff=2.0)
    def flaky() -> None:
        raise ValueError("down")

    async with engine:
        run_id = await engine.run_once("r")
    assert virtual_clock.sleeps == [1.0, 2.0, 4.0]
    task_report = engine.get_run_report(run_id)["tasks"]["flaky"]
    assert task_report["attempt"] == 4
    # The last attempt started after 1 + 2 + 4 seconds of (virtual) back-off.
    assert task_report["started_at"] == WALL_START + 7.0


async def test_retry_delay_without_backoff_and_without_delay(virtual_clock: VirtualClock) -> None:
    engine = build_default_engine(clock=virtual_clock)

    @engine.task(name="steady", dag="r", retries=3, retry_delay_s=0.5, retry_backoff=1.0)
    def steady() -> None:
        raise ValueError("down")

    @engine.task(name="no_delay", dag="r2", retries=2)
    def no_delay() -> None:
        raise ValueError("down")

    async with engine:
        await engine.run_once("r")
        assert virtual_clock.sleeps == [0.5, 0.5, 0.5]
        virtual_clock.sleeps.clear()
        run_id = await engine.run_once("r2")
    assert virtual_clock.sleeps == []
    assert engine.get_run_report(run_id)["tasks"]["no_delay"]["attempt"] == 3


async def test_long_back_off_costs_no_real_time(virtual_clock: VirtualClock) -> None:
    engine = build_default_engine(clock=virtual_clock)
    calls = 0

    @engine.task(name="hourly", dag="r", retries=2, retry_delay_s=3600.0, retry_backoff=3.0)
    async def hourly() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError("not yet")
        return "done"

    async with engine:
        run_id = await engine.run_once("r")
    assert virtual_clock.sleeps == [3600.0, 10800.0]
    report = engine.get_run_report(run_id)
    assert report["tasks"]["hourly"]["result"] == "done"
    assert report["finished_at"] == WALL_START + 14400.0


async def test_retry_jitter_keeps_delays_within_the_fraction(virtual_clock: VirtualClock) -> None:
    engine = build_default_engine(clock=virtual_clock)

    @engine.task(
        name="jittery",
        dag="r",
        retries=30,
        retry_delay_s=10.0,
        retry_backoff=1.0,
        retry_jitter=0.2,
    )
    def jittery() -> None:
        raise ValueError("down")

    async with engine:
        await engine.run_once("r")
    assert len(virtual_clock.sleeps) == 30
    assert all(8.0 <= d <= 12.0 for d in virtual_clock.sleeps), virtual_clock.sleeps
    assert len(set(virtual_clock.sleeps)) > 1  # jitter actually varies the delays


async def test_retry_on_limits_which_errors_are_retried() -> None:
    engine = build_default_engine()
    calls = {"type_error": 0, "value_error": 0}

    @engine.task(name="wrong_type", dag="r", retries=3, retry_on=(ValueError,))
    def wrong_type() -> None:
        calls["type_error"] += 1
        raise TypeError("not retryable")

    @engine.task(name="wrong_value", dag="r", retries=3, retry_on=ValueError)
    def wrong_value() -> None:
        calls["value_error"] += 1
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad byte")  # a ValueError subclass

    async with engine:
        run_id = await engine.run_once("r")
    tasks = engine.get_run_report(run_id)["tasks"]
    assert calls == {"type_error": 1, "value_error": 4}
    assert tasks["wrong_type"]["status"] == "FAILED"
    assert tasks["wrong_type"]["attempt"] == 1
    assert tasks["wrong_type"]["error"] == "TypeError: not retryable"
    assert tasks["wrong_value"]["attempt"] == 4


async def test_descendants_are_skipped_only_after_retries_are_exhausted(
    virtual_clock: VirtualClock,
) -> None:
    engine_box: list[Any] = []
    child_status_during_retries: list[str] = []
    order: list[str] = []

    class Watch(RunHook):
        def on_task_retry(self, event: TaskRetryEvent) -> None:
            order.append(f"retry {event.task_name} {event.attempt}")
            report = engine_box[0].get_run_report(event.run_id)
            child_status_during_retries.append(report["tasks"]["child"]["status"])

        def on_task_failure(self, event: TaskFailureEvent) -> None:
            order.append(f"failure {event.task_name} {event.attempt} final={event.final}")

        def on_task_skip(self, event: TaskSkipEvent) -> None:
            order.append(f"skip {event.task_name}")

    engine = build_default_engine(clock=virtual_clock, hooks=[Watch()])
    engine_box.append(engine)

    @engine.task(name="parent", dag="r", retries=2, retry_delay_s=1.0)
    def parent() -> int:
        raise ValueError("down")

    @engine.task(name="child", dag="r", deps=[parent])
    def child(parent: int) -> int:
        return parent

    async with engine:
        run_id = await engine.run_once("r")
    assert order == [
        "failure parent 1 final=False",
        "retry parent 1",
        "failure parent 2 final=False",
        "retry parent 2",
        "failure parent 3 final=True",
        "skip child",
    ]
    assert child_status_during_retries == ["PENDING", "PENDING"]
    assert engine.get_run_report(run_id)["tasks"]["child"]["status"] == "SKIPPED"


async def test_children_run_when_a_retried_parent_finally_succeeds() -> None:
    engine = build_default_engine()
    attempts = 0

    @engine.task(name="parent", dag="r", retries=1)
    async def parent() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ValueError("first try fails")
        return 5

    @engine.task(name="child", dag="r", deps=[parent])
    def child(parent: int) -> int:
        return parent + 1

    async with engine:
        run_id = await engine.run_once("r")
    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["child"]["result"] == 6
    assert report["tasks"]["child"]["attempt"] == 1


async def test_system_clock_sleeps_between_retries() -> None:
    engine = build_default_engine()  # SystemClock
    attempts: list[int] = []

    @engine.task(name="flaky", dag="d", retries=1, retry_delay_s=0.001)
    async def flaky() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            raise OSError("first attempt fails")
        return "ok"

    run_id = await asyncio.wait_for(engine.run_once("d"), WAIT_S)

    report = engine.get_run_report(run_id)
    assert report["tasks"]["flaky"]["status"] == "SUCCESS"
    assert report["tasks"]["flaky"]["attempt"] == 2
    assert attempts == [1, 2]
    engine.close()


async def test_a_clock_whose_sleep_raises_retries_at_once_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = BrokenSleepClock()
    engine = build_default_engine(clock=clock)
    attempts: list[int] = []

    @engine.task(name="flaky", dag="d", retries=2, retry_delay_s=30.0)
    def flaky() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            raise OSError("first attempt fails")
        return "ok"

    with caplog.at_level(logging.ERROR, logger="flowrun"):
        run_id = await asyncio.wait_for(engine.run_once("d"), WAIT_S)

    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["flaky"]["attempt"] == 2
    assert report["tasks"]["flaky"]["result"] == "ok"
    assert clock.sleeps == [30.0]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        "clock.sleep(30.0) failed" in r.getMessage() and "'flaky'" in r.getMessage() for r in errors
    )
    engine.close()


# -- async timeouts ---------------------------------------------------------------------------


async def test_async_timeout_fails_the_attempt_with_a_clear_error() -> None:
    engine = build_default_engine()
    never = asyncio.Event()

    @engine.task(name="slow", dag="t", timeout_s=0.05)
    async def slow() -> None:
        await never.wait()

    @engine.task(name="downstream", dag="t", deps=[slow])
    def downstream(slow: None) -> None:
        return None

    async with engine:
        run_id = await engine.run_once("t")
    tasks = engine.get_run_report(run_id)["tasks"]
    assert tasks["slow"]["status"] == "FAILED"
    assert tasks["slow"]["error"] == (
        "TaskTimeoutError: task 'slow' timed out after 0.05s (timeout_s=0.05) in DAG 't'"
    )
    assert tasks["downstream"]["status"] == "SKIPPED"
    assert issubclass(TaskTimeoutError, TimeoutError)


async def test_a_timeout_error_raised_by_the_task_is_its_own_error() -> None:
    engine = build_default_engine()
    never = asyncio.Event()

    @engine.task(name="api_async", dag="t", timeout_s=30)
    async def api_async() -> None:
        raise TimeoutError("the upstream API took too long")

    @engine.task(name="api_sync", dag="t", timeout_s=30)
    def api_sync() -> None:
        raise TimeoutError("socket read timed out")

    @engine.task(name="inner_scope", dag="t", timeout_s=30)
    async def inner_scope() -> None:
        async with asyncio.timeout(0.01):
            await never.wait()

    async with engine:
        run_id = await engine.run_once("t")
    tasks = engine.get_run_report(run_id)["tasks"]
    assert tasks["api_async"]["error"] == "TimeoutError: the upstream API took too long"
    assert tasks["api_sync"]["error"] == "TimeoutError: socket read timed out"
    inner = tasks["inner_scope"]["error"]
    assert inner.startswith("TimeoutError")
    assert "timeout_s" not in inner
    assert "TaskTimeoutError" not in inner


async def test_async_timeout_is_retried_and_can_then_succeed() -> None:
    engine = build_default_engine()
    never = asyncio.Event()

    @engine.task(name="slow_once", dag="t", timeout_s=0.05, retries=1)
    async def slow_once(context: RunContext[None]) -> int:
        if context.attempt == 1:
            await never.wait()
        return context.attempt

    async with engine:
        run_id = await engine.run_once("t")
    report = engine.get_run_report(run_id)["tasks"]["slow_once"]
    assert report["status"] == "SUCCESS"
    assert report["attempt"] == 2
    assert report["result"] == 2


async def test_retry_on_decides_whether_a_timeout_is_retried() -> None:
    engine = build_default_engine()
    never = asyncio.Event()
    calls = {"value_only": 0, "timeouts": 0}

    @engine.task(name="value_only", dag="t", timeout_s=0.05, retries=2, retry_on=(ValueError,))
    async def value_only() -> None:
        calls["value_only"] += 1
        await never.wait()

    @engine.task(name="timeouts", dag="t", timeout_s=0.05, retries=1, retry_on=(TimeoutError,))
    async def timeouts() -> None:
        calls["timeouts"] += 1
        await never.wait()

    async with engine:
        await engine.run_once("t")
    assert calls == {"value_only": 1, "timeouts": 2}


async def test_async_context_reports_the_time_remaining() -> None:
    engine = build_default_engine()

    @engine.task(name="bounded", dag="t", timeout_s=30)
    async def bounded(context: RunContext[None]) -> float | None:
        return context.time_remaining_s()

    @engine.task(name="unbounded", dag="t")
    async def unbounded(context: RunContext[None]) -> float | None:
        return context.time_remaining_s()

    @engine.task(name="unbounded_sync", dag="t")
    def unbounded_sync(context: RunContext[None]) -> float | None:
        return context.time_remaining_s()

    async with engine:
        run_id = await engine.run_once("t")
    tasks = engine.get_run_report(run_id)["tasks"]
    remaining = tasks["bounded"]["result"]
    assert isinstance(remaining, float)
    assert 0.0 < remaining <= 30.0
    assert tasks["unbounded"]["result"] is None
    assert tasks["unbounded_sync"]["result"] is None


async def test_sync_context_time_remaining_counts_down() -> None:
    engine = build_default_engine()

    @engine.task(name="bounded", dag="t", timeout_s=30)
    def bounded(context: RunContext[None]) -> tuple[float | None, float | None]:
        first = context.time_remaining_s()
        moved_from = time.monotonic()
        while time.monotonic() <= moved_from + 0.01:  # bounded busy-wait: let time pass
            pass
        return first, context.time_remaining_s()

    async with engine:
        run_id = await engine.run_once("t")
    first, second = engine.get_run_report(run_id)["tasks"]["bounded"]["result"]
    assert isinstance(first, float)
    assert isinstance(second, float)
    assert 0.0 < second < first <= 30.0


# -- sync timeouts ----------------------------------------------------------------------------


async def test_sync_timeout_counts_from_thread_start_not_from_queueing() -> None:
    # One worker thread: "queued" (timeout 0.3s) waits in the pool's queue behind "blocker",
    # which holds the thread until more than 0.3s have passed since "queued" was submitted.
    # Counted from queueing, "queued" would time out; counted from its thread start, it
    # finishes instantly.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="single")
    queued_submitted_at: list[float] = []
    queued_launched = threading.Event()
    blocker_done = threading.Event()

    def on_task_start(event: TaskStartEvent) -> None:
        if event.task_name == "queued":  # emitted after the attempt was handed to the pool
            queued_submitted_at.append(time.monotonic())
            queued_launched.set()

    engine = build_default_engine(
        executor=executor, max_parallel=2, hooks=[fn_hook(on_task_start=on_task_start)]
    )

    @engine.task(name="blocker", dag="q")
    def blocker() -> float:
        assert queued_launched.wait(5)
        release_at = queued_submitted_at[0] + 0.3 + 0.2
        while time.monotonic() < release_at:  # bounded busy-wait on the condition
            pass
        finished = time.time()
        blocker_done.set()
        return finished

    @engine.task(name="queued", dag="q", timeout_s=0.3)
    def queued() -> bool:
        return blocker_done.is_set()

    try:
        assert engine.list_tasks("q") == ["blocker", "queued"]
        async with engine:
            run_id = await engine.run_once("q")
    finally:
        executor.shutdown()
    tasks = engine.get_run_report(run_id)["tasks"]
    assert tasks["blocker"]["status"] == "SUCCESS"
    assert tasks["queued"]["status"] == "SUCCESS", tasks["queued"]["error"]
    assert tasks["queued"]["result"] is True  # it really waited behind the blocker
    # started_at is when the worker thread started the attempt, not when it was queued.
    assert tasks["queued"]["started_at"] >= tasks["blocker"]["result"]


async def test_timed_out_sync_attempt_frees_its_slot_and_is_told_to_stop() -> None:
    executor = ThreadPoolExecutor(max_workers=2)
    engine = build_default_engine(executor=executor, max_parallel=1)
    stuck_started = threading.Event()
    release = threading.Event()
    stuck_done = threading.Event()
    seen: dict[str, Any] = {}

    @engine.task(name="stuck", dag="t", timeout_s=0.05)
    def stuck(context: RunContext[None]) -> str:
        try:
            seen["remaining_at_start"] = context.time_remaining_s()
            seen["cancelled_at_start"] = context.cancelled()
            stuck_started.set()
            release.wait(5)
            seen["cancelled_after"] = context.cancelled()
            seen["remaining_after"] = context.time_remaining_s()
            try:
                context.raise_if_cancelled()
            except TaskCancelledError as exc:
                seen["raised"] = exc
            return "late result"
        finally:
            stuck_done.set()

    @engine.task(name="other", dag="t")
    def other() -> bool:
        # With max_parallel=1 this only starts once the timed-out attempt gave its slot back,
        # while the stuck thread is still blocked.
        still_blocked = stuck_started.is_set() and not stuck_done.is_set()
        release.set()
        return still_blocked

    try:
        assert engine.list_tasks("t") == ["stuck", "other"]
        async with engine:
            run_id = await engine.run_once("t")
    finally:
        release.set()
        # Wait for the abandoned thread to return, and for the loop to see its late result.
        await asyncio.to_thread(executor.shutdown)
    assert stuck_done.is_set()

    report = engine.get_run_report(run_id)
    stuck_report, other_report = report["tasks"]["stuck"], report["tasks"]["other"]
    assert other_report["status"] == "SUCCESS"
    assert other_report["result"] is True
    assert stuck_report["status"] == "FAILED"
    assert stuck_report["result"] is None  # the late result is discarded
    error = stuck_report["error"]
    assert error.startswith("TaskTimeoutError: task 'stuck' timed out after 0.05s (timeout_s=0.05)")
    assert "cannot be killed" in error
    assert "context.cancelled()" in error

    assert seen["cancelled_at_start"] is False
    start_remaining = seen["remaining_at_start"]
    assert isinstance(start_remaining, float)
    assert 0.0 <= start_remaining <= 0.05
    assert seen["cancelled_after"] is True
    assert seen["remaining_after"] == 0.0  # the deadline has passed
    assert isinstance(seen["raised"], TaskCancelledError)
    assert "stuck" in str(seen["raised"])


async def test_sync_timeout_is_retried_and_the_late_result_is_discarded() -> None:
    executor = ThreadPoolExecutor(max_workers=2)
    engine = build_default_engine(executor=executor)
    release = threading.Event()
    first_done = threading.Event()

    @engine.task(name="hangs_once", dag="t", timeout_s=0.05, retries=1)
    def hangs_once(context: RunContext[None]) -> str:
        if context.attempt == 1:
            release.wait(5)
            first_done.set()
            return "late first attempt"
        return "second attempt"

    try:
        async with engine:
            run_id = await engine.run_once("t")
    finally:
        release.set()
        # Wait for the abandoned first attempt to return, and for the loop to see its result.
        await asyncio.to_thread(executor.shutdown)
    assert first_done.is_set()
    report = engine.get_run_report(run_id)
    task_report = report["tasks"]["hangs_once"]
    assert report["status"] == "SUCCESS"
    assert task_report["status"] == "SUCCESS"
    assert task_report["attempt"] == 2
    assert task_report["result"] == "second attempt"


@pytest.mark.parametrize("is_async", [False, True])
async def test_timed_out_task_with_retries_exhausted_skips_children(is_async: bool) -> None:
    engine = build_default_engine(max_workers=4)
    release = threading.Event()
    never = asyncio.Event()
    calls = 0

    if is_async:

        @engine.task(name="slow", dag="t", timeout_s=0.05, retries=1)
        async def slow_async() -> None:
            nonlocal calls
            calls += 1
            await never.wait()

    else:

        @engine.task(name="slow", dag="t", timeout_s=0.05, retries=1)
        def slow_sync() -> None:
            nonlocal calls
            calls += 1
            release.wait(5)

    @engine.task(name="child", dag="t", deps=["slow"])
    def child(slow: None) -> None:
        return None

    try:
        async with engine:
            run_id = await engine.run_once("t")
    finally:
        release.set()
    tasks = engine.get_run_report(run_id)["tasks"]
    assert calls == 2
    assert tasks["slow"]["status"] == "FAILED"
    assert tasks["slow"]["attempt"] == 2
    assert "timed out after 0.05s" in tasks["slow"]["error"]
    assert tasks["child"]["status"] == "SKIPPED"
