"""Time as the engine sees it.

Every timestamp, duration and retry delay goes through a ``Clock`` so that tests can swap in
virtual time; nothing else in flowrun reads the system clock.
"""

from __future__ import annotations

import asyncio
import time as _time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Source of wall time (report timestamps), monotonic time (durations) and sleeps.

    A clock may also have ``random() -> float`` (in [0, 1)); retry jitter then draws from it
    (``flowrun.testing.VirtualClock`` does, seeded, so jittered runs are reproducible).
    """

    def time(self) -> float:
        """Wall-clock seconds since the epoch, for report timestamps."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for durations and deadlines."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (retry delays)."""
        ...


class SystemClock:
    """The real clock: ``time.time``, ``time.monotonic`` and ``asyncio.sleep``."""

    __slots__ = ()

    # The C functions themselves, not Python methods calling them: the scheduler reads the
    # clock several times per task, and a Python frame per read is measurable at 10k tasks.
    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"
