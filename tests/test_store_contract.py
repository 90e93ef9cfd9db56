"""The state-store contract: the same engine scenarios, through the public API only, give the
same reports on ``InMemoryStateStore`` and on ``SqliteStateStore`` (a real file).

Results are JSON data here so that the default ``JsonSerializer`` stores them exactly. At the
end: ``InMemoryStateStore`` used directly, and a store that refuses to keep a result.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support import RUN_KEYS, TASK_KEYS, WAIT_S, WALL_START, new_clock

from flowrun import (
    Engine,
    InMemoryStateStore,
    Omit,
    SqliteStateStore,
    StateStoreProtocol,
    UnknownRunError,
    build_default_engine,
)
from flowrun._render import format_report, render_run
from flowrun.state import RunRecord, TaskRecord
from flowrun.testing import VirtualClock, run_dag
from flowrun.testing._contract import StoreContract

REPORT_KEYS = RUN_KEYS


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStoreProtocol]:
    if request.param == "memory":
        yield InMemoryStateStore()
        return
    with SqliteStateStore(tmp_path / "state.db") as sqlite_store:
        yield sqlite_store


@pytest.fixture
def engine(store: StateStoreProtocol, virtual_clock: VirtualClock) -> Iterator[Engine]:
    engine = build_default_engine(state_store=store, clock=virtual_clock)
    yield engine
    engine.close()


@contextmanager
def reopened(store: StateStoreProtocol) -> Iterator[StateStoreProtocol]:
    """The same runs as another process sees them: a new store on the file (SQLite), or the
    store itself (in memory: there is no other process)."""
    if isinstance(store, SqliteStateStore):
        with SqliteStateStore(store.path) as fresh:
            yield fresh
    else:
        yield store


ETL_DEPS = {
    "extract": (),
    "transform": ("extract",),
    "audit": ("extract",),
    "load": ("transform",),
}


class Etl:
    """extract -> transform -> load, and audit <- extract; ``calls`` counts executions and a
    name in ``broken`` raises ``RuntimeError('bad data')``."""

    def __init__(self, engine: Engine, dag: str = "etl") -> None:
        self.calls: Counter[str] = Counter()
        self.broken: set[str] = set()
        scope = engine.dag(dag)

        @scope.task(name="extract")
        def extract() -> list[int]:
            self.step("extract")
            return [1, 2, 3]

        @scope.task(name="transform", deps=[extract])
        async def transform(extract: list[int]) -> dict[str, Any]:
            self.step("transform")
            return {"values": [x * 10 for x in extract], "note": None}

        @scope.task(name="load", deps=[transform])
        def load(transform: dict[str, Any]) -> int:
            self.step("load")
            return sum(transform["values"])

        @scope.task(name="audit", deps=[extract])
        def audit(extract: list[int]) -> str:
            self.step("audit")
            return f"{len(extract)} rows"

    def step(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.broken:
            raise RuntimeError("bad data")


async def test_success_report(engine: Engine) -> None:
    etl = Etl(engine)
    run_id = await engine.run_once("etl")
    report = engine.get_run_report(run_id)
    assert set(report) == REPORT_KEYS
    assert report["run_id"] == run_id
    assert report["dag_name"] == "etl"
    assert report["status"] == "SUCCESS"
    assert report["created_at"] == report["finished_at"] == WALL_START
    assert list(report["tasks"]) == ["extract", "transform", "audit", "load"]
    for task in report["tasks"].values():
        assert set(task) == TASK_KEYS
        assert (task["status"], task["attempt"], task["error"], task["traceback"]) == (
            "SUCCESS",
            1,
            None,
            None,
        )
        assert task["started_at"] == task["finished_at"] == WALL_START
    results = {name: t["result"] for name, t in report["tasks"].items()}
    assert results == {
        "extract": [1, 2, 3],
        "transform": {"values": [10, 20, 30], "note": None},
        "audit": "3 rows",
        "load": 60,
    }
    assert etl.calls == {"extract": 1, "transform": 1, "audit": 1, "load": 1}


async def test_failure_skips_descendants_only(engine: Engine) -> None:
    etl = Etl(engine)
    etl.broken.add("transform")
    report = engine.get_run_report(await engine.run_once("etl"))
    tasks = report["tasks"]
    assert report["status"] == "FAILED"
    assert tasks["transform"]["status"] == "FAILED"
    assert tasks["transform"]["error"] == "RuntimeError: bad data"
    assert "RuntimeError: bad data" in tasks["transform"]["traceback"]
    assert tasks["transform"]["result"] is None
    assert tasks["load"]["status"] == "SKIPPED"
    assert tasks["load"]["error"] == "upstream task 'transform' failed"
    assert tasks["load"]["attempt"] == 0
    assert tasks["audit"]["status"] == "SUCCESS"
    assert tasks["audit"]["result"] == "3 rows"


async def test_retries_record_attempts_and_the_last_error(
    engine: Engine, virtual_clock: VirtualClock
) -> None:
    failures = {"flaky": 2, "hopeless": 99}

    @engine.task(dag="r", retries=2, retry_delay_s=5)
    def flaky() -> str:
        failures["flaky"] -= 1
        if failures["flaky"] >= 0:
            raise ConnectionError("try again")
        return "finally"

    @engine.task(dag="r", retries=1)
    def hopeless() -> None:
        raise ValueError("never")

    report = engine.get_run_report(await engine.run_once("r"))
    assert virtual_clock.sleeps == [5, 10]
    flaky_task, hopeless_task = report["tasks"]["flaky"], report["tasks"]["hopeless"]
    assert (flaky_task["status"], flaky_task["attempt"], flaky_task["result"]) == (
        "SUCCESS",
        3,
        "finally",
    )
    assert flaky_task["error"] is None
    assert (hopeless_task["status"], hopeless_task["attempt"]) == ("FAILED", 2)
    assert hopeless_task["error"] == "ValueError: never"
    assert report["status"] == "FAILED"


async def test_the_retried_attempts_are_kept_with_their_times_and_errors(
    engine: Engine, store: StateStoreProtocol, virtual_clock: VirtualClock
) -> None:
    failures = {"flaky": 2}

    @engine.task(dag="r", retries=2, retry_delay_s=5)
    async def flaky() -> str:
        await virtual_clock.sleep(1)
        failures["flaky"] -= 1
        if failures["flaky"] >= 0:
            raise ConnectionError(f"try again ({failures['flaky']} left)")
        return "finally"

    @engine.task(dag="r")
    def once() -> int:
        return 1

    run_id = await engine.run_once("r")
    with reopened(store) as view:
        task = view.load_run(run_id).tasks["flaky"]
        start = view.load_run(run_id).created_at
        assert [(a.attempt, a.error) for a in task.earlier_attempts] == [
            (1, "ConnectionError: try again (1 left)"),
            (2, "ConnectionError: try again (0 left)"),
        ]
        first, second = task.earlier_attempts
        assert (first.started_at, first.finished_at) == (start, start + 1)
        assert (second.started_at, second.finished_at) == (start + 6, start + 7)  # 5 s back-off
        assert (task.attempt, task.started_at) == (3, start + 17)  # then 10 s
        assert view.load_run(run_id).tasks["once"].earlier_attempts == ()


async def test_resume_reruns_only_what_did_not_succeed(
    engine: Engine, store: StateStoreProtocol
) -> None:
    etl = Etl(engine)
    etl.broken.add("transform")
    failed_id = await engine.run_once("etl")
    etl.broken.clear()
    resumed_id = await engine.resume(failed_id)
    assert resumed_id != failed_id
    report = engine.get_run_report(resumed_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["load"]["result"] == 60
    assert report["tasks"]["extract"]["result"] == [1, 2, 3]  # kept, with its result
    assert etl.calls == {"extract": 1, "audit": 1, "transform": 2, "load": 1}
    assert store.load_run(resumed_id).resumed_from == failed_id
    assert engine.get_run_report(failed_id)["status"] == "FAILED"  # the old run is unchanged


async def test_omitted_tasks_and_trigger_rules_are_stored_and_resumed_in_another_process(
    engine: Engine, store: StateStoreProtocol
) -> None:
    scope = engine.dag("branches")
    calls: Counter[str] = Counter()

    @scope.task()
    def poll() -> None:
        calls["poll"] += 1
        raise Omit("no new files")

    @scope.task(deps=[poll])
    def parse() -> None:
        calls["parse"] += 1

    @scope.task()
    def flaky() -> int:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise RuntimeError("down")
        return 1

    @scope.task(deps=[parse, flaky], trigger="all_done")
    def cleanup(parse: None, flaky: int | None) -> str:
        calls["cleanup"] += 1
        return f"flaky={flaky}"

    first = await engine.run_once("branches")
    with reopened(store) as other:
        record = other.load_run(first)
        assert {n: t.status for n, t in record.tasks.items()} == {
            "poll": "OMITTED",
            "flaky": "FAILED",
            "parse": "OMITTED",
            "cleanup": "SUCCESS",
        }
        assert record.tasks["poll"].error == "no new files"
        assert record.tasks["poll"].finished_at is not None
        assert record.tasks["parse"].error == "upstream task 'poll' was omitted"
        assert record.status == "FAILED"
    again = await engine.resume(first)
    report = engine.get_run_report(again)
    assert report["status"] == "SUCCESS"  # OMITTED never fails a run
    assert report["tasks"]["cleanup"]["result"] == "flaky=1"
    assert calls == {"poll": 1, "flaky": 2, "cleanup": 2}  # parse never ran


async def test_mapped_instances_are_stored_and_resumed_in_another_process(
    engine: Engine, store: StateStoreProtocol
) -> None:
    scope = engine.dag("mapped")
    calls: Counter[str] = Counter()
    broken = {"orders"}

    @scope.task()
    def tables() -> list[str]:
        return ["users", "orders"]

    @scope.task(map={"table": tables}, map_key=str)
    def load(table: str) -> dict[str, Any]:
        calls[table] += 1
        if table in broken:
            raise RuntimeError("locked")
        return {"table": table, "rows": len(table)}

    @scope.task(deps=[load])
    def total(load: list[dict[str, Any]]) -> int:
        return sum(entry["rows"] for entry in load)

    first = await engine.run_once("mapped")
    with reopened(store) as other:
        record = other.load_run(first)
        assert list(record.tasks) == ["tables", "load", "total", "load[users]", "load[orders]"]
        assert record.tasks["load"].mapped
        assert record.tasks["load[orders]"].map_of == "load"
        assert record.tasks["load[users]"].result == {"table": "users", "rows": 5}
        report = Engine(state_store=other).get_run_report(first)
        assert list(report["tasks"]["load"]["instances"]) == ["users", "orders"]
        assert report["tasks"]["load"]["status"] == "FAILED"
        assert report["tasks"]["load"]["error"] == "RuntimeError: locked"
    broken.clear()
    again = await engine.resume(first)
    report = engine.get_run_report(again)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["total"]["result"] == 11
    assert report["tasks"]["load"]["result"] == [
        {"table": "users", "rows": 5},
        {"table": "orders", "rows": 6},
    ]
    assert calls == {"users": 1, "orders": 2}


async def test_resume_from_tasks_reruns_them_and_their_descendants(engine: Engine) -> None:
    etl = Etl(engine)
    first = await engine.run_once("etl")
    report = engine.get_run_report(await engine.resume(first, from_tasks=["transform"]))
    assert report["status"] == "SUCCESS"
    assert etl.calls == {"extract": 1, "audit": 1, "transform": 2, "load": 2}
    assert report["tasks"]["audit"]["result"] == "3 rows"


async def test_resume_of_a_subgraph_run_stays_in_the_subgraph(
    engine: Engine, store: StateStoreProtocol
) -> None:
    etl = Etl(engine)
    etl.broken.add("transform")
    first = await engine.run_subgraph("etl", ["load"])
    assert store.load_run(first).targets == ("load",)
    etl.broken.clear()
    second = await engine.resume(first)
    report = engine.get_run_report(second)
    assert list(report["tasks"]) == ["extract", "transform", "load"]
    assert report["status"] == "SUCCESS"
    assert etl.calls == {"extract": 1, "transform": 2, "load": 1}
    assert store.load_run(second).targets == ("load",)


async def test_retain_result_false_and_a_kept_none(
    engine: Engine, store: StateStoreProtocol
) -> None:
    calls: Counter[str] = Counter()
    broken = {"child": True}

    @engine.task(dag="keep", retain_result=False)
    def big() -> list[int]:
        calls["big"] += 1
        return [7] * 3

    @engine.task(dag="keep")
    def nothing() -> None:
        calls["nothing"] += 1

    @engine.task(dag="keep", deps=[big, nothing])
    def child(big: list[int], nothing: None) -> int:
        calls["child"] += 1
        if broken["child"]:
            raise RuntimeError("later")
        assert nothing is None
        return sum(big)

    first = await engine.run_once("keep")
    report = engine.get_run_report(first)
    assert report["tasks"]["big"]["status"] == "SUCCESS"
    assert report["tasks"]["big"]["result"] is None
    record = store.load_run(first)
    assert not record.tasks["big"].has_result
    assert record.tasks["nothing"].has_result  # a kept None is a result
    broken["child"] = False
    second = await engine.resume(first)
    assert engine.get_run_report(second)["tasks"]["child"]["result"] == 21
    # big's result was not kept, so it ran again; nothing's None was kept, so it did not.
    assert calls == {"big": 2, "nothing": 1, "child": 2}


async def test_list_runs_filters_limit_and_newest_first(
    engine: Engine, virtual_clock: VirtualClock
) -> None:
    etl = Etl(engine, "etl")
    Etl(engine, "other")
    ids = []
    for dag in ("etl", "other", "etl"):
        ids.append(await engine.run_once(dag))
        virtual_clock.advance(10)
    etl.broken.add("load")
    ids.append(await engine.run_once("etl"))  # same created_at as the next: insertion order
    ids.append(await engine.run_once("other"))

    def listed(**filters: Any) -> list[str]:
        return [r["run_id"] for r in engine.list_runs(**filters)]

    assert listed() == ids[::-1]
    assert listed(dag_name="etl") == [ids[3], ids[2], ids[0]]
    assert listed(status="FAILED") == [ids[3]]
    assert listed(dag_name="etl", status="SUCCESS") == [ids[2], ids[0]]
    assert listed(limit=2) == [ids[4], ids[3]]
    assert listed(limit=0) == []
    assert listed(dag_name="nope") == []
    assert engine.list_runs()[1] == engine.get_run_report(ids[3])
    with pytest.raises(ValueError, match="'limit' must be >= 0"):
        engine.list_runs(limit=-1)


async def test_reports_are_snapshots(engine: Engine) -> None:
    Etl(engine)
    run_id = await engine.run_once("etl")
    report = engine.get_run_report(run_id)
    report["status"] = "CHANGED"
    report["tasks"]["extract"]["result"].append(99)
    report["tasks"]["transform"]["result"]["values"].clear()
    del report["tasks"]["load"]
    listed = engine.list_runs()[0]
    listed["tasks"]["extract"]["result"].append(100)
    again = engine.get_run_report(run_id)
    assert again["status"] == "SUCCESS"
    assert again["tasks"]["extract"]["result"] == [1, 2, 3]
    assert again["tasks"]["transform"]["result"]["values"] == [10, 20, 30]
    assert "load" in again["tasks"]


async def test_unknown_run_id(engine: Engine, store: StateStoreProtocol) -> None:
    Etl(engine)
    with pytest.raises(UnknownRunError, match="unknown run id 'nope'"):
        engine.get_run_report("nope")
    with pytest.raises(UnknownRunError):
        await engine.resume("nope")
    with pytest.raises(UnknownRunError):
        store.load_run("nope")
    with pytest.raises(UnknownRunError):
        store.mark_running("nope", "extract", 1, 0.0)


async def test_concurrent_runs_and_engines_share_one_store(
    engine: Engine, store: StateStoreProtocol, virtual_clock: VirtualClock
) -> None:
    Etl(engine)
    other = build_default_engine(state_store=store, clock=virtual_clock)
    Etl(other).broken.add("audit")
    ids = await asyncio.gather(
        engine.run_once("etl"), other.run_once("etl"), engine.run_once("etl")
    )
    statuses = [engine.get_run_report(i)["status"] for i in ids]
    assert statuses == ["SUCCESS", "FAILED", "SUCCESS"]
    assert other.get_run_report(ids[0]) == engine.get_run_report(ids[0])
    assert len(other.list_runs()) == 3
    other.close()


async def test_a_cancelled_run_is_final_and_resumable(engine: Engine) -> None:
    started = asyncio.Event()
    blocking = {"hang": True}

    @engine.task(dag="c")
    def first() -> int:
        return 1

    @engine.task(dag="c", deps=[first])
    async def hang(first: int) -> int:
        started.set()
        if blocking["hang"]:
            await asyncio.Event().wait()
        return first

    @engine.task(dag="c", deps=[hang])
    def after(hang: int) -> int:
        return hang + 1

    run = asyncio.ensure_future(engine.run_once("c"))
    await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    report = engine.list_runs(dag_name="c")[0]
    assert report["status"] == "FAILED"
    assert [t["status"] for t in report["tasks"].values()] == ["SUCCESS", "FAILED", "SKIPPED"]
    assert report["tasks"]["hang"]["error"].startswith("CancelledError: run cancelled")
    blocking["hang"] = False
    resumed = engine.get_run_report(await engine.resume(report["run_id"]))
    assert resumed["status"] == "SUCCESS"
    assert resumed["tasks"]["after"]["result"] == 2


async def test_task_records_keep_the_dags_edges(engine: Engine, store: StateStoreProtocol) -> None:
    Etl(engine)
    run_id = await engine.run_once("etl")
    subgraph_id = await engine.run_subgraph("etl", ["load"])
    with reopened(store) as fresh:
        assert {n: t.deps for n, t in fresh.load_run(run_id).tasks.items()} == ETL_DEPS
        assert {n: t.deps for n, t in fresh.load_run(subgraph_id).tasks.items()} == {
            "extract": (),
            "transform": ("extract",),
            "load": ("transform",),
        }
        assert {n: t.deps for n, t in fresh.list_runs()[1].tasks.items()} == ETL_DEPS
    report = engine.get_run_report(run_id)  # the report keeps its keys: no "deps"
    assert set(report) == REPORT_KEYS
    assert all(set(task) == TASK_KEYS for task in report["tasks"].values())


async def test_resume_gives_copied_and_rerun_tasks_their_edges(
    engine: Engine, store: StateStoreProtocol
) -> None:
    etl = Etl(engine)
    etl.broken.add("transform")
    failed_id = await engine.run_once("etl")
    etl.broken.clear()
    resumed_id = await engine.resume(failed_id)
    with reopened(store) as fresh:
        resumed = fresh.load_run(resumed_id)
        assert etl.calls["extract"] == 1  # extract and audit were copied, not run again
        assert {n: t.deps for n, t in resumed.tasks.items()} == ETL_DEPS
        assert {n: t.deps for n, t in fresh.load_run(failed_id).tasks.items()} == ETL_DEPS


async def test_display_run_draws_the_stored_edges_without_the_dag(
    engine: Engine, store: StateStoreProtocol
) -> None:
    etl = Etl(engine)
    etl.broken.add("transform")
    run_id = await engine.run_once("etl")
    report = engine.get_run_report(run_id)
    parents = engine.get_dag("etl").parents
    with reopened(store) as fresh:
        viewer = build_default_engine(state_store=fresh)  # no task registered: no code
        mermaid = viewer.display_run(run_id)
        assert mermaid == render_run(report, "mermaid", parents)
        assert "    t0 --> t1\n    t0 --> t2\n    t1 --> t3\n" in mermaid
        assert "dependencies unknown" not in mermaid
        assert "class t1 failed" in mermaid
        dot = viewer.display_run(run_id, "dot")
        assert dot == render_run(report, "dot", parents)
        assert '"transform" -> "load";' in dot
        assert viewer.display_run(run_id, format="text") == format_report(report)
        with pytest.raises(ValueError, match="unknown run display format 'png'"):
            viewer.display_run(run_id, "png")
        with pytest.raises(UnknownRunError):
            viewer.display_run("nope")
        viewer.close()


# -- InMemoryStateStore used directly, and a store that refuses a result ------------------


def _record(run_id: str = "r1", **tasks: TaskRecord) -> RunRecord:
    return RunRecord(run_id, "d", 1.0, tasks=dict(tasks) or {"a": TaskRecord()})


def test_store_rejects_a_second_run_with_the_same_id() -> None:
    store = InMemoryStateStore()
    store.create_run(_record("r1"))

    with pytest.raises(ValueError, match=r"run id 'r1' already exists"):
        store.create_run(_record("r1"))


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.mark_running("nope", "a", 1, 2.0),
        lambda s: s.mark_success("nope", "a", 1.0, 2.0, 1, True),
        lambda s: s.mark_failed("nope", "a", 1.0, 2.0, "E", None),
        lambda s: s.mark_retry("nope", "a", 1.0, 2.0, "E", None),
        lambda s: s.mark_skipped("nope", ["a"], "why"),
        lambda s: s.finish_run("nope", "SUCCESS", 2.0),
        lambda s: s.load_run("nope"),
    ],
)
def test_store_operations_on_an_unknown_run_raise_unknown_run_error(
    call: Callable[[InMemoryStateStore], object],
) -> None:
    store = InMemoryStateStore()
    store.create_run(_record("r1"))

    with pytest.raises(UnknownRunError, match="nope"):
        call(store)


def test_store_mark_on_an_unknown_task_of_a_known_run_raises_key_error() -> None:
    store = InMemoryStateStore()
    store.create_run(_record("r1"))

    with pytest.raises(KeyError, match="run 'r1' has no task 'ghost'"):
        store.mark_running("r1", "ghost", 1, 2.0)
    assert store.load_run("r1").tasks["a"].status == "PENDING"


def test_store_list_runs_rejects_a_negative_limit() -> None:
    store = InMemoryStateStore()

    with pytest.raises(ValueError, match=r"'limit' must be >= 0 \(got -1\)"):
        store.list_runs(limit=-1)
    assert store.list_runs(limit=0) == []


def test_store_returns_an_uncopyable_result_as_is() -> None:
    store = InMemoryStateStore()
    store.create_run(_record("r1"))
    lock = threading.Lock()
    store.mark_success("r1", "a", 1.0, 2.0, {"lock": lock}, True)

    loaded = store.load_run("r1")
    listed = store.list_runs()

    assert loaded.tasks["a"].result["lock"] is lock
    assert listed[0].tasks["a"].result["lock"] is lock


class PickyStore(InMemoryStateStore):
    """A store that cannot keep one kind of result (like a serializer that refuses it)."""

    def mark_success(
        self,
        run_id: str,
        task: str,
        started_at: float,
        finished_at: float,
        result: Any,
        keep_result: bool,
    ) -> None:
        if isinstance(result, set):
            raise ValueError(f"cannot store a set (result of task {task!r})")
        super().mark_success(run_id, task, started_at, finished_at, result, keep_result)


async def test_a_store_refusing_a_result_fails_that_task_and_skips_its_descendants() -> None:
    engine = build_default_engine(state_store=PickyStore(), clock=new_clock())
    calls: list[str] = []

    @engine.task(name="odd", dag="d")
    def odd() -> set[int]:
        return {1, 2}

    @engine.task(name="uses_odd", dag="d", deps=[odd])
    def uses_odd(odd: set[int]) -> int:
        calls.append("uses_odd")
        return len(odd)

    @engine.task(name="grandchild", dag="d", deps=[uses_odd])
    def grandchild() -> None:
        calls.append("grandchild")

    @engine.task(name="fine", dag="d")
    def fine() -> list[int]:
        return [1, 2]

    @engine.task(name="uses_fine", dag="d", deps=[fine])
    def uses_fine(fine: list[int]) -> int:
        return sum(fine)

    run_id = await asyncio.wait_for(engine.run_once("d"), WAIT_S)

    report = engine.get_run_report(run_id)
    tasks = report["tasks"]
    assert report["status"] == "FAILED"
    assert tasks["odd"]["status"] == "FAILED"
    assert tasks["odd"]["error"] == "ValueError: cannot store a set (result of task 'odd')"
    assert tasks["uses_odd"]["status"] == "SKIPPED"
    assert tasks["grandchild"]["status"] == "SKIPPED"
    assert "'odd'" in tasks["grandchild"]["error"]
    assert tasks["fine"]["status"] == "SUCCESS"
    assert tasks["uses_fine"] == {**tasks["uses_fine"], "status": "SUCCESS", "result": 3}
    assert calls == []
    engine.close()


class FourArgumentStore(InMemoryStateStore):
    """A custom store written against the protocol before ``queued_s`` joined mark_running."""

    def __init__(self) -> None:
        super().__init__()
        self.launched: list[str] = []

    def mark_running(  # type: ignore[override]
        self, run_id: str, task: str, attempt: int, started_at: float
    ) -> None:
        self.launched.append(task)
        super().mark_running(run_id, task, attempt, started_at)


def test_a_custom_store_with_the_older_mark_running_still_runs_dags() -> None:
    store = FourArgumentStore()
    engine = build_default_engine(state_store=store, max_parallel=1)  # type: ignore[arg-type]
    etl = Etl(engine)
    report = run_dag(engine, "etl")
    assert report["status"] == "SUCCESS"
    assert sorted(store.launched) == sorted(ETL_DEPS)
    assert etl.calls == dict.fromkeys(ETL_DEPS, 1)


class TestStoreHistory(StoreContract):
    """History on both stores: summaries without results, and ``prune`` (the suite is in
    ``flowrun.testing._contract``; ``store`` is this module's fixture, memory and SQLite)."""


class OlderProtocolStore:
    """A custom store written before summaries and prune: ``load_run``/``list_runs`` without
    ``results``, no ``prune``; the rest delegated to an ``InMemoryStateStore``."""

    def __init__(self) -> None:
        self.inner = InMemoryStateStore()

    def load_run(self, run_id: str) -> RunRecord:
        return self.inner.load_run(run_id)

    def list_runs(
        self, dag_name: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        return self.inner.list_runs(dag_name, status, limit)

    def __getattr__(self, name: str) -> Any:
        if name in ("prune", "vacuum"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def _delegate(name: str) -> Any:
    def method(self: OlderProtocolStore, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, name)(*args, **kwargs)

    return method


# Defined on the class, not only reached through __getattr__: from Python 3.12 on,
# isinstance() with a runtime-checkable protocol looks attributes up statically.
for _name in (
    "create_run",
    "add_tasks",
    "mark_running",
    "mark_success",
    "mark_cached",
    "mark_failed",
    "mark_retry",
    "mark_skipped",
    "mark_omitted",
    "finish_run",
    "flush",
    "cache_get",
    "cache_put",
    "cache_clear",
):
    setattr(OlderProtocolStore, _name, _delegate(_name))


def test_a_custom_store_without_summaries_or_prune_is_still_a_store_and_runs_dags() -> None:
    store = OlderProtocolStore()
    assert isinstance(store, StateStoreProtocol)  # prune is not part of the protocol
    assert not hasattr(store, "prune")
    engine = build_default_engine(state_store=store)
    Etl(engine)
    report = run_dag(engine, "etl")
    assert report["status"] == "SUCCESS"
    assert engine.list_runs()[0]["tasks"]["load"]["result"] == 60
