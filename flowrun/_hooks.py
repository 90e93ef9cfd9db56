"""Run hooks: event dataclasses, the ``RunHook`` base class, ``fn_hook`` and the dispatcher.

A hook that raises an ``Exception`` is logged and the run goes on; hooks may be ``async def``
and are awaited in registration order.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import Omit

__all__ = [
    "DagEndEvent",
    "DagStartEvent",
    "HookEvent",
    "RunHook",
    "TaskFailureEvent",
    "TaskMapEvent",
    "TaskOmitEvent",
    "TaskRetryEvent",
    "TaskSkipEvent",
    "TaskStartEvent",
    "TaskSuccessEvent",
    "fn_hook",
]


@dataclass(frozen=True, slots=True)
class DagStartEvent:
    """A run started; ``resumed_from`` is the run it continues (``engine.resume``), if any."""

    run_id: str
    dag_name: str
    task_names: tuple[str, ...]
    resumed_from: str | None = None


@dataclass(frozen=True, slots=True)
class DagEndEvent:
    run_id: str
    dag_name: str
    status: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class TaskStartEvent:
    run_id: str
    dag_name: str
    task_name: str
    attempt: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class TaskSuccessEvent:
    run_id: str
    dag_name: str
    task_name: str
    attempt: int
    duration_s: float
    result: Any


@dataclass(frozen=True, slots=True)
class TaskFailureEvent:
    """An attempt failed. Fired for every failed attempt, as the original product does (its
    lifecycle passes through FAILED on the retry path); ``final`` is True when no retry follows
    (retries exhausted or the error not retryable), and when one does a ``TaskRetryEvent``
    comes right after this event. Alert on ``event.final`` to see each task fail only once."""

    run_id: str
    dag_name: str
    task_name: str
    attempt: int
    max_attempts: int
    duration_s: float
    error: str
    final: bool = True


@dataclass(frozen=True, slots=True)
class TaskRetryEvent:
    """An attempt failed (its ``TaskFailureEvent`` with ``final=False`` came just before) and
    another one is scheduled after ``delay_s``."""

    run_id: str
    dag_name: str
    task_name: str
    attempt: int
    next_attempt: int
    max_attempts: int
    delay_s: float
    duration_s: float
    error: str


@dataclass(frozen=True, slots=True)
class TaskSkipEvent:
    run_id: str
    dag_name: str
    task_name: str
    reason: str


@dataclass(frozen=True, slots=True)
class TaskMapEvent:
    """A mapped task expanded: ``instances`` (``task[KEY]``, in input order) join the run, each
    with its own attempts and events; the task itself is final once they all are."""

    run_id: str
    dag_name: str
    task_name: str
    instances: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TaskOmitEvent:
    """The task is left out on purpose: it raised ``Omit(reason)``, an upstream task was
    omitted, or its trigger rule was not met without a failure. Never fails the run."""

    run_id: str
    dag_name: str
    task_name: str
    reason: str


HookEvent = (
    DagStartEvent
    | DagEndEvent
    | TaskStartEvent
    | TaskSuccessEvent
    | TaskFailureEvent
    | TaskRetryEvent
    | TaskSkipEvent
    | TaskOmitEvent
    | TaskMapEvent
)

_METHOD_FOR: dict[type[Any], str] = {
    DagStartEvent: "on_dag_start",
    DagEndEvent: "on_dag_end",
    TaskStartEvent: "on_task_start",
    TaskSuccessEvent: "on_task_success",
    TaskFailureEvent: "on_task_failure",
    TaskRetryEvent: "on_task_retry",
    TaskSkipEvent: "on_task_skip",
    TaskOmitEvent: "on_task_omit",
    TaskMapEvent: "on_task_map",
}


class RunHook:
    """Subclass and override the methods you need; each may be sync or ``async def``."""

    def on_dag_start(self, event: DagStartEvent) -> Any:
        """A run started; ``event.task_names`` lists the tasks it covers."""

    def on_dag_end(self, event: DagEndEvent) -> Any:
        """A run is final; ``event.status`` is SUCCESS or FAILED."""

    def on_task_start(self, event: TaskStartEvent) -> Any:
        """An attempt was launched."""

    def on_attempt_context(self, event: TaskStartEvent) -> None:
        """Just before an attempt starts, on the event loop, inside a copy of the context the
        attempt's code then runs in (its coroutine, or its worker thread): a context variable
        set here (a tracing span, a log correlation id) is current inside the task. Must be a
        plain function (not ``async def``): the attempt waits for nothing. It does not reach a
        sync task sent to another process (a process pool, Dask)."""

    def on_task_success(self, event: TaskSuccessEvent) -> Any:
        """An attempt succeeded; ``event.result`` is its return value."""

    def on_task_failure(self, event: TaskFailureEvent) -> Any:
        """An attempt failed; ``event.final`` tells whether the task failed for good."""

    def on_task_retry(self, event: TaskRetryEvent) -> Any:
        """After a non-final failure: attempt ``event.next_attempt`` follows after ``delay_s``."""

    def on_task_skip(self, event: TaskSkipEvent) -> Any:
        """The task will not run: ``event.reason`` names the failed upstream task."""

    def on_task_omit(self, event: TaskOmitEvent) -> Any:
        """The task is left out on purpose (``Omit``, an omitted upstream, its trigger rule)."""

    def on_task_map(self, event: TaskMapEvent) -> Any:
        """A mapped task expanded into ``event.instances``."""


Handler = Callable[[Any], Any]


class _FnHook(RunHook):
    def __init__(self, handlers: dict[str, Handler]) -> None:
        for method, fn in handlers.items():
            setattr(self, method, fn)
        self._names = sorted(handlers)

    def __repr__(self) -> str:
        return f"fn_hook({', '.join(self._names)})"


def fn_hook(
    *,
    on_dag_start: Callable[[DagStartEvent], Any] | None = None,
    on_dag_end: Callable[[DagEndEvent], Any] | None = None,
    on_task_start: Callable[[TaskStartEvent], Any] | None = None,
    on_task_success: Callable[[TaskSuccessEvent], Any] | None = None,
    on_task_failure: Callable[[TaskFailureEvent], Any] | None = None,
    on_task_retry: Callable[[TaskRetryEvent], Any] | None = None,
    on_task_skip: Callable[[TaskSkipEvent], Any] | None = None,
    on_task_omit: Callable[[TaskOmitEvent], Any] | None = None,
    on_task_map: Callable[[TaskMapEvent], Any] | None = None,
) -> RunHook:
    """Build a ``RunHook`` from plain functions (sync or async), one per event you care about."""
    given = {
        "on_dag_start": on_dag_start,
        "on_dag_end": on_dag_end,
        "on_task_start": on_task_start,
        "on_task_success": on_task_success,
        "on_task_failure": on_task_failure,
        "on_task_retry": on_task_retry,
        "on_task_skip": on_task_skip,
        "on_task_omit": on_task_omit,
        "on_task_map": on_task_map,
    }
    handlers: dict[str, Handler] = {}
    for method, fn in given.items():
        if fn is None:
            continue
        if not callable(fn):
            raise TypeError(f"fn_hook({method}=...) must be callable, got {type(fn).__name__}")
        handlers[method] = fn
    return _FnHook(handlers)


class HookDispatcher:
    """Calls the hooks that handle each event type; an event type nobody handles costs nothing."""

    __slots__ = ("_handlers", "_in_attempt", "_logger", "in_attempt")

    def __init__(self, hooks: Sequence[RunHook], logger: logging.Logger) -> None:
        for hook in hooks:
            if not isinstance(hook, RunHook):
                raise TypeError(
                    f"hooks must be RunHook instances (subclass RunHook or use fn_hook), "
                    f"got {type(hook).__name__}"
                )
        self._logger = logger
        self._handlers: dict[type[Any], tuple[Handler, ...]] = {}
        for event_type, method in _METHOD_FOR.items():
            base = getattr(RunHook, method)
            found: list[Handler] = []
            for hook in hooks:
                bound = getattr(hook, method)
                if getattr(bound, "__func__", None) is base:
                    continue  # not overridden: skip the no-op
                found.append(bound)
            if found:
                self._handlers[event_type] = tuple(found)
        base = RunHook.on_attempt_context
        self._in_attempt = tuple(
            hook.on_attempt_context
            for hook in hooks
            if getattr(hook.on_attempt_context, "__func__", None) is not base
        )
        self.in_attempt = bool(self._in_attempt)  # read once per run: nobody, no cost

    def wants(self, event_type: type[Any]) -> bool:
        """Whether any hook handles this event type (so the caller can skip building it)."""
        return event_type in self._handlers

    def enter_attempt(self, event: TaskStartEvent) -> None:
        """Call every ``on_attempt_context`` in order, in the attempt's context (the caller's
        ``Context.run``); ``Exception`` is logged, not raised, and an awaitable is refused."""
        for handler in self._in_attempt:
            try:
                outcome: Any = handler(event)
                if inspect.isawaitable(outcome):
                    if inspect.iscoroutine(outcome):
                        outcome.close()  # never awaited: no "was never awaited" warning
                    self._logger.error(
                        "hook %r: on_attempt_context must be a plain function, not async "
                        "(the attempt of task %r starts without waiting); it was not run",
                        handler,
                        event.task_name,
                    )
            except Exception:
                self._logger.exception(
                    "hook %r raised in on_attempt_context for task %r; the run goes on",
                    handler,
                    event.task_name,
                )

    async def emit(self, event: HookEvent) -> None:
        """Call every handler of the event in order; ``Exception`` is logged, not raised."""
        for handler in self._handlers.get(type(event), ()):
            try:
                outcome = handler(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Omit as omit:  # a task's verb, not a hook's: say so rather than ignore it
                self._logger.error(
                    "hook %r raised Omit(%r) while handling %s: Omit only works when a task "
                    "function raises it (a hook cannot omit a task); the run goes on",
                    handler,
                    omit.reason,
                    type(event).__name__,
                )
            except Exception:
                self._logger.exception(
                    "hook %r raised while handling %s; the run goes on",
                    handler,
                    type(event).__name__,
                )
