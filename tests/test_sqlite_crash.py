"""Fault injection with real processes on a real database file: SIGKILL mid-run, recovery and
resume from another process, and several processes writing one file at once.

Processes synchronize through their stdout/stdin pipes (``started``, ``ready``, ``done``),
never through sleeps.
"""

from __future__ import annotations

import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from flowrun import SqliteStateStore, build_default_engine

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

WORKER = str(Path(__file__).with_name("_sqlite_worker.py"))
TIMEOUT_S = 60.0


def start_worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen[str]) -> str:
    """The worker's next stdout line; fails (with its stderr) if it exits or stays silent."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(TIMEOUT_S):
            proc.kill()
            pytest.fail(f"worker silent for {TIMEOUT_S}s: {proc.communicate()[1]}")
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"worker exited with {proc.wait()}: {proc.communicate()[1]}")
    return line.strip()


def resume_in_a_new_process(mode: str, db: Path, log: Path, run_id: str) -> str:
    """``_sqlite_worker.py MODE`` resumes ``run_id`` in a fresh process; the new run's id."""
    resumed = subprocess.run(
        [sys.executable, WORKER, mode, str(db), str(log), run_id],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    return resumed.stdout.strip()


def executions(log: Path) -> Counter[str]:
    return Counter(log.read_text(encoding="utf-8").split())


def test_sigkill_mid_run_then_recover_and_resume_from_another_process(tmp_path: Path) -> None:
    db, log = tmp_path / "state.db", tmp_path / "executions.log"
    proc = start_worker("crash", str(db), str(log))
    try:
        word, run_id = read_line(proc).split()
        assert word == "started"

        # While the owner lives, its run is RUNNING on disk and recover() leaves it alone.
        with SqliteStateStore(db, recover=True) as store:
            assert store.recovered == []
            live = build_default_engine(state_store=store).get_run_report(run_id)
        assert live["status"] == "RUNNING"
        assert live["tasks"]["extract"]["result"] == [1, 2, 3]
        assert live["tasks"]["transform"]["status"] == "RUNNING"

        proc.send_signal(signal.SIGKILL)
        assert proc.wait(TIMEOUT_S) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

    with SqliteStateStore(db, recover=True) as store:
        assert store.recovered == [run_id]
        report = build_default_engine(state_store=store).get_run_report(run_id)
    assert report["status"] == "FAILED"
    assert report["finished_at"] is not None
    tasks = report["tasks"]
    assert tasks["extract"]["status"] == tasks["audit"]["status"] == "SUCCESS"
    assert tasks["extract"]["result"] == [1, 2, 3]
    assert tasks["audit"]["result"] == {"rows": 3}
    assert tasks["transform"]["status"] == "FAILED"
    assert tasks["transform"]["error"] == (
        f"ProcessDied: the process running this task (pid {proc.pid} on host "
        f"{socket.gethostname()}) died"
    )
    assert tasks["load"]["status"] == "SKIPPED"
    assert tasks["load"]["error"].startswith("ProcessDied: ")
    assert executions(log) == {"extract": 1, "audit": 1, "transform": 1}

    # A fresh engine in another process, with its tasks registered again, continues the run.
    new_id = resume_in_a_new_process("resume", db, log, run_id)

    with SqliteStateStore(db) as store:
        engine = build_default_engine(state_store=store)
        report = engine.get_run_report(new_id)
        assert store.load_run(new_id).resumed_from == run_id
        history = [r["run_id"] for r in engine.list_runs(dag_name="pipeline")]
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["load"]["result"] == 60
    assert report["tasks"]["extract"]["result"] == [1, 2, 3]
    assert history == [new_id, run_id]
    # Only what had not finished ran again.
    assert executions(log) == {"extract": 1, "audit": 1, "transform": 2, "load": 1}


def test_sigkill_between_transactions_leaves_a_consistent_database(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    proc = start_worker("many", str(db), "1000", "k")
    try:
        assert read_line(proc) == "ready"
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        finished = {}
        for _ in range(12):
            _, run_id, index = read_line(proc).split()
            finished[run_id] = index
        proc.send_signal(signal.SIGKILL)  # somewhere in the middle of later runs
        proc.wait(TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with SqliteStateStore(db, recover=True) as store:
        engine = build_default_engine(state_store=store)
        runs = engine.list_runs(limit=2000)
        assert {r["status"] for r in runs} <= {"SUCCESS", "FAILED"}  # none left RUNNING
        assert len(store.recovered) == sum(r["status"] == "FAILED" for r in runs)
        for run_id, index in finished.items():
            report = engine.get_run_report(run_id)
            assert report["status"] == "SUCCESS"
            assert report["tasks"]["combine"]["result"] == [f"k-{index}", int(index) * 2]


def test_two_processes_fifty_runs_each_on_one_file(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    workers = {tag: start_worker("many", str(db), "50", tag) for tag in ("a", "b")}
    done: dict[str, tuple[str, int]] = {}
    try:
        for proc in workers.values():  # both created or opened the database
            assert read_line(proc) == "ready"
        for proc in workers.values():  # start both at once
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for tag, proc in workers.items():
            out, err = proc.communicate(timeout=TIMEOUT_S)
            assert proc.returncode == 0, err
            assert "locked" not in err
            for line in out.splitlines():
                _, run_id, index = line.split()
                done[run_id] = (tag, int(index))
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    assert len(done) == 100
    with SqliteStateStore(db) as store:
        engine = build_default_engine(state_store=store)
        history = engine.list_runs(dag_name="many", limit=500)
        assert {r["run_id"] for r in history} == set(done)
        for run_id, (tag, number) in done.items():
            report = engine.get_run_report(run_id)
            assert report["status"] == "SUCCESS"
            assert [t["status"] for t in report["tasks"].values()] == ["SUCCESS"] * 4
            assert report["tasks"]["source"]["result"] == {"tag": tag, "index": number}
            assert report["tasks"]["combine"]["result"] == [f"{tag}-{number}", number * 2]


def test_sigkill_during_a_retry_back_off_keeps_the_attempt_and_resume_runs_it(
    tmp_path: Path,
) -> None:
    db, log = tmp_path / "state.db", tmp_path / "executions.log"
    proc = start_worker("backoff", str(db), str(log))
    try:
        word, run_id = read_line(proc).split()  # fetch failed once, waits an hour to retry
        assert word == "backoff"
        with SqliteStateStore(db) as store:  # the back-off as the store has it on disk
            waiting = store.load_run(run_id).tasks["fetch"]
        assert (waiting.status, waiting.attempt) == ("PENDING", 1)
        assert waiting.error == "ConnectionError: the API answered 503"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(TIMEOUT_S) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

    with SqliteStateStore(db, recover=True) as store:
        assert store.recovered == [run_id]
        report = build_default_engine(state_store=store).get_run_report(run_id)
    assert report["status"] == "FAILED"
    fetch, after = report["tasks"]["fetch"], report["tasks"]["store_it"]
    # It ran: FAILED with its attempt's error and traceback, not SKIPPED as never run.
    assert (fetch["status"], fetch["attempt"]) == ("FAILED", 1)
    assert fetch["error"] == (
        "ConnectionError: the API answered 503; then ProcessDied: the process running this run "
        f"(pid {proc.pid} on host {socket.gethostname()}) died while the task waited to retry "
        "(before attempt 2)"
    )
    assert "ConnectionError: the API answered 503" in fetch["traceback"]
    assert fetch["finished_at"] == waiting.finished_at  # the end of attempt 1, not the recovery
    assert after["status"] == "SKIPPED"  # it never ran
    assert after["error"].endswith("died before this task's start was recorded")
    assert report["tasks"]["source"]["status"] == "SUCCESS"

    new_id = resume_in_a_new_process("resume-backoff", db, log, run_id)
    with SqliteStateStore(db) as store:
        again = build_default_engine(state_store=store).get_run_report(new_id)
    assert again["status"] == "SUCCESS"
    assert again["tasks"]["store_it"]["result"] == 42
    assert executions(log) == {"source": 1, "fetch": 2, "store_it": 1}


def test_sigkill_inside_a_group_commit_loses_no_committed_result_and_no_consumer_ran(
    tmp_path: Path,
) -> None:
    """The writer is killed in the middle of the transaction that would make ``audit``
    SUCCESS: that commit is gone whole, what earlier commits wrote stays, and no consumer
    started on audit's result (``transform`` never ran), so resume runs audit again."""
    db, log = tmp_path / "state.db", tmp_path / "executions.log"
    proc = start_worker("commit-kill", str(db), str(log))
    try:
        word, run_id = read_line(proc).split()
        assert word == "in-commit"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(TIMEOUT_S) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert executions(log) == {"extract": 1, "audit": 1}  # transform waited for the commit

    with SqliteStateStore(db, recover=True) as store:
        assert store.recovered == [run_id]
        tasks = build_default_engine(state_store=store).get_run_report(run_id)["tasks"]
    assert tasks["extract"]["status"] == "SUCCESS"
    assert tasks["extract"]["result"] == [1, 2, 3]  # committed before audit started
    assert tasks["audit"]["status"] == "FAILED"  # its success was in the lost transaction
    assert tasks["audit"]["error"].startswith("ProcessDied: ")
    assert tasks["transform"]["status"] == tasks["load"]["status"] == "SKIPPED"

    new_id = resume_in_a_new_process("resume", db, log, run_id)
    with SqliteStateStore(db) as store:
        report = build_default_engine(state_store=store).get_run_report(new_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["load"]["result"] == 60
    assert executions(log) == {"extract": 1, "audit": 2, "transform": 1, "load": 1}
