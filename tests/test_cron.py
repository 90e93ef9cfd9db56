"""flowrun._cron: parsing cron expressions, their ticks (DST included) and interval ticks.

The references are independent of the module: hypothesis builds each expression together
with the sets of values it denotes; UTC ticks are checked against a minute-by-minute search
(skipping whole days that do not match), zone ticks against an emulation of Vixie cron's main
loop (cron.c: one wake-up per minute, the clock change classified as in its ``wakeupKind``),
and the DST tables below are written by hand.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flowrun._cron import CronError, CronSchedule, IntervalTicks
from flowrun.testing import current_clock, run_virtual

EPOCH = datetime(1970, 1, 1)
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def at(text: str) -> float:
    """Epoch seconds of an ISO time with its UTC offset, '2026-03-29T03:00+02:00'."""
    return datetime.fromisoformat(text).timestamp()


def local(instant: float, zone: str) -> str:
    moment = datetime.fromtimestamp(instant, ZoneInfo(zone))
    return moment.isoformat(timespec="seconds" if moment.second else "minutes")


def ticks(expression: str, zone: str | None, start: str, count: int) -> list[str]:
    schedule = CronSchedule.parse(expression)
    tz = ZoneInfo(zone) if zone else None
    instant = at(start)
    found = []
    for _ in range(count):
        instant = schedule.next_after(instant, tz)
        found.append(local(instant, zone or "UTC"))
    return found


# ---------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("expression", "field", "expected"),
    [
        ("* * * * *", "minutes", tuple(range(60))),
        ("*/15 * * * *", "minutes", (0, 15, 30, 45)),
        ("10-50/20 * * * *", "minutes", (10, 30, 50)),
        ("5/10 * * * *", "minutes", (5, 15, 25, 35, 45, 55)),  # N/STEP: N to the end
        ("1,5,9 * * * *", "minutes", (1, 5, 9)),
        ("9,1,5,5 * * * *", "minutes", (1, 5, 9)),
        ("1-5 * * * *", "minutes", (1, 2, 3, 4, 5)),
        ("1-3,10,20-24/2 * * * *", "minutes", (1, 2, 3, 10, 20, 22, 24)),
        ("*/59 * * * *", "minutes", (0, 59)),
        ("0 */6 * * *", "hours", (0, 6, 12, 18)),
        ("0 23 * * *", "hours", (23,)),
        ("0 0 */10 * *", "days", (1, 11, 21, 31)),
        ("0 0 31 * *", "days", (31,)),
        ("0 0 1 jan,MAR,Dec *", "months", (1, 3, 12)),
        ("0 0 1 jan-mar *", "months", (1, 2, 3)),
        ("0 0 1 feb-4 *", "months", (2, 3, 4)),
        ("0 0 1 */3 *", "months", (1, 4, 7, 10)),
        ("0 0 * * sun,Mon,SAT", "weekdays", (0, 1, 6)),
        ("0 0 * * 7", "weekdays", (0,)),  # 0 and 7 are both Sunday
        ("0 0 * * 0,7", "weekdays", (0,)),
        ("0 0 * * 5-7", "weekdays", (0, 5, 6)),
        ("0 0 * * mon-fri", "weekdays", (1, 2, 3, 4, 5)),
        ("0 0 * * TUE-thu", "weekdays", (2, 3, 4)),
        ("0 0 * * */2", "weekdays", (0, 2, 4, 6)),
        ("0 0 * * 1/2", "weekdays", (0, 1, 3, 5)),  # 1,3,5,7 and 7 is Sunday
    ],
)
def test_fields_denote_their_values(expression: str, field: str, expected: tuple[int, ...]) -> None:
    assert getattr(CronSchedule.parse(expression), field) == tuple(sorted(expected))


def test_whitespace_and_case_are_free() -> None:
    schedule = CronSchedule.parse("  30\t2  * \t JAN   Sun ")
    assert (schedule.minutes, schedule.hours, schedule.months, schedule.weekdays) == (
        (30,),
        (2,),
        (1,),
        (0,),
    )
    assert schedule.expression == "  30\t2  * \t JAN   Sun "


@pytest.mark.parametrize(
    ("macro", "expansion", "wildcard"),
    [
        ("@hourly", "0 * * * *", True),
        ("@daily", "0 0 * * *", False),
        ("@midnight", "0 0 * * *", False),
        ("@weekly", "0 0 * * 0", False),
        ("@monthly", "0 0 1 * *", False),
        ("@yearly", "0 0 1 1 *", False),
        ("@annually", "0 0 1 1 *", False),
        ("@DAILY", "0 0 * * *", False),
    ],
)
def test_macros_are_their_five_field_expansions(macro: str, expansion: str, wildcard: bool) -> None:
    parsed, expanded = CronSchedule.parse(macro), CronSchedule.parse(expansion)
    fields = ("minutes", "hours", "days", "months", "weekdays", "dom_star", "dow_star")
    assert [getattr(parsed, f) for f in fields] == [getattr(expanded, f) for f in fields]
    assert parsed.wildcard is expanded.wildcard is wildcard
    assert parsed.expression == macro


@pytest.mark.parametrize(
    ("expression", "dom_star", "dow_star", "wildcard"),
    [
        ("0 0 1,15 * 5", False, False, False),
        ("0 0 * * 5", True, False, False),
        ("0 0 1 * *", False, True, False),
        ("0 0 */2 * 1", True, False, False),  # a field starting with '*' counts as '*'
        ("0 0 1-31 * 1", False, False, False),  # all days, but restricted: OR with Mondays
        ("*/15 * * * *", True, True, True),
        ("0 * * * *", True, True, True),
        ("0 */2 * * *", True, True, True),
        ("*/30 2 * * *", True, True, True),
        ("0-59 0-23 * * *", True, True, False),
        ("30 2 * * *", True, True, False),
    ],
)
def test_star_flags_follow_the_first_character_of_the_field(
    expression: str, dom_star: bool, dow_star: bool, wildcard: bool
) -> None:
    schedule = CronSchedule.parse(expression)
    assert (schedule.dom_star, schedule.dow_star, schedule.wildcard) == (
        dom_star,
        dow_star,
        wildcard,
    )
    assert repr(schedule).startswith(f"CronSchedule(expression={expression!r}")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # 2026-01-01 is a Thursday; the Fridays of January are the 2nd, 9th, 16th, 23rd, 30th.
        ("0 0 1,15 * 5", ["01-01", "01-02", "01-09", "01-15", "01-16", "01-23"]),  # OR
        ("0 0 * * 5", ["01-02", "01-09", "01-16", "01-23", "01-30", "02-06"]),
        ("0 0 1,15 * *", ["01-01", "01-15", "02-01", "02-15", "03-01", "03-15"]),
        ("0 0 */2 * 5", ["01-09", "01-23", "02-13", "02-27", "03-13", "03-27"]),  # AND
        ("0 0 1-7 * fri", ["01-01", "01-02", "01-03", "01-04", "01-05", "01-06", "01-07", "01-09"]),
        ("0 0 31 2 mon", ["02-02", "02-09", "02-16", "02-23"]),  # OR: never a 31st, but Mondays
    ],
)
def test_day_of_month_or_day_of_week(expression: str, expected: list[str]) -> None:
    found = ticks(expression, None, "2025-12-31T12:00+00:00", len(expected))
    assert [f[5:10] for f in found] == expected
    assert all(f.startswith("2026-") and f.endswith("T00:00+00:00") for f in found)


def test_a_leap_day_job_waits_for_the_next_leap_year() -> None:
    assert ticks("0 0 29 2 *", None, "2097-03-01T00:00+00:00", 2) == [
        "2104-02-29T00:00+00:00",  # 2100 is no leap year
        "2108-02-29T00:00+00:00",
    ]


@pytest.mark.parametrize(
    ("expression", "field", "got", "fragments"),
    [
        ("", None, "", ["cron expression '': empty expression"]),
        ("   ", None, "   ", ["empty expression"]),
        ("0 0 * *", None, "0 0 * *", ["expected 5 fields", "got 4", "@daily"]),
        ("0 0 * * * *", None, "0 0 * * * *", ["expected 5 fields", "got 6"]),
        ("@dialy", None, "@dialy", ["unknown macro", "did you mean '@daily'?"]),
        ("@reboot", None, "@reboot", ["unknown macro (known: @hourly, @daily"]),
        ("60 * * * *", 1, "60", ["cron field 1 (minute) '60': must be 0-59"]),
        ("0 25 * * *", 2, "25", ["cron field 2 (hour) '25': must be 0-23"]),
        ("0 0 0 * *", 3, "0", ["cron field 3 (day-of-month) '0': must be 1-31"]),
        ("0 0 32 * *", 3, "32", ["must be 1-31"]),
        ("0 0 * 13 *", 4, "13", ["cron field 4 (month) '13': must be 1-12 or jan-dec"]),
        ("0 0 * * 8", 5, "8", ["cron field 5 (day-of-week) '8': must be 0-7 or sun-sat"]),
        ("1,99 * * * *", 1, "99", ["'99': must be 0-59"]),
        ("-5 * * * *", 1, "-5", ["must be 0-59"]),
        ("1.5 * * * *", 1, "1.5", ["must be 0-59"]),
        ("abc * * * *", 1, "abc", ["must be 0-59"]),
        ("\u0663 * * * *", 1, "\u0663", ["must be 0-59"]),  # a non-ASCII digit
        ("1- * * * *", 1, "1-", ["must be 0-59"]),
        ("*/0 * * * *", 1, "*/0", ["'*/0': step must be 1-59"]),
        ("*/60 * * * *", 1, "*/60", ["step must be 1-59"]),
        ("0 */x * * *", 2, "*/x", ["step must be a number 1-23"]),
        ("0 0 * * */", 5, "*/", ["step must be a number 1-7"]),
        ("0 1-5/0 * * *", 2, "1-5/0", ["step must be 1-23"]),
        ("5-1 * * * *", 1, "5-1", ["'5-1': reversed range (5 > 1)"]),
        ("0 0 * dec-jan *", 4, "dec-jan", ["reversed range (12 > 1)"]),
        ("0 0 * * fri-sun", 5, "fri-sun", ["reversed range (5 > 0)", "use 7 for Sunday"]),
        ("0 0 * * mno", 5, "mno", ["'mno': unknown name; did you mean 'mon'?"]),
        ("0 0 * * monday", 5, "monday", ["did you mean 'mon'?"]),
        ("0 0 * * thursday", 5, "thursday", ["did you mean 'thu'?"]),
        ("0 0 * janu *", 4, "janu", ["did you mean 'jan'?"]),
        ("0 0 * * mon-frx", 5, "mon-frx", ["unknown name 'frx'; did you mean 'fri'?"]),
        ("0 0 * xyz *", 4, "xyz", ["unknown name; expected 1-12 or jan-dec"]),
        ("0 0 * * jan", 5, "jan", ["unknown name; expected 0-7 or sun-sat"]),
        ("1,,2 * * * *", 1, "1,,2", ["'1,,2': empty list item"]),
        ("0 0 1, * *", 3, "1,", ["empty list item"]),
        ("0 0 L * *", 3, "L", ["Quartz extensions, not cron syntax"]),
        ("0 0 ? * *", 3, "?", ["Quartz"]),
        ("0 0 15W * *", 3, "15W", ["Quartz"]),
        ("0 0 * * 5#3", 5, "5#3", ["Quartz"]),
        ("0 0 30 2 *", 3, "30", ["never fires", "no month in field 4 ('2') has such a day"]),
        ("0 0 31 4,6,9,11 *", 3, "31", ["never fires"]),
        ("0 0 30,31 feb *", 3, "30,31", ["never fires"]),
        ("0 0 31 2 */2", 3, "31", ["never fires"]),  # '*/2' counts as '*': both must match
    ],
)
def test_invalid_expressions_fail_at_parse_time_naming_the_field(
    expression: str, field: int | None, got: str, fragments: list[str]
) -> None:
    with pytest.raises(CronError) as caught:
        CronSchedule.parse(expression)
    error = caught.value
    assert isinstance(error, ValueError)
    message = str(error)
    for fragment in fragments:
        assert fragment in message
    assert (error.expression, error.field, error.got) == (expression, field, got)
    if field is None:
        assert error.field_name is None
    else:
        names = ["minute", "hour", "day-of-month", "month", "day-of-week"]
        assert error.field_name == names[field - 1]
        assert message.endswith(f"(in cron expression {expression!r})")
        assert message.startswith(f"cron field {field} ({names[field - 1]}) {got!r}: ")


def test_cron_error_carries_its_parts_and_pickles() -> None:
    with pytest.raises(CronError) as caught:
        CronSchedule.parse("0 25 * * *")
    error = caught.value
    assert str(error) == "cron field 2 (hour) '25': must be 0-23 (in cron expression '0 25 * * *')"
    assert (error.field, error.field_name, error.got, error.reason) == (
        2,
        "hour",
        "25",
        "must be 0-23",
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.field_name) == (CronError, str(error), "hour")


def test_next_after_checks_its_arguments() -> None:
    schedule = CronSchedule.parse("@daily")
    with pytest.raises(ValueError, match="finite"):
        schedule.next_after(math.nan)
    with pytest.raises(ValueError, match="finite"):
        schedule.next_after(math.inf)
    with pytest.raises(TypeError, match="epoch seconds"):
        schedule.next_after("0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="epoch seconds"):
        schedule.next_after(True)
    assert schedule.next_after(0) == 86400.0
    assert schedule.next_after(-0.5) == 0.0  # strictly after, fractions included
    assert schedule.next_after(86399.999) == 86400.0


def test_ticks_after_is_the_sequence_of_next_after() -> None:
    schedule = CronSchedule.parse("*/20 * * * *")
    stream = schedule.ticks_after(at("2026-01-01T00:05+01:00"), ZoneInfo("Europe/Berlin"))
    assert [local(next(stream), "Europe/Berlin") for _ in range(3)] == [
        "2026-01-01T00:20+01:00",
        "2026-01-01T00:40+01:00",
        "2026-01-01T01:00+01:00",
    ]


# ------------------------------------------------------------------------ DST, by hand

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"

DST_TABLE = [
    # Europe/Berlin, 2026-03-29 (a Sunday): 02:00 CET jumps to 03:00 CEST.
    (
        BERLIN,
        "30 2 * * *",
        "2026-03-28T00:00+01:00",
        ["2026-03-28T02:30+01:00", "2026-03-29T03:00+02:00", "2026-03-30T02:30+02:00"],
    ),
    (BERLIN, "30 2 * * *", "2026-03-29T01:59:59+01:00", ["2026-03-29T03:00+02:00"]),
    (BERLIN, "30 2 * * *", "2026-03-29T03:00+02:00", ["2026-03-30T02:30+02:00"]),
    (
        BERLIN,
        "0 2 * * *",
        "2026-03-29T00:00+01:00",
        ["2026-03-29T03:00+02:00", "2026-03-30T02:00+02:00"],
    ),
    (
        BERLIN,
        "0 3 * * *",
        "2026-03-29T00:00+01:00",
        ["2026-03-29T03:00+02:00", "2026-03-30T03:00+02:00"],
    ),
    (
        BERLIN,
        "0 2,3 * * *",
        "2026-03-29T00:00+01:00",
        ["2026-03-29T03:00+02:00", "2026-03-30T02:00+02:00", "2026-03-30T03:00+02:00"],
    ),
    (
        BERLIN,
        "30 2 29 3 *",
        "2026-01-01T00:00+01:00",
        ["2026-03-29T03:00+02:00", "2027-03-29T02:30+02:00"],
    ),
    (
        BERLIN,
        "30 2 * * sun",
        "2026-03-22T12:00+01:00",
        ["2026-03-29T03:00+02:00", "2026-04-05T02:30+02:00"],
    ),
    (
        BERLIN,
        "@daily",
        "2026-03-28T12:00+01:00",
        ["2026-03-29T00:00+01:00", "2026-03-30T00:00+02:00"],
    ),
    (
        BERLIN,
        "0 * * * *",
        "2026-03-29T00:30+01:00",
        ["2026-03-29T01:00+01:00", "2026-03-29T03:00+02:00", "2026-03-29T04:00+02:00"],
    ),
    (
        BERLIN,
        "@hourly",
        "2026-03-29T00:30+01:00",
        ["2026-03-29T01:00+01:00", "2026-03-29T03:00+02:00", "2026-03-29T04:00+02:00"],
    ),
    (
        BERLIN,
        "*/15 * * * *",
        "2026-03-29T01:30+01:00",
        ["2026-03-29T01:45+01:00", "2026-03-29T03:00+02:00", "2026-03-29T03:15+02:00"],
    ),
    (
        BERLIN,
        "30 * * * *",
        "2026-03-29T01:00+01:00",
        ["2026-03-29T01:30+01:00", "2026-03-29T03:30+02:00"],
    ),
    (
        BERLIN,
        "0 */2 * * *",
        "2026-03-28T23:00+01:00",
        ["2026-03-29T00:00+01:00", "2026-03-29T04:00+02:00"],
    ),
    (
        BERLIN,
        "*/30 2 * * *",
        "2026-03-29T00:00+01:00",
        ["2026-03-30T02:00+02:00", "2026-03-30T02:30+02:00"],
    ),
    # Europe/Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:00-02:59 repeats.
    (
        BERLIN,
        "30 2 * * *",
        "2026-10-24T12:00+02:00",
        ["2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"],
    ),
    (
        BERLIN,
        "0 2 * * *",
        "2026-10-24T12:00+02:00",
        ["2026-10-25T02:00+02:00", "2026-10-26T02:00+01:00"],
    ),
    (
        BERLIN,
        "0 3 * * *",
        "2026-10-24T12:00+02:00",
        ["2026-10-25T03:00+01:00", "2026-10-26T03:00+01:00"],
    ),
    (
        BERLIN,
        "15,45 2 * * *",
        "2026-10-25T00:00+02:00",
        ["2026-10-25T02:15+02:00", "2026-10-25T02:45+02:00", "2026-10-26T02:15+01:00"],
    ),
    (
        BERLIN,
        "0 * * * *",
        "2026-10-25T01:30+02:00",
        ["2026-10-25T02:00+02:00", "2026-10-25T02:00+01:00", "2026-10-25T03:00+01:00"],
    ),
    (
        BERLIN,
        "*/15 * * * *",
        "2026-10-25T02:40+02:00",
        ["2026-10-25T02:45+02:00", "2026-10-25T02:00+01:00", "2026-10-25T02:15+01:00"],
    ),
    (
        BERLIN,
        "*/30 2 * * *",
        "2026-10-25T00:00+02:00",
        [
            "2026-10-25T02:00+02:00",
            "2026-10-25T02:30+02:00",
            "2026-10-25T02:00+01:00",
            "2026-10-25T02:30+01:00",
            "2026-10-26T02:00+01:00",
        ],
    ),
    # ... starting inside the repeated hour, in its first or its second pass
    (BERLIN, "30 2 * * *", "2026-10-25T02:40+02:00", ["2026-10-26T02:30+01:00"]),
    (
        BERLIN,
        "45 2 * * *",
        "2026-10-25T02:40+02:00",
        ["2026-10-25T02:45+02:00", "2026-10-26T02:45+01:00"],
    ),
    (BERLIN, "30 2 * * *", "2026-10-25T02:10+01:00", ["2026-10-26T02:30+01:00"]),
    (
        BERLIN,
        "0,30 * * * *",
        "2026-10-25T02:40+02:00",
        ["2026-10-25T02:00+01:00", "2026-10-25T02:30+01:00", "2026-10-25T03:00+01:00"],
    ),
    (
        BERLIN,
        "0,30 * * * *",
        "2026-10-25T02:10+01:00",
        ["2026-10-25T02:30+01:00", "2026-10-25T03:00+01:00"],
    ),
    # America/New_York, 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    (
        NEW_YORK,
        "30 2 * * *",
        "2026-03-07T12:00-05:00",
        ["2026-03-08T03:00-04:00", "2026-03-09T02:30-04:00"],
    ),
    (
        NEW_YORK,
        "30 1 * * *",
        "2026-03-07T12:00-05:00",
        ["2026-03-08T01:30-05:00", "2026-03-09T01:30-04:00"],
    ),
    (
        NEW_YORK,
        "0 * * * *",
        "2026-03-08T00:30-05:00",
        ["2026-03-08T01:00-05:00", "2026-03-08T03:00-04:00", "2026-03-08T04:00-04:00"],
    ),
    (
        NEW_YORK,
        "*/15 * * * *",
        "2026-03-08T01:40-05:00",
        ["2026-03-08T01:45-05:00", "2026-03-08T03:00-04:00", "2026-03-08T03:15-04:00"],
    ),
    # America/New_York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:00-01:59 repeats.
    (
        NEW_YORK,
        "30 1 * * *",
        "2026-10-31T12:00-04:00",
        ["2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00"],
    ),
    (
        NEW_YORK,
        "0 1 * * *",
        "2026-10-31T12:00-04:00",
        ["2026-11-01T01:00-04:00", "2026-11-02T01:00-05:00"],
    ),
    (
        NEW_YORK,
        "0 2 * * *",
        "2026-10-31T12:00-04:00",
        ["2026-11-01T02:00-05:00", "2026-11-02T02:00-05:00"],
    ),
    (NEW_YORK, "30 1 * * *", "2026-11-01T01:10-05:00", ["2026-11-02T01:30-05:00"]),
    (
        NEW_YORK,
        "0 * * * *",
        "2026-11-01T00:30-04:00",
        ["2026-11-01T01:00-04:00", "2026-11-01T01:00-05:00", "2026-11-01T02:00-05:00"],
    ),
    (
        NEW_YORK,
        "*/15 * * * *",
        "2026-11-01T01:40-04:00",
        ["2026-11-01T01:45-04:00", "2026-11-01T01:00-05:00", "2026-11-01T01:15-05:00"],
    ),
    (
        NEW_YORK,
        "*/20 1 * * *",
        "2026-11-01T00:00-04:00",
        [
            "2026-11-01T01:00-04:00",
            "2026-11-01T01:20-04:00",
            "2026-11-01T01:40-04:00",
            "2026-11-01T01:00-05:00",
            "2026-11-01T01:20-05:00",
            "2026-11-01T01:40-05:00",
            "2026-11-02T01:00-05:00",
        ],
    ),
    # Transitions at midnight (America/Sao_Paulo 2018: 00:00 jumps to 01:00).
    (
        "America/Sao_Paulo",
        "@daily",
        "2018-11-03T12:00-03:00",
        ["2018-11-04T01:00-02:00", "2018-11-05T00:00-02:00"],
    ),
    # Half-hour DST (Australia/Lord_Howe: +10:30 / +11).
    (
        "Australia/Lord_Howe",
        "15 2 * * *",
        "2026-10-03T12:00+10:30",
        ["2026-10-04T02:30+11:00", "2026-10-05T02:15+11:00"],
    ),
    (
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2026-04-04T12:00+11:00",
        ["2026-04-05T01:45+11:00", "2026-04-06T01:45+10:30"],
    ),
    (
        "Australia/Lord_Howe",
        "*/30 * * * *",
        "2026-04-05T01:20+11:00",
        ["2026-04-05T01:30+11:00", "2026-04-05T01:30+10:30", "2026-04-05T02:00+10:30"],
    ),
    # Two-hour DST (Antarctica/Troll: +00 / +02): 01:00 jumps to 03:00.
    (
        "Antarctica/Troll",
        "30 1 * * *",
        "2026-03-28T12:00+00:00",
        ["2026-03-29T03:00+02:00", "2026-03-30T01:30+02:00"],
    ),
    # A 15-minute gap, no DST (Asia/Kathmandu, 1986-01-01 00:00 +05:30 jumps to 00:15 +05:45).
    (
        "Asia/Kathmandu",
        "@daily",
        "1985-12-31T12:00+05:30",
        ["1986-01-01T00:15+05:45", "1986-01-02T00:00+05:45"],
    ),
    (
        "Asia/Kathmandu",
        "10 0 * * *",
        "1985-12-31T12:00+05:30",
        ["1986-01-01T00:15+05:45", "1986-01-02T00:10+05:45"],
    ),
    ("Asia/Kathmandu", "*/10 * * * *", "1985-12-31T23:50+05:30", ["1986-01-01T00:20+05:45"]),
    # cron.c's limit: a change of 3 hours or more is a clock correction, not DST.
    # Antarctica/Casey 2009-10-18: 02:00 +08 jumps to 05:00 +11 (3 h): no catch-up.
    ("Antarctica/Casey", "0 3 * * *", "2009-10-17T12:00+08:00", ["2009-10-19T03:00+11:00"]),
    # ... and 2010-03-05 02:00 +11 falls back to 2010-03-04 23:00 +08 (3 h): no repeat.
    (
        "Antarctica/Casey",
        "0 0 * * *",
        "2010-03-04T12:00+11:00",
        ["2010-03-05T00:00+11:00", "2010-03-06T00:00+08:00"],
    ),
    (
        "Antarctica/Casey",
        "0 * * * *",
        "2010-03-05T01:30+11:00",
        ["2010-03-04T23:00+08:00", "2010-03-05T00:00+08:00"],
    ),
    # Pacific/Apia skipped 2011-12-30 (a 24 h jump): nothing catches up.
    (
        "Pacific/Apia",
        "0 10 * * *",
        "2011-12-28T12:00-10:00",
        ["2011-12-29T10:00-10:00", "2011-12-31T10:00+14:00"],
    ),
    ("Pacific/Apia", "0 0 30 12 *", "2011-12-29T12:00-10:00", ["2012-12-30T00:00+14:00"]),
    # Pacific/Kwajalein repeated 23 hours on 1969-09-30 (+11 to -12): fixed jobs repeat too.
    (
        "Pacific/Kwajalein",
        "0 12 * * *",
        "1969-09-30T00:00+11:00",
        ["1969-09-30T12:00+11:00", "1969-09-30T12:00-12:00", "1969-10-01T12:00-12:00"],
    ),
]


@pytest.mark.parametrize(("zone", "expression", "start", "expected"), DST_TABLE)
def test_dst_ticks(zone: str, expression: str, start: str, expected: list[str]) -> None:
    assert ticks(expression, zone, start, len(expected)) == expected


def test_a_year_of_fixed_and_wildcard_jobs_across_both_berlin_transitions() -> None:
    """Over all of 2026: a daily 02:30 job fires 365 times (the 29 March one at 03:00), an
    hourly one once per real hour minus the skipped one, plus the repeated one."""
    tz = ZoneInfo(BERLIN)
    start, end = at("2026-01-01T00:00+01:00") - 1, at("2027-01-01T00:00+01:00") - 1

    def all_ticks(expression: str) -> list[float]:
        schedule, found = CronSchedule.parse(expression), []
        instant = schedule.next_after(start, tz)
        while instant <= end:
            found.append(instant)
            instant = schedule.next_after(instant, tz)
        return found

    daily = [local(t, BERLIN) for t in all_ticks("30 2 * * *")]
    assert len(daily) == 365
    assert [t for t in daily if t[10:16] != "T02:30"] == ["2026-03-29T03:00+02:00"]
    hourly = all_ticks("0 * * * *")
    assert len(hourly) == 365 * 24  # one lost in March, one gained in October
    assert all(b - a == 3600 for a, b in itertools.pairwise(hourly))
    quarter = all_ticks("*/15 * * * *")
    assert len(quarter) == 365 * 96
    assert all(b - a == 900 for a, b in itertools.pairwise(quarter))


# ---------------------------------------------------------------- independent references


@dataclass(frozen=True)
class Spec:
    """An expression and, built alongside it, what it means (the test's own model)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # as written: 7 may appear and means Sunday

    @property
    def fields(self) -> list[str]:
        return self.text.split()

    def day_ok(self, day: date) -> bool:
        weekday = day.isoweekday() % 7  # Sunday 0
        dom = day.day in self.days
        dow = weekday in self.weekdays or (weekday == 0 and 7 in self.weekdays)
        dom_star, dow_star = self.fields[2].startswith("*"), self.fields[4].startswith("*")
        return (dom and dow) if dom_star or dow_star else (dom or dow)

    def matches(self, wall: datetime) -> bool:
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self.day_ok(wall.date())
        )

    @property
    def wildcard(self) -> bool:
        return self.fields[0].startswith("*") or self.fields[1].startswith("*")


