"""One attempt of one task: async on the loop, sync on an Executor, with its timeout.

A sync attempt's timeout counts from when a worker thread starts it. When it expires the
attempt fails and its scheduling slot is freed, but Python cannot kill a thread: the function
keeps running in its worker until it returns, and its late result is discarded. Long sync tasks
should poll ``context.cancelled()``.

On any other executor (a process pool, Dask) a sync attempt is submitted as a ``SyncCall``
(``_sync_calls``), which pickles; its timeout counts from the submission, since the driver
cannot see when a worker starts it. On timeout the executor's future is cancelled: that drops
a call not yet started, while a running one runs on in its worker and its late result is
discarded. The task's ``RunContext`` travels without its cancellation signal (a thread event).

An async attempt's timeout can only fire while the loop runs: code that blocks it (``time.sleep``,
CPU work, a blocking client) past the deadline returns before the timeout is delivered. Such an
attempt with a timeout is run step by step (``_Steps``), each synchronous stretch timed on the
loop's clock; one that kept the loop past the deadline leaves ``attempt.warning``, which the run
logs and records on the task, instead of a SUCCESS that says nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
from collections.abc import Callable, Coroutine, Generator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ._clock import Clock
from ._context import RunContext
from ._sync_calls import SyncCall, call_pickler, call_sync_task
from ._task import TaskSpec
from ._threads import DaemonThreadPool
from .errors import TaskTimeoutError

__all__ = ["Attempt", "EscalatedError", "Launcher", "SyncCall", "launch_async", "launcher_for"]

T = TypeVar("T")

THREAD_POOLS = (ThreadPoolExecutor, DaemonThreadPool)
"""Executors whose workers are threads of this process: tasks there get the caller's
contextvars, and their timeout starts when a worker picks them up."""


_PLAIN_RUN_IN_EXECUTOR = asyncio.BaseEventLoop.run_in_executor
"""A loop whose ``run_in_executor`` is this one sees nothing of the calls it does not make:
the engine's own pool then bypasses it (``DaemonThreadPool.call_for_loop``)."""


class _ReturnWatch:
    """Whether a watched call is really over, whether its attempt was abandoned, and what to
    run once it is over."""

    __slots__ = ("abandoned", "callback", "over")

    def __init__(self) -> None:
        self.over = False
        self.abandoned = False
        self.callback: Callable[[], None] | None = None


