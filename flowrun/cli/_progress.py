"""Progress of a run for the command line, built on the hook events.

``LiveProgress`` redraws one status line on a terminal (tasks done/total, running tasks,
elapsed time) and prints retries, failures and skips above it as they happen. A failed attempt
that is retried shows once, as its retry line (its ``TaskFailureEvent`` has ``final=False``).
``PlainProgress`` prints one line per event, for logs and pipes. Both write ASCII only.

"Done" counts the tasks that are final (succeeded, failed for good, skipped or omitted), so a
finished run always reads ``N/N done``; a mapped task adds its instances to the total. Times
come from the engine's clock, so a virtual clock shows virtual time. Every write holds
``lock``, which ``_output`` shares: task output from worker threads never lands inside a
half-drawn status line.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Collection
from typing import TextIO

from .._clock import Clock, SystemClock
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

FinalTasks = Callable[[str], Collection[str]]
"""Given a run id, the names of its tasks already final in the store: those a resumed run
kept, and the instances a re-expanded mapped task reused (no event announces them)."""


def _attempts(attempt: int, max_attempts: int) -> str:
    return f"attempt {attempt}/{max_attempts}"


class _Progress(RunHook):
    def __init__(
        self,
        stream: TextIO,
        *,
        kept: FinalTasks | None = None,
        clock: Clock | None = None,
        lock: threading.RLock | None = None,
    ) -> None:
        self.stream = stream
        self.kept = kept
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.lock = lock if lock is not None else threading.RLock()
        self.total = 0
        self.final: set[str] = set()  # tasks that are final (a set: no event counts twice)
        self.failed = 0
        self.skipped = 0
        self.retries = 0
        self.running: dict[str, int] = {}  # task -> attempt, in start order
        self.waiting: dict[str, float] = {}  # task -> when its retry back-off ends
        self.resumed = False
        self.started = self.clock.monotonic()

    @property
    def done(self) -> int:
        return len(self.final)

    def _begin(self, event: DagStartEvent) -> None:
        self.started = self.clock.monotonic()
        self.total = len(event.task_names)
        self.resumed = event.resumed_from is not None
        if self.kept is not None and self.resumed:  # a fresh run has nothing final yet
            names = set(event.task_names)
            self.final.update(n for n in self.kept(event.run_id) if n in names)

    def elapsed(self) -> float:
        return self.clock.monotonic() - self.started

    def _finished(self, name: str) -> None:
        self.running.pop(name, None)
        self.waiting.pop(name, None)
        self.final.add(name)

    def on_task_map(self, event: TaskMapEvent) -> None:
        self.total += len(event.instances)  # each instance is a task to do
        if self.kept is not None and self.resumed:  # instances reused from the resumed run
            instances = set(event.instances)
            self.final.update(n for n in self.kept(event.run_id) if n in instances)


class PlainProgress(_Progress):
    """One line per event, each prefixed with the seconds since the run started."""

    def _line(self, text: str) -> None:
        with self.lock:
            self.stream.write(f"[{self.elapsed():7.2f}s] {text}\n")
            self.stream.flush()

    def on_dag_start(self, event: DagStartEvent) -> None:
        self._begin(event)
        kept = f", {self.done} kept from the resumed run" if self.done else ""
        self._line(f"run {event.run_id} of DAG {event.dag_name!r}: {self.total} tasks{kept}")

    def on_task_start(self, event: TaskStartEvent) -> None:
        self._line(f"start   {event.task_name} ({_attempts(event.attempt, event.max_attempts)})")

    def on_task_success(self, event: TaskSuccessEvent) -> None:
        self._finished(event.task_name)
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
        self._finished(event.task_name)
        self._line(
            f"FAILED  {event.task_name} ({_attempts(event.attempt, event.max_attempts)}): "
            f"{event.error}"
        )

    def on_task_skip(self, event: TaskSkipEvent) -> None:
        self._finished(event.task_name)
        self._line(f"skipped {event.task_name}: {event.reason}")

    def on_task_omit(self, event: TaskOmitEvent) -> None:
        self._finished(event.task_name)
        self._line(f"omitted {event.task_name}: {event.reason} [{self.done}/{self.total} done]")

    def on_dag_end(self, event: DagEndEvent) -> None:
        self._line(
            f"run {event.run_id} {event.status} in {event.duration_s:.2f}s "
            f"[{self.done}/{self.total} done]"
        )


class LiveProgress(_Progress):
    """A status line redrawn in place (``\\r`` and erase-line) every ``interval_s`` and on every
    event; retries, failures and skips are printed above it and stay, and so are the lines
    tasks print (``above``). When the run ends the status line is replaced by a final one,
    without a spinner."""

    SPINNER = "|/-\\"

    def __init__(
        self,
        stream: TextIO,
        *,
        kept: FinalTasks | None = None,
        clock: Clock | None = None,
        lock: threading.RLock | None = None,
        interval_s: float = 0.1,
        width: int | None = None,
    ) -> None:
        super().__init__(stream, kept=kept, clock=clock, lock=lock)
        self.interval_s = interval_s
        self.width = width
        self._frame = 0
        self._ticker: asyncio.Task[None] | None = None
        self._shown: str | None = None  # the status line on screen now (None: none is)

    # -- drawing ---------------------------------------------------------------------------
    def status_line(self, *, final: bool = False) -> str:
        """The status line; ``final``: the run's last one, without a spinner or tasks."""
        elapsed = self.elapsed()
        minutes, seconds = divmod(elapsed, 60)
        done = f"{self.done}/{self.total} done"
        parts = [done if final else f"{self.SPINNER[self._frame % len(self.SPINNER)]} {done}"]
        parts.append(f"{int(minutes)}:{seconds:04.1f}")
        if self.retries:
            parts.append(f"{self.retries} retr{'y' if self.retries == 1 else 'ies'}")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        if final:
            return " | ".join(parts)
        if self.running:
            names = ", ".join(
                name if attempt == 1 else f"{name} (attempt {attempt})"
                for name, attempt in self.running.items()
            )
            parts.append(f"running {len(self.running)}: {names}")
        if self.waiting:
            now = self.clock.monotonic()
            names = ", ".join(
                f"{name} (retry in {_seconds(until - now)})" for name, until in self.waiting.items()
            )
            parts.append(f"waiting {len(self.waiting)}: {names}")
        return " | ".join(parts)

    def _columns(self) -> int:
        if self.width is not None:
            return self.width
        return shutil.get_terminal_size((80, 24)).columns

    def _fit(self, line: str) -> str:
        limit = max(self._columns() - 1, 10)  # never wrap: a wrapped line cannot be redrawn
        return line[: limit - 3] + "..." if len(line) > limit else line

    def _draw(self) -> None:
        line = self._fit(self.status_line())
        with self.lock:
            self.stream.write(f"\r{line}\x1b[K")
            self.stream.flush()
            self._shown = line

    def _say(self, text: str) -> None:
        """Print a line that stays, above the status line."""
        with self.lock:
            self.stream.write(f"\r\x1b[K{text}\n")
            self._draw()

    def above(self, target: TextIO, text: str) -> None:
        """Write ``text`` (whole lines) to ``target`` above the status line: erase the line,
        write, draw it again as it was. Called from any thread (a sync task's worker): it
        redraws the line last drawn rather than reading the run's state."""
        with self.lock:
            shown = self._shown
            if shown is None:
                target.write(text)
                target.flush()
                return
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            target.write(text)
            target.flush()
            self.stream.write(f"\r{shown}\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        """Leave the status line as it is, on a line of its own (the run ended without its
        end event: Ctrl-C before it, or an error): what is printed next starts below it."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        with self.lock:
            if self._shown is not None:
                self._shown = None
                self.stream.write("\n")
                self.stream.flush()

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
        self.waiting.pop(event.task_name, None)
        self.running[event.task_name] = event.attempt
        self._draw()

    def on_task_success(self, event: TaskSuccessEvent) -> None:
        self._finished(event.task_name)
        self._draw()

    def on_task_retry(self, event: TaskRetryEvent) -> None:
        self.running.pop(event.task_name, None)
        if event.delay_s > 0:
            self.waiting[event.task_name] = self.clock.monotonic() + event.delay_s
        self.retries += 1
        self._say(
            f"retry   {event.task_name}: {_attempts(event.attempt, event.max_attempts)} "
            f"failed: {event.error}; next attempt in {event.delay_s:.2f}s"
        )

    def on_task_failure(self, event: TaskFailureEvent) -> None:
        self.running.pop(event.task_name, None)
        if not event.final:
            return  # the retry line that follows says the attempt failed
        self._finished(event.task_name)
        self.failed += 1
        self._say(
            f"FAILED  {event.task_name} ({_attempts(event.attempt, event.max_attempts)}): "
            f"{event.error}"
        )

    def on_task_skip(self, event: TaskSkipEvent) -> None:
        self._finished(event.task_name)
        self.skipped += 1
        self._say(f"skipped {event.task_name}: {event.reason}")

    def on_task_omit(self, event: TaskOmitEvent) -> None:
        self._finished(event.task_name)  # final and as intended: it counts as done
        self._say(f"omitted {event.task_name}: {event.reason}")

    def on_dag_end(self, event: DagEndEvent) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self.running.clear()
        self.waiting.clear()
        line = self._fit(self.status_line(final=True))
        with self.lock:
            self._shown = None  # from here on, output goes below the final line
            self.stream.write(f"\r{line}\x1b[K\n{event.status} in {event.duration_s:.2f}s\n")
            self.stream.flush()


def _seconds(left: float) -> str:
    """A countdown: tenths below ten seconds, whole seconds above."""
    left = max(left, 0.0)
    return f"{left:.1f}s" if left < 10 else f"{left:.0f}s"
