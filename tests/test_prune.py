"""``prune``: what the store contract (``tests/test_store_contract.py``) does not cover, the
SQLite file (vacuum, other tables, other processes), resuming a run whose results were
pruned, and ``flowrun prune`` on the command line."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import WALL_START, flowrun

from flowrun import Engine, InMemoryStateStore, SqliteStateStore, build_default_engine
from flowrun._report import build_report
from flowrun.cli._history import duration, keep_count, results_text, with_pruned_marks
from flowrun.state import RunRecord, TaskRecord
from flowrun.state.records import TickRecord
from flowrun.testing import VirtualClock

DAY_S = 86400.0


def finished_run(store: Any, run_id: str, created: float, size: int = 10) -> None:
    store.create_run(RunRecord(run_id, "etl", created, tasks={"a": TaskRecord()}))
    store.mark_success(run_id, "a", created, created + 1, "x" * size, True)
    store.finish_run(run_id, "SUCCESS", created + 2)
    store.flush()


def on_disk(db: Path) -> int:
    return sum(os.path.getsize(p) for p in (db, Path(f"{db}-wal")) if p.exists())


# -- the SQLite file ------------------------------------------------------------------------


def test_prune_deletes_the_rows_and_vacuum_gives_the_space_back(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        for i in range(8):
            finished_run(store, f"r{i}", WALL_START + i, size=200_000)
        full = on_disk(db)
        assert [r.run_id for r in store.prune(keep_last=2)] == [f"r{i}" for i in range(5, -1, -1)]
        assert on_disk(db) >= full * 0.9  # deleting alone keeps the file's size
        store.vacuum()
        small = on_disk(db)
        assert small < full / 3
        assert [r.run_id for r in store.list_runs()] == ["r7", "r6"]
        assert store.load_run("r7").tasks["a"].result == "x" * 200_000
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM tasks").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (2,)
    conn.close()


def test_results_only_leaves_the_rows_and_marks_them(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        finished_run(store, "old", WALL_START)
        finished_run(store, "new", WALL_START + 1)
        store.prune(keep_last=1, results_only=True)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT runs.run_id, tasks.status, tasks.result, tasks.result_format FROM tasks "
            "JOIN runs ON runs.id = tasks.run ORDER BY runs.id"
        ).fetchall()
    conn.close()
    assert rows == [("old", "SUCCESS", None, ""), ("new", "SUCCESS", b'"xxxxxxxxxx"', "json")]
    with SqliteStateStore(db) as other:  # as another process reads it
        old = other.load_run("old").tasks["a"]
        assert (old.status, old.has_result, old.result_pruned, old.result_format) == (
            "SUCCESS",
            False,
            True,
            None,
        )


def test_ticks_naming_a_pruned_run_stay(tmp_path: Path) -> None:
    with SqliteStateStore(tmp_path / "state.db") as store:
        finished_run(store, "r1", WALL_START)
        finished_run(store, "r2", WALL_START + 1)
        tick = TickRecord("nightly", WALL_START, "etl", "started", "r1", None, WALL_START)
        assert store.record_tick(tick)
        assert [r.run_id for r in store.prune(keep_last=1)] == ["r1"]
        assert store.list_ticks("nightly") == [tick]  # where a restarted server stopped


def test_a_store_on_virtual_time_prunes_by_its_clock(tmp_path: Path) -> None:
    clock = VirtualClock(epoch=WALL_START)
    with SqliteStateStore(tmp_path / "state.db", clock=clock) as store:
        finished_run(store, "r1", WALL_START)
        assert store.prune(older_than_s=DAY_S) == []
        clock.advance(2 * DAY_S)
        assert [r.run_id for r in store.prune(older_than_s=DAY_S)] == ["r1"]


def test_prune_leaves_a_run_another_process_is_writing(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as writer, SqliteStateStore(db) as pruner:
        writer.create_run(RunRecord("busy", "etl", WALL_START, tasks={"a": TaskRecord()}))
        writer.mark_running("busy", "a", 1, WALL_START)
        writer.flush()
        assert pruner.prune(keep_last=0) == []
        writer.mark_success("busy", "a", WALL_START, WALL_START + 1, 1, True)
        writer.finish_run("busy", "SUCCESS", WALL_START + 2)
        writer.flush()
        assert [r.run_id for r in pruner.prune(keep_last=0)] == ["busy"]


# -- resuming a run whose results were pruned -------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryStateStore()
        return
    with SqliteStateStore(tmp_path / "state.db") as sqlite_store:
        yield sqlite_store


class Etl:
    """extract -> transform -> load, and audit (independent); ``calls`` counts runs."""

    def __init__(self, engine: Engine) -> None:
        self.calls: Counter[str] = Counter()
        self.broken = False
        etl = engine.dag("etl")

        @etl.task
        def extract() -> list[int]:
            self.calls["extract"] += 1
            return [1, 2, 3]

        @etl.task(deps=[extract])
        def transform(extract: list[int]) -> list[int]:
            self.calls["transform"] += 1
            if self.broken:
                raise RuntimeError("bad data")
            return [x * 10 for x in extract]

        @etl.task(deps=[transform])
        def load(transform: list[int]) -> int:
            self.calls["load"] += 1
            return sum(transform)

        @etl.task
        def audit() -> str:
            self.calls["audit"] += 1
            return "ok"


async def test_resume_runs_again_a_kept_task_whose_result_was_pruned(
    store: Any, virtual_clock: VirtualClock
) -> None:
    engine = build_default_engine(state_store=store, clock=virtual_clock)
    etl = Etl(engine)
    etl.broken = True
    failed = await engine.run_once("etl")
    assert [r.run_id for r in store.prune(keep_last=0, results_only=True)] == [failed]
    etl.broken = False
    resumed = await engine.resume(failed)
    report = engine.get_run_report(resumed)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["load"]["result"] == 60
    # transform needs extract's result, which is gone: extract runs again (safe), audit not
    assert etl.calls == Counter(extract=2, transform=2, load=1, audit=1)
    engine.close()


async def test_a_kept_task_keeps_its_pruned_mark_in_the_resumed_run(
    store: Any, virtual_clock: VirtualClock
) -> None:
    engine = build_default_engine(state_store=store, clock=virtual_clock)
    etl = Etl(engine)
    first = await engine.run_once("etl")
    store.prune(keep_last=0, results_only=True)
    resumed = await engine.resume(first, from_tasks=["audit"])
    assert etl.calls == Counter(extract=1, transform=1, load=1, audit=2)  # nothing needed
    kept = store.load_run(resumed).tasks
    assert (kept["load"].status, kept["load"].result_pruned, kept["load"].has_result) == (
        "SUCCESS",
        True,
        False,
    )
    assert kept["audit"].result == "ok"
    assert not kept["audit"].result_pruned
    engine.close()


async def test_mapped_instances_results_are_pruned_and_shown_so(
    store: Any, virtual_clock: VirtualClock
) -> None:
    engine = build_default_engine(state_store=store, clock=virtual_clock)
    etl = engine.dag("m")

    @etl.task
    def pages() -> list[int]:
        return [1, 2]

    @etl.task(map={"page": pages})
    def fetch(page: int) -> int:
        return page * 10

    first = await engine.run_once("m")
    store.prune(keep_last=0, results_only=True)
    record = store.load_run(first)
    instances = [r for r in record.tasks.values() if r.map_of == "fetch"]
    assert [(r.status, r.result_pruned) for r in instances] == [("SUCCESS", True)] * 2
    report = with_pruned_marks(build_report(record), record)
    assert report["tasks"]["pages"]["result_pruned"] is True
    marks = {k: v.get("result_pruned") for k, v in report["tasks"]["fetch"]["instances"].items()}
    assert marks == {"0": True, "1": True}  # keyed by position
    assert "  fetch: (pruned: flowrun prune --results-only dropped it)" in results_text(
        record, report
    )
    engine.close()


# -- the command line -------------------------------------------------------------------------

PIPELINE = textwrap.dedent(
    """
    from flowrun import build_default_engine

    engine = build_default_engine()
    engine.task("rows", dag="etl")(lambda: [{"id": i} for i in range(2000)])
    engine.task("tick", dag="sync")(lambda: 1)
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Three runs of ``etl`` then one of ``sync``, in the default database."""
    (tmp_path / "pipeline.py").write_text(PIPELINE, encoding="utf-8")
    for dag in ("etl", "etl", "etl", "sync"):
        proc = flowrun(tmp_path, "run", "pipeline.py", dag, "--progress", "off")
        assert proc.returncode == 0, proc.stderr
    return tmp_path


def run_ids(project: Path, *args: str) -> list[str]:
    return [r["run_id"] for r in json.loads(flowrun(project, "runs", "--json", *args).stdout)]


def test_prune_refuses_without_a_criterion_and_checks_its_options(project: Path) -> None:
    before = run_ids(project)
    cases = {
        (): "prune needs --older-than DURATION and/or --keep-last N: with neither it would "
        "delete every run",
        ("--dag", "etl"): "prune needs --older-than",
        ("--results-only", "--vacuum"): "--results-only and --dag need --older-than and/or",
        ("--older-than", "30"): "argument --older-than: expected a duration such as 30d, 12h, "
        "90m or 3600s (a number and a unit: d, h, m or s), got '30'",
        ("--older-than", "3 weeks"): "got '3 weeks'",
        ("--keep-last", "-1"): "argument --keep-last: must be >= 0 (got -1)",
        ("--keep-last", "two"): "argument --keep-last: expected an integer >= 0, got 'two'",
    }
    for args, message in cases.items():
        proc = flowrun(project, "prune", *args)
        assert proc.returncode == 2, args
        assert message in proc.stderr, (args, proc.stderr)
    assert run_ids(project) == before


def test_dry_run_lists_then_prune_keeps_the_last_n_per_dag(project: Path) -> None:
    etl = run_ids(project, "--dag", "etl")
    dry = flowrun(project, "prune", "--keep-last", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == (
        "would prune 2 runs in '.flowrun/flowrun.sqlite' (--dry-run: nothing was changed):"
    )
    assert lines[1].split() == ["RUN", "ID", "DAG", "STATUS", "STARTED"]
    assert [line.split()[:3] for line in lines[2:]] == [
        [etl[1], "etl", "SUCCESS"],
        [etl[2], "etl", "SUCCESS"],
    ]
    assert run_ids(project, "--dag", "etl") == etl
    done = flowrun(project, "prune", "--keep-last", "1")
    assert done.stdout == "pruned 2 runs in '.flowrun/flowrun.sqlite' (2 of etl)\n"
    assert run_ids(project, "--dag", "etl") == etl[:1]
    assert len(run_ids(project, "--dag", "sync")) == 1
    again = flowrun(project, "prune", "--keep-last", "1")
    assert (again.returncode, again.stdout) == (
        0,
        "nothing to prune in '.flowrun/flowrun.sqlite'\n",
    )


def test_older_than_and_dag(project: Path) -> None:
    assert flowrun(project, "prune", "--older-than", "1h").stdout.startswith("nothing to prune")
    proc = flowrun(project, "prune", "--older-than", "0s", "--dag", "sync")
    assert proc.stdout == "pruned 1 run in '.flowrun/flowrun.sqlite' (1 of sync)\n"
    assert len(run_ids(project)) == 3
    typo = flowrun(project, "prune", "--keep-last", "0", "--dag", "elt")
    assert typo.returncode == 0
    assert "no runs of DAG 'elt' in '.flowrun/flowrun.sqlite' (DAGs with runs: 'etl'). " in (
        typo.stderr
    )
    assert "Did you mean 'etl'?" in typo.stderr
    assert len(run_ids(project)) == 3


def test_results_only_then_show_results_says_pruned_and_vacuum_shrinks(project: Path) -> None:
    newest, *older = run_ids(project, "--dag", "etl")
    db = project / ".flowrun" / "flowrun.sqlite"
    proc = flowrun(project, "prune", "--keep-last", "1", "--dag", "etl", "--results-only")
    assert proc.stdout == "dropped the results of 2 runs in '.flowrun/flowrun.sqlite' (2 of etl)\n"
    assert run_ids(project, "--dag", "etl") == [newest, *older]  # the runs stay
    shown = flowrun(project, "show", older[0], "--results")
    assert shown.stdout.endswith(
        "results:\n  rows: (pruned: flowrun prune --results-only dropped it)\n"
    )
    report = json.loads(flowrun(project, "show", older[0], "--results", "--json").stdout)
    assert report["tasks"]["rows"]["result"] is None
    assert report["tasks"]["rows"]["result_pruned"] is True
    kept = json.loads(flowrun(project, "show", newest, "--results", "--json").stdout)
    assert len(kept["tasks"]["rows"]["result"]) == 2000
    assert "result_pruned" not in kept["tasks"]["rows"]

    before = on_disk(db)
    vacuum = flowrun(project, "prune", "--vacuum")  # alone: compact only
    assert vacuum.returncode == 0, vacuum.stderr
    assert vacuum.stdout.startswith("vacuumed '.flowrun/flowrun.sqlite': ")
    assert on_disk(db) < before
    dry = flowrun(project, "prune", "--keep-last", "0", "--dry-run", "--vacuum")
    assert dry.stdout.endswith("--dry-run: the database was not vacuumed\n")
    assert len(run_ids(project)) == 4


def test_prune_on_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    proc = flowrun(tmp_path, "prune", "--keep-last", "1", "--vacuum")
    assert proc.returncode == 0
    assert proc.stdout == (
        "nothing to prune in '.flowrun/flowrun.sqlite'\n"
        "nothing to vacuum: no database at '.flowrun/flowrun.sqlite'\n"
    )
    assert not (tmp_path / ".flowrun").exists()


def test_prune_is_in_the_help(tmp_path: Path) -> None:
    top = flowrun(tmp_path, "--help").stdout
    assert "prune      delete old runs (or only their results) from the database" in top
    text = flowrun(tmp_path, "prune", "--help").stdout
    for option in ("--older-than", "--keep-last", "--dag", "--results-only", "--dry-run"):
        assert option in text
    assert "A RUNNING run is never pruned" in " ".join(text.split())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * DAY_S), ("12h", 43200.0), ("90m", 5400.0), ("3600s", 3600.0), ("1.5h", 5400.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "-1d", "30x", "", "1e3s", "3 d", "30D"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected a duration such as 30d"):
        duration(text)


def test_keep_count() -> None:
    assert keep_count("0") == 0
    with pytest.raises(argparse.ArgumentTypeError, match="must be >= 0"):
        keep_count("-3")
