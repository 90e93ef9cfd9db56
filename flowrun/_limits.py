"""Slots: how many attempts may be in flight across every run of one engine (``max_parallel``),
and per pool (``engine.pool("crm_api", slots=2)``, e.g. the calls one API allows at a time).

A task of a pool takes its pool slots first and an engine slot after, so a task that waits for
its pool never holds engine capacity that other tasks could use. Both hand freed slots to
waiters first come, first served: runs for engine slots, ready tasks (of any run) for pool
slots, so the order is deterministic.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

__all__ = ["Limiter", "Pool", "ReadyEntry", "SlotWaiter"]

ReadyEntry = tuple[str, int, float]
"""A task ready to launch: (name, attempt number, monotonic time it became ready)."""


class SlotWaiter(Protocol):
    """A run as the limiter sees it: slots granted to it, whether it waits, how to wake it."""

    granted: int
    wants_slot: bool
    closed: bool

    def wake(self) -> None: ...

    def pool_granted(self, entry: ReadyEntry) -> None: ...


class Pool:
    """A named number of slots shared by the tasks that name it, in every DAG and run."""

    __slots__ = ("free", "name", "slots", "waiters")

    def __init__(self, name: str, slots: int) -> None:
        self.name = name
        self.slots = slots
        self.free = slots
        self.waiters: deque[tuple[SlotWaiter, ReadyEntry, int]] = deque()

    def __repr__(self) -> str:
        return f"Pool({self.name!r}, slots={self.slots}, free={self.free})"


class Limiter:
    """Engine slots and pools of one engine."""

    __slots__ = ("free", "pools", "waiters")

    def __init__(self, max_parallel: int) -> None:
        self.free = max_parallel
        self.waiters: deque[SlotWaiter] = deque()
        self.pools: dict[str, Pool] = {}

    # -- engine slots --------------------------------------------------------------------
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
        """``run`` is over: return the slots granted to it, stop waiting for more, and leave
        every pool queue."""
        while run.granted:
            run.granted -= 1
            self.release()
        run.wants_slot = False
        for pool in self.pools.values():
            if any(waiter is run for waiter, _, _ in pool.waiters):
                pool.waiters = deque(w for w in pool.waiters if w[0] is not run)
                self._grant_pool(pool)

    def release(self) -> None:
        while self.waiters:
            run = self.waiters.popleft()
            if run.wants_slot:
                run.wants_slot = False
                run.granted += 1
                run.wake()
                return
        self.free += 1

    # -- pools ---------------------------------------------------------------------------
    def take_pool(self, run: SlotWaiter, pool_name: str, slots: int, entry: ReadyEntry) -> bool:
        """Take ``slots`` of the pool for ``entry`` now, or queue it behind the tasks already
        waiting (``run.pool_granted(entry)`` is called once they are granted)."""
        pool = self.pools[pool_name]
        if not pool.waiters and pool.free >= slots:
            pool.free -= slots
            return True
        pool.waiters.append((run, entry, slots))
        return False

    def release_pool(self, pool_name: str, slots: int) -> None:
        pool = self.pools[pool_name]
        pool.free += slots
        self._grant_pool(pool)

    @staticmethod
    def _grant_pool(pool: Pool) -> None:
        waiters = pool.waiters
        while waiters and pool.free >= waiters[0][2]:
            run, entry, slots = waiters.popleft()
            if run.closed:
                continue  # its run ended while it waited
            pool.free -= slots
            run.pool_granted(entry)
