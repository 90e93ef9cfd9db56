"""The plugin's fixtures. Each is isolated per test; flowrun is imported only when used."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flowrun import Clock, DagScope, Engine, TaskRegistry
    from flowrun.testing import RecordingHook

__all__ = [
    "FlowrunRunner",
    "flowrun_clock",
    "flowrun_engine",
    "flowrun_events",
    "flowrun_registry",
    "flowrun_report",
    "flowrun_run",
]

_UNSET: Any = object()
EXPECTED = ("SUCCESS", "FAILED", None)


def _real_time(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("flowrun_real_time") is not None


@pytest.fixture
def flowrun_clock(request: pytest.FixtureRequest) -> Clock:
    """A fresh ``VirtualClock`` (a ``SystemClock`` under ``@pytest.mark.flowrun_real_time``).

    For an ``async def`` test it is a ``RunningLoopClock``: the test's loop clock when that
    loop runs on virtual time (pytest-asyncio with ``virtual_loop_factory``), so fixtures built
    before the loop existed agree with it."""
    if _real_time(request):
        from flowrun import SystemClock

        return SystemClock()
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        from flowrun.testing import RunningLoopClock

        return RunningLoopClock()
    from flowrun.testing import VirtualClock

    return VirtualClock()


@pytest.fixture
def flowrun_events() -> RecordingHook:
    """A ``RecordingHook``; ``flowrun_engine`` reports to it."""
    from flowrun.testing import RecordingHook

    return RecordingHook()


@pytest.fixture
def flowrun_registry() -> Iterator[TaskRegistry]:
    """A fresh ``TaskRegistry``, active for the global ``@task`` during the test."""
    from flowrun import TaskRegistry

    registry = TaskRegistry()
    token = registry.activate()
    try:
        yield registry
    finally:
        TaskRegistry.deactivate(token)


@pytest.fixture
def flowrun_engine(
    flowrun_clock: Clock, flowrun_events: RecordingHook, flowrun_registry: TaskRegistry
) -> Iterator[Engine]:
    """A fresh engine on ``flowrun_clock`` reporting to ``flowrun_events``, whose registry is
    ``flowrun_registry``; closed at teardown."""
    from flowrun import build_default_engine

    engine = build_default_engine(
        clock=flowrun_clock, hooks=[flowrun_events], registry=flowrun_registry
    )
    try:
        yield engine
    finally:
        engine.close()


class FlowrunRunner:
    """``flowrun_run(engine_or_scope, dag=None, *, context=None, targets=None,
    overrides=None)`` runs one DAG to completion and returns its report (see
    ``flowrun.testing.run_dag``), on the test's ``flowrun_clock``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def __call__(
        self,
        target: Engine | DagScope,
        dag: str | None = None,
        *,
        context: object = None,
        targets: Iterable[str] | None = None,
        overrides: Mapping[str, Callable[..., Any]] | None = None,
    ) -> dict[str, Any]:
        from flowrun.testing import run_dag

        return run_dag(
            target, dag, context=context, targets=targets, overrides=overrides, clock=self.clock
        )


@pytest.fixture
def flowrun_run(flowrun_clock: Clock) -> FlowrunRunner:
    """Run a DAG from a plain ``def`` test, on virtual time: ``flowrun_run(engine, "etl")``."""
    return FlowrunRunner(flowrun_clock)


def _marker_args(
    target: Any = _UNSET,
    dag: str | None = None,
    *,
    context: object = _UNSET,
    targets: Iterable[str] | None = None,
    overrides: Mapping[str, Callable[..., Any]] | None = None,
    expect: str | None = "SUCCESS",
) -> tuple[Any, str | None, object, Iterable[str] | None, Any, str | None]:
    return target, dag, context, targets, overrides, expect


@pytest.fixture
def flowrun_report(request: pytest.FixtureRequest, flowrun_clock: Clock) -> dict[str, Any]:
    """The report of the run made by ``@pytest.mark.flowrun(engine_or_scope, dag, ...)``."""
    from flowrun.testing import format_report, resolve_target, run_dag

    usage = (
        "@pytest.mark.flowrun(engine_or_scope, dag=None, *, context=..., targets=None, "
        "overrides=None, expect='SUCCESS')"
    )
    marker = request.node.get_closest_marker("flowrun")
    if marker is None:
        pytest.fail(f"the flowrun_report fixture needs the marker {usage}", pytrace=False)
    try:
        target, dag, context, targets, overrides, expect = _marker_args(
            *marker.args, **marker.kwargs
        )
    except TypeError as exc:
        pytest.fail(f"bad flowrun marker ({exc}); usage: {usage}", pytrace=False)
    if target is _UNSET:
        pytest.fail(f"the flowrun marker needs the engine or DAG scope to run: {usage}", False)
    if expect not in EXPECTED:
        pytest.fail(
            f"flowrun marker: expect must be 'SUCCESS', 'FAILED' or None (got {expect!r})", False
        )
    try:
        engine, dag_name = resolve_target(target, dag)
    except (TypeError, ValueError) as exc:
        pytest.fail(f"flowrun marker: {exc}", pytrace=False)
    if context is _UNSET:
        context = request.node.ihook.pytest_flowrun_context(
            dag_name=dag_name, engine=engine, config=request.config
        )
    report = run_dag(
        engine,
        dag_name,
        context=context,
        targets=targets,
        overrides=overrides,
        clock=flowrun_clock,
    )
    if expect is not None and report["status"] != expect:
        pytest.fail(
            f"DAG {dag_name!r} finished {report['status']}, expected {expect}\n\n"
            f"{format_report(report)}\n\n{engine.display_dag(dag_name)}",
            pytrace=False,
        )
    return report


@pytest.fixture(autouse=True)
def _flowrun_marker(request: pytest.FixtureRequest) -> None:
    """Runs the DAG of a ``flowrun`` marker before the test body, used or not."""
    marker = request.node.get_closest_marker("flowrun")
    if marker is not None and (marker.args or marker.kwargs):
        request.getfixturevalue("flowrun_report")