def _field(
    low: int, high: int, names: tuple[str, ...] = (), base: int = 0, hot: tuple[int, ...] = ()
) -> Any:
    """A strategy of (text, values) for one field; its numbers are often ``hot`` ones."""

    @st.composite
    def number(draw: st.DrawFn, first: int = low) -> tuple[str, int]:
        choices = [n for n in hot if n >= first]
        value = draw(st.integers(first, high))
        hot_one: bool = draw(st.booleans())
        if choices and hot_one:
            value = draw(st.sampled_from(choices))
        if names and 0 <= value - base < len(names) and draw(st.booleans()):
            name = names[value - base]
            return draw(st.sampled_from([name, name.upper(), name.capitalize()])), value
        return str(value), value

    @st.composite
    def item(draw: st.DrawFn) -> tuple[str, set[int]]:
        kind = draw(st.sampled_from(["one", "one", "range", "range-step", "n-step", "star-step"]))
        step = draw(st.integers(1, high - low))
        if kind == "star-step":
            return f"*/{step}", set(range(low, high + 1, step))
        first_text, first = draw(number())
        if kind == "one":
            return first_text, {first}
        if kind == "n-step":
            return f"{first_text}/{step}", set(range(first, high + 1, step))
        last_text, last = draw(number(first))
        if kind == "range":
            return f"{first_text}-{last_text}", set(range(first, last + 1))
        return f"{first_text}-{last_text}/{step}", set(range(first, last + 1, step))

    @st.composite
    def field(draw: st.DrawFn) -> tuple[str, frozenset[int]]:
        if draw(st.integers(0, 3)) == 0:
            return "*", frozenset(range(low, high + 1))
        items = draw(st.lists(item(), min_size=1, max_size=3))
        return ",".join(t for t, _ in items), frozenset().union(*(v for _, v in items))

    return field()


