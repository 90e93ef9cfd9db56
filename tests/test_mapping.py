"""Mapped tasks: one instance per item of an upstream result known only at run time, each with
its own attempts, events and report entry; the task's entry aggregates them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import new_clock

from flowrun import (
    Omit,
    RunContext,
    TaskDefinitionError,
    TaskFailureEvent,
    TaskMapEvent,
    TaskStartEvent,
    TaskSuccessEvent,
    build_default_engine,
)
from flowrun._engine import Engine
from flowrun.testing import RecordingHook, VirtualTimeLoop, run_dag


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {name: task["status"] for name, task in report["tasks"].items()}


def _etl(
    tables: object, hook: RecordingHook | None = None, **options: Any
) -> tuple[Engine, list[str]]:
    """list_tables -> load_table (mapped, keyed by name) -> summarize; ``calls`` records the
    instances that ran (a table named 'bad' fails)."""
    engine = build_default_engine(hooks=[hook] if hook else [], clock=new_clock())
    etl = engine.dag("etl")
    calls: list[str] = []

    @etl.task()
    def list_tables() -> object:
        return tables

    @etl.task(map={"table": list_tables}, **options)
    def load_table(table: str) -> int:
        calls.append(table)
        if table == "bad":
            raise ValueError(f"cannot load {table}")
        return len(table)

    @etl.task(deps=[load_table])
    def summarize(load_table: list[int]) -> int:
        return sum(load_table)

    return engine, calls


def test_a_mapped_task_runs_once_per_item_and_its_consumer_gets_the_results_in_order() -> None:
    hook = RecordingHook()
    engine, calls = _etl(["users", "orders", "items"], hook, map_key=str)
    report = run_dag(engine, "etl")
    assert report["status"] == "SUCCESS"
    assert list(report["tasks"]) == ["list_tables", "load_table", "summarize"]
    entry = report["tasks"]["load_table"]
    assert entry["status"] == "SUCCESS"
    assert entry["result"] == [5, 6, 5]
    assert list(entry["instances"]) == ["users", "orders", "items"]
    assert entry["instances"]["orders"]["result"] == 6
    assert entry["instances"]["orders"]["attempt"] == 1
    assert report["tasks"]["summarize"]["result"] == 16
    assert sorted(calls) == ["items", "orders", "users"]
    (mapped,) = hook.of(TaskMapEvent)
    assert mapped.instances == ("load_table[users]", "load_table[orders]", "load_table[items]")
    started = [e.task_name for e in hook.of(TaskStartEvent)]
    assert started[1:4] == list(mapped.instances)
    assert [e.task_name for e in hook.of(TaskSuccessEvent)][-2:] == ["load_table", "summarize"]


def test_a_consumer_of_both_the_mapped_task_and_its_source_gets_both_results() -> None:
    """The source's result is kept until its last consumer ran: the mapped task's end used to
    release its parents twice, so a task reading the source too failed with KeyError."""
    engine = build_default_engine(clock=new_clock())
    etl = engine.dag("etl")

    @etl.task()
    def tables() -> list[str]:
        return ["users", "orders"]

    @etl.task(map={"table": tables})
    def load(table: str) -> int:
        return len(table)

    @etl.task(deps=[tables, load])
    def summary(tables: list[str], load: list[int]) -> dict[str, int]:
        return dict(zip(tables, load, strict=True))

    report = run_dag(engine, "etl")
    assert report["status"] == "SUCCESS", report["tasks"]["summary"]["error"]
    assert report["tasks"]["summary"]["result"] == {"users": 5, "orders": 6}


def test_instances_are_keyed_by_index_by_default() -> None:
    engine, _ = _etl(("a", "bb"))
    report = run_dag(engine, "etl")
    assert list(report["tasks"]["load_table"]["instances"]) == ["0", "1"]
    assert report["tasks"]["load_table"]["result"] == [1, 2]


def test_each_instance_retries_on_its_own_and_the_aggregate_takes_the_highest_attempt() -> None:
    engine = build_default_engine(clock=new_clock())
    etl = engine.dag("etl")
    etl.task("pages")(lambda: [1, 2, 3])
    failures: dict[int, int] = {}

    @etl.task(map={"page": "pages"}, retries=3, retry_delay_s=60)
    def fetch(page: int, context: RunContext[None]) -> str:
        if page == 2 and context.attempt < 3:
            failures[page] = failures.get(page, 0) + 1
            raise ConnectionError("rate limited")
        return f"page {page} ({context.task_name})"

    report = run_dag(etl)
    entry = report["tasks"]["fetch"]
    assert entry["status"] == "SUCCESS"
    assert entry["attempt"] == 3
    assert {k: v["attempt"] for k, v in entry["instances"].items()} == {"0": 1, "1": 3, "2": 1}
    assert entry["result"] == ["page 1 (fetch[0])", "page 2 (fetch[1])", "page 3 (fetch[2])"]
    assert entry["finished_at"] - entry["started_at"] == pytest.approx(60 + 120)


def test_a_failed_instance_does_not_stop_its_siblings_and_skips_the_consumers() -> None:
    hook = RecordingHook()
    engine, calls = _etl(["users", "bad", "items"], hook, map_key=str)
    report = run_dag(engine, "etl")
    assert report["status"] == "FAILED"
    entry = report["tasks"]["load_table"]
    assert entry["status"] == "FAILED"
    assert {k: v["status"] for k, v in entry["instances"].items()} == {
        "users": "SUCCESS",
        "bad": "FAILED",
        "items": "SUCCESS",
    }
    assert entry["error"] == "ValueError: cannot load bad"
    assert "cannot load bad" in entry["traceback"]
    assert entry["result"] is None
    assert sorted(calls) == ["bad", "items", "users"]
    assert report["tasks"]["summarize"]["status"] == "SKIPPED"
    assert report["tasks"]["summarize"]["error"] == "upstream task 'load_table' failed"
    finals = [e.task_name for e in hook.failures(final=True)]
    assert finals == ["load_table[bad]", "load_table"]


def test_an_empty_input_succeeds_with_an_empty_list_and_consumers_run() -> None:
    engine, calls = _etl([])
    report = run_dag(engine, "etl")
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["load_table"]["result"] == []
    assert report["tasks"]["load_table"]["instances"] == {}
    assert report["tasks"]["summarize"]["result"] == 0
    assert calls == []


def test_an_instance_that_omits_itself_is_left_out_of_the_results() -> None:
    engine = build_default_engine(clock=new_clock())
    etl = engine.dag("etl")
    etl.task("files")(lambda: ["a.csv", "empty.csv", "b.csv"])

    @etl.task(map={"name": "files"}, map_key=str)
    def parse(name: str) -> str:
        if name.startswith("empty"):
            raise Omit("no rows")
        return name.upper()

    etl.task("join", deps=["parse"])(lambda parse: "+".join(str(p) for p in parse))
    report = run_dag(etl)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["parse"]["result"] == ["A.CSV", "B.CSV"]
    assert report["tasks"]["parse"]["instances"]["empty.csv"]["status"] == "OMITTED"
    assert report["tasks"]["join"]["result"] == "A.CSV+B.CSV"


def test_every_instance_omitted_omits_the_task_and_its_consumers() -> None:
    engine = build_default_engine(clock=new_clock())
    etl = engine.dag("etl")
    etl.task("files")(lambda: ["x", "y"])

    def nothing(name: str) -> None:
        raise Omit("empty")

    etl.task("parse", map={"name": "files"})(nothing)
    etl.task("join", deps=["parse"])(lambda parse: parse)
    report = run_dag(etl)
    assert _statuses(report) == {"files": "SUCCESS", "parse": "OMITTED", "join": "OMITTED"}
    assert report["status"] == "SUCCESS"


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ("users", "which is a str, not a list of items; a string is one value"),
        ({"a": 1}, "which is a dict, not a list of items; return list(the_dict.items())"),
        (42, "which is a int, not a list of items"),
        ((t for t in "ab"), "a generator or iterator has no length: return a list"),
    ],
)
def test_an_input_that_cannot_be_mapped_fails_the_task_naming_both_tasks(
    tables: object, message: str
) -> None:
    engine, calls = _etl(tables)
    report = run_dag(engine, "etl")
    entry = report["tasks"]["load_table"]
    assert entry["status"] == "FAILED"
    assert (
        "task 'load_table' in DAG 'etl' maps over the result of task 'list_tables'"
        in (entry["error"])
    )
    assert message in entry["error"]
    assert report["tasks"]["summarize"]["status"] == "SKIPPED"
    assert calls == []


@pytest.mark.parametrize(
    ("tables", "key", "message"),
    [
        (["a", "A"], str.lower, "gives items 0 and 1 of task 'list_tables' the same key 'a'"),
        (["a", ""], str, "map_key gave an empty key for item 1"),
        (["a", None], str.upper, "map_key failed on item 1 of task 'list_tables' (None)"),
    ],
)
def test_bad_keys_fail_the_task(tables: list[Any], key: Any, message: str) -> None:
    engine, calls = _etl(tables, map_key=key)
    report = run_dag(engine, "etl")
    assert report["tasks"]["load_table"]["status"] == "FAILED"
    assert message in report["tasks"]["load_table"]["error"]
    assert calls == []


def test_more_items_than_max_map_fails_and_never_truncates() -> None:
    engine, calls = _etl(["a", "b", "c"], max_map=2)
    report = run_dag(engine, "etl")
    error = report["tasks"]["load_table"]["error"]
    assert "maps over 3 items of task 'list_tables', more than its max_map=2" in error
    assert "never truncated" in error
    assert calls == []


def test_other_dependencies_are_injected_whole_into_every_instance() -> None:
    engine = build_default_engine(clock=new_clock())
    etl = engine.dag("etl")
    etl.task("ids")(lambda: [1, 2])
    etl.task("prefix")(lambda: "row-")

    @etl.task(map={"i": "ids"}, deps=["prefix"])
    def label(i: int, prefix: str, ids: list[int]) -> str:
        return f"{prefix}{i}/{len(ids)}"

    report = run_dag(etl)
    assert report["tasks"]["label"]["result"] == ["row-1/2", "row-2/2"]


def test_max_parallel_bounds_instances_like_tasks() -> None:
    clock = new_clock()
    engine = build_default_engine(clock=clock, max_parallel=2)
    etl = engine.dag("etl")
    etl.task("n")(lambda: list(range(6)))
    running = {"now": 0, "most": 0}

    async def work(i: int) -> int:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(10)
        running["now"] -= 1
        return i

    etl.task("work", map={"i": "n"})(work)
    report = run_dag(etl)
    assert running["most"] == 2
    assert report["tasks"]["work"]["finished_at"] - report["tasks"]["work"]["started_at"] == 30


def test_a_pool_bounds_instances() -> None:
    engine = build_default_engine(clock=new_clock())
    engine.pool("api", slots=1)
    etl = engine.dag("etl")
    etl.task("n")(lambda: [1, 2, 3])
    running = {"now": 0, "most": 0}

    async def call(i: int) -> int:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(1)
        running["now"] -= 1
        return i

    etl.task("call", map={"i": "n"}, pool="api")(call)
    report = run_dag(etl)
    assert running["most"] == 1
    assert [i["queued_s"] for i in report["tasks"]["call"]["instances"].values()] == [0, 1, 2]


def test_a_thousand_items_with_retries_and_back_off_on_virtual_time() -> None:
    engine = build_default_engine(clock=new_clock(), max_parallel=50)
    etl = engine.dag("etl")
    etl.task("items")(lambda: list(range(1000)))

    async def flaky(i: int, context: RunContext[None]) -> int:
        if context.attempt == 1 and i % 10 == 0:
            raise ConnectionError("try again")
        return i * 2

    etl.task("double", map={"i": "items"}, retries=2, retry_delay_s=60)(flaky)

    def total(double: list[int]) -> int:
        return sum(double)

    etl.task("total", deps=["double"])(total)
    report = run_dag(etl)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["total"]["result"] == 2 * sum(range(1000))
    assert sum(1 for i in report["tasks"]["double"]["instances"].values() if i["attempt"] == 2) == (
        100
    )


# -- resume ------------------------------------------------------------------------------


def test_resume_keeps_succeeded_instances_and_runs_the_rest() -> None:
    engine = build_default_engine(clock=new_clock())
    etl = engine.dag("etl")
    etl.task("tables")(lambda: ["users", "bad", "items"])
    calls: list[str] = []
    broken = {"bad"}

    @etl.task(map={"table": "tables"}, map_key=str)
    def load(table: str) -> str:
        calls.append(table)
        if table in broken:
            raise ValueError("down")
        return table.upper()

    etl.task("report", deps=["load"])(lambda load: ",".join(str(x) for x in load))
    first = run_dag(etl)
    assert first["status"] == "FAILED"
    broken.clear()
    loop = VirtualTimeLoop(new_clock())
    try:
        again = engine.get_run_report(loop.run_until_complete(engine.resume(first["run_id"])))
    finally:
        loop.close()
    assert again["status"] == "SUCCESS"
    assert again["tasks"]["report"]["result"] == "USERS,BAD,ITEMS"
    assert sorted(calls) == ["bad", "bad", "items", "users"]  # only 'bad' ran again
    assert again["tasks"]["load"]["instances"]["users"]["status"] == "SUCCESS"


def test_resume_runs_again_the_instances_whose_input_changed() -> None:
    engine = build_default_engine(clock=new_clock())
    etl = engine.dag("etl")
    source = {"rows": [1, 2, 3]}
    calls: list[int] = []

    @etl.task()
    def rows() -> list[int]:
        return list(source["rows"])

    @etl.task(map={"row": rows})
    def square(row: int) -> int:
        calls.append(row)
        return row * row

    @etl.task(deps=[square])
    def fail_once(square: list[int]) -> int:
        if len(calls) == 3:
            raise RuntimeError("first time")
        return sum(square)

    first = run_dag(etl)
    assert first["tasks"]["fail_once"]["status"] == "FAILED"
    source["rows"] = [1, 5, 3]  # the source re-runs (from_tasks) and item 1 changed

    async def resume() -> str:
        return await engine.resume(first["run_id"], from_tasks=["rows"])

    loop = VirtualTimeLoop(new_clock())
    try:
        again = engine.get_run_report(loop.run_until_complete(resume()))
    finally:
        loop.close()
    assert again["tasks"]["square"]["result"] == [1, 25, 9]
    # keys 0 and 2 kept (same input); key 1 ran again (sync instances run at once, any order)
    assert sorted(calls[:3]) == [1, 2, 3]
    assert calls[3:] == [5]
    assert again["tasks"]["fail_once"]["result"] == 35


def test_a_kept_mapped_task_keeps_its_instances_and_feeds_a_rerun_consumer() -> None:
    engine = build_default_engine(clock=new_clock())
    etl = engine.dag("etl")
    etl.task("n")(lambda: [1, 2])
    calls: list[str] = []

    @etl.task(map={"i": "n"})
    def twice(i: int) -> int:
        calls.append(f"twice {i}")
        return 2 * i

    attempts = {"sum": 0}

    @etl.task(deps=[twice])
    def total(twice: list[int]) -> int:
        attempts["sum"] += 1
        if attempts["sum"] == 1:
            raise RuntimeError("flaky")
        return sum(twice)

    first = run_dag(etl)
    loop = VirtualTimeLoop(new_clock())
    try:
        again = engine.get_run_report(loop.run_until_complete(engine.resume(first["run_id"])))
    finally:
        loop.close()
    assert again["tasks"]["total"]["result"] == 6
    assert calls == ["twice 1", "twice 2"]  # not run again
    assert list(again["tasks"]["twice"]["instances"]) == ["0", "1"]


# -- declaring ---------------------------------------------------------------------------


def test_the_mapped_source_becomes_a_dependency() -> None:
    engine = build_default_engine()
    etl = engine.dag("etl")
    etl.task("tables")(lambda: [])
    etl.task("load", map={"table": "tables"})(lambda table: table)
    assert engine.get_dag("etl").parents["load"] == ("tables",)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"map": {"table": "tables", "other": "tables"}}, r"exactly one mapped source \(got 2"),
        ({"map": {}}, "'map' must be a dict of one parameter name"),
        ({"map": ["tables"]}, "'map' must be a dict of one parameter name"),
        ({"map": {"tabel": "tables"}}, "names no parameter of the function"),
        ({"map": {"table": 3}}, "'map' values are upstream tasks"),
        ({"map": {"table": "tables"}, "trigger": "all_done"}, "cannot apply to it"),
        ({"map": {"table": "tables"}, "max_map": 0}, "'max_map' must be an int >= 1"),
        ({"map": {"table": "tables"}, "map_key": "name"}, "'map_key' must be a function"),
        ({"map_key": str}, "'map_key' needs 'map'"),
        ({"max_map": 5}, "'max_map' needs 'map'"),
        ({"map": {"table": "load"}}, "maps over its own result"),
    ],
)
def test_bad_map_options_are_definition_errors(options: dict[str, Any], message: str) -> None:
    engine = build_default_engine()
    etl = engine.dag("etl")
    etl.task("tables")(lambda: [])
    with pytest.raises(TaskDefinitionError, match=message) as info:
        etl.task("load", **options)(lambda table: table)
    assert (info.value.dag, info.value.task) == ("etl", "load")


def test_a_misspelt_map_parameter_gets_a_suggestion() -> None:
    engine = build_default_engine()
    etl = engine.dag("etl")
    etl.task("tables")(lambda: [])
    with pytest.raises(TaskDefinitionError, match=r"Did you mean 'table'\?"):
        etl.task("load", map={"tabel": "tables"})(lambda table: table)


def test_a_mapped_task_that_fails_to_start_reports_a_failure_event() -> None:
    hook = RecordingHook()
    engine, _ = _etl("not a list", hook)
    run_dag(engine, "etl")
    (failure,) = [e for e in hook.of(TaskFailureEvent) if e.task_name == "load_table"]
    assert failure.final
    assert "not a list of items" in failure.error


def test_the_text_report_lists_instances_under_their_task_and_caps_them() -> None:
    from flowrun.testing import format_report

    engine = build_default_engine(clock=new_clock())
    etl = engine.dag("etl")
    etl.task("n")(lambda: list(range(25)))
    etl.task("each", map={"i": "n"})(lambda i: i)
    text = format_report(run_dag(etl))
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  each "))
    assert lines[at + 1].startswith("    [0] ")
    assert lines[at + 20].startswith("    [19] ")
    assert lines[at + 21] == "    ... 5 more instances"


def test_the_dag_drawing_names_maps_rules_and_pools() -> None:
    engine = build_default_engine()
    engine.pool("api", slots=1)
    etl = engine.dag("etl")
    etl.task("pages")(lambda: [1])
    etl.task("fetch", map={"page": "pages"}, pool="api")(lambda page: page)
    etl.task("cleanup", deps=["fetch"], trigger="all_done")(lambda: None)
    assert engine.display_dag("etl").splitlines()[2:] == [
        "├── fetch  <- pages  [map over pages, pool api]",
        "└── cleanup  <- fetch  [trigger all_done]",
    ]


def test_a_map_over_a_task_that_does_not_exist_is_a_missing_dependency() -> None:
    from flowrun import MissingDependencyError

    engine = build_default_engine()
    etl = engine.dag("etl")
    etl.task("tables")(lambda: [])
    etl.task("load", map={"table": "tabels"})(lambda table: table)
    with pytest.raises(MissingDependencyError, match=r"Did you mean 'tables'\?") as info:
        engine.validate("etl")
    assert (info.value.task_name, info.value.dependency) == ("load", "tabels")


def test_a_thousand_item_map_with_back_off_in_the_plugins_fixtures(
    flowrun_engine: Engine, flowrun_run: Any, flowrun_clock: Any, flowrun_events: RecordingHook
) -> None:
    import time

    from support import WAIT_S

    etl = flowrun_engine.dag("etl")
    etl.task("items")(lambda: list(range(1000)))

    async def fetch(i: int, context: RunContext[None]) -> int:
        if context.attempt == 1:
            raise ConnectionError("rate limited")  # every item waits out a 60 s back-off
        return i

    etl.task("fetch", map={"i": "items"}, retries=1, retry_delay_s=60)(fetch)
    started_virtual, started_real = flowrun_clock.monotonic(), time.perf_counter()
    report = flowrun_run(etl)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["fetch"]["result"] == list(range(1000))
    assert flowrun_clock.monotonic() - started_virtual >= 60  # the back-off happened...
    assert time.perf_counter() - started_real < WAIT_S  # ...on virtual time
    assert len(flowrun_events.of(TaskMapEvent)[0].instances) == 1000
