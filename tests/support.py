"""Helpers shared by the test modules (import them: ``from support import FakeClock``)."""

from __future__ import annotations

import asyncio

WALL_START = 1_000_000.0
"""The fake clock's wall time at monotonic 0: far from the real time, so a timestamp that
did not come from the engine clock stands out."""


class FakeClock:
    """A ``flowrun.Clock`` whose time only moves when someone sleeps on it or calls ``advance``.

    ``sleep`` records the requested delay, advances the clock by it and yields once to the
    loop, so retry back-off of hours costs nothing and the delays can be asserted exactly.
    """

    def __init__(self, wall_start: float = WALL_START) -> None:
        self.wall_start = wall_start
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.wall_start + self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)
