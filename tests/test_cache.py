"""Caching across runs, the parts that need no scheduler: task fingerprints, value digests,
cache keys (``flowrun._cache``), the stores' cache entries and ``mark_cached`` (in memory and
SQLite), and ``Engine.clear_cache``. (Migrations: test_sqlite_store.py; ``--refresh-cache``:
test_cli.py.)"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import importlib.util
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import WALL_START

from flowrun import (
    InMemoryStateStore,
    PickleSerializer,
    ResultEncodingError,
    SqliteStateStore,
    StateStoreProtocol,
    UnknownDagError,
    UnknownTaskError,
    build_default_engine,
)
from flowrun._cache import (
    PICKLE_PROTOCOL,
    CacheEntry,
    CacheKeyError,
    cache_key,
    task_fingerprint,
    value_digest,
)
from flowrun.state import RunRecord, TaskRecord
from flowrun.state import records as records_module
from flowrun.testing import VirtualClock

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Spec:
    """What task_fingerprint reads from a TaskSpec."""

    name: str
    dag: str
    func: Callable[..., Any]
    cache_version: str = ""


def fingerprint(func: Callable[..., Any], name: str = "t", **fields: Any) -> str:
    return task_fingerprint(Spec(name, fields.pop("dag", "d"), func, **fields))


def load(directory: Path, name: str, source: str) -> ModuleType:
    """Import ``source`` as module ``name`` from a real file (so it has source code)."""
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_subprocess(code: str, seed: str, cwd: Path) -> str:
    """The last line ``code`` prints in a fresh interpreter with ``PYTHONHASHSEED=seed``."""
    env = {**os.environ, "PYTHONHASHSEED": seed}
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()[-1]


# -- task fingerprints ------------------------------------------------------------------------

TASK_V1 = '''
    def extract(day):
        """Rows of one day."""
        return [day, day + 1]
'''


def test_a_fingerprint_is_equal_for_the_same_task_and_stable_across_processes(
    tmp_path: Path,
) -> None:
    module = load(tmp_path, "tasks_v1", TASK_V1)
    first = fingerprint(module.extract, name="extract", dag="etl")
    assert fingerprint(module.extract, name="extract", dag="etl") == first
    assert len(first) == 64
    assert int(first, 16) >= 0
    code = """
        from types import SimpleNamespace
        from flowrun._cache import task_fingerprint
        from tasks_v1 import extract
        spec = SimpleNamespace(name="extract", dag="etl", func=extract, cache_version="")
        print(task_fingerprint(spec))
    """
    assert in_subprocess(code, "1", tmp_path) == first
    assert in_subprocess(code, "2", tmp_path) == first


@pytest.mark.parametrize(
    ("source", "changes"),
    [
        (TASK_V1.replace("day + 1", "day + 2"), True),  # the body
        (TASK_V1.replace('"""Rows of one day."""', '"""Rows of a day."""'), True),  # docstring
        (TASK_V1.replace("return", "# a comment\n        return"), True),  # a comment: source
        ("\n    import functools\n" + TASK_V1, False),  # elsewhere in the module: not its source
        (TASK_V1.replace("def extract", "@staticmethod\n    def extract"), False),  # decorator
    ],
    ids=["body", "docstring", "comment", "other-lines", "decorator-line"],
)
def test_a_fingerprint_follows_the_source_from_the_def_line(
    tmp_path: Path, source: str, changes: bool
) -> None:
    old = load(tmp_path, "tasks_old", TASK_V1).extract
    new = load(tmp_path, "tasks_new", source).extract
    if isinstance(new, staticmethod):
        new = new.__func__
    assert (fingerprint(old) != fingerprint(new)) is changes


def _double(x: int) -> int:
    return x * 2


def _triple(x: int) -> int:
    return x * 3


def test_a_fingerprint_changes_with_name_dag_and_cache_version() -> None:
    base = fingerprint(_double)
    others = [
        fingerprint(_double, name="u"),
        fingerprint(_double, dag="other"),
        fingerprint(_double, cache_version="2"),
        fingerprint(_triple),
    ]
    assert len({base, *others}) == 5
    assert fingerprint(_double, cache_version="2") == others[2]


def _load(table: Any, limit: int = 10, *, mode: str = "append") -> str:
    return f"{table}:{limit}:{mode}"


def test_template_arguments_are_part_of_the_fingerprint() -> None:
    orders = fingerprint(functools.partial(_load, table="orders"))
    assert fingerprint(functools.partial(_load, table="orders")) == orders
    assert fingerprint(functools.partial(_load, table="users")) != orders
    assert fingerprint(_load) != orders
    both = fingerprint(functools.partial(_load, table="orders", mode="replace"))
    assert fingerprint(functools.partial(_load, mode="replace", table="orders")) == both
    assert fingerprint(functools.partial(_load, "orders")) != orders  # positional != keyword
    # nested partials: the outer layer's keyword wins, as in the call
    nested = functools.partial(functools.partial(_load, table="users"), table="orders")
    assert fingerprint(nested) == orders
    assert fingerprint(functools.partial(_load, table=("a", "b"))) != fingerprint(
        functools.partial(_load, table=["a", "b"])
    )


def test_the_template_arguments_of_a_registered_template_count() -> None:
    engine = build_default_engine()
    template = engine.task_template(_load, dag="etl")
    template.bind("load_orders", table="orders")
    template.bind("load_orders_again", table="orders")
    template.bind("load_users", table="users")
    specs = engine.registry.tasks_of("etl")
    prints = {name: task_fingerprint(spec) for name, spec in specs.items()}
    assert len(set(prints.values())) == 3
    same_args = task_fingerprint(dataclasses.replace(specs["load_users"], name="load_orders"))
    assert same_args != prints["load_orders"]  # same task name, other arguments
    engine.close()


def test_an_undigestable_template_argument_is_a_cache_key_error_naming_it() -> None:
    lock = threading.Lock()
    with pytest.raises(CacheKeyError) as caught:
        fingerprint(functools.partial(_load, table={"conn": lock}), name="load", dag="etl")
    message = str(caught.value)
    assert "template argument 'table' of task 'load' in DAG 'etl'" in message
    assert "_thread.lock (at ['conn'])" in message
    with pytest.raises(CacheKeyError, match="template argument #0 of task 't'"):
        fingerprint(functools.partial(_load, (x for x in "ab")))
    assert isinstance(caught.value, ValueError)


def _decorate(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any) -> Any:
        return func(*args)

    return wrapper


def _opaque_decorate(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:  # no functools.wraps: the closure holds the function
        return func(*args)

    return wrapper


def test_decorators_are_seen_through() -> None:
    assert fingerprint(_decorate(_double)) == fingerprint(_double)
    assert fingerprint(_decorate(_double)) != fingerprint(_decorate(_triple))
    # without __wrapped__, the wrapped function still counts by its code
    assert fingerprint(_opaque_decorate(_double)) != fingerprint(_opaque_decorate(_triple))


def test_lambdas_with_and_without_source() -> None:
    one, two = (lambda: 1), (lambda: 2)  # one line: the same source, other bytecode
    assert fingerprint(one) != fingerprint(two)
    no_source = eval("lambda: 1")  # no file: the bytecode and its constants
    assert fingerprint(no_source) == fingerprint(eval("lambda: 1"))
    assert fingerprint(no_source) != fingerprint(eval("lambda: 2"))
    assert fingerprint(eval("lambda x: x.a")) != fingerprint(eval("lambda x: x.b"))  # names


def test_a_function_without_source_uses_its_bytecode() -> None:
    def made(body: str) -> Callable[..., Any]:
        namespace: dict[str, Any] = {}
        exec(f"def task(x):\n    return {body}\n", namespace)  # like a REPL: no source file
        func: Callable[..., Any] = namespace["task"]
        return func

    assert fingerprint(made("x + 1")) == fingerprint(made("x + 1"))
    assert fingerprint(made("x + 1")) != fingerprint(made("x + 2"))
    assert fingerprint(made("[x, (1, 2)]")) != fingerprint(made("[x, (1, 3)]"))  # constants


class Scale:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, x: int) -> int:
        return x * self.factor

    def apply(self, x: int) -> int:
        return x + self.factor


class OtherScale:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, x: int) -> int:
        return x - self.factor


def test_callable_objects_count_by_their_call_code_and_state() -> None:
    assert fingerprint(Scale(2)) == fingerprint(Scale(2))
    assert fingerprint(Scale(2)) != fingerprint(Scale(3))  # the state
    assert fingerprint(Scale(2)) != fingerprint(OtherScale(2))  # the __call__ code
    assert fingerprint(Scale(2).apply) == fingerprint(Scale(2).apply)
    assert fingerprint(Scale(2).apply) != fingerprint(Scale(3).apply)  # a bound method's object
    assert fingerprint(Scale(2).apply) != fingerprint(Scale(2))


def _make_adder(n: Any) -> Callable[[int], Any]:
    def add(x: int) -> Any:
        return x + n

    return add


def test_closure_variables_count_when_they_can_be_digested() -> None:
    assert fingerprint(_make_adder(1)) == fingerprint(_make_adder(1))
    assert fingerprint(_make_adder(1)) != fingerprint(_make_adder(2))
    lock = threading.Lock()
    assert fingerprint(_make_adder(lock)) == fingerprint(_make_adder(threading.Lock()))  # type


def test_builtins_and_classes_have_fingerprints() -> None:
    assert fingerprint(len) == fingerprint(len)
    assert fingerprint(len) != fingerprint(sorted)
    assert fingerprint(Scale) != fingerprint(OtherScale)


# -- value digests ----------------------------------------------------------------------------


def test_dict_order_does_not_matter() -> None:
    assert value_digest({"a": 1, "b": [1, {"x": 2, "y": 3}]}) == value_digest(
        {"b": [1, {"y": 3, "x": 2}], "a": 1}
    )
    assert value_digest({1: "a", (2, 3): "b", None: "c"}) == value_digest(
        {None: "c", (2, 3): "b", 1: "a"}
    )
    assert value_digest({"a": 1}) != value_digest({"a": 2})
    assert value_digest({"a": 1}) != value_digest({"b": 1})


def test_types_are_kept_apart() -> None:
    values = [
        [1, 2],
        (1, 2),
        {1, 2},
        frozenset({1, 2}),
        {"1": 2},
        {1: 2},
        1,
        1.0,
        True,
        "1",
        b"1",
        None,
        0,
        0.0,
        -0.0,
        False,
        "",
        b"",
        [],
        (),
        {},
        ["ab"],
        ["a", "b"],
        [["a"], "b"],
        ["a", ["b"]],
        Pair(1, 2),
        collections.OrderedDict(a=1),
    ]
    digests = [value_digest(v) for v in values]
    assert len(set(digests)) == len(values)


def test_floats() -> None:
    assert value_digest(0.1 + 0.2) != value_digest(0.3)
    assert value_digest(0.3) == value_digest(float("0.3"))
    assert value_digest(math.nan) == value_digest(float("nan"))
    assert value_digest(math.inf) != value_digest(-math.inf)
    assert value_digest([1.5, 2.5]) == value_digest([1.5, 2.5])
    assert value_digest(2**80) != value_digest(float(2**80))
    assert value_digest(10**5000) != value_digest(10**5000 + 1)  # no int-to-str digit limit


def test_strings_and_nesting() -> None:
    assert value_digest("caf\u00e9") != value_digest("cafe")
    assert value_digest("\ud800") != value_digest("\ud801")  # lone surrogates are data too
    deep = {"rows": [{"id": i, "tags": ["x", i]} for i in range(50)], "meta": {"n": (1, 2)}}
    assert value_digest(deep) == value_digest(eval(repr(deep)))
    changed = eval(repr(deep))
    changed["rows"][49]["tags"][1] = 48
    assert value_digest(changed) != value_digest(deep)


Pair = collections.namedtuple("Pair", "a b")


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Tagged:
    name: str
    tags: set[str]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_other_objects_are_digested_the_way_pickle_reduces_them() -> None:
    assert value_digest(Point(1, 2)) == value_digest(Point(1, 2))
    assert value_digest(Point(1, 2)) != value_digest(Point(2, 1))
    assert value_digest(Point(1, 2)) != value_digest((1, 2))
    assert value_digest(Color.RED) == value_digest(Color("red"))
    assert value_digest(Color.RED) != value_digest(Color.BLUE)
    assert value_digest(Tagged("a", {"x", "y"})) == value_digest(Tagged("a", {"y", "x"}))
    assert value_digest(Tagged("a", {"x", "y"})) != value_digest(Tagged("a", {"x"}))
    assert value_digest(_double) == value_digest(_double)  # functions: by reference
    assert value_digest(_double) != value_digest(_triple)
    assert value_digest(int) != value_digest(float)
    assert PICKLE_PROTOCOL == 5


def test_sets_and_objects_are_deterministic_across_hash_seeds(tmp_path: Path) -> None:
    (tmp_path / "values_mod.py").write_text(
        textwrap.dedent(
            """
            import dataclasses

            @dataclasses.dataclass
            class Tagged:
                name: str
                tags: set

            VALUE = {
                "set": {"alpha", "beta", "gamma", "delta", "epsilon"},
                "frozen": frozenset({"a", "b", "c", ("d", 1)}),
                "object": Tagged("t", {"x", "y", "z", "w"}),
                "keys": {("k", 1): 1, "s": 2, 3: 3},
            }
            """
        ),
        encoding="utf-8",
    )
    code = """
        from flowrun._cache import value_digest
        from values_mod import VALUE
        print(value_digest(VALUE))
    """
    digests = {in_subprocess(code, seed, tmp_path) for seed in ("0", "1", "2", "3")}
    assert len(digests) == 1


def test_cycles_are_digested() -> None:
    first: list[Any] = [1]
    first.append(first)
    second: list[Any] = [1]
    second.append(second)
    assert value_digest(first) == value_digest(second)
    other: list[Any] = [2]
    other.append(other)
    assert value_digest(first) != value_digest(other)
    looped: dict[str, Any] = {}
    looped["self"] = {"up": looped}
    assert value_digest(looped) == value_digest(looped)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (threading.Lock(), "it holds a _thread.lock, "),
        ((x for x in range(3)), "it holds a generator, "),
        ({"rows": [1, {"lock": threading.Lock()}]}, "(at ['rows'][1]['lock'])"),
        (Point(1, threading.Lock()), "(at .y)"),  # type: ignore[arg-type]
        ([lambda: 1], "it holds a function (at [0])"),  # a lambda cannot be pickled
    ],
    ids=["lock", "generator", "nested", "attribute", "lambda"],
)
def test_what_cannot_be_digested_is_a_cache_key_error(value: Any, shown: str) -> None:
    with pytest.raises(CacheKeyError) as caught:
        value_digest(value, what="the result of task 'extract'")
    message = str(caught.value)
    assert message.startswith("the result of task 'extract' cannot be part of a cache key")
    assert shown in message


def test_a_local_class_instance_cannot_be_digested() -> None:
    class Local:
        pass

    with pytest.raises(CacheKeyError, match=r"class .*Local"):
        value_digest([Local()])


# -- cache keys -------------------------------------------------------------------------------


def test_a_cache_key_combines_the_fingerprint_and_the_inputs_by_parent_name() -> None:
    fp = fingerprint(_double)
    a, b = value_digest([1]), value_digest([2])
    key = cache_key(fp, [("a", a), ("b", b)])
    assert cache_key(fp, [("b", b), ("a", a)]) == key  # order given does not matter
    assert cache_key(fp, iter([("a", a), ("b", b)])) == key
    assert cache_key(fp, [("a", b), ("b", a)]) != key  # which parent gave what does
    assert cache_key(fp, [("a", a)]) != key
    assert cache_key(fingerprint(_triple), [("a", a), ("b", b)]) != key
    assert cache_key(fp, []) != cache_key(fingerprint(_triple), [])
    assert cache_key(fp, []) != fp
    assert len(key) == 64


def test_cache_key_inputs_are_string_pairs() -> None:
    with pytest.raises(TypeError, match="pairs of strings"):
        cache_key("fp", [("a", 1)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="pairs of strings"):
        cache_key("fp", ["ab"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="fingerprint is a str"):
        cache_key(b"fp", [])  # type: ignore[arg-type]


# -- the stores' cache ------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStoreProtocol]:
    if request.param == "memory":
        yield InMemoryStateStore()
        return
    with SqliteStateStore(tmp_path / "state.db") as sqlite_store:
        yield sqlite_store


def entry(
    key: str,
    task: str = "extract",
    dag: str = "etl",
    result: Any = None,
    created_at: float = WALL_START,
    ttl: float | None = None,
    run_id: str = "r1",
) -> CacheEntry:
    expires = None if ttl is None else created_at + ttl
    value = {"rows": [1, 2], "key": key} if result is None else result
    return CacheEntry(key, dag, task, run_id, created_at, expires, value)


def test_cache_entry_is_a_frozen_record_of_the_store() -> None:
    assert CacheEntry is records_module.CacheEntry
    item = entry("k", ttl=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.key = "other"  # type: ignore[misc]
    assert not item.expired(WALL_START + 9.999)
    assert item.expired(WALL_START + 10)
    assert not entry("k").expired(math.inf)


def test_put_then_get(store: StateStoreProtocol, virtual_clock: VirtualClock) -> None:
    now = virtual_clock.time()
    assert store.cache_get("k1", now) is None
    store.cache_put(entry("k1"))
    store.cache_put(entry("k2", task="load", result=[3]))

    got = store.cache_get("k1", now)
    assert got == entry("k1")
    assert store.cache_get("k2", now) == entry("k2", task="load", result=[3])
    assert store.cache_get("k3", now) is None
    store.flush()
    assert store.cache_get("k1", now) == entry("k1")


def test_a_result_got_is_the_callers_to_change(
    store: StateStoreProtocol, virtual_clock: VirtualClock
) -> None:
    result = {"rows": [1, 2]}
    store.cache_put(entry("k", result=result))
    result["rows"].append(3)  # the task's own object changes after the put
    got = store.cache_get("k", virtual_clock.time())
    assert got is not None
    got.result["rows"].append(4)
    again = store.cache_get("k", virtual_clock.time())
    assert again is not None
    assert again.result == {"rows": [1, 2]}


def test_a_put_replaces_the_entry_of_its_key(
    store: StateStoreProtocol, virtual_clock: VirtualClock
) -> None:
    store.cache_put(entry("k", result=[1], run_id="r1"))
    store.flush()
    store.cache_put(entry("k", result=[2], run_id="r2"))
    got = store.cache_get("k", virtual_clock.time())
    assert got is not None
    assert (got.result, got.run_id) == ([2], "r2")
    store.flush()
    assert store.cache_clear("etl") == 1


def test_entries_expire_on_the_engine_clock(
    store: StateStoreProtocol, virtual_clock: VirtualClock
) -> None:
    store.cache_put(entry("k", created_at=virtual_clock.time(), ttl=3600))
    store.cache_put(entry("forever", created_at=virtual_clock.time()))
    store.flush()
    virtual_clock.advance(3599)
    assert store.cache_get("k", virtual_clock.time()) is not None
    virtual_clock.advance(1)
    assert store.cache_get("k", virtual_clock.time()) is None  # expired at expires_at
    store.flush()  # the expired entry is gone, not only hidden
    assert store.cache_get("k", WALL_START) is None
    virtual_clock.advance(10**9)
    assert store.cache_get("forever", virtual_clock.time()) is not None
    assert store.cache_clear("etl") == 1


def test_an_entry_put_expired_is_never_served(
    store: StateStoreProtocol, virtual_clock: VirtualClock
) -> None:
    store.cache_put(entry("k", created_at=WALL_START - 100, ttl=50))
    assert store.cache_get("k", virtual_clock.time()) is None
    store.flush()
    assert store.cache_get("k", virtual_clock.time()) is None


def test_clear_by_dag_and_tasks(store: StateStoreProtocol, virtual_clock: VirtualClock) -> None:
    now = virtual_clock.time()
    store.cache_put(entry("e1", task="extract"))
    store.cache_put(entry("e2", task="extract"))
    store.cache_put(entry("t1", task="transform"))
    store.cache_put(entry("l1", task="load", created_at=WALL_START - 10, ttl=1))  # expired
    store.cache_put(entry("o1", task="extract", dag="other"))

    assert store.cache_clear("etl", ["extract", "extract"]) == 2
    assert store.cache_get("e1", now) is None
    assert store.cache_get("t1", now) is not None
    assert store.cache_clear("etl", []) == 0
    assert store.cache_clear("etl", ["missing"]) == 0
    assert store.cache_clear("etl") == 2  # transform, and the expired load entry
    assert store.cache_get("t1", now) is None
    assert store.cache_get("o1", now) is not None  # another DAG keeps its entries
    assert store.cache_clear("etl") == 0
    assert store.cache_clear("other", ("extract",)) == 1
    with pytest.raises(TypeError, match=r"write tasks=\['extract'\]"):
        store.cache_clear("etl", "extract")


def test_mark_cached_records_a_success_without_an_attempt(
    store: StateStoreProtocol, virtual_clock: VirtualClock
) -> None:
    store.create_run(
        RunRecord("r2", "etl", WALL_START, tasks={"extract": TaskRecord(), "load": TaskRecord()})
    )
    store.flush()
    now = virtual_clock.time()
    store.mark_cached("r2", "extract", now, {"rows": [1]}, True, cached_from="r1")
    store.mark_cached("r2", "load", now, "dropped", False, cached_from="r0")
    store.flush()

    run = store.load_run("r2")
    extract = run.tasks["extract"]
    assert (extract.status, extract.attempt, extract.started_at, extract.finished_at) == (
        "SUCCESS",
        0,
        now,
        now,
    )
    assert (extract.result, extract.has_result, extract.cached_from) == ({"rows": [1]}, True, "r1")
    assert (extract.error, extract.traceback) == (None, None)
    load = run.tasks["load"]
    assert (load.has_result, load.result, load.cached_from) == (False, None, "r0")
    if isinstance(store, SqliteStateStore):  # and another process reads it back
        with SqliteStateStore(store.path) as fresh:
            assert fresh.load_run("r2").tasks["extract"] == extract
    listed = store.list_runs()[0].tasks["extract"]
    assert listed.cached_from == "r1"


def test_a_task_that_runs_has_no_cached_from(
    store: StateStoreProtocol, virtual_clock: VirtualClock
) -> None:
    store.create_run(
        RunRecord("r", "etl", WALL_START, tasks={"a": TaskRecord(), "b": TaskRecord()})
    )
    store.mark_cached("r", "a", WALL_START, 1, True, "old")
    store.mark_running("r", "a", 1, WALL_START + 1)  # (a resume re-running it, say)
    store.mark_success("r", "b", WALL_START, WALL_START + 1, 2, True)
    store.flush()
    tasks = store.load_run("r").tasks
    assert (tasks["a"].cached_from, tasks["b"].cached_from) == (None, None)
    assert TaskRecord().cached_from is None


# -- SQLite: batching, encoding, sharing ------------------------------------------------------


def raw_entries(path: Path | str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT key, dag, task, run_id, result_format FROM cache").fetchall()


def test_sqlite_puts_wait_for_flush_and_share_its_transaction(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store, SqliteStateStore(db) as other:
        store.create_run(RunRecord("r1", "etl", WALL_START, tasks={"extract": TaskRecord()}))
        store.flush()
        before = store.transactions
        store.mark_success("r1", "extract", WALL_START, WALL_START + 1, [1], True)
        store.cache_put(entry("k"))
        assert raw_entries(db) == []  # queued...
        assert other.cache_get("k", WALL_START) is None  # ...so other processes miss it
        assert store.cache_get("k", WALL_START) == entry("k")  # but this store reads it
        store.flush()
        assert store.transactions == before + 1  # the transition and the entry: one commit
        assert raw_entries(db) == [("k", "etl", "extract", "r1", "json")]
        assert other.cache_get("k", WALL_START) == entry("k")


def test_sqlite_two_stores_share_the_cache(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as first:
        first.cache_put(entry("k1"))
        first.cache_put(entry("k2", task="load"))
    with SqliteStateStore(db) as second, SqliteStateStore(db) as third:
        assert second.cache_get("k1", WALL_START) == entry("k1")  # close() flushed them
        assert second.cache_clear("etl", ["load"]) == 1
        assert third.cache_get("k2", WALL_START) is None
        assert third.cache_get("k1", WALL_START) == entry("k1")
        third.cache_put(entry("k3"))
        assert second.cache_clear("etl") == 1  # k1 only: k3 is not flushed yet
        assert third.cache_clear("etl") == 1  # k3: a clear writes what its store queued first
        assert raw_entries(db) == []


def test_sqlite_an_expired_entry_is_deleted_only_if_still_expired(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as first, SqliteStateStore(db) as second:
        first.cache_put(entry("k", ttl=10))
        first.flush()
        assert first.cache_get("k", WALL_START + 10) is None  # expired: deleted at next flush
        second.cache_put(entry("k", created_at=WALL_START + 10, ttl=10, run_id="r2"))
        second.flush()  # another process replaced it meanwhile
        first.flush()
        fresh = first.cache_get("k", WALL_START + 15)
        assert fresh is not None
        assert fresh.run_id == "r2"
        assert first.cache_get("k", WALL_START + 20) is None
        first.flush()
        assert raw_entries(db) == []


def test_sqlite_a_result_the_serializer_cannot_encode_is_refused(tmp_path: Path) -> None:
    with SqliteStateStore(tmp_path / "state.db") as store:
        with pytest.raises(ResultEncodingError) as caught:
            store.cache_put(entry("k", result={1, 2}))
        message = str(caught.value)
        assert "the cache of task 'extract' in DAG 'etl' (run r1) cannot keep a set" in message
        assert "the result is not cached" in message
        assert "retain_result" not in message  # the fix of mark_success does not apply
        store.flush()
        assert store.cache_get("k", WALL_START) is None
        assert raw_entries(store.path) == []


def test_sqlite_results_come_back_as_the_serializer_returns_them(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db) as store:
        store.cache_put(entry("json", result={"pair": (1, 2)}))
        got = store.cache_get("json", WALL_START)
        assert got is not None
        assert got.result == {"pair": [1, 2]}
    with SqliteStateStore(db, PickleSerializer()) as pickled:
        pickled.cache_put(entry("pickle", result={"pair": (1, 2), "when": Point(1, 2)}))
        got = pickled.cache_get("pickle", WALL_START)
        assert got is not None
        assert got.result == {"pair": (1, 2), "when": Point(1, 2)}
        json_entry = pickled.cache_get("json", WALL_START)  # JSON reads with any serializer
        assert json_entry is not None
        assert json_entry.result == {"pair": [1, 2]}
    with SqliteStateStore(db) as store:
        assert store.cache_get("pickle", WALL_START) is None  # another format: a miss
        assert store.cache_clear("etl") == 2


def test_sqlite_an_entry_that_no_longer_decodes_is_a_miss(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with SqliteStateStore(db, PickleSerializer()) as store:
        store.cache_put(entry("k", result=[1]))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE cache SET result = ? WHERE key = 'k'", (b"not a pickle",))
    with SqliteStateStore(db, PickleSerializer()) as store:
        assert store.cache_get("k", WALL_START) is None
        store.cache_put(entry("k", result=[2]))  # the task ran again: replaced
        got = store.cache_get("k", WALL_START)
        assert got is not None
        assert got.result == [2]


# -- Engine.clear_cache -----------------------------------------------------------------------


def etl_engine(store: StateStoreProtocol) -> Any:
    engine = build_default_engine(state_store=store)
    etl = engine.dag("etl")
    etl.task("extract")(lambda: [1])
    etl.task("transform", deps=["extract"])(lambda extract: extract)
    etl.task("load", deps=["transform"])(lambda transform: transform)
    engine.task("other_task", dag="other")(lambda: 1)
    return engine


def test_engine_clear_cache(store: StateStoreProtocol) -> None:
    engine = etl_engine(store)
    for key, task in [("e", "extract"), ("t", "transform"), ("l", "load")]:
        store.cache_put(entry(key, task=task))
    store.cache_put(entry("o", task="other_task", dag="other"))

    assert engine.clear_cache("etl", ["transform"]) == 1
    assert engine.clear_cache("etl", iter(["load", "extract"])) == 2
    assert engine.clear_cache("etl") == 0
    assert engine.clear_cache("other") == 1
    engine.close()


def test_engine_clear_cache_checks_the_names(store: StateStoreProtocol) -> None:
    engine = etl_engine(store)
    store.cache_put(entry("e", task="extract"))
    with pytest.raises(UnknownDagError, match="Did you mean 'etl'"):
        engine.clear_cache("elt")
    with pytest.raises(UnknownTaskError) as caught:
        engine.clear_cache("etl", ["extract", "lod"])
    assert str(caught.value) == "clear_cache: DAG 'etl' has no task 'lod'. Did you mean 'load'?"
    with pytest.raises(TypeError, match=r"write tasks=\['extract'\]"):
        engine.clear_cache("etl", "extract")
    assert store.cache_get("e", WALL_START) is not None  # nothing was cleared on an error
    engine.close()
