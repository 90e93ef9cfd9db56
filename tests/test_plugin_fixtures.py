"""The pytest plugin's fixtures and markers, tested with pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture(autouse=True)
def _quiet_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)


PIPELINE = """
import asyncio
from flowrun import RunContext, build_default_engine

engine = build_default_engine()
etl = engine.dag("etl")

@etl.task(retries=2, retry_delay_s=60)
async def extract(context: RunContext[dict]) -> list:
    await asyncio.sleep(3600)
    return list(context.deps["rows"])

@etl.task(deps=[extract])
def load(extract: list) -> int:
    return len(extract)
"""


def test_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        pipeline=PIPELINE,
        test_fixtures="""
        import asyncio
        from flowrun import TaskStartEvent, task
        from flowrun.testing import RecordingHook, VirtualClock
        from pipeline import engine, etl

        def test_clock(flowrun_clock):
            assert isinstance(flowrun_clock, VirtualClock)
            assert flowrun_clock.monotonic() == 0.0

        def test_engine_events_registry(flowrun_engine, flowrun_events, flowrun_registry,
                                        flowrun_clock, flowrun_run):
            assert flowrun_engine.clock is flowrun_clock
            assert flowrun_engine.registry is flowrun_registry

            @task(dag="t")  # the global decorator writes to flowrun_registry
            async def a():
                await asyncio.sleep(5)
                return 1

            report = flowrun_run(flowrun_engine, "t")
            assert report["status"] == "SUCCESS"
            assert flowrun_events.task_order() == ["a"]
            assert isinstance(flowrun_events, RecordingHook)
            assert flowrun_clock.monotonic() == 5.0

        def test_run_module_engine(flowrun_run, flowrun_clock):
            report = flowrun_run(etl, context={"rows": [1, 2]})
            assert report["tasks"]["load"]["result"] == 2
            assert report["finished_at"] == 1_700_000_000.0 + 3600
            assert flowrun_clock.monotonic() == 3600.0

        def test_overrides(flowrun_run):
            report = flowrun_run(engine, "etl", overrides={"extract": lambda: [1, 2, 3]})
            assert report["tasks"]["load"]["result"] == 3

        def test_registry_is_deactivated_after_tests():
            from flowrun import TaskRegistry
            assert TaskRegistry.current() is None
        """,
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def test_marker_runs_before_the_test_and_checks_expect(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        pipeline=PIPELINE,
        conftest="""
        def pytest_flowrun_context(dag_name, engine):
            return {"rows": ["from conftest"]}
        """,
        test_marker="""
        import pytest
        from pipeline import engine, etl

        RAN = []

        @pytest.mark.flowrun(etl)
        def test_report(flowrun_report):
            assert flowrun_report["status"] == "SUCCESS"
            assert flowrun_report["tasks"]["extract"]["result"] == ["from conftest"]

        @pytest.mark.flowrun(engine, "etl", context={"rows": []}, targets=["extract"])
        def test_runs_without_requesting_the_report(flowrun_clock):
            assert flowrun_clock.monotonic() == 3600.0

        def fail():
            raise RuntimeError("api down")

        @pytest.mark.flowrun(etl, overrides={"extract": fail}, expect="FAILED")
        def test_expect_failed(flowrun_report):
            assert flowrun_report["tasks"]["extract"]["attempt"] == 3

        @pytest.mark.flowrun(etl, overrides={"extract": fail})
        def test_expect_mismatch():
            RAN.append(1)

        @pytest.mark.flowrun(etl, expect="MAYBE")
        def test_bad_expect():
            pass

        @pytest.mark.flowrun()
        def test_no_target(flowrun_report):
            pass

        def test_body_of_mismatch_never_ran():
            assert RAN == []
        """,
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1, errors=2)  # a mismatch fails, a misuse errors
    result.stdout.fnmatch_lines(
        [
            "*_ test_expect_mismatch _*",
            "*DAG 'etl' finished FAILED, expected SUCCESS*",
            "*extract*FAILED*3*",
            "*task 'extract' failed on attempt 3: RuntimeError: api down*",
            '*raise RuntimeError("api down")*',
            "*DAG etl (2 tasks)*",
        ]
    )
    result.stdout.fnmatch_lines(["*expect must be 'SUCCESS', 'FAILED' or None*"])
    result.stdout.fnmatch_lines(["*needs the engine or DAG scope to run*"])


def test_hook_skip_skips_marked_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        pipeline=PIPELINE,
        conftest="""
        import pytest
        def pytest_flowrun_context(dag_name, engine):
            pytest.skip(f"no credentials for {dag_name}")
        """,
        test_skip="""
        import pytest
        from pipeline import etl

        @pytest.mark.flowrun(etl)
        def test_it():
            pass
        """,
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no credentials for etl*"])


def test_real_time_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_real="""
        import asyncio, time
        import pytest
        from flowrun import SystemClock

        @pytest.mark.flowrun_real_time
        def test_real(flowrun_clock, flowrun_engine, flowrun_run):
            assert isinstance(flowrun_clock, SystemClock)

            @flowrun_engine.task
            async def nap():
                await asyncio.sleep(0.2)

            start = time.monotonic()
            report = flowrun_run(flowrun_engine)
            assert report["status"] == "SUCCESS"
            assert time.monotonic() - start >= 0.2
            assert report["created_at"] > 1_750_000_000
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)


