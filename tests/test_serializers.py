"""Result serializers: the serialize/deserialize protocol (in this process and across
processes), the default JSON semantics (what json.dumps accepts is stored) and
``JsonSerializer(strict=True)``. Real SQLite files in ``tmp_path``; the public API only.
(The strict refusals of every kind of value are in test_sqlite_store.py.)"""

from __future__ import annotations

import datetime
import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _sqlite_worker import TaggedJson

import flowrun.state
from flowrun import (
    Engine,
    InMemoryStateStore,
    JsonSerializer,
    PickleSerializer,
    ResultSerializer,
    SqliteStateStore,
    StateDatabaseError,
    StateStoreProtocol,
    build_default_engine,
)

WORKER = str(Path(__file__).with_name("_sqlite_worker.py"))
FIX = "or open the store with serializer=PickleSerializer()"


def ingest(store: StateStoreProtocol, value: Any, seen: list[Any] | None = None) -> Engine:
    """DAG ``ingest``: ``parse`` returns ``value``; ``report`` receives it (into ``seen``)."""
    engine = build_default_engine(state_store=store)

    @engine.task(dag="ingest")
    def parse() -> Any:
        return value

    @engine.task(dag="ingest", deps=[parse])
    def report(parse: Any) -> str:
        if seen is not None:
            seen.append(parse)
        return "ok"

    return engine


def stored(db: Path) -> list[tuple[str, str, bytes]]:
    """(task, format, bytes) of every stored result, the way another program sees the file."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT name, result_format, result FROM tasks WHERE result NOT NULL ORDER BY name"
        ).fetchall()
    conn.close()
    return [tuple(row) for row in rows]


# -- the default: json.dumps semantics -------------------------------------------------------


async def test_a_task_returning_a_tuple_succeeds_on_sqlite_as_in_memory(tmp_path: Path) -> None:
    rows, errors = [{"id": 1}, {"id": 2}], ["row 3: bad date"]
    seen: list[Any] = []
    memory = ingest(InMemoryStateStore(), (rows, errors))
    assert memory.get_run_report(await memory.run_once("ingest"))["status"] == "SUCCESS"
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        engine = ingest(store, (rows, errors), seen)
        report = engine.get_run_report(await engine.run_once("ingest"))
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["parse"]["result"] == [rows, errors]  # the JSON form: a list
    assert seen == [(rows, errors)]
    assert type(seen[0]) is tuple  # this run's consumer got the original object
    with SqliteStateStore(db) as store:
        assert store.load_run(report["run_id"]).tasks["parse"].result == [rows, errors]


async def test_non_str_keys_come_back_as_str_and_nan_is_kept(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    value = {1: "one", 2.5: "half", False: "no", None: "none", "x": [float("nan"), (1, 2)]}
    with SqliteStateStore(db) as store:
        run_id = await ingest(store, value).run_once("ingest")
    with SqliteStateStore(db) as store:
        result = store.load_run(run_id).tasks["parse"].result
    assert result == {"1": "one", "2.5": "half", "false": "no", "null": "none", "x": result["x"]}
    assert math.isnan(result["x"][0])
    assert result["x"][1] == [1, 2]


async def test_a_resumed_run_receives_the_stored_json_form(tmp_path: Path) -> None:
    """Only results read back from the store are the JSON form: the run that produced the
    tuple handed the tuple itself to its consumer."""
    db = tmp_path / "state.db"
    seen: list[Any] = []
    with SqliteStateStore(db) as store:
        engine = ingest(store, (1, 2))

        @engine.task(dag="ingest", deps=["parse"])
        def load(parse: Any) -> None:
            seen.append(parse)
            raise RuntimeError("database down")

        run_id = await engine.run_once("ingest")
    with SqliteStateStore(db) as store:
        engine = ingest(store, "not re-run")

        @engine.task(name="load", dag="ingest", deps=["parse"])
        def load_again(parse: Any) -> None:
            seen.append(parse)

        report = engine.get_run_report(await engine.resume(run_id))
    assert report["status"] == "SUCCESS"
    assert seen == [(1, 2), [1, 2]]
    assert [type(v) for v in seen] == [tuple, list]


@pytest.mark.parametrize(
    ("value", "type_name", "detail"),
    [
        (
            {"rows": [1, 2, 3, datetime.datetime(2024, 1, 1)]},
            "dict",
            "a datetime (at result['rows'][3])",
        ),
        ([{"tags": {"a"}}], "list", "a set (at result[0]['tags'])"),
        ((b"raw", 1), "tuple", "a bytes (at result[0])"),
        (object(), "object", "a object"),
        ({(1, 2): "pair"}, "dict", "a dict key of type tuple ((1, 2))"),
    ],
)
async def test_what_json_cannot_encode_fails_the_task_naming_the_path(
    tmp_path: Path, value: Any, type_name: str, detail: str
) -> None:
    with SqliteStateStore(tmp_path / "state.db") as store:
        engine = ingest(store, value)
        report = engine.get_run_report(await engine.run_once("ingest"))
    error = report["tasks"]["parse"]["error"]
    assert report["tasks"]["parse"]["status"] == "FAILED"
    assert report["tasks"]["report"]["status"] == "SKIPPED"
    assert error.startswith(
        f"ResultEncodingError: task 'parse' returned a {type_name} that the state store cannot "
        f"save (run {report['run_id']}): JSON cannot store {detail}; "
    )
    assert FIX in error
    assert "retain_result=False" in error
    assert "exactly" not in error  # the strict wording is for strict=True


def test_a_circular_reference_through_a_tuple_is_named() -> None:
    looped: list[Any] = []
    looped.append(("x", looped))
    with pytest.raises(TypeError, match=r"a circular reference \(at result\[0\]\[1\]\)"):
        JsonSerializer().serialize(looped)


def test_the_default_encodes_with_one_dumps_and_no_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The performance promise: strict decodes every result again to compare; the default
    does not."""
    calls: list[str] = []
    real_dumps, real_loads = json.dumps, json.loads

    def dumps(obj: Any, **kwargs: Any) -> str:
        calls.append("dumps")
        return real_dumps(obj, **kwargs)

    def loads(data: Any, **kwargs: Any) -> Any:
        calls.append("loads")
        return real_loads(data, **kwargs)

    monkeypatch.setattr(json, "dumps", dumps)
    monkeypatch.setattr(json, "loads", loads)
    value = [{"id": i, "pair": (i, i)} for i in range(100)]
    assert JsonSerializer().serialize(value) == real_dumps(value, ensure_ascii=False).encode()
    assert calls == ["dumps"]
    calls.clear()
    with pytest.raises(TypeError, match="a tuple"):
        JsonSerializer(strict=True).serialize(value)
    assert calls == ["dumps", "loads"]


