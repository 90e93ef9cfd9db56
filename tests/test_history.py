"""History that stays fast and readable: listing and ``show`` read no result (so runs of any
serializer list, and a big result costs nothing there); only ``show --results`` decodes
them, with the ``--serializer`` that stored them, and unpickles only when asked to."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support import flowrun

from flowrun import (
    InMemoryStateStore,
    PickleSerializer,
    SqliteStateStore,
    StateDatabaseError,
    build_default_engine,
)
from flowrun.cli._history import check_readable, results_text, without_results
from flowrun.cli._target import UsageError
from flowrun.state import RunRecord, TaskRecord

PIPELINE = textwrap.dedent(
    """
    import datetime

    from flowrun import build_default_engine

    engine = build_default_engine()
    etl = engine.dag("etl")


    @etl.task
    def extract() -> list[dict]:
        return [{"id": i, "name": f"row {i}"} for i in range(500)]


    @etl.task(deps=[extract])
    def day(extract: list[dict]) -> datetime.date:
        return datetime.date(2024, 1, len(extract) // 100)  # JSON cannot store a date


    @etl.task(deps=[day], retain_result=False)
    def load(day: datetime.date) -> str:
        return day.isoformat()
    """
)


@pytest.fixture
def pickled(tmp_path: Path) -> tuple[Path, str]:
    """A project whose database holds one run stored with ``--serializer pickle``."""
    (tmp_path / "pipeline.py").write_text(PIPELINE, encoding="utf-8")
    ran = flowrun(tmp_path, "run", "pipeline.py", "--serializer", "pickle", "--json")
    assert ran.returncode == 0, ran.stderr
    return tmp_path, json.loads(ran.stdout)["run_id"]


def test_a_pickle_run_lists_and_shows_with_the_default_serializer(
    pickled: tuple[Path, str],
) -> None:
    project, run_id = pickled
    listing = flowrun(project, "runs")  # exit 2 before: it decoded every result
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[1].split()[:3] == [run_id, "etl", "SUCCESS"]
    assert "3 ok" in listing.stdout
    runs = json.loads(flowrun(project, "runs", "--json").stdout)
    assert [r["run_id"] for r in runs] == [run_id]
    assert all("result" not in task for task in runs[0]["tasks"].values())
    assert runs[0]["tasks"]["day"]["status"] == "SUCCESS"

    shown = flowrun(project, "show", run_id[:8])  # a prefix, found without any result
    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id} of DAG 'etl': SUCCESS" in shown.stdout
    assert "results:" not in shown.stdout
    report = json.loads(flowrun(project, "show", run_id, "--json").stdout)
    assert set(report["tasks"]) == {"extract", "day", "load"}
    assert all("result" not in task for task in report["tasks"].values())
    mermaid = flowrun(project, "show", run_id, "--format", "mermaid")
    assert mermaid.returncode == 0
    assert "t0 --> t1" in mermaid.stdout


def test_show_results_names_the_task_and_the_serializer_it_needs(
    pickled: tuple[Path, str],
) -> None:
    project, run_id = pickled
    refused = flowrun(project, "show", run_id, "--results")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr == (
        f"flowrun: error: run {run_id} holds results that --serializer json cannot read "
        "(tasks 'extract', 'day': --serializer pickle); run: flowrun show "
        f"{run_id} --results --serializer pickle\n"
    )
    shown = flowrun(project, "show", run_id, "--results", "--serializer", "pickle")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.split("results:\n", 1)[1].splitlines()
    assert lines[0].startswith("  extract: [{'id': 0, 'name': 'row 0'}, ")
    assert lines[0].endswith("... (15,780 characters; --json shows it all)")
    assert lines[1:] == [
        "  day: datetime.date(2024, 1, 5)",
        "  load: (not kept: retain_result=False)",
    ]
    full = flowrun(project, "show", run_id, "--results", "--json", "--serializer", "pickle")
    tasks = json.loads(full.stdout)["tasks"]
    assert len(tasks["extract"]["result"]) == 500
    assert tasks["day"]["result"] == "datetime.date(2024, 1, 5)"  # its repr, in JSON
    assert tasks["load"]["result"] is None


def test_results_only_apply_to_the_text_report_and_json(pickled: tuple[Path, str]) -> None:
    project, run_id = pickled
    proc = flowrun(project, "show", run_id, "--results", "--format", "dot")
    assert proc.returncode == 2
    assert "--results adds the results to the text report or to --json; --format dot" in (
        proc.stderr
    )
    assert "--results" in flowrun(project, "show", "--help").stdout


def test_listing_never_reads_a_result(tmp_path: Path) -> None:
    """A result the store cannot decode (damaged bytes) does not matter until it is shown."""
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        run_id = asyncio.run(_two_tasks(store))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE tasks SET result = X'00ff' WHERE name = 'rows'")  # not JSON
    conn.close()
    for args in (["runs"], ["runs", "--json"], ["show", run_id], ["show", run_id, "--json"]):
        proc = flowrun(tmp_path, *args, "--db", str(db))
        assert proc.returncode == 0, (args, proc.stderr)
    with SqliteStateStore(db) as store:
        (listed,) = store.list_runs(results=False)
        assert listed.tasks["rows"].has_result
        assert listed.tasks["rows"].result_format == "json"
        assert store.load_run(run_id, results=False).tasks["total"].has_result
        with pytest.raises(ValueError, match="Expecting value"):  # the default still decodes
            store.load_run(run_id)


async def _two_tasks(store: Any) -> str:
    engine = build_default_engine(state_store=store)
    engine.task("rows", dag="d")(lambda: [{"id": i} for i in range(100)])

    @engine.task("total", dag="d", deps=["rows"])
    def total(rows: list[dict[str, int]]) -> int:
        return len(rows)

    async with engine:
        return await engine.run_once("d")


_UNPICKLED: list[str] = []


def _unpickled(marker: str) -> str:
    """What unpickling ``Loud`` calls: proof that a pickle was loaded (it runs code)."""
    _UNPICKLED.append(marker)
    return marker


class Loud:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_unpickled, ("loaded",))


def test_a_json_store_never_unpickles_and_summaries_of_any_format_read(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db, serializer=PickleSerializer()) as store:
        engine = build_default_engine(state_store=store)
        engine.task("loud", dag="d")(Loud)
        run_id = asyncio.run(engine.run_once("d"))
    _UNPICKLED.clear()
    with SqliteStateStore(db) as store:  # JsonSerializer()
        (listed,) = store.list_runs(results=False)
        summary = store.load_run(run_id, results=False)
        assert (listed.tasks["loud"].result_format, summary.tasks["loud"].has_result) == (
            "pickle",
            True,
        )
        with pytest.raises(StateDatabaseError, match=r"serializer=PickleSerializer\(\)"):
            store.load_run(run_id)
        with pytest.raises(StateDatabaseError, match="'pickle' format"):
            store.list_runs()
    assert _UNPICKLED == []  # nothing above loaded the pickle
    with SqliteStateStore(db, serializer=PickleSerializer()) as store:
        assert store.load_run(run_id).tasks["loud"].result == "loaded"
    assert _UNPICKLED == ["loaded"]  # asked for: it ran


def test_summaries_of_the_memory_store_copy_no_result() -> None:
    copies: list[object] = []

    class Counted:
        def __deepcopy__(self, memo: Any) -> Any:
            copies.append(self)
            return self

    store = InMemoryStateStore()
    store.create_run(RunRecord("r", "d", 1.0, tasks={"a": TaskRecord()}))
    store.mark_success("r", "a", 1.0, 2.0, [Counted()], True)
    store.finish_run("r", "SUCCESS", 3.0)
    (listed,) = store.list_runs(results=False)
    assert (listed.tasks["a"].result, listed.tasks["a"].has_result) == (None, True)
    assert store.load_run("r", results=False).tasks["a"].has_result
    assert copies == []
    assert len(store.load_run("r").tasks["a"].result) == 1  # a full snapshot copies, as before
    assert len(copies) == 1


def test_a_mixed_run_names_each_serializer_it_needs() -> None:
    tasks = {
        "a": TaskRecord("SUCCESS", 1, has_result=True, result_format="pickle"),
        "b": TaskRecord("SUCCESS", 1, has_result=True, result_format="Custom"),
        "c": TaskRecord("SUCCESS", 1, has_result=True, result_format="json"),
        "d": TaskRecord("FAILED", 1),
    }
    record = RunRecord("r1", "d", 1.0, "SUCCESS", 2.0, tasks)
    with pytest.raises(UsageError) as caught:
        check_readable(record, "json")
    assert str(caught.value) == (
        "run r1 holds results that --serializer json cannot read (task 'a': --serializer "
        "pickle; task 'b': the serializer named 'Custom', which the command line does not "
        "have (read it from Python: SqliteStateStore(path, serializer=...))); run: flowrun "
        "show r1 --results --serializer pickle"
    )
    with pytest.raises(UsageError, match="task 'b': the serializer named 'Custom'"):
        check_readable(record, "pickle")
    del tasks["b"]
    check_readable(record, "pickle")  # JSON and pickle: all readable


def test_results_text_and_reports_without_results() -> None:
    from flowrun._report import build_report

    tasks = {
        "kept": TaskRecord("SUCCESS", 1, result={"n": 1}, has_result=True),
        "pruned": TaskRecord("SUCCESS", 1, result_pruned=True),
        "failed": TaskRecord("FAILED", 1, error="ValueError: x"),
    }
    record = RunRecord("r1", "d", 1.0, "FAILED", 2.0, tasks)
    report = build_report(record)
    assert results_text(record, report) == [
        "",
        "results:",
        "  kept: {'n': 1}",
        "  pruned: (pruned: flowrun prune --results-only dropped it)",
    ]
    stripped = without_results(build_report(record))
    assert all("result" not in entry for entry in stripped["tasks"].values())
    assert stripped["tasks"]["kept"]["status"] == "SUCCESS"
    empty = RunRecord("r2", "d", 1.0, "FAILED", 2.0, {"f": TaskRecord("FAILED", 1)})
    assert results_text(empty, build_report(empty))[-1] == "  (none: no task has a result)"
