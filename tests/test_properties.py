"""Property-based test of the scheduler over random DAGs, failures, retries and ``max_parallel``.

Each generated task knows how many of its attempts fail (never, always, or the first k), so the
final state of every task is predictable; the tasks record when they start, how many tasks are
in flight, and whether all their parents had already succeeded.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import new_clock

from flowrun import DagEndEvent, Engine, build_default_engine, fn_hook
from flowrun.testing import VirtualClock

ALWAYS = 1_000  # failures of a task that never succeeds


@dataclass(frozen=True)
class TaskPlan:
    parents: tuple[int, ...]
    failures: int  # attempts that fail before one succeeds (ALWAYS: every attempt fails)
    retries: int
    is_async: bool
    retain_result: bool
    retry_delay_s: float


@dataclass(frozen=True)
class Scenario:
    tasks: tuple[TaskPlan, ...]
    max_parallel: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    max_parallel = draw(st.sampled_from([1, 2, 3, 4, 5]))
    count = draw(st.integers(min_value=1, max_value=25))
    tasks: list[TaskPlan] = []
    for i in range(count):
        parents: tuple[int, ...] = ()
        if i:
            chosen = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True))
            parents = tuple(sorted(chosen))
        behaviour = draw(st.sampled_from(["ok", "ok", "ok", "fail", "flaky", "flaky"]))
        failures = {"ok": 0, "fail": ALWAYS}.get(behaviour)
        if failures is None:
            failures = draw(st.integers(min_value=1, max_value=3))
        tasks.append(
            TaskPlan(
                parents=parents,
                failures=failures,
                retries=draw(st.integers(min_value=0, max_value=3)),
                is_async=draw(st.booleans()),
                retain_result=draw(st.booleans()),
                retry_delay_s=draw(st.sampled_from([0.0, 0.5, 30.0])),
            )
        )
    return Scenario(tuple(tasks), max_parallel)


def name(i: int) -> str:
    return f"t{i:02d}"


@dataclass
class Observed:
    """What the instrumented tasks saw (written from the loop and from worker threads)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    executions: Counter[str] = field(default_factory=Counter)
    succeeded: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    ends: list[DagEndEvent] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # per task, from its plan

    def enter(self, task: str, parents: tuple[str, ...], upstream: dict[str, Any]) -> bool:
        """Record a start; returns whether this attempt must fail."""
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.executions[task] += 1
            early = [p for p in parents if p not in self.succeeded]
            if early:
                self.violations.append(f"{task} started before {early} succeeded")
            if upstream != {p: f"result of {p}" for p in parents}:
                self.violations.append(f"{task} got upstream {upstream!r}")
            return self.executions[task] <= self.failures[task]

    def leave(self, task: str, ok: bool) -> None:
        with self.lock:
            if ok:
                self.succeeded.add(task)
            self.in_flight -= 1


def register(engine: Engine, scenario: Scenario, seen: Observed) -> None:
    scope = engine.dag("random")
    for i, plan in enumerate(scenario.tasks):
        task = name(i)
        parents = tuple(name(p) for p in plan.parents)
        seen.failures[task] = plan.failures
        options: dict[str, Any] = {
            "deps": list(parents),
            "retries": plan.retries,
            "retain_result": plan.retain_result,
            "retry_delay_s": plan.retry_delay_s,
        }
        if plan.is_async:

            async def body_async(
                upstream: dict[str, Any], task: str = task, parents: tuple[str, ...] = parents
            ) -> str:
                fail = seen.enter(task, parents, upstream)
                for _ in range(5):
                    await asyncio.sleep(0)  # let other tasks interleave
                seen.leave(task, not fail)
                if fail:
                    raise RuntimeError(f"{task} attempt failed")
                return f"result of {task}"

            scope.task(name=task, **options)(body_async)
        else:

            def body_sync(
                upstream: dict[str, Any], task: str = task, parents: tuple[str, ...] = parents
            ) -> str:
                fail = seen.enter(task, parents, upstream)
                seen.leave(task, not fail)
                if fail:
                    raise RuntimeError(f"{task} attempt failed")
                return f"result of {task}"

            scope.task(name=task, **options)(body_sync)


