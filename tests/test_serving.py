"""Schedules and ``engine.serve``: declaration, tick tables against a reference, catch-up,
overlap, restarts, two servers on one file, stopping, and the ``flowrun serve`` command.

Everything about time runs on the virtual clock; the references are computed here from
``zoneinfo`` alone, not with flowrun's cron code."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from support import WAIT_S, flowrun

from flowrun import (
    InMemoryStateStore,
    RunContext,
    ScheduleError,
    SqliteStateStore,
    TickEvent,
    UnknownDagError,
    build_default_engine,
)
from flowrun._engine import Engine
from flowrun.state._sqlite_schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from flowrun.testing import VirtualClock, run_virtual, serve_for

JAN_1_2026 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def _engine(clock: VirtualClock, store: Any = None, *, sleep_s: float = 0.0) -> Engine:
    """An engine with DAG ``sync``: one task returning its run's ``scheduled_for`` (after
    ``sleep_s`` virtual seconds)."""
    engine = build_default_engine(clock=clock, state_store=store)
    sync = engine.dag("sync")

    @sync.task
    async def pull(context: RunContext[None]) -> float | None:
        if sleep_s:
            await asyncio.sleep(sleep_s)
        return context.scheduled_for

    return engine


def _due(events: list[TickEvent], outcome: str = "started") -> list[float]:
    return [e.tick.due_at for e in events if e.tick.outcome == outcome]


# -- declaring ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "option", "message"),
    [
        ({}, None, "give exactly one of cron= (e.g. cron='0 6 * * *') or every="),
        ({"cron": "* * * * *", "every": 60}, None, "got both cron= and every="),
        ({"cron": "0 25 * * *"}, "cron", "cron field 2 (hour) '25': must be 0-23"),
        ({"cron": "0 0 30 2 *"}, "cron", "never fires"),
        ({"cron": "@dialy"}, "cron", "did you mean '@daily'"),
        ({"cron": 6}, "cron", "cron must be a string"),
        ({"cron": "0 6 * * *", "tz": "Europe/Berlni"}, "tz", "Did you mean 'Europe/Berlin'?"),
        ({"every": 0}, "every", "every must be > 0 seconds (got 0)"),
        ({"every": True}, "every", "every must be a number of seconds"),
        ({"every": "900"}, "every", "every must be a number of seconds"),
        ({"every": 60, "tz": "Europe/Berlin"}, "tz", "tz= applies to cron= schedules"),
        ({"every": 60, "catchup": "latset"}, "catchup", "Did you mean 'latest'?"),
        ({"every": 60, "overlap": "queu"}, "overlap", "Did you mean 'queue'?"),
        ({"every": 60, "max_catchup": 0}, "max_catchup", "max_catchup must be >= 1"),
        ({"every": 60, "name": " "}, "name", "name must be a non-empty string"),
    ],
)
def test_a_bad_schedule_fails_at_declaration_naming_the_dag_and_the_option(
    options: dict[str, Any], option: str | None, message: str
) -> None:
    engine = _engine(VirtualClock())
    with pytest.raises(ScheduleError) as caught:
        engine.schedule("sync", **options)
    assert message in str(caught.value)
    assert str(caught.value).startswith("schedule of DAG 'sync': ")
    assert caught.value.dag == "sync"
    assert caught.value.option == option
    assert not engine.schedules


def test_schedule_names_are_unique_and_a_dag_may_have_several() -> None:
    engine = _engine(VirtualClock())
    sync = engine.dag("sync")
    first = sync.schedule(every=900)
    second = sync.schedule(cron="0 6 * * *", tz="Europe/Berlin")
    assert (first.name, second.name) == ("sync every 900s", "sync cron '0 6 * * *' (Europe/Berlin)")
    with pytest.raises(ScheduleError, match="declared twice; give the second one another name="):
        engine.schedule("sync", every=900)
    engine.schedule("sync", every=900, name="fast")
    assert list(engine.schedules) == ["sync every 900s", second.name, "fast"]


def test_serving_without_schedules_an_unknown_dag_or_a_store_without_ticks_fails_clearly() -> None:
    clock = VirtualClock()
    with pytest.raises(ScheduleError, match="the engine has no schedules; declare one first"):
        run_virtual(_engine(clock).serve(), clock=clock)
    engine = _engine(clock)
    engine.schedule("snyc", every=60)
    with pytest.raises(UnknownDagError, match="Did you mean 'sync'"):
        run_virtual(engine.serve(), clock=clock)

    class OldStore(InMemoryStateStore):
        record_tick = None  # type: ignore[assignment]

    old = _engine(clock, OldStore())
    old.schedule("sync", every=60)
    with pytest.raises(TypeError, match="record_tick, update_tick and list_ticks"):
        run_virtual(old.serve(), clock=clock)


# -- tick tables against references ------------------------------------------------------


def test_every_900_for_a_day_runs_96_times_on_the_quarter_hours() -> None:
    clock = VirtualClock(epoch=JAN_1_2026 + 17)
    engine = _engine(clock)
    engine.schedule("sync", every=900)
    events = serve_for(engine, 86_400)
    expected = [JAN_1_2026 + 900 * k for k in range(1, 97)]
    assert _due(events) == expected
    reports = [e.report for e in events]
    assert all(r is not None and r["status"] == "SUCCESS" for r in reports)
    assert [r["scheduled_for"] for r in reports if r] == expected
    assert [r["tasks"]["pull"]["result"] for r in reports if r] == expected
    assert {r["trigger"] for r in reports if r} == {"schedule"}
    assert len(engine.list_runs("sync", limit=200)) == 96
    manual = run_virtual(engine.run_once("sync"), clock=clock)
    assert engine.get_run_report(manual)["trigger"] == "manual"
    assert engine.get_run_report(manual)["scheduled_for"] is None


def _fixed_time_reference(zone: str, hour: int, minute: int, year: int) -> list[float]:
    """Debian cron for a job at a fixed local time: once a day; a time in the spring-forward
    gap fires at the end of the gap, one in the repeated hour at its first occurrence."""
    tz = ZoneInfo(zone)
    ticks = []
    day = datetime(year, 1, 1)
    while day.year == year:
        wall = day.replace(hour=hour, minute=minute, tzinfo=tz)  # fold=0: the first one
        instant = wall.timestamp()
        back = datetime.fromtimestamp(instant, tz)
        if (back.hour, back.minute) != (hour, minute):  # no such wall time: the gap
            after = wall.replace(minute=0) + timedelta(hours=1)
            while datetime.fromtimestamp(after.timestamp(), tz).replace(tzinfo=None) != (
                after.replace(tzinfo=None)
            ):
                after += timedelta(minutes=1)
            instant = after.timestamp()
            gap_start = datetime.fromtimestamp(wall.timestamp() - 3600, tz)
            instant = min(instant, _gap_end(tz, gap_start))
        ticks.append(instant)
        day += timedelta(days=1)
    return ticks


def _gap_end(tz: ZoneInfo, before: datetime) -> float:
    """The instant the clock jumps forward, searched minute by minute from ``before``."""
    instant = before.timestamp()
    offset = before.utcoffset()
    while datetime.fromtimestamp(instant, tz).utcoffset() == offset:
        instant += 60
    return instant


@pytest.mark.parametrize(
    ("zone", "hour", "minute"), [("Europe/Berlin", 2, 30), ("America/New_York", 2, 15)]
)
def test_a_fixed_time_job_over_a_year_follows_debian_cron_across_both_dst_changes(
    zone: str, hour: int, minute: int
) -> None:
    clock = VirtualClock(epoch=JAN_1_2026 - 86_400)  # 2025-12-31 00:00 UTC
    engine = _engine(clock)
    engine.schedule("sync", cron=f"{minute} {hour} * * *", tz=zone)
    events = serve_for(engine, 366 * 86_400 + 86_400)
    tz = ZoneInfo(zone)
    ran = [t for t in _due(events) if datetime.fromtimestamp(t, tz).year == 2026]
    expected = _fixed_time_reference(zone, hour, minute, 2026)
    assert len(expected) == 365
    assert ran == expected
    spring = [t for t in ran if datetime.fromtimestamp(t, tz).hour != hour]
    assert [datetime.fromtimestamp(t, tz).strftime("%m-%d %H:%M") for t in spring] == [
        "03-29 03:00" if zone == "Europe/Berlin" else "03-08 03:00"
    ]


@pytest.mark.parametrize(
    ("zone", "start"), [("Europe/Berlin", "2026-03-28"), ("America/New_York", "2026-10-31")]
)
def test_a_wildcard_job_follows_the_wall_clock_through_a_dst_change(zone: str, start: str) -> None:
    """``0 * * * *`` fires at every instant whose local minute is 0: no tick for the hour
    that does not exist, two for the hour that happens twice."""
    begin = datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp()
    clock = VirtualClock(epoch=begin)
    engine = _engine(clock)
    engine.schedule("sync", cron="0 * * * *", tz=zone)
    events = serve_for(engine, 3 * 86_400)
    tz = ZoneInfo(zone)
    expected = [
        t
        for t in (begin + 60 * m for m in range(1, 3 * 1440 + 1))
        if datetime.fromtimestamp(t, tz).minute == 0
    ]
    assert _due(events) == expected
    per_day: dict[str, int] = {}
    for t in expected:
        day = datetime.fromtimestamp(t, tz).strftime("%m-%d")
        per_day[day] = per_day.get(day, 0) + 1
    changed = {"Europe/Berlin": ("03-29", 23), "America/New_York": ("11-01", 25)}[zone]
    assert per_day[changed[0]] == changed[1]


def test_dom_or_dow_lists_names_steps_and_macros_match_a_brute_force_reference() -> None:
    clock = VirtualClock(epoch=JAN_1_2026)
    engine = _engine(clock)
    exprs = {
        "a": "0 0 1,15 * mon",
        "b": "30 8-18/5 * jan-mar mon-fri",
        "c": "@weekly",
        "d": "@monthly",
    }
    for name, expr in exprs.items():
        engine.schedule("sync", cron=expr, name=name)
    events = serve_for(engine, 90 * 86_400)
    got: dict[str, list[float]] = {}
    for event in events:
        got.setdefault(event.tick.schedule, []).append(event.tick.due_at)
    minutes = [JAN_1_2026 + 60 * m for m in range(1, 90 * 1440 + 1)]

    def when(t: float) -> datetime:
        return datetime.fromtimestamp(t, UTC)

    reference = {
        "a": [
            t
            for t in minutes
            if (w := when(t)).minute == 0 and w.hour == 0 and (w.day in (1, 15) or w.weekday() == 0)
        ],
        "b": [
            t
            for t in minutes
            if (w := when(t)).minute == 30
            and w.hour in (8, 13, 18)
            and w.month <= 3
            and w.weekday() < 5
        ],
        "c": [
            t for t in minutes if (w := when(t)).minute == 0 and w.hour == 0 and w.weekday() == 6
        ],
        "d": [t for t in minutes if (w := when(t)).minute == 0 and w.hour == 0 and w.day == 1],
    }
    for name in exprs:
        assert sorted(got[name]) == reference[name], name


# -- catch-up after a downtime -----------------------------------------------------------


@pytest.mark.parametrize(
    ("catchup", "ran_after"), [("latest", [288]), ("all", [284, 285, 286, 287, 288]), ("none", [])]
)
def test_catch_up_after_a_three_day_outage(catchup: str, ran_after: list[int]) -> None:
    """Serve an hour of 15-minute ticks, stop, lose three days, serve again: the missed ticks
    are run by the policy (oldest first) and the rest recorded as one missed tick."""
    clock = VirtualClock(epoch=JAN_1_2026)
    engine = _engine(clock)
    engine.schedule("sync", every=900, catchup=catchup, max_catchup=5)
    first = serve_for(engine, 3600)
    assert _due(first) == [JAN_1_2026 + 900 * k for k in range(1, 5)]
    clock.advance(3 * 86_400)  # no server for three days: 288 ticks fall due
    events = serve_for(engine, 0)
    assert _due(events) == [JAN_1_2026 + 3600 + 900 * k for k in ran_after]
    (missed,) = [e.tick for e in events if e.tick.outcome == "missed"]
    count = 288 - len(ran_after)
    assert missed.reason is not None
    assert missed.reason.startswith(f"{count} ticks due from 2026-01-01T01:15:00+00:00 to ")
    assert f"catchup={catchup!r}" in missed.reason
    assert missed.due_at == JAN_1_2026 + 3600 + 900 * (count)
    assert missed.run_id is None


def test_the_first_serve_ever_does_not_catch_up() -> None:
    clock = VirtualClock(epoch=JAN_1_2026 + 10 * 86_400)
    engine = _engine(clock)
    engine.schedule("sync", every=900, catchup="all")
    assert _due(serve_for(engine, 899)) == []
    assert engine.state_store.list_ticks() == []  # type: ignore[attr-defined]


def test_a_restart_on_sqlite_continues_from_the_last_recorded_tick(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    clock = VirtualClock(epoch=JAN_1_2026)
    with SqliteStateStore(path) as store:
        engine = _engine(clock, store)
        engine.schedule("sync", every=900, catchup="all", max_catchup=10)
        serve_for(engine, 1800)
    clock.advance(2700)  # three ticks missed
    with SqliteStateStore(path) as store:  # a new process: a new engine, the same file
        engine = _engine(clock, store)
        engine.schedule("sync", every=900, catchup="all", max_catchup=10)
        events = serve_for(engine, 900)
        ticks = store.list_ticks("sync every 900s")
    assert _due(events) == [JAN_1_2026 + 900 * k for k in (3, 4, 5, 6)]
    assert [t.due_at for t in reversed(ticks)] == [JAN_1_2026 + 900 * k for k in range(1, 7)]
    with SqliteStateStore(path) as store:  # reopened: scheduled_for and trigger are kept
        runs = store.list_runs("sync", None, 10)
        assert [r.scheduled_for for r in runs] == [JAN_1_2026 + 900 * k for k in range(6, 0, -1)]
        assert {r.trigger for r in runs} == {"schedule"}


# -- overlap -----------------------------------------------------------------------------


@pytest.mark.parametrize("overlap", ["skip", "queue", "allow"])
def test_overlap_policies_with_runs_longer_than_the_interval(overlap: str) -> None:
    clock = VirtualClock(epoch=JAN_1_2026)
    engine = _engine(clock, sleep_s=1300)  # each run takes 1300 s; ticks every 900 s
    engine.schedule("sync", every=900, overlap=overlap)
    events = serve_for(engine, 3600)  # ticks at 900, 1800, 2700, 3600
    spans = sorted((e.report["created_at"], e.report["finished_at"]) for e in events if e.report)
    if overlap == "skip":
        assert _due(events) == [JAN_1_2026 + 900, JAN_1_2026 + 2700]
        skipped = [e.tick for e in events if e.tick.outcome == "skipped"]
        assert [t.due_at for t in skipped] == [JAN_1_2026 + 1800, JAN_1_2026 + 3600]
        assert all("was still running (overlap='skip')" in (t.reason or "") for t in skipped)
    elif overlap == "queue":
        assert sorted(_due(events)) == [JAN_1_2026 + 900 * k for k in range(1, 5)]
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # in turn
        assert spans[-1][1] == JAN_1_2026 + 900 + 4 * 1300
    else:
        assert sorted(_due(events)) == [JAN_1_2026 + 900 * k for k in range(1, 5)]
        assert [s[0] for s in spans] == [JAN_1_2026 + 900 * k for k in range(1, 5)]
        assert spans[0][1] > spans[1][0]  # side by side


# -- stopping ----------------------------------------------------------------------------


@pytest.mark.parametrize(("grace_s", "status"), [(2000.0, "SUCCESS"), (30.0, "FAILED")])
def test_stop_gives_the_runs_in_flight_a_grace_period(grace_s: float, status: str) -> None:
    clock = VirtualClock(epoch=JAN_1_2026)
    engine = _engine(clock, sleep_s=1000)
    engine.schedule("sync", every=60, overlap="skip")
    stop = asyncio.Event()
    events: list[TickEvent] = []

    async def main() -> None:
        server = asyncio.create_task(
            engine.serve(stop=stop, grace_s=grace_s, on_tick=events.append)
        )
        await asyncio.sleep(90)  # the run of the tick at 60 is in flight
        stop.set()
        await server

    run_virtual(main(), clock=clock)
    (run,) = engine.list_runs("sync")
    assert run["status"] == status
    assert run["scheduled_for"] == JAN_1_2026 + 60
    if status == "FAILED":
        assert clock.time() == JAN_1_2026 + 90 + grace_s
        assert "cancel" in (run["tasks"]["pull"]["error"] or "").lower()
        resumed = run_virtual(engine.resume(run["run_id"]), clock=clock)
        assert engine.get_run_report(resumed)["status"] == "SUCCESS"
    assert [e.tick.outcome for e in events] == ["started"]


def test_max_runs_and_cancelling_serve() -> None:
    clock = VirtualClock(epoch=JAN_1_2026)
    engine = _engine(clock)
    engine.schedule("sync", every=60)
    run_virtual(engine.serve(max_runs=3), clock=clock)
    assert len(engine.list_runs("sync")) == 3

    slow = _engine(clock, sleep_s=500)
    slow.schedule("sync", every=60)

    async def cancel_soon() -> None:
        server = asyncio.create_task(slow.serve())
        await asyncio.sleep(100)
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server

    run_virtual(cancel_soon(), clock=clock)
    (run,) = slow.list_runs("sync")
    assert run["status"] == "FAILED"  # cancelled with serve, recorded, resumable


def test_a_run_that_cannot_start_is_an_error_tick_and_serving_goes_on() -> None:
    clock = VirtualClock(epoch=JAN_1_2026)
    calls: list[int] = []

    def flaky_context() -> RunContext[None]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("database is down")
        return RunContext(None)

    engine = build_default_engine(clock=clock)
    sync = engine.dag("sync", context=flaky_context)
    sync.task("pull")(lambda: 1)
    sync.schedule(every=60)
    events = serve_for(engine, 180)
    assert [e.tick.outcome for e in events] == ["error", "started", "started"]
    assert "database is down" in (events[0].tick.reason or "")
    assert events[0].report is None
    ticks = engine.state_store.list_ticks()  # type: ignore[attr-defined]
    assert ticks[-1].outcome == "error"


# -- two servers, one database -----------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from flowrun import SqliteStateStore, build_default_engine
    from flowrun.testing import VirtualClock, serve_for

    path, epoch, go = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
    with SqliteStateStore(path, busy_timeout_s=60) as store:
        engine = build_default_engine(clock=VirtualClock(epoch=epoch), state_store=store)
        sync = engine.dag("sync")
        sync.task("pull")(lambda: time.sleep(0.003))  # real time: the two servers race
        while not go.exists():  # both start serving together
            time.sleep(0.001)
        sync.schedule(every=900, catchup="none")
        events = serve_for(engine, 86_400)
    print(sum(e.tick.outcome == "started" for e in events))
    """
)


