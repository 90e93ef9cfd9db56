"""The engine's own thread pool: a ThreadPoolExecutor whose workers are daemon threads."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import threading
from concurrent.futures import CancelledError
from typing import Any

import pytest

import flowrun
from flowrun._threads import DaemonThreadPool


def test_runs_calls_and_reports_results_and_exceptions() -> None:
    pool = DaemonThreadPool(2, thread_name_prefix="p")
    try:
        assert pool.submit(pow, 2, 10).result(5) == 1024
        assert pool.submit(threading.current_thread).result(5).name.startswith("p_")
        assert pool.submit(threading.current_thread).result(5).daemon
        with pytest.raises(ZeroDivisionError):
            pool.submit(divmod, 1, 0).result(5)
        assert list(pool.map(abs, [-1, -2])) == [1, 2]
    finally:
        pool.shutdown()


def test_never_more_threads_than_max_workers() -> None:
    pool = DaemonThreadPool(2)
    release = threading.Event()
    names: set[str] = set()
    lock = threading.Lock()

    def blocked() -> None:
        with lock:
            names.add(threading.current_thread().name)
        release.wait(10)

    futures = [pool.submit(blocked) for _ in range(5)]
    release.set()
    for future in futures:
        future.result(10)
    pool.shutdown()
    assert 1 <= len(names) <= 2


def test_shutdown_cancels_queued_work_and_refuses_new_work() -> None:
    pool = DaemonThreadPool(1)
    release = threading.Event()
    running = pool.submit(release.wait, 10)
    queued = pool.submit(pow, 2, 2)
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.submit(pow, 2, 2)
    assert queued.cancelled()
    with pytest.raises(CancelledError):
        queued.result(1)
    release.set()
    assert running.result(10) is True
    pool.shutdown(wait=True)


def test_bad_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'max_workers' must be >= 1 \(got 0\)"):
        DaemonThreadPool(0)


def test_a_blocked_worker_does_not_keep_the_interpreter_alive() -> None:
    script = (
        "import threading\n"
        "from flowrun._threads import DaemonThreadPool\n"
        "pool = DaemonThreadPool(1)\n"
        "started = threading.Event()\n"
        "pool.submit(lambda: (started.set(), threading.Event().wait()))\n"
        "started.wait(10)\n"
        "print('done')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "done"


# --- call_for_loop: the engine's way in, without run_in_executor's future chain ----------


def test_call_for_loop_hands_results_and_exceptions_to_the_loop() -> None:
    pool = DaemonThreadPool(2)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert await pool.call_for_loop(loop, pow, 2, 10) == 1024
        told: list[asyncio.Future[int]] = []
        future = pool.call_for_loop(loop, pow, 3, 3, then=told.append)
        assert await future == 27
        assert told == [future]  # called on the loop, once the outcome is set
        with pytest.raises(ZeroDivisionError):
            await pool.call_for_loop(loop, divmod, 1, 0)
        here = threading.current_thread()
        assert await pool.call_for_loop(loop, threading.current_thread) is not here

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()


def test_call_for_loop_future_cancelled_before_a_worker_takes_it_does_not_run() -> None:
    pool = DaemonThreadPool(1)
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        busy = pool.call_for_loop(loop, release.wait, 10)
        queued = pool.call_for_loop(loop, ran.append, "queued")
        queued.cancel()
        release.set()
        assert await busy is True
        await pool.call_for_loop(loop, ran.append, "after")  # the worker is past it

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
    assert ran == ["after"]


def test_call_for_loop_future_cancelled_while_running_drops_the_outcome() -> None:
    pool = DaemonThreadPool(1)
    started = threading.Event()
    release = threading.Event()
    seen: list[BaseException] = []

    def work() -> str:
        started.set()
        release.wait(10)
        return "late"

    told: list[object] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx["exception"]))
        running = pool.call_for_loop(loop, work, then=told.append)
        await asyncio.to_thread(started.wait, 10)
        running.cancel()
        release.set()
        # the late outcome reaches the loop, finds the future cancelled and is dropped
        assert await pool.call_for_loop(loop, pow, 3, 2) == 9
        await asyncio.sleep(0)
        assert running.cancelled()

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
    assert seen == []
    assert told == []  # the dropped outcome is not told either


def test_call_for_loop_outcome_for_a_closed_loop_does_not_kill_the_worker() -> None:
    pool = DaemonThreadPool(1)
    release = threading.Event()
    loop = asyncio.new_event_loop()
    try:
        future = pool.call_for_loop(loop, release.wait, 10)
    finally:
        loop.close()
    release.set()
    try:
        # the same worker thread goes on serving after failing to reach the closed loop
        assert pool.submit(pow, 2, 3).result(10) == 8
        assert not future.done()
    finally:
        pool.shutdown()


def test_shutdown_cancels_queued_loop_calls_on_their_loop() -> None:
    pool = DaemonThreadPool(1)
    release = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        busy = pool.call_for_loop(loop, release.wait, 10)
        queued = pool.call_for_loop(loop, pow, 2, 2)
        pool.shutdown(wait=False, cancel_futures=True)
        with pytest.raises(RuntimeError, match="after shutdown"):
            pool.call_for_loop(loop, pow, 2, 2)
        release.set()
        assert await busy is True
        with pytest.raises(asyncio.CancelledError):
            await queued

    asyncio.run(main())
    pool.shutdown(wait=True)


def test_the_engine_runs_sync_tasks_through_call_for_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = DaemonThreadPool.call_for_loop

    def counting(self: DaemonThreadPool, loop: Any, fn: Any, *args: Any, then: Any) -> Any:
        calls.append(1)
        return original(self, loop, fn, *args, then=then)

    monkeypatch.setattr(DaemonThreadPool, "call_for_loop", counting)
    engine = flowrun.build_default_engine()
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")

    @engine.task(dag="d")
    def first() -> str:
        return marker.get()  # the caller's contextvars reach the worker thread

    @engine.task(dag="d", deps=[first])
    def second(first: str) -> str:
        return first + "!"

    async def main() -> str:
        marker.set("set")
        return await engine.run_once("d")

    try:
        report = engine.get_run_report(asyncio.run(main()))
    finally:
        engine.close()
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["second"]["result"] == "set!"
    assert len(calls) == 2
