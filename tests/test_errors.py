"""Errors carry their data: the fields a caller (the CLI, a test, a user's tool) reads instead
of matching message text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowrun import (
    CrossDagDependencyError,
    DuplicateTaskError,
    MissingDependencyError,
    PickleSerializer,
    SqliteStateStore,
    StateDatabaseError,
    TaskDefinitionError,
    build_default_engine,
)


def test_a_missing_dependency_names_the_dag_the_task_and_the_closest_task() -> None:
    engine = build_default_engine()
    engine.task("extract", dag="etl")(lambda: 1)
    engine.task("load", dag="etl", deps=["extrct"])(lambda: 2)
    with pytest.raises(MissingDependencyError) as info:
        engine.validate("etl")
    error = info.value
    assert (error.dag_name, error.task_name, error.dependency) == ("etl", "load", "extrct")
    assert error.suggestion == "extract"
    assert str(error).endswith("Did you mean 'extract'?")


def test_no_suggestion_when_nothing_is_close() -> None:
    engine = build_default_engine()
    engine.task("extract", dag="etl")(lambda: 1)
    engine.task("load", dag="etl", deps=["zzzzzz"])(lambda: 2)
    with pytest.raises(MissingDependencyError) as info:
        engine.validate("etl")
    assert info.value.suggestion is None
    assert "Did you mean" not in str(info.value)


def test_a_cross_dag_dependency_names_the_other_dag() -> None:
    engine = build_default_engine()
    engine.task("extract", dag="ingest")(lambda: 1)
    engine.task("load", dag="etl", deps=["extract"])(lambda: 2)
    with pytest.raises(CrossDagDependencyError) as info:
        engine.validate("etl")
    error = info.value
    assert (error.dag_name, error.task_name, error.dependency) == ("etl", "load", "extract")
    assert error.other_dag == "ingest"


def test_a_duplicate_names_both_functions() -> None:
    engine = build_default_engine()

    def first() -> int:
        return 1

    def second() -> int:
        return 2

    engine.task("t", dag="d")(first)
    with pytest.raises(DuplicateTaskError) as info:
        engine.task("t", dag="d")(second)
    error = info.value
    assert (error.dag_name, error.task_name) == ("d", "t")
    assert error.first.endswith("first")
    assert error.second.endswith("second")


@pytest.mark.parametrize(
    ("option", "value"),
    [("retries", -1), ("timeout_s", 0), ("retry_jitter", 2.0), ("retain_result", "yes")],
)
def test_a_bad_option_names_the_option_and_the_value(option: str, value: object) -> None:
    engine = build_default_engine()
    with pytest.raises(TaskDefinitionError) as info:
        engine.task("t", dag="d", **{option: value})(lambda: 1)  # type: ignore[call-overload]
    assert info.value.option == option
    assert info.value.got == value
    assert (info.value.dag, info.value.task) == ("d", "t")
    assert "task 't' in DAG 'd'" in str(info.value)


def _generator() -> object:
    yield 1


def _takes_nothing_known(mystery: int) -> int:
    return mystery


@pytest.mark.parametrize(
    ("func", "options", "option"),
    [
        (_generator, {}, None),  # not an option: the function itself
        (_takes_nothing_known, {}, None),  # a parameter that would receive nothing
        (lambda: 1, {"deps": "extract"}, "deps"),  # a string where a list belongs
        (lambda: 1, {"deps": [3]}, None),  # a dependency that is neither name nor task
    ],
)
def test_every_definition_error_names_its_dag_and_task(
    func: object, options: dict[str, object], option: str | None
) -> None:
    engine = build_default_engine()
    with pytest.raises(TaskDefinitionError) as info:
        engine.task("t", dag="d", **options)(func)  # type: ignore[call-overload]
    assert (info.value.dag, info.value.task, info.value.option) == ("d", "t", option)


def test_an_unscoped_task_error_names_the_implicit_dag() -> None:
    engine = build_default_engine()
    with pytest.raises(TaskDefinitionError) as info:
        engine.task("t", retries=-2)(lambda: 1)
    assert (info.value.dag, info.value.task, info.value.got) == ("default", "t", -2)


def test_a_template_argument_error_names_the_task_and_the_argument() -> None:
    engine = build_default_engine()
    template = engine.task_template(_takes_nothing_known, dag="d")
    with pytest.raises(TaskDefinitionError) as info:
        template.bind("page_1", mistery=1)
    assert (info.value.dag, info.value.task, info.value.got) == ("d", "page_1", "mistery")
    assert "Did you mean 'mystery'?" in str(info.value)


def test_a_result_in_another_format_names_the_format_that_reads_it(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db, serializer=PickleSerializer()) as store:
        engine = build_default_engine(state_store=store)
        engine.task("t", dag="d")(lambda: {1, 2})
        run_id = asyncio.run(engine.run_once("d"))
    with SqliteStateStore(db) as store, pytest.raises(StateDatabaseError) as info:
        store.load_run(run_id)
    assert info.value.needs_format == "pickle"
    assert info.value.path == str(db)
    assert "serializer=PickleSerializer()" in str(info.value)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no words")


class _Unrepresentable(_Unprintable):
    def __repr__(self) -> str:
        raise RuntimeError("no face")


@pytest.mark.parametrize("kind", [_Unprintable, _Unrepresentable])
def test_a_task_error_that_cannot_be_printed_fails_the_task_like_any_other(
    kind: type[Exception],
) -> None:
    from flowrun.testing import run_dag

    engine = build_default_engine()
    etl = engine.dag("etl")

    def bad() -> None:
        raise kind()

    etl.task("bad")(bad)
    etl.task("sibling")(lambda: 1)
    etl.task("after", deps=["bad"])(lambda: 2)
    report = run_dag(etl)
    assert report["status"] == "FAILED"
    statuses = {name: task["status"] for name, task in report["tasks"].items()}
    assert statuses == {"bad": "FAILED", "sibling": "SUCCESS", "after": "SKIPPED"}
    error = report["tasks"]["bad"]["error"]
    assert error.startswith(f"{kind.__name__}: ")
    assert "str() of it raised RuntimeError" in error
