"""Run hooks: RunHook subclasses and fn_hook, the seven events and their fields, order, async
hooks, and hooks that raise."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest

from flowrun import (
    DagEndEvent,
    DagStartEvent,
    RunHook,
    TaskFailureEvent,
    TaskRetryEvent,
    TaskSkipEvent,
    TaskStartEvent,
    TaskSuccessEvent,
    build_default_engine,
    fn_hook,
)
from flowrun.testing import RecordingHook, VirtualClock


def _summary(event: Any) -> str:
    name = type(event).__name__
    task_name = getattr(event, "task_name", None)
    return f"{name} {task_name}" if task_name else name


async def test_event_order_for_a_small_chain() -> None:
    recorder = RecordingHook()
    engine = build_default_engine(hooks=[recorder])

    @engine.task(name="a", dag="chain")
    def a() -> int:
        return 1

    @engine.task(name="b", dag="chain", deps=[a])
    async def b(a: int) -> int:
        return a + 1

    async with engine:
        run_id = await engine.run_once("chain")
    assert [_summary(e) for e in recorder.events] == [
        "DagStartEvent",
        "TaskStartEvent a",
        "TaskSuccessEvent a",
        "TaskStartEvent b",
        "TaskSuccessEvent b",
        "DagEndEvent",
    ]
    assert all(e.run_id == run_id for e in recorder.events)
    assert all(e.dag_name == "chain" for e in recorder.events)


async def test_all_seven_events_carry_their_fields(virtual_clock: VirtualClock) -> None:
    recorder = RecordingHook()
    engine = build_default_engine(hooks=[recorder], clock=virtual_clock)

    @engine.task(name="extract", dag="etl")
    def extract() -> list[int]:
        virtual_clock.advance(1.5)
        return [1, 2]

    @engine.task(name="flaky", dag="etl", deps=[extract], retries=2, retry_delay_s=4.0)
    def flaky(extract: list[int]) -> None:
        raise ConnectionError("refused")

    @engine.task(name="load", dag="etl", deps=[flaky])
    def load(flaky: None) -> None:
        return None

    async with engine:
        run_id = await engine.run_once("etl")

    (start,) = recorder.of(DagStartEvent)
    assert start.run_id == run_id
    assert start.dag_name == "etl"
    assert list(start.task_names) == ["extract", "flaky", "load"]

    starts = recorder.of(TaskStartEvent)
    assert [(e.task_name, e.attempt, e.max_attempts) for e in starts] == [
        ("extract", 1, 1),
        ("flaky", 1, 3),
        ("flaky", 2, 3),
        ("flaky", 3, 3),
    ]

    (success,) = recorder.of(TaskSuccessEvent)
    assert success.task_name == "extract"
    assert success.attempt == 1
    assert success.result == [1, 2]
    assert success.duration_s == 1.5

    retries = recorder.of(TaskRetryEvent)
    assert [(e.attempt, e.next_attempt, e.max_attempts, e.delay_s) for e in retries] == [
        (1, 2, 3, 4.0),
        (2, 3, 3, 8.0),
    ]
    for retry in retries:
        assert retry.task_name == "flaky"
        assert retry.error == "ConnectionError: refused"
        assert retry.duration_s >= 0.0

    failures = recorder.of(TaskFailureEvent)  # every failed attempt, as the seed's lifecycle
    assert [(e.task_name, e.attempt, e.final) for e in failures] == [
        ("flaky", 1, False),
        ("flaky", 2, False),
        ("flaky", 3, True),
    ]
    (failure,) = recorder.failures()  # the final one
    assert failure.attempt == 3
    assert failure.max_attempts == 3
    assert failure.error == "ConnectionError: refused"
    assert failure.duration_s >= 0.0
    assert [e.attempt for e in recorder.failures(final=False)] == [1, 2]
    assert recorder.failures(final=None) == failures
    # each retried attempt: its failure first, then the retry decision
    flaky_events = [type(e).__name__ for e in recorder.for_task("flaky")]
    assert flaky_events == [
        "TaskStartEvent",
        "TaskFailureEvent",
        "TaskRetryEvent",
        "TaskStartEvent",
        "TaskFailureEvent",
        "TaskRetryEvent",
        "TaskStartEvent",
        "TaskFailureEvent",
    ]

    (skip,) = recorder.of(TaskSkipEvent)
    assert skip.task_name == "load"
    assert "flaky" in skip.reason
    assert "fail" in skip.reason

    (end,) = recorder.of(DagEndEvent)
    assert end.status == "FAILED"
    assert end.duration_s == 1.5 + 4.0 + 8.0

    for event in recorder.events:
        assert event.run_id == run_id
        assert event.dag_name == "etl"
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.run_id = "changed"  # type: ignore[misc]


async def test_dag_end_event_status_matches_the_report() -> None:
    statuses: list[tuple[str, str]] = []
    engine_box: list[Any] = []

    def on_dag_end(event: DagEndEvent) -> None:
        report = engine_box[0].get_run_report(event.run_id)
        statuses.append((event.status, report["status"]))

    engine = build_default_engine(hooks=[fn_hook(on_dag_end=on_dag_end)])
    engine_box.append(engine)

    @engine.task(name="ok", dag="good")
    def ok() -> int:
        return 1

    @engine.task(name="bad", dag="bad")
    def bad() -> int:
        raise ValueError("x")

    async with engine:
        await engine.run_once("good")
        await engine.run_once("bad")
    assert statuses == [("SUCCESS", "SUCCESS"), ("FAILED", "FAILED")]


async def test_fn_hook_calls_plain_functions_and_lambdas() -> None:
    seen: list[str] = []
    hook = fn_hook(
        on_task_failure=lambda e: seen.append(f"FAIL {e.task_name}: {e.error}"),
        on_dag_end=lambda e: seen.append(f"DAG done: {e.dag_name} {e.status}"),
    )
    engine = build_default_engine(hooks=[hook])

    @engine.task(name="boom", dag="fn")
    def boom() -> None:
        raise RuntimeError("kaput")

    async with engine:
        await engine.run_once("fn")
    assert seen == ["FAIL boom: RuntimeError: kaput", "DAG done: fn FAILED"]
    assert isinstance(hook, RunHook)


async def test_async_hooks_are_awaited_in_order() -> None:
    log: list[str] = []

    async def slow_first(event: TaskStartEvent) -> None:
        log.append(f"first begins {event.task_name}")
        gate = asyncio.Event()
        asyncio.get_running_loop().call_soon(gate.set)
        await gate.wait()  # suspends: a hook that was not awaited in order would be overtaken
        log.append(f"first ends {event.task_name}")

    class Second(RunHook):
        async def on_task_start(self, event: TaskStartEvent) -> None:
            log.append(f"second {event.task_name}")

    def sync_third(event: TaskStartEvent) -> None:
        log.append(f"third {event.task_name}")

    engine = build_default_engine(
        hooks=[fn_hook(on_task_start=slow_first), Second(), fn_hook(on_task_start=sync_third)]
    )

    @engine.task(name="a", dag="order")
    def a() -> int:
        return 1

    @engine.task(name="b", dag="order", deps=[a])
    def b(a: int) -> int:
        return a

    async with engine:
        await engine.run_once("order")
    assert log == [
        "first begins a",
        "first ends a",
        "second a",
        "third a",
        "first begins b",
        "first ends b",
        "second b",
        "third b",
    ]


async def test_a_raising_hook_is_logged_and_the_run_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(RunHook):
        def on_dag_start(self, event: DagStartEvent) -> None:
            raise RuntimeError("metrics backend down")

        async def on_task_success(self, event: TaskSuccessEvent) -> None:
            raise ValueError("async hook bug")

        def on_dag_end(self, event: DagEndEvent) -> None:
            raise KeyError("end")

    after: list[str] = []
    engine = build_default_engine(
        hooks=[Broken(), fn_hook(on_task_success=lambda e: after.append(e.task_name))]
    )

    @engine.task(name="a", dag="h")
    def a() -> int:
        return 1

    @engine.task(name="b", dag="h", deps=[a])
    async def b(a: int) -> int:
        return a + 1

    caplog.set_level(logging.DEBUG, logger="flowrun")
    async with engine:
        run_id = await engine.run_once("h")
    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["b"]["result"] == 2
    assert after == ["a", "b"]  # the hook after the broken one still ran

    hook_errors = [r for r in caplog.records if r.name == "flowrun" and r.levelno >= logging.ERROR]
    messages = [r.getMessage() for r in hook_errors]
    assert len(hook_errors) == 4, messages  # dag start, two successes, dag end
    assert any("DagStartEvent" in m for m in messages)
    assert sum("TaskSuccessEvent" in m for m in messages) == 2
    assert any("DagEndEvent" in m for m in messages)
    for record in hook_errors:
        assert record.exc_info is not None
    raised = {type(r.exc_info[1]) for r in hook_errors if r.exc_info}
    assert raised == {RuntimeError, ValueError, KeyError}


def test_fn_hook_rejects_a_non_callable() -> None:
    with pytest.raises(TypeError, match="on_task_start"):
        fn_hook(on_task_start=42)  # type: ignore[arg-type]


def test_fn_hook_rejects_unknown_event_names() -> None:
    with pytest.raises(TypeError):
        fn_hook(on_task_finish=print)  # type: ignore[call-arg]


def test_fn_hook_repr_lists_its_handlers_in_order() -> None:
    def ignore(event: object) -> None:
        return None

    hook = fn_hook(on_task_success=ignore, on_dag_end=ignore, on_dag_start=ignore)

    assert repr(hook) == "fn_hook(on_dag_end, on_dag_start, on_task_success)"


def test_hooks_must_be_run_hooks() -> None:
    with pytest.raises(TypeError, match="RunHook"):
        build_default_engine(hooks=[object()])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="fn_hook"):
        build_default_engine(hooks=[lambda e: None])  # type: ignore[list-item]


async def test_a_hook_overriding_only_some_methods_gets_only_those() -> None:
    seen: list[str] = []

    class OnlySkips(RunHook):
        def on_task_skip(self, event: TaskSkipEvent) -> None:
            seen.append(event.task_name)

    engine = build_default_engine(hooks=[OnlySkips()])

    @engine.task(name="a", dag="s")
    def a() -> int:
        raise ValueError("x")

    @engine.task(name="b", dag="s", deps=[a])
    def b(a: int) -> int:
        return a

    @engine.task(name="c", dag="s", deps=[b])
    def c(b: int) -> int:
        return b

    async with engine:
        await engine.run_once("s")
    assert sorted(seen) == ["b", "c"]
