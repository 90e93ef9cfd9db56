"""Cancelling a run and BaseExceptions (from tasks or hooks) finalize the run before propagating.

KeyboardInterrupt and SystemExit escape an event loop, so those tests run their own loop with
``asyncio.run`` inside a plain ``def`` test.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support import new_clock

from flowrun import (
    DagEndEvent,
    DagStartEvent,
    Engine,
    RunContext,
    TaskSuccessEvent,
    build_default_engine,
    fn_hook,
)
from flowrun.testing import VirtualClock

WAIT_S = 5.0  # generous upper bound for an event that is expected to happen


class StuckClock(VirtualClock):
    """A clock whose ``sleep`` never returns: a retry delay that outlasts the run."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = asyncio.Event()
        self.sleep_cancelled = False

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.sleeping.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.sleep_cancelled = True
            raise


def assert_final(report: dict[str, Any]) -> None:
    """No run or task is left RUNNING (or PENDING) once run_once is over."""
    assert report["status"] in ("SUCCESS", "FAILED")
    assert report["finished_at"] is not None
    for name, task in report["tasks"].items():
        assert task["status"] in ("SUCCESS", "FAILED", "SKIPPED"), name


def only_run(engine: Engine) -> dict[str, Any]:
    runs = engine.list_runs()
    assert len(runs) == 1
    return runs[0]


# -- cancelling the run_once coroutine ----------------------------------------------------


async def test_cancelling_run_once_finalizes_the_run_and_reraises() -> None:
    ends: list[DagEndEvent] = []
    engine = build_default_engine(hooks=[fn_hook(on_dag_end=ends.append)], clock=new_clock())
    scope = engine.dag("c")
    started = asyncio.Event()
    saw_cancel = asyncio.Event()
    calls: Counter[str] = Counter()

    @scope.task(name="quick")
    def quick() -> int:
        calls["quick"] += 1
        return 1

    @scope.task(name="slow", deps=[quick])
    async def slow(quick: int) -> int:
        calls["slow"] += 1
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            saw_cancel.set()
            raise
        return quick

    @scope.task(name="after", deps=[slow])
    def after(slow: int) -> int:
        calls["after"] += 1
        return slow

    running = asyncio.create_task(scope.run_once())
    await asyncio.wait_for(started.wait(), WAIT_S)
    running.cancel()

    with pytest.raises(asyncio.CancelledError):
        await running

    await asyncio.wait_for(saw_cancel.wait(), WAIT_S)  # the task's coroutine was cancelled
    report = only_run(engine)
    assert_final(report)
    assert report["status"] == "FAILED"
    assert report["tasks"]["quick"]["status"] == "SUCCESS"
    assert report["tasks"]["slow"]["status"] == "FAILED"
    assert "cancelled" in report["tasks"]["slow"]["error"].lower()
    assert report["tasks"]["after"]["status"] == "SKIPPED"
    assert calls == Counter(quick=1, slow=1)
    assert [(e.run_id, e.status) for e in ends] == [(report["run_id"], "FAILED")]


async def test_an_abandoned_async_task_raising_on_cancel_is_not_logged_as_unretrieved() -> None:
    # The engine learns of an async attempt's end from inside its coroutine, not through a
    # done callback; an attempt abandoned by a cancelled run gets one, so that its late
    # error is retrieved and asyncio does not log "Task exception was never retrieved".
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    engine = build_default_engine(clock=new_clock())
    scope = engine.dag("c")
    started = asyncio.Event()
    raised = asyncio.Event()

    @scope.task(name="stubborn")
    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raised.set()
            raise ValueError("cleanup went wrong") from None

    running = asyncio.create_task(scope.run_once())
    await asyncio.wait_for(started.wait(), WAIT_S)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await asyncio.wait_for(raised.wait(), WAIT_S)
    report = only_run(engine)
    assert report["tasks"]["stubborn"]["status"] == "FAILED"
    del running
    gc.collect()  # an unretrieved exception is reported when its task is collected
    await asyncio.sleep(0)
    assert [ctx.get("message") for ctx in reported] == []


