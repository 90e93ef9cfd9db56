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
    Threads started by other means than ``run_in_executor`` are not seen. While sockets are
    open (a client awaiting a reply, a test server listening), the loop first gives them
    ``io_grace_s`` (default 0.2 s) of real time without I/O before it jumps, so a local
    server's reply arrives before a timeout fires; each jump then costs that much real time.
    Network calls slower than that belong in real-time tests.

``run_virtual(coro)`` runs a coroutine on a fresh virtual-time loop; ``VirtualTimeLoopPolicy``
and ``virtual_loop_factory`` plug the loop into pytest-asyncio or ``asyncio.Runner``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import selectors
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple, Unpack

from ._clock import Clock
from ._context import RunContext
from ._engine import DagScope, Engine
from ._hooks import (
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
from ._overrides import override_tasks
from ._render import format_report, trim_traceback

__all__ = [
    "DEFAULT_EPOCH",
    "ExecutorContract",
    "RecordingHook",
    "RunningLoopClock",
    "VirtualClock",
    "VirtualTimeLoop",
    "VirtualTimeLoopPolicy",
    "current_clock",
    "format_report",
    "override_tasks",
    "resolve_target",
    "run_dag",
    "run_virtual",
    "trim_traceback",
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

    ``random()`` is the source of retry jitter for engines on this clock, seeded with ``seed``,
    so runs with ``retry_jitter`` give identical reports too. ``sleeps`` lists every delay
    slept on this clock (retry back-off, in order), for tests to assert exactly.
    """

    __slots__ = ("_now", "_random", "epoch", "sleeps")

    def __init__(self, *, epoch: float = DEFAULT_EPOCH, seed: int = 0) -> None:
        self.epoch = float(epoch)
        self._now = 0.0
        self._random = random.Random(seed)
        self.sleeps: list[float] = []

    def random(self) -> float:
        """A reproducible number in [0, 1): retry jitter on virtual time."""
        return self._random.random()

    def time(self) -> float:
        return self.epoch + self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
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
        elif len(self.get_map()) > 1:  # sockets besides the loop's own wake-up pipe
            # A reply may be on its way (an HTTP client, a database driver): give it
            # ``io_grace_s`` of real time before concluding the loop is idle.
            events = super().select(min(timeout, loop.io_grace_s))
            if events:
                return events
        loop._jump_to_next_timer(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (see the module docstring). ``clock`` is its
    ``VirtualClock`` (a new one unless given); ``executor_jobs`` counts ``run_in_executor``
    calls still in flight."""

    def __init__(self, clock: VirtualClock | None = None, *, io_grace_s: float = 0.2) -> None:
        self.clock = clock if clock is not None else VirtualClock()
        self.io_grace_s = 0.0
        self.executor_jobs = 0
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        if isinstance(io_grace_s, bool) or not isinstance(io_grace_s, (int, float)):
            self.close()
            raise TypeError(f"io_grace_s must be a number of seconds (got {io_grace_s!r})")
        if not io_grace_s >= 0:
            self.close()
            raise ValueError(f"io_grace_s must be >= 0 (got {io_grace_s!r})")
        self.io_grace_s = float(io_grace_s)

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


class RunningLoopClock:
    """A ``Clock`` that is the running ``VirtualTimeLoop``'s clock when there is one, and its
    own ``VirtualClock`` otherwise. An engine built before its ``async def`` test's loop exists
    (a pytest fixture) thus agrees with the loop's ``asyncio.sleep`` and timeouts."""

    __slots__ = ("_own",)

    def __init__(self) -> None:
        self._own = VirtualClock()

    def current(self) -> VirtualClock:
        """The clock in effect now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._own
        return loop.clock if isinstance(loop, VirtualTimeLoop) else self._own

    def time(self) -> float:
        return self.current().time()

    def monotonic(self) -> float:
        return self.current().monotonic()

    async def sleep(self, seconds: float) -> None:
        await self.current().sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.current().advance(seconds)

    def random(self) -> float:
        return self.current().random()

    def __repr__(self) -> str:
        return f"RunningLoopClock({self.current()!r})"


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

    def failures(self, *, final: bool | None = True) -> list[TaskFailureEvent]:
        """Failed attempts. By default only the final ones (one per task that failed for good);
        ``final=False`` gives the attempts that were retried, ``final=None`` every one."""
        return [
            e
            for e in self.events
            if isinstance(e, TaskFailureEvent) and (final is None or e.final is final)
        ]

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
        if isinstance(clock, VirtualClock):
            run_id = run_virtual(run(), clock=clock)
        else:
            run_id = asyncio.run(run())
    return engine.get_run_report(run_id)


# -- the executor contract ---------------------------------------------------------------------
# Task functions of the contract suite: module level, so that process pools and Dask workers
# import them by reference.


def _contract_numbers() -> list[int]:
    return [1, 2, 3]


def _contract_total(numbers: list[int]) -> int:
    return sum(numbers)


def _contract_fail(message: str) -> None:
    raise ValueError(message)


def _contract_count(upstream: Mapping[str, Any]) -> int:  # pragma: no cover - skipped
    return len(upstream)


def _contract_flaky(context: RunContext[Any]) -> int:
    if context.attempt < 2:
        raise ConnectionError(f"attempt {context.attempt} of {context.task_name!r} lost")
    return context.attempt


def _contract_hold(release: str, finished: str, limit_s: float) -> str:
    """Block until the file ``release`` exists (at most ``limit_s``), then write ``finished``:
    a task that is still running for as long as the test wants, with no timing involved."""
    deadline = time.monotonic() + limit_s
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    partial = f"{finished}.{os.getpid()}.tmp"
    with open(partial, "w", encoding="utf-8") as out:
        out.write("released" if os.path.exists(release) else "gave up")
    os.replace(partial, finished)  # atomic: a reader never sees it half written
    return "woke up"


def _wait_for_file(path: str, limit_s: float) -> str | None:
    deadline = time.monotonic() + limit_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
    with open(path, encoding="utf-8") as file:
        return file.read()


def _contract_spin(seconds: float) -> float:
    """Pure-Python work for ``seconds`` of this process's CPU time or less."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


def _contract_blob(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


def _contract_size(blob: bytes) -> int:
    return len(blob)


def _contract_lock() -> Any:
    return threading.Lock()


def _contract_meet(barrier: Any, who: str) -> str:
    barrier.wait()  # both tasks must be running at once for either to get past this
    return who


class _CountingExecutor(Executor):
    """Forwards to ``inner`` and records the largest number of calls in flight at once."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        future = self.inner.submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self.in_flight -= 1


class ExecutorContract:
    """What any ``concurrent.futures.Executor`` given to ``build_default_engine(executor=...)``
    must do for sync tasks, as a class-based pytest suite. Plug an executor in by subclassing
    it in a test module that provides an ``executor`` fixture (at least 2 workers)::

        @pytest.fixture(scope="module")
        def executor():
            with ProcessPoolExecutor(2) as pool:
                yield pool

        class TestMyPool(ExecutorContract):
            pickles = True  # False if the executor runs calls in this process (threads)

    The class name does not start with ``Test``, so pytest collects only the subclasses. The
    task functions are module-level functions of ``flowrun.testing``, which workers must be
    able to import. Each test builds its own engine on real time; none closes the executor.
    """

    pickles: bool = True
    """Whether the executor pickles calls and results (processes, Dask) or not (threads)."""

    timeout_s: float = 0.3
    """The timeout of the task that the timeout test holds running until the run is over."""

    hold_limit_s: float = 60.0
    """How long the timeout test's task waits to be released at most (its marker files must
    be on a file system the workers share with the test, as on one machine)."""

    def engine(self, executor: Executor, **options: Any) -> Engine:
        from ._engine import build_default_engine

        return build_default_engine(executor=executor, **options)

    def run(self, engine: Engine, dag: str, **options: Any) -> dict[str, Any]:
        from ._clock import SystemClock

        return run_dag(engine, dag, clock=SystemClock(), **options)

    def test_results_flow_downstream(self, executor: Executor) -> None:
        engine = self.engine(executor)
        engine.task(name="numbers", dag="flow")(_contract_numbers)
        engine.task(name="total", dag="flow", deps=["numbers"])(_contract_total)
        report = self.run(engine, "flow")
        assert report["status"] == "SUCCESS", format_report(report)
        assert report["tasks"]["numbers"]["result"] == [1, 2, 3]
        assert report["tasks"]["total"]["result"] == 6

    def test_failure_keeps_the_exception_type(self, executor: Executor) -> None:
        engine = self.engine(executor)
        engine.task_template(_contract_fail, dag="fail").bind("broken", message="bad row 42")
        engine.task(name="after", dag="fail", deps=["broken"])(_contract_count)
        report = self.run(engine, "fail")
        broken = report["tasks"]["broken"]
        assert report["status"] == "FAILED"
        assert broken["status"] == "FAILED"
        assert broken["error"] == "ValueError: bad row 42"
        assert "bad row 42" in broken["traceback"]
        assert report["tasks"]["after"]["status"] == "SKIPPED"

    def test_retries(self, executor: Executor) -> None:
        hook = RecordingHook()
        engine = self.engine(executor, hooks=[hook])
        engine.task(name="flaky", dag="retry", retries=1)(_contract_flaky)
        report = self.run(engine, "retry")
        flaky = report["tasks"]["flaky"]
        assert flaky["status"] == "SUCCESS", format_report(report)
        assert flaky["attempt"] == 2
        assert flaky["result"] == 2
        (retry,) = hook.of(TaskRetryEvent)
        assert retry.error == "ConnectionError: attempt 1 of 'flaky' lost"

    def test_timeout_fails_the_attempt_without_waiting_for_it(
        self, executor: Executor, tmp_path: Path
    ) -> None:
        release, finished = tmp_path / "release", tmp_path / "finished"
        engine = self.engine(executor)
        engine.task_template(_contract_hold, dag="slow", timeout_s=self.timeout_s).bind(
            "nap", release=str(release), finished=str(finished), limit_s=self.hold_limit_s
        )
        engine.task(name="numbers", dag="slow")(_contract_numbers)
        try:
            report = self.run(engine, "slow")
            # Proof by marker, not by the clock: the task is held until after the run ends.
            assert not finished.exists(), "the run waited for its timed-out task"
        finally:
            release.touch()
        error = report["tasks"]["nap"]["error"]
        assert report["tasks"]["nap"]["status"] == "FAILED"
        assert error.startswith(f"TaskTimeoutError: task 'nap' timed out after {self.timeout_s:g}s")
        assert report["tasks"]["numbers"]["status"] == "SUCCESS"
        # The abandoned call runs on to its end where it runs; its late result is discarded.
        assert _wait_for_file(str(finished), self.hold_limit_s) == "released"
        assert report["tasks"]["nap"]["result"] is None

    def test_max_parallel_bounds_calls_in_flight(self, executor: Executor) -> None:
        counting = _CountingExecutor(executor)
        engine = self.engine(counting, max_parallel=2)
        template = engine.task_template(_contract_spin, dag="wide")
        for i in range(6):
            template.bind(f"spin{i}", seconds=0.02)
        report = self.run(engine, "wide")
        assert report["status"] == "SUCCESS", format_report(report)
        assert counting.peak == 2

    def test_large_results_come_back(self, executor: Executor) -> None:
        size = 10 * 1024 * 1024
        engine = self.engine(executor)
        engine.task_template(_contract_blob, dag="big").bind("blob", size=size)
        engine.task(name="size", dag="big", deps=["blob"])(_contract_size)
        report = self.run(engine, "big")
        assert report["status"] == "SUCCESS", format_report(report)
        assert report["tasks"]["blob"]["result"] == _contract_blob(size)
        assert report["tasks"]["size"]["result"] == size

    def test_unpicklable_function_fails_only_its_task(self, executor: Executor) -> None:
        lock = threading.Lock()

        def local_function() -> int:  # a closure over a lock: neither pickle nor cloudpickle
            with lock:
                return 1

        engine = self.engine(executor)
        engine.task(name="local", dag="local")(local_function)
        engine.task(name="numbers", dag="local")(_contract_numbers)
        report = self.run(engine, "local")
        assert report["tasks"]["numbers"]["status"] == "SUCCESS"
        local = report["tasks"]["local"]
        if not self.pickles:
            assert local["status"] == "SUCCESS", format_report(report)
            return
        assert local["status"] == "FAILED"
        assert local["error"].startswith(
            "PicklingError: task 'local' could not be pickled to send it to the executor: "
        ), local["error"]

    def test_unpicklable_result_fails_only_its_task(self, executor: Executor) -> None:
        engine = self.engine(executor)
        engine.task(name="lock", dag="lock")(_contract_lock)
        engine.task(name="numbers", dag="lock")(_contract_numbers)
        report = self.run(engine, "lock")
        assert report["tasks"]["numbers"]["status"] == "SUCCESS"
        lock = report["tasks"]["lock"]
        if not self.pickles:
            assert lock["status"] == "SUCCESS", format_report(report)
            return
        assert lock["status"] == "FAILED"
        assert lock["error"].startswith(
            "PicklingError: task 'lock' returned a result that could not be pickled"
        ), lock["error"]

    def test_independent_tasks_run_concurrently(self, executor: Executor) -> None:
        import multiprocessing

        with multiprocessing.get_context("spawn").Manager() as manager:
            barrier = manager.Barrier(2, timeout=30)  # a proxy: it pickles and works anywhere
            engine = self.engine(executor, max_parallel=2)
            template = engine.task_template(_contract_meet, dag="meet")
            template.bind("left", barrier=barrier, who="left")
            template.bind("right", barrier=barrier, who="right")
            report = self.run(engine, "meet")
        assert report["status"] == "SUCCESS", format_report(report)
        assert report["tasks"]["left"]["result"] == "left"
