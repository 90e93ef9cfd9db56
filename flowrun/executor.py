"""One attempt of one task: async on the loop, sync on an Executor, with its timeout.

A sync attempt's timeout counts from when a worker thread starts it. When it expires the
attempt fails and its scheduling slot is freed, but Python cannot kill a thread: the function
keeps running in its worker until it returns, and its late result is discarded. Long sync tasks
should poll ``context.cancelled()``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .clock import Clock
from .context import RunContext
from .errors import TaskTimeoutError
from .task import TaskSpec

if TYPE_CHECKING:
    from .scheduler import Run

__all__ = ["Attempt", "EscalatedError"]


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
        "context",
        "finished",
        "future",
        "number",
        "run",
        "spec",
        "start_mono",
        "start_wall",
        "timed_out",
        "timer",
    )

    def __init__(self, run: Run, spec: TaskSpec, number: int, context: RunContext[Any] | None):
        self.run = run
        self.spec = spec
        self.number = number
        self.context = context
        self.future: asyncio.Future[Any] | None = None
        self.start_wall = 0.0
        self.start_mono = 0.0
        self.timed_out = False
        self.finished = False
        self.timer: asyncio.TimerHandle | None = None

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
        self.run.attempt_done(self)

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
        self.run.attempt_done(self)

    def on_thread_start(self) -> None:
        """Called on the loop when a worker thread starts a sync attempt with a timeout."""
        timeout = self.spec.timeout_s
        if timeout is not None and not self.finished:
            self.timer = self.run.loop.call_later(timeout, self.time_out)

    def timeout_error(self) -> TaskTimeoutError:
        timeout = self.spec.timeout_s
        message = f"task {self.spec.name!r} timed out after {timeout:g}s (timeout_s={timeout:g})"
        if not self.spec.is_async:
            message += (
                "; its worker thread cannot be killed and runs on until the function returns "
                "(the late result is discarded): poll context.cancelled() to stop early"
            )
        return TaskTimeoutError(message)

    def start(self, args: list[Any], kwargs: dict[str, Any], executor: Executor) -> None:
        """Launch on the loop (async) or on ``executor`` (sync); completion calls ``self``."""
        run = self.run
        loop = run.loop
        spec = self.spec
        clock = run.clock
        try:
            if spec.is_async:
                self.start_mono = clock.monotonic()
                if spec.timeout_s is not None and self.context is not None:
                    self.context.set_deadline(self.start_mono + spec.timeout_s)
                future: asyncio.Future[Any] = loop.create_task(
                    _run_async(spec.func, args, kwargs, spec.timeout_s, self)
                )
            elif isinstance(executor, ThreadPoolExecutor):
                ctx = contextvars.copy_context()
                future = loop.run_in_executor(
                    executor, ctx.run, _run_sync, self, clock, spec.func, args, kwargs
                )
            else:  # other executors (processes, Dask) need a picklable callable
                self.start_mono = clock.monotonic()
                future = loop.run_in_executor(
                    executor, functools.partial(call_sync_task, spec.name, spec.func, args, kwargs)
                )
                if spec.timeout_s is not None:
                    self.timer = loop.call_later(spec.timeout_s, self.time_out)
        except Exception as exc:  # e.g. an executor already shut down: the attempt fails
            self.start_mono = clock.monotonic()
            future = loop.create_future()
            future.set_exception(exc)
        self.future = future
        future.add_done_callback(self)


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
        attempt.run.loop.call_soon_threadsafe(attempt.on_thread_start)
    return call_sync_task(attempt.spec.name, func, args, kwargs)


def call_sync_task(
    name: str, func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> Any:
    """Call a sync task where it runs (thread, process, cluster); module-level so it pickles."""
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # avoid "coroutine was never awaited"
        raise TypeError(
            f"task {name!r} is a sync function that returned an awaitable "
            f"({type(result).__name__}); declare it 'async def' so the engine awaits it"
        )
    return result


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
        try:
            async with scope:
                return await func(*args, **kwargs)
        except TimeoutError:
            if scope.expired():  # ours; a TimeoutError of the task's own code stays its own
                raise attempt.timeout_error() from None
            raise
    except (KeyboardInterrupt, SystemExit) as exc:
        raise EscalatedError(exc) from exc
