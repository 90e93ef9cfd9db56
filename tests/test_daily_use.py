"""Daily use (issue 12, "Small ones" and the faults found by fault injection): the dev extra's
type check, the CLI's --help, a lazy SQLite store, kept tasks in a resumed run's table, a
misspelt task option, a --context factory that raises, and resuming a subgraph run whose
target is gone. (A SIGKILL during a retry back-off: tests/test_sqlite_crash.py.)"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable
from configparser import ConfigParser
from pathlib import Path
from typing import Any

import pytest
from support import new_clock

import flowrun
import flowrun.state
from flowrun import (
    InMemoryStateStore,
    TaskDefinitionError,
    TaskRegistry,
    UnknownTaskError,
    build_default_engine,
    task,
)
from flowrun._render import FORMAT_HELP, FORMATS, RUN_FORMAT_HELP, RUN_FORMATS
from flowrun.cli._main import build_parser
from flowrun.testing import format_report

ROOT = Path(__file__).resolve().parent.parent


def flowrun_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRUN_")}
    env["COLUMNS"] = "100"
    return subprocess.run(
        [sys.executable, "-m", "flowrun", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- the dev extra makes the documented type check pass -----------------------------------------


def test_the_dev_extra_and_the_type_env_install_what_mypy_checks() -> None:
    """``mypy --strict flowrun pytest_flowrun tests`` type-checks ``flowrun.executors`` and the
    Dask tests against the typed ``distributed``: whatever runs it must install Dask."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = project["project"]["optional-dependencies"]
    dev = " ".join(extras["dev"])
    assert "dask" in dev
    assert "test" in dev
    assert any(d.startswith("mypy") for d in extras["dev"])
    tox = ConfigParser()
    tox.read(ROOT / "tox.ini", encoding="utf-8")
    type_extras = {e.strip() for e in tox["testenv:type"]["extras"].split(",")}
    assert "dask" in type_extras
    mypy = project["tool"]["mypy"]
    assert mypy["strict"] is True
    assert "overrides" not in mypy  # no ignore_missing_imports hiding distributed's types


def _expand(extras: dict[str, list[str]], names: set[str]) -> set[str]:
    """``names`` with the extras they pull in (``flowrun-dag[test,dask]`` in an extra)."""
    found = set(names)
    for name in names:
        for requirement in extras.get(name, []):
            if requirement.startswith("flowrun-dag["):
                inner = requirement[len("flowrun-dag[") : requirement.index("]")]
                found |= _expand(extras, {e.strip() for e in inner.split(",")})
    return found