def test_markers_registered_and_strict(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "strict = true\n")
    pytester.makepyfile(
        test_strict="""
        import pytest
        @pytest.mark.flowrun_real_time
        def test_a():
            pass
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.flowrun(engine_or_scope*", "*flowrun_real_time*"])


def test_disabled_with_p_no_flowrun(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_off="""
        def test_a(flowrun_clock):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:flowrun")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'flowrun_clock' not found*"])
    assert "flowrun: collect DAGs" not in result.stdout.str()
    result = pytester.runpytest_subprocess("-p", "no:flowrun", "--flowrun")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_disabled_plugin_with_an_optional_context_hook_in_conftest(
    pytester: pytest.Pytester,
) -> None:
    """The documented conftest marks its hook optional, so `-p no:flowrun` does not fail on an
    unknown hook; without the mark pytest rejects it (why the docs insist)."""
    hook = "\ndef pytest_flowrun_context(dag_name, engine):\n    return None\n"
    pytester.makepyfile(test_plain="def test_a():\n    pass\n")
    pytester.makeconftest("import pytest\n\n@pytest.hookimpl(optionalhook=True)" + hook)
    pytester.runpytest_subprocess("-p", "no:flowrun").assert_outcomes(passed=1)
    pytester.makeconftest(hook)
    result = pytester.runpytest_subprocess("-p", "no:flowrun")
    assert "unknown hook 'pytest_flowrun_context'" in result.stdout.str() + result.stderr.str()
    pytester.runpytest_subprocess().assert_outcomes(passed=1)  # with the plugin: fine


