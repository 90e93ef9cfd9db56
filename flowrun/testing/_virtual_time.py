"""Virtual time: a clock and an event loop on which timers fire without waiting.

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
import math
import random
import selectors
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple, Unpack

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


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

    # BaseEventLoop._run_once fires the timers with ``when < time() + _clock_resolution``.
    # The resolution (1e-9 s) is below one float step of the time once it passes 2**24 s
    # (~194 days), so the sum rounds back to ``time()`` and a timer the clock just jumped to
    # (``when == time()``) is never due: the loop spun at 100 % CPU forever. The margin is
    # therefore at least one float step (``math.ulp``) of the current time, so a timer at
    # exactly ``time()`` is always due, however far virtual time has run.
    @property
    def _clock_resolution(self) -> float:
        return max(self._base_resolution, math.ulp(self.clock.monotonic()))

    @_clock_resolution.setter
    def _clock_resolution(self, value: float) -> None:  # set by BaseEventLoop.__init__
        self._base_resolution = value

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
