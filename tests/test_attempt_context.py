"""RunHook.on_attempt_context: context variables a hook sets for the task's own code, in async
tasks and in sync tasks on threads; hooks that raise or are async; no cost when unused."""

from __future__ import annotations

import contextvars
import logging
import warnings

import pytest

from flowrun import RunHook, TaskStartEvent, build_default_engine, fn_hook
from flowrun._hooks import HookDispatcher
from flowrun.testing import VirtualClock, run_dag

current = contextvars.ContextVar("current", default="unset")


class Stamp(RunHook):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_attempt_context(self, event: TaskStartEvent) -> None:
        self.calls.append(f"{event.task_name}#{event.attempt}")
        current.set(f"{event.task_name}#{event.attempt}")


def test_the_task_code_sees_what_the_hook_set_in_async_and_sync_tasks(
    virtual_clock: VirtualClock,
) -> None:
    seen: list[str] = []
    hook = Stamp()
    engine = build_default_engine(hooks=[hook], clock=virtual_clock)

    @engine.task(name="in_thread", dag="d", retries=1)
    def in_thread() -> None:
        seen.append(f"in_thread saw {current.get()}")
        if len(seen) == 1:
            raise ConnectionError("first attempt fails")

    @engine.task(name="on_loop", dag="d", deps=[in_thread])
    async def on_loop(in_thread: None) -> None:
        seen.append(f"on_loop saw {current.get()}")

    assert run_dag(engine, "d")["status"] == "SUCCESS"
    assert seen == [
        "in_thread saw in_thread#1",
        "in_thread saw in_thread#2",
        "on_loop saw on_loop#1",
    ]
    assert hook.calls == ["in_thread#1", "in_thread#2", "on_loop#1"]
    assert current.get() == "unset"  # set in the attempts' contexts only


def test_nobody_overriding_it_costs_nothing() -> None:
    logger = logging.getLogger("test")
    assert HookDispatcher([fn_hook(on_task_start=print)], logger).in_attempt is False
    assert HookDispatcher([], logger).in_attempt is False
    assert HookDispatcher([Stamp()], logger).in_attempt is True


def test_a_hook_that_raises_is_logged_and_the_task_runs(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(RunHook):
        def on_attempt_context(self, event: TaskStartEvent) -> None:
            raise RuntimeError("tracing backend down")

    ran: list[str] = []
    engine = build_default_engine(hooks=[Broken(), Stamp()])

    @engine.task(name="work", dag="d")
    def work() -> None:
        ran.append(current.get())

    with caplog.at_level(logging.ERROR, logger="flowrun"):
        assert run_dag(engine, "d")["status"] == "SUCCESS"
    assert ran == ["work#1"]  # the next hook still ran
    assert "raised in on_attempt_context for task 'work'; the run goes on" in caplog.text


def test_an_async_on_attempt_context_is_refused_with_a_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Async(RunHook):
        async def on_attempt_context(self, event: TaskStartEvent) -> None:  # type: ignore[override]
            current.set("never")

    ran: list[str] = []
    engine = build_default_engine(hooks=[Async()])

    @engine.task(name="work", dag="d")
    async def work() -> None:
        ran.append(current.get())

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        with caplog.at_level(logging.ERROR, logger="flowrun"):
            assert run_dag(engine, "d")["status"] == "SUCCESS"
    assert ran == ["unset"]
    assert "on_attempt_context must be a plain function, not async" in caplog.text
    assert "'work'" in caplog.text