def test_plugin_import_is_cheap(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_cheap="""
        import sys
        def test_nothing_of_flowrun_imported():
            loaded = sorted(m for m in sys.modules if m == "flowrun" or m.startswith("flowrun."))
            assert loaded == []
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_pytest_asyncio_tests_on_virtual_time(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    pytester.makeconftest(
        """
        from flowrun.testing import virtual_loop_factory

        def pytest_asyncio_loop_factories(config, item):
            return {"virtual": virtual_loop_factory()}
        """
    )
    pytester.makepyfile(
        test_async="""
        import asyncio, time
        import pytest
        from flowrun import build_default_engine
        from flowrun.testing import current_clock

        @pytest.mark.asyncio
        async def test_hour_long_sleep():
            clock = current_clock()
            start = time.monotonic()
            engine = build_default_engine(clock=clock)

            @engine.task(timeout_s=3600)
            async def slow():
                await asyncio.sleep(7200)

            report = engine.get_run_report(await engine.run_once("default"))
            assert report["tasks"]["slow"]["error"].startswith("TaskTimeoutError")
            assert clock.monotonic() == 3600.0
            assert time.monotonic() - start < 5
        """
    )
    result = pytester.runpytest("-p", "asyncio", "--asyncio-mode=strict")
    result.assert_outcomes(passed=1)


def test_fixtures_follow_the_loop_clock_in_async_tests(pytester: pytest.Pytester) -> None:
    """flowrun_engine is built before an async test's loop exists; its clock must still be
    the loop's, or report timestamps disagree with the loop's sleeps and timeouts."""
    pytest.importorskip("pytest_asyncio")
    pytester.makeconftest(
        """
        from flowrun.testing import virtual_loop_factory

        def pytest_asyncio_loop_factories(config, item):
            return {"virtual": virtual_loop_factory()}
        """
    )
    pytester.makepyfile(
        test_async="""
        import asyncio
        import pytest
        from flowrun.testing import DEFAULT_EPOCH, current_clock

        @pytest.mark.asyncio
        async def test_engine_fixture(flowrun_engine, flowrun_clock):
            @flowrun_engine.task(dag="d", retries=2, retry_delay_s=60, timeout_s=10)
            async def slow():
                await asyncio.sleep(100)

            report = flowrun_engine.get_run_report(await flowrun_engine.run_once("d"))
            task = report["tasks"]["slow"]
            assert task["attempt"] == 3
            assert task["started_at"] == DEFAULT_EPOCH + 10 + 60 + 10 + 120
            assert task["finished_at"] == task["started_at"] + 10
            assert flowrun_clock.monotonic() == current_clock().monotonic() == 210

        from flowrun import build_default_engine

        marked = build_default_engine()

        @marked.task(dag="m", retries=1, retry_delay_s=3600)
        async def once_flaky():
            once_flaky.calls = getattr(once_flaky, "calls", 0) + 1
            if once_flaky.calls == 1:
                raise ConnectionError("later")

        @pytest.mark.asyncio
        @pytest.mark.flowrun(marked, "m")
        async def test_marker_on_an_async_test_is_on_virtual_time(flowrun_report):
            assert flowrun_report["tasks"]["once_flaky"]["started_at"] == DEFAULT_EPOCH + 3600
        """
    )
    result = pytester.runpytest("-p", "asyncio", "--asyncio-mode=strict")
    result.assert_outcomes(passed=2)


def test_works_under_pytest_timeout(pytester: pytest.Pytester) -> None:
    """pytest-timeout counts real time: a DAG with hours of virtual back-off stays far inside
    a 10-second limit, and a genuinely stuck sync task is still caught by it."""
    pytester.makepyfile(
        """
        import threading

        import pytest
        from flowrun import build_default_engine

        engine = build_default_engine()
        flaky = {"calls": 0}
        never = threading.Event()

        @engine.task(dag="slow", retries=3, retry_delay_s=3600)
        async def wait_hours():
            flaky["calls"] += 1
            if flaky["calls"] < 4:
                raise ConnectionError("try later")
            return flaky["calls"]

        @engine.task(dag="stuck")
        def stuck():
            never.wait()

        @pytest.mark.flowrun(engine, "slow")
        def test_hours_of_backoff(flowrun_report, flowrun_clock):
            assert flowrun_report["tasks"]["wait_hours"]["result"] == 4
            assert flowrun_clock.monotonic() == 3600 + 7200 + 14400

        def test_stuck_thread_is_caught(flowrun_run):
            try:
                flowrun_run(engine, "stuck")
            finally:
                never.set()
        """
    )
    result = pytester.runpytest_subprocess("--timeout=2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Timeout*2*"])


def test_flowrun_events_records_every_run_the_helpers_start(pytester: pytest.Pytester) -> None:
    """flowrun_run and the marker record runs of a module-level engine in flowrun_events; the
    hook is on the engine for the run only, so a later test (or run) sees nothing of it, even
    after a failing test or a run that raised."""
    pytester.makepyfile(
        pipeline=PIPELINE
        + """

def no_database():
    raise OSError("no database in tests")

broken = engine.dag("broken", context=no_database)

@broken.task
def query() -> int:
    return 1
""",
        test_events="""
        import pytest
        from flowrun import DagStartEvent, TaskStartEvent
        from flowrun.testing import run_dag
        from pipeline import broken, engine, etl

        USED = []

        def test_flowrun_run_of_a_module_scope(flowrun_run, flowrun_events):
            USED.append(flowrun_events)
            flowrun_run(etl, context={"rows": [1]})
            assert flowrun_events.task_order() == ["extract", "load"]
            assert [e.dag_name for e in flowrun_events.of(DagStartEvent)] == ["etl"]
            assert engine.hooks == ()  # on the engine for the run only

        @pytest.mark.flowrun(engine, "etl", context={"rows": []})
        def test_marker_run(flowrun_report, flowrun_events):
            USED.append(flowrun_events)
            assert [e.run_id for e in flowrun_events.of(DagStartEvent)] == [
                flowrun_report["run_id"]
            ]

        def test_engine_fixture_runs_are_recorded_once(flowrun_engine, flowrun_run,
                                                       flowrun_events):
            @flowrun_engine.task(dag="t")
            def a():
                return 1

            flowrun_run(flowrun_engine, "t")
            assert len(flowrun_events.of(TaskStartEvent)) == 1

        def test_fails_after_a_run(flowrun_run, flowrun_events):
            USED.append(flowrun_events)
            flowrun_run(etl, context={"rows": []})
            assert False, "fails on purpose"

        def test_run_that_raises(flowrun_run, flowrun_events):
            USED.append(flowrun_events)
            flowrun_run(broken)

        def test_nothing_stays_attached():
            assert engine.hooks == ()
            run_dag(etl, context={"rows": []})
            run_dag(broken, context={})
            assert [len(hook.of(DagStartEvent)) for hook in USED] == [1, 1, 1, 0]
        """,
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(["*fails on purpose*", "*ContextFactoryError*no_database*"])


TEMPLATES = """
from flowrun import RunContext, build_default_engine

engine = build_default_engine()
site = engine.dag("site")

def check(context: RunContext[dict], *, page: str) -> str:
    return f"{context.deps['base']}/{page} up"

template = site.task_template(check, retries=1)
template.bind("home", page="index")
template.bind("about", page="about")
"""


def test_stubs_of_template_tasks_and_injection_mismatches(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        site_pipeline=TEMPLATES,
        test_stubs="""
        import pytest
        from site_pipeline import site

        def always_down(context, *, page):
            raise ConnectionError(f"{context.deps['base']}/{page} down")

        def typo(context, *, pag):
            return "never called"

        @pytest.mark.flowrun(site, context={"base": "x"}, overrides={"home": always_down},
                             expect="FAILED")
        def test_the_issue_stub(flowrun_report):
            assert flowrun_report["tasks"]["home"]["error"] == "ConnectionError: x/index down"
            assert flowrun_report["tasks"]["home"]["attempt"] == 2

        def test_mismatch_in_flowrun_run(flowrun_run):
            flowrun_run(site, context={"base": "x"}, overrides={"home": typo})

        @pytest.mark.flowrun(site, context={"base": "x"}, overrides={"home": typo})
        def test_mismatch_in_the_marker():
            pass
        """,
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    message = (
        "override_tasks: parameter 'pag' of the stub typo() for task 'home' in DAG 'site' "
        "would receive nothing: the task cannot supply it. Did you mean 'page'?*"
    )
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_mismatch_in_the_marker _*",
            f"flowrun marker: {message}",
            "*= FAILURES =*",
            "*_ test_mismatch_in_flowrun_run _*",
            '>       flowrun_run(site, context={"base": "x"}, overrides={"home": typo})',
            f"E       flowrun.errors.TaskDefinitionError: {message}",
            "test_stubs.py:*: TaskDefinitionError",
            "=* short test summary info =*",
        ]
    )
    output = result.stdout.str()
    for internal in ("_overrides.py", "_call_plan.py", "_runs.py", "fixtures.py", "Traceback"):
        assert internal not in output


def test_expect_mismatch_is_a_failed_test_in_the_call_phase(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    pytester.makeconftest(
        """
        from flowrun.testing import virtual_loop_factory

        def pytest_asyncio_loop_factories(config, item):
            return {"virtual": virtual_loop_factory()}
        """
    )
    pytester.makepyfile(
        pipeline=PIPELINE,
        test_expect="""
        import pytest
        from pipeline import etl

        BODIES = []

        @pytest.mark.flowrun(etl, context={"rows": [1]}, expect="FAILED")
        def test_sync(flowrun_report):
            BODIES.append("sync")

        @pytest.mark.asyncio
        @pytest.mark.flowrun(etl, context={"rows": [1]}, expect="FAILED")
        async def test_async(flowrun_report):
            BODIES.append("async")

        def test_bodies_did_not_run():
            assert BODIES == []
        """,
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-p", "asyncio", "--asyncio-mode=strict")
    reprec.assertoutcome(passed=1, failed=2)
    reports = {
        (r.head_line, r.when): r
        for r in reprec.getreports("pytest_runtest_logreport")
        if r.head_line in ("test_sync", "test_async")
    }
    for name in ("test_sync", "test_async"):
        assert reports[(name, "setup")].passed
        call = reports[(name, "call")]
        assert call.failed
        text = str(call.longrepr)
        assert text.startswith("DAG 'etl' finished SUCCESS, expected FAILED\n\nrun ")
        assert "  extract  SUCCESS         1" in text
        assert "DAG etl (2 tasks)" in text
        assert "Traceback" not in text
        assert "fixtures.py" not in text