def expected_statuses(scenario: Scenario) -> dict[str, str]:
    status: dict[str, str] = {}
    for i, plan in enumerate(scenario.tasks):  # indices are a topological order
        if any(status[name(p)] != "SUCCESS" for p in plan.parents):
            status[name(i)] = "SKIPPED"
        elif plan.failures > plan.retries:
            status[name(i)] = "FAILED"
        else:
            status[name(i)] = "SUCCESS"
    return status


async def execute(scenario: Scenario) -> tuple[dict[str, Any], Observed, VirtualClock]:
    seen = Observed()
    clock = new_clock()
    engine = build_default_engine(
        max_parallel=scenario.max_parallel,
        max_workers=4,
        hooks=[fn_hook(on_dag_end=seen.ends.append)],
        clock=clock,
    )
    register(engine, scenario, seen)
    async with engine:
        run_id = await asyncio.wait_for(engine.run_once("random"), 30)
    return engine.get_run_report(run_id), seen, clock


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_scheduler_invariants_on_random_dags(scenario: Scenario) -> None:
    report, seen, clock = asyncio.run(execute(scenario))
    tasks = report["tasks"]
    names = [name(i) for i in range(len(scenario.tasks))]

    # every task ends SUCCESS, FAILED or SKIPPED, as the plan predicts
    assert set(tasks) == set(names)
    assert all(t["status"] in ("SUCCESS", "FAILED", "SKIPPED") for t in tasks.values())
    assert {n: t["status"] for n, t in tasks.items()} == expected_statuses(scenario)

    # SKIPPED exactly when an ancestor finally FAILED
    for i, plan in enumerate(scenario.tasks):
        ancestors: set[int] = set()
        stack = list(plan.parents)
        while stack:
            a = stack.pop()
            if a not in ancestors:
                ancestors.add(a)
                stack.extend(scenario.tasks[a].parents)
        ancestor_failed = any(tasks[name(a)]["status"] == "FAILED" for a in ancestors)
        assert (tasks[name(i)]["status"] == "SKIPPED") == ancestor_failed, name(i)

    # no task starts before all its parents succeeded, and each got its parents' results
    assert seen.violations == []

    # the in-flight bound holds
    assert 1 <= seen.peak <= scenario.max_parallel

    # attempts: as many as executions, never more than retries + 1; skipped tasks never ran
    expected_sleeps: list[float] = []
    for i, plan in enumerate(scenario.tasks):
        task = tasks[name(i)]
        runs = seen.executions[name(i)]
        assert runs <= plan.retries + 1
        if task["status"] == "SKIPPED":
            assert runs == 0
            assert task["attempt"] == 0
            continue
        assert task["attempt"] == runs == min(plan.failures, plan.retries) + 1
        if plan.retry_delay_s:
            expected_sleeps += [plan.retry_delay_s * 2.0**k for k in range(runs - 1)]
        if task["status"] == "SUCCESS":
            assert task["error"] is None
            kept = f"result of {name(i)}" if plan.retain_result else None
            assert task["result"] == kept
        else:
            assert task["error"] == f"RuntimeError: {name(i)} attempt failed"
            assert task["result"] is None

    # retry delays went through the engine clock
    assert sorted(clock.sleeps) == sorted(expected_sleeps)

    # run status rules, and on_dag_end saw the same status
    statuses = {t["status"] for t in tasks.values()}
    assert report["status"] == ("SUCCESS" if statuses == {"SUCCESS"} else "FAILED")
    assert report["finished_at"] is not None
    assert [(e.run_id, e.status) for e in seen.ends] == [(report["run_id"], report["status"])]
