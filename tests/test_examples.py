"""The example pipelines, each run with ``flowrun run`` in a temporary working directory."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(cwd: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWRUN_", "POLARS_"))}
    env["POLARS_ROWS"] = "20000"
    return subprocess.run(
        [sys.executable, "-m", "flowrun", "run", str(EXAMPLES / name), *args, "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def snapshot(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if "__pycache__" not in p.parts}


def report_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_daily_etl_writes_only_under_the_working_directory(tmp_path: Path) -> None:
    before = snapshot(EXAMPLES)
    report = report_of(run_example(tmp_path, "daily_etl.py"))
    assert snapshot(EXAMPLES) == before  # nothing written into the source tree
    assert report["status"] == "SUCCESS"
    work = tmp_path / ".flowrun" / "daily_etl"
    assert sorted(p.name for p in work.iterdir()) == ["daily_totals.json"]  # inputs cleaned up
    assert report["tasks"]["clean_up"]["result"] == ["orders.csv", "customers.json"]
    totals = json.loads((work / "daily_totals.json").read_text(encoding="utf-8"))
    assert totals["orders"] + totals["rejected"] == 200
    assert totals["rejected"] == 4  # every 50th order has no amount
    assert sum(r["orders"] for r in totals["regions"].values()) == totals["orders"]
    assert report["tasks"]["load"]["result"] == str(
        Path(".flowrun", "daily_etl", "daily_totals.json")
    )
    assert (tmp_path / ".flowrun" / "flowrun.sqlite").is_file()


PIPELINE_FILES = sorted(p.name for p in EXAMPLES.glob("*.py"))


def test_every_example_file_is_covered() -> None:
    assert PIPELINE_FILES == [
        "api_ingest.py",
        "daily_etl.py",
        "polars_pipeline.py",
        "quickstart.py",
        "rates_sync.py",
    ]


@pytest.mark.parametrize("name", PIPELINE_FILES)
def test_every_example_runs_green_as_the_readme_shows(tmp_path: Path, name: str) -> None:
    """``flowrun run FILE --db :memory:``, nothing else: no --context, no set-up."""
    if name == "polars_pipeline.py":
        pytest.importorskip(
            "polars", reason="polars is not installed: pip install -e '.[examples]'"
        )
    report = report_of(run_example(tmp_path, name, "--db", ":memory:"))
    assert report["status"] == "SUCCESS"
    assert report["tasks"]
    assert all(task["status"] == "SUCCESS" for task in report["tasks"].values())
    assert not (tmp_path / ".flowrun" / "flowrun.sqlite").exists()  # :memory: keeps nothing


def test_api_ingest_retries_the_flaky_page_and_loads_sqlite(tmp_path: Path) -> None:
    report = report_of(run_example(tmp_path, "api_ingest.py"))  # its default context serves
    tasks = report["tasks"]
    assert report["status"] == "SUCCESS"
    pages = tasks["fetch_page"]["instances"]  # mapped over the pages the API announced
    assert {key: page["attempt"] for key, page in pages.items()} == {"1": 1, "2": 1, "3": 3, "4": 1}
    assert all(page["queued_s"] >= 0 for page in pages.values())
    assert sum(page["queued_s"] for page in pages.values()) > 0  # a pool of 2 for 4 pages
    assert tasks["load"]["result"]["loaded"] == 100
    db = tmp_path / ".flowrun" / "api_ingest" / "warehouse.sqlite"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT currency) FROM orders").fetchone()
        customer = conn.execute("SELECT customer FROM orders WHERE id = 1").fetchone()[0]
    assert rows == (100, 1)
    assert customer == "Customer 1"


def test_api_ingest_with_an_explicit_context_uses_it_not_the_default(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.py").write_text(
        "from flowrun import RunContext\n\nNOWHERE = RunContext({'base_url': None})\n",
        encoding="utf-8",
    )
    proc = run_example(tmp_path, "api_ingest.py", "--context", "elsewhere:NOWHERE")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    error = report["tasks"]["list_pages"]["error"]
    assert "no API to read from: the run's context holds {'base_url': None}" in error


def test_polars_pipeline(tmp_path: Path) -> None:
    pytest.importorskip("polars", reason="polars is not installed: pip install -e '.[examples]'")
    report = report_of(run_example(tmp_path, "polars_pipeline.py"))
    tasks = report["tasks"]
    assert report["status"] == "SUCCESS"
    # the large frames are never stored
    assert tasks["events"]["result"] is None
    assert tasks["clean"]["result"] is None
    assert len(tasks["daily_revenue"]["result"]) == 30
    assert len(tasks["top_customers"]["result"]) == 10
    out = tmp_path / ".flowrun" / "polars_pipeline"
    assert sorted(p.name for p in out.iterdir()) == ["daily_revenue.csv", "top_customers.csv"]


def test_rates_sync_serves_its_schedule_and_loads_each_ticks_window(tmp_path: Path) -> None:
    """``flowrun serve examples/rates_sync.py``, ticking every half second for two runs: each
    run appends the window of its own tick (``context.scheduled_for``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRUN_")}
    env["RATES_SYNC_EVERY_S"] = "0.5"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowrun",
            "serve",
            str(EXAMPLES / "rates_sync.py"),
            "--max-runs",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.count("SUCCESS") == 2, proc.stdout
    lines = (tmp_path / ".flowrun" / "rates_sync" / "rates.jsonl").read_text().splitlines()
    windows = [json.loads(line)["window"] for line in lines]
    with sqlite3.connect(tmp_path / ".flowrun" / "flowrun.sqlite") as db:
        due = [row[0] for row in db.execute("SELECT scheduled_for FROM runs ORDER BY id")]
    assert windows == due
    assert len(due) == 2
    assert due[1] - due[0] == 0.5
