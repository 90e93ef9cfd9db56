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
    assert sorted(p.name for p in work.iterdir()) == [
        "customers.json",
        "daily_totals.json",
        "orders.csv",
    ]
    totals = json.loads((work / "daily_totals.json").read_text(encoding="utf-8"))
    assert totals["orders"] + totals["rejected"] == 200
    assert totals["rejected"] == 4  # every 50th order has no amount
    assert sum(r["orders"] for r in totals["regions"].values()) == totals["orders"]
    assert report["tasks"]["load"]["result"] == str(
        Path(".flowrun", "daily_etl", "daily_totals.json")
    )
    assert (tmp_path / ".flowrun" / "flowrun.sqlite").is_file()


def test_api_ingest_retries_the_flaky_page_and_loads_sqlite(tmp_path: Path) -> None:
    report = report_of(run_example(tmp_path, "api_ingest.py", "--context", "local_api"))
    tasks = report["tasks"]
    assert report["status"] == "SUCCESS"
    assert [tasks[f"fetch_page_{n}"]["attempt"] for n in (1, 2, 3, 4)] == [1, 1, 3, 1]
    assert tasks["load"]["result"]["loaded"] == 100
    db = tmp_path / ".flowrun" / "api_ingest" / "warehouse.sqlite"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT currency) FROM orders").fetchone()
        customer = conn.execute("SELECT customer FROM orders WHERE id = 1").fetchone()[0]
    assert rows == (100, 1)
    assert customer == "Customer 1"


def test_api_ingest_without_its_context_says_how_to_run_it(tmp_path: Path) -> None:
    proc = run_example(tmp_path, "api_ingest.py")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert "run with --context local_api" in report["tasks"]["fetch_page_1"]["error"]


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