@st.composite
def specs(draw: st.DrawFn, dense: bool = False) -> Spec:
    """Random expressions; ``dense`` ones leave the day fields '*' more often, so that a
    window of a few days sees ticks, and favour the hours and minutes at which the clock
    changes in ``TRANSITIONS``."""
    parts = [
        draw(_field(0, 59, hot=(0, 15, 30, 45, 59) if dense else ())),
        draw(_field(0, 23, hot=(0, 1, 2, 3, 4, 23) if dense else ())),
        draw(_field(1, 31)),
        draw(_field(1, 12, MONTHS, 1)),
        draw(_field(0, 7, WEEKDAYS, 0)),
    ]
    if dense:
        for index, (low, high) in ((2, (1, 31)), (3, (1, 12)), (4, (0, 7))):
            if draw(st.integers(0, 2)) > 0:
                parts[index] = ("*", frozenset(range(low, high + 1)))
    text = " ".join(t for t, _ in parts)
    return Spec(text, *(v for _, v in parts))


def reference_next_utc(spec: Spec, after: float, years: int = 29) -> float | None:
    """Minute by minute from ``after`` (skipping the days that do not match), in UTC, for
    ``years`` years: None if nothing fires (within 29 years every date has fallen on every
    weekday, leap days included, unless the window holds a century that is not a leap year)."""
    start = EPOCH + timedelta(minutes=math.floor(after) // 60 + 1)
    day = start.date()
    last = day + timedelta(days=366 * years)
    while day < last:
        if day.month in spec.months and spec.day_ok(day):
            midnight = datetime(day.year, day.month, day.day)
            for minute in range(1440):
                wall = midnight + timedelta(minutes=minute)
                if wall >= start and spec.matches(wall):
                    return (wall - EPOCH).total_seconds()
        day += timedelta(days=1)
    return None


def vixie_cron(spec: Spec, tz: ZoneInfo, start: int, end: int) -> list[int]:
    """The instants at which Vixie cron (cron.c's main loop and find_jobs) starts the job,
    woken at every minute from ``start`` to ``end``: its clock is local minutes since the
    epoch; a change of 1 runs all jobs; of 2-5 runs every skipped minute's jobs; of 6-180
    runs the wildcard jobs of now and the fixed-time jobs of every skipped minute; of -180-0
    runs only the wildcard jobs (virtual time waits); larger ones run all jobs of now."""

    def clock(instant: int) -> int:
        offset = datetime.fromtimestamp(instant, tz).utcoffset()
        assert offset is not None
        return (instant + int(offset.total_seconds())) // 60

    def due(minutes: int, wild: bool, fixed: bool) -> bool:
        if not spec.matches(EPOCH + timedelta(minutes=minutes)):
            return False
        return wild if spec.wildcard else fixed

    instant = start - start % 60
    running = virtual = clock(instant)
    fired = []
    while instant < end:
        instant += 60
        now = clock(instant)
        if now == running:
            continue
        running = now
        change = running - virtual
        run = False
        if change == 1 or not -180 <= change <= 180:
            virtual = running
            run = due(running, True, True)
        elif change > 5:
            run = due(running, True, False)
            run = any([run] + [due(m, False, True) for m in range(virtual + 1, running + 1)])
            virtual = running
        elif change > 0:
            run = any(due(m, True, True) for m in range(virtual + 1, running + 1))
            virtual = running
        else:
            run = due(running, True, False)
        if run:
            fired.append(instant)
    return fired


TRANSITIONS = [  # (zone, instant of a UTC offset change): every kind of gap and fold
    (BERLIN, "2026-03-29T01:00Z"),
    (BERLIN, "2026-10-25T01:00Z"),
    (NEW_YORK, "2026-03-08T07:00Z"),
    (NEW_YORK, "2026-11-01T06:00Z"),
    ("America/Havana", "2026-03-08T05:00Z"),
    ("America/Havana", "2026-11-01T05:00Z"),
    ("America/Sao_Paulo", "2018-11-04T03:00Z"),
    ("America/Sao_Paulo", "2019-02-17T02:00Z"),
    ("Australia/Lord_Howe", "2026-04-04T15:00Z"),
    ("Australia/Lord_Howe", "2026-10-03T15:30Z"),
    ("Pacific/Chatham", "2026-04-04T14:00Z"),
    ("Pacific/Chatham", "2026-09-26T14:00Z"),
    ("Antarctica/Troll", "2026-03-29T01:00Z"),
    ("Antarctica/Troll", "2026-10-25T01:00Z"),
    ("America/Caracas", "2007-12-09T07:00Z"),
    ("America/Caracas", "2016-05-01T07:00Z"),
    ("Asia/Kathmandu", "1985-12-31T18:30Z"),
    ("Antarctica/Casey", "2009-10-17T18:00Z"),
    ("Antarctica/Casey", "2010-03-04T15:00Z"),
    ("Pacific/Apia", "2011-09-24T14:00Z"),
    ("Pacific/Apia", "2011-12-30T10:00Z"),
    ("Pacific/Kwajalein", "1969-09-30T13:00Z"),
    ("Pacific/Kwajalein", "1993-08-21T12:00Z"),
]


@pytest.mark.parametrize(("zone", "when"), TRANSITIONS)
def test_the_reference_transitions_are_real(zone: str, when: str) -> None:
    tz, instant = ZoneInfo(zone), int(at(when))
    before = datetime.fromtimestamp(instant - 1, tz).utcoffset()
    assert before != datetime.fromtimestamp(instant, tz).utcoffset()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), after=st.floats(0, 3.1e9, allow_nan=False), count=st.integers(1, 4))
