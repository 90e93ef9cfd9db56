"""Edge cases of the engine modules that the other test modules do not reach.

Bad input at registration, reprs, broken collaborators (executor, state store, clock, hooks),
late outcomes of abandoned sync attempts, and the in-memory store used directly.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from support import new_clock

from flowrun import (
    DagEndEvent,
    DuplicateTaskError,
    InMemoryStateStore,
    RunContext,
    SystemClock,
    TaskDefinitionError,
    TaskRegistry,
    UnknownRunError,
    build_default_engine,
    fn_hook,
)
from flowrun.state import RunRecord, TaskRecord
from flowrun.testing import VirtualClock

WAIT_S = 5.0  # generous upper bound for something that is expected to happen


class BrokenSleepClock(VirtualClock):
    """A clock whose ``sleep`` raises: retries must not be stranded by it."""

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        raise RuntimeError("the clock is broken")


# -- reprs ---------------------------------------------------------------------------------


def test_reprs_name_the_useful_parts() -> None:
    engine = build_default_engine(max_parallel=3, clock=new_clock())
    scope = engine.dag("etl")

    @scope.task(name="extract")
    def extract() -> int:
        return 1

    def fetch(url: str) -> str:
        return url

    template = scope.task_template(fetch)

    assert repr(engine) == "Engine(dags=['etl'], max_parallel=3, store=InMemoryStateStore)"
    assert repr(scope) == "DagScope('etl')"
    assert repr(engine.registry) == "TaskRegistry(dags=['etl'], tasks=1)"
    assert repr(template) == "TaskTemplate(fetch, dag='etl')"
    assert repr(engine.get_dag("etl")) == "DAG('etl', tasks=1)"
    assert repr(SystemClock()) == "SystemClock()"
    engine.close()


def test_fn_hook_repr_lists_its_handlers_in_order() -> None:
    def ignore(event: object) -> None:
        return None

    hook = fn_hook(on_task_success=ignore, on_dag_end=ignore, on_dag_start=ignore)

    assert repr(hook) == "fn_hook(on_dag_end, on_dag_start, on_task_success)"


async def test_run_context_repr_shows_deps_and_the_attempt_identity() -> None:
    assert repr(RunContext({"api": "x"})) == "RunContext({'api': 'x'})"
    seen: list[str] = []
    engine = build_default_engine(clock=new_clock())

    @engine.task(name="t", dag="d")
    async def t(ctx: RunContext[dict[str, str]]) -> None:
        seen.append(repr(ctx))

    await engine.run_once("d", context=RunContext({"api": "x"}))

    assert seen == ["RunContext({'api': 'x'}, task='t', attempt=1)"]


# -- RunContext ----------------------------------------------------------------------------


def test_run_context_missing_attribute_of_object_deps_names_the_deps_type() -> None:
    ctx = RunContext(SimpleNamespace(api_base="http://x"))

    assert ctx.api_base == "http://x"
    with pytest.raises(
        AttributeError, match=r"'missing'.*neither has its deps \(SimpleNamespace\)"
    ):
        _ = ctx.missing


async def test_run_once_with_unwrapped_deps_asks_to_wrap_them_in_run_context() -> None:
    engine = build_default_engine(clock=new_clock())
    calls: list[str] = []

    @engine.task(name="t", dag="d")
    def t() -> None:
        calls.append("t")

    with pytest.raises(TypeError, match=r"RunContext\(deps\).*got dict"):
        await engine.run_once("d", context={"api": "x"})  # type: ignore[arg-type]

    assert calls == []
    assert engine.list_runs() == []
    engine.close()


async def test_run_subgraph_rejects_a_non_string_target() -> None:
    engine = build_default_engine(clock=new_clock())

    @engine.task(name="a", dag="d")
    def a() -> None:
        return None

    with pytest.raises(TypeError, match=r"run_subgraph: task names must be strings, got 1"):
        await engine.run_subgraph("d", ["a", 1])  # type: ignore[list-item]
    engine.close()


# -- the real clock ------------------------------------------------------------------------


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


# -- late outcomes of a timed-out sync attempt ----------------------------------------------


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


# -- broken collaborators ------------------------------------------------------------------


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


class PickyStore(InMemoryStateStore):
    """A store that cannot keep one kind of result (like a serializer that refuses it)."""

    def mark_success(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        result: Any,
        keep_result: bool,
    ) -> None:
        if isinstance(result, set):
            raise ValueError(f"cannot store a set (result of task {task!r})")
        super().mark_success(run_id, task, started_at, finished_at, result, keep_result)


async def test_a_store_refusing_a_result_fails_that_task_and_skips_its_descendants() -> None:
    engine = build_default_engine(state_store=PickyStore(), clock=new_clock())
    calls: list[str] = []

    @engine.task(name="odd", dag="d")
    def odd() -> set[int]:
        return {1, 2}

    @engine.task(name="uses_odd", dag="d", deps=[odd])
    def uses_odd(odd: set[int]) -> int:
        calls.append("uses_odd")
        return len(odd)

    @engine.task(name="grandchild", dag="d", deps=[uses_odd])
    def grandchild() -> None:
        calls.append("grandchild")

    @engine.task(name="fine", dag="d")
    def fine() -> list[int]:
        return [1, 2]

    @engine.task(name="uses_fine", dag="d", deps=[fine])
    def uses_fine(fine: list[int]) -> int:
        return sum(fine)

    run_id = await asyncio.wait_for(engine.run_once("d"), WAIT_S)

    report = engine.get_run_report(run_id)
    tasks = report["tasks"]
    assert report["status"] == "FAILED"
    assert tasks["odd"]["status"] == "FAILED"
    assert tasks["odd"]["error"] == "ValueError: cannot store a set (result of task 'odd')"
    assert tasks["uses_odd"]["status"] == "SKIPPED"
    assert tasks["grandchild"]["status"] == "SKIPPED"
    assert "'odd'" in tasks["grandchild"]["error"]
    assert tasks["fine"]["status"] == "SUCCESS"
    assert tasks["uses_fine"] == {**tasks["uses_fine"], "status": "SUCCESS", "result": 3}
    assert calls == []
    engine.close()


# -- BaseExceptions racing with completions ------------------------------------------------


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


# -- InMemoryStateStore used directly ------------------------------------------------------


def _record(run_id: str = "r1", **tasks: TaskRecord) -> RunRecord:
    return RunRecord(run_id, "d", 1.0, tasks=dict(tasks) or {"a": TaskRecord()})


def test_store_rejects_a_second_run_with_the_same_id() -> None:
    store = InMemoryStateStore()
    store.create_run(_record("r1"))

    with pytest.raises(ValueError, match=r"run id 'r1' already exists"):
        store.create_run(_record("r1"))


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.mark_running("nope", "a", 1, 2.0),
        lambda s: s.mark_success("nope", "a", 1.0, 2.0, 1, True),
        lambda s: s.mark_failed("nope", "a", 1.0, 2.0, "E", None),
        lambda s: s.mark_retry("nope", "a", 1.0, 2.0, "E", None),
        lambda s: s.mark_skipped("nope", ["a"], "why"),
        lambda s: s.finish_run("nope", "SUCCESS", 2.0),
        lambda s: s.load_run("nope"),
    ],
)
def test_store_operations_on_an_unknown_run_raise_unknown_run_error(
    call: Callable[[InMemoryStateStore], object],
) -> None:
    store = InMemoryStateStore()
    store.create_run(_record("r1"))

    with pytest.raises(UnknownRunError, match="nope"):
        call(store)


def test_store_mark_on_an_unknown_task_of_a_known_run_raises_key_error() -> None:
    store = InMemoryStateStore()
    store.create_run(_record("r1"))

    with pytest.raises(KeyError, match="run 'r1' has no task 'ghost'"):
        store.mark_running("r1", "ghost", 1, 2.0)
    assert store.load_run("r1").tasks["a"].status == "PENDING"


def test_store_list_runs_rejects_a_negative_limit() -> None:
    store = InMemoryStateStore()

    with pytest.raises(ValueError, match=r"'limit' must be >= 0 \(got -1\)"):
        store.list_runs(limit=-1)
    assert store.list_runs(limit=0) == []


def test_store_returns_an_uncopyable_result_as_is() -> None:
    store = InMemoryStateStore()
    store.create_run(_record("r1"))
    lock = threading.Lock()
    store.mark_success("r1", "a", 1.0, 2.0, {"lock": lock}, True)

    loaded = store.load_run("r1")
    listed = store.list_runs()

    assert loaded.tasks["a"].result["lock"] is lock
    assert listed[0].tasks["a"].result["lock"] is lock


async def test_engine_report_with_an_uncopyable_result() -> None:
    engine = build_default_engine(clock=new_clock())
    lock = threading.Lock()

    @engine.task(name="t", dag="d")
    def t() -> dict[str, Any]:
        return {"lock": lock}

    run_id = await asyncio.wait_for(engine.run_once("d"), WAIT_S)

    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["t"]["result"]["lock"] is lock
    engine.close()


# -- registration edge cases (task.py) ----------------------------------------------------


async def test_optional_run_context_as_an_unresolvable_string_annotation_is_injected() -> None:
    engine = build_default_engine(clock=new_clock())
    seen: list[object] = []

    def with_ctx(ctx, extra: int = 0):  # type: ignore[no-untyped-def]
        seen.append(ctx.api_base)
        return extra

    # A name that cannot be resolved forces the raw-string path.
    with_ctx.__annotations__ = {"ctx": "Optional[RunContext[NotDefinedAnywhere]]", "extra": "int"}
    engine.task(name="with_ctx", dag="d")(with_ctx)

    run_id = await engine.run_once("d", RunContext({"api_base": "http://api"}))

    assert seen == ["http://api"]
    assert engine.get_run_report(run_id)["tasks"]["with_ctx"]["result"] == 0


def test_a_callable_with_an_unreadable_signature_is_a_definition_error() -> None:
    engine = build_default_engine(clock=new_clock())

    def odd() -> None:
        return None

    odd.__signature__ = "not a signature"  # type: ignore[attr-defined]

    with pytest.raises(TaskDefinitionError, match=r"cannot read the signature of task 'odd'"):
        engine.task(name="odd", dag="d")(odd)
    assert engine.list_dags() == []


def test_an_empty_dependency_name_is_a_definition_error() -> None:
    engine = build_default_engine(clock=new_clock())

    with pytest.raises(TaskDefinitionError, match=r"'t'.*empty dependency name"):

        @engine.task(name="t", dag="d", deps=[""])
        def t() -> None:
            return None


@pytest.mark.parametrize("name", ["", 123])
def test_a_task_name_must_be_a_non_empty_string(name: Any) -> None:
    registry = TaskRegistry()

    def f() -> None:
        return None

    with pytest.raises(TaskDefinitionError, match=r"task name|@task takes a function or a task"):
        registry.task(name)(f)
    assert len(registry) == 0


def test_a_non_string_task_name_is_reported_with_its_type() -> None:
    registry = TaskRegistry()

    with pytest.raises(
        TaskDefinitionError, match=r"@task takes a function or a task name, got int"
    ):
        registry.task(123)  # type: ignore[call-overload]


def test_a_template_bound_under_an_empty_name_is_rejected() -> None:
    registry = TaskRegistry()

    def f(x: int) -> int:
        return x

    with pytest.raises(TaskDefinitionError, match=r"non-empty string \(got ''\)"):
        registry.task_template(f).bind("", x=1)


@pytest.mark.parametrize("dag", ["", 5])
def test_dag_must_be_a_non_empty_string(dag: Any) -> None:
    registry = TaskRegistry()

    def f() -> None:
        return None

    with pytest.raises(TaskDefinitionError, match=r"'dag' must be a non-empty string.*'f'"):
        registry.task(name="f", dag=dag)(f)


def test_task_template_needs_a_callable() -> None:
    engine = build_default_engine(clock=new_clock())

    with pytest.raises(TaskDefinitionError, match=r"task_template needs a callable, got int"):
        engine.task_template(42)  # type: ignore[arg-type]


def test_template_of_a_function_with_an_unreadable_signature_cannot_be_bound() -> None:
    engine = build_default_engine(clock=new_clock())

    def odd(x: int) -> int:
        return x

    odd.__signature__ = "not a signature"  # type: ignore[attr-defined]
    template = engine.task_template(odd, dag="d")

    with pytest.raises(TaskDefinitionError, match=r"cannot read the signature of task 'one'"):
        template.bind("one", x=1)
    assert engine.list_dags() == []


async def test_template_of_a_function_with_var_keyword_accepts_any_keyword() -> None:
    engine = build_default_engine(clock=new_clock())

    def collect(base: int, **extra: int) -> dict[str, int]:
        return {"base": base, **extra}

    template = engine.task_template(collect, dag="d")
    template.bind("one", base=1, anything=2, retries=1)

    run_id = await engine.run_once("d")

    assert engine.get_run_report(run_id)["tasks"]["one"]["result"] == {"base": 1, "anything": 2}


def test_binding_a_template_twice_under_one_name_names_the_template_function() -> None:
    engine = build_default_engine(clock=new_clock())

    def fetch(url: str) -> str:
        return url

    template = engine.task_template(fetch, dag="d")
    template.bind("get", url="a")

    with pytest.raises(
        DuplicateTaskError, match=r"'get' in DAG 'd'.*already registered by .*fetch"
    ):
        template.bind("get", url="b")


def test_positional_only_default_before_an_injected_parameter_is_a_definition_error() -> None:
    engine = build_default_engine(clock=new_clock())

    @engine.task(name="a", dag="d")
    def a() -> int:
        return 1

    def b(x: int = 0, a: int = 0, /) -> int:
        return x + a

    with pytest.raises(
        TaskDefinitionError, match=r"task 'b'.*positional-only parameters with defaults"
    ):
        engine.task(name="b", dag="d", deps=["a"])(b)


async def test_positional_only_injected_parameters_in_order_are_fine() -> None:
    engine = build_default_engine(clock=new_clock())

    @engine.task(name="a", dag="d")
    def a() -> int:
        return 1

    def b(a: int, ctx: RunContext[dict[str, int]], /, k: int = 5) -> int:
        bonus: int = ctx.bonus
        return a + bonus + k

    engine.task(name="b", dag="d", deps=["a"])(b)

    run_id = await engine.run_once("d", RunContext({"bonus": 10}))

    assert engine.get_run_report(run_id)["tasks"]["b"]["result"] == 16


def test_registry_unregister_len_and_membership() -> None:
    registry = TaskRegistry()

    @registry.task(name="a", dag="one")
    def a() -> None:
        return None

    @registry.task(name="b", dag="two")
    def b() -> None:
        return None

    assert len(registry) == 2
    assert ("one", "a") in registry
    assert "a" not in registry
    assert ("one", "a", "x") not in registry

    with pytest.raises(KeyError, match=r"DAG 'one' has no task 'zzz'"):
        registry.unregister("one", "zzz")
    with pytest.raises(KeyError, match=r"DAG 'nope' has no task 'a'"):
        registry.unregister("nope", "a")

    spec = registry.unregister("one", "a")

    assert spec.name == "a"
    assert len(registry) == 1
    assert registry.dag_names() == ["two"]  # the emptied DAG is gone
    assert ("one", "a") not in registry


def test_a_partial_registered_twice_names_the_wrapped_function() -> None:
    registry = TaskRegistry()

    def work(n: int) -> int:
        return n

    registry.task(name="w", dag="d")(functools.partial(work, 1))

    with pytest.raises(DuplicateTaskError, match=r"already registered by .*work, now by .*work"):
        registry.task(name="w", dag="d")(functools.partial(work, 2))


def test_a_run_context_pickles_without_its_process_bound_parts() -> None:
    """Sent to a worker process, a context keeps deps and identity; its cancellation signal
    and deadline belong to the engine's process and stay behind."""
    import pickle

    from flowrun import SystemClock

    ctx = RunContext({"api": "https://x"}).for_attempt("r1", "etl", "load", 2, SystemClock())
    ctx.set_deadline(SystemClock().monotonic() + 60)
    ctx.cancel()
    copy = pickle.loads(pickle.dumps(ctx))
    assert (copy.api, copy.run_id, copy.dag_name, copy.task_name, copy.attempt) == (
        "https://x",
        "r1",
        "etl",
        "load",
        2,
    )
    assert ctx.cancelled()
    assert not copy.cancelled()
    assert ctx.time_remaining_s() is not None
    assert copy.time_remaining_s() is None
