"""A DAG's default context: ``engine.dag(name, context=...)``, used by every run given none."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from flowrun import (
    ContextFactoryError,
    Engine,
    RunContext,
    build_default_engine,
)
from flowrun.testing import run_dag

pytest_plugins = ["pytester"]


def _etl(context: object) -> tuple[Engine, list[str]]:
    """An engine whose DAG 'etl' reads ``context.label``; tasks of both spellings share it."""
    engine = build_default_engine()
    etl = engine.dag("etl", context=context)  # type: ignore[arg-type]
    seen: list[str] = []

    @etl.task
    def extract(context: RunContext[Any]) -> str:
        seen.append(f"extract:{context.label}")
        return str(context.label)

    @engine.task(dag="etl", deps=[extract])  # declared without the scope: same DAG, same default
    def load(extract: str, context: RunContext[Any]) -> str:
        seen.append(f"load:{context.label}")
        return f"{extract}/{context.label}"

    return engine, seen


def test_a_run_context_default_is_used_by_every_kind_of_run() -> None:
    engine, seen = _etl(RunContext({"label": "prod"}))
    report = run_dag(engine, "etl")
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["load"]["result"] == "prod/prod"
    assert run_dag(engine, "etl", targets=["extract"])["tasks"]["extract"]["result"] == "prod"
    assert seen == ["extract:prod", "load:prod", "extract:prod"]


async def test_run_once_run_subgraph_and_resume_use_it_and_an_explicit_context_wins() -> None:
    engine, seen = _etl(RunContext({"label": "prod"}))
    async with engine:
        first = await engine.run_once("etl")
        explicit = await engine.run_once("etl", context=RunContext({"label": "test"}))
        scoped = await engine.dag("etl").run_subgraph(["extract"])
        resumed = await engine.resume(first, from_tasks=["load"])
    assert engine.get_run_report(first)["tasks"]["load"]["result"] == "prod/prod"
    assert engine.get_run_report(explicit)["tasks"]["load"]["result"] == "test/test"
    assert engine.get_run_report(scoped)["tasks"]["extract"]["result"] == "prod"
    assert engine.get_run_report(resumed)["tasks"]["load"]["result"] == "prod/prod"
    assert seen[-1] == "load:prod"  # the resumed run re-ran only load, with the default


def test_a_factory_is_called_once_per_run() -> None:
    calls: list[int] = []

    def make() -> RunContext[dict[str, str]]:
        calls.append(1)
        return RunContext({"label": f"call{len(calls)}"})

    engine, _ = _etl(make)
    assert run_dag(engine, "etl")["tasks"]["load"]["result"] == "call1/call1"
    assert run_dag(engine, "etl")["tasks"]["load"]["result"] == "call2/call2"
    assert len(calls) == 2
    assert engine.dag("etl").context is make


def test_an_async_factory_is_awaited() -> None:
    async def make() -> RunContext[dict[str, str]]:
        return RunContext({"label": "awaited"})

    engine, _ = _etl(make)
    assert run_dag(engine, "etl")["tasks"]["load"]["result"] == "awaited/awaited"


def test_a_context_manager_is_entered_for_the_run_and_exited_after_it() -> None:
    log: list[str] = []

    @contextlib.contextmanager
    def managed() -> Iterator[RunContext[dict[str, str]]]:
        log.append("enter")
        yield RunContext({"label": "managed"})
        log.append("exit")

    engine, seen = _etl(managed)
    assert run_dag(engine, "etl")["status"] == "SUCCESS"
    assert log == ["enter", "exit"]
    assert seen == ["extract:managed", "load:managed"]


def test_an_async_context_manager_is_exited_even_when_the_run_fails() -> None:
    log: list[str] = []

    @contextlib.asynccontextmanager
    async def managed() -> AsyncIterator[RunContext[dict[str, str]]]:
        log.append("enter")
        try:
            yield RunContext({"label": "x"})
        finally:
            log.append("exit")

    engine = build_default_engine()
    etl = engine.dag("etl", context=managed)

    @etl.task
    def boom(context: RunContext[Any]) -> None:
        raise ValueError(f"bad {context.label}")

    report = run_dag(engine, "etl")
    assert report["status"] == "FAILED"
    assert report["tasks"]["boom"]["error"] == "ValueError: bad x"
    assert log == ["enter", "exit"]


def test_a_factory_that_raises_names_the_dag_and_the_factory() -> None:
    def vault() -> RunContext[None]:
        raise ConnectionError("vault unreachable")

    engine, seen = _etl(vault)
    with pytest.raises(ContextFactoryError) as info:
        run_dag(engine, "etl")
    assert str(info.value) == (
        "the default context of DAG 'etl': "
        "test_a_factory_that_raises_names_the_dag_and_the_factory.<locals>.vault() raised "
        "ConnectionError: vault unreachable"
    )
    assert isinstance(info.value.__cause__, ConnectionError)
    assert info.value.error is info.value.__cause__
    assert seen == []
    assert engine.list_runs() == []  # no run was started without its context


def test_a_factory_that_gives_something_else_is_a_type_error() -> None:
    def deps_only() -> dict[str, str]:
        return {"label": "x"}

    engine, _ = _etl(deps_only)
    with pytest.raises(
        TypeError,
        match=r"the default context of DAG 'etl': .*deps_only\(\) gave a dict, not a "
        r"RunContext; return RunContext\(your_deps\)",
    ):
        run_dag(engine, "etl")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"label": "x"},
            "the default context of DAG 'etl' is a dict, not a RunContext or a zero-argument "
            "callable returning one; wrap your deps: RunContext(deps)",
        ),
        (lambda region: RunContext({"region": region}), "<lambda>() must take no arguments"),
    ],
)
def test_bad_defaults_are_refused_where_they_are_declared(source: object, message: str) -> None:
    engine = build_default_engine()
    with pytest.raises(TypeError) as info:
        engine.dag("etl", context=source)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_one_default_per_dag() -> None:
    engine = build_default_engine()
    prod = RunContext({"label": "prod"})
    engine.dag("etl", context=prod)
    assert engine.dag("etl", context=prod).context is prod  # the same one again: fine
    assert engine.dag("etl").context is prod  # a scope without context= keeps it
    assert engine.dag("other").context is None
    with pytest.raises(ValueError, match="DAG 'etl' already has a default context"):
        engine.dag("etl", context=RunContext({"label": "test"}))


def test_pytest_flowrun_run_uses_the_default_context(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        pipelines_dags="""
from flowrun import RunContext, build_default_engine

