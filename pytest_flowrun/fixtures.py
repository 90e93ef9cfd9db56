"""The plugin's fixtures. Each is isolated per test; flowrun is imported only when used."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flowrun import Clock, DagScope, Engine, TaskRegistry, TickEvent
    from flowrun.testing import RecordingHook

__all__ = [
    "FlowrunRunner",
    "FlowrunServer",
    "flowrun_clock",
    "flowrun_engine",
    "flowrun_events",
    "flowrun_registry",
    "flowrun_report",
    "flowrun_run",
    "flowrun_serve",
]

_UNSET: Any = object()
EXPECTED = ("SUCCESS", "FAILED", None)

EXPECT_MISMATCH = pytest.StashKey[str]()
"""On a test item whose ``flowrun`` marker run ended other than ``expect=``: the failure text,
raised in the call phase (``pytest_pyfunc_call``) instead of running the test body."""


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
    """A ``RecordingHook`` that records every run the plugin's helpers start in the test: the
    runs of ``flowrun_engine`` (built with it), and the runs ``flowrun_run`` and the
    ``flowrun`` marker make of any engine or scope (a module-level one too: the hook is added
    to that engine for the run only, so nothing stays attached after it)."""
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
    ``flowrun.testing.run_dag``), on the test's ``flowrun_clock``, recorded by
    ``flowrun_events``."""

    def __init__(self, clock: Clock, events: RecordingHook | None = None) -> None:
        self.clock = clock
        self.events = events

    def __call__(
        self,
        target: Engine | DagScope,
        dag: str | None = None,
        *,
        context: object = None,
        targets: Iterable[str] | None = None,
        overrides: Mapping[str, Callable[..., Any]] | None = None,
    ) -> dict[str, Any]:
        from flowrun._overrides import hide_usage_error
        from flowrun.testing import run_dag

        __tracebackhide__ = hide_usage_error
        return run_dag(
            target,
            dag,
            context=context,
            targets=targets,
            overrides=overrides,
            clock=self.clock,
            hooks=() if self.events is None else (self.events,),
        )


class FlowrunServer:
    """``flowrun_serve(engine_or_scope, seconds)`` serves the engine's schedules for
    ``seconds`` of ``flowrun_clock`` and returns the ``TickEvent`` of each tick (see
    ``flowrun.testing.serve_for``); the runs are recorded by ``flowrun_events``."""

    def __init__(self, clock: Clock, events: RecordingHook | None = None) -> None:
        self.clock = clock
        self.events = events

    def __call__(self, target: Engine | DagScope, seconds: float) -> list[TickEvent]:
        from flowrun.testing import serve_for

        hooks = () if self.events is None else (self.events,)
        return serve_for(target, seconds, clock=self.clock, hooks=hooks)


@pytest.fixture
def flowrun_serve(flowrun_clock: Clock, flowrun_events: RecordingHook) -> FlowrunServer:
    """Serve schedules from a plain ``def`` test, on virtual time: ``flowrun_serve(engine,
    86_400)`` runs a day of ticks in milliseconds."""
    return FlowrunServer(flowrun_clock, flowrun_events)


@pytest.fixture
def flowrun_run(flowrun_clock: Clock, flowrun_events: RecordingHook) -> FlowrunRunner:
    """Run a DAG from a plain ``def`` test, on virtual time: ``flowrun_run(engine, "etl")``."""
    return FlowrunRunner(flowrun_clock, flowrun_events)


def _failure(message: str) -> BaseException:
    """``pytest.fail``'s exception, to raise ``from None`` in an ``except`` block: the message
    alone, without the exception it replaces."""
    return pytest.fail.Exception(message, pytrace=False)


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
def flowrun_report(
    request: pytest.FixtureRequest, flowrun_clock: Clock, flowrun_events: RecordingHook
) -> dict[str, Any]:
    """The report of the run made by ``@pytest.mark.flowrun(engine_or_scope, dag, ...)``.

    The run happens at setup; a status other than ``expect=`` fails the test in its call
    phase (a FAILED test, not a setup ERROR), with the rendered report, and its body does not
    run. A marker that cannot run (bad arguments, an unknown task, a stub that does not fit
    its task) is a setup error with one message."""
    from flowrun.errors import DagValidationError, UnknownDagError, UnknownTaskError
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
        raise _failure(f"bad flowrun marker ({exc}); usage: {usage}") from None
    if target is _UNSET:
        pytest.fail(f"the flowrun marker needs the engine or DAG scope to run: {usage}", False)
    if expect not in EXPECTED:
        pytest.fail(
            f"flowrun marker: expect must be 'SUCCESS', 'FAILED' or None (got {expect!r})", False
        )
    try:
        engine, dag_name = resolve_target(target, dag)
    except (TypeError, ValueError) as exc:
        raise _failure(f"flowrun marker: {exc}") from None
    if context is _UNSET:
        context = request.node.ihook.pytest_flowrun_context(
            dag_name=dag_name, engine=engine, config=request.config
        )
    try:
        report = run_dag(
            engine,
            dag_name,
            context=context,
            targets=targets,
            overrides=overrides,
            clock=flowrun_clock,
            hooks=(flowrun_events,),
        )
    except (DagValidationError, UnknownDagError, UnknownTaskError) as exc:
        raise _failure(f"flowrun marker: {exc}") from None
    if expect is not None and report["status"] != expect:
        request.node.stash[EXPECT_MISMATCH] = (
            f"DAG {dag_name!r} finished {report['status']}, expected {expect}\n\n"
            f"{format_report(report)}\n\n{engine.display_dag(dag_name)}"
        )
    return report


@pytest.fixture(autouse=True)
def _flowrun_marker(request: pytest.FixtureRequest) -> None:
    """Runs the DAG of a ``flowrun`` marker before the test body, used or not."""
    marker = request.node.get_closest_marker("flowrun")
    if marker is not None and (marker.args or marker.kwargs):
        request.getfixturevalue("flowrun_report")