async def test_cancelled_run_frees_its_slots_and_skips_tasks_waiting_for_one() -> None:
    engine = build_default_engine(max_parallel=1, clock=new_clock())
    scope = engine.dag("c")
    started = asyncio.Event()
    gate = asyncio.Event()
    calls: Counter[str] = Counter()

    @scope.task(name="first")
    async def first() -> int:
        calls["first"] += 1
        started.set()
        await gate.wait()
        return 1

    @scope.task(name="second")  # independent, but no slot is free while first runs
    async def second() -> int:
        calls["second"] += 1
        return 2

    running = asyncio.create_task(scope.run_once())
    await asyncio.wait_for(started.wait(), WAIT_S)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    report = only_run(engine)
    assert_final(report)
    assert report["tasks"]["first"]["status"] == "FAILED"
    assert report["tasks"]["second"]["status"] == "SKIPPED"
    assert calls == Counter(first=1)

    gate.set()  # with the single slot leaked, this run would never start a task
    again = await asyncio.wait_for(scope.run_once(), WAIT_S)
    assert engine.get_run_report(again)["status"] == "SUCCESS"
    assert calls == Counter(first=2, second=1)


async def test_cancelled_run_can_be_resumed() -> None:
    engine = build_default_engine(clock=new_clock())
    scope = engine.dag("c")
    started = asyncio.Event()
    gate = asyncio.Event()
    calls: Counter[str] = Counter()

    @scope.task(name="quick")
    def quick() -> int:
        calls["quick"] += 1
        return 20

    @scope.task(name="slow", deps=[quick])
    async def slow(quick: int) -> int:
        calls["slow"] += 1
        started.set()
        await gate.wait()
        return quick + 1

    running = asyncio.create_task(scope.run_once())
    await asyncio.wait_for(started.wait(), WAIT_S)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    gate.set()

    resumed = await engine.resume(only_run(engine)["run_id"])

    report = engine.get_run_report(resumed)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["slow"]["result"] == 21
    assert calls == Counter(quick=1, slow=2)


async def test_cancelling_a_run_signals_an_in_flight_sync_task() -> None:
    engine = build_default_engine(clock=new_clock())
    scope = engine.dag("c")
    started = threading.Event()
    release = threading.Event()
    contexts: list[RunContext[None]] = []

    @scope.task(name="blocking")
    def blocking(context: RunContext[None]) -> int:
        contexts.append(context)
        started.set()
        release.wait(WAIT_S)
        return 1

    running = asyncio.create_task(scope.run_once())
    try:
        assert await asyncio.to_thread(started.wait, WAIT_S)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        report = only_run(engine)
        assert_final(report)
        assert report["status"] == "FAILED"
        assert report["tasks"]["blocking"]["status"] == "FAILED"
        assert "cancelled" in report["tasks"]["blocking"]["error"].lower()
        assert contexts[0].cancelled()
    finally:
        release.set()
        engine.close()


async def test_cancelling_during_a_retry_delay() -> None:
    clock = StuckClock()
    engine = build_default_engine(clock=clock)
    scope = engine.dag("c")
    calls: Counter[str] = Counter()

    @scope.task(name="flaky", retries=3, retry_delay_s=60.0)
    async def flaky() -> int:
        calls["flaky"] += 1
        raise RuntimeError("not yet")

    @scope.task(name="after", deps=[flaky])
    def after() -> None:
        calls["after"] += 1

    running = asyncio.create_task(scope.run_once())
    await asyncio.wait_for(clock.sleeping.wait(), WAIT_S)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    report = only_run(engine)
    assert_final(report)
    assert report["status"] == "FAILED"
    assert report["tasks"]["after"]["status"] == "SKIPPED"
    assert calls == Counter(flaky=1)
    assert clock.sleeps == [60.0]
    assert clock.sleep_cancelled


async def test_wait_for_timeout_around_run_once_finalizes_the_run() -> None:
    engine = build_default_engine(clock=new_clock())
    scope = engine.dag("c")

    @scope.task(name="forever")
    async def forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(scope.run_once(), timeout=0.05)

    report = only_run(engine)
    assert_final(report)
    assert report["status"] == "FAILED"
    assert "cancelled" in report["tasks"]["forever"]["error"].lower()


# -- BaseException raised by a task --------------------------------------------------------