def test_utc_ticks_match_a_minute_by_minute_search(spec: Spec, after: float, count: int) -> None:
    expected = reference_next_utc(spec, after)
    if expected is None:  # never fires: the parser must say so
        with pytest.raises(CronError, match="never fires"):
            CronSchedule.parse(spec.text)
        return
    schedule = CronSchedule.parse(spec.text)
    instant = after
    for _ in range(count):
        assert expected is not None
        instant = schedule.next_after(instant)
        assert instant == expected, spec.text
        expected = reference_next_utc(spec, instant)


@pytest.mark.parametrize(("zone", "when"), TRANSITIONS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(dense=True), shift=st.integers(-2 * 86400, 86400))
def test_zone_ticks_match_an_emulation_of_vixie_cron(
    zone: str, when: str, spec: Spec, shift: int
) -> None:
    """Around every kind of UTC offset change, from any second: the same instants as cron."""
    try:
        schedule = CronSchedule.parse(spec.text)
    except CronError:  # never fires: tested in UTC
        assume(False)
    tz = ZoneInfo(zone)
    after = int(at(when)) + shift
    end = after + 2 * 86400
    expected = [t for t in vixie_cron(spec, tz, after - 86400, end) if after < t <= end]
    found = []
    instant = schedule.next_after(after, tz)
    while instant <= end:
        found.append(int(instant))
        instant = schedule.next_after(instant, tz)
    assert [local(t, zone) for t in found] == [local(t, zone) for t in expected], spec.text


