"""OpenTelemetry traces of runs: ``OtelHook``, a ``RunHook`` that needs only ``opentelemetry-api``.

Install the extra (``pip install 'flowrun-dag[otel]'``) and an SDK or distro of your choice;
``import flowrun`` never imports OpenTelemetry, only ``import flowrun.otel`` does.

Each run is a span ``flowrun.run <dag>`` (a child of whatever span is current where the run
starts), each attempt a child span ``flowrun.task <task>``. Skips, omissions, retries, cache
hits and map expansions are events on the run span. Attributes carry names, ids, counts and
statuses only: never a task's result or its argument values.
"""

from __future__ import annotations

from collections import OrderedDict
from contextvars import Token
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode
except ImportError as missing:
    raise ImportError(
        "flowrun.otel needs the OpenTelemetry API, which is not installed "
        f"({missing}): pip install 'flowrun-dag[otel]'",
        name="opentelemetry",
    ) from missing

from . import __version__
from ._hooks import (
    DagEndEvent,
    DagStartEvent,
    RunHook,
    TaskFailureEvent,
    TaskMapEvent,
    TaskOmitEvent,
    TaskRetryEvent,
    TaskSkipEvent,
    TaskStartEvent,
    TaskSuccessEvent,
)
from .state.protocol import StateStoreProtocol
from .state.records import FAILED, OMITTED, SKIPPED, SUCCESS

__all__ = ["OtelHook"]

_REMEMBERED_RUNS = 1024
"""Finished runs whose span the hook keeps, so a resumed run can link to its original."""

_UNKNOWN: Any = object()


class _AttemptFailed(Exception):
    """Stands for a failed attempt's exception in ``span.record_exception``: the hook sees the
    error as text (``"ExcType: message"``), and the event attributes carry its real type."""


class _RunSpans:
    """What the hook keeps of one run in progress."""

    __slots__ = ("attempts", "instance_of", "mapped", "span", "token")

    def __init__(self, span: Span, token: Token[otel_context.Context]) -> None:
        self.span = span
        self.token = token  # detached when the run ends: the run span was current meanwhile
        self.attempts: dict[str, Span] = {}  # task (or instance) -> its running attempt's span
        self.instance_of: dict[str, str] = {}  # mapped instance -> its mapped task
        self.mapped: set[str] = set()


