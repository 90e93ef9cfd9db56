"""Logging: levels and contents of the engine's log records, on "flowrun" or a given logger."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from flowrun import Engine, RunHook, TaskStartEvent, build_default_engine


def _records(
    caplog: pytest.LogCaptureFixture, logger_name: str, level: int | None = None
) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == logger_name and (level is None or r.levelno == level)
    ]


def _messages(caplog: pytest.LogCaptureFixture, logger_name: str, level: int) -> list[str]:
    return [r.getMessage() for r in _records(caplog, logger_name, level)]


def _register_mixed_dag(engine: Engine) -> None:
    """ok -> flaky (fails once, then succeeds); broken (always fails) -> downstream."""
    calls = 0

    @engine.task(name="ok", dag="logs")
    def ok() -> int:
        return 1

    @engine.task(name="flaky", dag="logs", deps=[ok], retries=1)
    async def flaky(ok: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("reset by peer")
        return ok

    @engine.task(name="broken", dag="logs")
    def broken() -> None:
        raise ValueError("cannot parse row 3")

    @engine.task(name="downstream", dag="logs", deps=[broken])
    def downstream(broken: None) -> None:
        return None


async def test_levels_on_the_flowrun_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="flowrun")
    engine = build_default_engine()
    _register_mixed_dag(engine)
    async with engine:
        run_id = await engine.run_once("logs")

    info = _messages(caplog, "flowrun", logging.INFO)
    warning = _messages(caplog, "flowrun", logging.WARNING)
    debug = _messages(caplog, "flowrun", logging.DEBUG)

    # INFO: DAG start, task success, retries, skips.
    assert any(run_id in m and "'logs'" in m and "started" in m for m in info), info
    assert any("'ok'" in m and "succeeded" in m for m in info), info
    assert any("'flaky'" in m and "succeeded" in m and "attempt 2" in m for m in info), info
    assert any(
        "'flaky'" in m and "retrying" in m and "ConnectionError: reset by peer" in m for m in info
    ), info
    assert any("'downstream'" in m and "skipped" in m and "'broken'" in m for m in info), info

    # WARNING: task failures (with the error).
    assert any("'broken'" in m and "ValueError: cannot parse row 3" in m for m in warning), warning
    assert not any("'ok'" in m for m in warning)

    # The DAG finish is logged at INFO or above, with the status.
    finished = [
        r.getMessage()
        for r in _records(caplog, "flowrun")
        if "finished" in r.getMessage() and r.levelno >= logging.INFO
    ]
    assert len(finished) == 1
    assert run_id in finished[0]
    assert "FAILED" in finished[0]

    # DEBUG: launch details and tracebacks.
    assert any("launching" in m and "'ok'" in m for m in debug), debug
    assert any("launching" in m and "'flaky'" in m and "attempt 2" in m for m in debug), debug
    tracebacks = [m for m in debug if "Traceback (most recent call last)" in m]
    assert any("cannot parse row 3" in m and "in broken" in m for m in tracebacks), debug
    assert any("reset by peer" in m for m in tracebacks), debug


async def test_a_successful_run_logs_its_finish_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="flowrun")
    engine = build_default_engine()

    @engine.task(name="only", dag="fine")
    def only() -> int:
        return 1

    async with engine:
        run_id = await engine.run_once("fine")
    info = _messages(caplog, "flowrun", logging.INFO)
    assert any(run_id in m and "finished" in m and "SUCCESS" in m for m in info), info
    assert _records(caplog, "flowrun", logging.WARNING) == []
    assert _records(caplog, "flowrun", logging.ERROR) == []


@pytest.mark.parametrize("is_async", [True, False])
async def test_timeouts_are_warnings(caplog: pytest.LogCaptureFixture, is_async: bool) -> None:
    caplog.set_level(logging.DEBUG, logger="flowrun")
    executor = ThreadPoolExecutor(max_workers=2)
    engine = build_default_engine(executor=executor)
    never = asyncio.Event()
    release = threading.Event()

    if is_async:

        @engine.task(name="slow", dag="t", timeout_s=0.05, retries=1)
        async def slow_async() -> None:
            await never.wait()

    else:

        @engine.task(name="slow", dag="t", timeout_s=0.05, retries=1)
        def slow_sync() -> None:
            release.wait(5)

    try:
        async with engine:
            await engine.run_once("t")
    finally:
        release.set()
        await asyncio.to_thread(executor.shutdown)
    warning = _messages(caplog, "flowrun", logging.WARNING)
    timed_out = [m for m in warning if "'slow'" in m and "timed out after 0.05s" in m]
    # Both the first attempt (retried) and the last one (final failure) are warnings.
    assert len(timed_out) == 2, warning


async def test_shutdown_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="flowrun")
    engine = build_default_engine()

    @engine.task(name="sync_task", dag="pool")
    def sync_task() -> int:
        return 1

    async with engine:
        await engine.run_once("pool")
    debug = _messages(caplog, "flowrun", logging.DEBUG)
    assert any("shut" in m for m in debug), debug


async def test_nothing_below_warning_is_emitted_when_the_logger_is_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="flowrun")
    engine = build_default_engine()

    @engine.task(name="a", dag="quiet")
    def a() -> int:
        return 1

    @engine.task(name="b", dag="quiet", deps=[a])
    async def b(a: int) -> int:
        return a

    async with engine:
        await engine.run_once("quiet")
    assert _records(caplog, "flowrun") == []


async def test_a_custom_logger_receives_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # root: would also capture anything sent to "flowrun"
    custom = logging.getLogger("myapp.pipelines")

    class Broken(RunHook):
        def on_task_start(self, event: TaskStartEvent) -> None:
            raise RuntimeError("tracing exporter down")

    engine = build_default_engine(logger=custom, hooks=[Broken()])
    _register_mixed_dag(engine)
    async with engine:
        run_id = await engine.run_once("logs")

    mine = _records(caplog, "myapp.pipelines")
    levels = {r.levelno for r in mine}
    assert {logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR} <= levels
    assert any(run_id in r.getMessage() and "started" in r.getMessage() for r in mine)
    assert any("TaskStartEvent" in r.getMessage() and r.levelno == logging.ERROR for r in mine)
    stray = [r for r in caplog.records if r.name.startswith("flowrun")]
    assert stray == [], [(r.name, r.getMessage()) for r in stray]
