"""``pytest --flowrun``: collection, validation, runs, failure rendering, tested with pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"

ETL = """
from flowrun import RunContext, build_default_engine

engine = build_default_engine()
etl = engine.dag("etl")


@etl.task
def extract(context: RunContext[dict]) -> list:
    return list(context.deps["rows"])


@etl.task(deps=[extract], retries=2, retry_delay_s=600)
def transform(extract: list) -> list:
    return [row.upper() for row in extract]


@engine.task(dag="cleanup")
async def vacuum() -> None:
    return None
"""

REPORTS = """
import asyncio
from flowrun import build_default_engine

engine = build_default_engine()
weekly = engine.dag("weekly")


@weekly.task(timeout_s=3600)
async def settle() -> None:
    await asyncio.sleep(1800)
"""

CONTEXT_HOOK = """
def pytest_flowrun_context(dag_name, engine):
    if dag_name == "etl":
        return {"rows": ["a", "b"]}
    return None
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.mkpydir("dags")
    pytester.path.joinpath("dags", "etl.py").write_text(ETL)
    pytester.makepyfile(reports_dag=REPORTS)
    pytester.makeconftest(CONTEXT_HOOK)
    return pytester


def test_collects_every_dag_in_a_deterministic_order(project: pytest.Pytester) -> None:
    result = project.runpytest("--flowrun", "--collect-only", "-q")
    assert result.outlines[:3] == [
        "dags/etl.py::etl",
        "dags/etl.py::cleanup",
        "reports_dag.py::weekly",
    ]
    result = project.runpytest("--flowrun", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["flowrun: collect DAGs=on, run DAGs=off, flowrun_files=*_dag.py *_dags.py dags/*.py"]
    )


def test_without_flowrun_nothing_is_collected(project: pytest.Pytester) -> None:
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["flowrun: collect DAGs=off (--flowrun), run DAGs=off*"])


MARKED_TESTS = """
import pytest
from dags.etl import etl

def test_plain():
    pass

@pytest.mark.flowrun(etl, context={"rows": []})
def test_marked(flowrun_report):
    assert flowrun_report["status"] == "SUCCESS"
"""


def test_dag_items_and_marker_tests_are_selected_apart(project: pytest.Pytester) -> None:
    """Collected DAGs carry ``flowrun_dag`` (only), the user's marker tests ``flowrun``."""
    project.makepyfile(test_other=MARKED_TESTS)
    result = project.runpytest("--flowrun", "-m", "flowrun_dag", "-v", "--strict-markers")
    result.assert_outcomes(passed=3, deselected=2)
    result.stdout.fnmatch_lines(["*dags/etl.py::etl PASSED*"])
    result = project.runpytest("--flowrun", "-m", "flowrun", "-v", "--strict-markers")
    result.assert_outcomes(passed=1, deselected=4)
    result.stdout.fnmatch_lines(["*test_other.py::test_marked PASSED*"])
    result = project.runpytest("--flowrun", "-m", "not flowrun_dag", "-q")
    result.assert_outcomes(passed=2, deselected=3)
    items, _ = project.inline_genitems("--flowrun", "dags")
    assert [[m.name for m in item.iter_markers()] for item in items] == [["flowrun_dag"]] * 2
    result = project.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.flowrun_dag: a DAG collected by pytest --flowrun*"])


def test_flowrun_run_runs_with_the_hook_context(project: pytest.Pytester) -> None:
    result = project.runpytest("--flowrun-run", "-v", "--durations=0")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*run DAGs=on*"])
    ini = project.makeini(INI + "flowrun_run = true\n")
    assert ini.exists()
    project.runpytest("--flowrun").assert_outcomes(passed=3)


def test_run_failure_rendering(project: pytest.Pytester) -> None:
    project.makeconftest(
        """
def pytest_flowrun_context(dag_name, engine):
    if dag_name == "etl":
        return {"rows": ["a", None]}
"""
    )
    result = project.runpytest("--flowrun-run", "dags/etl.py", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*_ flowrun DAG 'etl' _*",
            "DAG 'etl' did not succeed",
            "run * of DAG 'etl': FAILED",
            "  task       status    attempt    duration",
            "  extract    SUCCESS         1      0.000s",
            "  transform  FAILED          3      0.000s",
            "task 'transform' failed on attempt 3: AttributeError: *upper*",
            "*File *dags/etl.py*, line 15, in transform*",
            "*return ?row.upper() for row in extract?*",
            "DAG etl (2 tasks)*",
            "*Captured flowrun report call*",
            "run * of DAG 'etl': FAILED",
        ]
    )
    assert "flowrun/_attempt.py" not in out
    assert "_pytest" not in out
    # reportinfo: the line of the DAG's first task (the decorator of extract).
    result.stdout.fnmatch_lines(["FAILED dags/etl.py::etl*"])
    reports = project.inline_run("--flowrun-run", "dags/etl.py").getreports(
        "pytest_runtest_logreport"
    )
    failed = [r for r in reports if r.failed]
    assert failed[0].location == ("dags/etl.py", 7, "flowrun DAG 'etl'")  # "@etl.task"


def test_virtual_time_makes_long_waits_instant(project: pytest.Pytester) -> None:
    result = project.runpytest("--flowrun-run", "reports_dag.py", "--durations=1", "-vv")
    result.assert_outcomes(passed=1)
    durations = [line for line in result.outlines if "call" in line and "weekly" in line]
    assert not durations or float(durations[0].split("s")[0]) < 5


def test_hook_skip_and_first_result(project: pytest.Pytester) -> None:
    # dags/conftest.py answers first for the DAGs under dags/; None defers to the root one.
    project.path.joinpath("dags", "conftest.py").write_text(
        """
import pytest

def pytest_flowrun_context(dag_name, engine):
    if dag_name == "cleanup":
        pytest.skip("cleanup needs a database")
    return None
"""
    )
    result = project.runpytest("--flowrun-run", "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*cleanup needs a database*"])