class EscalatedError(Exception):
    """Carries a ``KeyboardInterrupt``/``SystemExit`` out of a task's asyncio task.

    asyncio re-raises those two straight out of the event loop, which would leave the run
    unfinished; wrapping them lets the scheduler finalize the run first and then re-raise.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(repr(original))
        self.original = original


class Attempt:
    """One execution of a task; also the done-callback of its future."""

    __slots__ = (
        "clock",
        "context",
        "executor_name",
        "finished",
        "future",
        "loop",
        "name",
        "number",
        "on_done",
        "returns",
        "run_id",
        "spec",
        "start_mono",
        "start_wall",
        "timed_out",
        "timer",
        "warning",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        run_id: str,
        spec: TaskSpec,
        number: int,
        context: RunContext[Any] | None,
        on_done: Callable[[Attempt], None],
        name: str | None = None,
    ) -> None:
        self.loop = loop
        self.name = spec.name if name is None else name  # a mapped instance's: ``task[key]``
        self.clock = clock
        self.run_id = run_id
        self.on_done = on_done  # called on the loop once, when the attempt is over
        self.spec = spec
        self.number = number
        self.context = context
        self.executor_name: str | None = None  # set when it runs on a non-thread executor
        self.future: asyncio.Future[Any] | None = None
        self.start_wall = 0.0
        self.start_mono = 0.0
        self.timed_out = False
        self.finished = False
        self.timer: asyncio.TimerHandle | None = None
        self.returns: _ReturnWatch | None = None  # see track_return()
        self.warning: str | None = None  # an async attempt that blocked the loop past its timeout

    def __call__(self, future: asyncio.Future[Any]) -> None:
        """Done-callback of the attempt's future."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.finished:  # timed out or abandoned earlier: discard the late outcome
            if not future.cancelled():
                future.exception()  # mark retrieved, so asyncio does not log it
            return
        self.finished = True
        self.on_done(self)

    def time_out(self) -> None:
        """A sync attempt ran past its timeout: fail it now, whatever its thread still does.

        (Async attempts time out inside their own coroutine, through ``asyncio.timeout``.)
        """
        self.timer = None  # whoever finishes an attempt first cancels its timer
        self.timed_out = True
        self.finished = True
        if self.context is not None:
            self.context.cancel()
        if self.future is not None:
            # Stop waiting for the thread: this cancels only the asyncio side (and the work
            # if it never started); virtual-time loops then stop counting it as in flight.
            self.future.cancel()
        self.on_done(self)

    def succeeded(self) -> bool:
        """Completed with a result (not timed out, cancelled or failed)."""
        future = self.future
        return (
            future is not None
            and self.finished
            and not self.timed_out
            and future.done()
            and not future.cancelled()
            and future.exception() is None
        )

    def abandon(self) -> None:
        """Give up on the attempt (its run is aborting): its late outcome, if any, is
        discarded, a sync one is told to stop (``context.cancelled()``), an async one is
        cancelled."""
        self.finished = True
        if self.returns is not None:
            self.returns.abandoned = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.context is not None:
            self.context.cancel()
        if self.future is not None and not self.future.done():
            self.future.cancel()
            if self.spec.is_async:  # its late outcome is retrieved, so asyncio logs none
                self.future.add_done_callback(self)

    def track_return(self) -> None:
        """Before ``start``: watch for the call itself to be over, not only its asyncio side
        (a sync attempt holding pool slots, which a timed-out call still uses)."""
        self.returns = _ReturnWatch()

    def call_returned(self) -> None:
        """On the loop, once the call itself is over (returned, raised or never started)."""
        watch = self.returns
        if watch is not None:
            watch.over = True
            callback, watch.callback = watch.callback, None
            if callback is not None:
                callback()

    def when_call_returns(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the call is over: now if it is (or was never watched), else
        when its thread or worker really returns (a timed-out or abandoned call)."""
        watch = self.returns
        if watch is not None and not watch.over and (self.timed_out or watch.abandoned):
            watch.callback = callback
        else:
            callback()

    def on_thread_start(self) -> None:
        """Called on the loop when a worker thread starts a sync attempt with a timeout."""
        timeout = self.spec.timeout_s
        if timeout is not None and not self.finished:
            self.timer = self.loop.call_later(timeout, self.time_out)

    def timeout_error(self) -> TaskTimeoutError:
        timeout = self.spec.timeout_s
        message = (
            f"task {self.name!r} timed out after {timeout:g}s (timeout_s={timeout:g}) "
            f"in DAG {self.spec.dag!r}"
        )
        if self.executor_name is not None:
            message += (
                f" (counted from its submission to {self.executor_name}); the executor was "
                "asked to cancel it, but a call already running in a worker cannot be "
                "interrupted and runs on until it returns (the late result is discarded)"
            )
        elif not self.spec.is_async:
            message += (
                "; its worker thread cannot be killed and runs on until the function returns "
                "(the late result is discarded): poll context.cancelled() to stop early"
            )
        return TaskTimeoutError(message)

    def blocked_warning(self, seconds: float) -> str:
        """What to say of an async attempt that blocked the loop ``seconds`` past its deadline."""
        timeout = self.spec.timeout_s
        again = f" on attempt {self.number}" if self.number > 1 else ""
        took = f"{seconds:.1f}" if seconds >= 0.1 else f"{seconds:.3f}"
        return (
            f"task {self.name!r} (DAG {self.spec.dag!r}) blocked the event loop for {took} s"
            f"{again}, past its timeout_s={timeout:g}; blocking work belongs in a sync task "
            "(def, not async def)"
        )

    def start(self, args: list[Any], kwargs: dict[str, Any], launch: Launcher) -> None:
        """Launch with ``launch`` (see ``launcher_for``); completion calls ``self``."""
        try:
            future = launch(self, args, kwargs)
        except Exception as exc:  # e.g. an executor already shut down: the attempt fails
            self.start_mono = self.clock.monotonic()
            future = self.loop.create_future()
            future.set_exception(exc)
            future.add_done_callback(self)
        self.future = future


Launcher = Callable[[Attempt, list[Any], dict[str, Any]], "asyncio.Future[Any]"]
"""Starts an attempt's call and returns its future: one per kind of execution, chosen once.
It also sees to the attempt being called once the future has its outcome (a done callback,
or something cheaper: see ``_run_async`` and ``DaemonThreadPool.call_for_loop``)."""


def launch_async(attempt: Attempt, args: list[Any], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
    """An ``async def`` task: a task on the loop, timed out inside its own coroutine."""
    spec = attempt.spec
    attempt.start_mono = attempt.clock.monotonic()
    if spec.timeout_s is not None and attempt.context is not None:
        attempt.context.set_deadline(attempt.start_mono + spec.timeout_s)
    return attempt.loop.create_task(_run_async(spec.func, args, kwargs, spec.timeout_s, attempt))


def launcher_for(executor: Executor) -> Launcher:
    """How sync tasks start on ``executor``: decided once per executor, not per attempt."""
    if isinstance(executor, THREAD_POOLS):
        direct = executor.call_for_loop if isinstance(executor, DaemonThreadPool) else None

        def on_thread(
            attempt: Attempt, args: list[Any], kwargs: dict[str, Any]
        ) -> asyncio.Future[Any]:
            ctx = contextvars.copy_context()
            spec = attempt.spec
            clock, func = attempt.clock, spec.func
            loop = attempt.loop
            if attempt.returns is not None:
                future = _submit_tracked(
                    executor, attempt, ctx.run, _run_sync, attempt, clock, func, args, kwargs
                )
            elif direct and type(loop).run_in_executor is _PLAIN_RUN_IN_EXECUTOR:
                return direct(
                    loop, ctx.run, _run_sync, attempt, clock, func, args, kwargs, then=attempt
                )
            else:  # e.g. a virtual-time loop, which counts the calls in flight
                future = loop.run_in_executor(
                    executor, ctx.run, _run_sync, attempt, clock, func, args, kwargs
                )
            future.add_done_callback(attempt)
            return future

        return on_thread
    pickler = call_pickler(executor)
    name = type(executor).__name__

    def pickled(attempt: Attempt, args: list[Any], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        # Other executors (processes, Dask) get a picklable callable; the timeout counts from
        # the submission, since the driver cannot see when a worker starts it.
        spec = attempt.spec
        attempt.start_mono = attempt.clock.monotonic()
        attempt.executor_name = name
        key = f"{attempt.run_id}/{attempt.name}/{attempt.number}"
        call = SyncCall(key, attempt.name, spec.func, args, kwargs, pickler=pickler)
        if attempt.returns is not None:
            future = _submit_tracked(executor, attempt, call)
        else:
            future = attempt.loop.run_in_executor(executor, call)
        if spec.timeout_s is not None:
            attempt.timer = attempt.loop.call_later(spec.timeout_s, attempt.time_out)
        future.add_done_callback(attempt)
        return future

    return pickled


def _submit_tracked(
    executor: Executor, attempt: Attempt, fn: Callable[..., Any], *args: Any
) -> asyncio.Future[Any]:
    """``loop.run_in_executor`` that also tells the attempt when the call is really over,
    however the asyncio side ended (a timeout or a cancellation does not stop a call that
    started). It goes through the loop's own ``run_in_executor`` (a virtual-time loop counts
    the work in flight there) and catches the executor's future on the way."""
    loop = attempt.loop
    catcher = _FutureCatcher(executor)
    future = loop.run_in_executor(catcher, fn, *args)

    def over(_: object) -> None:  # in the worker thread, or wherever the work was cancelled
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for the slots
            loop.call_soon_threadsafe(attempt.call_returned)

    assert catcher.work is not None
    catcher.work.add_done_callback(over)
    return future


