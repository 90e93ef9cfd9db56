"""Schedule times for ``flowrun serve``: cron expressions and fixed intervals.

``CronSchedule.parse(text)`` reads a 5-field cron expression (or a macro such as ``@daily``)
as Vixie cron does and rejects a bad one at once with a ``CronError`` naming the field;
``next_after(after, tz)`` is the first tick strictly after the epoch-second instant ``after``,
the expression read in zone ``tz`` (UTC by default). ``IntervalTicks`` ticks at
``origin + k * every``, a grid that a restart does not shift.

Syntax (Vixie cron's ``entry.c``): a field is a comma-separated list of ``*``, ``N``, ``N-M``,
each optionally followed by ``/STEP`` (1 up to the field's maximum less its minimum);
``N/STEP`` means ``N-<field max>/STEP`` (as croniter reads it; Vixie's parser rejects it).
Months take ``jan``-``dec``, weekdays ``sun``-``sat`` (any case, also as range ends); weekday
0 and 7 are both Sunday. Macros: ``@hourly`` (``0 * * * *``), ``@daily`` = ``@midnight``
(``0 0 * * *``), ``@weekly`` (``0 0 * * 0``), ``@monthly`` (``0 0 1 * *``), ``@yearly`` =
``@annually`` (``0 0 1 1 *``). Day of month and day of week: when both fields are restricted,
a day matches if *either* matches; when one is ``*`` only the other restricts. As with Vixie's
``DOM_STAR`` / ``DOW_STAR`` flags, a field counts as ``*`` when its text *starts* with ``*``,
so ``0 0 */2 * 1`` means "odd days that are Mondays", not "odd days or Mondays".

Daylight saving time, as Vixie cron handles it: its ``cron.c`` main loop (vixie/cron, ISC cron
4.1) and the cron(8) man pages of Vixie and Debian ("Daylight Saving Time and other time
changes": jobs skipped by a forward change run soon after it, jobs in a repeated interval are
not re-run, and only jobs at a particular time, not ``@hourly`` nor with '*' in the hour or
minute field, are affected). cron wakes every local minute and compares the local clock with
the minute it expected (``timeDiff``, classified as ``wakeupKind``); ``find_jobs`` splits jobs
into *wildcard* ones (the minute or the hour field starts with ``*``, e.g. ``*/15 * * * *``,
``0 * * * *``, ``0 */2 * * *``, ``@hourly``) and *fixed-time* ones (all others, e.g.
``30 2 * * *``, ``@daily``). Hence, for a local wall time W that matches the expression:

* W occurs once: the job fires then.
* W falls in a spring-forward gap: a fixed-time job fires once at the end of the gap, the
  first instant after it (02:30 on the Europe/Berlin spring-forward day fires at 03:00 CEST;
  a job at 02:00 and 03:00 fires once at 03:00). A wildcard job does not fire for W: it
  follows the clock as it is (``0 * * * *`` fires at 01:00 CET, then at 03:00 CEST). Limits
  from ``cron.c``: a jump of 180 minutes or more is a clock correction and no job catches
  up; a jump of at most 4 minutes (none in today's tz data) is a late wake-up and every job,
  wildcard ones too, catches up.
* W falls in a fall-back fold (the wall clock repeats an interval): a fixed-time job fires
  once, at W's first occurrence (fold=0); a wildcard job fires at both occurrences
  (``0 * * * *`` in America/New_York fires at 01:00 EDT and again at 01:00 EST). A fold of
  more than 181 minutes is a clock correction: fixed-time jobs fire at both occurrences too.

Ticks are instants at whole local minutes. The search skips by field (month, then day, hour,
minute) and resolves only the candidate wall times, so a tick of ``*/15 * * * *`` costs a few
microseconds and one of ``0 0 29 2 *``, eight years ahead, well under a millisecond.
"""

from __future__ import annotations

import bisect
import calendar
import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import MAXYEAR, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["CronError", "CronSchedule", "IntervalTicks"]

FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # in a leap year
_QUARTZ = re.compile(r"[0-9]*(?:lw|l|w)|.*[?#].*")  # 'L', '15W', '5#3', '?': not cron syntax

# cron.c's limits (in minutes of clock change) as gap and fold lengths in seconds.
_SMALL_GAP = 4 * 60  # timeDiff <= 5: a late wake-up, every job catches up
_MAX_CATCH_UP_GAP = 179 * 60  # timeDiff <= 180: fixed-time jobs catch up
_MAX_SKIPPED_FOLD = 181 * 60  # timeDiff >= -180: fixed-time jobs are not repeated

_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_MINUTE = timedelta(minutes=1)


