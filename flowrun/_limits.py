"""Engine slots: how many attempts may be in flight across every run of one engine."""

from __future__ import annotations

from collections import deque
from typing import Protocol

__all__ = ["Limiter", "SlotWaiter"]


class SlotWaiter(Protocol):
    """A run as the limiter sees it: slots granted to it, whether it waits, how to wake it."""

    granted: int
    wants_slot: bool

    def wake(self) -> None: ...


class Limiter:
    """Bounds the tasks in flight across every run of one engine; hands freed slots to
    waiting runs first-come first-served."""

    __slots__ = ("free", "waiters")

    def __init__(self, max_parallel: int) -> None:
        self.free = max_parallel
        self.waiters: deque[SlotWaiter] = deque()

    def acquire(self, run: SlotWaiter) -> bool:
        """Take a slot for one launch of ``run``: a slot granted to it earlier, else a free
        one. Without either, ``run`` queues (once) and is woken when a slot is granted."""
        if run.granted:
            run.granted -= 1
            return True
        if self.free:
            self.free -= 1
            return True
        if not run.wants_slot:
            run.wants_slot = True
            self.waiters.append(run)
        return False

    def give_back(self, run: SlotWaiter) -> None:
        """``run`` is over: return the slots granted to it and stop waiting for more."""
        while run.granted:
            run.granted -= 1
            self.release()
        run.wants_slot = False

    def release(self) -> None:
        while self.waiters:
            run = self.waiters.popleft()
            if run.wants_slot:
                run.wants_slot = False
                run.granted += 1
                run.wake()
                return
        self.free += 1