class OtelHook(RunHook):
    """Traces runs with OpenTelemetry: a span per run, a child span per attempt.

    ``tracer_provider`` defaults to the global one (``trace.set_tracer_provider``). ``store``,
    the engine's state store, lets the hook see which run a resumed run continues (its span
    links to the original's when this hook traced that one too, in this process).

    While a run is in progress its span is the current span where the run was started, so a
    span your tasks start becomes a child of the run's span; with an engine that calls
    ``on_attempt_context`` (see the docs), it becomes a child of its attempt's span, in async
    tasks and in sync tasks on threads alike.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        store: StateStoreProtocol | None = None,
    ) -> None:
        if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
            raise TypeError(
                "OtelHook(tracer_provider=...) must be an opentelemetry TracerProvider (e.g. "
                f"opentelemetry.sdk.trace.TracerProvider()), got {type(tracer_provider).__name__}"
            )
        if store is not None and not callable(getattr(store, "load_run", None)):
            raise TypeError(
                "OtelHook(store=...) must be the engine's state store (it reads "
                f"load_run(run_id).resumed_from), got {type(store).__name__}"
            )
        self._tracer = trace.get_tracer("flowrun", __version__, tracer_provider=tracer_provider)
        self._store = store
        self._runs: dict[str, _RunSpans] = {}
        self._finished: OrderedDict[str, SpanContext] = OrderedDict()

    def __repr__(self) -> str:
        return f"OtelHook(runs_in_progress={len(self._runs)})"

    # -- the run span ------------------------------------------------------------------------
    def on_dag_start(self, event: DagStartEvent) -> None:
        attributes: dict[str, Any] = {
            "flowrun.dag": event.dag_name,
            "flowrun.run_id": event.run_id,
            "flowrun.tasks": len(event.task_names),
        }
        links: list[Link] = []
        resumed_from = self._resumed_from(event)
        if resumed_from is not None:
            attributes["flowrun.resumed_from"] = resumed_from
            original = self._finished.get(resumed_from)
            if original is not None:
                links.append(Link(original, {"flowrun.run_id": resumed_from}))
        span = self._tracer.start_span(
            f"flowrun.run {event.dag_name}", attributes=attributes, links=links
        )
        # The run's driver runs in the task that started the run: its attempts are created
        # from there, so the run span is current in them too (detached at on_dag_end).
        token = otel_context.attach(trace.set_span_in_context(span))
        self._runs[event.run_id] = _RunSpans(span, token)

    def _resumed_from(self, event: DagStartEvent) -> str | None:
        resumed: Any = getattr(event, "resumed_from", _UNKNOWN)  # an engine that tells
        if resumed is _UNKNOWN:
            if self._store is None:
                return None
            resumed = self._store.load_run(event.run_id).resumed_from
        return None if resumed is None else str(resumed)

    def on_dag_end(self, event: DagEndEvent) -> None:
        run = self._runs.pop(event.run_id, None)
        if run is None:
            return
        for span in run.attempts.values():  # an aborted run reports no outcome for these
            span.set_status(
                Status(StatusCode.ERROR, "the run ended before this attempt reported back")
            )
            span.end()
        span = run.span
        span.set_attribute("flowrun.status", event.status)
        if event.status == FAILED:
            span.set_status(Status(StatusCode.ERROR, f"run of DAG {event.dag_name!r} failed"))
        span.end()
        otel_context.detach(run.token)
        finished = self._finished
        finished[event.run_id] = span.get_span_context()
        while len(finished) > _REMEMBERED_RUNS:
            finished.popitem(last=False)

    # -- attempt spans -----------------------------------------------------------------------
    def on_attempt_context(self, event: TaskStartEvent) -> None:
        """Called by an engine that offers it just before the attempt starts, inside the
        contextvars context the attempt's code runs in: its span becomes current there."""
        span = self._start_attempt(event)
        if span is not None:  # never detached: this context ends with the attempt
            otel_context.attach(trace.set_span_in_context(span))

    def on_task_start(self, event: TaskStartEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is not None and event.task_name not in run.attempts:
            self._start_attempt(event)  # not started by on_attempt_context

    def _start_attempt(self, event: TaskStartEvent) -> Span | None:
        run = self._runs.get(event.run_id)
        if run is None:
            return None
        name = event.task_name
        attributes: dict[str, Any] = {
            "flowrun.dag": event.dag_name,
            "flowrun.run_id": event.run_id,
            "flowrun.task": name,
            "flowrun.attempt": event.attempt,
            "flowrun.max_attempts": event.max_attempts,
        }
        mapped = run.instance_of.get(name)
        if mapped is not None:
            attributes["flowrun.map_of"] = mapped
        span = self._tracer.start_span(
            f"flowrun.task {name}",
            context=trace.set_span_in_context(run.span),
            attributes=attributes,
        )
        run.attempts[name] = span
        return span

    def on_task_success(self, event: TaskSuccessEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        name = event.task_name
        span = run.attempts.pop(name, None)
        if span is None:  # attempt 0: served from the cache, or a mapped task's instances done
            what = "flowrun.mapped" if name in run.mapped else "flowrun.cache_hit"
            run.span.add_event(what, {"flowrun.task": name, "flowrun.status": SUCCESS})
            return
        span.set_attribute("flowrun.status", SUCCESS)  # never the result: it may be anything
        span.end()

    def on_task_failure(self, event: TaskFailureEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        name = event.task_name
        span = run.attempts.pop(name, None)
        if span is None:  # attempt 0: a mapped task failed as a whole (or could not expand)
            run.span.add_event(
                "flowrun.mapped",
                {"flowrun.task": name, "flowrun.status": FAILED, "flowrun.error": event.error},
            )
            return
        span.set_attribute("flowrun.status", FAILED)
        span.set_attribute("flowrun.final", event.final)
        exc_type, message = _split_error(event.error)
        span.record_exception(
            _AttemptFailed(event.error),
            attributes={
                "exception.type": exc_type,
                "exception.message": message,
                "exception.stacktrace": event.error,  # the event carries no traceback
            },
        )
        span.set_status(Status(StatusCode.ERROR, event.error))
        span.end()

    def on_task_retry(self, event: TaskRetryEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is not None:
            run.span.add_event(
                "flowrun.retry",
                {
                    "flowrun.task": event.task_name,
                    "flowrun.attempt": event.attempt,
                    "flowrun.next_attempt": event.next_attempt,
                    "flowrun.delay_s": event.delay_s,
                },
            )

    def on_task_skip(self, event: TaskSkipEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is not None:
            run.span.add_event(
                "flowrun.skip",
                {
                    "flowrun.task": event.task_name,
                    "flowrun.status": SKIPPED,
                    "flowrun.reason": event.reason,
                },
            )

    def on_task_omit(self, event: TaskOmitEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        name = event.task_name
        attributes = {
            "flowrun.task": name,
            "flowrun.status": OMITTED,
            "flowrun.reason": event.reason,
        }
        span = run.attempts.pop(name, None)
        if span is not None:  # the attempt raised Omit: it ends here, not as a failure
            span.set_attribute("flowrun.status", OMITTED)
            span.add_event("flowrun.omit", attributes)
            span.end()
        run.span.add_event("flowrun.omit", attributes)

    def on_task_map(self, event: TaskMapEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        name = event.task_name
        run.mapped.add(name)
        run.instance_of.update(dict.fromkeys(event.instances, name))
        attempts = run.attempts
        for instance in event.instances:  # started before this event was handled
            span = attempts.get(instance)
            if span is not None:
                span.set_attribute("flowrun.map_of", name)
        run.span.add_event(
            "flowrun.map", {"flowrun.task": name, "flowrun.instances": len(event.instances)}
        )


def _split_error(error: str) -> tuple[str, str]:
    """``"ExcType: message"`` (as ``flowrun.errors.describe`` writes it) into its parts."""
    head, sep, message = error.partition(": ")
    if head.replace(".", "").replace("_", "").isalnum() and not head[:1].isdigit():
        return head, message if sep else ""
    return "Exception", error
