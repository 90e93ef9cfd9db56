"""flowrun.otel: OtelHook's spans (run, attempts), their attributes, failures, retries, skips,
omissions, maps, cache hits, resumed-run links, user spans in tasks, and the missing extra.

The tests that need the engine's ``on_attempt_context`` (``/tmp/otel_engine.patch``: user
spans nested under the attempt's span) are marked ``needs_attempt_context``."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from flowrun import (
    DagEndEvent,
    DagStartEvent,
    Omit,
    RunHook,
    StateStore,
    TaskStartEvent,
    TaskSuccessEvent,
    build_default_engine,
)
from flowrun.testing import VirtualClock, run_dag, run_virtual

try:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from flowrun.otel import OtelHook
except ImportError:  # the module is skipped below; the missing-extra tests still run
    HAVE_SDK = False
else:
    HAVE_SDK = True

needs_sdk = pytest.mark.skipif(
    not HAVE_SDK,
    reason="needs the otel extra and the SDK: pip install 'flowrun-dag[otel]' opentelemetry-sdk",
)
ENGINE_SETS_ATTEMPT_CONTEXT = hasattr(RunHook, "on_attempt_context")
needs_attempt_context = pytest.mark.skipif(
    not ENGINE_SETS_ATTEMPT_CONTEXT,
    reason="needs the engine's RunHook.on_attempt_context (apply /tmp/otel_engine.patch)",
)

SECRET = "s3cr3t-value-7f1d"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    if not HAVE_SDK:
        pytest.skip("opentelemetry-sdk is not installed")
    found = InMemorySpanExporter()
    yield found
    found.clear()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    return made


def _by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def _one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = _by_name(exporter)[name]
    return span


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def _events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


def _strings(span: ReadableSpan) -> list[str]:
    """Every attribute value of the span and of its events and links, as text."""
    values = list((span.attributes or {}).values())
    for event in span.events:
        values += list((event.attributes or {}).values())
    for link in span.links:
        values += list((link.attributes or {}).values())
    return [str(v) for v in values]


# -- spans and attributes ------------------------------------------------------------------------
@needs_sdk
def test_a_run_is_a_span_and_each_attempt_a_child_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)])

    @engine.task(name="extract", dag="etl")
    def extract() -> int:
        return 1

    @engine.task(name="transform", dag="etl", deps=[extract])
    async def transform(extract: int) -> int:
        return extract + 1

    report = run_dag(engine, "etl")
    run_id = report["run_id"]
    assert [s.name for s in exporter.get_finished_spans()] == [
        "flowrun.task extract",
        "flowrun.task transform",
        "flowrun.run etl",
    ]
    run = _one(exporter, "flowrun.run etl")
    assert run.parent is None
    assert dict(run.attributes or {}) == {
        "flowrun.dag": "etl",
        "flowrun.run_id": run_id,
        "flowrun.tasks": 2,
        "flowrun.status": "SUCCESS",
    }
    assert run.status.status_code is StatusCode.UNSET
    for name in ("extract", "transform"):
        span = _one(exporter, f"flowrun.task {name}")
        assert _parent_id(span) == _span_id(run)
        assert span.context is not None
        assert run.context is not None
        assert span.context.trace_id == run.context.trace_id
        assert dict(span.attributes or {}) == {
            "flowrun.dag": "etl",
            "flowrun.run_id": run_id,
            "flowrun.task": name,
            "flowrun.attempt": 1,
            "flowrun.max_attempts": 1,
            "flowrun.status": "SUCCESS",
        }
        assert span.status.status_code is StatusCode.UNSET


@needs_sdk
def test_no_result_or_argument_value_reaches_an_attribute(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)])

    @engine.task(name="produce", dag="secrets")
    def produce() -> dict[str, str]:
        return {"token": SECRET}

    @engine.task(name="consume", dag="secrets", deps=[produce])
    def consume(produce: dict[str, str]) -> str:
        return produce["token"] * 2

    assert run_dag(engine, "secrets")["status"] == "SUCCESS"
    spans = exporter.get_finished_spans()
    assert len(spans) == 3
    for span in spans:
        assert not [v for v in _strings(span) if SECRET in v], span.name


# -- failures, retries, skips, omissions ---------------------------------------------------------
@needs_sdk
def test_a_failure_is_an_exception_with_error_status_and_its_downstream_a_skip_event(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)])

    @engine.task(name="load", dag="etl")
    def load() -> None:
        raise ValueError("bad row 7")

    @engine.task(name="report", dag="etl", deps=[load])
    def report(load: None) -> None:
        return None

    assert run_dag(engine, "etl")["status"] == "FAILED"
    span = _one(exporter, "flowrun.task load")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: bad row 7"
    assert (span.attributes or {})["flowrun.status"] == "FAILED"
    assert (span.attributes or {})["flowrun.final"] is True
    (exception,) = _events(span, "exception")
    assert exception["exception.type"] == "ValueError"
    assert exception["exception.message"] == "bad row 7"
    run = _one(exporter, "flowrun.run etl")
    assert run.status.status_code is StatusCode.ERROR
    assert (run.attributes or {})["flowrun.status"] == "FAILED"
    assert "flowrun.task report" not in _by_name(exporter)  # it never ran
    (skip,) = _events(run, "flowrun.skip")
    assert skip["flowrun.task"] == "report"
    assert skip["flowrun.status"] == "SKIPPED"
    assert "load" in str(skip["flowrun.reason"])


@needs_sdk
def test_each_attempt_of_a_retried_task_is_its_own_span(
    provider: TracerProvider, exporter: InMemorySpanExporter, virtual_clock: VirtualClock
) -> None:
    calls: list[int] = []
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)], clock=virtual_clock)

    @engine.task(name="fetch", dag="api", retries=2, retry_delay_s=30.0)
    def fetch() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"refused ({len(calls)})")
        return "ok"

    assert run_dag(engine, "api")["status"] == "SUCCESS"
    attempts = _by_name(exporter)["flowrun.task fetch"]
    assert [(s.attributes or {})["flowrun.attempt"] for s in attempts] == [1, 2, 3]
    assert [(s.attributes or {})["flowrun.status"] for s in attempts] == [
        "FAILED",
        "FAILED",
        "SUCCESS",
    ]
    assert [s.status.status_code for s in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert [(s.attributes or {}).get("flowrun.final") for s in attempts] == [False, False, None]
    assert [_events(s, "exception")[0]["exception.message"] for s in attempts[:2]] == [
        "refused (1)",
        "refused (2)",
    ]
    run = _one(exporter, "flowrun.run api")
    assert [
        (e["flowrun.next_attempt"], e["flowrun.delay_s"]) for e in _events(run, "flowrun.retry")
    ] == [
        (2, 30.0),
        (3, 60.0),
    ]
    assert run.status.status_code is StatusCode.UNSET


@needs_sdk
def test_an_omission_ends_its_attempt_and_is_an_event_on_the_run(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)])

    @engine.task(name="check", dag="daily")
    def check() -> None:
        raise Omit("no new files today")

    @engine.task(name="ingest", dag="daily", deps=[check])
    def ingest(check: None) -> None:
        return None

    assert run_dag(engine, "daily")["status"] == "SUCCESS"
    span = _one(exporter, "flowrun.task check")
    assert (span.attributes or {})["flowrun.status"] == "OMITTED"
    assert span.status.status_code is StatusCode.UNSET
    assert _events(span, "exception") == []
    assert _events(span, "flowrun.omit")[0]["flowrun.reason"] == "no new files today"
    run = _one(exporter, "flowrun.run daily")
    assert [e["flowrun.task"] for e in _events(run, "flowrun.omit")] == ["check", "ingest"]
    assert {e["flowrun.status"] for e in _events(run, "flowrun.omit")} == {"OMITTED"}


# -- maps and the cache --------------------------------------------------------------------------
@needs_sdk
def test_mapped_instances_are_attempt_spans_of_their_task(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)])

    @engine.task(name="tables", dag="sync")
    def tables() -> list[str]:
        return ["users", "orders"]

    @engine.task(name="copy", dag="sync", map={"table": tables}, map_key=str)
    def copy(table: str) -> int:
        return len(table)

    assert run_dag(engine, "sync")["status"] == "SUCCESS"
    spans = _by_name(exporter)
    for key in ("users", "orders"):
        (span,) = spans[f"flowrun.task copy[{key}]"]
        assert (span.attributes or {})["flowrun.map_of"] == "copy"
        assert (span.attributes or {})["flowrun.task"] == f"copy[{key}]"
    run = _one(exporter, "flowrun.run sync")
    assert _events(run, "flowrun.map") == [{"flowrun.task": "copy", "flowrun.instances": 2}]
    assert _events(run, "flowrun.mapped") == [{"flowrun.task": "copy", "flowrun.status": "SUCCESS"}]
    assert "flowrun.task copy" not in spans  # the task itself never runs an attempt


@needs_sdk
def test_a_cache_hit_is_an_event_not_an_attempt(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)])

    @engine.task(name="extract", dag="etl", cache=True)
    def extract() -> int:
        return 42

    run_dag(engine, "etl")
    exporter.clear()
    run_dag(engine, "etl")
    assert [s.name for s in exporter.get_finished_spans()] == ["flowrun.run etl"]
    run = _one(exporter, "flowrun.run etl")
    assert _events(run, "flowrun.cache_hit") == [
        {"flowrun.task": "extract", "flowrun.status": "SUCCESS"}
    ]


# -- resumed runs --------------------------------------------------------------------------------
def _failing_then_fixed(hook: OtelHook, store: StateStore, clock: VirtualClock) -> tuple[str, str]:
    """A run whose task fails, then its resume once the task is fixed: (first, second) ids."""
    broken = [True]
    engine = build_default_engine(hooks=[hook], state_store=store, clock=clock)

    @engine.task(name="fragile", dag="etl")
    def fragile() -> str:
        if broken[0]:
            raise RuntimeError("disk full")
        return "done"

    first = run_dag(engine, "etl")["run_id"]
    broken[0] = False
    second = run_virtual(engine.resume(first), clock=clock)
    return first, second


@needs_sdk
def test_a_resumed_run_links_to_the_run_it_continues(
    provider: TracerProvider, exporter: InMemorySpanExporter, virtual_clock: VirtualClock
) -> None:
    store = StateStore()
    first, second = _failing_then_fixed(
        OtelHook(tracer_provider=provider, store=store), store, virtual_clock
    )
    original, resumed = _by_name(exporter)["flowrun.run etl"]
    assert (original.attributes or {})["flowrun.run_id"] == first
    assert "flowrun.resumed_from" not in (original.attributes or {})
    assert original.links == ()
    assert (resumed.attributes or {})["flowrun.run_id"] == second
    assert (resumed.attributes or {})["flowrun.resumed_from"] == first
    (link,) = resumed.links
    assert link.context == original.context
    assert dict(link.attributes or {}) == {"flowrun.run_id": first}
    assert resumed.parent is None  # a link, not a parent: the resume is its own trace


@needs_sdk
def test_a_resumed_run_of_a_run_this_hook_did_not_trace_names_it_without_a_link(
    provider: TracerProvider, exporter: InMemorySpanExporter, virtual_clock: VirtualClock
) -> None:
    store = StateStore()
    first, _ = _failing_then_fixed(
        OtelHook(tracer_provider=provider, store=store), store, virtual_clock
    )
    exporter.clear()
    hook = OtelHook(tracer_provider=provider, store=store)  # as in another process
    engine = build_default_engine(hooks=[hook], state_store=store, clock=virtual_clock)
    engine.task("fragile", dag="etl")(lambda: "done")
    run_virtual(engine.resume(first, from_tasks=["fragile"]), clock=virtual_clock)
    run = _one(exporter, "flowrun.run etl")
    assert (run.attributes or {})["flowrun.resumed_from"] == first
    assert run.links == ()


@needs_sdk
@needs_attempt_context
def test_the_engine_tells_a_resume_without_a_store(
    provider: TracerProvider, exporter: InMemorySpanExporter, virtual_clock: VirtualClock
) -> None:
    first, _ = _failing_then_fixed(OtelHook(tracer_provider=provider), StateStore(), virtual_clock)
    _, resumed = _by_name(exporter)["flowrun.run etl"]
    assert (resumed.attributes or {})["flowrun.resumed_from"] == first
    assert len(resumed.links) == 1


# -- the caller's context and user spans ---------------------------------------------------------
@needs_sdk
async def test_the_run_span_is_a_child_of_the_callers_span_and_the_context_comes_back(
    provider: TracerProvider, exporter: InMemorySpanExporter, virtual_clock: VirtualClock
) -> None:
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)], clock=virtual_clock)
    engine.task("ping", dag="ops")(lambda: "pong")
    tracer = provider.get_tracer("caller")
    with tracer.start_as_current_span("deploy") as deploy:
        async with engine:
            await engine.run_once("ops")
        assert trace.get_current_span() is deploy  # the run span is no longer current
    assert trace.get_current_span() is trace.INVALID_SPAN
    run = _one(exporter, "flowrun.run ops")
    assert _parent_id(run) == _span_id(_one(exporter, "deploy"))


@needs_sdk
async def test_concurrent_runs_keep_their_own_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter, virtual_clock: VirtualClock
) -> None:
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)], clock=virtual_clock)

    @engine.task(name="wait", dag="ops")
    async def wait() -> None:
        await virtual_clock.sleep(5.0)

    async with engine:
        ids = await asyncio.gather(engine.run_once("ops"), engine.run_once("ops"))
    runs = {
        (s.attributes or {})["flowrun.run_id"]: s for s in _by_name(exporter)["flowrun.run ops"]
    }
    assert set(runs) == set(ids)
    for attempt in _by_name(exporter)["flowrun.task wait"]:
        owner = runs[(attempt.attributes or {})["flowrun.run_id"]]
        assert _parent_id(attempt) == _span_id(owner)


def _dag_with_user_spans(provider: TracerProvider) -> Any:
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)])
    tracer = provider.get_tracer("user code")

    @engine.task(name="in_thread", dag="traced")
    def in_thread() -> None:
        with tracer.start_as_current_span("user sync"):
            pass

    @engine.task(name="on_loop", dag="traced")
    async def on_loop() -> None:
        with tracer.start_as_current_span("user async"):
            await asyncio.sleep(0)

    return engine


@needs_sdk
def test_user_spans_in_tasks_belong_to_the_runs_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Whatever the engine offers: at least below the run span (its attempt's, with
    on_attempt_context)."""
    run_dag(_dag_with_user_spans(provider), "traced")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    run = spans["flowrun.run traced"]
    by_id = {_span_id(s): s for s in spans.values()}
    for name in ("user sync", "user async"):
        ancestors = []
        parent = _parent_id(spans[name])
        while parent is not None:
            ancestors.append(parent)
            parent = _parent_id(by_id[parent])
        assert ancestors[-1] == _span_id(run), name


