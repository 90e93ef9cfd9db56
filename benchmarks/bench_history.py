#!/usr/bin/env python3
"""History benchmark: how ``flowrun runs`` / ``show`` / ``prune`` hold up on a big database.

Builds a SQLite state database of ``--runs`` runs (10 by default) of one DAG whose first task
returns ``--rows`` small dicts (100k by default, about 6 MB of JSON per run) and whose second
task returns their count; then times the command line on it, each command in a fresh
``python -m flowrun`` process as a user (or cron) runs it:

- ``flowrun runs`` (the table), ``flowrun runs --json`` (and the size of what it prints);
- ``flowrun show RUN`` (the newest run) and, when the command has it, ``show RUN --results``;
- ``flowrun prune --keep-last 2 --vacuum`` (when the command has it) and the file's size
  before and after.

Timed: the whole process (interpreter start and ``import flowrun`` included: that is what a
user waits for). ``python -m flowrun --version`` is timed too, as the floor. Each command runs
``--repeat`` times and the best time is kept. The database is built once, in a temporary
directory (removed afterwards) unless ``--db`` names a file to build (or reuse, if it exists).

Usage:
  python benchmarks/bench_history.py                   # 10 runs x 100k rows, best of 3
  python benchmarks/bench_history.py --runs 3 --rows 1000 --repeat 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import flowrun

DAG = "history"


def build(db: Path, runs: int, rows: int) -> None:
    """``runs`` runs of a two-task DAG whose first task returns ``rows`` dicts."""
    with flowrun.SqliteStateStore(db) as store:
        engine = flowrun.build_default_engine(state_store=store)

        @engine.task(dag=DAG)
        def extract() -> list[dict[str, object]]:
            return [{"id": i, "name": f"row {i}", "amount": i * 0.5} for i in range(rows)]

        @engine.task(dag=DAG, deps=[extract])
        def count(extract: list[dict[str, object]]) -> int:
            return len(extract)

        async def main() -> None:
            async with engine:
                for _ in range(runs):
                    await engine.run_once(DAG)

        asyncio.run(main())


def timed(args: list[str], cwd: Path, repeat: int) -> tuple[float, int, int]:
    """Best wall time of ``python -m flowrun ARGS``, its stdout size in bytes, its exit code."""
    best, size, code = float("inf"), 0, 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRUN_")}
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "flowrun", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            check=False,
        )
        best = min(best, time.perf_counter() - start)
        size, code = len(proc.stdout), proc.returncode
        if code not in (0,):
            sys.stderr.write(proc.stderr.decode(errors="replace"))
    return best, size, code


def has_option(command: str, option: str, cwd: Path) -> bool:
    """Whether this flowrun's ``COMMAND --help`` mentions ``option`` (to measure old code)."""
    proc = subprocess.run(
        [sys.executable, "-m", "flowrun", command, "--help"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0 and option in proc.stdout


def newest_run_any(db: Path) -> str:
    """The newest run id, also with a flowrun whose ``list_runs`` has no ``results=``."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        (run_id,) = conn.execute(
            "SELECT run_id FROM runs ORDER BY created_at DESC, id DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    return str(run_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs in the database (10)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows per run (100000)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N (3)")
    parser.add_argument("--db", type=Path, help="build (or reuse) this database file")
    parser.add_argument("--no-prune", action="store_true", help="leave the database as built")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = opts.db.resolve() if opts.db else Path(tmp) / "history.sqlite"
        cwd = Path(tmp)
        if not db.exists():
            start = time.perf_counter()
            build(db, opts.runs, opts.rows)
            print(
                f"built {db.name}: {opts.runs} runs x {opts.rows} rows in "
                f"{time.perf_counter() - start:.1f}s",
                file=sys.stderr,
            )
        base = ["--db", str(db)]
        run_id = newest_run_any(db)
        mb = db.stat().st_size / 1e6
        print(f"database: {mb:.1f} MB, {opts.runs} runs x {opts.rows} rows")
        print(f"{'command':<42} {'best s':>8} {'stdout':>12}  exit")
        cases: list[tuple[str, list[str]]] = [
            ("flowrun --version (floor)", ["--version"]),
            ("flowrun runs", ["runs", *base]),
            ("flowrun runs --json", ["runs", *base, "--json"]),
            ("flowrun show RUN", ["show", run_id, *base]),
            ("flowrun show RUN --json", ["show", run_id, *base, "--json"]),
        ]
        if has_option("show", "--results", cwd):
            cases.append(
                (
                    "flowrun show RUN --results --json",
                    ["show", run_id, *base, "--json", "--results"],
                )
            )
        for label, args in cases:
            best, size, code = timed(args, cwd, opts.repeat)
            print(f"{label:<42} {best:>8.3f} {size:>12,d}  {code}")
        if not opts.no_prune and has_option("prune", "--vacuum", cwd):
            before = db.stat().st_size
            best, _, code = timed(["prune", *base, "--keep-last", "2", "--vacuum"], cwd, 1)
            after = db.stat().st_size
            print(f"{'flowrun prune --keep-last 2 --vacuum':<42} {best:>8.3f} {'':>12}  {code}")
            print(f"file size: {before / 1e6:.1f} MB before prune, {after / 1e6:.1f} MB after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