def run_with_bomb(exc: BaseException, bomb_is_async: bool) -> dict[str, Any]:
    """Run DAG ``b``: ``bomb`` raises ``exc`` once two siblings (async, sync) are in flight.

    Returns what was observed; ``report`` is absent when the exception did not propagate.
    """
    seen: dict[str, Any] = {"ends": [], "async_cancelled": False}
    engine = build_default_engine(
        max_parallel=4,
        max_workers=4,
        hooks=[fn_hook(on_dag_end=seen["ends"].append)],
        clock=new_clock(),
    )
    scope = engine.dag("b")
    async_started = threading.Event()
    sync_started = threading.Event()
    release = threading.Event()
    contexts: list[RunContext[None]] = []

    @scope.task(name="async_sibling")
    async def async_sibling() -> None:
        async_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen["async_cancelled"] = True
            raise

    @scope.task(name="sync_sibling")
    def sync_sibling(context: RunContext[None]) -> None:
        contexts.append(context)
        sync_started.set()
        release.wait(WAIT_S)

    if bomb_is_async:

        @scope.task(name="bomb")
        async def bomb_async() -> None:
            await asyncio.to_thread(sync_started.wait, WAIT_S)
            assert async_started.is_set()
            raise exc

    else:

        @scope.task(name="bomb")
        def bomb_sync() -> None:
            sync_started.wait(WAIT_S)
            async_started.wait(WAIT_S)
            raise exc

    @scope.task(name="after_bomb", deps=["bomb"])
    def after_bomb() -> None:
        raise AssertionError("must not run")

    @scope.task(name="after_sibling", deps=[async_sibling])
    def after_sibling() -> None:
        raise AssertionError("must not run")

    try:
        with pytest.raises(type(exc)) as info:
            asyncio.run(scope.run_once())
        seen["raised"] = info.value
        seen["report"] = only_run(engine)
        seen["sync_context_cancelled"] = contexts[0].cancelled()
    finally:
        release.set()
        engine.close()
    return seen


@pytest.mark.parametrize("bomb_is_async", [True, False], ids=["async", "sync"])
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_from_a_task_finalizes_the_run_then_propagates(
    exc_type: type[BaseException], bomb_is_async: bool
) -> None:
    exc = exc_type("stop now")

    seen = run_with_bomb(exc, bomb_is_async)

    assert seen["raised"] is exc
    report = seen["report"]
    assert_final(report)
    assert report["status"] == "FAILED"
    tasks = report["tasks"]
    assert tasks["bomb"]["status"] == "FAILED"
    assert exc_type.__name__ in tasks["bomb"]["error"]
    for sibling in ("async_sibling", "sync_sibling"):
        assert tasks[sibling]["status"] == "FAILED", sibling
        assert "cancelled" in tasks[sibling]["error"].lower(), sibling
    assert tasks["after_bomb"]["status"] == "SKIPPED"
    assert tasks["after_sibling"]["status"] == "SKIPPED"
    assert seen["async_cancelled"]
    assert seen["sync_context_cancelled"]
    assert [e.status for e in seen["ends"]] == ["FAILED"]


def test_task_raising_cancelled_error_finalizes_the_run_then_propagates() -> None:
    seen = run_with_bomb(asyncio.CancelledError("task gave up"), bomb_is_async=True)

    report = seen["report"]
    assert_final(report)
    assert report["status"] == "FAILED"
    assert report["tasks"]["bomb"]["status"] == "FAILED"
    assert "CancelledError" in report["tasks"]["bomb"]["error"]
    assert report["tasks"]["async_sibling"]["status"] == "FAILED"
    assert report["tasks"]["after_bomb"]["status"] == "SKIPPED"
    assert seen["async_cancelled"]
    assert seen["sync_context_cancelled"]
    assert [e.status for e in seen["ends"]] == ["FAILED"]


async def test_task_raising_cancelled_error_in_a_running_loop() -> None:
    ends: list[DagEndEvent] = []
    engine = build_default_engine(hooks=[fn_hook(on_dag_end=ends.append)], clock=new_clock())
    scope = engine.dag("c")
    sibling_cancelled = asyncio.Event()
    sibling_started = asyncio.Event()

    @scope.task(name="sibling")
    async def sibling() -> None:
        sibling_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            sibling_cancelled.set()
            raise

    @scope.task(name="quitter")
    async def quitter() -> None:
        await sibling_started.wait()
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await scope.run_once()

    await asyncio.wait_for(sibling_cancelled.wait(), WAIT_S)
    report = only_run(engine)
    assert_final(report)
    assert report["tasks"]["quitter"]["status"] == "FAILED"
    assert report["tasks"]["sibling"]["status"] == "FAILED"
    assert [e.status for e in ends] == ["FAILED"]


def test_keyboard_interrupt_keeps_a_sibling_that_completed_in_the_same_loop_turn() -> None:
    engine = build_default_engine(max_parallel=4, clock=new_clock())

    # Registered first so it is launched, finishes and is handled first; the sibling's
    # completion is then already queued when the interrupt aborts the run.
    @engine.task(name="interrupter", dag="d")
    async def interrupter() -> None:
        raise KeyboardInterrupt

    @engine.task(name="sibling", dag="d")
    async def sibling() -> int:
        return 42

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(engine.run_once("d"))

    [report] = engine.list_runs()
    assert report["status"] == "FAILED"
    assert report["finished_at"] is not None
    assert report["tasks"]["interrupter"]["status"] == "FAILED"
    assert "KeyboardInterrupt" in report["tasks"]["interrupter"]["error"]
    assert report["tasks"]["sibling"]["status"] == "SUCCESS"
    assert report["tasks"]["sibling"]["result"] == 42
    engine.close()