@needs_sdk
@needs_attempt_context
def test_user_spans_nest_under_the_attempt_span_in_async_and_sync_tasks(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    run_dag(_dag_with_user_spans(provider), "traced")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert _parent_id(spans["user async"]) == _span_id(spans["flowrun.task on_loop"])
    assert _parent_id(spans["user sync"]) == _span_id(spans["flowrun.task in_thread"])


@needs_sdk
@needs_attempt_context
def test_the_attempt_span_is_current_only_inside_its_own_attempt(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    seen: dict[str, int] = {}
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)])

    @engine.task(name="first", dag="chain")
    def first() -> None:
        seen["first"] = trace.get_current_span().get_span_context().span_id

    @engine.task(name="second", dag="chain", deps=[first])
    async def second(first: None) -> None:
        seen["second"] = trace.get_current_span().get_span_context().span_id

    run_dag(engine, "chain")
    assert seen == {
        "first": _span_id(_one(exporter, "flowrun.task first")),
        "second": _span_id(_one(exporter, "flowrun.task second")),
    }


# -- an aborted run, direct calls, bad input -----------------------------------------------------
@needs_sdk
async def test_a_cancelled_run_ends_its_running_attempt_spans_as_errors(
    provider: TracerProvider, exporter: InMemorySpanExporter, virtual_clock: VirtualClock
) -> None:
    engine = build_default_engine(hooks=[OtelHook(tracer_provider=provider)], clock=virtual_clock)
    started = asyncio.Event()

    @engine.task(name="hang", dag="ops")
    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    async with engine:
        run = asyncio.create_task(engine.run_once("ops"))
        await started.wait()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    span = _one(exporter, "flowrun.task hang")
    assert span.status.status_code is StatusCode.ERROR
    assert "run ended before this attempt reported back" in (span.status.description or "")
    run_span = _one(exporter, "flowrun.run ops")
    assert (run_span.attributes or {})["flowrun.status"] == "FAILED"
    assert run_span.status.status_code is StatusCode.ERROR