class CronError(ValueError):
    """A cron expression that cannot be parsed, or that never fires.

    ``field`` is the 1-based index of the faulty field (``None`` when the expression as a
    whole is wrong: field count, unknown macro), ``field_name`` its name, ``got`` the faulty
    text and ``reason`` what is wrong with it; the message says all of it."""

    expression: str
    field: int | None
    field_name: str | None
    got: str
    reason: str

    def __init__(
        self, expression: str, reason: str, field: int | None = None, got: str | None = None
    ) -> None:
        self.expression = expression
        self.reason = reason
        self.field = field
        self.field_name = FIELD_NAMES[field - 1] if field is not None else None
        self.got = expression if got is None else got
        if field is None:
            message = f"cron expression {self.got!r}: {reason}"
        else:
            message = (
                f"cron field {field} ({self.field_name}) {self.got!r}: {reason} "
                f"(in cron expression {expression!r})"
            )
        super().__init__(message)

    def __reduce__(self) -> tuple[type[CronError], tuple[str, str, int | None, str]]:
        return type(self), (self.expression, self.reason, self.field, self.got)


@dataclass(frozen=True, slots=True)
class _Field:
    index: int  # 1-based, as in error messages
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] is the value names_base + i
    names_base: int = 0

    @property
    def bounds(self) -> str:
        if not self.names:
            return f"{self.low}-{self.high}"
        return f"{self.low}-{self.high} or {self.names[0]}-{self.names[-1]}"


_FIELDS = (
    _Field(1, 0, 59),
    _Field(2, 0, 23),
    _Field(3, 1, 31),
    _Field(4, 1, 12, _MONTH_NAMES, 1),
    _Field(5, 0, 7, _DOW_NAMES, 0),
)