def test_tox_runs_the_suite_with_every_extra_ci_installs_for_it() -> None:
    """``tox -e py312`` must run the suite as ``.ci/run`` does: with the test extra alone,
    the docs tests failed (``flowrun validate examples/`` needs Polars) on 3.12 and 3.13."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = project["project"]["optional-dependencies"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    installed = ci.split('pip install --quiet -e ".[', 1)[1].split("]", 1)[0]
    ci_extras = _expand(extras, {e.strip() for e in installed.split(",")})
    tox = ConfigParser()
    tox.read(ROOT / "tox.ini", encoding="utf-8")
    tox_extras = _expand(extras, {e.strip() for e in tox["testenv"]["extras"].split(",")})
    libraries = ci_extras - {"dev"}  # dev adds tools (ruff, mypy, tox), not the suite's needs
    assert {"test", "examples", "dask", "docs", "browser"} <= libraries
    assert libraries <= tox_extras, f"tox's [testenv] lacks {sorted(libraries - tox_extras)}"


# -- --help: TARGET, --format and the exit codes ------------------------------------------------


def _help(*command: str) -> str:
    parser = build_parser()
    if command:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[command[0]]
    return " ".join(parser.format_help().split())  # argparse wraps at the terminal's width


@pytest.mark.parametrize("command", ["validate", "list", "graph", "run", "resume"])
def test_help_says_what_target_may_be(command: str) -> None:
    text = _help(command)
    assert "TARGET a Python file (pipelines/etl.py), a module (pipelines.etl)" in text
    assert "followed by :attribute (an Engine or engine.dag(...) scope of it)" in text


def test_validate_help_says_a_folder_is_a_target() -> None:
    assert "or a folder (its *.py files, not _*.py or conftest.py)" in _help("validate")


@pytest.mark.parametrize(
    ("command", "meanings", "formats"),
    [("graph", FORMAT_HELP, FORMATS), ("show", RUN_FORMAT_HELP, RUN_FORMATS)],
)
def test_help_lists_each_format_with_its_meaning(
    command: str, meanings: dict[str, str], formats: tuple[str, ...]
) -> None:
    assert tuple(meanings) == formats  # one meaning per choice, none left out
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = sub.choices[command].format_help().splitlines()
    for name, meaning in meanings.items():  # one line each, not wrapped
        assert any(line.split() == [name, *meaning.split()] for line in lines), name


def test_help_lists_exit_code_130() -> None:
    assert "130 interrupted (Ctrl-C: the run is recorded as FAILED; resume continues it)" in (
        _help()
    )
    for command in ("run", "resume"):
        text = _help(command)
        assert "Exit codes: 0 the run succeeded, 1 it FAILED" in text
        assert "130 interrupted (Ctrl-C): the run is recorded as FAILED" in text


def test_graph_help_through_the_command(tmp_path: Path) -> None:
    proc = flowrun_cli(tmp_path, "graph", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "  mermaid  a Mermaid flowchart, for Markdown pages (GitHub, MkDocs)" in proc.stdout


# -- import flowrun loads no sqlite3 ------------------------------------------------------------


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_import_flowrun_loads_no_sqlite() -> None:
    proc = _fresh(
        # what ran before (coverage's subprocess patch uses sqlite) is not flowrun's doing
        "import sys\n"
        "before = set(sys.modules)\n"
        "import flowrun, flowrun.state, flowrun.testing\n"
        "loaded = sorted(m for m in set(sys.modules) - before if 'sqlite' in m)\n"
        "assert not loaded, loaded\n"
        "store = flowrun.InMemoryStateStore()\n"  # the in-memory store needs none either
        "assert 'sqlite3' in before or 'sqlite3' not in sys.modules\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_the_sqlite_names_load_on_first_use() -> None:
    proc = _fresh(
        "import sys\n"
        "from flowrun import SqliteStateStore\n"
        "assert 'sqlite3' in sys.modules\n"
        "import flowrun, flowrun.state, flowrun.state.sqlite as real\n"
        "assert SqliteStateStore is real.SqliteStateStore is flowrun.state.SqliteStateStore\n"
        "assert flowrun.StateDatabaseError is real.StateDatabaseError\n"
        "assert flowrun.state.StateDatabaseError is real.StateDatabaseError\n"
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("module", [flowrun, flowrun.state])
def test_every_public_name_is_there_and_listed(module: Any) -> None:
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert set(module.__all__) <= set(dir(module))
    namespace: dict[str, Any] = {}
    exec(f"from {module.__name__} import *", namespace)
    assert set(module.__all__) <= set(namespace)


@pytest.mark.parametrize("module", [flowrun, flowrun.state])
def test_an_unknown_name_is_still_an_attribute_error(module: Any) -> None:
    with pytest.raises(AttributeError, match=r"has no attribute 'SqliteStore'"):
        _ = module.SqliteStore
    assert not hasattr(module, "sqlite_state_store")


# -- a resumed run's table marks the kept tasks -------------------------------------------------


def _etl(fail: set[str]) -> tuple[Any, Any]:
    clock = new_clock()
    engine = build_default_engine(clock=clock, state_store=InMemoryStateStore())
    etl = engine.dag("etl")

    @etl.task
    def extract() -> list[int]:
        return [1, 2, 3]

    @etl.task(deps=[extract])
    def transform(extract: list[int]) -> int:
        if "transform" in fail:
            raise RuntimeError("bad data")
        return sum(extract)

    @etl.task(deps=[transform])
    def load(transform: int) -> str:
        return f"total={transform}"

    return engine, clock


def _marked(report: dict[str, Any]) -> dict[str, bool]:
    table = format_report(report).split("\n\n")[0]  # the failures follow a blank line
    rows = table.splitlines()[2:]
    return {row.split()[0]: row.endswith("  (kept)") for row in rows}


async def test_the_resumed_runs_table_marks_the_kept_tasks() -> None:
    fail = {"transform"}
    engine, clock = _etl(fail)
    first = await engine.run_once("etl")
    assert _marked(engine.get_run_report(first)) == dict.fromkeys(
        ["extract", "transform", "load"], False
    )
    fail.clear()
    clock.advance(60.0)  # the next morning
    again = await engine.resume(first)
    report = engine.get_run_report(again)
    assert report["status"] == "SUCCESS"
    assert _marked(report) == {"extract": True, "transform": False, "load": False}
    header = format_report(report).splitlines()[1]
    assert "(kept)" not in header
    # resumed with --from: what re-runs is not kept, even if it succeeded before
    clock.advance(60.0)
    third = await engine.resume(again, from_tasks=["load"])
    assert _marked(engine.get_run_report(third)) == {
        "extract": True,
        "transform": True,
        "load": False,
    }


async def test_a_task_of_this_run_is_never_marked_kept_even_when_time_stands_still() -> None:
    fail = {"transform"}
    engine, _ = _etl(fail)  # the virtual clock does not move: every timestamp is equal
    first = await engine.run_once("etl")
    fail.clear()
    again = await engine.resume(first, from_tasks=["extract"])
    assert not any(_marked(engine.get_run_report(again)).values())


async def test_a_mapped_task_run_again_in_part_marks_only_its_reused_instances() -> None:
    clock = new_clock()
    engine = build_default_engine(clock=clock, state_store=InMemoryStateStore())
    dag = engine.dag("pages")
    down = {"b"}

    @dag.task
    def pages() -> list[str]:
        return ["a", "b", "c"]

    @dag.task(map={"page": pages}, map_key=str)
    def fetch(page: str) -> str:
        if page in down:
            raise RuntimeError(f"page {page} is down")
        return page.upper()

    first = await engine.run_once("pages")
    down.clear()
    clock.advance(60.0)
    report = engine.get_run_report(await engine.resume(first))
    assert report["status"] == "SUCCESS"
    table = format_report(report).splitlines()[2:]
    marks = {line.split()[0]: line.endswith("  (kept)") for line in table}
    assert marks == {"pages": True, "fetch": False, "[a]": True, "[b]": False, "[c]": True}


def test_the_resumed_runs_table_through_the_command(tmp_path: Path) -> None:
    (tmp_path / "etl.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path

            from flowrun import build_default_engine

            engine = build_default_engine()
            etl = engine.dag("etl")


            @etl.task
            def extract():
                return [1, 2]


            @etl.task(deps=[extract])
            def transform(extract):
                if Path("broken").exists():
                    raise RuntimeError("bad data")
                return sum(extract)
            """
        ),
        encoding="utf-8",
    )
    (tmp_path / "broken").touch()
    failed = flowrun_cli(tmp_path, "run", "etl.py", "--progress", "off")
    assert failed.returncode == 1
    assert "(kept)" not in failed.stdout
    (tmp_path / "broken").unlink()
    runs = flowrun_cli(tmp_path, "runs", "--json")
    run_id = __import__("json").loads(runs.stdout)[0]["run_id"]
    resumed = flowrun_cli(tmp_path, "resume", run_id, "etl.py", "--progress", "off")
    assert resumed.returncode == 0, resumed.stderr
    table = {line.split()[0]: line for line in resumed.stdout.splitlines()[2:]}
    assert table["extract"].endswith("s  (kept)")
    assert not table["transform"].endswith("(kept)")


