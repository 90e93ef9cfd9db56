"""``run_dag``: one DAG run to completion from synchronous code, on virtual time by default;
``serve_for``: an engine's schedules served for a while, the same way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._clock import Clock
from .._context import RunContext
from .._engine import DagScope, Engine
from .._hooks import HookDispatcher, RunHook
from .._overrides import hide_usage_error, override_tasks
from ._virtual_time import (
    RunningLoopClock,
    VirtualClock,
    run_virtual,
)

if TYPE_CHECKING:
    from .._serve import TickEvent


def resolve_target(target: Engine | DagScope, dag: str | None = None) -> tuple[Engine, str]:
    """``(engine, dag name)`` from an engine (and a DAG name) or a ``DagScope``."""
    if isinstance(target, DagScope):
        if dag is not None and dag != target.name:
            raise ValueError(
                f"got the DAG scope {target.name!r} and the DAG name {dag!r}; give one of them"
            )
        return target.engine, target.name
    if not isinstance(target, Engine):
        raise TypeError(
            f"expected an Engine or a DagScope (engine.dag(...)), got {type(target).__name__}"
        )
    if dag is None:
        dags = target.list_dags()
        if len(dags) != 1:
            listed = ", ".join(repr(d) for d in dags) or "none"
            raise ValueError(f"the engine has {len(dags)} DAGs ({listed}); name the one to run")
        return target, dags[0]
    return target, target.resolve_dag_name(dag)


def as_context(context: object) -> RunContext[Any] | None:
    """``None`` and ``RunContext`` pass through; any other object becomes ``RunContext(obj)``."""
    if context is None or isinstance(context, RunContext):
        return context
    return RunContext(context)


@contextlib.contextmanager
def engine_clock(engine: Engine, clock: Clock) -> Iterator[None]:
    """Give ``engine`` the clock ``clock`` for the duration of the block."""
    previous = engine.clock
    engine.clock = clock
    try:
        yield
    finally:
        engine.clock = previous


@contextlib.contextmanager
def engine_hooks(engine: Engine, hooks: Sequence[RunHook]) -> Iterator[None]:
    """Add ``hooks`` to ``engine``'s for the duration of the block (a hook it already has is
    not added twice); on exit, even on error, the engine has exactly its own hooks again.

    This is how a test's ``RecordingHook`` records the runs of a module-level engine without
    staying attached to it: a run started in the block reports to the hooks, any later one
    does not."""
    extra = [hook for hook in hooks if hook not in engine.hooks]
    if not extra:
        yield
        return
    previous = engine.hooks, engine._hooks
    engine.hooks = (*previous[0], *extra)
    engine._hooks = HookDispatcher(engine.hooks, engine.logger)
    try:
        yield
    finally:
        engine.hooks, engine._hooks = previous


def run_dag(
    target: Engine | DagScope,
    dag: str | None = None,
    *,
    context: object = None,
    targets: Iterable[str] | None = None,
    overrides: Mapping[str, Callable[..., Any]] | None = None,
    clock: Clock | None = None,
    hooks: Sequence[RunHook] = (),
) -> dict[str, Any]:
    """Run one DAG to completion from synchronous code and return its report.

    ``target`` is an engine (``dag`` names the DAG; optional if it has only one) or a
    ``DagScope``. ``context`` is a ``RunContext`` or the deps object to wrap in one;
    ``targets`` runs a subgraph; ``overrides`` maps task names to stubs (``override_tasks``).
    With a ``VirtualClock`` (the default: the engine's own if it has one, else a new one) the
    run happens on a ``VirtualTimeLoop`` and the engine uses that clock for the run; with any
    other clock (e.g. ``SystemClock()``) it runs on a regular event loop in real time.
    ``hooks`` receive this run's events besides the engine's own hooks, and are detached when
    it ends (``engine_hooks``). A mistake in the arguments (an unknown DAG or task, a stub the
    task cannot call) raises before anything runs; under pytest it shows at the caller's line.
    """
    __tracebackhide__ = hide_usage_error
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "run_dag() runs its own event loop and cannot be called from async code; in an "
            "async test, await engine.run_once(...) instead (on virtual time with "
            "flowrun.testing.virtual_loop_factory())"
        )
    engine, dag_name = resolve_target(target, dag)
    if isinstance(clock, RunningLoopClock):
        clock = clock.current()  # no loop runs here: its own VirtualClock
    if clock is None:
        clock = engine.clock if isinstance(engine.clock, VirtualClock) else VirtualClock()
    run_context = as_context(context)
    if targets is not None and isinstance(targets, str):
        raise TypeError(f"targets must be a list of task names; write targets=[{targets!r}]")
    target_list = None if targets is None else list(targets)

    async def run() -> str:
        if target_list is None:
            return await engine.run_once(dag_name, run_context)
        return await engine.run_subgraph(dag_name, target_list, run_context)

    with contextlib.ExitStack() as stack:
        if overrides:
            stack.enter_context(override_tasks(engine, dag_name, **overrides))
        stack.enter_context(engine_clock(engine, clock))
        stack.enter_context(engine_hooks(engine, hooks))
        if isinstance(clock, VirtualClock):
            run_id = run_virtual(run(), clock=clock)
        else:
            run_id = asyncio.run(run())
    return engine.get_run_report(run_id)


def serve_for(
    target: Engine | DagScope,
    seconds: float,
    *,
    clock: Clock | None = None,
    hooks: Sequence[RunHook] = (),
) -> list[TickEvent]:
    """Serve the schedules of ``target``'s engine for ``seconds`` of the clock (``until =
    now + seconds``: ticks due up to that instant run, later ones not) and return a
    ``TickEvent`` per tick, in the order they were decided. On a ``VirtualClock`` (a new
    one by default, or the engine's own) a day of 15-minute ticks takes milliseconds;
    ``hooks`` are added to the engine for the call only, as with ``run_dag``."""
    engine = target.engine if isinstance(target, DagScope) else target
    if not isinstance(engine, Engine):
        raise TypeError(
            f"expected an Engine or a DagScope (engine.dag(...)), got {type(target).__name__}"
        )
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"seconds must be a number >= 0 (got {seconds!r})")
    if isinstance(clock, RunningLoopClock):
        clock = clock.current()
    if clock is None:
        clock = engine.clock if isinstance(engine.clock, VirtualClock) else VirtualClock()
    events: list[TickEvent] = []

    async def serve() -> None:
        await engine.serve(until=clock.time() + seconds, on_tick=events.append)

    with engine_clock(engine, clock), engine_hooks(engine, hooks):
        if isinstance(clock, VirtualClock):
            run_virtual(serve(), clock=clock)
        else:
            asyncio.run(serve())
    return events
