"""Helpers shared by the test modules (import them: ``from support import new_clock``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flowrun.testing import VirtualClock

WALL_START = 1_000_000.0
"""The test clock's wall time at monotonic 0: far from the real time, so a timestamp that
did not come from the engine clock stands out."""


def new_clock() -> VirtualClock:
    """The engine clock of the tests: ``VirtualClock`` (time moves only when someone sleeps on
    it or calls ``advance``; ``sleeps`` records the delays) starting at ``WALL_START``."""
    return VirtualClock(epoch=WALL_START)


WAIT_S = 5.0
"""A generous upper bound, in real seconds, for something that is expected to happen."""


TASK_KEYS = frozenset(
    {
        "status",
        "attempt",
        "started_at",
        "finished_at",
        "error",
        "result",
        "traceback",  # flowrun's additions to the seed's task fields: the full traceback...
        "queued_s",  # ...the seconds the task waited for slots...
        "cached_from",  # ...the run whose cached result it took (None: it ran)...
        "warnings",  # ...and what went wrong without failing it (a blocked event loop)
    }
)
"""The fields of a task's entry in a run report (a mapped task's also has ``instances``)."""


RUN_KEYS = frozenset(
    {"run_id", "dag_name", "created_at", "finished_at", "status", "tasks"}  # the seed's...
    | {"trigger", "scheduled_for"}  # ...and what started the run: "manual" or "schedule"
)
"""The keys of a run report."""


def flowrun(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m flowrun ARGS`` in ``cwd``, without the caller's ``FLOWRUN_*`` settings
    (plus ``env``), its output captured as text."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRUN_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "flowrun", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def on_a_terminal(cwd: Path, *args: str) -> tuple[int, bytes]:
    """``python -m flowrun ARGS`` with a pseudo-terminal as stdin, stdout and stderr: its
    exit code and every byte it wrote, read until the terminal closed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRUN_")}
    env.update(TERM="xterm", COLUMNS="200")
    main, replica = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowrun", *args],
        cwd=cwd,
        env=env,
        stdin=replica,
        stdout=replica,
        stderr=replica,
    )
    os.close(replica)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    return proc.wait(timeout=60), b"".join(chunks)