# -- a misspelt task option ---------------------------------------------------------------------


def _fn() -> int:
    return 1


def _registrations() -> list[tuple[str, Callable[[TaskRegistry, Any], object]]]:
    """Every decorator path, each registering ``_fn`` as task 'pull' of DAG 'etl' with the
    misspelt options given (as ``**Any``: written out, mypy refuses the typo too)."""

    def through_engine(registry: TaskRegistry, opts: Any) -> object:
        return build_default_engine(registry=registry).task("pull", dag="etl", **opts)(_fn)

    def through_scope(registry: TaskRegistry, opts: Any) -> object:
        return build_default_engine(registry=registry).dag("etl").task("pull", **opts)(_fn)

    def through_global(registry: TaskRegistry, opts: Any) -> object:
        return task("pull", registry=registry, dag="etl", **opts)(_fn)

    def through_active(registry: TaskRegistry, opts: Any) -> object:
        token = registry.activate()
        try:
            return task("pull", dag="etl", **opts)(_fn)
        finally:
            TaskRegistry.deactivate(token)

    def through_registry(registry: TaskRegistry, opts: Any) -> object:
        return registry.task("pull", dag="etl", **opts)(_fn)

    return [
        ("engine.task", through_engine),
        ("scope.task", through_scope),
        ("flowrun.task(registry=)", through_global),
        ("flowrun.task, activated", through_active),
        ("registry.task", through_registry),
    ]