engine = build_default_engine()
etl = engine.dag("etl", context=lambda: RunContext({"rows": ["a", "b"]}))


@etl.task
def extract(context: RunContext[dict]) -> list:
    return list(context.deps["rows"])


@etl.task(deps=[extract])
def check(extract: list) -> None:
    assert extract == ["a", "b"], extract
"""
    )
    result = pytester.runpytest("--flowrun", "--flowrun-run", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*pipelines_dags.py::etl PASSED*"])


CLI_PIPELINE = """
from flowrun import RunContext, build_default_engine


def vault():
    raise ConnectionError("vault unreachable")


def deps_only():
    return {"label": "x"}


engine = build_default_engine()
engine.dag("broken", context=vault).task("a")(lambda: 1)
engine.dag("wrong", context=deps_only).task("a")(lambda: 1)
fine = engine.dag("fine", context=RunContext({"label": "default"}))


@fine.task
def a(context: RunContext) -> str:
    return context.label


OVERRIDE = RunContext({"label": "explicit"})
"""


@pytest.mark.parametrize(
    ("dag", "code", "expected"),
    [
        ("broken", 1, "the default context of DAG 'broken': vault() raised ConnectionError"),
        ("wrong", 1, "the default context of DAG 'wrong': deps_only() gave a dict"),
    ],
)
def test_the_command_line_reports_a_broken_default_context(
    tmp_path: Any, dag: str, code: int, expected: str
) -> None:

    (tmp_path / "pipes.py").write_text(CLI_PIPELINE, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "flowrun", "run", "pipes.py", dag, "--db", ":memory:"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == code, proc.stderr
    assert expected in proc.stderr
    if dag == "broken":
        assert 'raise ConnectionError("vault unreachable")' in proc.stderr  # its traceback


@pytest.mark.parametrize(
    ("extra", "label"), [((), "default"), (("--context", "OVERRIDE"), "explicit")]
)
def test_the_command_line_uses_the_default_unless_given_context(
    tmp_path: Any, extra: tuple[str, ...], label: str
) -> None:

    (tmp_path / "pipes.py").write_text(CLI_PIPELINE, encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowrun",
            "run",
            "pipes.py",
            "fine",
            "--db",
            ":memory:",
            "--json",
            *extra,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tasks"]["a"]["result"] == label
