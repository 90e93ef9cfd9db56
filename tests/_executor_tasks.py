"""Module-level task functions for the executor tests: process pools and Dask workers import
them by reference (``tests/`` is on ``sys.path``, which spawned workers inherit)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from flowrun import RunContext


def pid() -> int:
    return os.getpid()


def spin_pid(seconds: float) -> int:
    """Pure-Python work for ``seconds``, then the pid of the process that did it."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return os.getpid()


def nap_then_touch(seconds: float, marker: str, started: str | None = None) -> int:
    """Sleep, then write this process's pid to ``marker``: proof the call ran to the end.
    With ``started``, first create that file: proof the call began."""
    if started is not None:
        Path(started).touch()
    time.sleep(seconds)
    partial = Path(f"{marker}.{os.getpid()}.tmp")
    partial.write_text(str(os.getpid()), encoding="utf-8")
    os.replace(partial, marker)  # atomic: a reader never sees the file empty
    return os.getpid()


def wait_for_file(path: str, timeout: float) -> str:
    """Block until ``path`` exists (the test creates it), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return "gave up"
        time.sleep(0.01)
    return "released"


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_locked() -> None:
    raise LockedError("quota exceeded")


def make_lambda() -> Callable[[int], int]:
    """A module-level function returning what only cloudpickle can send back."""
    return lambda x: x + 1


def dask_key() -> str:
    """The Dask key of the task running this call (on a Dask worker)."""
    from distributed import get_worker

    return str(get_worker().get_current_task())


def flaky_dask_key(context: RunContext[None]) -> str:
    """Fails its first attempt; returns the Dask key of the second."""
    if context.attempt < 2:
        raise ConnectionError("first attempt lost")
    return dask_key()


def scheduler_keys(dask_scheduler: object) -> list[str]:
    """The keys the Dask scheduler holds (``client.run_on_scheduler(scheduler_keys)``)."""
    return [str(key) for key in getattr(dask_scheduler, "tasks", {})]
