"""Test helpers, public API: virtual time, recorded hook events, task overrides, one-call runs.

Everything here works with any test runner; the pytest plugin (``pytest_flowrun``) is a thin
layer over it.

Virtual time
    ``VirtualTimeLoop`` is a ``SelectorEventLoop`` whose ``time()`` is a ``VirtualClock``.
    When the loop has nothing ready to run and no ``run_in_executor`` work is in flight, it
    does not wait: it moves the clock to the next timer and fires it. So ``asyncio.sleep``,
    ``asyncio.timeout``, ``wait_for``, retry delays and timeouts of async tasks take no real
    time, and every timestamp and duration is the same on every run. While executor work
    (a sync task's thread) is in flight the loop waits for real, up to the next timer, so a
    sync task's timeout fires only after that much real time: the clock never jumps past it.
    Threads started by other means than ``run_in_executor`` are not seen.

``run_virtual(coro)`` runs a coroutine on a fresh virtual-time loop; ``VirtualTimeLoopPolicy``
and ``virtual_loop_factory`` plug the loop into pytest-asyncio or ``asyncio.Runner``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import selectors
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple, Unpack

from .clock import Clock
from .context import RunContext
from .engine import DagScope, Engine
from .hooks import (
    DagEndEvent,
    DagStartEvent,
    HookEvent,
    RunHook,
    TaskFailureEvent,
    TaskRetryEvent,
    TaskSkipEvent,
    TaskStartEvent,
    TaskSuccessEvent,
)
from .overrides import override_tasks

__all__ = [
    "DEFAULT_EPOCH",
    "RecordingHook",
    "VirtualClock",
    "VirtualTimeLoop",
    "VirtualTimeLoopPolicy",
    "current_clock",
    "format_report",
    "override_tasks",
    "run_dag",
    "run_virtual",
    "virtual_loop_factory",
]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
E = TypeVar("E")

DEFAULT_EPOCH = 1_700_000_000.0
"""Wall time (``VirtualClock.time()``) at virtual monotonic 0: 2023-11-14 22:13:20 UTC."""


class VirtualClock:
    """A ``flowrun.Clock`` on virtual time: ``monotonic()`` starts at 0.0, ``time()`` at
    ``epoch``, and both move only when a ``VirtualTimeLoop`` jumps to its next timer or when
    ``advance()`` is called.

    On a ``VirtualTimeLoop`` that uses this clock, ``sleep()`` is ``asyncio.sleep``; on any
    other loop it advances this clock by ``seconds`` and yields once, so retry delays still
    cost no real time (but ``asyncio.timeout`` then runs on real time).
    """

    __slots__ = ("_now", "epoch")

    def __init__(self, *, epoch: float = DEFAULT_EPOCH) -> None:
        self.epoch = float(epoch)
        self._now = 0.0

    def time(self) -> float:
        return self.epoch + self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualTimeLoop) and loop.clock is self:
            await asyncio.sleep(seconds)
            return
        if seconds > 0:
            self._now += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0); timers now due fire on the loop's next
        iteration. Call it from the loop's thread, or while no loop is running."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise ValueError(f"advance() takes seconds >= 0 (got {seconds!r})")
        self._now += seconds

    def _jump_to(self, when: float) -> None:
        self._now = max(self._now, when)

    def __repr__(self) -> str:
        return f"VirtualClock(monotonic={self._now!r}, time={self.time()!r})"


class _VirtualSelector(selectors.DefaultSelector):
    """The loop's selector: instead of blocking until the next timer, jump to it.

    ``BaseEventLoop._run_once`` asks ``select(timeout)`` with ``timeout`` = 0 when callbacks
    are ready, ``None`` when no timer is scheduled, else the time until the earliest timer.
    """

    loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self.loop
        if loop is None or timeout is None or timeout <= 0:
            return super().select(timeout)
        events = super().select(0)
        if events:
            return events
        if loop.executor_jobs:
            # A thread may still call back (its start arms a sync timeout, its end completes
            # the attempt): wait for real, but no longer than until the next timer.
            events = super().select(timeout)
            if events:
                return events
        loop._jump_to_next_timer(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (see the module docstring). ``clock`` is its
    ``VirtualClock`` (a new one unless given); ``executor_jobs`` counts ``run_in_executor``
    calls still in flight."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.clock = clock if clock is not None else VirtualClock()
        self.executor_jobs = 0
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        return self.clock.monotonic()

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[Unpack[Ts]], T], *args: *Ts
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self.executor_jobs += 1
        future.add_done_callback(self._executor_job_done)
        return future

    def _executor_job_done(self, future: asyncio.Future[Any]) -> None:
        self.executor_jobs -= 1

    async def shutdown_default_executor(self, *args: Any, **kwargs: Any) -> None:
        # Joining the pool's threads happens in a helper thread: time must not jump past the
        # join timeout meanwhile.
        self.executor_jobs += 1
        try:
            await super().shutdown_default_executor(*args, **kwargs)
        finally:
            self.executor_jobs -= 1

    def _jump_to_next_timer(self, timeout: float) -> None:
        scheduled = getattr(self, "_scheduled", None)  # BaseEventLoop's timer heap
        if scheduled:
            self.clock._jump_to(scheduled[0].when())
        else:  # pragma: no cover - only if asyncio's internals change
            self.clock._jump_to(self.clock.monotonic() + timeout)


def virtual_loop_factory(clock: VirtualClock | None = None) -> Callable[[], VirtualTimeLoop]:
    """A ``loop_factory`` for ``asyncio.Runner`` or pytest-asyncio's
    ``pytest_asyncio_loop_factories`` hook; every loop shares ``clock`` if given."""

    def factory() -> VirtualTimeLoop:
        return VirtualTimeLoop(clock)

    return factory


class VirtualTimeLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose new loops run on virtual time (for pytest-asyncio's
    ``event_loop_policy`` fixture); every loop shares ``clock`` if given."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        super().__init__()
        self.clock = clock

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return VirtualTimeLoop(self.clock)


def current_clock() -> VirtualClock:
    """The ``VirtualClock`` of the running loop (inside an ``async def`` on virtual time)."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualTimeLoop):
        raise RuntimeError(
            f"the running event loop is a {type(loop).__name__}, not a VirtualTimeLoop: run "
            "the coroutine with run_virtual(), or give pytest-asyncio the loop factory "
            "flowrun.testing.virtual_loop_factory()"
        )
    return loop.clock


