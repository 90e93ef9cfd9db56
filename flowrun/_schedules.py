"""Schedules: when a DAG is due (``engine.schedule`` / ``dag.schedule``), and which of the
due times a server runs after a downtime.

A ``Schedule`` is declared once and checked at once: a bad cron expression, zone, interval or
policy raises a ``ScheduleError`` naming the DAG and the option. Its ticks come from
``flowrun._cron``; what is done with them (claiming a tick in the state store, overlap, the
runs) is ``flowrun._serve``'s job. ``plan_due`` is the pure part of catching up, kept apart so
that every policy is testable without a loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ._cron import CronError, CronSchedule, IntervalTicks
from .errors import ScheduleError, suggest

__all__ = [
    "CATCHUP_POLICIES",
    "OVERLAP_POLICIES",
    "DuePlan",
    "Schedule",
    "ScheduleError",
    "ScheduleOptions",
    "plan_due",
]

CATCHUP_POLICIES = ("latest", "all", "none")
"""After a downtime: run only the most recent missed tick, each (at most ``max_catchup``),
or none."""

OVERLAP_POLICIES = ("skip", "queue", "allow")
"""A tick due while the schedule's previous run is still running: record it skipped, run it
after that run, or run it alongside."""

DEFAULT_MAX_CATCHUP = 10  # Engine.schedule spells it out: its module loads this one lazily


class ScheduleOptions(TypedDict, total=False):
    """The options of ``Engine.schedule`` (so ``DagScope.schedule`` is typed without
    repeating them)."""

    cron: str | None
    every: float | None
    tz: str
    catchup: str
    max_catchup: int
    overlap: str
    origin: float
    name: str | None


@dataclass(frozen=True, slots=True)
class Schedule:
    """When DAG ``dag`` is due: a 5-field ``cron`` expression read in zone ``tz``, or every
    ``every`` seconds on the grid ``origin + k * every`` (epoch seconds, so restarts do not
    drift). ``name`` identifies its ticks in the state store: change the expression and it is
    a new schedule, with no catch-up of the old one's ticks. Build it with
    ``engine.schedule(...)``, which checks every option."""

    name: str
    dag: str
    cron: str | None
    every: float | None
    tz: str
    catchup: str
    max_catchup: int
    overlap: str
    origin: float
    _ticks: CronSchedule | IntervalTicks = field(repr=False, compare=False)
    _zone: ZoneInfo | None = field(repr=False, compare=False)

    @property
    def spec(self) -> str:
        """The when, as the user wrote it: ``cron '0 6 * * *' (Europe/Berlin)`` or
        ``every 900s``."""
        return _spec(self.cron, self.every, self.tz)

    def next_after(self, after: float) -> float:
        """The first tick strictly after epoch second ``after``."""
        if isinstance(self._ticks, IntervalTicks):
            return self._ticks.next_after(after)
        return self._ticks.next_after(after, self._zone)

    def local(self, when: float) -> str:
        """``when`` as an ISO time in the schedule's zone, for messages and listings."""
        zone = self._zone if self._zone is not None else UTC
        return datetime.fromtimestamp(when, zone).isoformat(timespec="seconds")


def _spec(cron: str | None, every: float | None, tz: str) -> str:
    if cron is not None:
        return f"cron {cron!r}" + (f" ({tz})" if tz != "UTC" else "")
    return f"every {every:g}s"


