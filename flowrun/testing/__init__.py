"""Test helpers, public API: virtual time, recorded hook events, task overrides, one-call runs.

Everything here works with any test runner; the pytest plugin (``pytest_flowrun``) is a thin
layer over it.

Virtual time
    ``VirtualTimeLoop`` is a ``SelectorEventLoop`` whose ``time()`` is a ``VirtualClock``.
    When the loop has nothing ready to run and no ``run_in_executor`` work is in flight, it
    does not wait: it moves the clock to the next timer and fires it. So ``asyncio.sleep``,
    ``asyncio.timeout``, ``wait_for``, retry delays and timeouts of async tasks take no real
    time, and every timestamp and duration is the same on every run. While executor work
    (a sync task's thread) is in flight the loop waits for real, up to the next timer, so a
    sync task's timeout fires only after that much real time: the clock never jumps past it.
    Threads started by other means than ``run_in_executor`` are not seen. While sockets are
    open (a client awaiting a reply, a test server listening), the loop first gives them
    ``io_grace_s`` (default 0.2 s) of real time without I/O before it jumps, so a local
    server's reply arrives before a timeout fires; each jump then costs that much real time.
    Network calls slower than that belong in real-time tests.

``run_virtual(coro)`` runs a coroutine on a fresh virtual-time loop; ``VirtualTimeLoopPolicy``
and ``virtual_loop_factory`` plug the loop into pytest-asyncio or ``asyncio.Runner``.
"""

from __future__ import annotations

from .._overrides import override_tasks
from .._render import format_report, trim_traceback
from ._contract import ExecutorContract
from ._recording import RecordingHook
from ._runs import resolve_target, run_dag
from ._virtual_time import (
    DEFAULT_EPOCH,
    RunningLoopClock,
    VirtualClock,
    VirtualTimeLoop,
    VirtualTimeLoopPolicy,
    current_clock,
    run_virtual,
    virtual_loop_factory,
)

__all__ = [
    "DEFAULT_EPOCH",
    "ExecutorContract",
    "RecordingHook",
    "RunningLoopClock",
    "VirtualClock",
    "VirtualTimeLoop",
    "VirtualTimeLoopPolicy",
    "current_clock",
    "format_report",
    "override_tasks",
    "resolve_target",
    "run_dag",
    "run_virtual",
    "trim_traceback",
    "virtual_loop_factory",
]