def run_virtual(coro: Coroutine[Any, Any, T], *, clock: VirtualClock | None = None) -> T:
    """Run ``coro`` to completion on a new ``VirtualTimeLoop`` (like ``asyncio.run``)."""
    with asyncio.Runner(loop_factory=virtual_loop_factory(clock)) as runner:
        return runner.run(coro)


class RecordingHook(RunHook):
    """A hook that keeps every event it receives, in order, in ``events``."""

    def __init__(self) -> None:
        self.events: list[HookEvent] = []

    def on_dag_start(self, event: DagStartEvent) -> None:
        self.events.append(event)

    def on_dag_end(self, event: DagEndEvent) -> None:
        self.events.append(event)

    def on_task_start(self, event: TaskStartEvent) -> None:
        self.events.append(event)

    def on_task_success(self, event: TaskSuccessEvent) -> None:
        self.events.append(event)

    def on_task_failure(self, event: TaskFailureEvent) -> None:
        self.events.append(event)

    def on_task_retry(self, event: TaskRetryEvent) -> None:
        self.events.append(event)

    def on_task_skip(self, event: TaskSkipEvent) -> None:
        self.events.append(event)

    def of(self, event_type: type[E]) -> list[E]:
        """The events of one type, e.g. ``hook.of(TaskRetryEvent)``."""
        return [e for e in self.events if isinstance(e, event_type)]

    def for_task(self, name: str) -> list[HookEvent]:
        """Every event about task ``name`` (start, success, retry, failure, skip)."""
        return [e for e in self.events if getattr(e, "task_name", None) == name]

    def task_order(self) -> list[str]:
        """Task names in the order of their first start (retries do not repeat a name)."""
        seen: dict[str, None] = {}
        for event in self.events:
            if isinstance(event, TaskStartEvent):
                seen.setdefault(event.task_name, None)
        return list(seen)

    def clear(self) -> None:
        self.events.clear()

    def __repr__(self) -> str:
        return f"RecordingHook({len(self.events)} events)"


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


