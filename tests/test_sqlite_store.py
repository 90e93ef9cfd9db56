"""SqliteStateStore: what it writes and when, what it refuses to open, serializers, the cache,
crash recovery and migrations. Real files in ``tmp_path``; the engine through its public API.
(Scenarios shared with the in-memory store are in test_store_contract.py; killed processes
in test_sqlite_crash.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flowrun.state._sqlite_schema as sqlite_module
from flowrun import (
    Engine,
    JsonSerializer,
    PickleSerializer,
    ResultSerializer,
    SqliteStateStore,
    StateDatabaseError,
    UnknownRunError,
    build_default_engine,
)
from flowrun.state import RunRecord, TaskRecord
from flowrun.state._sqlite_rows import names_json
from flowrun.state.records import CacheEntry


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


def pipeline(store: Any, results: dict[str, Any] | None = None, **options: Any) -> Engine:
    """DAG ``p``: first -> second -> third; ``results`` overrides what a task returns."""
    engine = build_default_engine(state_store=store)
    chosen = {"first": [1, 2], "second": {"sum": 3}, "third": "done", **(results or {})}

    @engine.task(dag="p", **options)
    def first() -> Any:
        return chosen["first"]

    @engine.task(dag="p", deps=[first])
    def second(first: Any) -> Any:
        return chosen["second"]

    @engine.task(dag="p", deps=[second])
    def third(second: Any) -> Any:
        return chosen["third"]

    return engine


def raw(db: Path) -> sqlite3.Connection:
    """A plain connection, to look at (or damage) the file the way another program would."""
    return sqlite3.connect(db, isolation_level=None)


def new_run(store: SqliteStateStore, run_id: str, tasks: str = "abc") -> None:
    store.create_run(RunRecord(run_id, "d", 1.0, tasks={n: TaskRecord() for n in tasks}))
    store.flush()


# -- the file, the schema and the transactions -----------------------------------------------


def test_a_new_database_is_wal_with_a_schema_version(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    SqliteStateStore(db).close()
    with raw(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (sqlite_module.SCHEMA_VERSION,)
        assert conn.execute("PRAGMA application_id").fetchone() == (0x666C7772,)


async def test_each_run_records_its_owner_process(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        run_id = await pipeline(store).run_once("p")
    with raw(db) as conn:
        owner = conn.execute(
            "SELECT owner_pid, owner_host FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
    assert owner == (os.getpid(), socket.gethostname())


def test_transitions_wait_for_flush_and_go_in_one_transaction(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as writer, SqliteStateStore(db) as reader:
        writer.create_run(RunRecord("r", "d", 1.0, tasks={n: TaskRecord() for n in "abcd"}))
        with pytest.raises(UnknownRunError):
            reader.load_run("r")  # not flushed yet
        before = writer.transactions
        writer.flush()
        assert writer.transactions == before + 1
        writer.mark_running("r", "a", 1, 2.0)
        writer.mark_success("r", "a", 2.0, 3.0, [1], True)
        writer.mark_running("r", "b", 1, 3.0)
        writer.mark_retry("r", "b", 3.0, 4.0, "OSError: flaky", "trace")
        writer.mark_failed("r", "c", 3.0, 4.0, "ValueError: no", None)
        writer.mark_skipped("r", ["d"], "upstream task 'c' failed")
        writer.finish_run("r", "FAILED", 5.0)
        assert {t.status for t in reader.load_run("r").tasks.values()} == {"PENDING"}
        writer.flush()
        assert writer.transactions == before + 2
        writer.flush()  # nothing pending: no transaction
        assert writer.transactions == before + 2
        assert reader.load_run("r") == writer.load_run("r")
        tasks = reader.load_run("r").tasks
    assert (tasks["a"].status, tasks["a"].result, tasks["a"].has_result) == ("SUCCESS", [1], True)
    assert (tasks["b"].status, tasks["b"].error, tasks["b"].traceback) == (
        "PENDING",
        "OSError: flaky",
        "trace",
    )
    assert (tasks["c"].status, tasks["d"].status) == ("FAILED", "SKIPPED")


async def test_a_run_costs_about_one_transaction_per_scheduler_wake_up(tmp_path: Path) -> None:
    class CountingFlushes:
        def __init__(self, inner: SqliteStateStore) -> None:
            self.inner = inner
            self.flushes = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def flush(self) -> None:
            self.flushes += 1
            self.inner.flush()

        def flush_later(self, callback: Any) -> bool:
            self.flushes += 1
            asked: bool = self.inner.flush_later(callback)
            return asked

    with SqliteStateStore(tmp_path / "state.db") as store:
        counting = CountingFlushes(store)
        engine = build_default_engine(state_store=counting, max_parallel=50)

        @engine.task(dag="wide")
        async def root() -> int:
            return 0

        for i in range(300):
            engine.task(name=f"leaf{i}", dag="wide", deps=[root])(_leaf)
        before = store.transactions
        run_id = await engine.run_once("wide")
        used = store.transactions - before
        assert engine.get_run_report(run_id)["status"] == "SUCCESS"
    assert used <= counting.flushes
    assert used < 301 / 10  # 602 row changes, batched by wake-up


async def _leaf(root: int) -> int:
    return root + 1


def test_a_flush_that_cannot_get_the_lock_fails_clearly_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db, busy_timeout_s=0.05) as store:
        blocker = raw(db)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        store.create_run(RunRecord("r", "d", 1.0, tasks={"a": TaskRecord()}))
        with pytest.raises(StateDatabaseError, match="stayed locked by another connection"):
            store.flush()
        blocker.execute("ROLLBACK")
        blocker.close()
        store.mark_running("r", "a", 1, 2.0)
        store.flush()  # everything still pending is written now
    with SqliteStateStore(db) as reopened:
        assert reopened.load_run("r").tasks["a"].status == "RUNNING"


def test_a_store_can_write_runs_it_did_not_create(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as creator, SqliteStateStore(db) as other:
        new_run(creator, "r")
        creator.mark_success("r", "a", 1.0, 2.0, [1], True)
        creator.flush()
        other.finish_run("r", "FAILED", 3.0)
        other.flush()
        with SqliteStateStore(db) as reader:
            run = reader.load_run("r")
    assert (run.status, run.finished_at) == ("FAILED", 3.0)
    assert (run.tasks["a"].has_result, run.tasks["a"].result) == (True, [1])


async def test_everything_reads_back_after_reopening(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        engine = pipeline(store, {"second": None}, retain_result=False)
        ids = [await engine.run_once("p"), await engine.run_subgraph("p", ["second"])]
        ids.append(await engine.resume(ids[0], from_tasks=["third"]))
        before = {run_id: store.load_run(run_id) for run_id in ids}
        listed = store.list_runs()
    with SqliteStateStore(db) as store:
        assert {run_id: store.load_run(run_id) for run_id in ids} == before
        assert store.list_runs() == listed
    first = before[ids[0]].tasks
    assert (first["first"].has_result, first["first"].result) == (False, None)
    assert (first["second"].has_result, first["second"].result) == (True, None)
    assert before[ids[1]].targets == ("second",)
    assert before[ids[2]].resumed_from == ids[0]


async def test_two_stores_in_one_process_on_one_file(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as one, SqliteStateStore(db) as two:
        engines = [pipeline(one), pipeline(two)]
        ids = await asyncio.gather(*(e.run_once("p") for e in engines for _ in range(3)))
        for store in (one, two):
            assert {r.run_id for r in store.list_runs()} == set(ids)
            assert {r.status for r in store.list_runs()} == {"SUCCESS"}


def test_concurrent_opens_of_a_new_file_create_it_once(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_and_write(index: int) -> None:
        try:
            barrier.wait()
            with SqliteStateStore(db) as store:
                new_run(store, f"run{index}")
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with SqliteStateStore(db) as store:
        assert sorted(r.run_id for r in store.list_runs()) == ["run0", "run1", "run2", "run3"]


# -- results and serializers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name", "detail"),
    [
        ({1, 2}, "set", "a set"),
        ((1, 2), "tuple", "a tuple"),
        ({"rows": [(1, "a")]}, "dict", "a tuple (at result['rows'][0])"),
        ({1: "one"}, "dict", "a dict key of type int (1)"),
        (b"raw", "bytes", "a bytes"),
        (datetime.date(2024, 1, 1), "date", "a date"),
        (Point(1, 2), "Point", "a Point"),
    ],
)
async def test_strict_json_refuses_what_it_cannot_store_exactly(
    tmp_path: Path, value: Any, type_name: str, detail: str
) -> None:
    """The default follows json.dumps (tests/test_serializers.py); strict=True is the mode
    that guarantees a resumed task receives exactly what its parent returned."""
    with SqliteStateStore(tmp_path / "state.db", serializer=JsonSerializer(strict=True)) as store:
        engine = pipeline(store, {"second": value})

        @engine.task(dag="p")
        def independent() -> str:
            return "fine"

        report = engine.get_run_report(await engine.run_once("p"))
        error = report["tasks"]["second"]["error"]
        assert report["tasks"]["second"]["status"] == "FAILED"
        assert error.startswith(f"ResultEncodingError: task 'second' returned a {type_name} ")
        assert f"JSON cannot store {detail} exactly" in error
        assert "serializer=PickleSerializer()" in error
        assert "retain_result=False" in error
        assert report["tasks"]["third"]["status"] == "SKIPPED"
        assert report["tasks"]["first"]["result"] == [1, 2]
        assert report["tasks"]["independent"]["result"] == "fine"
        assert store.load_run(report["run_id"]).tasks["second"].has_result is False
        # the engine and the store carry on
        again = pipeline(store)
        assert again.get_run_report(await again.run_once("p"))["status"] == "SUCCESS"


async def test_json_stores_nan_and_unicode(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        run_id = await pipeline(store, {"second": {"x": [math.nan, "é✓", 1e300]}}).run_once("p")
    with SqliteStateStore(db) as store:
        value = store.load_run(run_id).tasks["second"].result
    assert math.isnan(value["x"][0])
    assert value["x"][1:] == ["é✓", 1e300]


async def test_pickle_stores_what_json_cannot_and_resume_uses_it(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    value = {"when": datetime.date(2024, 1, 1), "pair": (1, 2), "tags": {"a"}, "p": Point(1, 2)}
    with SqliteStateStore(db, serializer=PickleSerializer()) as store:
        engine = pipeline(store, {"first": value, "third": RuntimeError})

        @engine.task(dag="p", deps=["third"])
        def fourth(third: Any) -> None:
            raise third("once")

        run_id = await engine.run_once("p")
    with SqliteStateStore(db, serializer=PickleSerializer()) as store:
        assert store.load_run(run_id).tasks["first"].result == value
        engine = pipeline(store, {"first": value, "third": ValueError})
        seen: list[Any] = []

        @engine.task(name="fourth", dag="p", deps=["first", "third"])
        def fourth_again(first: Any, third: Any) -> None:
            seen.append(first)

        report = engine.get_run_report(await engine.resume(run_id))
    assert report["status"] == "SUCCESS"
    assert seen == [value]  # first was not re-run: its pickled result was handed over


async def test_pickle_refuses_unpicklable_results_clearly(tmp_path: Path) -> None:
    with SqliteStateStore(tmp_path / "state.db", serializer=PickleSerializer()) as store:
        engine = pipeline(store, {"third": threading.Lock()})
        report = engine.get_run_report(await engine.run_once("p"))
    error = report["tasks"]["third"]["error"]
    assert error.startswith("ResultEncodingError: task 'third' returned a lock ")
    assert "pickle cannot encode it" in error


async def test_results_not_retained_are_never_encoded_nor_written(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        engine = pipeline(store, {"first": {1, 2}}, retain_result=False)
        run_id = await engine.run_once("p")
        assert engine.get_run_report(run_id)["status"] == "SUCCESS"
    with raw(db) as conn:
        stored = conn.execute(
            "SELECT t.result FROM tasks t JOIN runs r ON t.run = r.id "
            "WHERE r.run_id = ? AND t.name = 'first'",
            (run_id,),
        ).fetchone()
    assert stored == (None,)


async def test_reading_results_with_another_serializer_fails_clearly(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db, serializer=PickleSerializer()) as store:
        run_id = await pipeline(store).run_once("p")
    with SqliteStateStore(db) as store, pytest.raises(StateDatabaseError) as caught:
        store.load_run(run_id)
    assert str(caught.value) == (
        f"flowrun state database '{db}' holds the result of task 'first' of run {run_id} in "
        "the 'pickle' format, but this store's serializer is 'json'; open the database with "
        "serializer=PickleSerializer() to read it"
    )


async def test_any_object_with_serialize_and_deserialize_is_a_serializer(tmp_path: Path) -> None:
    class Upper:  # duck-typed: no base class, no name
        def serialize(self, obj: Any) -> bytes:
            return JsonSerializer().serialize(obj).upper()

        def deserialize(self, data: bytes) -> Any:
            return JsonSerializer().deserialize(data.lower())

    assert isinstance(Upper(), ResultSerializer)
    assert not isinstance(object(), ResultSerializer)
    # typed as a ResultSerializer (the documented way is to subclass it); works at run time
    with SqliteStateStore(tmp_path / "state.db", serializer=Upper()) as store:  # type: ignore[arg-type]
        run_id = await pipeline(store).run_once("p")
        assert store.load_run(run_id).tasks["third"].result == "done"
    with raw(tmp_path / "state.db") as conn:
        formats = conn.execute("SELECT DISTINCT result_format FROM tasks WHERE result NOT NULL")
        assert formats.fetchall() == [(Upper.__qualname__,)]  # the default name
    with pytest.raises(TypeError, match="serializer must be a ResultSerializer"):
        SqliteStateStore(tmp_path / "other.db", serializer=object())  # type: ignore[arg-type]


async def test_a_serializer_that_returns_no_bytes_fails_the_task(tmp_path: Path) -> None:
    class Text(ResultSerializer):
        def serialize(self, obj: Any) -> bytes:
            return str(obj)  # type: ignore[return-value]

        def deserialize(self, data: bytes) -> Any:
            return data

    with SqliteStateStore(tmp_path / "state.db", serializer=Text()) as store:
        engine = pipeline(store)
        report = engine.get_run_report(await engine.run_once("p"))
    assert report["tasks"]["first"]["error"].endswith(
        "returned str, not bytes; fix its serialize()"
    )


def test_json_names_a_circular_reference() -> None:
    looped: list[Any] = [1]
    looped.append({"back": looped})
    with pytest.raises(TypeError, match=r"a circular reference \(at result\[1\]\['back'\]\)"):
        JsonSerializer().serialize(looped)
    assert repr(JsonSerializer()) == "JsonSerializer()"
    assert repr(PickleSerializer()) == "PickleSerializer()"


# -- the cache ------------------------------------------------------------------------------


def test_without_ttl_runs_of_other_stores_are_always_read_from_disk(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as writer, SqliteStateStore(db) as reader:
        new_run(writer, "r")
        assert reader.load_run("r").tasks["a"].status == "PENDING"
        writer.mark_running("r", "a", 1, 2.0)
        writer.flush()
        assert reader.load_run("r").tasks["a"].status == "RUNNING"
        assert reader.list_runs()[0].tasks["a"].status == "RUNNING"


def test_without_ttl_own_runs_are_served_from_the_write_through_cache(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as own, SqliteStateStore(db, cache_ttl_s=0) as own_no_cache:
        for store in (own, own_no_cache):
            run_id = f"run-{store.cache_ttl_s}"
            new_run(store, run_id)
            store.finish_run(run_id, "FAILED", 2.0)
            store.flush()
            with raw(db) as conn:  # another program edits the file behind the stores' back
                conn.execute("UPDATE runs SET dag_name = 'edited' WHERE run_id = ?", (run_id,))
        assert own.load_run("run-None").dag_name == "d"  # this store's own write, cached
        assert own_no_cache.load_run("run-0").dag_name == "edited"  # cache_ttl_s=0: re-read


def test_with_a_ttl_any_run_read_is_cached_that_long(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with (
        SqliteStateStore(db) as writer,
        SqliteStateStore(db, cache_ttl_s=3600) as cached,
        SqliteStateStore(db, cache_ttl_s=0) as fresh,
    ):
        new_run(writer, "r")
        assert cached.load_run("r").tasks["a"].status == "PENDING"
        writer.mark_running("r", "a", 1, 2.0)
        writer.flush()
        assert cached.load_run("r").tasks["a"].status == "PENDING"  # up to an hour old
        assert cached.list_runs()[0].tasks["a"].status == "PENDING"
        assert fresh.load_run("r").tasks["a"].status == "RUNNING"


def test_a_cached_run_is_read_again_once_its_ttl_has_passed(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as writer, SqliteStateStore(db, cache_ttl_s=0.01) as reader:
        new_run(writer, "r")
        assert reader.load_run("r").tasks["a"].status == "PENDING"
        writer.mark_running("r", "a", 1, 2.0)
        writer.flush()
        deadline = time.monotonic() + 5
        while reader.load_run("r").tasks["a"].status == "PENDING":  # until the 10 ms expire
            assert time.monotonic() < deadline, "the cached copy never expired"
            time.sleep(0.002)


def test_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'cache_ttl_s' must be a number of seconds >= 0"):
        SqliteStateStore(tmp_path / "a.db", cache_ttl_s=-1)
    with pytest.raises(ValueError, match="'busy_timeout_s' must be"):
        SqliteStateStore(tmp_path / "a.db", busy_timeout_s=True)
    with pytest.raises(ValueError, match="'start_delay_s' must be a number of seconds >= 0"):
        SqliteStateStore(tmp_path / "a.db", start_delay_s=-0.5)
    with SqliteStateStore(tmp_path / "a.db") as store:
        new_run(store, "r")
        with pytest.raises(ValueError, match="run id 'r' already exists"):
            new_run(store, "r")


# -- files it refuses to open -----------------------------------------------------------------


def assert_refused(path: Path, *fragments: str) -> None:
    with pytest.raises(StateDatabaseError) as caught:
        SqliteStateStore(path)
    message = str(caught.value)
    assert message.startswith(f"flowrun state database '{path}' ")
    for fragment in fragments:
        assert fragment in message


def test_random_bytes_are_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    content = os.urandom(8192)
    db.write_bytes(content)
    assert_refused(db, "is not a SQLite database", "left it untouched", "does not exist yet")
    assert db.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def test_a_sqlite_header_over_garbage_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    content = b"SQLite format 3\x00" + os.urandom(8192)
    db.write_bytes(content)
    assert_refused(db, "is not a usable SQLite database", "left it untouched")
    assert db.read_bytes() == content


def test_a_database_of_another_application_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with raw(db) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
    conn.close()
    content = db.read_bytes()
    assert_refused(db, "a SQLite database of another application", "tables: users")
    assert db.read_bytes() == content


async def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        run_id = await pipeline(store).run_once("p")
    conn = raw(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    content = db.read_bytes()
    assert_refused(db, "written by a newer flowrun (schema version 99", "upgrade flowrun")
    assert db.read_bytes() == content
    conn = raw(db)
    conn.execute(f"PRAGMA user_version = {sqlite_module.SCHEMA_VERSION}")
    conn.close()
    with SqliteStateStore(db) as store:  # the data is all there
        assert store.load_run(run_id).status == "SUCCESS"


def test_an_empty_file_becomes_a_database(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.touch()
    with SqliteStateStore(db) as store:
        new_run(store, "r")
        assert store.load_run("r").dag_name == "d"


def test_paths_that_cannot_be_a_database_file(tmp_path: Path) -> None:
    assert_refused(tmp_path, "is a directory", "flowrun.db")
    assert_refused(tmp_path / "missing" / "state.db", "does not exist; create the directory")
    (tmp_path / "file").write_text("x")
    assert_refused(tmp_path / "file" / "state.db", "is not a directory")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="flowrun-test-"))
    path.chmod(0o755)
    yield path
    for sub in path.iterdir():
        sub.chmod(0o755)
    shutil.rmtree(path)


def open_without_write_permission(path: Path) -> str:
    """Open the store as a process without write permission there: an unprivileged user when
    the tests run as root (file modes do not stop root), this process otherwise. Returns the
    error message, or ``"opened"``."""
    if os.geteuid() != 0:
        try:
            SqliteStateStore(path).close()
        except StateDatabaseError as error:
            return str(error)
        return "opened"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)  # nobody
            try:
                SqliteStateStore(path).close()
                message = "opened"
            except StateDatabaseError as error:
                message = str(error)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        message = fh.read().decode()
    os.waitpid(pid, 0)
    return message


async def test_a_read_only_directory_is_refused_at_open(shared_dir: Path) -> None:
    readonly = shared_dir / "readonly"
    readonly.mkdir()
    existing = readonly / "existing.db"
    with SqliteStateStore(existing) as store:
        run_id = await pipeline(store).run_once("p")
    existing.chmod(0o444)
    readonly.chmod(0o555)

    message = open_without_write_permission(readonly / "new.db")
    assert message.startswith(f"flowrun state database '{readonly / 'new.db'}' is not writable")
    assert "must be able to write the file and its directory" in message
    assert not (readonly / "new.db").exists()

    message = open_without_write_permission(existing)
    assert message.startswith(f"flowrun state database '{existing}' is not writable")
    secret = shared_dir / "secret.db"
    secret.touch(mode=0o600)
    message = open_without_write_permission(secret)
    assert message.startswith(f"flowrun state database '{secret}' cannot be read (")
    assert "fix its permissions or choose another path" in message
    readonly.chmod(0o755)
    existing.chmod(0o644)
    with SqliteStateStore(existing) as store:
        assert store.load_run(run_id).status == "SUCCESS"


# -- crash recovery -----------------------------------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_recover_fails_only_runs_of_dead_processes_on_this_host(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        for run_id in ("dead", "elsewhere", "reused-pid", "alive"):
            new_run(store, run_id)
            store.mark_running(run_id, "a", 1, 2.0)
            store.mark_success(run_id, "a", 2.0, 3.0, {"kept": True}, True)
            store.mark_running(run_id, "b", 1, 3.0)
        store.flush()
        pid, host = dead_pid(), socket.gethostname()
        with raw(db) as conn:
            conn.execute("UPDATE runs SET owner_pid = ? WHERE run_id = 'dead'", (pid,))
            conn.execute(
                "UPDATE runs SET owner_pid = ?, owner_host = 'elsewhere.example' "
                "WHERE run_id = 'elsewhere'",
                (pid,),
            )
            # our pid, but another process start: the pid was reused (pid 1 in containers)
            conn.execute("UPDATE runs SET owner_started = 'x:1' WHERE run_id = 'reused-pid'")

        with SqliteStateStore(db, recover=True) as recovering:
            assert recovering.recovered == ["dead", "reused-pid"]
            assert recovering.recover() == []  # already done
            dead = recovering.load_run("dead")
            statuses = {r: recovering.load_run(r).status for r in ("elsewhere", "alive")}
    assert statuses == {"elsewhere": "RUNNING", "alive": "RUNNING"}
    assert dead.status == "FAILED"
    assert dead.finished_at is not None
    a, b, c = dead.tasks["a"], dead.tasks["b"], dead.tasks["c"]
    assert (a.status, a.result, a.finished_at) == ("SUCCESS", {"kept": True}, 3.0)
    assert b.status == "FAILED"
    assert b.error == f"ProcessDied: the process running this task (pid {pid} on host {host}) died"
    assert c.status == "SKIPPED"
    assert c.error == (
        f"ProcessDied: the process running this run (pid {pid} on host {host}) died before "
        "this task's start was recorded"
    )


# -- migrations ---------------------------------------------------------------------------------


async def test_an_older_schema_is_migrated_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        run_id = await pipeline(store).run_once("p")

    def add_note(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN note TEXT")

    upgraded = sqlite_module.SCHEMA_VERSION + 1
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", upgraded)
    monkeypatch.setitem(sqlite_module.MIGRATIONS, upgraded, add_note)
    with SqliteStateStore(db) as store:
        assert store.load_run(run_id).status == "SUCCESS"
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (upgraded,)
        assert "note" in [row[1] for row in conn.execute("PRAGMA table_info(runs)")]


def write_v1_database(db: Path) -> None:
    """A file as flowrun's schema version 1 wrote it (the DDL of ``_create_v1``, verbatim):
    run ``old`` of DAG ``p`` (first -> second -> third) that failed at ``third``."""
    with raw(db) as conn:
        conn.execute(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, "
            "dag_name TEXT NOT NULL, created_at REAL NOT NULL, status TEXT NOT NULL, "
            "finished_at REAL, targets TEXT, resumed_from TEXT, owner_pid INTEGER NOT NULL, "
            "owner_started TEXT, owner_host TEXT NOT NULL)"
        )
        conn.execute("CREATE INDEX runs_newest ON runs (created_at, id)")
        conn.execute("CREATE INDEX runs_dag_newest ON runs (dag_name, created_at, id)")
        conn.execute(
            "CREATE TABLE tasks (run INTEGER NOT NULL REFERENCES runs (id), "
            "position INTEGER NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, "
            "attempt INTEGER NOT NULL, started_at REAL, finished_at REAL, error TEXT, "
            "traceback TEXT, result BLOB, result_format TEXT, PRIMARY KEY (run, position))"
        )
        conn.execute(
            "INSERT INTO runs VALUES (1, 'old', 'p', 10.0, 'FAILED', 12.0, NULL, NULL, 1, "
            "NULL, 'elsewhere')"
        )
        conn.executemany(
            "INSERT INTO tasks VALUES (1, ?, ?, ?, 1, 10.0, 11.0, ?, NULL, ?, ?)",
            [
                (0, "first", "SUCCESS", None, b"[1, 2]", "json"),
                (1, "second", "SUCCESS", None, b'{"sum": 3}', "json"),
                (2, "third", "FAILED", "RuntimeError: bad data", None, None),
            ],
        )
        conn.execute(f"PRAGMA application_id = {sqlite_module.APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 1")


async def test_a_version_1_database_gains_task_deps_and_keeps_its_runs(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    write_v1_database(db)
    with SqliteStateStore(db) as store:
        old = store.load_run("old")
        assert (old.dag_name, old.status, old.created_at) == ("p", "FAILED", 10.0)
        assert {n: (t.status, t.result, t.deps) for n, t in old.tasks.items()} == {
            "first": ("SUCCESS", [1, 2], ()),  # NULL deps read back as ()
            "second": ("SUCCESS", {"sum": 3}, ()),
            "third": ("FAILED", None, ()),
        }
        assert [r.run_id for r in store.list_runs()] == ["old"]
        assert "-->" not in Engine(state_store=store).display_run("old")  # no edges known

        engine = pipeline(store)
        new_id = await engine.resume("old")  # an old run still resumes; the new run has deps
        new = store.load_run(new_id)
        assert new.status == "SUCCESS"
        assert new.tasks["second"].started_at == 10.0  # copied from the old run...
        assert {n: t.deps for n, t in new.tasks.items()} == {  # ...with its edges
            "first": (),
            "second": ("first",),
            "third": ("second",),
        }
        assert all(t.deps == () for t in store.load_run("old").tasks.values())
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (sqlite_module.SCHEMA_VERSION,)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tasks)")]
        assert "deps" in columns
        assert "queued_s" in columns
        assert "cached_from" in columns
        rows = conn.execute("SELECT name, deps FROM tasks ORDER BY run, position").fetchall()
    assert rows == [
        ("first", None),
        ("second", None),
        ("third", None),
        ("first", "[]"),
        ("second", '["first"]'),
        ("third", '["second"]'),
    ]
    with SqliteStateStore(db) as store:  # and a new process reads both back
        assert store.load_run(new_id).tasks["third"].deps == ("second",)
        assert store.load_run("old").tasks["third"].deps == ()


def write_v3_database(db: Path, version: int = 3) -> None:
    """``write_v1_database`` upgraded the way flowrun's steps 2 and 3 (and 4, for
    ``version=4``) did: task ``deps`` and ``queued_s`` (then ``map_of`` and ``mapped``)."""
    write_v1_database(db)
    with raw(db) as conn:
        conn.execute("ALTER TABLE tasks ADD COLUMN deps TEXT")
        conn.execute("ALTER TABLE tasks ADD COLUMN queued_s REAL")
        conn.execute("UPDATE tasks SET deps = '[\"first\"]', queued_s = 1.5 WHERE position = 1")
        if version >= 4:
            conn.execute("ALTER TABLE tasks ADD COLUMN map_of TEXT")
            conn.execute("ALTER TABLE tasks ADD COLUMN mapped INTEGER")
        conn.execute(f"PRAGMA user_version = {version}")


@pytest.mark.parametrize("version", [3, 4])
def test_an_older_database_gains_the_cache_and_keeps_its_runs(tmp_path: Path, version: int) -> None:
    db = tmp_path / "state.db"
    write_v3_database(db, version)
    with SqliteStateStore(db) as store:
        old = store.load_run("old")
        assert old.status == "FAILED"
        second = old.tasks["second"]
        assert (second.result, second.deps, second.queued_s) == ({"sum": 3}, ("first",), 1.5)
        assert all(t.cached_from is None for t in old.tasks.values())  # NULL in old rows

        store.create_run(RunRecord("new", "p", 20.0, tasks={"first": TaskRecord()}))
        store.mark_cached("new", "first", 21.0, [1, 2], True, cached_from="old")
        store.cache_put(CacheEntry("k", "p", "first", "old", 11.0, None, [1, 2]))
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (sqlite_module.SCHEMA_VERSION,)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tasks)")]
        assert columns[-3:] == ["cached_from", "warnings", "attempts"]  # versions 5 and 7
        cache_columns = [row[1] for row in conn.execute("PRAGMA table_info(cache)")]
        assert cache_columns == [
            "key",
            "dag",
            "task",
            "run_id",
            "created_at",
            "expires_at",
            "result",
            "result_format",
        ]
        indexes = conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'cache'")
        assert "cache_dag_task" in [name for (name,) in indexes]
        assert conn.execute("SELECT key, run_id, result FROM cache").fetchall() == [
            ("k", "old", b"[1, 2]")
        ]
        rows = conn.execute("SELECT name, cached_from FROM tasks ORDER BY run, position")
        assert rows.fetchall() == [
            ("first", None),
            ("second", None),
            ("third", None),
            ("first", "old"),
        ]
    with SqliteStateStore(db) as store:  # reopened: nothing to migrate, all there
        first = store.load_run("new").tasks["first"]
        assert (first.status, first.attempt, first.result, first.cached_from) == (
            "SUCCESS",
            0,
            [1, 2],
            "old",
        )
        assert store.cache_get("k", 12.0) == CacheEntry(
            "k", "p", "first", "old", 11.0, None, [1, 2]
        )
        assert [r.run_id for r in store.list_runs()] == ["new", "old"]


def test_a_failing_migration_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        new_run(store, "r")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN note TEXT")
        raise RuntimeError("bug in the next migration")

    current = sqlite_module.SCHEMA_VERSION
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(sqlite_module.MIGRATIONS, current + 1, broken)
    with pytest.raises(RuntimeError, match="bug in the next migration"):
        SqliteStateStore(db)
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (current,)
        assert "note" not in [row[1] for row in conn.execute("PRAGMA table_info(runs)")]


# -- lifecycle --------------------------------------------------------------------------------


def test_close_flushes_and_a_closed_store_says_so(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = SqliteStateStore(db)
    new_run(store, "r")
    store.finish_run("r", "FAILED", 9.0)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StateDatabaseError, match="is closed"):
        store.load_run("other")
    with SqliteStateStore(db) as reopened:
        assert reopened.load_run("r").finished_at == 9.0
    assert "SqliteStateStore(" in repr(reopened)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_store_cannot_be_used_across_fork(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            store.load_run("r")
        except StateDatabaseError as error:
            code = 0 if "open a new SqliteStateStore in each process" in str(error) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    store.close()
    assert os.waitstatus_to_exitcode(status) == 0


async def test_json_results_read_with_any_serializer(tmp_path: Path) -> None:
    """JSON is safe to load, so a pickle store reads the JSON runs of the same database: one
    history may hold both, and `list_runs` works with either serializer for JSON-only runs."""
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        json_run = await pipeline(store).run_once("p")
    with SqliteStateStore(db, serializer=PickleSerializer()) as store:
        pickle_run = await pipeline(store).run_once("p")
        runs = {r.run_id: r for r in store.list_runs()}
        assert set(runs) == {json_run, pickle_run}
        assert runs[json_run].tasks["first"].result == runs[pickle_run].tasks["first"].result
    with SqliteStateStore(db) as store:
        summaries = {r.run_id: r for r in store.list_runs(results=False)}  # any format lists
        assert summaries[pickle_run].tasks["first"].result_format == "pickle"
        assert summaries[json_run].tasks["first"].result_format == "json"
        assert summaries[pickle_run].tasks["first"].has_result
        with pytest.raises(StateDatabaseError, match="'pickle' format"):
            store.list_runs()  # but a JSON store never unpickles


# -- what another process sees while a run works, and failures of the store itself -----------


async def test_the_first_tasks_are_running_on_disk_before_anything_finishes(
    tmp_path: Path,
) -> None:
    """A crash while the very first task runs must find it RUNNING (so recover fails it as
    'process died'), and another process watching the file must see it running."""
    db = tmp_path / "state.db"
    started = threading.Event()
    release = threading.Event()
    with SqliteStateStore(db) as store:
        engine = build_default_engine(state_store=store)

        @engine.task(dag="p")
        def first() -> int:
            started.set()
            release.wait(10)
            return 1

        run = asyncio.ensure_future(engine.run_once("p"))
        assert await asyncio.to_thread(started.wait, 10)
        with SqliteStateStore(db) as watcher:
            (seen,) = watcher.list_runs()
            assert (seen.status, seen.tasks["first"].status) == ("RUNNING", "RUNNING")
            assert seen.tasks["first"].attempt == 1
        release.set()
        run_id = await run
        engine.close()
        assert store.load_run(run_id).status == "SUCCESS"


async def test_with_a_start_delay_a_running_task_is_on_disk_while_it_runs(
    tmp_path: Path,
) -> None:
    """With ``start_delay_s`` a task's start waits for that long for its commit, not for the
    task to finish: another process watching the file sees it running while it runs."""
    db = tmp_path / "state.db"
    started = threading.Event()
    release = threading.Event()
    with SqliteStateStore(db, start_delay_s=0.002) as store:
        engine = build_default_engine(state_store=store)

        @engine.task(dag="p")
        def first() -> int:
            started.set()
            release.wait(30)
            return 1

        run = asyncio.ensure_future(engine.run_once("p"))
        assert await asyncio.to_thread(started.wait, 10)
        with SqliteStateStore(db) as watcher:
            deadline = time.monotonic() + 10
            seen = None
            while time.monotonic() < deadline:  # the delayed commit, not one of ours
                runs = await asyncio.to_thread(watcher.list_runs)
                if runs and runs[0].tasks["first"].status == "RUNNING":
                    seen = runs[0]
                    break
            assert seen is not None, "the start was never written while the task ran"
            assert seen.status == "RUNNING"
            assert seen.tasks["first"].attempt == 1
            assert not run.done()  # nothing had finished
        release.set()
        run_id = await run
        engine.close()
        assert store.load_run(run_id).status == "SUCCESS"


async def test_a_run_the_store_could_not_create_is_never_left_running(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db, busy_timeout_s=0.1) as store:
        engine = build_default_engine(state_store=store)
        engine.task("a", dag="p")(lambda: 1)
        blocker = raw(db)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the timeout
        try:
            with pytest.raises(StateDatabaseError, match="stayed locked") as raised:
                await engine.run_once("p")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        second = await engine.run_once("p")  # its commit also writes what the failed one left
        runs = {r.run_id: r for r in store.list_runs()}
    assert runs[second].status == "SUCCESS"
    (failed,) = [r for rid, r in runs.items() if rid != second]
    assert f"writing run(s) {failed.run_id}" in str(raised.value)  # names the run
    assert failed.status == "FAILED"
    assert failed.finished_at is not None
    # The lock delayed only the writer: the task ran, and its result was kept once it was free.
    assert failed.tasks["a"].status == "SUCCESS"
    assert failed.tasks["a"].result == 1


async def test_a_status_filter_never_lists_a_stale_cached_run(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db, cache_ttl_s=100) as reader, SqliteStateStore(db) as writer:
        new_run(writer, "r", tasks="a")
        assert reader.load_run("r").status == "RUNNING"  # now cached for 100 s
        writer.mark_success("r", "a", 1.0, 2.0, 1, True)
        writer.finish_run("r", "SUCCESS", 3.0)
        writer.flush()
        assert reader.load_run("r").status == "RUNNING"  # stale within the TTL, as documented
        (listed,) = reader.list_runs(status="SUCCESS")
        assert listed.status == "SUCCESS"


def test_pending_transitions_are_written_at_exit_without_close(tmp_path: Path) -> None:
    """A process that ends without close() (e.g. after a run aborted on a long lock) still
    writes what its store holds; a forked child never touches the parent's connection."""
    db = tmp_path / "state.db"
    script = (
        "import os, sys\n"
        "from flowrun import SqliteStateStore\n"
        "from flowrun.state import RunRecord, TaskRecord\n"
        "store = SqliteStateStore(sys.argv[1])\n"
        "store.create_run(RunRecord('r', 'd', 1.0, tasks={'a': TaskRecord()}))\n"
        "store.flush()\n"
        "store.mark_success('r', 'a', 1.0, 2.0, [1], True)\n"
        "store.finish_run('r', 'SUCCESS', 3.0)\n"
        "if os.fork() == 0:\n"
        "    sys.exit(0)  # the child runs the exit handlers too: it must write nothing\n"
        "os.wait()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(db)], check=True, timeout=60)
    with SqliteStateStore(db) as store:
        run = store.load_run("r")
    assert (run.status, run.tasks["a"].status, run.tasks["a"].result) == ("SUCCESS", "SUCCESS", [1])


def test_task_warnings_are_kept_with_the_task_and_read_back_by_another_store(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        new_run(store, "r", tasks="ab")
        store.mark_running("r", "a", 1, 2.0)
        store.add_warning("r", "a", "blocked the event loop for 1.0 s")
        store.mark_success("r", "a", 2.0, 3.0, 1, True)
        store.add_warning("r", "a", "and again")  # after it is final: its status stays
        store.finish_run("r", "SUCCESS", 4.0)
    with SqliteStateStore(db) as reader:
        run = reader.load_run("r")
        summary = reader.load_run("r", results=False)
    assert run.tasks["a"].status == "SUCCESS"
    assert run.tasks["a"].warnings == ("blocked the event loop for 1.0 s", "and again")
    assert summary.tasks["a"].warnings == run.tasks["a"].warnings
    assert run.tasks["b"].warnings == ()
    with raw(db) as conn:
        stored = conn.execute("SELECT name, warnings FROM tasks ORDER BY position").fetchall()
    assert stored == [("a", '["blocked the event loop for 1.0 s", "and again"]'), ("b", None)]


@pytest.mark.parametrize(
    "names",
    [(), ("a",), ("t1", "t2", "t3"), ('quo"te', "back\\slash", "new\nline", "é", "😀", "\x00")],
)
def test_names_json_is_json_dumps(names: tuple[str, ...]) -> None:
    assert names_json(names) == json.dumps(names)
    assert tuple(json.loads(names_json(names))) == names


def test_every_shape_of_task_update_writes_the_whole_row(tmp_path: Path) -> None:
    """The store picks a statement by the row's shape (a start, an end with a result, each
    with or without a wait for slots, anything else): every column is written, whichever."""
    db = tmp_path / "state.db"
    names = ["start", "queued", "end", "queued_end", "big", "no_result", "retried", "failed"]
    columns = (
        "name, status, attempt, started_at, finished_at, error, typeof(result), "
        "length(result), result_format, queued_s, attempts IS NOT NULL"
    )

    def committed() -> dict[str, tuple[Any, ...]]:
        conn = sqlite3.connect(db)
        try:
            rows = conn.execute(f"SELECT {columns} FROM tasks ORDER BY position").fetchall()
        finally:
            conn.close()
        return {row[0]: row[1:] for row in rows}

    with SqliteStateStore(db) as store:
        store.create_run(RunRecord("r", "d", 1.0, tasks={n: TaskRecord() for n in names}))
        store.flush()
        for name in names:  # the run's rows have been written: from now on, updates
            queued = 0.5 if name.startswith("queued") else 0.0
            store.mark_running("r", name, 1, 2.0, queued_s=queued)
        store.flush()
        assert committed()["start"] == ("RUNNING", 1, 2.0, None, None, "null", None, None, None, 0)
        assert committed()["queued"] == ("RUNNING", 1, 2.0, None, None, "null", None, None, 0.5, 0)
        for name in ("queued", "end", "queued_end"):
            store.mark_success("r", name, 2.0, 3.0, [1, 2], True)
        store.mark_success("r", "big", 2.0, 3.0, "x" * 5000, True)  # bound as bytes
        store.mark_success("r", "no_result", 2.0, 3.0, None, False)
        store.mark_retry("r", "retried", 2.0, 2.5, "ValueError: once", None)
        store.mark_failed("r", "failed", 2.0, 2.5, "ValueError: twice", "Traceback ...")
        store.flush()
        rows = committed()
        for name in ("queued", "queued_end"):
            assert rows[name] == ("SUCCESS", 1, 2.0, 3.0, None, "blob", 6, "json", 0.5, 0)
        assert rows["end"] == ("SUCCESS", 1, 2.0, 3.0, None, "blob", 6, "json", None, 0)
        assert rows["big"] == ("SUCCESS", 1, 2.0, 3.0, None, "blob", 5002, "json", None, 0)
        assert rows["no_result"] == ("SUCCESS", 1, 2.0, 3.0, None, "null", None, None, None, 0)
        assert rows["retried"][:2] == ("PENDING", 1)
        assert rows["retried"][-1] == 1  # its failed attempt is kept
        assert rows["failed"][:5] == ("FAILED", 1, 2.0, 2.5, "ValueError: twice")
    with SqliteStateStore(db) as again:
        tasks = again.load_run("r").tasks
    assert [tasks[n].result for n in ("queued", "end", "big")] == [[1, 2], [1, 2], "x" * 5000]
    assert tasks["queued_end"].queued_s == 0.5
    assert tasks["end"].queued_s == 0.0
