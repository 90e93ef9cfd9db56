"""The SQLite benchmarks still run (their figures are in docs/performance.md and the team
decides from them): each script on a tiny DAG, checked for its table, never for a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bench(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _row(output: str, label: str) -> list[str]:
    line = next((line for line in output.splitlines() if line.startswith(label)), None)
    assert line is not None, f"no row {label!r} in:\n{output}"
    return line[len(label) :].split()


def test_bench_sqlite_prints_memory_free_commit_and_sqlite_for_each_case() -> None:
    out = _bench("bench_sqlite.py", "--tasks", "60", "--repeat", "1", "--shape", "chain")
    assert "free commit" in out.splitlines()[1]
    for kind in ("async", "sync"):
        memory, free, free_ratio, sqlite, ratio, transactions, *_ = _row(out, f"chain {kind} 60")
        assert all(cell.endswith("s") for cell in (memory, free, sqlite))
        assert free_ratio.endswith("x")
        assert ratio.endswith("x")
        assert int(transactions) >= 60  # a chain commits at least once per link


def test_bench_sqlite_floor_prints_the_transition_log_line() -> None:
    out = _bench("bench_sqlite_floor.py", "--tasks", "40", "--batches", "8", "--repeat", "1")
    for label in ("2 x shaped update, commits of 8 tasks", "transition log: 1 blob per commit"):
        assert _row(out, label)[-1] == "us"


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_bench_sqlite_bound_runs_the_four_stores(kind: str) -> None:
    out = _bench(
        "bench_sqlite_bound.py",
        "--tasks",
        "60",
        "--rounds",
        "1",
        "--shape",
        "fanout",
        "--kind",
        kind,
    )
    header = out.splitlines()[1]
    for store in ("memory", "free commit", "journal bound", "sqlite"):
        assert store in header
    cells = _row(out, f"fanout {kind} 60")
    assert len(cells) == 8  # a time and a ratio for each store
    assert cells[1] == "1.00x"  # memory against itself
