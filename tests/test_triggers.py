"""Trigger rules and deliberate omission: which tasks run after a failure or an omission, what
they receive, and the statuses, events, reports and resumes that follow."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flowrun import (
    Omit,
    RunContext,
    RunHook,
    TaskDefinitionError,
    TaskOmitEvent,
    TaskSkipEvent,
    UpstreamState,
    build_default_engine,
    fn_hook,
)
from flowrun._engine import Engine
from flowrun.testing import RecordingHook, run_dag


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {name: task["status"] for name, task in report["tasks"].items()}


def _fail() -> None:
    raise ValueError("boom")


def _engine(*hooks: RunHook) -> Engine:
    return build_default_engine(hooks=list(hooks))


# -- the four rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "upstream_fails", "expected"),
    [
        ("all_success", False, "SUCCESS"),
        ("all_success", True, "SKIPPED"),
        ("all_done", False, "SUCCESS"),
        ("all_done", True, "SUCCESS"),
        ("none_failed", False, "SUCCESS"),
        ("none_failed", True, "SKIPPED"),
        ("one_failed", False, "OMITTED"),
        ("one_failed", True, "SUCCESS"),
    ],
)
def test_each_rule_after_a_success_and_after_a_failure(
    rule: str, upstream_fails: bool, expected: str
) -> None:
    engine = _engine()
    etl = engine.dag("etl")
    etl.task("extract")(_fail if upstream_fails else (lambda: 1))
    etl.task("ok")(lambda: 2)
    etl.task("last", deps=["extract", "ok"], trigger=rule)(lambda: "ran")  # type: ignore[call-overload]
    report = run_dag(etl)
    assert report["tasks"]["last"]["status"] == expected
    assert report["tasks"]["last"]["result"] == ("ran" if expected == "SUCCESS" else None)
    assert report["status"] == ("FAILED" if upstream_fails else "SUCCESS")


def test_a_skipped_parent_counts_as_a_failure_for_every_rule() -> None:
    engine = _engine()
    etl = engine.dag("etl")
    etl.task("extract")(_fail)
    etl.task("transform", deps=["extract"])(lambda extract: extract)
    for rule in ("all_done", "none_failed", "one_failed"):
        etl.task(rule, deps=["transform"], trigger=rule)(lambda: None)
    statuses = _statuses(run_dag(etl))
    assert statuses == {
        "extract": "FAILED",
        "transform": "SKIPPED",
        "all_done": "SUCCESS",
        "none_failed": "SKIPPED",
        "one_failed": "SUCCESS",
    }


def test_a_rule_task_waits_for_every_parent_even_after_a_failure() -> None:
    engine = _engine()
    etl = engine.dag("etl")
    seen: list[str] = []

    async def slow() -> int:
        import asyncio

        await asyncio.sleep(60)
        seen.append("slow done")
        return 7

    etl.task("fails")(_fail)
    etl.task("slow")(slow)

    @etl.task(deps=["fails", "slow"], trigger="all_done")
    def cleanup(fails: None, slow: int) -> int:
        seen.append("cleanup")
        return slow

    report = run_dag(etl)
    assert seen == ["slow done", "cleanup"]
    assert report["tasks"]["cleanup"]["result"] == 7


def test_upstream_states_name_each_parents_status_and_error() -> None:
    engine = _engine()
    etl = engine.dag("etl")
    etl.task("extract")(_fail)
    etl.task("transform", deps=["extract"])(lambda extract: extract)
    etl.task("count")(lambda: 3)
    states: dict[str, UpstreamState] = {}
    values: dict[str, object] = {}

    @etl.task(deps=["transform", "count"], trigger="all_done")
    def notify(context: RunContext[None], transform: object, count: int) -> str:
        states.update(context.upstream_states)
        values.update(transform=transform, count=count)
        return "sent"

    run_dag(etl)
    assert values == {"transform": None, "count": 3}
    assert states == {
        "transform": UpstreamState("SKIPPED", "upstream task 'extract' failed"),
        "count": UpstreamState("SUCCESS", None),
    }


def test_an_all_success_task_sees_every_parent_succeeded() -> None:
    engine = _engine()
    etl = engine.dag("etl")
    etl.task("a")(lambda: 1)
    states: dict[str, UpstreamState] = {}

    @etl.task(deps=["a"])
    def b(context: RunContext[None], a: int) -> int:
        states.update(context.upstream_states)
        return a

    run_dag(etl)
    assert states == {"a": UpstreamState("SUCCESS", None)}


def test_a_cleanup_that_succeeds_never_turns_a_failed_run_green() -> None:
    engine = _engine()
    etl = engine.dag("etl")
    etl.task("load")(_fail)
    etl.task("cleanup", deps=["load"], trigger="all_done")(lambda: None)
    report = run_dag(etl)
    assert _statuses(report) == {"load": "FAILED", "cleanup": "SUCCESS"}
    assert report["status"] == "FAILED"


def test_a_rule_task_whose_parents_are_all_kept_on_resume_is_kept_too() -> None:
    engine = _engine()
    etl = engine.dag("etl")
    calls: list[str] = []
    etl.task("a")(lambda: calls.append("a"))
    etl.task("b")(_fail)
    etl.task("alert", deps=["a"], trigger="one_failed")(lambda: calls.append("alert"))
    etl.task("c", deps=["b"])(lambda: None)
    first = run_dag(etl)
    assert _statuses(first)["alert"] == "OMITTED"
    import asyncio

    rerun = asyncio.run(engine.resume(first["run_id"]))
    report = engine.get_run_report(rerun)
    # a and alert are kept (SUCCESS, OMITTED); b fails again, c is skipped again
    assert _statuses(report) == {"a": "SUCCESS", "b": "FAILED", "alert": "OMITTED", "c": "SKIPPED"}
    assert calls == ["a"]


# -- Omit ------------------------------------------------------------------------------


def test_omit_leaves_the_task_and_its_all_success_downstream_out_and_the_run_green() -> None:
    hook = RecordingHook()
    engine = _engine(hook)
    etl = engine.dag("etl")

    @etl.task(retries=3)
    def poll() -> None:
        raise Omit("no new files")

    etl.task("parse", deps=["poll"])(lambda poll: poll)
    etl.task("load", deps=["parse"])(lambda parse: parse)
    etl.task("other")(lambda: 1)
    report = run_dag(etl)
    assert report["status"] == "SUCCESS"
    assert _statuses(report) == {
        "poll": "OMITTED",
        "other": "SUCCESS",
        "parse": "OMITTED",
        "load": "OMITTED",
    }
    poll_entry = report["tasks"]["poll"]
    assert poll_entry["error"] == "no new files"
    assert poll_entry["attempt"] == 1  # not retried
    assert poll_entry["finished_at"] is not None
    assert report["tasks"]["parse"]["error"] == "upstream task 'poll' was omitted"
    assert [(e.task_name, e.reason) for e in hook.of(TaskOmitEvent)] == [
        ("poll", "no new files"),
        ("parse", "upstream task 'poll' was omitted"),
        ("load", "upstream task 'parse' was omitted"),
    ]
    assert hook.failures(final=None) == []


def test_omit_without_a_reason_says_which_task_raised_it() -> None:
    engine = _engine()
    etl = engine.dag("etl")

    @etl.task()
    def poll() -> None:
        raise Omit()

    report = run_dag(etl)
    assert report["tasks"]["poll"]["error"] == "task 'poll' raised Omit"


async def _omit_async() -> None:
    raise Omit("async too")


def test_an_async_task_omits_itself_too() -> None:
    engine = _engine()
    etl = engine.dag("etl")
    etl.task("poll")(_omit_async)
    report = run_dag(etl)
    assert report["tasks"]["poll"]["status"] == "OMITTED"
    assert report["tasks"]["poll"]["error"] == "async too"


def test_a_failure_beats_an_omission_whichever_comes_first() -> None:
    engine = _engine()
    etl = engine.dag("etl")

    async def late_failure() -> None:
        import asyncio

        await asyncio.sleep(10)
        raise ValueError("late")

    def omit() -> None:
        raise Omit("nothing")

    etl.task("omits")(omit)
    etl.task("fails")(late_failure)
    etl.task("both", deps=["omits", "fails"])(lambda: None)
    etl.task("after", deps=["both"])(lambda: None)
    statuses = _statuses(run_dag(etl))
    assert statuses["both"] == "SKIPPED"
    assert statuses["after"] == "SKIPPED"


def test_none_failed_joins_after_an_omitted_branch() -> None:
    engine = _engine()
    etl = engine.dag("etl")

    def branch_a() -> None:
        raise Omit("not today")

    etl.task("branch_a")(branch_a)
    etl.task("branch_b")(lambda: "b")

    @etl.task(deps=["branch_a", "branch_b"], trigger="none_failed")
    def join(branch_a: object, branch_b: str) -> tuple[object, str]:
        return branch_a, branch_b

    report = run_dag(etl)
    assert report["tasks"]["join"]["status"] == "SUCCESS"
    assert report["tasks"]["join"]["result"] == (None, "b")


def test_an_omitted_task_is_kept_on_resume_unless_named() -> None:
    import asyncio

    engine = _engine()
    etl = engine.dag("etl")
    calls: list[str] = []

    def poll() -> None:
        calls.append("poll")
        raise Omit("no files")

    etl.task("poll")(poll)
    etl.task("parse", deps=["poll"])(lambda: calls.append("parse"))
    etl.task("flaky")(_fail)
    first = run_dag(etl)
    rerun = engine.get_run_report(asyncio.run(engine.resume(first["run_id"])))
    assert _statuses(rerun) == {"poll": "OMITTED", "flaky": "FAILED", "parse": "OMITTED"}
    assert calls == ["poll"]  # kept: not run again
    named = engine.get_run_report(asyncio.run(engine.resume(first["run_id"], from_tasks=["poll"])))
    assert calls == ["poll", "poll"]
    assert named["tasks"]["parse"]["status"] == "OMITTED"


def test_a_cleanup_after_a_rerun_task_runs_again_on_resume() -> None:
    import asyncio

    engine = _engine()
    etl = engine.dag("etl")
    calls: list[str] = []
    outcomes = iter([ValueError("first"), None])

    def load() -> None:
        error = next(outcomes)
        if error is not None:
            raise error

    etl.task("load")(load)
    etl.task("cleanup", deps=["load"], trigger="all_done")(lambda: calls.append("cleanup"))
    first = run_dag(etl)
    assert _statuses(first) == {"load": "FAILED", "cleanup": "SUCCESS"}
    again = engine.get_run_report(asyncio.run(engine.resume(first["run_id"])))
    assert _statuses(again) == {"load": "SUCCESS", "cleanup": "SUCCESS"}
    assert again["status"] == "SUCCESS"
    assert calls == ["cleanup", "cleanup"]


def test_a_child_of_a_kept_omitted_task_is_omitted_on_resume() -> None:
    import asyncio

    engine = _engine()
    etl = engine.dag("etl")

    def poll() -> None:
        raise Omit("no files")

    outcomes = iter([ValueError("down"), None])

    def flaky() -> None:
        error = next(outcomes)
        if error is not None:
            raise error

    etl.task("poll")(poll)
    etl.task("flaky")(flaky)
    etl.task("parse", deps=["poll", "flaky"])(lambda: None)
    etl.task("alert", deps=["poll"], trigger="all_done")(lambda: None)
    first = run_dag(etl)
    assert _statuses(first)["parse"] == "SKIPPED"
    # resume: flaky succeeds now, and parse's other parent is a kept OMITTED task
    again = engine.get_run_report(asyncio.run(engine.resume(first["run_id"])))
    assert _statuses(again) == {
        "poll": "OMITTED",
        "flaky": "SUCCESS",
        "alert": "SUCCESS",
        "parse": "OMITTED",
    }
    assert again["tasks"]["parse"]["error"] == "upstream task 'poll' was omitted"
    assert again["status"] == "SUCCESS"


# -- events, hooks, errors -----------------------------------------------------------------


def test_skip_and_omit_events_carry_their_reasons() -> None:
    hook = RecordingHook()
    engine = _engine(hook)
    etl = engine.dag("etl")
    etl.task("a")(_fail)
    etl.task("b", deps=["a"])(lambda: None)
    etl.task("alert", deps=["b"], trigger="none_failed")(lambda: None)
    etl.task("fine")(lambda: None)
    etl.task("fine_alert", deps=["fine"], trigger="one_failed")(lambda: None)
    run_dag(etl)
    assert [(e.task_name, e.reason) for e in hook.of(TaskSkipEvent)] == [
        ("b", "upstream task 'a' failed"),
        ("alert", "trigger rule 'none_failed' not met: upstream task 'b' failed or was skipped"),
    ]
    assert [(e.task_name, e.reason) for e in hook.of(TaskOmitEvent)] == [
        ("fine_alert", "trigger rule 'one_failed' not met: no upstream task failed"),
    ]


def test_omit_raised_by_a_hook_is_logged_as_a_mistake_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def omit_from_hook(event: object) -> None:
        raise Omit("from a hook")

    engine = _engine(fn_hook(on_task_start=omit_from_hook))
    etl = engine.dag("etl")
    etl.task("a")(lambda: 1)
    with caplog.at_level(logging.ERROR, logger="flowrun"):
        report = run_dag(etl)
    assert report["tasks"]["a"]["status"] == "SUCCESS"
    assert "Omit only works when a task function raises it" in caplog.text
    assert "'from a hook'" in caplog.text


def test_an_unknown_trigger_rule_is_refused_with_the_closest_rule() -> None:
    engine = _engine()
    with pytest.raises(TaskDefinitionError) as info:
        engine.task("t", dag="etl", trigger="all_sucess")(lambda: 1)  # type: ignore[call-overload]
    error = info.value
    assert (error.dag, error.task, error.option, error.got) == ("etl", "t", "trigger", "all_sucess")
    assert "Did you mean 'all_success'?" in str(error)
    with pytest.raises(TaskDefinitionError, match="'trigger' must be one of 'all_success'"):
        engine.task("t", dag="etl", trigger="sometimes")(lambda: 1)  # type: ignore[call-overload]


def test_a_long_chain_of_omissions_is_one_traversal_not_a_recursion() -> None:
    engine = _engine()
    etl = engine.dag("etl")

    def start() -> None:
        raise Omit("off")

    etl.task("t0")(start)
    for i in range(1, 3000):
        etl.task(f"t{i}", deps=[f"t{i - 1}"])(lambda: None)
    report = run_dag(etl)
    assert report["status"] == "SUCCESS"
    assert set(_statuses(report).values()) == {"OMITTED"}