def test_import_error_is_a_failing_item(project: pytest.Pytester) -> None:
    project.path.joinpath("dags", "broken.py").write_text(
        "import flowrun\n\n\ndef helper():\n    raise RuntimeError('no config')\n\n\nhelper()\n"
    )
    project.path.joinpath("dags", "missing.py").write_text("import not_a_module_xyz\n")
    project.path.joinpath("dags", "syntax.py").write_text("def (:\n")
    result = project.runpytest("--flowrun", "-q")
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*error while importing DAG module*broken.py*",
            "Traceback (most recent call last):",
            '  File "*broken.py", line *, in <module>',
            "*raise RuntimeError('no config')*",
            "RuntimeError: no config",
        ]
    )
    broken = result.stdout.str().split("flowrun import of broken.py")[1].split("import of")[0]
    for internal in ("importlib", "_pytest", "pluggy"):
        assert internal not in broken
    result.stdout.fnmatch_lines(["*No module named 'not_a_module_xyz'*"])
    result.stdout.fnmatch_lines(["*SyntaxError*"])
    result.stdout.fnmatch_lines(["FAILED dags/broken.py::import*"])
    assert "Interrupted" not in result.stdout.str()


def test_cyclic_and_invalid_dags_fail_validation(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        cyclic_dag="""
from flowrun import build_default_engine

engine = build_default_engine()

@engine.task(dag="loop", deps=["c"])
def a(): ...

@engine.task(dag="loop", deps=["a"])
def b(): ...

@engine.task(dag="loop", deps=["b"])
def c(): ...

@engine.task(dag="missing", deps=["nowhere"])
def d(): ...
"""
    )
    result = pytester.runpytest("--flowrun")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "DAG 'loop' is invalid: DAG 'loop' has a cycle: * -> * -> * -> *",
            "tasks:",
            "  a  <- c",
            "  b  <- a",
            "  c  <- b",
        ]
    )
    result.stdout.fnmatch_lines(["DAG 'missing' is invalid: *nowhere*"])


def test_no_dag_found_fails_the_session(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "flowrun_files = pipelines/*.py\n")
    pytester.makepyfile(test_a="def test_a():\n    pass\n", other_dag="x = 1\n")
    result = pytester.runpytest("--flowrun")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*--flowrun found no DAG: no file matching flowrun_files = 'pipelines/*.py'*"]
    )
    result.stdout.fnmatch_lines(["*flowrun_files=pipelines/[*].py*"])


def test_flowrun_files_ini(project: pytest.Pytester) -> None:
    project.makeini(INI + "flowrun_files = reports_*.py\n")
    result = project.runpytest("--flowrun", "--collect-only", "-q")
    assert result.outlines[0] == "reports_dag.py::weekly"
    assert not any("dags/etl.py" in line for line in result.outlines)


def test_shared_engine_dags_belong_to_their_defining_module(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.mkpydir("dags")
    pytester.path.joinpath("dags", "__init__.py").write_text(
        "from flowrun import build_default_engine\n\nengine = build_default_engine()\n"
    )
    for name in ("a", "b"):
        pytester.path.joinpath("dags", f"{name}.py").write_text(
            f"from dags import engine\n\n@engine.task(dag='{name}')\ndef t{name}():\n    return 1\n"
        )
    pytester.path.joinpath("dags", "all_of_them.py").write_text(
        "from dags import engine\nfrom dags import a, b\n"
    )
    result = pytester.runpytest("--flowrun", "--collect-only", "-q")
    assert result.outlines[:2] == ["dags/a.py::a", "dags/b.py::b"]


def test_same_items_under_xdist(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    result = project.runpytest_subprocess("--flowrun-run", "-n", "2", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines_random(
        [
            "*PASSED dags/etl.py::etl*",
            "*PASSED dags/etl.py::cleanup*",
            "*PASSED reports_dag.py::weekly*",
        ]
    )


def test_example_project_passes(pytester: pytest.Pytester) -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "examples" / "project"
    result = pytester.runpytest_subprocess(
        str(example), "--flowrun", "--flowrun-run", "-p", "no:cacheprovider", "-v"
    )
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines_random(["*dags/etl.py::etl PASSED*", "*::weekly_report PASSED*"])


def test_a_path_named_on_the_command_line_is_collected_whatever_its_name(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pipeline = (
        "from flowrun import build_default_engine\n\n"
        "engine = build_default_engine()\n\n"
        "@engine.task(dag='{dag}')\n"
        "def step():\n    return 1\n"
    )
    folder = pytester.mkdir("pipelines")
    (folder / "etl.py").write_text(pipeline.format(dag="etl"), encoding="utf-8")
    (folder / "sync.py").write_text(pipeline.format(dag="sync"), encoding="utf-8")
    (folder / "test_etl.py").write_text("def test_it():\n    pass\n", encoding="utf-8")
    named_file = pytester.runpytest("--flowrun", "--collect-only", "-q", "pipelines/etl.py")
    assert named_file.outlines[0] == "pipelines/etl.py::etl"
    assert not any("sync" in line for line in named_file.outlines)
    named_folder = pytester.runpytest("--flowrun", "--collect-only", "-q", "pipelines")
    assert named_folder.outlines[:3] == [
        "pipelines/etl.py::etl",
        "pipelines/sync.py::sync",
        "pipelines/test_etl.py::test_it",  # a test file stays a test file
    ]
    unnamed = pytester.runpytest("--flowrun", "--collect-only", "-q")
    assert not any(line.startswith("pipelines/etl.py::etl") for line in unnamed.outlines)