def run_dag(
    target: Engine | DagScope,
    dag: str | None = None,
    *,
    context: object = None,
    targets: Iterable[str] | None = None,
    overrides: Mapping[str, Callable[..., Any]] | None = None,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Run one DAG to completion from synchronous code and return its report.

    ``target`` is an engine (``dag`` names the DAG; optional if it has only one) or a
    ``DagScope``. ``context`` is a ``RunContext`` or the deps object to wrap in one;
    ``targets`` runs a subgraph; ``overrides`` maps task names to stubs (``override_tasks``).
    With a ``VirtualClock`` (the default: the engine's own if it has one, else a new one) the
    run happens on a ``VirtualTimeLoop`` and the engine uses that clock for the run; with any
    other clock (e.g. ``SystemClock()``) it runs on a regular event loop in real time.
    """
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
        if isinstance(clock, VirtualClock):
            run_id = run_virtual(run(), clock=clock)
        else:
            run_id = asyncio.run(run())
    return engine.get_run_report(run_id)


def format_report(report: Mapping[str, Any], *, tracebacks: bool = True) -> str:
    """A run report as text: one line per task (status, attempt, duration), then the error
    and the traceback (trimmed to user code) of every failed task."""
    tasks: Mapping[str, Mapping[str, Any]] = report["tasks"]
    lines = [f"run {report['run_id']} of DAG {report['dag_name']!r}: {report['status']}"]
    width = max([4, *(len(name) for name in tasks)])
    lines.append(f"  {'task':<{width}}  {'status':<8}  {'attempt':>7}  {'duration':>10}")
    for name, info in tasks.items():
        started, finished = info["started_at"], info["finished_at"]
        duration = "-" if started is None or finished is None else f"{finished - started:.3f}s"
        lines.append(
            f"  {name:<{width}}  {info['status']:<8}  {info['attempt']:>7}  {duration:>10}"
        )
    for name, info in tasks.items():
        if info["status"] != "FAILED":
            continue
        lines.append("")
        lines.append(f"task {name!r} failed on attempt {info['attempt']}: {info['error']}")
        trace = info.get("traceback")
        if tracebacks and trace:
            lines.append(trim_traceback(trace).rstrip("\n"))
    return "\n".join(lines)


def _internal_dirs() -> tuple[str, ...]:
    import concurrent.futures
    import os
    import threading

    from . import engine

    return (
        os.path.dirname(engine.__file__) + os.sep,
        os.path.dirname(asyncio.__file__) + os.sep,
        os.path.dirname(concurrent.futures.__file__) + os.sep,
        threading.__file__,
    )


def trim_traceback(text: str) -> str:
    """Drop the frames of flowrun, asyncio and the thread pool from a formatted traceback, so
    what is left is the user's code; a traceback with no user frame is returned unchanged."""
    internal = _internal_dirs()
    kept: list[str] = []
    frame: list[str] = []
    dropped = kept_frames = 0

    def close_frame() -> None:
        nonlocal dropped, kept_frames
        if not frame:
            return
        match = re.match(r'\s*File "([^"]+)"', frame[0])
        if match and match.group(1).startswith(internal):
            dropped += 1
        else:
            kept_frames += 1
            kept.extend(frame)
        frame.clear()

    for line in text.splitlines(keepends=True):
        if line.startswith('  File "'):
            close_frame()
            frame.append(line)
        elif frame and line.startswith("    "):
            frame.append(line)
        else:
            close_frame()
            kept.append(line)
    close_frame()
    if not kept_frames or not dropped:
        return text
    return "".join(kept)
