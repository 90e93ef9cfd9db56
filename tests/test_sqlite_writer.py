"""SqliteStateStore's writer thread: the event loop never waits on the disk, a lock held by
another process delays only the writer, and nothing is reported SUCCESS before it is
committed. Real files, real processes for the locks."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import flowrun.state.sqlite as sqlite_store
from flowrun import (
    SqliteStateStore,
    StateDatabaseError,
    TaskSuccessEvent,
    build_default_engine,
    fn_hook,
)
from flowrun.state import RunRecord, TaskRecord

LOCKER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")  # the write lock, until the parent says so
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    print(f"released {time.time()}", flush=True)
    sys.stdin.readline()
    """
)


class Locker:
    """Another process holding the database's write lock until ``release()``."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "locked"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def release(self) -> float:
        """Let the lock go; returns when it did (wall clock)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        word, when = self._line().split()
        assert word == "released"
        return float(when)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def committed_status(db: Path, task: str) -> tuple[str, bool]:
    """(status, has a stored result) of ``task`` as committed in the file."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT status, result FROM tasks WHERE name = ?", (task,)).fetchone()
    finally:
        conn.close()
    return str(row[0]), row[1] is not None


async def test_a_lock_held_by_another_process_delays_the_writer_never_the_loop(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    lateness: list[float] = []
    ticked = asyncio.Event()
    with SqliteStateStore(db, busy_timeout_s=60) as store:
        engine = build_default_engine(state_store=store)

        @engine.task(dag="p")
        async def first() -> int:
            return 1

        @engine.task(dag="p", deps=[first])
        async def second(first: int) -> float:
            return time.time()  # when it started: only once first's success is committed

        @engine.task(dag="p")
        async def ticker() -> int:
            for _ in range(10):  # 3 s of timers while the lock is held
                start = time.monotonic()
                await asyncio.sleep(0.3)
                lateness.append(time.monotonic() - start - 0.3)
            ticked.set()
            return len(lateness)

        locker = Locker(db)
        try:
            run = asyncio.create_task(engine.run_once("p"))
            await asyncio.wait_for(ticked.wait(), 60)
            assert not run.done()  # second waits for a commit the lock holds up
            released = locker.release()
            report = engine.get_run_report(await asyncio.wait_for(run, 60))
        finally:
            locker.close()
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["ticker"]["result"] == 10
    # A loop blocked by the lock would have been ~3 s late; it never waited on the disk.
    assert max(lateness) < 1.0
    assert report["tasks"]["second"]["result"] >= released


async def test_a_lock_past_the_busy_timeout_fails_the_run_naming_the_file_run_and_holder(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db, busy_timeout_s=0.3) as store:
        engine = build_default_engine(state_store=store)
        engine.task("a", dag="p")(lambda: 1)
        engine.task("b", dag="p", deps=["a"])(lambda a: a + 1)
        locker = Locker(db)
        try:
            with pytest.raises(StateDatabaseError) as raised:
                await engine.run_once("p")
            message = str(raised.value)
            assert str(db) in message
            assert f"pid {locker.proc.pid}" in message  # the other process, found in /proc
            match = re.search(r"writing run\(s\) ([0-9a-f]{32})", message)
            assert match is not None, message
            locker.release()
        finally:
            locker.close()
        run = store.load_run(match.group(1))  # written once the lock was free
    assert run.status == "FAILED"
    assert run.tasks["a"].status == "SUCCESS"  # it ran: the lock delayed only the writer
    assert run.tasks["b"].status == "SKIPPED"  # it never started on an uncommitted result


async def test_hooks_and_consumers_see_a_success_only_once_it_is_committed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    seen: dict[str, tuple[str, bool]] = {}

    def on_success(event: TaskSuccessEvent) -> None:
        seen[f"hook:{event.task_name}"] = committed_status(db, event.task_name)

    with SqliteStateStore(db) as store:
        engine = build_default_engine(
            state_store=store, hooks=[fn_hook(on_task_success=on_success)]
        )

        @engine.task(dag="p")
        async def extract() -> list[int]:
            return list(range(1000))

        @engine.task(dag="p", deps=[extract])
        def load(extract: list[int]) -> int:
            seen["consumer:extract"] = committed_status(db, "extract")
            return sum(extract)

        report = engine.get_run_report(await engine.run_once("p"))
    assert report["status"] == "SUCCESS"
    assert seen == {
        "hook:extract": ("SUCCESS", True),
        "consumer:extract": ("SUCCESS", True),
        "hook:load": ("SUCCESS", True),
    }


def test_reads_from_another_thread_see_every_transition_queued_before_them(
    tmp_path: Path,
) -> None:
    with SqliteStateStore(tmp_path / "state.db") as store:
        store.create_run(RunRecord("r", "d", 1.0, tasks={"a": TaskRecord(), "b": TaskRecord()}))
        store.mark_running("r", "a", 1, 2.0)
        store.mark_success("r", "a", 2.0, 3.0, {"rows": [1, 2]}, True)  # queued, not flushed
        store.finish_run("r", "FAILED", 4.0)
        found: dict[str, Any] = {}

        def read() -> None:
            run = store.load_run("r")
            found["a"] = (run.tasks["a"].status, run.tasks["a"].result)
            found["listed"] = [r.run_id for r in store.list_runs(status="FAILED")]

        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
    assert found == {"a": ("SUCCESS", {"rows": [1, 2]}), "listed": ["r"]}


def test_the_callers_commits_go_on_while_the_writer_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic WAL checkpoint runs on the writer's thread but is not a commit: while it
    syncs, ``flush_later`` still commits on the caller's thread at once. (Were it a job, each
    commit asked for meanwhile would go to the writer, which waits on a busy loop for the GIL.)"""
    with SqliteStateStore(tmp_path / "state.db") as store:
        store.create_run(RunRecord("r", "d", 1.0, tasks={"a": TaskRecord(), "b": TaskRecord()}))
        store.flush()
        syncing, release = threading.Event(), threading.Event()
        checkpoints: list[str] = []

        def slow_checkpoint() -> None:
            checkpoints.append(threading.current_thread().name)
            syncing.set()
            assert release.wait(10)

        monkeypatch.setattr(store._db, "checkpoint", slow_checkpoint)
        store._writer.checkpoint_soon()
        assert syncing.wait(10)
        outcomes: list[tuple[object, object]] = []
        store.mark_running("r", "a", 1, 2.0)
        store.mark_success("r", "a", 2.0, 3.0, [1], True)
        assert store.flush_later(lambda error, failures: outcomes.append((error, failures)))
        committed_during_checkpoint = list(outcomes)
        release.set()
        store.flush()
    assert committed_during_checkpoint == [(None, [])]  # on this thread, before it returned
    assert checkpoints
    assert checkpoints[0].startswith("flowrun-sqlite-writer")
    assert committed_status(tmp_path / "state.db", "a") == ("SUCCESS", True)