def test_two_servers_on_one_database_never_start_the_same_tick_twice(tmp_path: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER, encoding="utf-8")
    path = tmp_path / "shared.sqlite"
    SqliteStateStore(path).close()  # created (and migrated) once, before both start
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(path), str(JAN_1_2026), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    go.touch()
    started = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        started.append(int(out))
    assert sum(started) == 96  # each tick ran in exactly one of them
    with sqlite3.connect(path) as db:
        due = [r[0] for r in db.execute("SELECT scheduled_for FROM runs ORDER BY scheduled_for")]
        ticks = db.execute("SELECT count(*), count(DISTINCT due_at) FROM ticks").fetchone()
    assert due == [JAN_1_2026 + 900 * k for k in range(1, 97)]
    assert ticks == (96, 96)


# -- old databases -------------------------------------------------------------------------


def test_a_schema_5_database_migrates_and_its_runs_read_as_manual(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        for version in range(1, 6):
            MIGRATIONS[version](db)
        db.execute(
            "INSERT INTO runs (run_id, dag_name, created_at, status, finished_at, owner_pid, "
            "owner_host) VALUES ('old1', 'sync', 1.0, 'SUCCESS', 2.0, 1, 'h')"
        )
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 5")
    with SqliteStateStore(path) as store:
        run = store.load_run("old1")
        assert (run.trigger, run.scheduled_for) == ("manual", None)
        assert store.list_ticks() == []
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION  # 6 and on


# -- the command line ----------------------------------------------------------------------

PIPELINE = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    from flowrun import build_default_engine

    engine = build_default_engine()
    sync = engine.dag("sync")
    sync.schedule(every=float(os.environ.get("EVERY_S", "0.2")), overlap="skip")

    @sync.task
    def pull() -> str:
        if os.environ.get("HOLD"):
            Path("started").touch()
            deadline = time.monotonic() + 60
            while not Path("release").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return "pulled"
    """
)


def _wait_for(path: Path) -> None:
    """Poll for a file the server's task writes (a condition with a deadline, not a delay)."""
    deadline = time.monotonic() + WAIT_S * 6
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stops_starting_runs_and_lets_the_run_in_flight_finish(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(PIPELINE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRUN_")}
    env |= {"HOLD": "1", "EVERY_S": "0.2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowrun", "serve", "pipe.py", "--grace-s", "60"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(tmp_path / "started")  # a run is in flight, holding
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None  # the server took the signal before the run may end
    taken = proc.stderr.readline() + proc.stderr.readline()  # "\n" then the message
    assert "SIGTERM: starting no more runs" in taken
    (tmp_path / "release").touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.count("SUCCESS") == 1  # the run in flight finished; no other started
    runs = json.loads(flowrun(tmp_path, "runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["SUCCESS"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_second_ctrl_c_cancels_at_once_with_exit_130(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(PIPELINE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRUN_")}
    env |= {"HOLD": "1", "EVERY_S": "0.2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowrun", "serve", "pipe.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(tmp_path / "started")
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    assert "starting no more runs" in proc.stderr.readline() + proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    (tmp_path / "release").touch()
    assert proc.returncode == 130, err
    runs = json.loads(flowrun(tmp_path, "runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["FAILED"]