def test_an_interrupt_abandons_a_running_sync_attempt_instead_of_timing_it_out() -> None:
    pool = ThreadPoolExecutor(max_workers=2)
    engine = build_default_engine(executor=pool, clock=new_clock())
    started = threading.Event()
    release = threading.Event()
    saw_cancel: list[bool] = []

    @engine.task(name="slow", dag="d", timeout_s=30.0)
    def slow(ctx: RunContext[None]) -> str:
        started.set()
        assert release.wait(WAIT_S)
        saw_cancel.append(ctx.cancelled())
        return "late"

    @engine.task(name="boom", dag="d")
    async def boom() -> None:
        # The thread announced its start (arming the timeout) before ``started`` was set.
        assert await asyncio.to_thread(started.wait, WAIT_S)
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(engine.run_once("d", RunContext()))
    finally:
        release.set()
        pool.shutdown(wait=True)

    [report] = engine.list_runs()
    assert report["status"] == "FAILED"
    slow_task = report["tasks"]["slow"]
    assert slow_task["status"] == "FAILED"
    assert "run aborted by KeyboardInterrupt" in slow_task["error"]
    assert "timed out" not in slow_task["error"]
    assert slow_task["result"] is None
    assert report["tasks"]["boom"]["status"] == "FAILED"
    assert saw_cancel == [True]


# -- BaseException raised by a hook --------------------------------------------------------


def test_keyboard_interrupt_from_a_task_success_hook_finalizes_the_run() -> None:
    ends: list[DagEndEvent] = []
    calls: Counter[str] = Counter()

    def on_success(event: TaskSuccessEvent) -> None:
        if event.task_name == "first":
            raise KeyboardInterrupt

    engine = build_default_engine(
        hooks=[fn_hook(on_task_success=on_success, on_dag_end=ends.append)], clock=new_clock()
    )
    scope = engine.dag("h")

    @scope.task(name="first")
    async def first() -> int:
        calls["first"] += 1
        return 1

    @scope.task(name="second", deps=[first])
    async def second(first: int) -> int:
        calls["second"] += 1
        await asyncio.Event().wait()
        return first

    @scope.task(name="third", deps=[second])
    def third() -> None:
        calls["third"] += 1

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(scope.run_once())

    report = only_run(engine)
    assert_final(report)
    assert report["status"] == "FAILED"
    assert report["tasks"]["first"]["status"] == "SUCCESS"
    assert report["tasks"]["second"]["status"] in ("FAILED", "SKIPPED")
    assert report["tasks"]["third"]["status"] == "SKIPPED"
    assert calls["third"] == 0
    assert [e.status for e in ends] == ["FAILED"]


def test_system_exit_from_an_async_dag_start_hook_finalizes_the_run() -> None:
    ends: list[DagEndEvent] = []
    calls: Counter[str] = Counter()

    async def on_start(event: object) -> None:
        await asyncio.sleep(0)
        raise SystemExit(3)

    engine = build_default_engine(
        hooks=[fn_hook(on_dag_start=on_start, on_dag_end=ends.append)], clock=new_clock()
    )
    scope = engine.dag("h")

    @scope.task(name="a")
    def a() -> None:
        calls["a"] += 1

    @scope.task(name="b", deps=[a])
    def b() -> None:
        calls["b"] += 1

    with pytest.raises(SystemExit) as info:
        asyncio.run(scope.run_once())

    assert info.value.code == 3
    report = only_run(engine)
    assert_final(report)
    assert report["status"] == "FAILED"
    assert {t["status"] for t in report["tasks"].values()} == {"SKIPPED"}
    assert sum(calls.values()) == 0
    assert [e.status for e in ends] == ["FAILED"]


def test_keyboard_interrupt_from_the_dag_end_hook_propagates_after_the_run_is_final() -> None:
    def on_end(event: DagEndEvent) -> None:
        raise KeyboardInterrupt

    engine = build_default_engine(hooks=[fn_hook(on_dag_end=on_end)], clock=new_clock())
    scope = engine.dag("h")

    @scope.task(name="a")
    def a() -> int:
        return 1

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(scope.run_once())

    report = only_run(engine)
    assert_final(report)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["a"]["result"] == 1