@needs_sdk
def test_an_engine_without_on_attempt_context_gets_attempt_spans_from_task_start(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The events alone make the spans (an engine that never calls on_attempt_context)."""
    hook = OtelHook(tracer_provider=provider)
    hook.on_dag_start(DagStartEvent("r1", "etl", ("a",)))
    hook.on_task_start(TaskStartEvent("r1", "etl", "a", 1, 1))
    hook.on_task_start(TaskStartEvent("r1", "etl", "a", 1, 1))  # told twice: still one span
    hook.on_task_success(TaskSuccessEvent("r1", "etl", "a", 1, 0.5, SECRET))
    hook.on_dag_end(DagEndEvent("r1", "etl", "SUCCESS", 1.0))
    hook.on_task_start(TaskStartEvent("gone", "etl", "a", 1, 1))  # an unknown run: ignored
    assert [s.name for s in exporter.get_finished_spans()] == ["flowrun.task a", "flowrun.run etl"]
    assert _parent_id(_one(exporter, "flowrun.task a")) == _span_id(
        _one(exporter, "flowrun.run etl")
    )


@needs_sdk
def test_bad_arguments_say_what_was_expected() -> None:
    with pytest.raises(TypeError, match=r"tracer_provider=.*TracerProvider.*got str"):
        OtelHook(tracer_provider="console")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"store=.*state store.*got int"):
        OtelHook(store=3)  # type: ignore[arg-type]


# -- the extra -----------------------------------------------------------------------------------
def test_without_opentelemetry_the_import_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "flowrun.otel", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'flowrun-dag\[otel\]'") as raised:
        importlib.import_module("flowrun.otel")
    assert raised.value.name == "opentelemetry"


def test_import_flowrun_never_imports_opentelemetry() -> None:
    code = (
        "import sys, flowrun, flowrun.state, flowrun.testing, flowrun.executors, flowrun.cli; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
