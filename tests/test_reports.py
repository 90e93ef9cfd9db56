"""Run reports: shape, snapshots, topological order, ``list_runs``, and ``retain_result``."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest
from support import WAIT_S, new_clock

from flowrun import Engine, UnknownRunError, build_default_engine
from flowrun.testing import VirtualClock


@pytest.fixture
def clock() -> VirtualClock:
    return new_clock()


@pytest.fixture
def engine(clock: VirtualClock) -> Engine:
    return build_default_engine(max_parallel=4, max_workers=4, clock=clock)


def register_etl(engine: Engine, broken: set[str] | None = None) -> None:
    """DAG ``etl``: extract -> transform -> load, registered downstream first."""
    broken = broken if broken is not None else set()
    etl = engine.dag("etl")

    @etl.task(name="load", deps=["transform"])
    def load(transform: dict[str, Any]) -> str:
        if "load" in broken:
            raise RuntimeError("load is broken")
        return f"loaded {transform['rows']}"

    @etl.task(name="transform", deps=["extract"])
    async def transform(extract: list[int]) -> dict[str, Any]:
        if "transform" in broken:
            raise ValueError("bad rows")
        return {"rows": len(extract), "values": list(extract)}

    @etl.task(name="extract")
    def extract() -> list[int]:
        return [1, 2, 3]


# -- the report's shape ---------------------------------------------------------------------


async def test_report_has_exactly_the_documented_keys(engine: Engine, clock: VirtualClock) -> None:
    register_etl(engine)
    run_id = await engine.run_once("etl")

    report = engine.get_run_report(run_id)

    seed = {"run_id", "dag_name", "created_at", "finished_at", "status", "tasks"}
    assert set(report) == seed | {"trigger", "scheduled_for"}  # flowrun's: what started it
    assert (report["trigger"], report["scheduled_for"]) == ("manual", None)
    assert report["run_id"] == run_id
    assert report["dag_name"] == "etl"
    assert report["status"] == "SUCCESS"
    assert report["created_at"] == clock.time()
    assert report["finished_at"] == clock.time()
    for task in report["tasks"].values():
        assert set(task) == {
            "status",
            "attempt",
            "started_at",
            "finished_at",
            "error",
            "result",
            "traceback",
            "queued_s",  # the wait for slots...
            "cached_from",  # ...the run a cached result came from...
            "warnings",  # ...and what went wrong without failing it: flowrun's additions
        }
        assert task["queued_s"] == 0.0
        assert task["cached_from"] is None
        assert task["warnings"] == []
        assert task["status"] == "SUCCESS"
        assert task["attempt"] == 1
        assert task["error"] is None
        assert task["traceback"] is None
        assert task["started_at"] == task["finished_at"] == clock.time()
    assert report["tasks"]["load"]["result"] == "loaded 3"


async def test_report_of_a_failed_run(engine: Engine) -> None:
    register_etl(engine, broken={"transform"})
    run_id = await engine.run_once("etl")

    report = engine.get_run_report(run_id)

    assert report["status"] == "FAILED"
    transform = report["tasks"]["transform"]
    assert transform["status"] == "FAILED"
    assert transform["error"] == "ValueError: bad rows"
    assert "Traceback" in transform["traceback"]
    assert "bad rows" in transform["traceback"]
    assert transform["result"] is None
    assert report["tasks"]["load"]["status"] == "SKIPPED"
    assert report["tasks"]["load"]["result"] is None
    assert report["tasks"]["extract"]["status"] == "SUCCESS"


async def test_get_run_report_of_an_unknown_run(engine: Engine) -> None:
    with pytest.raises(UnknownRunError, match="'nope'") as info:
        engine.get_run_report("nope")
    assert isinstance(info.value, ValueError)


# -- snapshots ------------------------------------------------------------------------------


async def test_mutating_a_report_changes_nothing_stored(engine: Engine) -> None:
    register_etl(engine)
    run_id = await engine.run_once("etl")
    pristine = engine.get_run_report(run_id)

    report = engine.get_run_report(run_id)
    report["status"] = "MUTATED"
    report["tasks"]["extract"]["result"].append(99)
    report["tasks"]["transform"]["result"]["rows"] = -1
    report["tasks"]["transform"]["result"]["values"].clear()
    report["tasks"]["load"]["status"] = "FAILED"
    del report["tasks"]["transform"]
    report["tasks"]["ghost"] = {}

    assert engine.get_run_report(run_id) == pristine
    assert engine.get_run_report(run_id)["tasks"]["extract"]["result"] == [1, 2, 3]


async def test_mutating_list_runs_output_changes_nothing_stored(engine: Engine) -> None:
    register_etl(engine)
    run_id = await engine.run_once("etl")
    pristine = engine.get_run_report(run_id)

    [listed] = engine.list_runs()
    listed["tasks"]["extract"]["result"].append(4)
    listed["tasks"].clear()

    assert engine.get_run_report(run_id) == pristine


async def test_a_report_taken_earlier_does_not_follow_later_runs(engine: Engine) -> None:
    broken = {"load"}
    register_etl(engine, broken)
    first = await engine.run_once("etl")
    snapshot = engine.get_run_report(first)
    broken.clear()

    await engine.resume(first)

    assert snapshot["status"] == "FAILED"
    assert engine.get_run_report(first) == snapshot


async def test_engine_report_with_an_uncopyable_result() -> None:
    engine = build_default_engine(clock=new_clock())
    lock = threading.Lock()

    @engine.task(name="t", dag="d")
    def t() -> dict[str, Any]:
        return {"lock": lock}

    run_id = await asyncio.wait_for(engine.run_once("d"), WAIT_S)

    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["t"]["result"]["lock"] is lock
    engine.close()


# -- topological order ----------------------------------------------------------------------


async def test_report_tasks_are_in_topological_order(engine: Engine) -> None:
    register_etl(engine)
    run_id = await engine.run_once("etl")

    assert list(engine.get_run_report(run_id)["tasks"]) == ["extract", "transform", "load"]
    assert engine.list_tasks("etl") == ["extract", "transform", "load"]


async def test_report_order_is_topological_for_a_diamond_registered_backwards(
    engine: Engine,
) -> None:
    scope = engine.dag("diamond")
    done: list[str] = []

    @scope.task(name="sink", deps=["left", "right"])
    def sink() -> None:
        done.append("sink")

    @scope.task(name="right", deps=["source"])
    async def right() -> None:
        done.append("right")

    @scope.task(name="left", deps=["source"])
    def left() -> None:
        done.append("left")

    @scope.task(name="source")
    async def source() -> None:
        done.append("source")

    run_id = await scope.run_once()

    order = list(engine.get_run_report(run_id)["tasks"])
    assert sorted(order) == ["left", "right", "sink", "source"]
    assert order[0] == "source"
    assert order[-1] == "sink"
    assert order == engine.list_tasks("diamond")
    assert done[0] == "source"
    assert done[-1] == "sink"


async def test_report_order_is_topological_for_failed_skipped_and_resumed_runs(
    engine: Engine,
) -> None:
    broken = {"transform"}
    register_etl(engine, broken)
    first = await engine.run_once("etl")
    broken.clear()
    second = await engine.resume(first)
    third = await engine.run_subgraph("etl", targets=["transform"])

    expected = ["extract", "transform", "load"]
    assert list(engine.get_run_report(first)["tasks"]) == expected
    assert list(engine.get_run_report(second)["tasks"]) == expected
    assert list(engine.get_run_report(third)["tasks"]) == expected[:2]


async def test_long_chain_registered_in_reverse_reports_in_topological_order(
    engine: Engine,
) -> None:
    scope = engine.dag("chain")
    n = 60
    for i in reversed(range(n)):
        deps = [f"step{i - 1:02d}"] if i else []

        @scope.task(name=f"step{i:02d}", deps=deps)
        def step() -> None:
            return None

    run_id = await scope.run_once()

    assert list(engine.get_run_report(run_id)["tasks"]) == [f"step{i:02d}" for i in range(n)]


# -- list_runs ------------------------------------------------------------------------------


async def test_list_runs_newest_first_with_filters_and_limit(engine: Engine) -> None:
    broken: set[str] = set()
    register_etl(engine, broken)
    other = engine.dag("other")

    @other.task(name="only")
    def only() -> int:
        return 1

    a = await engine.run_once("etl")
    b = await other.run_once()
    broken.add("load")
    c = await engine.run_once("etl")
    broken.clear()
    d = await engine.run_once("etl")

    def ids(reports: list[dict[str, Any]]) -> list[str]:
        return [r["run_id"] for r in reports]

    assert ids(engine.list_runs()) == [d, c, b, a]
    assert ids(engine.list_runs(dag_name="etl")) == [d, c, a]
    assert ids(engine.list_runs(dag_name="other")) == [b]
    assert ids(engine.list_runs(status="FAILED")) == [c]
    assert ids(engine.list_runs(status="SUCCESS")) == [d, b, a]
    assert ids(engine.list_runs(dag_name="etl", status="SUCCESS")) == [d, a]
    assert ids(engine.list_runs(limit=2)) == [d, c]
    assert ids(engine.list_runs(dag_name="etl", status="SUCCESS", limit=1)) == [d]
    assert engine.list_runs(limit=0) == []
    assert engine.list_runs(dag_name="nope") == []
    assert engine.list_runs()[0] == engine.get_run_report(d)


async def test_list_runs_rejects_a_negative_limit(engine: Engine) -> None:
    with pytest.raises(ValueError, match="limit"):
        engine.list_runs(limit=-1)


# -- retain_result --------------------------------------------------------------------------


async def test_retain_result_false_drops_the_result_but_the_consumer_got_it(
    engine: Engine,
) -> None:
    scope = engine.dag("r")
    received: list[list[int]] = []

    @scope.task(name="big", retain_result=False)
    def big() -> list[int]:
        return list(range(5))

    @scope.task(name="use", deps=[big])
    async def use(big: list[int]) -> int:
        received.append(big)
        return sum(big)

    run_id = await scope.run_once()

    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["big"]["status"] == "SUCCESS"
    assert report["tasks"]["big"]["result"] is None
    assert report["tasks"]["use"]["result"] == 10
    assert received == [[0, 1, 2, 3, 4]]


async def test_retain_result_false_keeps_the_input_for_a_retried_consumer(
    engine: Engine, clock: VirtualClock
) -> None:
    scope = engine.dag("r")
    received: list[tuple[str, Any]] = []
    failures_left = Counter(slow_consumer=1)

    @scope.task(name="big", retain_result=False)
    async def big() -> dict[str, int]:
        return {"size": 3}

    @scope.task(name="fast_consumer", deps=[big])
    def fast_consumer(big: dict[str, int]) -> int:
        received.append(("fast_consumer", big))
        return big["size"]

    @scope.task(name="slow_consumer", deps=[big], retries=2, retry_delay_s=5.0)
    async def slow_consumer(upstream: dict[str, Any]) -> int:
        received.append(("slow_consumer", upstream["big"]))
        if failures_left["slow_consumer"]:
            failures_left["slow_consumer"] -= 1
            raise ConnectionError("flaky")
        return int(upstream["big"]["size"]) * 2

    run_id = await scope.run_once()

    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["slow_consumer"]["attempt"] == 2
    assert report["tasks"]["slow_consumer"]["result"] == 6
    assert report["tasks"]["big"]["result"] is None
    assert sorted(received, key=lambda r: r[0]) == [
        ("fast_consumer", {"size": 3}),
        ("slow_consumer", {"size": 3}),
        ("slow_consumer", {"size": 3}),
    ]
    assert clock.sleeps == [5.0]


async def test_retain_result_false_with_a_failed_and_a_skipped_consumer(engine: Engine) -> None:
    scope = engine.dag("r")

    @scope.task(name="big", retain_result=False)
    def big() -> int:
        return 1

    @scope.task(name="bad", deps=[big])
    def bad(big: int) -> int:
        raise RuntimeError("bad consumer")

    @scope.task(name="after_bad", deps=[bad, big])
    def after_bad(big: int) -> int:
        return big

    @scope.task(name="good", deps=[big])
    def good(big: int) -> int:
        return big + 1

    run_id = await scope.run_once()

    report = engine.get_run_report(run_id)
    assert report["status"] == "FAILED"
    assert report["tasks"]["big"]["result"] is None
    assert report["tasks"]["good"]["result"] == 2
    assert report["tasks"]["bad"]["status"] == "FAILED"
    assert report["tasks"]["after_bad"]["status"] == "SKIPPED"


async def test_retain_result_false_on_a_leaf_keeps_nothing(engine: Engine) -> None:
    scope = engine.dag("r")
    calls: Counter[str] = Counter()

    @scope.task(name="leaf", retain_result=False)
    async def leaf() -> str:
        calls["leaf"] += 1
        return "large value"

    run_id = await scope.run_once()

    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["leaf"]["status"] == "SUCCESS"
    assert report["tasks"]["leaf"]["result"] is None
    assert calls["leaf"] == 1


@pytest.mark.parametrize("explicit", [True, False], ids=["retain_result=True", "default"])
async def test_retain_result_true_keeps_results(engine: Engine, explicit: bool) -> None:
    scope = engine.dag("r")
    options: dict[str, Any] = {"retain_result": True} if explicit else {}

    @scope.task(name="mid", **options)
    def mid() -> list[str]:
        return ["x"]

    @scope.task(name="leaf", deps=[mid], **options)
    def leaf(mid: list[str]) -> list[str]:
        return [*mid, "y"]

    run_id = await scope.run_once()

    report = engine.get_run_report(run_id)
    assert report["tasks"]["mid"]["result"] == ["x"]
    assert report["tasks"]["leaf"]["result"] == ["x", "y"]


async def test_report_of_a_run_in_progress_says_running(engine: Engine) -> None:
    scope = engine.dag("live")
    started = asyncio.Event()
    gate = asyncio.Event()

    @scope.task(name="first")
    def first() -> int:
        return 1

    @scope.task(name="slow", deps=[first])
    async def slow(first: int) -> int:
        started.set()
        await gate.wait()
        return first + 1

    @scope.task(name="last", deps=[slow])
    def last(slow: int) -> int:
        return slow + 1

    running = asyncio.create_task(scope.run_once())
    await asyncio.wait_for(started.wait(), 5)
    [live] = engine.list_runs(status="RUNNING")

    assert live["status"] == "RUNNING"
    assert live["finished_at"] is None
    assert {n: t["status"] for n, t in live["tasks"].items()} == {
        "first": "SUCCESS",
        "slow": "RUNNING",
        "last": "PENDING",
    }
    assert live["tasks"]["slow"]["attempt"] == 1

    gate.set()
    run_id = await running
    assert run_id == live["run_id"]
    assert engine.get_run_report(run_id)["status"] == "SUCCESS"
    assert engine.list_runs(status="RUNNING") == []


async def test_list_runs_rejects_an_unknown_status_and_a_bad_limit(engine: Engine) -> None:
    register_etl(engine)
    await engine.run_once("etl")
    with pytest.raises(ValueError, match=r"unknown run status 'DONE'; a run is one of FAILED"):
        engine.list_runs(status="DONE")
    with pytest.raises(ValueError, match="Did you mean 'SUCCESS'"):
        engine.list_runs(status="success")
    with pytest.raises(ValueError, match=r"'limit' must be >= 0 \(got '5'\)"):
        engine.list_runs(limit="5")  # type: ignore[arg-type]
    assert [r["status"] for r in engine.list_runs(status="SUCCESS")] == ["SUCCESS"]
