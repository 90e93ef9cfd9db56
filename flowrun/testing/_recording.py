"""``RecordingHook``: every hook event of a run, kept in order, with helpers to query them."""

from __future__ import annotations

from typing import TypeVar

from .._hooks import (
    DagEndEvent,
    DagStartEvent,
    HookEvent,
    RunHook,
    TaskFailureEvent,
    TaskMapEvent,
    TaskOmitEvent,
    TaskRetryEvent,
    TaskSkipEvent,
    TaskStartEvent,
    TaskSuccessEvent,
)

E = TypeVar("E")


class RecordingHook(RunHook):
    """A hook that keeps every event it receives, in order, in ``events``."""

    def __init__(self) -> None:
        self.events: list[HookEvent] = []

    def on_dag_start(self, event: DagStartEvent) -> None:
        self.events.append(event)

    def on_dag_end(self, event: DagEndEvent) -> None:
        self.events.append(event)

    def on_task_start(self, event: TaskStartEvent) -> None:
        self.events.append(event)

    def on_task_success(self, event: TaskSuccessEvent) -> None:
        self.events.append(event)

    def on_task_failure(self, event: TaskFailureEvent) -> None:
        self.events.append(event)

    def on_task_retry(self, event: TaskRetryEvent) -> None:
        self.events.append(event)

    def on_task_skip(self, event: TaskSkipEvent) -> None:
        self.events.append(event)

    def on_task_omit(self, event: TaskOmitEvent) -> None:
        self.events.append(event)

    def on_task_map(self, event: TaskMapEvent) -> None:
        self.events.append(event)

    def of(self, event_type: type[E]) -> list[E]:
        """The events of one type, e.g. ``hook.of(TaskRetryEvent)``."""
        return [e for e in self.events if isinstance(e, event_type)]

    def failures(self, *, final: bool | None = True) -> list[TaskFailureEvent]:
        """Failed attempts. By default only the final ones (one per task that failed for good);
        ``final=False`` gives the attempts that were retried, ``final=None`` every one."""
        return [
            e
            for e in self.events
            if isinstance(e, TaskFailureEvent) and (final is None or e.final is final)
        ]

    def for_task(self, name: str) -> list[HookEvent]:
        """Every event about task ``name`` (start, success, retry, failure, skip, omit)."""
        return [e for e in self.events if getattr(e, "task_name", None) == name]

    def task_order(self) -> list[str]:
        """Task names in the order of their first start (retries do not repeat a name)."""
        seen: dict[str, None] = {}
        for event in self.events:
            if isinstance(event, TaskStartEvent):
                seen.setdefault(event.task_name, None)
        return list(seen)

    def clear(self) -> None:
        self.events.clear()

    def __repr__(self) -> str:
        return f"RecordingHook({len(self.events)} events)"
