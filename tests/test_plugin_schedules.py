"""Schedules in the pytest plugin: the ``flowrun_serve`` fixture and ``pytest --flowrun`` on a
file whose schedule is invalid, tested with pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"

SYNC = """
import asyncio

from flowrun import RunContext, build_default_engine

engine = build_default_engine()
sync = engine.dag("sync")
sync.schedule(every=900, overlap="skip")


@sync.task
async def pull(context: RunContext[None]) -> float:
    await asyncio.sleep(1200 if context.scheduled_for % 3600 == 0 else 1)
    return context.scheduled_for
"""


def test_flowrun_serve_runs_a_day_of_ticks_on_virtual_time(pytester: pytest.Pytester) -> None:
    """Ticks on the hour run 20 minutes, so the tick a quarter later is skipped. The virtual
    day starts at 22:13:20: its 96 ticks run from 22:15 to 22:00, 24 of them on the hour; the
    quarter after the last one is past the day. So 73 runs and 23 skipped ticks, each run
    recorded by ``flowrun_events``, and serving ends when the last long run does; nothing
    stays attached to the module's engine."""
    pytester.makeini(INI)
    pytester.makepyfile(
        pipeline=SYNC,
        test_sync="""
        from flowrun import DagStartEvent
        from pipeline import engine, sync


        def test_a_day(flowrun_serve, flowrun_clock, flowrun_events):
            start = flowrun_clock.time()
            ticks = flowrun_serve(sync, 86_400)
            outcomes = [event.tick.outcome for event in ticks]
            assert len(ticks) == 96
            assert outcomes.count("started") == 73
            assert outcomes.count("skipped") == 23
            skipped = [e.tick for e in ticks if e.tick.outcome == "skipped"]
            assert all(t.due_at % 3600 == 900 for t in skipped)
            assert all("still running" in t.reason for t in skipped)
            ran = sorted(e.report["scheduled_for"] for e in ticks if e.report is not None)
            assert len(ran) == 73 and ran[0] == start + 100  # 22:15:00
            assert len(flowrun_events.of(DagStartEvent)) == 73
            assert engine.hooks == ()
            assert flowrun_clock.time() == ran[-1] + 1200  # the 22:00 run took 20 minutes


        def test_a_bad_target_is_one_clear_error(flowrun_serve):
            import pytest

            with pytest.raises(TypeError, match="Engine or a DagScope"):
                flowrun_serve("sync", 60)
        """,
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_bad_cron_string_fails_collection_with_the_field_named(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.mkdir("dags")
    pytester.path.joinpath("dags", "nightly.py").write_text(
        "from flowrun import build_default_engine\n"
        "engine = build_default_engine()\n"
        "nightly = engine.dag('nightly')\n"
        "nightly.task('backup')(lambda: None)\n"
        "nightly.schedule(cron='0 25 * * *')\n",
        encoding="utf-8",
    )
    result = pytester.runpytest("--flowrun", "-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*cron field 2 (hour) '25': must be 0-23*"])
