"""flowrun.testing: RecordingHook, override_tasks, run_dag and report formatting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowrun import (
    DagEndEvent,
    DagStartEvent,
    RunContext,
    TaskDefinitionError,
    TaskFailureEvent,
    TaskRetryEvent,
    TaskSkipEvent,
    TaskStartEvent,
    TaskSuccessEvent,
    UnknownTaskError,
    build_default_engine,
)
from flowrun._engine import Engine
from flowrun._overrides import override_tasks
from flowrun.errors import ContextFactoryError
from flowrun.testing import RecordingHook, format_report, run_dag, trim_traceback


def _etl(hooks: Any = ()) -> Engine:
    engine = build_default_engine(hooks=list(hooks))
    etl = engine.dag("etl")

    @etl.task
    def extract() -> list[int]:
        return [1, 2, 3]

    @etl.task(deps=[extract], retries=1)
    def transform(extract: list[int]) -> list[int]:
        return [x * 10 for x in extract]

    @etl.task(deps=[transform])
    def load(transform: list[int], context: RunContext[list[int]]) -> int:
        context.deps.extend(transform)
        return len(transform)

    @engine.task(dag="other")
    def unrelated() -> None:
        return None

    return engine


def test_recording_hook_keeps_every_event() -> None:
    hook = RecordingHook()
    engine = build_default_engine(hooks=[hook])
    attempts = []

    @engine.task(dag="d", retries=1)
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first")
        return 1

    @engine.task(dag="d", deps=[flaky])
    def boom(flaky: int) -> None:
        raise RuntimeError("no")

    @engine.task(dag="d", deps=[boom])
    def after(boom: None) -> None:
        return None

    report = run_dag(engine, "d")
    assert report["status"] == "FAILED"
    kinds = [type(e) for e in hook.events]
    assert kinds[0] is DagStartEvent
    assert kinds[-1] is DagEndEvent
    for kind in (TaskStartEvent, TaskSuccessEvent, TaskRetryEvent, TaskFailureEvent):
        assert kind in kinds
    assert [e.task_name for e in hook.of(TaskSkipEvent)] == ["after"]
    assert [type(e).__name__ for e in hook.for_task("flaky")] == [
        "TaskStartEvent",
        "TaskFailureEvent",
        "TaskRetryEvent",
        "TaskStartEvent",
        "TaskSuccessEvent",
    ]
    assert [(e.task_name, e.final) for e in hook.failures(final=None)] == [
        ("flaky", False),
        ("boom", True),
    ]
    assert [e.task_name for e in hook.failures()] == ["boom"]
    assert hook.task_order() == ["flaky", "boom"]
    assert "events" in repr(hook)
    hook.clear()
    assert hook.events == []


def test_override_swaps_functions_and_restores_them() -> None:
    engine = _etl()
    before = [(s.name, s.func) for s in engine.registry.tasks_of("etl").values()]
    dags_before = engine.list_dags()
    with override_tasks(engine, "etl", extract=lambda: [7]) as stubs:
        assert list(stubs) == ["extract"]
        sink: list[int] = []
        report = run_dag(engine, "etl", context=sink)
        assert report["status"] == "SUCCESS"
        assert sink == [70]
        assert engine.list_tasks("etl") == ["extract", "transform", "load"]
    assert [(s.name, s.func) for s in engine.registry.tasks_of("etl").values()] == before
    assert engine.list_dags() == dags_before
    sink2: list[int] = []
    run_dag(engine, "etl", context=sink2)
    assert sink2 == [10, 20, 30]


def test_override_keeps_options_and_injection() -> None:
    engine = _etl()
    calls: list[list[int]] = []

    def transform(extract: list[int]) -> list[int]:
        calls.append(extract)
        if len(calls) == 1:
            raise ValueError("retry me")
        return extract

    with override_tasks(engine, "etl", transform=transform):
        spec = engine.registry.tasks_of("etl")["transform"]
        assert (spec.retries, spec.deps) == (1, ("extract",))
        report = run_dag(engine, "etl", context=[])
    assert report["tasks"]["transform"]["attempt"] == 2
    assert calls == [[1, 2, 3], [1, 2, 3]]


def test_override_restores_on_error_and_nests() -> None:
    engine = _etl()
    original = engine.registry.tasks_of("etl")["extract"].func

    def use_overrides() -> None:
        with override_tasks(engine, "etl", extract=lambda: [1]):
            with override_tasks(engine, "etl", extract=lambda: [2]):
                assert engine.registry.tasks_of("etl")["extract"].func() == [2]
            assert engine.registry.tasks_of("etl")["extract"].func() == [1]
            raise KeyError("boom")

    with pytest.raises(KeyError):
        use_overrides()
    assert engine.registry.tasks_of("etl")["extract"].func is original


def test_override_errors_change_nothing() -> None:
    engine = _etl()
    version = engine.registry.version
    with pytest.raises(UnknownTaskError, match=r"no task 'extrct'\. Did you mean 'extract'\?"):
        override_tasks(engine, "etl", extrct=lambda: []).__enter__()
    with pytest.raises(TypeError, match="must be callable"):
        override_tasks(engine, "etl", extract=[1, 2]).__enter__()  # type: ignore[arg-type]
    with pytest.raises(TaskDefinitionError, match="would receive nothing"):
        override_tasks(engine, "etl", transform=lambda rows: rows).__enter__()
    assert engine.registry.version == version
    with override_tasks(engine, "etl") as stubs:
        assert stubs == {}


def test_override_of_an_unscoped_task_stays_unscoped() -> None:
    engine = build_default_engine()

    @engine.task
    def only() -> int:
        return 1

    with override_tasks(engine, "anything", only=lambda: 2):
        assert run_dag(engine)["tasks"]["only"]["result"] == 2
    assert engine.registry.only_implicit_dag()


def test_run_dag_targets_errors_and_scope() -> None:
    engine = _etl()
    scope = engine.dag("etl")
    report = run_dag(scope, targets=["transform"])
    assert list(report["tasks"]) == ["extract", "transform"]
    with pytest.raises(ValueError, match="2 DAGs"):
        run_dag(engine)
    with pytest.raises(ValueError, match="give one of them"):
        run_dag(scope, "other")
    with pytest.raises(TypeError, match="Engine or a DagScope"):
        run_dag("etl")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="targets=\\['load'\\]"):
        run_dag(scope, targets="load")


def test_run_dag_refuses_to_run_inside_a_loop() -> None:
    engine = _etl()

    async def main() -> None:
        run_dag(engine, "other")

    with pytest.raises(RuntimeError, match="cannot be called from async code"):
        asyncio.run(main())


def test_format_report_shows_table_errors_and_user_frames() -> None:
    engine = _etl()

    def transform(extract: list[int]) -> list[int]:
        raise ValueError("bad row 2")

    report = run_dag(engine, "etl", context=[], overrides={"transform": transform})
    text = format_report(report)
    lines = text.splitlines()
    assert lines[0].endswith("of DAG 'etl': FAILED")
    assert lines[1].split() == ["task", "status", "attempt", "duration"]
    assert lines[2].split() == ["extract", "SUCCESS", "1", "0.000s"]
    assert lines[3].split() == ["transform", "FAILED", "2", "0.000s"]
    assert lines[4].split() == ["load", "SKIPPED", "0", "-"]
    assert "task 'transform' failed on attempt 2: ValueError: bad row 2" in text
    assert 'raise ValueError("bad row 2")' in text
    assert "flowrun/_attempt.py" not in text
    assert "flowrun/_attempt.py" in report["tasks"]["transform"]["traceback"]
    assert "Traceback" not in format_report(report, tracebacks=False)


def test_trim_traceback_keeps_text_without_user_frames() -> None:
    text = 'Traceback (most recent call last):\n  File "x.py", line 1, in f\n    g()\nE: e\n'
    assert trim_traceback(text) == text


def test_run_dag_hooks_record_one_run_and_are_detached_after_it() -> None:
    own = RecordingHook()
    engine = _etl(hooks=[own])
    dispatcher = engine._hooks
    extra = RecordingHook()
    run_dag(engine, "etl", context=[], hooks=[extra, own])  # `own` is not added twice
    assert extra.task_order() == ["extract", "transform", "load"]
    assert len(own.of(DagStartEvent)) == 1
    assert engine.hooks == (own,)
    assert engine._hooks is dispatcher
    run_dag(engine, "etl", context=[])
    assert len(extra.of(DagStartEvent)) == 1  # the second run was not recorded by it
    assert len(own.of(DagStartEvent)) == 2


def test_run_dag_hooks_are_detached_when_the_run_raises() -> None:
    engine = build_default_engine()

    def broken_context() -> RunContext[None]:
        raise OSError("no database")

    scope = engine.dag("etl", context=broken_context)
    scope.task(lambda: 1)
    extra = RecordingHook()
    with pytest.raises(ContextFactoryError, match=r"default context of DAG 'etl'"):
        run_dag(scope, hooks=[extra])
    assert engine.hooks == ()
    assert not engine._hooks.wants(DagStartEvent)