ZONES = ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham", BERLIN, NEW_YORK]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=specs(),
    zone=st.sampled_from(ZONES),
    after=st.floats(1e9, 3e9, allow_nan=False),
)
def test_ticks_increase_and_match_in_local_time(spec: Spec, zone: str, after: float) -> None:
    """Every tick is later than the last and its local wall time matches the expression,
    except the catch-up of a fixed-time job at the end of a spring-forward gap."""
    try:
        schedule = CronSchedule.parse(spec.text)
    except CronError:  # never fires: tested in UTC
        assume(False)
    tz = ZoneInfo(zone)
    previous = after
    for _ in range(6):
        tick = schedule.next_after(previous, tz)
        assert tick > previous
        assert tick == int(tick)
        moment = datetime.fromtimestamp(tick, tz)
        assert moment.second == 0
        if not schedule.matches(moment):  # then it is the end of a gap, the clock jumping
            assert not spec.wildcard, (spec.text, moment)
            assert moment.utcoffset() != datetime.fromtimestamp(tick - 1, tz).utcoffset()
        previous = tick


def test_matches_reads_the_wall_time() -> None:
    schedule = CronSchedule.parse("30 2 * mar sun")
    assert schedule.matches(datetime(2026, 3, 29, 2, 30, 59))
    assert schedule.matches(datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo(BERLIN)))  # a gap time
    assert not schedule.matches(datetime(2026, 3, 29, 2, 31))
    assert not schedule.matches(datetime(2026, 3, 28, 2, 30))
    assert not schedule.matches(datetime(2026, 4, 5, 2, 30))


