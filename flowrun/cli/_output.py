"""What tasks print while a command-line run is in progress.

A task that writes to ``sys.stdout``/``sys.stderr`` (``print``, a log handler, a progress bar)
would otherwise land in the middle of the live status line, and with ``--json`` before the
report on stdout. While ``TaskOutput`` is installed, both streams are replaced by
``RoutedStream`` proxies that buffer each writer's text up to the end of a line and hand over
whole lines only: above the live status line (erased, the lines written, redrawn), with a
``[task] `` prefix in plain mode, as they are otherwise. A context variable, set by
``on_attempt_context`` in the context each attempt runs in (its coroutine, or the copy its
worker thread runs in), tells which task writes; text written outside any task goes through
unprefixed. A partial line is kept per stream and task until its newline, the end of the
attempt or the end of the run, so nothing is lost and each task's lines keep their order.
With ``--json`` the proxies write stdout's text to stderr, and file descriptor 1 itself points
at stderr during the run (a subprocess a task starts inherits it), so stdout holds the report
alone.

Only the command line installs this, and it restores the real streams however the run ends:
the engine and the pytest plugin never touch ``sys.stdout``.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, TextIO, cast

from .._hooks import (
    RunHook,
    TaskFailureEvent,
    TaskOmitEvent,
    TaskRetryEvent,
    TaskStartEvent,
    TaskSuccessEvent,
)
from ._progress import LiveProgress

__all__ = ["RoutedStream", "TaskOutput"]

_TASK: contextvars.ContextVar[str | None] = contextvars.ContextVar("flowrun_cli_task", default=None)
"""The task whose attempt the current code belongs to (None: none, e.g. the CLI itself)."""


class RoutedStream:
    """Stands in for ``sys.stdout`` or ``sys.stderr`` during a run: text goes to the router
    line by line; everything else (``isatty``, ``fileno``, ``encoding``, ``buffer``...) is
    the real stream's, so code that asks about the terminal gets the true answer."""

    def __init__(self, output: TaskOutput, real: TextIO, target: TextIO) -> None:
        self._output = output
        self._real = real  # the stream this one stands for
        self.target = target  # where its lines go: the real stream, or stderr for --json

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._output.write(self, text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Whole lines are flushed as they are written; a partial one waits for its end (a
        line is never split around the status line), so this only flushes the target."""
        self.target.flush()

    def isatty(self) -> bool:
        return self._real.isatty()

    def fileno(self) -> int:
        return self._real.fileno()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return self._real.encoding

    @property
    def errors(self) -> str | None:
        return self._real.errors

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not set yet (copy, pickle), or private: not the real's
            raise AttributeError(name)
        return getattr(self._real, name)


class _TaskNames(RunHook):
    """Tells the streams which task writes, and ends a task's partial line when its attempt
    is over (a last ``print(..., end="")`` shows then, not at the end of the run)."""

    def __init__(self, output: TaskOutput) -> None:
        self.output = output

    def on_attempt_context(self, event: TaskStartEvent) -> None:
        _TASK.set(event.task_name)

    def on_task_success(self, event: TaskSuccessEvent) -> None:
        self.output.end_lines(event.task_name)

    def on_task_failure(self, event: TaskFailureEvent) -> None:
        self.output.end_lines(event.task_name)

    def on_task_retry(self, event: TaskRetryEvent) -> None:
        self.output.end_lines(event.task_name)

    def on_task_omit(self, event: TaskOmitEvent) -> None:
        self.output.end_lines(event.task_name)


class TaskOutput:
    """Routes ``sys.stdout``/``sys.stderr`` while installed (``with TaskOutput(...):``).

    ``prefix``: lines a task writes start with ``[task] `` (plain progress, where lines of
    tasks running at once interleave). ``json``: stdout's text goes to stderr, and so does
    file descriptor 1, restored on exit, so that the report is all stdout holds. ``lock`` is
    held around every write to the terminal; the progress display shares it. ``display``,
    once set, is the live progress, which writes lines above its status line.
    ``active=False`` leaves the streams alone (``--progress off`` without ``--json``).
    """

    def __init__(self, *, prefix: bool = False, json: bool = False, active: bool = True) -> None:
        self.prefix = prefix
        self.json = json
        self.active = active  # False: change nothing (``--progress off`` without ``--json``)
        self.lock = threading.RLock()
        self.display: LiveProgress | None = None
        self.hooks: list[RunHook] = [_TaskNames(self)] if active else []
        self._partial: dict[tuple[RoutedStream, str | None], str] = {}
        self._saved: tuple[TextIO, TextIO] | None = None
        self._saved_fd: int | None = None
        self._installed = False

    @property
    def real_stdout(self) -> TextIO:
        """The process's stdout, as it was before ``__enter__`` (the progress writes there)."""
        return self._saved[0] if self._saved is not None else sys.stdout

    @property
    def real_stderr(self) -> TextIO:
        return self._saved[1] if self._saved is not None else sys.stderr

    # -- installing ------------------------------------------------------------------------
    def __enter__(self) -> TaskOutput:
        out, err = sys.stdout, sys.stderr
        self._saved = (out, err)
        if not self.active:
            return self
        if self.json:
            self._point_stdout_at_stderr(out, err)
        self._installed = True
        sys.stdout = cast("TextIO", RoutedStream(self, out, err if self.json else out))
        sys.stderr = cast("TextIO", RoutedStream(self, err, err))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.active:
            return
        try:
            if self.display is not None:
                self.display.close()  # a run cut short leaves its status line: end it
            self.end_lines()
        finally:
            self._installed = False  # a stream kept by someone (a log handler) passes through
            assert self._saved is not None
            sys.stdout, sys.stderr = self._saved
            if self._saved_fd is not None:
                self._saved[0].flush()
                os.dup2(self._saved_fd, 1)
                os.close(self._saved_fd)
                self._saved_fd = None

    def _point_stdout_at_stderr(self, out: TextIO, err: TextIO) -> None:
        """For ``--json``: file descriptor 1 becomes stderr's until the run is over, so that
        what bypasses ``sys.stdout`` (a subprocess, a C library) cannot reach stdout. Skipped
        when the streams are not those of the process (no descriptor: nothing to move)."""
        try:
            if out.fileno() != 1 or err.fileno() != 2:
                return
        except (AttributeError, OSError, ValueError):
            return
        out.flush()
        self._saved_fd = os.dup(1)
        os.dup2(2, 1)

    # -- writing ---------------------------------------------------------------------------
    def write(self, stream: RoutedStream, text: str) -> None:
        """Buffer ``text`` for the writing task; hand over the whole lines it completes."""
        if not self._installed:  # after the run: straight through
            stream.target.write(text)
            return
        key = (stream, _TASK.get())
        with self.lock:
            pending = self._partial.pop(key, "") + text
            head, newline, tail = pending.rpartition("\n")
            if tail:
                self._partial[key] = tail
            if newline:
                self._emit(stream.target, key[1], head)

    def end_lines(self, task: str | None = None) -> None:
        """Hand over the partial lines of ``task`` (of everyone: None) as whole lines."""
        with self.lock:
            keys = [k for k in self._partial if task is None or k[1] == task]
            for key in keys:
                self._emit(key[0].target, key[1], self._partial.pop(key))

    def _emit(self, target: TextIO, task: str | None, text: str) -> None:
        """Write ``text`` (lines without their last newline) to ``target``: a line that
        carriage returns overwrote (a progress bar) shows as it ended, as on a terminal."""
        lines = [line.rstrip("\r").rpartition("\r")[2] for line in text.split("\n")]
        if self.prefix and task is not None:
            lines = [f"[{task}] {line}" for line in lines]
        block = "\n".join(lines) + "\n"
        display = self.display
        if display is not None and _same_terminal(target, display.stream):
            display.above(target, block)
        else:
            target.write(block)
            target.flush()


def _same_terminal(target: TextIO, display: TextIO) -> bool:
    """Whether writing to ``target`` shows where the status line is: the same stream, or
    both on a terminal (stdout and stderr of an interactive shell)."""
    if target is display:
        return True
    try:
        return target.isatty() and display.isatty()
    except (AttributeError, ValueError):
        return False
