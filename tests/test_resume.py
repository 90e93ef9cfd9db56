"""``resume`` and ``run_subgraph``: which tasks run again, what is kept, and bad input."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from support import new_clock

from flowrun import (
    Engine,
    RunContext,
    UnknownRunError,
    UnknownTaskError,
    build_default_engine,
)


class Etl:
    """DAG ``etl``: extract -> transform -> load, and audit <- extract (not below transform).

    ``calls`` counts executions per task; a name in ``fail`` raises on every attempt; a count
    in ``flaky`` makes the task raise that many more times before it succeeds.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls: Counter[str] = Counter()
        self.fail: set[str] = set()
        self.flaky: dict[str, int] = {}
        etl = engine.dag("etl")

        @etl.task(name="extract", retries=1)
        def extract() -> list[int]:
            self.step("extract")
            return [1, 2, 3]

        @etl.task(name="transform", deps=[extract])
        async def transform(extract: list[int]) -> int:
            self.step("transform")
            return sum(extract)

        @etl.task(name="load", deps=["transform"])
        def load(transform: int) -> str:
            self.step("load")
            return f"loaded {transform}"

        @etl.task(name="audit", deps=[extract])
        async def audit(extract: list[int]) -> int:
            self.step("audit")
            return len(extract)

    def step(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.fail:
            raise RuntimeError(f"{name} is broken")
        left = self.flaky.get(name, 0)
        if left > 0:
            self.flaky[name] = left - 1
            raise RuntimeError(f"{name} is flaky")


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {name: t["status"] for name, t in report["tasks"].items()}


@pytest.fixture
def engine() -> Engine:
    return build_default_engine(max_parallel=4, max_workers=4, clock=new_clock())


@pytest.fixture
def etl(engine: Engine) -> Etl:
    return Etl(engine)


# -- resume(run_id) ---------------------------------------------------------------------


async def test_resume_reruns_only_tasks_that_did_not_succeed(engine: Engine, etl: Etl) -> None:
    etl.fail.add("transform")
    first = await engine.run_once("etl")
    before = engine.get_run_report(first)
    assert before["status"] == "FAILED"
    assert statuses(before) == {
        "extract": "SUCCESS",
        "transform": "FAILED",
        "audit": "SUCCESS",
        "load": "SKIPPED",
    }

    etl.fail.clear()
    second = await engine.resume(first)

    assert second != first
    assert etl.calls == Counter(extract=1, transform=2, audit=1, load=1)
    after = engine.get_run_report(second)
    assert after["run_id"] == second
    assert after["dag_name"] == "etl"
    assert after["status"] == "SUCCESS"
    assert set(statuses(after).values()) == {"SUCCESS"}
    # load received the copied result of extract through the re-run transform
    assert after["tasks"]["load"]["result"] == "loaded 6"
    assert after["tasks"]["transform"]["attempt"] == 1
    # the original run is left as it was
    assert engine.get_run_report(first) == before


async def test_copied_tasks_keep_their_result_attempts_and_times(engine: Engine, etl: Etl) -> None:
    etl.flaky["extract"] = 1  # extract needs its one retry
    etl.fail.add("load")
    first = await engine.run_once("etl")
    before = engine.get_run_report(first)
    assert before["tasks"]["extract"]["attempt"] == 2

    etl.fail.clear()
    second = await engine.resume(first)

    after = engine.get_run_report(second)
    assert after["status"] == "SUCCESS"
    for kept in ("extract", "transform", "audit"):
        assert after["tasks"][kept] == before["tasks"][kept]
    assert after["tasks"]["extract"]["result"] == [1, 2, 3]
    assert after["tasks"]["extract"]["attempt"] == 2
    assert etl.calls == Counter(extract=2, transform=1, audit=1, load=2)


async def test_resume_of_a_successful_run_runs_nothing(engine: Engine, etl: Etl) -> None:
    first = await engine.run_once("etl")
    second = await engine.resume(first)

    assert second != first
    assert etl.calls == Counter(extract=1, transform=1, audit=1, load=1)
    before = engine.get_run_report(first)
    after = engine.get_run_report(second)
    assert after["status"] == "SUCCESS"
    assert after["tasks"] == before["tasks"]


async def test_resume_from_tasks_reruns_them_and_everything_downstream(
    engine: Engine, etl: Etl
) -> None:
    first = await engine.run_once("etl")
    before = engine.get_run_report(first)

    second = await engine.resume(first, from_tasks=["transform"])

    assert etl.calls == Counter(extract=1, transform=2, load=2, audit=1)
    after = engine.get_run_report(second)
    assert after["status"] == "SUCCESS"
    assert after["tasks"]["extract"] == before["tasks"]["extract"]
    assert after["tasks"]["audit"] == before["tasks"]["audit"]
    assert after["tasks"]["load"]["result"] == "loaded 6"


async def test_resume_from_tasks_also_reruns_tasks_that_did_not_succeed(
    engine: Engine, etl: Etl
) -> None:
    etl.fail.add("transform")
    first = await engine.run_once("etl")
    etl.fail.clear()

    second = await engine.resume(first, from_tasks=["audit"])

    assert etl.calls == Counter(extract=1, transform=2, load=1, audit=2)
    assert engine.get_run_report(second)["status"] == "SUCCESS"


async def test_resume_of_a_resumed_run(engine: Engine, etl: Etl) -> None:
    etl.fail.update({"transform"})
    first = await engine.run_once("etl")
    second = await engine.resume(first)  # transform fails again
    assert engine.get_run_report(second)["status"] == "FAILED"
    etl.fail.clear()

    third = await engine.resume(second)

    assert len({first, second, third}) == 3
    assert engine.get_run_report(third)["status"] == "SUCCESS"
    assert etl.calls == Counter(extract=1, audit=1, transform=3, load=1)


async def test_resume_where_the_task_fails_again_reports_failed(engine: Engine, etl: Etl) -> None:
    etl.fail.add("transform")
    first = await engine.run_once("etl")

    second = await engine.resume(first)

    report = engine.get_run_report(second)
    assert report["status"] == "FAILED"
    assert statuses(report)["transform"] == "FAILED"
    assert statuses(report)["load"] == "SKIPPED"
    assert "transform is broken" in report["tasks"]["transform"]["error"]


async def test_resume_with_an_unknown_task_suggests_a_close_match(engine: Engine, etl: Etl) -> None:
    first = await engine.run_once("etl")
    runs_before = len(engine.list_runs())

    with pytest.raises(UnknownTaskError, match=r"'transfrom'.*Did you mean 'transform'\?") as info:
        await engine.resume(first, from_tasks=["transfrom"])

    assert isinstance(info.value, ValueError)
    assert "'etl'" in str(info.value)
    assert len(engine.list_runs()) == runs_before
    assert etl.calls["transform"] == 1


async def test_resume_with_empty_from_tasks_is_a_value_error(engine: Engine, etl: Etl) -> None:
    first = await engine.run_once("etl")
    runs_before = len(engine.list_runs())

    with pytest.raises(ValueError, match="empty"):
        await engine.resume(first, from_tasks=[])
    with pytest.raises(ValueError, match="empty"):
        await engine.resume(first, from_tasks=())

    assert len(engine.list_runs()) == runs_before
    assert sum(etl.calls.values()) == 4


async def test_resume_with_a_bare_string_is_a_type_error(engine: Engine, etl: Etl) -> None:
    first = await engine.run_once("etl")

    with pytest.raises(TypeError, match=r"from_tasks.*\['transform'\]"):
        await engine.resume(first, from_tasks="transform")

    assert etl.calls["transform"] == 1


async def test_resume_of_an_unknown_run_id(engine: Engine, etl: Etl) -> None:
    with pytest.raises(UnknownRunError, match="no-such-run") as info:
        await engine.resume("no-such-run")

    assert isinstance(info.value, ValueError)
    assert sum(etl.calls.values()) == 0


@dataclass(frozen=True)
class Deps:
    offset: int


async def test_resume_with_a_context(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    broken = {"add"}
    scope = engine.dag("ctx")

    @scope.task(name="base")
    def base(context: RunContext[Deps]) -> int:
        calls["base"] += 1
        return int(10 + context.offset)

    @scope.task(name="add", deps=[base])
    async def add(base: int, context: RunContext[Deps]) -> int:
        calls["add"] += 1
        if "add" in broken:
            raise RuntimeError("add is broken")
        return int(base + context.offset)

    first = await scope.run_once(context=RunContext(Deps(offset=1)))
    broken.clear()

    second = await engine.resume(first, context=RunContext(Deps(offset=100)))

    report = engine.get_run_report(second)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["base"]["result"] == 11  # kept from the first run
    assert report["tasks"]["add"]["result"] == 111  # re-run with the new context
    assert calls == Counter(base=1, add=2)


# -- resume and retain_result=False -----------------------------------------------------


async def test_unretained_parent_needed_by_a_rerun_child_is_rerun(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    broken = {"child"}
    scope = engine.dag("u")

    @scope.task(name="parent", retain_result=False)
    def parent() -> list[int]:
        calls["parent"] += 1
        return [4, 5]

    @scope.task(name="child", deps=[parent])
    async def child(parent: list[int]) -> int:
        calls["child"] += 1
        if "child" in broken:
            raise RuntimeError("child is broken")
        return sum(parent)

    first = await scope.run_once()
    assert engine.get_run_report(first)["tasks"]["parent"]["result"] is None
    broken.clear()

    second = await engine.resume(first)

    report = engine.get_run_report(second)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["child"]["result"] == 9
    assert calls == Counter(parent=2, child=2)


async def test_unretained_parent_needed_through_upstream_dict_is_rerun(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    broken = {"child"}
    scope = engine.dag("u")

    @scope.task(name="kept")
    def kept() -> int:
        calls["kept"] += 1
        return 1

    @scope.task(name="dropped", retain_result=False)
    def dropped() -> int:
        calls["dropped"] += 1
        return 2

    @scope.task(name="child", deps=[kept, dropped])
    def child(upstream: dict[str, int]) -> dict[str, int]:
        calls["child"] += 1
        if "child" in broken:
            raise RuntimeError("child is broken")
        return dict(upstream)

    first = await scope.run_once()
    broken.clear()

    second = await engine.resume(first)

    report = engine.get_run_report(second)
    assert report["tasks"]["child"]["result"] == {"kept": 1, "dropped": 2}
    assert calls == Counter(kept=1, dropped=2, child=2)


async def test_unretained_inputs_are_rerun_transitively(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    broken = {"c"}
    scope = engine.dag("chain")

    @scope.task(name="a", retain_result=False)
    def a() -> int:
        calls["a"] += 1
        return 3

    @scope.task(name="b", deps=[a], retain_result=False)
    def b(a: int) -> int:
        calls["b"] += 1
        return a * 2

    @scope.task(name="c", deps=[b])
    def c(b: int) -> int:
        calls["c"] += 1
        if "c" in broken:
            raise RuntimeError("c is broken")
        return b + 1

    first = await scope.run_once()
    broken.clear()

    second = await engine.resume(first)

    assert engine.get_run_report(second)["tasks"]["c"]["result"] == 7
    assert calls == Counter(a=2, b=2, c=2)


async def test_unretained_parent_is_kept_when_no_rerun_task_needs_it(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    broken = {"late"}
    scope = engine.dag("u")

    @scope.task(name="parent", retain_result=False)
    def parent() -> int:
        calls["parent"] += 1
        return 1

    @scope.task(name="user", deps=[parent])
    def user(parent: int) -> int:
        calls["user"] += 1
        return parent + 1

    @scope.task(name="late", deps=[user, parent])
    def late(user: int) -> int:  # orders after parent but takes only user's result
        calls["late"] += 1
        if "late" in broken:
            raise RuntimeError("late is broken")
        return user * 10

    first = await scope.run_once()
    broken.clear()

    second = await engine.resume(first)

    assert engine.get_run_report(second)["tasks"]["late"]["result"] == 20
    assert calls == Counter(parent=1, user=1, late=2)


async def test_unretained_parent_rerun_for_one_child_keeps_the_successful_sibling(
    engine: Engine,
) -> None:
    calls: Counter[str] = Counter()
    broken = {"bad"}
    scope = engine.dag("u")

    @scope.task(name="parent", retain_result=False)
    def parent() -> int:
        calls["parent"] += 1
        return 5

    @scope.task(name="good", deps=[parent])
    def good(parent: int) -> int:
        calls["good"] += 1
        return parent

    @scope.task(name="bad", deps=[parent])
    def bad(parent: int) -> int:
        calls["bad"] += 1
        if "bad" in broken:
            raise RuntimeError("bad is broken")
        return -parent

    first = await scope.run_once()
    broken.clear()

    second = await engine.resume(first)

    report = engine.get_run_report(second)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["good"] == engine.get_run_report(first)["tasks"]["good"]
    assert report["tasks"]["bad"]["result"] == -5
    assert calls == Counter(parent=2, good=1, bad=2)


# -- run_subgraph and its resume -----------------------------------------------------------


class Diamondish:
    """DAG ``sub``: a -> b, a -> c -> d, and e alone."""

    def __init__(self, engine: Engine) -> None:
        self.calls: Counter[str] = Counter()
        self.fail: set[str] = set()
        scope = engine.dag("sub")
        self.scope = scope

        @scope.task(name="a")
        def a() -> int:
            self.step("a")
            return 1

        @scope.task(name="b", deps=[a])
        async def b(a: int) -> int:
            self.step("b")
            return a + 1

        @scope.task(name="c", deps=[a])
        def c(a: int) -> int:
            self.step("c")
            return a + 2

        @scope.task(name="d", deps=[c])
        async def d(c: int) -> int:
            self.step("d")
            return c + 3

        @scope.task(name="e")
        def e() -> int:
            self.step("e")
            return 0

    def step(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.fail:
            raise RuntimeError(f"{name} is broken")


@pytest.fixture
def sub(engine: Engine) -> Diamondish:
    return Diamondish(engine)


async def test_run_subgraph_runs_targets_and_their_ancestors_only(
    engine: Engine, sub: Diamondish
) -> None:
    run_id = await engine.run_subgraph("sub", targets=["b"])

    report = engine.get_run_report(run_id)
    assert list(report["tasks"]) == ["a", "b"]
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["b"]["result"] == 2
    assert sub.calls == Counter(a=1, b=1)


async def test_run_subgraph_with_several_targets(engine: Engine, sub: Diamondish) -> None:
    run_id = await sub.scope.run_subgraph(["d", "b"])

    report = engine.get_run_report(run_id)
    assert set(report["tasks"]) == {"a", "b", "c", "d"}
    assert list(report["tasks"]).index("a") == 0
    assert list(report["tasks"]).index("c") < list(report["tasks"]).index("d")
    assert report["tasks"]["d"]["result"] == 6
    assert sub.calls == Counter(a=1, b=1, c=1, d=1)


async def test_run_subgraph_with_no_targets_is_a_value_error(
    engine: Engine, sub: Diamondish
) -> None:
    with pytest.raises(ValueError, match=r"'sub'.*at least one target"):
        await engine.run_subgraph("sub", targets=[])

    assert engine.list_runs() == []
    assert sum(sub.calls.values()) == 0


async def test_run_subgraph_with_an_unknown_target_suggests_a_close_match(
    engine: Engine, sub: Diamondish
) -> None:
    engine.dag("sub").task(name="publish", deps=["d"])(lambda: None)

    with pytest.raises(UnknownTaskError, match=r"'sub'.*'pubish'.*Did you mean 'publish'\?"):
        await engine.run_subgraph("sub", targets=["pubish"])

    assert engine.list_runs() == []
    assert sum(sub.calls.values()) == 0


async def test_run_subgraph_with_a_bare_string_is_a_type_error(
    engine: Engine, sub: Diamondish
) -> None:
    with pytest.raises(TypeError, match=r"targets.*\['b'\]"):
        await engine.run_subgraph("sub", targets="b")

    assert sum(sub.calls.values()) == 0


async def test_run_subgraph_rejects_a_non_string_target() -> None:
    engine = build_default_engine(clock=new_clock())

    @engine.task(name="a", dag="d")
    def a() -> None:
        return None

    with pytest.raises(TypeError, match=r"run_subgraph: task names must be strings, got 1"):
        await engine.run_subgraph("d", ["a", 1])  # type: ignore[list-item]
    engine.close()


async def test_resume_of_a_subgraph_run_resumes_only_that_subgraph(
    engine: Engine, sub: Diamondish
) -> None:
    sub.fail.add("b")
    first = await engine.run_subgraph("sub", targets=["b"])
    assert engine.get_run_report(first)["status"] == "FAILED"
    sub.fail.clear()

    second = await engine.resume(first)

    report = engine.get_run_report(second)
    assert list(report["tasks"]) == ["a", "b"]
    assert report["status"] == "SUCCESS"
    assert sub.calls == Counter(a=1, b=2)

    third = await engine.resume(second, from_tasks=["a"])

    assert list(engine.get_run_report(third)["tasks"]) == ["a", "b"]
    assert sub.calls == Counter(a=2, b=3)


async def test_resume_of_a_subgraph_run_rejects_tasks_outside_it(
    engine: Engine, sub: Diamondish
) -> None:
    first = await engine.run_subgraph("sub", targets=["b"])

    with pytest.raises(UnknownTaskError, match=r"a run_subgraph run of targets \['b'\].*'d'"):
        await engine.resume(first, from_tasks=["d"])

    assert sub.calls == Counter(a=1, b=1)


async def test_a_run_still_running_cannot_be_resumed(engine: Engine) -> None:
    """Resuming a RUNNING run would execute its tasks twice (e.g. load twice)."""
    started = asyncio.Event()
    release = asyncio.Event()
    calls: Counter[str] = Counter()

    @engine.task(dag="live")
    async def load() -> None:
        calls["load"] += 1
        started.set()
        await release.wait()

    run = asyncio.ensure_future(engine.run_once("live"))
    await started.wait()
    (running,) = engine.list_runs(dag_name="live")
    with pytest.raises(ValueError, match=r"still RUNNING.*recover=True"):
        await engine.resume(running["run_id"])
    release.set()
    await run
    assert calls == Counter(load=1)
