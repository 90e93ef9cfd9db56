"""Test helpers, public API: virtual time, recorded hook events, task overrides, one-call runs
and served schedules.

Everything here works with any test runner; the pytest plugin (``pytest_flowrun``) is a thin
layer over it. What virtual time does, exactly, is told in ``VirtualTimeLoop``'s module
(``flowrun.testing._virtual_time``) and in the README's "Virtual time".
"""

from __future__ import annotations

from .._overrides import override_tasks
from .._render import format_report, trim_traceback
from ._contract import ExecutorContract
from ._recording import RecordingHook
from ._runs import resolve_target, run_dag, serve_for
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
    "serve_for",
    "trim_traceback",
    "virtual_loop_factory",
]