def _value(token: str, spec: _Field, expression: str, part: str) -> int:
    if token.isascii() and token.isdigit():
        number = int(token)
        if spec.low <= number <= spec.high:
            return number
        raise CronError(expression, f"must be {spec.bounds}", spec.index, part)
    lowered = token.lower()
    if spec.names and lowered in spec.names:
        return spec.names.index(lowered) + spec.names_base
    if _QUARTZ.fullmatch(lowered):
        reason = "'L', 'W', '#' and '?' are Quartz extensions, not cron syntax"
        raise CronError(expression, reason, spec.index, part)
    if spec.names and token.isalpha():
        if lowered[:3] in spec.names:
            close = [lowered[:3]]
        else:
            close = difflib.get_close_matches(lowered, spec.names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"expected {spec.bounds}"
        what = "unknown name" if token == part else f"unknown name {token!r}"
        raise CronError(expression, f"{what}; {hint}", spec.index, part)
    raise CronError(expression, f"must be {spec.bounds}", spec.index, part)


def _parse_part(part: str, spec: _Field, expression: str) -> range:
    """One list item: ``*``, ``N``, ``N-M``, each with an optional ``/STEP``."""
    base, slash, step_text = part.partition("/")
    step = 1
    if slash:
        max_step = spec.high - spec.low
        if not (step_text.isascii() and step_text.isdigit()):
            raise CronError(expression, f"step must be a number 1-{max_step}", spec.index, part)
        step = int(step_text)
        if not 1 <= step <= max_step:
            raise CronError(expression, f"step must be 1-{max_step}", spec.index, part)
    if base == "*":
        return range(spec.low, spec.high + 1, step)
    first_text, dash, last_text = base.partition("-")
    first = _value(first_text, spec, expression, part)
    if not dash:  # 'N' alone, or 'N/STEP': N up to the field's last value
        return range(first, (spec.high if slash else first) + 1, step)
    last = _value(last_text, spec, expression, part)
    if first > last:
        reason = f"reversed range ({first} > {last})"
        if spec.index == 5 and last == 0:
            reason += "; use 7 for Sunday at the end of a range"
        raise CronError(expression, reason, spec.index, part)
    return range(first, last + 1, step)


def _parse_field(text: str, spec: _Field, expression: str) -> tuple[int, ...]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(expression, "empty list item", spec.index, text)
        values.update(_parse_part(part, spec, expression))
    if spec.index == 5 and 7 in values:  # both 0 and 7 are Sunday
        values.discard(7)
        values.add(0)
    return tuple(sorted(values))


def _first_at_least(values: tuple[int, ...], value: int) -> int | None:
    index = bisect.bisect_left(values, value)
    return values[index] if index < len(values) else None


def _seconds(wall: datetime) -> int:
    """Seconds of a naive wall time since the naive epoch (an instant if the wall is UTC)."""
    return (wall - _EPOCH) // _SECOND


def _wall(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def _ceil_minute(wall: datetime) -> datetime:
    floor = wall.replace(second=0, microsecond=0)
    return floor if floor == wall else floor + _MINUTE


def _offset(wall: datetime, tz: ZoneInfo, fold: int) -> int:
    """UTC offset (seconds) of a naive wall time read with ``fold`` (PEP 495)."""
    offset = wall.replace(tzinfo=tz, fold=fold).utcoffset()
    assert offset is not None  # a ZoneInfo always has an offset
    return offset // _SECOND


def _offset_at(instant: int, tz: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(instant, tz).utcoffset()
    assert offset is not None
    return offset // _SECOND


def _transition(tz: ZoneInfo, before: int, after: int) -> int:
    """The first instant in ``(before, after]`` whose UTC offset differs from ``before``'s
    (zoneinfo does not expose transitions; a gap or fold lies around exactly one)."""
    offset = _offset_at(before, tz)
    while after - before > 1:
        middle = (before + after) // 2
        if _offset_at(middle, tz) == offset:
            before = middle
        else:
            after = middle
    return after


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed cron expression (build it with ``CronSchedule.parse``).

    The value tuples are sorted; ``weekdays`` uses 0 for Sunday (a 7 is stored as 0).
    ``dom_star`` / ``dow_star``: the day-of-month / day-of-week field starts with ``*``
    (then a day must match both fields, else either). ``wildcard``: the minute or the hour
    field starts with ``*``, so the job follows the wall clock across DST changes instead of
    firing once per wall time (see the module docstring)."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    dom_star: bool
    dow_star: bool
    wildcard: bool

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse ``expression``; a ``CronError`` says which field is wrong and why."""
        text = expression.strip()
        if not text:
            raise CronError(expression, "empty expression")
        if text.startswith("@"):
            macro = text.lower()
            if macro not in _MACROS:
                close = difflib.get_close_matches(macro, list(_MACROS), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                known = ", ".join(_MACROS)
                raise CronError(expression, f"unknown macro (known: {known}){hint}")
            fields = _MACROS[macro].split()
        else:
            fields = text.split()
            if len(fields) != len(_FIELDS):
                raise CronError(
                    expression,
                    f"expected 5 fields ({' '.join(FIELD_NAMES)}) or a macro such as "
                    f"@daily, got {len(fields)}",
                )
        minutes, hours, days, months, weekdays = (
            _parse_field(field_text, spec, expression)
            for field_text, spec in zip(fields, _FIELDS, strict=True)
        )
        dom_star, dow_star = fields[2].startswith("*"), fields[4].startswith("*")
        if (dom_star or dow_star) and not any(d <= _MAX_DAYS[m - 1] for m in months for d in days):
            # Both day fields must match and no month has such a day: 0 0 30 2 *. (With
            # weekdays restricted too, each date falls on every weekday within 400 years.)
            raise CronError(
                expression,
                f"never fires: no month in field 4 ({fields[3]!r}) has such a day",
                3,
                fields[2],
            )
        return cls(
            expression=expression,
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=weekdays,
            dom_star=dom_star,
            dow_star=dow_star,
            wildcard=fields[0].startswith("*") or fields[1].startswith("*"),
        )

    def matches(self, when: datetime) -> bool:
        """Whether the wall time of ``when`` (its minute; seconds and zone are ignored)
        matches the expression."""
        return (
            when.minute in self.minutes
            and when.hour in self.hours
            and when.month in self.months
            and self._day_matches(when.year, when.month, when.day)
        )

    def next_after(self, after: float, tz: ZoneInfo | None = None) -> float:
        """The first tick strictly after the epoch-second instant ``after``, the expression
        read in zone ``tz`` (UTC if ``None``), with Vixie cron's DST rules."""
        if isinstance(after, bool) or not isinstance(after, (int, float)):
            raise TypeError(f"after must be epoch seconds (got {after!r})")
        if not math.isfinite(after):
            raise ValueError(f"after must be a finite number of epoch seconds (got {after!r})")
        instant = math.floor(after)  # ticks are whole seconds: > after iff > floor(after)
        if tz is None:
            return float(_seconds(self._next_wall(_wall(instant).replace(second=0) + _MINUTE)))
        return float(self._next_in_zone(instant, tz))

    def ticks_after(self, after: float, tz: ZoneInfo | None = None) -> Iterator[float]:
        """The ticks after ``after`` in order, without end."""
        while True:
            after = self.next_after(after, tz)
            yield after

    # ------------------------------------------------------------------ search

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        dom = day in self.days
        dow = (calendar.weekday(year, month, day) + 1) % 7 in self.weekdays
        return (dom and dow) if self.dom_star or self.dow_star else (dom or dow)

    def _first_day(self, year: int, month: int, day: int) -> int | None:
        last = calendar.monthrange(year, month)[1]
        for candidate in range(day, last + 1):
            if self._day_matches(year, month, candidate):
                return candidate
        return None

    def _next_wall(self, start: datetime) -> datetime:
        """The first matching wall time at or after ``start`` (a whole minute), skipping by
        field: a wrong month moves to the next allowed month, a wrong day to the next day,
        and so on; an overflowing field (hour 24, day 32, month 13) carries upward."""
        year, month, day, hour = start.year, start.month, start.day, start.hour
        minute = start.minute
        while year <= MAXYEAR:
            found = _first_at_least(self.months, month)
            if found is None:
                year, month, day, hour, minute = year + 1, 1, 1, 0, 0
                continue
            if found != month:
                month, day, hour, minute = found, 1, 0, 0
            found = self._first_day(year, month, day)
            if found is None:
                month, day, hour, minute = month + 1, 1, 0, 0
                continue
            if found != day:
                day, hour, minute = found, 0, 0
            found = _first_at_least(self.hours, hour)
            if found is None:
                day, hour, minute = day + 1, 0, 0
                continue
            if found != hour:
                hour, minute = found, 0
            found = _first_at_least(self.minutes, minute)
            if found is None:
                hour, minute = hour + 1, 0
                continue
            return datetime(year, month, day, hour, found)
        raise OverflowError(f"{self.expression!r} has no tick before the year {MAXYEAR + 1}")

    def _next_in_zone(self, instant: int, tz: ZoneInfo) -> int:
        local = datetime.fromtimestamp(instant, tz)
        wall = local.replace(tzinfo=None)
        start = wall.replace(second=0) + _MINUTE
        here, other = _offset(wall, tz, local.fold), _offset(wall, tz, 1 - local.fold)
        if here != other:
            # ``instant`` lies in a fold: the wall clock shows the same times twice, first with
            # offset0 (until the transition), then with offset1. Walls after this one in the
            # current pass come first, then (for jobs that repeat) the second pass.
            first = local.fold == 0
            offset0, offset1 = (here, other) if first else (other, here)
            if first:
                transition = _transition(tz, instant, _seconds(wall) - offset1)
            else:
                transition = _transition(tz, _seconds(wall) - offset0, instant)
            fold_end = _wall(transition + offset0)
            repeats = self.wildcard or offset0 - offset1 > _MAX_SKIPPED_FOLD
            if first:
                candidate = self._next_wall(start)
                if candidate < fold_end:
                    return _seconds(candidate) - offset0
                start = _ceil_minute(_wall(transition + offset1))
            if repeats:
                candidate = self._next_wall(start)
                if candidate < fold_end:
                    return _seconds(candidate) - offset1
            start = _ceil_minute(fold_end)
        return self._scan(start, tz)

    def _scan(self, start: datetime, tz: ZoneInfo) -> int:
        """The first tick from the matching wall times at or after ``start``, the instant to
        search from lying before ``start``'s first occurrence and in no fold."""
        while True:
            wall = self._next_wall(start)
            offset0, offset1 = _offset(wall, tz, 0), _offset(wall, tz, 1)
            if offset0 >= offset1:  # the wall time exists: once, or twice in a fold
                return _seconds(wall) - offset0  # the first occurrence
            # A gap: the clock jumps over this wall time at ``transition``.
            transition = _transition(tz, _seconds(wall) - offset1, _seconds(wall) - offset0)
            gap_end = _ceil_minute(_wall(transition + offset1))
            gap = offset1 - offset0
            if gap <= _SMALL_GAP or (not self.wildcard and gap <= _MAX_CATCH_UP_GAP):
                return _seconds(gap_end) - offset1  # caught up at the end of the gap
            start = gap_end


@dataclass(frozen=True, slots=True)
class IntervalTicks:
    """Ticks every ``every`` seconds on the grid ``origin + k * every`` (k any integer).

    The grid is fixed by ``origin``, not by when the process started, so a restarted server
    keeps ticking at the same instants instead of drifting by its restart time."""

    every: float
    origin: float = 0.0

    def __post_init__(self) -> None:
        for name in ("every", "origin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"IntervalTicks {name} must be a number of seconds (got {value!r})")
            if not math.isfinite(value):
                raise ValueError(f"IntervalTicks {name} must be finite (got {value!r})")
        if not self.every > 0:
            raise ValueError(f"IntervalTicks every must be > 0 seconds (got {self.every!r})")

    def next_after(self, after: float) -> float:
        """The first grid instant strictly after ``after``. Each tick is computed as
        ``origin + k * every`` from its index, never by adding to the previous tick, so
        float rounding does not accumulate."""
        if isinstance(after, bool) or not isinstance(after, (int, float)):
            raise TypeError(f"after must be epoch seconds (got {after!r})")
        if not math.isfinite(after):
            raise ValueError(f"after must be a finite number of epoch seconds (got {after!r})")
        k = math.floor((after - self.origin) / self.every) + 1
        while self.origin + (k - 1) * self.every > after:  # the division rounded up
            k -= 1
        while self.origin + k * self.every <= after:  # ... or down
            k += 1
        return self.origin + k * self.every