@pytest.mark.parametrize(("path", "register"), _registrations())
@pytest.mark.parametrize(
    ("typo", "value", "meant"),
    [
        ("retry", 3, "retries"),
        ("max_retries", 3, "retries"),
        ("Retries", 3, "retries"),
        ("timeout", 5.0, "timeout_s"),
        ("depends_on", ["x"], "deps"),
        ("retry_dely_s", 1.0, "retry_delay_s"),
    ],
)
def test_a_misspelt_option_names_the_task_the_dag_and_the_option_meant(
    path: str, register: Callable[[TaskRegistry, Any], object], typo: str, value: Any, meant: str
) -> None:
    registry = TaskRegistry()
    with pytest.raises(TaskDefinitionError) as caught:
        register(registry, {typo: value})
    error = caught.value
    assert (error.dag, error.task, error.option, error.got) == ("etl", "pull", typo, value)
    assert str(error).startswith(
        f"unknown task option {typo!r} ({typo}={value!r}) for task 'pull' in DAG 'etl'. "
        f"Did you mean {meant!r}? Task options: cache, cache_ttl_s, "
    )
    assert registry.tasks_of("etl") == {}  # nothing registered


def test_an_option_far_from_any_gets_no_guess_and_a_short_value() -> None:
    engine = build_default_engine()
    with pytest.raises(TaskDefinitionError) as caught:
        engine.task("pull", dag="etl", colour=list(range(1000)))(_fn)  # type: ignore[call-overload]
    message = str(caught.value)
    assert "unknown task option 'colour' (colour=[0, 1, 2, " in message
    assert "Did you mean" not in message
    assert len(message) < 400  # the value is cut, the options listed


def test_a_misspelt_option_of_a_template_and_of_bind() -> None:
    engine = build_default_engine()

    def fetch(*, table: str) -> str:
        return table

    with pytest.raises(TaskDefinitionError) as caught:
        engine.task_template(fetch, dag="etl", retry=2)  # type: ignore[call-arg]
    assert (caught.value.dag, caught.value.option, caught.value.got) == ("etl", "retry", 2)
    assert "for task_template(fetch) in DAG 'etl'. Did you mean 'retries'?" in str(caught.value)
    template = engine.task_template(fetch, dag="etl")
    with pytest.raises(
        TaskDefinitionError,
        match=r"task 'users' in DAG 'etl': fetch\(\) has no parameter 'retry'\. "
        r"Did you mean the task option 'retries'\?",
    ):
        template.bind("users", table="users", retry=2)
    with pytest.raises(TaskDefinitionError, match=r"no parameter 'tabel'\. Did you mean 'table'"):
        template.bind("users", tabel="users")  # a parameter's name wins over an option's
    assert engine.list_dags() == []


# -- a --context factory that raises: the user's frames only ------------------------------------

CONTEXTS = textwrap.dedent(
    """
    import contextlib

    from flowrun import RunContext, build_default_engine

    engine = build_default_engine()
    etl = engine.dag("etl")


    @etl.task
    def extract():
        return 1


    def settings():
        raise ConnectionError("vault unreachable")


    async def async_settings():
        raise ConnectionError("vault unreachable")


    @contextlib.contextmanager
    def session():
        raise ConnectionError("vault unreachable")
        yield RunContext({})


    @contextlib.contextmanager
    def closing_badly():
        yield RunContext({})
        raise ConnectionError("could not close the session")


    other = build_default_engine()
    defaulted = other.dag("defaulted", context=settings)


    @defaulted.task
    def only():
        return 1
    """
)


@pytest.fixture
def contexts(tmp_path: Path) -> Path:
    (tmp_path / "pipes.py").write_text(CONTEXTS, encoding="utf-8")
    return tmp_path


