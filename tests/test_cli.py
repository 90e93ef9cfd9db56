"""The ``flowrun`` command line, through ``subprocess`` with real files in a temporary directory."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support import flowrun, on_a_terminal

from flowrun import SqliteStateStore
from flowrun.state.records import CacheEntry

PIPELINE = textwrap.dedent(
    '''
    """A test pipeline: `broken.flag` in the current directory makes `transform` fail."""
    import asyncio
    import contextlib
    from pathlib import Path

    from flowrun import RunContext, build_default_engine

    engine = build_default_engine(max_parallel=4)
    etl = engine.dag("etl")


    @etl.task
    def extract() -> list[int]:
        return [1, 2, 3]


    @etl.task(deps=[extract], retries=1)
    def transform(extract: list[int]) -> list[int]:
        if Path("broken.flag").exists():
            raise RuntimeError("bad data")
        return [x * 10 for x in extract]


    @etl.task(deps=[transform])
    def load(transform: list[int], context: RunContext) -> dict:
        label = context.deps["label"] if context.deps else None
        return {"total": sum(transform), "label": label}


    fan = engine.dag("fan")
    state = {"running": 0, "peak": 0}


    async def work() -> None:
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        await asyncio.sleep(0.02)
        state["running"] -= 1


    for name in ("a", "b", "c"):
        fan.task(name)(work)


    @fan.task(deps=["a", "b", "c"])
    def peak() -> int:
        return state["peak"]


    STATIC = RunContext({"label": "static"})
    not_a_context = 42


    def settings() -> RunContext:
        return RunContext({"label": "factory"})


    def needs_args(x):
        return RunContext({"label": x})


    def broken_factory() -> RunContext:
        raise ConnectionError("vault unreachable")


    @contextlib.contextmanager
    def managed():
        Path("opened").write_text("yes")
        yield RunContext({"label": "managed"})
        Path("closed").write_text("yes")
    '''
)

BAD_DAGS = textwrap.dedent(
    """
    from flowrun import build_default_engine

    engine = build_default_engine()
    engine.task("a", dag="loop", deps=["b"])(lambda b: b)
    engine.task("b", dag="loop", deps=["a"])(lambda a: a)
    engine.task("extract", dag="typo")(lambda: 1)
    engine.task("transform", dag="typo", deps=["extarct"])(lambda extarct: extarct)
    engine.task("only", dag="fine")(lambda: 1)
    """
)


PERIODS = textwrap.dedent(
    """
    import datetime

    from flowrun import build_default_engine

    engine = build_default_engine()


    @engine.task(dag="periods")
    def period() -> datetime.date:
        return datetime.date(2024, 1, 1)  # JSON cannot store a date


    @engine.task(dag="periods", deps=[period])
    def label(period: datetime.date) -> str:
        return f"{period.year}-{period.month:02d}"
    """
)


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(PIPELINE, encoding="utf-8")
    return tmp_path


def test_run_prints_the_table_and_creates_the_default_database(project: Path) -> None:
    proc = flowrun(project, "run", "pipeline.py", "etl")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "of DAG 'etl': SUCCESS" in proc.stdout
    table = proc.stdout[proc.stdout.index("  task ") :].splitlines()
    assert table[0].split() == ["task", "status", "attempt", "duration"]
    assert [line.split()[:3] for line in table[1:]] == [
        ["extract", "SUCCESS", "1"],
        ["transform", "SUCCESS", "1"],
        ["load", "SUCCESS", "1"],
    ]
    assert (project / ".flowrun" / "flowrun.sqlite").is_file()


def test_run_json_prints_the_report(project: Path) -> None:
    proc = flowrun(project, "run", "pipeline.py", "etl", "--json")
    assert proc.returncode == 0, proc.stderr
    report = as_json(proc)
    assert report["status"] == "SUCCESS"
    assert list(report["tasks"]) == ["extract", "transform", "load"]
    assert report["tasks"]["load"]["result"] == {"total": 60, "label": None}


def test_failed_run_exits_1_then_resume_in_another_process_after_the_fix(project: Path) -> None:
    (project / "broken.flag").touch()
    failed = flowrun(project, "run", "pipeline.py", "etl")
    assert failed.returncode == 1
    out = failed.stdout
    assert "of DAG 'etl': FAILED" in out
    assert "task 'transform' failed on attempt 2: RuntimeError: bad data" in out
    assert 'pipeline.py", line' in out
    assert 'raise RuntimeError("bad data")' in out
    assert "retry   transform: attempt 1/2 failed: RuntimeError: bad data" in out  # progress
    assert "skipped load" in out
    run_id = as_json(flowrun(project, "runs", "--json"))[0]["run_id"]
    assert f"flowrun resume {run_id} pipeline.py" in out

    (project / "broken.flag").unlink()  # the fix, between two invocations
    resumed = flowrun(project, "resume", run_id[:8], "pipeline.py", "--json")
    assert resumed.returncode == 0, resumed.stderr
    report = as_json(resumed)
    assert report["run_id"] != run_id
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["transform"]["attempt"] == 1
    assert report["tasks"]["load"]["result"]["total"] == 60

    history = as_json(flowrun(project, "runs", "--json"))
    assert [(r["run_id"], r["status"]) for r in history] == [
        (report["run_id"], "SUCCESS"),
        (run_id, "FAILED"),
    ]


def test_resume_from_a_task_reruns_it_and_its_descendants(project: Path) -> None:
    first = as_json(flowrun(project, "run", "pipeline.py", "etl", "--json"))
    proc = flowrun(project, "resume", first["run_id"], "pipeline.py", "--from", "load", "--json")
    assert proc.returncode == 0, proc.stderr
    again = as_json(proc)
    assert again["tasks"]["extract"]["started_at"] == first["tasks"]["extract"]["started_at"]
    assert again["tasks"]["load"]["started_at"] != first["tasks"]["load"]["started_at"]


def test_history_runs_and_show_across_invocations(project: Path) -> None:
    ok = as_json(flowrun(project, "run", "pipeline.py", "etl", "--json"))
    (project / "broken.flag").touch()
    bad = as_json(flowrun(project, "run", "pipeline.py", "etl", "--json"))
    flowrun(project, "run", "pipeline.py", "fan", "--json")

    listing = flowrun(project, "runs")
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["RUN", "ID", "DAG", "STATUS", "STARTED", "TOOK", "TASKS"]
    assert lines[2].split()[:3] == [bad["run_id"], "etl", "FAILED"]
    assert "1 ok, 1 failed, 1 skipped" in lines[2]
    assert lines[3].split()[:3] == [ok["run_id"], "etl", "SUCCESS"]

    failed = as_json(flowrun(project, "runs", "--status", "failed", "--json"))
    assert [r["run_id"] for r in failed] == [bad["run_id"]]
    etl_only = as_json(flowrun(project, "runs", "--dag", "etl", "--limit", "1", "--json"))
    assert [r["run_id"] for r in etl_only] == [bad["run_id"]]
    typo = flowrun(project, "runs", "--dag", "elt")
    assert typo.returncode == 0
    assert "Did you mean 'etl'?" in typo.stderr

    shown = flowrun(project, "show", ok["run_id"])
    assert shown.returncode == 0
    assert f"run {ok['run_id']} of DAG 'etl': SUCCESS" in shown.stdout
    assert as_json(flowrun(project, "show", ok["run_id"][:10], "--json", "--results")) == ok
    summary = as_json(flowrun(project, "show", ok["run_id"][:10], "--json"))
    assert all("result" not in task for task in summary["tasks"].values())  # --results only


def test_show_draws_a_run_as_mermaid_and_dot_coloured_by_status(project: Path) -> None:
    (project / "broken.flag").touch()
    run_id = as_json(flowrun(project, "run", "pipeline.py", "etl", "--json"))["run_id"]

    mermaid = flowrun(project, "show", run_id, "pipeline.py", "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart TD\n")
    assert 't0["extract<br/>SUCCESS' in mermaid
    assert 't1["transform<br/>FAILED, 2 attempts' in mermaid
    assert "RuntimeError: bad data" in mermaid
    assert 't2["load<br/>SKIPPED"]' in mermaid
    assert "    t0 --> t1\n    t1 --> t2\n" in mermaid
    assert "classDef failed fill:#ffe3e3" in mermaid
    assert "class t1 failed" in mermaid
    assert "class t0 success" in mermaid
    assert "class t2 skipped" in mermaid

    without_target = flowrun(project, "show", run_id, "--format", "mermaid")
    assert without_target.returncode == 0, without_target.stderr
    assert without_target.stdout == mermaid  # the database keeps the edges

    dot = flowrun(project, "show", run_id, "pipeline.py", "--format", "dot").stdout
    assert dot.startswith('digraph "etl" {')
    assert '"transform" -> "load";' in dot
    assert 'fillcolor="#ffe3e3"' in dot
    assert flowrun(project, "show", run_id, "--format", "dot").stdout == dot


def test_show_of_a_run_recorded_without_edges_takes_them_from_target(project: Path) -> None:
    run_id = as_json(flowrun(project, "run", "pipeline.py", "etl", "--json"))["run_id"]
    with sqlite3.connect(project / ".flowrun" / "flowrun.sqlite") as conn:
        conn.execute("UPDATE tasks SET deps = NULL")  # as a flowrun before schema 2 wrote it
    conn.close()
    no_edges = flowrun(project, "show", run_id, "--format", "mermaid")
    assert no_edges.returncode == 0, no_edges.stderr
    assert "-->" not in no_edges.stdout
    assert 't2["load<br/>SUCCESS' in no_edges.stdout
    with_target = flowrun(project, "show", run_id, "pipeline.py", "--format", "mermaid")
    assert with_target.returncode == 0, with_target.stderr
    assert "    t0 --> t1\n    t1 --> t2\n" in with_target.stdout


def test_show_unknown_and_ambiguous_run_ids_exit_2(project: Path) -> None:
    proc = flowrun(project, "show", "nope")
    assert proc.returncode == 2
    assert "unknown run id 'nope'" in proc.stderr
    assert not (project / ".flowrun").exists()  # a read command creates no database


def test_dag_may_be_omitted_only_when_the_target_has_one(project: Path) -> None:
    proc = flowrun(project, "run", "pipeline.py")
    assert proc.returncode == 2
    assert "defines 2 DAGs ('etl', 'fan')" in proc.stderr
    assert proc.stdout == ""
    single = flowrun(project, "run", "pipeline.py:fan", "--json")  # a DagScope attribute
    assert single.returncode == 0, single.stderr
    assert as_json(single)["dag_name"] == "fan"


def test_a_dag_name_with_a_typo_suggests_the_close_match(project: Path) -> None:
    proc = flowrun(project, "run", "pipeline.py", "elt")
    assert proc.returncode == 2
    assert "unknown DAG 'elt'" in proc.stderr
    assert "Did you mean 'etl'?" in proc.stderr


def test_target_forms_module_and_attribute(project: Path) -> None:
    by_module = flowrun(project, "run", "pipeline", "etl", "--json")
    assert by_module.returncode == 0, by_module.stderr
    by_attr = flowrun(project, "graph", "pipeline:engine", "fan")
    assert by_attr.returncode == 0
    assert by_attr.stdout.startswith("DAG fan (4 tasks)")
    missing = flowrun(project, "list", "pipeline.py:engnie")
    assert missing.returncode == 2
    assert "Did you mean 'engine'?" in missing.stderr
    wrong = flowrun(project, "list", "pipeline.py:not_a_context")
    assert wrong.returncode == 2
    assert "is a int, not an Engine or a DagScope" in wrong.stderr


def test_a_target_that_does_not_import_is_a_clear_error(project: Path) -> None:
    (project / "broken.py").write_text("import os\nVALUE = 1 / 0\n", encoding="utf-8")
    proc = flowrun(project, "run", "broken.py")
    assert proc.returncode == 2
    assert "cannot import TARGET 'broken.py': ZeroDivisionError" in proc.stderr
    assert 'broken.py", line 2' in proc.stderr
    assert "VALUE = 1 / 0" in proc.stderr
    assert "importlib" not in proc.stderr

    no_module = flowrun(project, "validate", "no_such_module")
    assert no_module.returncode == 2
    assert "no module named 'no_such_module'" in no_module.stderr
    no_file = flowrun(project, "validate", "pipline.py")
    assert no_file.returncode == 2
    assert "no such file 'pipline.py'" in no_file.stderr
    assert "Did you mean 'pipeline.py'?" in no_file.stderr


def test_validate_prints_engine_errors_and_exits_1(project: Path) -> None:
    (project / "bad.py").write_text(BAD_DAGS, encoding="utf-8")
    proc = flowrun(project, "validate", "bad.py")
    assert proc.returncode == 1
    assert "DAG 'loop' has a cycle: a -> b -> a" in proc.stderr
    assert "depends on 'extarct'" in proc.stderr
    assert "Did you mean 'extract'?" in proc.stderr
    assert proc.stdout == "ok      fine (1 task)\n"
    good = flowrun(project, "validate", "pipeline.py")
    assert good.returncode == 0
    assert good.stdout.splitlines() == ["ok      etl (3 tasks)", "ok      fan (4 tasks)"]
    run_invalid = flowrun(project, "run", "bad.py", "loop")
    assert run_invalid.returncode == 1
    assert "has a cycle" in run_invalid.stderr


def test_list_and_graph(project: Path) -> None:
    listing = flowrun(project, "list", "pipeline.py")
    assert listing.returncode == 0
    assert "DAG etl (3 tasks)\n├── extract\n├── transform  <- extract\n└── load  <- transform" in (
        listing.stdout
    )
    assert "DAG fan (4 tasks)" in listing.stdout
    data = as_json(flowrun(project, "list", "pipeline.py", "--json"))
    assert data[0] == {
        "dag": "etl",
        "engine": "engine",
        "tasks": [
            {"name": "extract", "deps": []},
            {"name": "transform", "deps": ["extract"]},
            {"name": "load", "deps": ["transform"]},
        ],
    }
    mermaid = flowrun(project, "graph", "pipeline.py", "etl", "--format", "mermaid")
    assert mermaid.stdout.startswith("flowchart TD")
    assert "t0 --> t1" in mermaid.stdout
    dot = flowrun(project, "graph", "pipeline.py", "etl", "--format", "dot")
    assert '"extract" -> "transform";' in dot.stdout
    bad_format = flowrun(project, "graph", "pipeline.py", "etl", "--format", "png")
    assert bad_format.returncode == 2
    assert "invalid choice: 'png'" in bad_format.stderr


@pytest.mark.parametrize(
    ("name", "label"),
    [("STATIC", "static"), ("settings", "factory"), ("pipeline:settings", "factory")],
)
def test_context_attribute_or_factory(project: Path, name: str, label: str) -> None:
    proc = flowrun(project, "run", "pipeline.py", "etl", "--context", name, "--json")
    assert proc.returncode == 0, proc.stderr
    assert as_json(proc)["tasks"]["load"]["result"]["label"] == label


def test_context_manager_is_entered_for_the_run_and_exited_after(project: Path) -> None:
    proc = flowrun(project, "run", "pipeline.py", "etl", "--context", "managed", "--json")
    assert proc.returncode == 0, proc.stderr
    assert as_json(proc)["tasks"]["load"]["result"]["label"] == "managed"
    assert (project / "opened").is_file()
    assert (project / "closed").is_file()


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("setings", 2, "has no attribute 'setings'. Did you mean 'settings'?"),
        ("not_a_context", 2, "--context not_a_context is a int, not a RunContext"),
        ("needs_args", 2, "needs_args() must take no arguments"),
        ("broken_factory", 1, "broken_factory() raised ConnectionError: vault unreachable"),
    ],
)
def test_context_errors(project: Path, name: str, code: int, message: str) -> None:
    proc = flowrun(project, "run", "pipeline.py", "etl", "--context", name)
    assert proc.returncode == code
    assert message in proc.stderr


def test_target_tasks_run_a_subgraph(project: Path) -> None:
    proc = flowrun(project, "run", "pipeline.py", "etl", "--target", "transform", "--json")
    assert proc.returncode == 0, proc.stderr
    assert list(as_json(proc)["tasks"]) == ["extract", "transform"]
    typo = flowrun(project, "run", "pipeline.py", "etl", "--target", "lod")
    assert typo.returncode == 2
    assert "--target 'lod': DAG 'etl' has no such task. Did you mean 'load'?" in typo.stderr


def test_max_parallel_bounds_tasks_in_flight(project: Path) -> None:
    wide = as_json(flowrun(project, "run", "pipeline.py", "fan", "--json"))
    assert wide["tasks"]["peak"]["result"] == 3
    narrow = as_json(flowrun(project, "run", "pipeline.py", "fan", "--max-parallel", "1", "--json"))
    assert narrow["tasks"]["peak"]["result"] == 1
    bad = flowrun(project, "run", "pipeline.py", "fan", "--max-parallel", "0")
    assert bad.returncode == 2
    assert "must be >= 1" in bad.stderr


def test_db_option_env_var_and_memory(project: Path) -> None:
    flowrun(project, "run", "pipeline.py", "etl", "--db", "state/custom.db")
    assert (project / "state" / "custom.db").is_file()
    assert len(as_json(flowrun(project, "runs", "--db", "state/custom.db", "--json"))) == 1

    env = {"FLOWRUN_DB": str(project / "env.db")}
    flowrun(project, "run", "pipeline.py", "etl", env=env)
    assert len(as_json(flowrun(project, "runs", "--json", env=env))) == 1

    memory = flowrun(project, "run", "pipeline.py", "etl", "--db", ":memory:")
    assert memory.returncode == 0
    assert not (project / ".flowrun").exists()
    empty = flowrun(project, "runs")
    assert empty.returncode == 0
    assert empty.stdout == ""
    assert "no runs" in empty.stderr
    assert not (project / ".flowrun").exists()


def test_a_file_that_is_not_a_database_is_refused(project: Path) -> None:
    (project / "notes.txt").write_text("hello", encoding="utf-8")
    proc = flowrun(project, "run", "pipeline.py", "etl", "--db", "notes.txt")
    assert proc.returncode == 2
    assert "notes.txt" in proc.stderr
    assert "not a SQLite database" in proc.stderr


def test_progress_modes(project: Path) -> None:
    off = flowrun(project, "run", "pipeline.py", "etl", "--progress", "off")
    assert off.stdout.startswith("run ")
    assert "start " not in off.stdout
    plain = flowrun(project, "run", "pipeline.py", "etl")  # not a terminal: plain lines
    assert "start   extract (attempt 1/1)" in plain.stdout
    assert "ok      load in " in plain.stdout
    assert "[3/3 done]" in plain.stdout
    assert "\r" not in plain.stdout
    assert "\x1b" not in plain.stdout
    forced = flowrun(project, "run", "pipeline.py", "etl", env={"FLOWRUN_PROGRESS": "live"})
    assert "\x1b[K" in forced.stdout
    assert "3/3 done" in forced.stdout
    bad = flowrun(project, "run", "pipeline.py", "etl", env={"FLOWRUN_PROGRESS": "loud"})
    assert bad.returncode == 2
    assert "FLOWRUN_PROGRESS='loud'" in bad.stderr


def test_live_progress_on_a_terminal(project: Path) -> None:
    (project / "broken.flag").touch()
    returncode, printed = on_a_terminal(project, "run", "pipeline.py", "etl")
    assert returncode == 1
    out = printed.decode()
    assert "\x1b[K" in out  # the status line is redrawn in place
    assert "1/3 done" in out
    assert "running 1: transform" in out
    assert "retry   transform: attempt 1/2 failed: RuntimeError: bad data" in out
    assert "FAILED  transform (attempt 2/2): RuntimeError: bad data" in out
    assert "FAILED  transform (attempt 1/2)" not in out  # a retried attempt shows once
    assert "| 2 failed" not in out  # the status line counts tasks that failed for good
    assert "of DAG 'etl': FAILED" in out  # the final table follows


def test_usage_errors_exit_2(project: Path) -> None:
    assert flowrun(project).returncode == 2
    typo = flowrun(project, "rn", "pipeline.py")
    assert typo.returncode == 2
    assert "Did you mean 'run'?" in typo.stderr
    no_dag = flowrun(project, "validate", "pipeline.py:STATIC")
    assert no_dag.returncode == 2
    (project / "empty.py").write_text("X = 1\n", encoding="utf-8")
    empty = flowrun(project, "list", "empty.py")
    assert empty.returncode == 2
    assert "defines no DAG" in empty.stderr


def test_resume_needs_a_target_with_the_runs_dag(project: Path) -> None:
    run_id = as_json(flowrun(project, "run", "pipeline.py", "etl", "--json"))["run_id"]
    (project / "other.py").write_text(
        "from flowrun import build_default_engine\n"
        "engine = build_default_engine()\n"
        "engine.task('x', dag='other')(lambda: 1)\n",
        encoding="utf-8",
    )
    proc = flowrun(project, "resume", run_id, "other.py")
    assert proc.returncode == 2
    assert f"run {run_id} is a run of DAG 'etl', which 'other.py' does not define" in proc.stderr


def test_console_script_and_version(project: Path) -> None:
    script = Path(sys.executable).with_name("flowrun")
    if not script.exists():
        pytest.skip("the flowrun console script is not installed (pip install -e .)")
    proc = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("flowrun ")


def test_ctrl_c_records_the_run_as_failed_and_says_how_to_resume(project: Path) -> None:
    (project / "hang.py").write_text(
        "import asyncio\n"
        "from flowrun import build_default_engine\n"
        "engine = build_default_engine()\n"
        "@engine.task(dag='hang')\n"
        "async def slow() -> None:\n"
        "    await asyncio.sleep(60)\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRUN_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowrun", "run", "hang.py", "--progress", "plain"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "start   slow" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    (run,) = as_json(flowrun(project, "runs", "--json"))
    assert run["status"] == "FAILED"
    assert f"interrupted: run {run['run_id']} is recorded as FAILED" in err
    assert f"flowrun resume {run['run_id']} hang.py" in err


def test_a_file_named_like_a_loaded_module_still_loads(project: Path) -> None:
    (project / "sub").mkdir()
    (project / "sub" / "json.py").write_text(PIPELINE, encoding="utf-8")  # not stdlib json
    proc = flowrun(project, "run", "sub/json.py", "fan", "--json")
    assert proc.returncode == 0, proc.stderr
    assert as_json(proc)["status"] == "SUCCESS"


def test_serializer_pickle_stores_what_json_cannot(project: Path) -> None:
    (project / "periods.py").write_text(PERIODS, encoding="utf-8")
    failed = flowrun(project, "run", "periods.py")
    assert failed.returncode == 1
    assert "task 'period' failed on attempt 1: ResultEncodingError: task 'period' returned a " in (
        failed.stdout
    )
    assert "skipped label" in failed.stdout
    assert "hint: the database stores results as JSON, which cannot store the result of " in (
        failed.stdout
    )
    assert "run with --serializer pickle (or FLOWRUN_SERIALIZER=pickle)" in failed.stdout
    as_json_output = flowrun(project, "run", "periods.py", "--json")
    assert as_json_output.returncode == 1
    assert as_json(as_json_output)["tasks"]["period"]["status"] == "FAILED"  # stdout: JSON only
    assert "--serializer pickle" in as_json_output.stderr

    ok = flowrun(project, "run", "periods.py", "--serializer", "pickle")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "of DAG 'periods': SUCCESS" in ok.stdout
    assert "hint:" not in ok.stdout
    run_id = as_json(flowrun(project, "runs", "--serializer", "pickle", "--json"))[0]["run_id"]

    shown = flowrun(project, "show", run_id, "--serializer", "pickle")
    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id} of DAG 'periods': SUCCESS" in shown.stdout
    report = as_json(
        flowrun(project, "show", run_id, "--json", "--results", "--serializer", "pickle")
    )
    assert report["tasks"]["period"]["result"] == "datetime.date(2024, 1, 1)"  # its repr
    assert report["tasks"]["label"]["result"] == "2024-01"
    by_env = flowrun(
        project, "show", run_id, "--json", "--results", env={"FLOWRUN_SERIALIZER": "pickle"}
    )
    assert as_json(by_env) == report

    plain = flowrun(project, "show", run_id)  # no result read: any format will do
    assert plain.returncode == 0, plain.stderr
    assert f"run {run_id} of DAG 'periods': SUCCESS" in plain.stdout
    as_json_db = flowrun(project, "show", run_id, "--results")  # the default serializer
    assert as_json_db.returncode == 2
    assert "holds results that --serializer json cannot read" in as_json_db.stderr
    assert f"flowrun show {run_id} --results --serializer pickle" in as_json_db.stderr


def test_resume_command_keeps_the_serializer(project: Path) -> None:
    (project / "broken.flag").touch()
    failed = flowrun(project, "run", "pipeline.py", "etl", "--serializer", "pickle")
    assert failed.returncode == 1
    run_id = as_json(flowrun(project, "runs", "--json", "--serializer", "pickle"))[0]["run_id"]
    assert f"flowrun resume {run_id} pipeline.py --serializer pickle" in failed.stdout
    assert "hint:" not in failed.stdout  # a task error, not a result JSON cannot store
    (project / "broken.flag").unlink()
    resumed = flowrun(project, "resume", run_id, "pipeline.py", "--serializer", "pickle")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


@pytest.mark.parametrize("command", ["run", "resume", "runs", "show"])
def test_an_unknown_serializer_is_a_usage_error(project: Path, command: str) -> None:
    args = {
        "run": ["run", "pipeline.py", "etl"],
        "resume": ["resume", "abc", "pipeline.py"],
        "runs": ["runs"],
        "show": ["show", "abc"],
    }[command]
    flag = flowrun(project, *args, "--serializer", "yaml")
    assert flag.returncode == 2
    assert "invalid choice: 'yaml'" in flag.stderr
    assert "'json', 'pickle'" in flag.stderr or "json, pickle" in flag.stderr
    env = flowrun(project, *args, env={"FLOWRUN_SERIALIZER": "yaml"})
    assert env.returncode == 2
    assert "FLOWRUN_SERIALIZER='yaml' is not a serializer; choose one of json, pickle" in (
        env.stderr
    )
    assert not (project / ".flowrun").exists()  # refused before anything ran or was created


def test_a_stuck_sync_task_past_its_timeout_does_not_keep_the_command_alive(
    tmp_path: Path,
) -> None:
    """A thread cannot be killed; the engine's own pool uses daemon threads, so the command
    ends once the report is printed instead of waiting for the abandoned function forever."""
    (tmp_path / "stuck.py").write_text(
        "import threading\n"
        "from flowrun import build_default_engine\n"
        "engine = build_default_engine()\n"
        "@engine.task(dag='t', timeout_s=0.2)\n"
        "def stuck():\n"
        "    threading.Event().wait()  # never returns\n",
        encoding="utf-8",
    )
    proc = flowrun(tmp_path, "run", "stuck.py", "--db", ":memory:", timeout=60)
    assert proc.returncode == 1
    assert "timed out after 0.2s" in proc.stdout
    assert "flowrun resume" not in proc.stdout  # nothing was kept to resume from
    assert "--db :memory: kept nothing" in proc.stdout


def put_cache_entries(db: Path, entries: list[tuple[str, str, str]]) -> None:
    """Cache entries ``(key, dag, task)`` in the database, as earlier runs would have left."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with SqliteStateStore(db) as store:
        for key, dag, task in entries:
            store.cache_put(CacheEntry(key, dag, task, "earlier", 1.0, None, [1]))


