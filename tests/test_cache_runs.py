"""The cache in runs: a task whose key matches an unexpired entry is not executed (SUCCESS,
attempt 0, ``cached_from``); keys follow code, version, template arguments and inputs; expiry
follows the engine's clock; a key that cannot be made leaves the task uncached, never failed."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from support import new_clock

from flowrun import (
    SqliteStateStore,
    TaskDefinitionError,
    TaskSuccessEvent,
    build_default_engine,
)
from flowrun._engine import Engine
from flowrun.state.protocol import StateStoreProtocol
from flowrun.testing import RecordingHook, VirtualClock, run_dag


class Pipeline:
    """extract (cached, 1 day) -> transform (cached) -> load; ``calls`` counts executions."""

    def __init__(self, engine: Engine, rows: list[int] | None = None, version: str = "") -> None:
        self.engine = engine
        self.calls: dict[str, int] = {}
        self.rows = rows if rows is not None else [1, 2, 3]
        etl = engine.dag("etl")

        @etl.task(cache=True, cache_ttl_s=86_400, cache_version=version or "")
        def extract() -> list[int]:
            self.count("extract")
            return list(self.rows)

        @etl.task(deps=[extract], cache=True)
        def transform(extract: list[int]) -> int:
            self.count("transform")
            return sum(extract)

        @etl.task(deps=[transform])
        def load(transform: int) -> str:
            self.count("load")
            return f"loaded {transform}"

    def count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def run(self) -> dict[str, Any]:
        return run_dag(self.engine, "etl")


def _engine(clock: VirtualClock, store: StateStoreProtocol | None = None, **kw: Any) -> Engine:
    return build_default_engine(clock=clock, state_store=store, **kw)


def test_a_second_run_takes_the_cached_results_and_runs_only_what_is_not_cached() -> None:
    hook = RecordingHook()
    clock = new_clock()
    pipeline = Pipeline(_engine(clock, hooks=[hook]))
    first = pipeline.run()
    second = pipeline.run()
    assert second["status"] == "SUCCESS"
    assert pipeline.calls == {"extract": 1, "transform": 2, "load": 2}
    extract = second["tasks"]["extract"]
    assert (extract["status"], extract["attempt"], extract["cached_from"]) == (
        "SUCCESS",
        0,
        first["run_id"],
    )
    assert extract["result"] == [1, 2, 3]
    assert second["tasks"]["load"]["cached_from"] is None
    assert second["tasks"]["load"]["result"] == "loaded 6"
    successes = [e for e in hook.of(TaskSuccessEvent) if e.run_id == second["run_id"]]
    assert (successes[0].task_name, successes[0].attempt) == ("extract", 0)
    third = pipeline.run()  # transform's input now comes from the cache too: a hit
    assert third["tasks"]["transform"]["cached_from"] == second["run_id"]
    assert pipeline.calls == {"extract": 1, "transform": 2, "load": 3}


def test_entries_expire_on_the_engine_clock() -> None:
    clock = new_clock()
    pipeline = Pipeline(_engine(clock))
    pipeline.run()
    clock.advance(86_399)
    assert pipeline.run()["tasks"]["extract"]["attempt"] == 0
    clock.advance(2)
    assert pipeline.run()["tasks"]["extract"]["attempt"] == 1
    assert pipeline.calls["extract"] == 2


def test_a_parent_that_ran_again_with_other_data_changes_its_childs_key() -> None:
    clock = new_clock()
    pipeline = Pipeline(_engine(clock))
    pipeline.run()
    pipeline.engine.clear_cache("etl", ["extract"])
    pipeline.rows = [10, 20]
    report = pipeline.run()
    assert report["tasks"]["transform"]["cached_from"] is None
    assert report["tasks"]["load"]["result"] == "loaded 30"


def test_the_same_data_from_a_parent_that_ran_again_keeps_the_childs_entry() -> None:
    clock = new_clock()
    pipeline = Pipeline(_engine(clock))
    first = pipeline.run()
    pipeline.engine.clear_cache("etl", ["extract"])
    report = pipeline.run()
    assert report["tasks"]["extract"]["cached_from"] is None
    assert report["tasks"]["transform"]["cached_from"] == first["run_id"]


def _rows() -> list[int]:
    return [1, 2, 3]


def _other_rows() -> list[int]:
    return [9]


def test_cache_version_and_code_are_part_of_the_key() -> None:
    clock = new_clock()
    store = build_default_engine().state_store  # one store shared by the engines below

    def attempt_of(func: Any, version: str = "") -> int:
        engine = _engine(clock, store)
        engine.dag("etl").task("extract", cache=True, cache_version=version)(func)
        report = run_dag(engine, "etl")
        assert report["status"] == "SUCCESS"
        return int(report["tasks"]["extract"]["attempt"])

    assert attempt_of(_rows) == 1
    assert attempt_of(_rows) == 0  # same code, same version, another engine: a hit
    assert attempt_of(_rows, version="2") == 1
    assert attempt_of(_rows, version="2") == 0
    assert attempt_of(_other_rows) == 1  # the same task name, other code


def test_template_arguments_are_part_of_the_key() -> None:
    clock = new_clock()
    engine = _engine(clock)
    calls: list[int] = []

    def fetch(*, page: int) -> int:
        calls.append(page)
        return page * 10

    template = engine.task_template(fetch, dag="pages", cache=True)
    template.bind("page_1", page=1)
    template.bind("page_2", page=2)
    run_dag(engine, "pages")
    report = run_dag(engine, "pages")
    assert calls == [1, 2]
    assert report["tasks"]["page_2"]["result"] == 20


def test_a_template_argument_that_cannot_be_hashed_is_a_definition_error() -> None:
    engine = build_default_engine()

    def use(*, lock: Any) -> int:
        return 1

    template = engine.task_template(use, dag="etl", cache=True)
    with pytest.raises(TaskDefinitionError, match="template argument 'lock'") as info:
        template.bind("locked", lock=threading.Lock())
    assert (info.value.task, info.value.option) == ("locked", "cache")


def test_an_input_that_cannot_be_hashed_leaves_the_task_uncached_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = new_clock()
    engine = _engine(clock)
    etl = engine.dag("etl")

    def connect() -> Any:
        return threading.Lock()  # what no cache key can be made of

    etl.task("connect")(connect)
    calls: list[str] = []
    etl.task("use", deps=["connect"], cache=True)(lambda connect: calls.append("use"))
    with caplog.at_level(logging.WARNING, logger="flowrun"):
        first = run_dag(etl)
        second = run_dag(etl)
    assert first["status"] == second["status"] == "SUCCESS"
    assert calls == ["use", "use"]
    assert "task 'use' is not cached in this run" in caplog.text
    assert "the result of task 'connect'" in caplog.text


def test_a_failed_task_is_not_cached() -> None:
    clock = new_clock()
    engine = _engine(clock)
    outcomes = iter([ValueError("boom"), None])

    def flaky() -> int:
        error = next(outcomes)
        if error:
            raise error
        return 1

    engine.dag("etl").task("flaky", cache=True)(flaky)
    assert run_dag(engine, "etl")["status"] == "FAILED"
    again = run_dag(engine, "etl")
    assert (again["status"], again["tasks"]["flaky"]["attempt"]) == ("SUCCESS", 1)


def test_mapped_instances_are_cached_one_by_one() -> None:
    clock = new_clock()
    engine = _engine(clock)
    etl = engine.dag("etl")
    tables = ["users", "orders"]
    calls: list[str] = []
    etl.task("tables")(lambda: list(tables))

    @etl.task(map={"table": "tables"}, map_key=str, cache=True)
    def load(table: str) -> int:
        calls.append(table)
        return len(table)

    run_dag(etl)
    assert sorted(calls) == ["orders", "users"]  # sync instances run at once, in any order
    tables.append("items")
    report = run_dag(etl)
    assert sorted(calls) == ["items", "orders", "users"]  # only the new item ran
    attempts = {k: v["attempt"] for k, v in report["tasks"]["load"]["instances"].items()}
    assert attempts == {"users": 0, "orders": 0, "items": 1}
    assert report["tasks"]["load"]["result"] == [5, 6, 5]
    assert engine.clear_cache("etl", ["load"]) == 3  # the instances' entries are the task's


def test_sqlite_keeps_the_cache_for_another_process(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    clock = new_clock()
    with SqliteStateStore(db) as store:
        first = Pipeline(_engine(clock, store))
        first_run = first.run()
    with SqliteStateStore(db) as other:  # as another process sees the file
        again = Pipeline(_engine(clock, other))
        report = again.run()
        assert report["tasks"]["extract"]["cached_from"] == first_run["run_id"]
        assert again.calls == {"transform": 1, "load": 1}
        assert other.load_run(report["run_id"]).tasks["extract"].cached_from == first_run["run_id"]