def test_a_lone_surrogate_round_trips() -> None:
    blob = JsonSerializer().serialize({"s": "\ud800"})
    assert JsonSerializer().deserialize(blob) == {"s": "\ud800"}


# -- strict=True: today's exact mode ---------------------------------------------------------


async def test_strict_refuses_a_tuple_naming_the_task_the_path_and_the_fix(tmp_path: Path) -> None:
    strict = JsonSerializer(strict=True)
    assert repr(strict) == "JsonSerializer(strict=True)"
    assert strict.name == "json"
    assert repr(JsonSerializer()) == "JsonSerializer()"
    with SqliteStateStore(tmp_path / "state.db", serializer=strict) as store:
        engine = ingest(store, {"rows": [[1], (2, 3)]})
        report = engine.get_run_report(await engine.run_once("ingest"))
    assert report["tasks"]["parse"]["error"] == (
        "ResultEncodingError: task 'parse' returned a dict that the state store cannot save "
        f"(run {report['run_id']}): JSON cannot store a tuple (at result['rows'][1]) exactly; "
        "return None, bool, int, float, str, lists and dicts with str keys, "
        f"{FIX} (or set retain_result=False on the task if nothing needs its result after the "
        "run)"
    )


async def test_strict_and_default_read_each_others_databases(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        run_id = await ingest(store, {"n": 1}).run_once("ingest")
    with SqliteStateStore(db, serializer=JsonSerializer(strict=True)) as store:
        assert store.load_run(run_id).tasks["parse"].result == {"n": 1}


# -- the protocol: subclass ResultSerializer, implement serialize/deserialize ----------------


class Reversed(ResultSerializer):
    """Only the two methods: its name is its qualname."""

    def serialize(self, obj: Any) -> bytes:
        return json.dumps(obj).encode()[::-1]

    def deserialize(self, data: bytes) -> Any:
        return json.loads(data[::-1])


def test_the_name_defaults_to_the_qualname_and_can_be_set() -> None:
    class Versioned(Reversed):
        name = "reversed-v2"

    assert Reversed().name == Reversed.name == "Reversed"
    assert TaggedJson().name == "TaggedJson"
    assert Versioned().name == "reversed-v2"
    renamed = Reversed()
    renamed.name = "by-instance"
    assert renamed.name == "by-instance"
    assert Reversed().name == "Reversed"
    assert (JsonSerializer().name, PickleSerializer().name) == ("json", "pickle")
    assert flowrun.state.ResultSerializer is ResultSerializer


async def test_a_user_serializer_stores_and_reads_back_in_process(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db, serializer=Reversed()) as store:
        engine = ingest(store, ([1, 2], {3: "c"}))
        report = engine.get_run_report(await engine.run_once("ingest"))
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["parse"]["result"] == [[1, 2], {"3": "c"}]
    assert [(name, fmt) for name, fmt, _ in stored(db)] == [
        ("parse", "Reversed"),
        ("report", "Reversed"),
    ]
    assert stored(db)[1][2] == b'"ko"'  # written by Reversed.serialize
    with SqliteStateStore(db, serializer=Reversed()) as store:
        assert store.load_run(report["run_id"]).tasks["report"].result == "ok"


async def test_a_name_mismatch_with_the_database_fails_clearly(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db, serializer=Reversed()) as store:
        run_id = await ingest(store, [1]).run_once("ingest")

    class Renamed(Reversed):  # the same bytes under another class: another name
        pass

    class Compatible(Reversed):
        name = "Reversed"  # what ``name`` is for: say these bytes are Reversed's

    for reader in (Renamed(), PickleSerializer(), JsonSerializer()):
        with (
            SqliteStateStore(db, serializer=reader) as store,
            pytest.raises(StateDatabaseError) as caught,
        ):
            store.load_run(run_id)
        assert str(caught.value) == (
            f"flowrun state database '{db}' holds the result of task 'parse' of run {run_id} "
            f"in the 'Reversed' format, but this store's serializer is {reader.name!r}; open "
            "the database with the serializer named 'Reversed' to read it"
        )
    with SqliteStateStore(db, serializer=Compatible()) as store:
        assert store.load_run(run_id).tasks["parse"].result == [1]


def test_a_serializer_with_the_old_dumps_and_loads_is_told_to_rename_them(
    tmp_path: Path,
) -> None:
    class Old:
        name = "old"

        def dumps(self, value: Any) -> bytes:
            return b""

        def loads(self, data: bytes) -> Any:
            return None

    class OldSubclass(ResultSerializer):
        def dumps(self, value: Any) -> bytes:
            return b""

    assert not isinstance(Old(), ResultSerializer)
    for old in (Old(), OldSubclass()):
        with pytest.raises(TypeError) as caught:
            SqliteStateStore(tmp_path / "state.db", serializer=old)  # type: ignore[arg-type]
        assert "rename dumps to serialize and loads to deserialize" in str(caught.value)
    assert not (tmp_path / "state.db").exists()  # refused before the file is touched

    class Half(ResultSerializer):
        def serialize(self, obj: Any) -> bytes:
            return b""

    with pytest.raises(TypeError, match=r"does not implement deserialize\(\)$"):
        SqliteStateStore(tmp_path / "state.db", serializer=Half())


def test_a_user_serializer_works_across_processes(tmp_path: Path) -> None:
    """Another process writes runs with the user's TaggedJson; this one reads them with the
    same class (through its deserialize), and a JSON store refuses them naming the format."""
    db = tmp_path / "state.db"
    proc = subprocess.run(
        [sys.executable, WORKER, "tagged", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert {(fmt, blob[:4]) for _, fmt, blob in stored(db)} == {("TaggedJson", b"tag:")}

    decoded = TaggedJson.decoded
    with SqliteStateStore(db, serializer=TaggedJson()) as store:
        engine = build_default_engine(state_store=store)
        report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["extract"]["result"] == [[{"id": 1}, {"id": 2}], ["row 3: bad date"]]
    assert report["tasks"]["count"]["result"] == {"2": "rows", "1": "errors"}
    assert TaggedJson.decoded == decoded + 2

    with SqliteStateStore(db) as store, pytest.raises(StateDatabaseError) as caught:
        store.load_run(run_id)
    assert "in the 'TaggedJson' format, but this store's serializer is 'json'; open the " in (
        str(caught.value)
    )