def cache_keys(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [key for (key,) in conn.execute("SELECT key FROM cache ORDER BY key")]


def run_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        count: int = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    return count


def test_refresh_cache_forgets_the_named_tasks_or_the_whole_dag(project: Path) -> None:
    db = project / ".flowrun" / "flowrun.sqlite"
    put_cache_entries(
        db, [("e", "etl", "extract"), ("t", "etl", "transform"), ("l", "etl", "load")]
    )
    put_cache_entries(db, [("p", "fan", "peak")])

    some = flowrun(project, "run", "pipeline.py", "etl", "--refresh-cache", "transform", "load")
    assert some.returncode == 0, some.stderr
    assert "of DAG 'etl': SUCCESS" in some.stdout
    assert cache_keys(db) == ["e", "p"]

    every = flowrun(project, "run", "pipeline.py", "etl", "--refresh-cache", "--json")
    assert every.returncode == 0, every.stderr
    assert as_json(every)["status"] == "SUCCESS"
    assert cache_keys(db) == ["p"]  # the other DAG keeps its cache
    assert run_count(db) == 2


def test_refresh_cache_of_an_unknown_task_is_a_usage_error(project: Path) -> None:
    db = project / ".flowrun" / "flowrun.sqlite"
    put_cache_entries(db, [("l", "etl", "load")])
    typo = flowrun(project, "run", "pipeline.py", "etl", "--refresh-cache", "extract", "lod")
    assert typo.returncode == 2
    assert "--refresh-cache 'lod': DAG 'etl' has no such task. Did you mean 'load'?" in (
        typo.stderr
    )
    assert run_count(db) == 0  # nothing ran...
    assert cache_keys(db) == ["l"]  # ...and nothing was forgotten


def test_refresh_cache_is_in_the_run_help(project: Path) -> None:
    proc = flowrun(project, "run", "--help")
    assert proc.returncode == 0
    assert "--refresh-cache [TASK ...]" in proc.stdout
    assert "every task of the DAG when none is named" in " ".join(proc.stdout.split())


def test_validate_takes_several_targets_and_folders(project: Path) -> None:
    (project / "bad.py").write_text(BAD_DAGS, encoding="utf-8")
    (project / "_helpers.py").write_text("X = 1 / 0\n", encoding="utf-8")  # never imported
    (project / "no_dags.py").write_text("VALUE = 1\n", encoding="utf-8")
    folder = flowrun(project, "validate", ".")
    assert folder.returncode == 1  # bad.py holds invalid DAGs
    assert folder.stdout.splitlines() == [
        "ok      fine (1 task)  [bad.py]",
        "ok      etl (3 tasks)  [pipeline.py]",
        "ok      fan (4 tasks)  [pipeline.py]",
    ]
    assert "invalid loop  [bad.py]: DAG 'loop' has a cycle: a -> b -> a" in folder.stderr
    assert "no_dags.py" not in folder.stderr  # a module without DAGs, beside the pipelines
    both = flowrun(project, "validate", "pipeline.py", "no_dags.py")
    assert both.returncode == 1
    assert both.stdout.splitlines() == [
        "ok      etl (3 tasks)  [pipeline.py]",
        "ok      fan (4 tasks)  [pipeline.py]",
    ]
    assert "error   no_dags.py: no DAG found" in both.stderr
    missing = flowrun(project, "validate", "pipeline.py", "pipline2.py")
    assert missing.returncode == 1
    assert "error   pipline2.py: " in missing.stderr
    assert "ok      etl (3 tasks)  [pipeline.py]" in missing.stdout
    (project / "empty").mkdir()
    empty = flowrun(project, "validate", "empty")
    assert empty.returncode == 2
    assert "folder 'empty' holds no Python file (*.py) to validate" in empty.stderr


def test_target_and_from_take_one_task_each_anywhere_on_the_line(project: Path) -> None:
    before = flowrun(project, "run", "--target", "transform", "pipeline.py", "etl", "--json")
    assert before.returncode == 0, before.stderr
    assert set(json.loads(before.stdout)["tasks"]) == {"extract", "transform"}
    both = flowrun(
        project, "run", "pipeline.py", "etl", "--target", "transform", "--target", "load", "--json"
    )
    assert both.returncode == 0, both.stderr
    assert set(json.loads(both.stdout)["tasks"]) == {"extract", "transform", "load"}
