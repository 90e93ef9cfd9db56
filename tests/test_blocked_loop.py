"""An async task that blocks the event loop past its timeout: the timeout cannot fire while the
loop is blocked, so the task is not failed, but it leaves a warning (logged, and on its report
entry) that names the task, how long it blocked the loop and where such work belongs."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flowrun import SystemClock, build_default_engine
from flowrun.testing import current_clock, run_dag


def blocked(task: str, seconds: str, timeout: str, attempt: str = "") -> str:
    return (
        f"task {task!r} (DAG 'etl') blocked the event loop for {seconds} s{attempt}, past its "
        f"timeout_s={timeout}; blocking work belongs in a sync task (def, not async def)"
    )


def test_a_task_that_blocks_the_loop_past_its_timeout_gets_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = build_default_engine()

    @engine.task(name="crunch", dag="etl", timeout_s=0.2)
    async def crunch() -> int:
        current_clock().advance(1.0)  # on virtual time: a second of work that never awaits
        return 42

    with caplog.at_level(logging.WARNING, logger="flowrun"):
        report = run_dag(engine, "etl")
    entry = report["tasks"]["crunch"]
    assert entry["status"] == "SUCCESS"  # the timeout could not fire: the result stands
    assert entry["result"] == 42
    assert entry["warnings"] == [blocked("crunch", "1.0", "0.2")]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        blocked("crunch", "1.0", "0.2")
    ]


def test_the_warning_measures_the_blocking_stretch_not_the_whole_attempt() -> None:
    engine = build_default_engine()

    @engine.task(name="late", dag="etl", timeout_s=0.5)
    async def late() -> None:
        await asyncio.sleep(0.3)  # the loop is free meanwhile
        current_clock().advance(0.7)  # blocked when the deadline passes, 1.0 s after start

    report = run_dag(engine, "etl")
    assert report["tasks"]["late"]["status"] == "SUCCESS"
    assert report["tasks"]["late"]["warnings"] == [blocked("late", "0.7", "0.5")]


def test_a_task_whose_timeout_fired_late_because_it_blocked_the_loop_says_so_too() -> None:
    engine = build_default_engine()

    @engine.task(name="failed_late", dag="etl", timeout_s=0.2)
    async def failed_late() -> None:
        current_clock().advance(0.5)
        await asyncio.sleep(0.01)  # the timeout fires here, 0.3 s late
        raise AssertionError("not reached")

    failed = run_dag(engine, "etl")["tasks"]["failed_late"]
    assert failed["error"].startswith("TaskTimeoutError: task 'failed_late' timed out after 0.2s")
    assert failed["warnings"] == [blocked("failed_late", "0.5", "0.2")]


def test_no_warning_for_a_task_that_the_timeout_stops_or_another_task_delays() -> None:
    engine = build_default_engine()

    @engine.task(name="hog", dag="etl")  # no timeout: nothing to warn about
    async def hog() -> None:
        current_clock().advance(1.0)

    @engine.task(name="victim", dag="etl", timeout_s=0.2)
    async def victim() -> None:
        await asyncio.sleep(0.1)  # resumes late, after hog's second: not its own doing

    @engine.task(name="slow", dag="etl", timeout_s=0.2)
    async def slow() -> None:
        await asyncio.sleep(5)  # stopped by its timeout, on time

    @engine.task(name="quick", dag="etl", timeout_s=0.2)
    async def quick() -> None:
        current_clock().advance(0.1)

    report = run_dag(engine, "etl")
    assert {name: t["warnings"] for name, t in report["tasks"].items()} == {
        "hog": [],
        "victim": [],
        "slow": [],
        "quick": [],
    }
    assert report["tasks"]["slow"]["status"] == "FAILED"


def test_a_real_blocking_sleep_is_measured_on_the_real_clock() -> None:
    engine = build_default_engine()

    @engine.task(name="sleepy", dag="etl", timeout_s=0.1)
    async def sleepy() -> str:
        time.sleep(0.3)  # the mistake under test: a blocking call in an async task
        return "done"

    report = run_dag(engine, "etl", clock=SystemClock())
    entry = report["tasks"]["sleepy"]
    assert entry["status"] == "SUCCESS"
    assert entry["warnings"] == [blocked("sleepy", "0.3", "0.1")]


def test_each_attempt_and_each_instance_warns_for_itself() -> None:
    engine = build_default_engine()
    calls: list[int] = []

    @engine.task(name="pages", dag="etl")
    def pages() -> list[int]:
        return [1, 2]

    @engine.task(name="fetch", dag="etl", map={"page": pages}, timeout_s=0.2, retries=1)
    async def fetch(page: int) -> int:
        calls.append(page)
        if page == 2:
            current_clock().advance(0.5)
            if calls.count(2) == 1:
                raise ConnectionError("flaky")
        return page

    report = run_dag(engine, "etl")
    fetch_entry = report["tasks"]["fetch"]
    assert fetch_entry["status"] == "SUCCESS"
    first = blocked("fetch[1]", "0.5", "0.2")
    second = blocked("fetch[1]", "0.5", "0.2", " on attempt 2")
    assert fetch_entry["instances"]["1"]["warnings"] == [first, second]
    assert fetch_entry["warnings"] == [first, second]  # the mapped task gathers its instances'
    assert fetch_entry["instances"]["0"]["warnings"] == []


def test_the_command_line_report_shows_the_warning(tmp_path: Path) -> None:
    (tmp_path / "etl.py").write_text(
        textwrap.dedent(
            """
            import time

            from flowrun import build_default_engine

            engine = build_default_engine()


            @engine.task(dag="etl", timeout_s=0.1)
            async def crunch() -> None:
                time.sleep(0.3)
            """
        ),
        encoding="utf-8",
    )

    def flowrun(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowrun", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    for db in (":memory:", "state.db"):  # kept by both stores
        proc = flowrun("run", "etl.py", "--db", db, "--progress", "off")
        assert proc.returncode == 0
        assert f"\nwarning: {blocked('crunch', '0.3', '0.1')}\n" in proc.stdout + "\n"
    # SQLite keeps it: a later process shows it with the run
    (run,) = json.loads(flowrun("runs", "--db", "state.db", "--json").stdout)
    assert run["tasks"]["crunch"]["warnings"] == [blocked("crunch", "0.3", "0.1")]