# ----------------------------------------------------------------------- efficiency


@pytest.mark.parametrize(
    "expression", ["0 0 29 2 *", "@yearly", "59 23 31 12 *", "0 0 13 * 5", "0 12 1 1 1"]
)
def test_sparse_expressions_take_no_minute_by_minute_walk(expression: str) -> None:
    schedule, tz = CronSchedule.parse(expression), ZoneInfo(BERLIN)
    instant = at("2097-03-01T00:00+01:00")
    begin = time.perf_counter()
    for _ in range(200):
        instant = schedule.next_after(instant, tz)
    elapsed = time.perf_counter() - begin
    assert elapsed < 2.0, f"{elapsed / 200 * 1e6:.0f} us per tick"  # measured: ~10-100 us


def test_a_year_of_quarter_hours_is_quick() -> None:
    schedule, tz = CronSchedule.parse("*/15 * * * *"), ZoneInfo(NEW_YORK)
    instant = at("2026-01-01T00:00-05:00")
    begin = time.perf_counter()
    for _ in range(35_040):
        instant = schedule.next_after(instant, tz)
    assert time.perf_counter() - begin < 20  # measured: ~0.3 s
    assert local(instant, NEW_YORK) == "2027-01-01T00:00-05:00"


def test_cron_ticks_on_the_virtual_clock_for_a_year() -> None:
    """A serve-like loop: sleep until each tick on virtual time, past 2**24 s of it."""

    async def main() -> list[float]:
        clock, tz = current_clock(), ZoneInfo(BERLIN)
        schedule, woke = CronSchedule.parse("0 */6 * * *"), list[float]()
        tick = schedule.next_after(clock.time(), tz)
        while len(woke) < 4 * 365:
            await asyncio.sleep(tick - clock.time())
            woke.append(clock.time())
            tick = schedule.next_after(clock.time(), tz)
        return woke

    woke = run_virtual(main())
    assert all(local(t, BERLIN)[11:16] in {"00:00", "06:00", "12:00", "18:00"} for t in woke)
    assert all(t == int(t) for t in woke)
    assert woke[-1] - woke[0] > 2**24