def test_a_failed_checkpoint_is_left_to_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint that fails does not end the writer: the next one runs, and commits go on."""
    with SqliteStateStore(tmp_path / "state.db") as store:
        store.create_run(RunRecord("r", "d", 1.0, tasks={"a": TaskRecord()}))
        calls = [threading.Event(), threading.Event()]

        def checkpoint() -> None:
            first = not calls[0].is_set()
            calls[0 if first else 1].set()
            if first:
                raise StateDatabaseError("disk I/O error", path=str(store.path))

        monkeypatch.setattr(store._db, "checkpoint", checkpoint)
        store._writer.checkpoint_soon()
        assert calls[0].wait(10)
        store._writer.checkpoint_soon()
        assert calls[1].wait(10)  # the writer lived on
        store.mark_success("r", "a", 2.0, 3.0, [1], True)
        store.flush()
    assert committed_status(tmp_path / "state.db", "a") == ("SUCCESS", True)


def test_close_commits_everything_queued(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = SqliteStateStore(db)
    store.create_run(RunRecord("r", "d", 1.0, tasks={"a": TaskRecord()}))
    store.mark_success("r", "a", 2.0, 3.0, [1], True)
    store.finish_run("r", "SUCCESS", 4.0)
    store.close()  # no flush before: close drains the writer's queue
    assert committed_status(db, "a") == ("SUCCESS", True)
    with SqliteStateStore(db) as again:
        assert again.load_run("r").tasks["a"].result == [1]
    store.mark_running("r", "a", 2, 5.0)
    with pytest.raises(StateDatabaseError, match="is closed"):
        store.flush()


def test_a_result_that_cannot_be_encoded_fails_its_task_in_the_commit(tmp_path: Path) -> None:
    """Encoding happens on the writer thread: the task still fails with the store's message,
    and its row never reads back SUCCESS."""
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        engine = build_default_engine(state_store=store)
        engine.task("odd", dag="p")(lambda: {1, 2})  # JSON has no sets
        engine.task("after", dag="p", deps=["odd"])(lambda odd: 0)
        report = engine.get_run_report(asyncio.run(engine.run_once("p")))
    odd = report["tasks"]["odd"]
    assert odd["status"] == "FAILED"
    assert odd["error"].startswith("ResultEncodingError: task 'odd' returned a set ")
    assert report["tasks"]["after"]["status"] == "SKIPPED"
    assert committed_status(db, "odd") == ("FAILED", False)


async def test_a_big_result_is_encoded_off_the_loop_without_stalling_other_tasks(
    tmp_path: Path,
) -> None:
    """A 12 MB result is encoded by the writer, a slice at a time: another task's 5 ms timers
    stay far closer to on time than the one-piece encoding the loop used to wait for."""
    db = tmp_path / "state.db"

    def rows() -> list[dict[str, Any]]:
        return [{"id": i, "name": f"row {i}", "amount": i * 0.5} for i in range(250_000)]

    started = time.perf_counter()
    one_piece = len(json.dumps(rows()))  # what encoding it on the loop would stall it for
    stall = time.perf_counter() - started
    lateness: list[float] = []
    with SqliteStateStore(db) as store:
        engine = build_default_engine(state_store=store)
        engine.task("big", dag="p")(rows)

        @engine.task(dag="p")
        async def ticker() -> int:
            probe = sqlite3.connect(db)
            try:
                for _ in range(5000):
                    start = time.perf_counter()
                    await asyncio.sleep(0.005)
                    lateness.append(time.perf_counter() - start - 0.005)
                    row = probe.execute("SELECT status FROM tasks WHERE name = 'big'").fetchone()
                    if row is not None and row[0] == "SUCCESS":  # committed: encoding is over
                        return len(lateness)
            finally:
                probe.close()
            raise AssertionError("the big result was never committed")

        report = engine.get_run_report(await engine.run_once("p"))
    assert report["status"] == "SUCCESS"
    assert len(json.dumps(report["tasks"]["big"]["result"])) == one_piece
    assert max(lateness) < stall / 2, (max(lateness), stall)


def test_a_current_database_opens_and_reads_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    """Opening checks the schema in a read transaction and takes the write lock only to
    migrate: `flowrun runs`, the web view or a second store can start during a long write."""
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        store.create_run(RunRecord("r", "d", 1.0, tasks={"a": TaskRecord()}))
        store.finish_run("r", "FAILED", 2.0)
    locker = Locker(db)
    try:
        with SqliteStateStore(db, busy_timeout_s=0.2) as reader:
            assert [r.run_id for r in reader.list_runs()] == ["r"]
            assert reader.load_run("r").status == "FAILED"
    finally:
        locker.close()


async def test_big_results_are_written_a_few_mb_per_transaction_and_all_before_consumers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer splits a group commit of big results into transactions of about
    ``_COMMIT_BYTES`` (so the WAL stays small), and confirms the batch only after the last."""
    monkeypatch.setattr(sqlite_store, "_COMMIT_BYTES", 50_000)
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        engine = build_default_engine(state_store=store, max_parallel=10)
        for i in range(10):
            engine.task(f"big{i}", dag="p")(lambda i=i: str(i) * 20_000)  # 20 KB: the writer's

        def check(parts: dict[str, str]) -> int:
            assert all(committed_status(db, name) == ("SUCCESS", True) for name in parts)
            return sum(map(len, parts.values()))

        names = [f"big{i}" for i in range(10)]  # a consumer of all ten, by parameter name
        namespace: dict[str, Any] = {"check": check}
        exec(f"def total({', '.join(names)}):\n    return check(dict(locals()))", namespace)
        engine.task("total", dag="p", deps=names)(namespace["total"])

        before = store.transactions
        report = engine.get_run_report(await engine.run_once("p"))
        used = store.transactions - before
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["total"]["result"] == 200_000
    assert report["tasks"]["big7"]["result"] == "7" * 20_000
    assert used >= 4  # 200 KB of results in transactions of about 50 KB
