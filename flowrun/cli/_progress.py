"""Progress of a run for the command line, built on the hook events.

``LiveProgress`` redraws one status line on a terminal (tasks done/total, running tasks,
elapsed time) and prints retries, failures and skips above it as they happen. A failed attempt
that is retried shows once, as its retry line (its ``TaskFailureEvent`` has ``final=False``).
``PlainProgress`` prints one line per event, for logs and pipes. Both write ASCII only.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from typing import TextIO

from .._hooks import (
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

__all__ = ["PROGRESS_MODES", "LiveProgress", "PlainProgress"]

PROGRESS_MODES = ("auto", "live", "plain", "off")

KeptCounter = Callable[[str], int]
"""Given a run id, how many of its tasks are already done before it starts (kept by resume)."""


def _attempts(attempt: int, max_attempts: int) -> str:
    return f"attempt {attempt}/{max_attempts}"


class _Progress(RunHook):
    def __init__(self, stream: TextIO, *, kept: KeptCounter | None = None) -> None:
        self.stream = stream
        self.kept = kept
        self.total = 0
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self.retries = 0
        self.running: dict[str, int] = {}  # task -> attempt, in start order
        self.started = time.monotonic()

    def _begin(self, event: DagStartEvent) -> None:
        self.started = time.monotonic()
        self.total = len(event.task_names)
        self.done = self.kept(event.run_id) if self.kept is not None else 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def on_task_map(self, event: TaskMapEvent) -> None:
        self.total += len(event.instances)  # each instance is a task to do


class PlainProgress(_Progress):
    """One line per event, each prefixed with the seconds since the run started."""

    def _line(self, text: str) -> None:
        self.stream.write(f"[{self.elapsed():7.2f}s] {text}\n")
        self.stream.flush()

    def on_dag_start(self, event: DagStartEvent) -> None:
        self._begin(event)
        kept = f", {self.done} kept from the resumed run" if self.done else ""
        self._line(f"run {event.run_id} of DAG {event.dag_name!r}: {self.total} tasks{kept}")

    def on_task_start(self, event: TaskStartEvent) -> None:
        self._line(f"start   {event.task_name} ({_attempts(event.attempt, event.max_attempts)})")

    def on_task_success(self, event: TaskSuccessEvent) -> None:
        self.done += 1
        self._line(
            f"ok      {event.task_name} in {event.duration_s:.3f}s [{self.done}/{self.total} done]"
        )

    def on_task_retry(self, event: TaskRetryEvent) -> None:
        self._line(
            f"retry   {event.task_name}: {_attempts(event.attempt, event.max_attempts)} "
            f"failed: {event.error}; next attempt in {event.delay_s:.2f}s"
        )

    def on_task_failure(self, event: TaskFailureEvent) -> None:
        if not event.final:
            return  # the retry line that follows says the attempt failed
        self._line(
            f"FAILED  {event.task_name} ({_attempts(event.attempt, event.max_attempts)}): "
            f"{event.error}"
        )

    def on_task_skip(self, event: TaskSkipEvent) -> None:
        self._line(f"skipped {event.task_name}: {event.reason}")

    def on_task_omit(self, event: TaskOmitEvent) -> None:
        self.done += 1
        self._line(f"omitted {event.task_name}: {event.reason} [{self.done}/{self.total} done]")

    def on_dag_end(self, event: DagEndEvent) -> None:
        self._line(f"run {event.run_id} {event.status} in {event.duration_s:.2f}s")


class LiveProgress(_Progress):
    """A status line redrawn in place (``\\r`` and erase-line) every ``interval_s`` and on every
    event; retries, failures and skips are printed above it and stay."""

    SPINNER = "|/-\\"

    def __init__(
        self,
        stream: TextIO,
        *,
        kept: KeptCounter | None = None,
        interval_s: float = 0.1,
        width: int | None = None,
    ) -> None:
        super().__init__(stream, kept=kept)
        self.interval_s = interval_s
        self.width = width
        self._frame = 0
        self._ticker: asyncio.Task[None] | None = None

    # -- drawing ---------------------------------------------------------------------------
    def status_line(self) -> str:
        elapsed = self.elapsed()
        minutes, seconds = divmod(elapsed, 60)
        parts = [
            f"{self.SPINNER[self._frame % len(self.SPINNER)]} {self.done}/{self.total} done",
            f"{int(minutes)}:{seconds:04.1f}",
        ]
        if self.retries:
            parts.append(f"{self.retries} retr{'y' if self.retries == 1 else 'ies'}")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        if self.running:
            names = ", ".join(
                name if attempt == 1 else f"{name} (attempt {attempt})"
                for name, attempt in self.running.items()
            )
            parts.append(f"running {len(self.running)}: {names}")
        return " | ".join(parts)

    def _columns(self) -> int:
        if self.width is not None:
            return self.width
        return shutil.get_terminal_size((80, 24)).columns

    def _draw(self) -> None:
        line = self.status_line()
        limit = max(self._columns() - 1, 10)  # never wrap: a wrapped line cannot be redrawn
        if len(line) > limit:
            line = line[: limit - 3] + "..."
        self.stream.write(f"\r{line}\x1b[K")
        self.stream.flush()

    def _say(self, text: str) -> None:
        """Print a line that stays, above the status line."""
        self.stream.write(f"\r\x1b[K{text}\n")
        self._draw()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self._frame += 1
            self._draw()

    # -- events ----------------------------------------------------------------------------
    def on_dag_start(self, event: DagStartEvent) -> None:
        self._begin(event)
        self._say(f"run {event.run_id} of DAG {event.dag_name!r}: {self.total} tasks")
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def on_task_start(self, event: TaskStartEvent) -> None:
        self.running[event.task_name] = event.attempt
        self._draw()

    def on_task_success(self, event: TaskSuccessEvent) -> None:
        self.running.pop(event.task_name, None)
        self.done += 1
        self._draw()

    def on_task_retry(self, event: TaskRetryEvent) -> None:
        self.running.pop(event.task_name, None)
        self.retries += 1
        self._say(
            f"retry   {event.task_name}: {_attempts(event.attempt, event.max_attempts)} "
            f"failed: {event.error}; next attempt in {event.delay_s:.2f}s"
        )

    def on_task_failure(self, event: TaskFailureEvent) -> None:
        self.running.pop(event.task_name, None)
        if not event.final:
            return  # the retry line that follows says the attempt failed
        self.failed += 1
        self._say(
            f"FAILED  {event.task_name} ({_attempts(event.attempt, event.max_attempts)}): "
            f"{event.error}"
        )

    def on_task_skip(self, event: TaskSkipEvent) -> None:
        self.skipped += 1
        self._say(f"skipped {event.task_name}: {event.reason}")

    def on_task_omit(self, event: TaskOmitEvent) -> None:
        self.done += 1  # final and as intended: it counts as done
        self._say(f"omitted {event.task_name}: {event.reason}")

    def on_dag_end(self, event: DagEndEvent) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self.running.clear()
        self._draw()
        self.stream.write(f"\n{event.status} in {event.duration_s:.2f}s\n")
        self.stream.flush()