def _frames(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.strip().startswith('File "')]


@pytest.mark.parametrize(
    ("name", "function"),
    [("settings", "settings"), ("async_settings", "async_settings"), ("session", "session")],
)
def test_a_context_factory_that_raises_shows_only_the_users_frames(
    contexts: Path, name: str, function: str
) -> None:
    proc = flowrun_cli(contexts, "run", "pipes.py", "etl", "--context", name, "--db", ":memory:")
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        f"flowrun: error: --context {name}: {function}() raised ConnectionError: vault unreachable"
    )
    frames = _frames(proc.stderr)
    assert len(frames) == 1
    assert frames[0].endswith(f"in {function}")
    assert "pipes.py" in frames[0]
    assert proc.stderr.rstrip().endswith("ConnectionError: vault unreachable")


def test_a_default_context_factory_that_raises_is_trimmed_too(contexts: Path) -> None:
    proc = flowrun_cli(contexts, "run", "pipes.py", "defaulted", "--db", ":memory:")
    assert proc.returncode == 1
    assert "the default context of DAG 'defaulted'" in proc.stderr
    frames = _frames(proc.stderr)
    assert len(frames) == 1
    assert frames[0].endswith("in settings")


def test_a_context_manager_whose_exit_raises_is_reported_not_a_crash(contexts: Path) -> None:
    proc = flowrun_cli(
        contexts, "run", "pipes.py", "etl", "--context", "closing_badly", "--db", ":memory:"
    )
    assert proc.returncode == 1
    assert (
        "flowrun: error: --context closing_badly: leaving its context after the run raised "
        "ConnectionError: could not close the session"
    ) in proc.stderr
    frames = _frames(proc.stderr)
    assert len(frames) == 1
    assert frames[0].endswith("in closing_badly")


# -- resuming a subgraph run whose target is gone -----------------------------------------------


def _subgraph_engine(store: InMemoryStateStore, last: str, fail: bool) -> Any:
    engine = build_default_engine(clock=new_clock(), state_store=store)
    etl = engine.dag("etl")

    @etl.task
    def extract() -> int:
        return 1

    def finish(extract: int) -> int:
        if fail:
            raise RuntimeError("down")
        return extract

    etl.task(last, deps=[extract])(finish)
    return engine


async def test_resume_of_a_subgraph_run_whose_target_was_renamed() -> None:
    store = InMemoryStateStore()
    before = _subgraph_engine(store, "load", fail=True)
    run_id = await before.run_subgraph("etl", ["load"])
    after = _subgraph_engine(store, "loads", fail=False)
    with pytest.raises(UnknownTaskError) as caught:
        await after.resume(run_id)
    message = str(caught.value)
    assert message.startswith(
        f"resume of run {run_id!r} (a run_subgraph run of targets ['load']): DAG 'etl' has no "
        "task 'load'. Did you mean 'loads'? The target 'load' was removed or renamed since "
        "that run. Register it again to resume the run, or start a new run"
    )
    assert "run_subgraph: DAG" not in message
    assert (caught.value.dag_name, caught.value.task_name) == ("etl", "load")
    assert len(store.list_runs()) == 1  # nothing ran


async def test_resume_after_a_task_was_added_upstream_of_a_failed_one() -> None:
    """A task registered since the run (here with no retained result) has no record in it:
    it runs, as every task that did not succeed there."""
    store = InMemoryStateStore()
    first = build_default_engine(clock=new_clock(), state_store=store)
    etl = first.dag("etl")

    @etl.task
    def extract() -> int:
        return 1

    @etl.task(deps=[extract])
    def total(extract: int) -> int:
        raise RuntimeError("down")

    run_id = await first.run_once("etl")
    second = build_default_engine(clock=new_clock(), state_store=store)
    etl2 = second.dag("etl")
    etl2.task("extract")(lambda: 1)
    etl2.task("rate", retain_result=False)(lambda: 2)

    @etl2.task("total", deps=["extract", "rate"])
    def fixed_total(extract: int, rate: int) -> int:
        return extract * rate

    report = second.get_run_report(await second.resume(run_id))
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["total"]["result"] == 2
    assert report["tasks"]["rate"]["status"] == "SUCCESS"