# -------------------------------------------------------------------- interval ticks


def test_interval_ticks_lie_on_a_grid_fixed_by_the_origin() -> None:
    every = IntervalTicks(900)
    assert (every.next_after(0), every.next_after(899.9), every.next_after(900)) == (
        900.0,
        900.0,
        1800.0,
    )
    assert every.next_after(-1) == 0.0
    shifted = IntervalTicks(900, origin=10)
    assert (shifted.next_after(0), shifted.next_after(10), shifted.next_after(-900)) == (
        10.0,
        910.0,
        -890.0,
    )
    assert IntervalTicks(900, origin=1e9).next_after(0) == 100.0  # ticks before the origin too


def test_interval_ticks_do_not_drift_across_restarts() -> None:
    ticks = IntervalTicks(0.1, origin=1_700_000_000.0)
    run, restarted = [], []
    instant = 1_700_000_000.0
    for _ in range(1000):
        instant = ticks.next_after(instant)
        run.append(instant)
    instant = run[499] - 0.05  # a process that restarts in the middle picks up the same grid
    for _ in range(500):
        instant = ticks.next_after(instant)
        restarted.append(instant)
    assert restarted == run[499:999]
    assert run == [1_700_000_000.0 + k * 0.1 for k in range(1, 1001)]


@given(
    every=st.floats(1e-3, 1e6),
    origin=st.floats(-1e9, 1e9),
    after=st.floats(-2e9, 2e9),
)
def test_interval_next_after_is_the_first_grid_point_after(
    every: float, origin: float, after: float
) -> None:
    tick = IntervalTicks(every, origin).next_after(after)
    assert tick > after
    k = round((tick - origin) / every)
    assert tick == origin + k * every
    assert origin + (k - 1) * every <= after


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"every": 0}, ValueError, r"every must be > 0 seconds \(got 0\)"),
        ({"every": -5}, ValueError, "every must be > 0"),
        ({"every": math.nan}, ValueError, "every must be finite"),
        ({"every": math.inf}, ValueError, "every must be finite"),
        ({"every": "60"}, TypeError, "every must be a number of seconds"),
        ({"every": True}, TypeError, "every must be a number"),
        ({"every": 60, "origin": math.nan}, ValueError, "origin must be finite"),
    ],
)
def test_interval_ticks_reject_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        IntervalTicks(**kwargs)


def test_interval_next_after_checks_its_argument() -> None:
    ticks = IntervalTicks(60)
    check: Callable[[Any], float] = ticks.next_after
    with pytest.raises(ValueError, match="finite"):
        check(math.nan)
    with pytest.raises(TypeError, match="epoch seconds"):
        check(None)