class _FutureCatcher(Executor):
    """Submits to ``executor`` and keeps the ``concurrent.futures.Future`` it returns."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.work: Future[Any] | None = None

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        work = self.executor.submit(fn, *args, **kwargs)
        self.work = work
        return work


def _run_sync(
    attempt: Attempt,
    clock: Clock,
    func: Callable[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
) -> Any:
    """Runs in the worker thread: record the real start, arm the timeout, call the task."""
    attempt.start_wall = clock.time()
    attempt.start_mono = start = clock.monotonic()
    timeout = attempt.spec.timeout_s
    if timeout is not None:
        if attempt.context is not None:
            attempt.context.set_deadline(start + timeout)
        attempt.loop.call_soon_threadsafe(attempt.on_thread_start)
    return call_sync_task(attempt.name, func, args, kwargs)


async def _run_async(
    func: Callable[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    timeout: float | None,
    attempt: Attempt,
) -> Any:
    try:
        if timeout is None:
            return await func(*args, **kwargs)
        scope = asyncio.timeout(timeout)
        work = func(*args, **kwargs)
        steps = _Steps(work, attempt.loop, scope, timeout) if inspect.iscoroutine(work) else None
        try:
            async with scope:
                if steps is None:
                    return await work
                steps.deadline = scope.when() or 0.0
                return await steps
        except TimeoutError:
            if scope.expired():  # ours; a TimeoutError of the task's own code stays its own
                raise attempt.timeout_error() from None
            raise
        finally:
            if steps is not None and steps.blocked:
                attempt.warning = attempt.blocked_warning(steps.blocked)
    except (KeyboardInterrupt, SystemExit) as exc:
        raise EscalatedError(exc) from exc
    except GeneratorExit:  # closed, never finished (its loop is closing): nobody waits
        attempt.finished = True
        raise
    finally:
        # The attempt's end, told from inside its coroutine: its asyncio task is done by the
        # time the scheduler looks (it sets the outcome in this same step), and a done
        # callback would cost a loop handle per task.
        if not attempt.finished:  # abandoned already (an aborting run): nobody waits
            attempt.finished = True
            attempt.on_done(attempt)


class _Steps(Generator[Any, Any, Any]):
    """Awaits a coroutine one step at a time, timing each step (a stretch of synchronous code
    during which the loop can do nothing else) on the loop's clock.

    ``blocked`` is the longest step that kept the loop past ``deadline`` before the timeout
    was delivered: one running when the deadline passed, or one that began after it (the
    task resumed first) and lasted a whole ``timeout_s``. A step after the timeout fired (the
    task's clean-up) is not counted. Two clock reads per step, and only for async tasks with
    a timeout."""

    __slots__ = ("blocked", "coro", "deadline", "scope", "time", "timeout")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        loop: asyncio.AbstractEventLoop,
        scope: asyncio.Timeout,
        timeout: float,
    ) -> None:
        self.coro = coro
        self.time = loop.time  # the clock asyncio.timeout's deadline is on
        self.scope = scope
        self.timeout = timeout
        self.deadline = 0.0
        self.blocked = 0.0

    def __await__(self) -> _Steps:
        return self

    def __iter__(self) -> _Steps:
        return self

    def __next__(self) -> Any:  # how asyncio resumes a task: the hot path, kept inline
        time = self.time
        start = time()
        try:
            return self.coro.send(None)
        finally:
            end = time()
            if end > self.deadline:
                self._past_deadline(start, end)

    def send(self, value: Any) -> Any:
        time = self.time
        start = time()
        try:
            return self.coro.send(value)
        finally:
            end = time()
            if end > self.deadline:
                self._past_deadline(start, end)

    def throw(self, typ: Any, value: Any = None, tb: Any = None) -> Any:
        exc = value if isinstance(value, BaseException) else typ
        if isinstance(exc, type):
            exc = exc() if value is None else exc(value)
        time = self.time
        start = time()
        try:
            return self.coro.throw(exc)
        finally:
            end = time()
            if end > self.deadline:
                self._past_deadline(start, end)

    def close(self) -> None:
        self.coro.close()

    def _past_deadline(self, start: float, end: float) -> None:
        """A step that ended after the deadline: count it unless the timeout was delivered
        already (the same at its start as now: the loop ran nothing in between)."""
        if self.scope.expired():
            return
        if start <= self.deadline or end - start >= self.timeout:
            self.blocked = max(self.blocked, end - start)