def make_schedule(
    dag: str,
    *,
    cron: str | None,
    every: float | None,
    tz: str,
    catchup: str,
    max_catchup: int,
    overlap: str,
    origin: float,
    name: str | None,
) -> Schedule:
    """Check every option and build the schedule (``engine.schedule`` calls it)."""
    where = f"schedule of DAG {dag!r}"

    def bad(option: str, got: object, message: str) -> ScheduleError:
        return ScheduleError(f"{where}: {message}", dag=dag, schedule=name, option=option, got=got)

    if (cron is None) == (every is None):
        both = "both cron= and every=" if cron is not None else "neither cron= nor every="
        raise ScheduleError(
            f"{where}: give exactly one of cron= (e.g. cron='0 6 * * *') or every= (seconds, "
            f"e.g. every=900); got {both}",
            dag=dag,
            schedule=name,
        )
    if not isinstance(tz, str):
        raise bad("tz", tz, f"tz must be an IANA zone name such as 'Europe/Berlin' (got {tz!r})")
    zone: ZoneInfo | None = None
    if tz != "UTC":
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            hint = suggest(tz, available_timezones())
            raise bad("tz", tz, f"unknown time zone {tz!r} (an IANA name).{hint}") from None
    ticks: CronSchedule | IntervalTicks
    if cron is not None:
        if not isinstance(cron, str):
            raise bad("cron", cron, f"cron must be a string such as '0 6 * * *' (got {cron!r})")
        try:
            ticks = CronSchedule.parse(cron)
        except CronError as exc:
            raise bad("cron", cron, str(exc)) from exc
    else:
        if isinstance(every, bool) or not isinstance(every, (int, float)):
            raise bad("every", every, f"every must be a number of seconds (got {every!r})")
        if not (math.isfinite(every) and every > 0):
            raise bad("every", every, f"every must be > 0 seconds (got {every!r})")
        if isinstance(origin, bool) or not isinstance(origin, (int, float)):
            raise bad("origin", origin, f"origin must be epoch seconds (got {origin!r})")
        if not math.isfinite(origin):
            raise bad("origin", origin, f"origin must be finite (got {origin!r})")
        if tz != "UTC":
            raise bad("tz", tz, "tz= applies to cron= schedules; every= ticks are instants")
        ticks = IntervalTicks(float(every), float(origin))
    for option, value, choices in (
        ("catchup", catchup, CATCHUP_POLICIES),
        ("overlap", overlap, OVERLAP_POLICIES),
    ):
        if value not in choices:
            known = ", ".join(repr(c) for c in choices)
            hint = suggest(str(value), choices)
            raise bad(option, value, f"{option} must be one of {known} (got {value!r}).{hint}")
    if isinstance(max_catchup, bool) or not isinstance(max_catchup, int) or max_catchup < 1:
        raise bad("max_catchup", max_catchup, f"max_catchup must be >= 1 (got {max_catchup!r})")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise bad("name", name, f"name must be a non-empty string (got {name!r})")
    return Schedule(
        name=name if name is not None else f"{dag} {_spec(cron, every, tz)}",
        dag=dag,
        cron=cron,
        every=None if every is None else float(every),
        tz=tz,
        catchup=catchup,
        max_catchup=max_catchup,
        overlap=overlap,
        origin=float(origin),
        _ticks=ticks,
        _zone=zone,
    )


@dataclass(frozen=True, slots=True)
class DuePlan:
    """What to do with the ticks that fell due in ``(after, now]``: run ``run`` (oldest
    first); ``missed`` ticks are not run (``missed_first``/``missed_last`` bound them, None
    when ``missed`` is 0)."""

    run: tuple[float, ...]
    missed: int
    missed_first: float | None
    missed_last: float | None


def plan_due(schedule: Schedule, after: float, now: float, *, awake: bool) -> DuePlan:
    """The ticks of ``schedule`` in ``(after, now]`` and which of them to run.

    A server that was ``awake`` and woke for one tick runs it. After a downtime (or a wake-up
    late by more than one tick: a suspended machine) the catch-up policy decides: ``latest``
    runs the newest, ``all`` the newest ``max_catchup`` oldest first, ``none`` nothing. The
    ticks are walked once and at most ``max_catchup + 1`` are held, so a long outage costs
    time, never memory."""
    keep = schedule.max_catchup if schedule.catchup == "all" else 1
    window: list[float] = []  # the newest keep + 1 ticks: the kept ones and the one before
    seen = 0
    first: float | None = None
    tick = schedule.next_after(after)
    while tick <= now:
        seen += 1
        if first is None:
            first = tick
        window.append(tick)
        if len(window) > keep + 1:
            del window[0]
        tick = schedule.next_after(tick)
    if not seen:
        return DuePlan((), 0, None, None)
    if awake and seen == 1:
        return DuePlan((window[-1],), 0, None, None)
    run = () if schedule.catchup == "none" else tuple(window[-keep:])
    missed = seen - len(run)
    if not missed:
        return DuePlan(run, 0, None, None)
    last_missed = window[-1] if not run else window[-len(run) - 1]
    return DuePlan(run, missed, first, last_missed)
