"""Schedule ticks kept in memory (``InMemoryStateStore``): the same rules as the SQLite
``ticks`` table, one record per (schedule, due time), the first claim wins."""

from __future__ import annotations

import threading

from .records import TickRecord

__all__ = ["TickBook", "check_limit"]


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an integer >= 1 or None (got {limit!r})")


class TickBook:
    """The ticks of every schedule, by schedule then due time."""

    def __init__(self) -> None:
        self._ticks: dict[str, dict[float, TickRecord]] = {}
        self._lock = threading.Lock()

    def record(self, tick: TickRecord) -> bool:
        with self._lock:
            own = self._ticks.setdefault(tick.schedule, {})
            if tick.due_at in own:
                return False
            own[tick.due_at] = tick
            return True

    def update(self, tick: TickRecord) -> None:
        with self._lock:
            own = self._ticks.get(tick.schedule)
            if own is None or tick.due_at not in own:
                raise KeyError(f"no tick of schedule {tick.schedule!r} due at {tick.due_at!r}")
            own[tick.due_at] = tick

    def list(self, schedule: str | None, limit: int | None) -> list[TickRecord]:
        check_limit(limit)
        with self._lock:
            if schedule is not None:
                ticks = list(self._ticks.get(schedule, {}).values())
            else:
                ticks = [t for own in self._ticks.values() for t in own.values()]
        ticks.sort(key=lambda t: (t.due_at, t.schedule), reverse=True)
        return ticks if limit is None else ticks[:limit]
