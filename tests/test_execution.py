"""Execution semantics: sync and async tasks, results, the report, skips, run status, threads,
contextvars and the engine clock."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import pytest
from support import RUN_KEYS, TASK_KEYS, WALL_START, new_clock

from flowrun import (
    DagEndEvent,
    InMemoryStateStore,
    RunContext,
    TaskSkipEvent,
    TaskSuccessEvent,
    build_default_engine,
)
from flowrun.testing import RecordingHook

REPORT_KEYS = RUN_KEYS


# -- sync and async tasks, results ------------------------------------------------------------


async def test_sync_and_async_tasks_pass_results_to_children() -> None:
    engine = build_default_engine()

    @engine.task(name="extract", dag="etl")
    def extract() -> list[int]:
        return [1, 2, 3]

    @engine.task(name="double", dag="etl", deps=[extract])
    async def double(extract: list[int]) -> list[int]:
        await asyncio.sleep(0)
        return [x * 2 for x in extract]

    @engine.task(name="total", dag="etl", deps=[double])
    def total(double: list[int]) -> int:
        return sum(double)

    @engine.task(name="describe", dag="etl", deps=[total, extract])
    async def describe(total: int, extract: list[int]) -> str:
        return f"{len(extract)} rows, total {total}"

    async with engine:
        run_id = await engine.run_once("etl")
    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    results = {name: t["result"] for name, t in report["tasks"].items()}
    assert results == {
        "extract": [1, 2, 3],
        "double": [2, 4, 6],
        "total": 12,
        "describe": "3 rows, total 12",
    }
    assert all(t["attempt"] == 1 for t in report["tasks"].values())


async def test_report_has_exactly_the_documented_keys() -> None:
    engine = build_default_engine()

    @engine.task(name="ok", dag="shape")
    def ok() -> dict[str, int]:
        return {"n": 1}

    @engine.task(name="bad", dag="shape")
    def bad() -> None:
        raise ValueError("broken input")

    @engine.task(name="after_bad", dag="shape", deps=[bad])
    def after_bad() -> None:
        return None

    async with engine:
        run_id = await engine.run_once("shape")
    report = engine.get_run_report(run_id)
    assert set(report) == REPORT_KEYS
    assert report["run_id"] == run_id
    assert report["dag_name"] == "shape"
    assert isinstance(report["created_at"], float)
    assert isinstance(report["finished_at"], float)
    assert set(report["tasks"]) == {"ok", "bad", "after_bad"}
    for name, task_report in report["tasks"].items():
        assert set(task_report) == TASK_KEYS, name

    ok_report = report["tasks"]["ok"]
    assert ok_report["status"] == "SUCCESS"
    assert ok_report["error"] is None
    assert ok_report["traceback"] is None
    assert ok_report["result"] == {"n": 1}

    skipped = report["tasks"]["after_bad"]
    assert skipped["status"] == "SKIPPED"
    assert skipped["attempt"] == 0
    assert skipped["started_at"] is None
    assert skipped["finished_at"] is None
    assert skipped["result"] is None


async def test_error_is_type_and_message_and_traceback_is_kept() -> None:
    engine = build_default_engine()

    @engine.task(name="parse", dag="errs")
    def parse() -> None:
        raise ValueError("row 7: 'abc' is not an int")

    @engine.task(name="fetch", dag="errs")
    async def fetch() -> None:
        raise KeyError("missing")

    async with engine:
        run_id = await engine.run_once("errs")
    tasks = engine.get_run_report(run_id)["tasks"]
    assert tasks["parse"]["status"] == "FAILED"
    assert tasks["parse"]["error"] == "ValueError: row 7: 'abc' is not an int"
    trace = tasks["parse"]["traceback"]
    assert isinstance(trace, str)
    assert "Traceback (most recent call last)" in trace
    assert "in parse" in trace
    assert "ValueError: row 7" in trace
    assert tasks["fetch"]["error"] == "KeyError: 'missing'"
    assert "in fetch" in tasks["fetch"]["traceback"]


async def test_exception_without_message_reports_its_type() -> None:
    engine = build_default_engine()

    @engine.task(name="empty", dag="errs")
    def empty() -> None:
        raise RuntimeError

    async with engine:
        run_id = await engine.run_once("errs")
    error = engine.get_run_report(run_id)["tasks"]["empty"]["error"]
    assert isinstance(error, str)
    assert error.startswith("RuntimeError")


async def test_sync_task_returning_a_coroutine_fails_clearly() -> None:
    engine = build_default_engine()

    async def work() -> int:
        return 1

    @engine.task(name="sneaky", dag="aw")
    def sneaky() -> Awaitable[int]:
        return work()

    async with engine:
        run_id = await engine.run_once("aw")
    report = engine.get_run_report(run_id)["tasks"]["sneaky"]
    assert report["status"] == "FAILED"
    assert report["result"] is None
    assert report["error"].startswith("TypeError: ")
    assert "sneaky" in report["error"]
    assert "async def" in report["error"]


class _ForwardingExecutor(Executor):
    """An Executor that is not a ThreadPoolExecutor (like a Dask client's executor)."""

    def __init__(self) -> None:
        self.inner = ThreadPoolExecutor(max_workers=2, thread_name_prefix="forwarded")
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


async def test_sync_tasks_run_on_a_generic_executor() -> None:
    executor = _ForwardingExecutor()
    engine = build_default_engine(executor=executor)

    @engine.task(name="where", dag="gen")
    def where() -> str:
        return threading.current_thread().name

    @engine.task(name="plus", dag="gen", deps=[where])
    def plus(where: str) -> str:
        return where + "!"

    try:
        async with engine:
            run_id = await engine.run_once("gen")
    finally:
        executor.shutdown()
    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["where"]["result"].startswith("forwarded")
    assert report["tasks"]["plus"]["result"].endswith("!")
    assert executor.submitted == 2


async def test_sync_task_returning_a_coroutine_fails_on_a_generic_executor_too() -> None:
    executor = _ForwardingExecutor()
    engine = build_default_engine(executor=executor)

    async def work() -> int:
        return 1

    @engine.task(name="sneaky", dag="aw")
    def sneaky() -> Awaitable[int]:
        return work()

    try:
        async with engine:
            run_id = await engine.run_once("aw")
    finally:
        executor.shutdown()
    report = engine.get_run_report(run_id)["tasks"]["sneaky"]
    assert report["status"] == "FAILED"
    assert report["error"] is not None
    assert report["error"].startswith("TypeError: ")
    assert not asyncio.iscoroutine(report["result"])


# -- skips and run status -------------------------------------------------------------------


async def test_failure_skips_the_whole_sub_dag_and_independent_branches_run() -> None:
    recorder = RecordingHook()
    engine = build_default_engine(hooks=[recorder])
    ran: list[str] = []

    @engine.task(name="root", dag="d")
    def root() -> int:
        ran.append("root")
        return 1

    @engine.task(name="bad", dag="d", deps=[root])
    def bad(root: int) -> int:
        ran.append("bad")
        raise RuntimeError("bad day")

    @engine.task(name="child", dag="d", deps=[bad])
    def child(bad: int) -> int:
        ran.append("child")
        return bad

    @engine.task(name="grandchild", dag="d", deps=[child])
    def grandchild(child: int) -> int:
        ran.append("grandchild")
        return child

    @engine.task(name="side", dag="d", deps=[root])
    def side(root: int) -> int:
        ran.append("side")
        return root + 1

    @engine.task(name="side_leaf", dag="d", deps=[side])
    async def side_leaf(side: int) -> int:
        ran.append("side_leaf")
        return side + 1

    async with engine:
        run_id = await engine.run_once("d")
    report = engine.get_run_report(run_id)
    statuses = {name: t["status"] for name, t in report["tasks"].items()}
    assert statuses == {
        "root": "SUCCESS",
        "bad": "FAILED",
        "child": "SKIPPED",
        "grandchild": "SKIPPED",
        "side": "SUCCESS",
        "side_leaf": "SUCCESS",
    }
    assert "child" not in ran
    assert "grandchild" not in ran
    assert report["tasks"]["side_leaf"]["result"] == 3
    assert sorted(e.task_name for e in recorder.of(TaskSkipEvent)) == ["child", "grandchild"]
    assert report["status"] == "FAILED"


async def test_diamond_below_a_failure_is_skipped_exactly_once() -> None:
    #      top(fails)
    #      /     \
    #   left    right
    #      \     /
    #      bottom
    #        |
    #      tail
    recorder = RecordingHook()
    engine = build_default_engine(hooks=[recorder])

    @engine.task(name="top", dag="diamond")
    def top() -> int:
        raise ValueError("no data")

    @engine.task(name="left", dag="diamond", deps=[top])
    def left(top: int) -> int:
        return top

    @engine.task(name="right", dag="diamond", deps=[top])
    def right(top: int) -> int:
        return top

    @engine.task(name="bottom", dag="diamond", deps=[left, right])
    def bottom(left: int, right: int) -> int:
        return left + right

    @engine.task(name="tail", dag="diamond", deps=[bottom])
    def tail(bottom: int) -> int:
        return bottom

    async with engine:
        run_id = await engine.run_once("diamond")
    report = engine.get_run_report(run_id)
    assert report["tasks"]["top"]["status"] == "FAILED"
    for name in ("left", "right", "bottom", "tail"):
        assert report["tasks"][name]["status"] == "SKIPPED", name
    assert sorted(e.task_name for e in recorder.of(TaskSkipEvent)) == [
        "bottom",
        "left",
        "right",
        "tail",
    ]


async def test_child_of_two_failed_parents_is_skipped_once() -> None:
    recorder = RecordingHook()
    engine = build_default_engine(hooks=[recorder], max_parallel=1)

    @engine.task(name="a", dag="two")
    def a() -> int:
        raise ValueError("a")

    @engine.task(name="b", dag="two")
    async def b() -> int:
        raise ValueError("b")

    @engine.task(name="c", dag="two", deps=[a, b])
    def c(a: int, b: int) -> int:
        return a + b

    @engine.task(name="d", dag="two", deps=[c])
    def d(c: int) -> int:
        return c

    async with engine:
        run_id = await engine.run_once("two")
    report = engine.get_run_report(run_id)
    assert report["tasks"]["a"]["status"] == "FAILED"
    assert report["tasks"]["b"]["status"] == "FAILED"
    assert report["tasks"]["c"]["status"] == "SKIPPED"
    assert report["tasks"]["d"]["status"] == "SKIPPED"
    assert sorted(e.task_name for e in recorder.of(TaskSkipEvent)) == ["c", "d"]


async def test_one_failed_branch_of_a_diamond_skips_the_join_but_not_the_sibling() -> None:
    engine = build_default_engine()

    @engine.task(name="src", dag="half")
    def src() -> int:
        return 1

    @engine.task(name="good", dag="half", deps=[src])
    def good(src: int) -> int:
        return src + 1

    @engine.task(name="broken", dag="half", deps=[src])
    async def broken(src: int) -> int:
        raise OSError("disk full")

    @engine.task(name="join", dag="half", deps=[good, broken])
    def join(good: int, broken: int) -> int:
        return good + broken

    async with engine:
        run_id = await engine.run_once("half")
    tasks = engine.get_run_report(run_id)["tasks"]
    assert tasks["good"]["status"] == "SUCCESS"
    assert tasks["good"]["result"] == 2
    assert tasks["broken"]["status"] == "FAILED"
    assert tasks["broken"]["error"] == "OSError: disk full"
    assert tasks["join"]["status"] == "SKIPPED"
    assert tasks["join"]["error"] is None or "broken" in tasks["join"]["error"]


async def test_run_status_success_only_when_every_task_succeeded() -> None:
    engine = build_default_engine()

    @engine.task(name="a", dag="fine")
    def a() -> int:
        return 1

    @engine.task(name="b", dag="fine", deps=[a])
    async def b(a: int) -> int:
        return a

    @engine.task(name="leaf_fails", dag="failing")
    def leaf_fails() -> None:
        raise ValueError("x")

    @engine.task(name="other", dag="failing")
    def other() -> int:
        return 1

    async with engine:
        fine = engine.get_run_report(await engine.run_once("fine"))
        failing = engine.get_run_report(await engine.run_once("failing"))
    assert fine["status"] == "SUCCESS"
    assert {t["status"] for t in fine["tasks"].values()} == {"SUCCESS"}
    # A failed leaf skips nothing, and still fails the run.
    assert failing["status"] == "FAILED"
    assert failing["tasks"]["other"]["status"] == "SUCCESS"


async def test_run_status_is_failed_when_a_task_is_skipped() -> None:
    # The run that skipped a task is FAILED, and every task of a finished run is final.
    engine = build_default_engine()

    @engine.task(name="a", dag="s")
    def a() -> int:
        raise ValueError("x")

    @engine.task(name="b", dag="s", deps=[a])
    def b(a: int) -> int:
        return a

    async with engine:
        report = engine.get_run_report(await engine.run_once("s"))
    assert report["status"] == "FAILED"
    assert {t["status"] for t in report["tasks"].values()} <= {"SUCCESS", "FAILED", "SKIPPED"}


# -- where tasks run ---------------------------------------------------------------------


async def test_sync_tasks_run_in_the_owned_flowrun_pool() -> None:
    engine = build_default_engine(max_workers=2)
    loop_thread = threading.current_thread().name

    @engine.task(name="sync_where", dag="threads")
    def sync_where() -> str:
        return threading.current_thread().name

    @engine.task(name="async_where", dag="threads")
    async def async_where() -> str:
        return threading.current_thread().name

    async with engine:
        run_id = await engine.run_once("threads")
    tasks = engine.get_run_report(run_id)["tasks"]
    assert tasks["sync_where"]["result"].startswith("flowrun")
    assert tasks["async_where"]["result"] == loop_thread


async def test_sync_tasks_run_on_the_given_executor_which_stays_open() -> None:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mypool")
    engine = build_default_engine(executor=executor)

    @engine.task(name="where", dag="threads")
    def where() -> str:
        return threading.current_thread().name

    try:
        async with engine:
            run_id = await engine.run_once("threads")
        assert engine.get_run_report(run_id)["tasks"]["where"]["result"].startswith("mypool")
        # The engine does not shut down an executor it does not own.
        assert executor.submit(lambda: 42).result(timeout=5) == 42
    finally:
        executor.shutdown()


async def test_sync_tasks_run_in_parallel_threads() -> None:
    engine = build_default_engine(max_workers=2, max_parallel=2)
    barrier = threading.Barrier(2, timeout=5)

    @engine.task(name="left", dag="par")
    def left() -> int:
        return barrier.wait()

    @engine.task(name="right", dag="par")
    def right() -> int:
        return barrier.wait()

    async with engine:
        run_id = await engine.run_once("par")
    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    # Barrier.wait returns 0 and 1 to the two parties: both were waiting at the same time.
    assert sorted(t["result"] for t in report["tasks"].values()) == [0, 1]


async def test_async_tasks_run_concurrently_on_the_loop() -> None:
    engine = build_default_engine(max_parallel=2)
    ping, pong = asyncio.Event(), asyncio.Event()

    @engine.task(name="a", dag="conc", timeout_s=5)
    async def a() -> str:
        ping.set()
        await pong.wait()
        return "a"

    @engine.task(name="b", dag="conc", timeout_s=5)
    async def b() -> str:
        pong.set()
        await ping.wait()
        return "b"

    async with engine:
        run_id = await engine.run_once("conc")
    assert engine.get_run_report(run_id)["status"] == "SUCCESS"


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


async def test_sync_tasks_see_the_callers_contextvars_in_a_copy() -> None:
    engine = build_default_engine()

    @engine.task(name="read", dag="ctxvars")
    def read() -> str:
        seen = request_id.get()
        request_id.set("changed-in-thread")
        return seen

    @engine.task(name="read_async", dag="ctxvars")
    async def read_async() -> str:
        return request_id.get()

    token = request_id.set("req-42")
    try:
        async with engine:
            run_id = await engine.run_once("ctxvars")
        assert request_id.get() == "req-42"  # the task's change stayed in its copy
    finally:
        request_id.reset(token)
    tasks = engine.get_run_report(run_id)["tasks"]
    assert tasks["read"]["result"] == "req-42"
    assert tasks["read_async"]["result"] == "req-42"


async def test_context_identifies_the_attempt() -> None:
    engine = build_default_engine()

    @engine.task(name="who", dag="ident")
    def who(context: RunContext[None]) -> tuple[str | None, str | None, str | None, int, bool]:
        return (
            context.run_id,
            context.dag_name,
            context.task_name,
            context.attempt,
            context.cancelled(),
        )

    async with engine:
        run_id = await engine.run_once("ident")
    result = engine.get_run_report(run_id)["tasks"]["who"]["result"]
    assert result == (run_id, "ident", "who", 1, False)


# -- timestamps and the engine clock ------------------------------------------------------


async def test_every_timestamp_and_duration_comes_from_the_engine_clock() -> None:
    clock = new_clock()
    recorder = RecordingHook()
    engine = build_default_engine(clock=clock, hooks=[recorder])

    @engine.task(name="slow_sync", dag="clock")
    def slow_sync() -> int:
        clock.advance(5.0)
        return 1

    @engine.task(name="slow_async", dag="clock", deps=[slow_sync])
    async def slow_async(slow_sync: int) -> int:
        clock.advance(2.0)
        return slow_sync + 1

    async with engine:
        run_id = await engine.run_once("clock")
    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["created_at"] == WALL_START
    assert report["finished_at"] == WALL_START + 7.0
    first, second = report["tasks"]["slow_sync"], report["tasks"]["slow_async"]
    assert (first["started_at"], first["finished_at"]) == (WALL_START, WALL_START + 5.0)
    assert (second["started_at"], second["finished_at"]) == (WALL_START + 5.0, WALL_START + 7.0)

    durations = {
        e.task_name: e.duration_s for e in recorder.events if isinstance(e, TaskSuccessEvent)
    }
    assert durations == {"slow_sync": 5.0, "slow_async": 2.0}
    (end,) = [e for e in recorder.events if isinstance(e, DagEndEvent)]
    assert end.duration_s == 7.0


async def test_timestamps_are_ordered_with_the_system_clock() -> None:
    recorder = RecordingHook()
    engine = build_default_engine(hooks=[recorder])

    @engine.task(name="a", dag="ts")
    def a() -> int:
        return 1

    @engine.task(name="b", dag="ts", deps=[a])
    async def b(a: int) -> int:
        return a

    @engine.task(name="c", dag="ts", deps=[b])
    def c(b: int) -> int:
        raise ValueError("late failure")

    async with engine:
        run_id = await engine.run_once("ts")
    report = engine.get_run_report(run_id)
    tasks = report["tasks"]
    for name, t in tasks.items():
        assert t["started_at"] is not None, name
        assert t["finished_at"] is not None, name
        assert t["started_at"] <= t["finished_at"], name
        assert report["created_at"] <= t["started_at"], name
        assert t["finished_at"] <= report["finished_at"], name
    assert tasks["a"]["finished_at"] <= tasks["b"]["started_at"]
    assert tasks["b"]["finished_at"] <= tasks["c"]["started_at"]
    for event in recorder.events:
        duration = getattr(event, "duration_s", 0.0)
        assert duration >= 0.0, event


def test_derive_runs_the_same_pipelines_with_another_store_and_more_hooks() -> None:
    own = RecordingHook()
    engine = build_default_engine(hooks=[own], max_parallel=3)
    engine.task("a", dag="d")(lambda: 1)
    extra = RecordingHook()
    store = InMemoryStateStore()
    derived = engine.derive(state_store=store, extra_hooks=[extra], max_parallel=1)
    assert derived.registry is engine.registry
    assert derived.config.max_parallel == 1
    assert engine.config.max_parallel == 3  # the user's engine is untouched
    assert derived.hooks == (own, extra)
    assert engine.hooks == (own,)
    run_id = asyncio.run(derived.run_once("d"))
    assert store.load_run(run_id).status == "SUCCESS"
    assert engine.list_runs() == []  # the run went to the derived engine's store only
    assert len(extra.events) == len(own.events) > 0
    assert engine.derive().state_store is engine.state_store
    with pytest.raises(ValueError, match="'max_parallel' must be >= 1"):
        engine.derive(max_parallel=0)
    derived.close()