def test_engine_runs_again_after_a_keyboard_interrupt() -> None:
    engine = build_default_engine(max_parallel=1, clock=new_clock())
    scope = engine.dag("k")
    interrupt = [True]

    @scope.task(name="a")
    async def a() -> int:
        if interrupt[0]:
            raise KeyboardInterrupt
        return 1

    @scope.task(name="b")
    def b() -> int:
        return 2

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(scope.run_once())
    interrupt[0] = False

    run_id = asyncio.run(asyncio.wait_for(scope.run_once(), WAIT_S))

    assert engine.get_run_report(run_id)["status"] == "SUCCESS"
    engine.close()


def test_a_dag_end_hook_raising_while_aborting_does_not_mask_the_original_interrupt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ends: list[str] = []

    def on_end(event: DagEndEvent) -> None:
        ends.append(event.status)
        raise SystemExit(2)

    engine = build_default_engine(hooks=[fn_hook(on_dag_end=on_end)], clock=new_clock())

    @engine.task(name="boom", dag="d")
    async def boom() -> None:
        raise KeyboardInterrupt

    @engine.task(name="later", dag="d", deps=[boom])
    def later() -> None:
        return None

    with caplog.at_level(logging.ERROR, logger="flowrun"), pytest.raises(KeyboardInterrupt):
        asyncio.run(engine.run_once("d"))

    [report] = engine.list_runs()
    assert report["status"] == "FAILED"
    assert report["tasks"]["boom"]["status"] == "FAILED"
    assert report["tasks"]["later"]["status"] == "SKIPPED"
    assert ends == ["FAILED"]
    assert any(
        "error while finalizing aborted run" in r.getMessage()
        and report["run_id"] in r.getMessage()
        for r in caplog.records
    )
    engine.close()


# -- cancellation next to other runs of the same engine ----------------------------------


async def test_cancelling_one_run_hands_its_slot_to_a_waiting_run() -> None:
    waiter_queued = asyncio.Event()

    def on_start(event: DagStartEvent) -> None:
        if event.dag_name == "waiter":
            waiter_queued.set()  # the run asks for a slot right after this hook

    engine = build_default_engine(
        max_parallel=1, hooks=[fn_hook(on_dag_start=on_start)], clock=new_clock()
    )
    holder_started = asyncio.Event()
    calls: Counter[str] = Counter()

    @engine.task(name="hold", dag="holder")
    async def hold() -> None:
        calls["hold"] += 1
        holder_started.set()
        await asyncio.Event().wait()

    @engine.task(name="work", dag="waiter")
    async def work() -> int:
        calls["work"] += 1
        return 7

    holder = asyncio.create_task(engine.run_once("holder"))
    await asyncio.wait_for(holder_started.wait(), WAIT_S)
    waiter = asyncio.create_task(engine.run_once("waiter"))
    await asyncio.wait_for(waiter_queued.wait(), WAIT_S)
    assert calls["work"] == 0

    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    run_id = await asyncio.wait_for(waiter, WAIT_S)

    assert engine.get_run_report(run_id)["tasks"]["work"]["result"] == 7
    [held] = engine.list_runs(dag_name="holder")
    assert_final(held)
    assert held["status"] == "FAILED"


async def test_cancelling_a_run_that_waits_for_a_slot_does_not_take_the_slot_later() -> None:
    waiter_queued = asyncio.Event()

    def on_start(event: DagStartEvent) -> None:
        if event.dag_name == "waiter":
            waiter_queued.set()  # the run asks for a slot right after this hook

    engine = build_default_engine(
        max_parallel=1, hooks=[fn_hook(on_dag_start=on_start)], clock=new_clock()
    )
    holder_started = asyncio.Event()
    gate = asyncio.Event()
    calls: Counter[str] = Counter()

    @engine.task(name="hold", dag="holder")
    async def hold() -> None:
        calls["hold"] += 1
        holder_started.set()
        await gate.wait()

    @engine.task(name="work", dag="waiter")
    async def work() -> int:
        calls["work"] += 1
        return 7

    holder = asyncio.create_task(engine.run_once("holder"))
    await asyncio.wait_for(holder_started.wait(), WAIT_S)
    waiter = asyncio.create_task(engine.run_once("waiter"))
    await asyncio.wait_for(waiter_queued.wait(), WAIT_S)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    [cancelled] = engine.list_runs(dag_name="waiter")
    assert_final(cancelled)
    assert cancelled["tasks"]["work"]["status"] == "SKIPPED"

    gate.set()
    await asyncio.wait_for(holder, WAIT_S)
    again = await asyncio.wait_for(engine.run_once("waiter"), WAIT_S)

    assert engine.get_run_report(again)["status"] == "SUCCESS"
    assert calls == Counter(hold=1, work=1)
