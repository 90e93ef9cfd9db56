"""The executor contract on a thread pool, and what a timed-out sync attempt does there (also
on an Executor that is not a ThreadPoolExecutor), or one refused by a pool already shut down."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import pytest
from support import WAIT_S, new_clock

from flowrun import RunContext, build_default_engine
from flowrun.testing import ExecutorContract


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2, thread_name_prefix="contract") as pool:
        yield pool


class TestThreadPool(ExecutorContract):
    pickles = False


# -- a sync attempt abandoned by its timeout, or refused by its executor ------------------


@pytest.mark.parametrize("late", ["returns", "raises"])
async def test_a_timed_out_sync_task_whose_thread_finishes_later_stays_timed_out(
    late: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = ThreadPoolExecutor(max_workers=2)
    engine = build_default_engine(executor=pool, clock=new_clock())
    release = threading.Event()
    saw_cancel: list[bool] = []

    @engine.task(name="slow", dag="d", timeout_s=0.05)
    def slow(ctx: RunContext[None]) -> str:
        assert release.wait(WAIT_S)
        saw_cancel.append(ctx.cancelled())
        if late == "raises":
            raise ValueError("late failure")
        return "late result"

    @engine.task(name="after", dag="d", deps=[slow])
    def after(slow: str) -> str:
        return slow

    with caplog.at_level(logging.DEBUG):
        run_id = await asyncio.wait_for(engine.run_once("d", RunContext()), WAIT_S)
        before = engine.get_run_report(run_id)
        release.set()
        # Joining the pool's threads means the late outcome reached the loop and, by FIFO
        # order of loop callbacks, was handled before this coroutine resumes.
        await asyncio.to_thread(pool.shutdown, True)
        await asyncio.sleep(0)  # let the callback chain scheduled by the join finish
        gc.collect()  # an unretrieved future exception would be logged on collection

    after_report = engine.get_run_report(run_id)
    assert saw_cancel == [True]
    assert after_report == before
    task = after_report["tasks"]["slow"]
    assert task["status"] == "FAILED"
    assert "timed out after 0.05s (timeout_s=0.05)" in task["error"]
    assert task["result"] is None
    assert after_report["tasks"]["after"]["status"] == "SKIPPED"
    assert after_report["status"] == "FAILED"
    asyncio_errors = [
        r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR
    ]
    assert asyncio_errors == []


class ForwardingExecutor(Executor):
    """An Executor that is not a ThreadPoolExecutor (like a Dask client's executor)."""

    def __init__(self) -> None:
        self.inner = ThreadPoolExecutor(max_workers=2)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


async def test_timeout_of_a_sync_task_on_a_generic_executor() -> None:
    executor = ForwardingExecutor()
    engine = build_default_engine(executor=executor, clock=new_clock())
    release = threading.Event()

    @engine.task(name="stuck", dag="d", timeout_s=0.05)
    def stuck() -> str:
        assert release.wait(WAIT_S)
        return "late"

    @engine.task(name="quick", dag="d", timeout_s=30.0)
    def quick() -> str:
        return "fast"

    try:
        run_id = await asyncio.wait_for(engine.run_once("d"), WAIT_S)
    finally:
        release.set()
        await asyncio.to_thread(executor.shutdown, True)

    report = engine.get_run_report(run_id)
    assert report["status"] == "FAILED"
    assert report["tasks"]["stuck"]["status"] == "FAILED"
    assert "timed out after 0.05s (timeout_s=0.05)" in report["tasks"]["stuck"]["error"]
    assert report["tasks"]["quick"]["status"] == "SUCCESS"
    assert report["tasks"]["quick"]["result"] == "fast"


async def test_an_executor_already_shut_down_fails_the_sync_task_not_the_engine() -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    pool.shutdown()
    engine = build_default_engine(executor=pool, clock=new_clock())
    calls: list[str] = []

    @engine.task(name="sync_task", dag="d")
    def sync_task() -> None:
        calls.append("sync_task")

    @engine.task(name="async_task", dag="d")
    async def async_task() -> int:
        return 7

    @engine.task(name="child", dag="d", deps=[sync_task])
    async def child() -> None:
        calls.append("child")

    run_id = await asyncio.wait_for(engine.run_once("d"), WAIT_S)

    report = engine.get_run_report(run_id)
    assert report["status"] == "FAILED"
    failed = report["tasks"]["sync_task"]
    assert failed["status"] == "FAILED"
    assert failed["error"] == "RuntimeError: cannot schedule new futures after shutdown"
    assert failed["started_at"] is not None
    assert report["tasks"]["child"]["status"] == "SKIPPED"
    assert report["tasks"]["async_task"]["status"] == "SUCCESS"
    assert report["tasks"]["async_task"]["result"] == 7
    assert calls == []
