"""flowrun: a lightweight async DAG orchestrator with no runtime dependency.

``SqliteStateStore`` and ``StateDatabaseError``, ``Schedule`` and ``TickEvent`` load on first
use (module ``__getattr__``): ``import flowrun`` does not pay for ``sqlite3`` and the SQLite
store when a program runs with the in-memory store, nor for the cron parser and ``zoneinfo``
when it declares no schedule.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._clock import Clock, SystemClock
from ._context import RunContext, UpstreamState
from ._dag import DAG
from ._engine import DagScope, Engine, SchedulerConfig, build_default_engine
from ._hooks import (
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
    fn_hook,
)
from ._task import DEFAULT_DAG, TaskRegistry, TaskSpec, TaskTemplate, task, task_template
from .errors import (
    ContextFactoryError,
    CrossDagDependencyError,
    CycleError,
    DagValidationError,
    DuplicateTaskError,
    MissingDependencyError,
    Omit,
    PoolError,
    ScheduleError,
    TaskCancelledError,
    TaskDefinitionError,
    TaskTimeoutError,
    UnknownDagError,
    UnknownOptionError,
    UnknownRunError,
    UnknownTaskError,
)
from .state import InMemoryStateStore, StateStore, StateStoreProtocol
from .state.serializers import (
    JsonSerializer,
    PickleSerializer,
    ResultEncodingError,
    ResultSerializer,
)

if TYPE_CHECKING:  # mypy sees the real names; at run time __getattr__ loads them
    from ._schedules import Schedule
    from ._serve import TickEvent
    from .state.sqlite import SqliteStateStore, StateDatabaseError

__version__ = "0.1.0"

_LAZY = {  # name -> the module that defines it, imported on first use
    "SqliteStateStore": "state.sqlite",
    "StateDatabaseError": "state.sqlite",
    "Schedule": "_schedules",  # cron and zoneinfo: only for programs with schedules
    "TickEvent": "_serve",
}

__all__ = [
    "DAG",
    "DEFAULT_DAG",
    "Clock",
    "ContextFactoryError",
    "CrossDagDependencyError",
    "CycleError",
    "DagEndEvent",
    "DagScope",
    "DagStartEvent",
    "DagValidationError",
    "DuplicateTaskError",
    "Engine",
    "HookEvent",
    "InMemoryStateStore",
    "JsonSerializer",
    "MissingDependencyError",
    "Omit",
    "PickleSerializer",
    "PoolError",
    "ResultEncodingError",
    "ResultSerializer",
    "RunContext",
    "RunHook",
    "Schedule",
    "ScheduleError",
    "SchedulerConfig",
    "SqliteStateStore",
    "StateDatabaseError",
    "StateStore",
    "StateStoreProtocol",
    "SystemClock",
    "TaskCancelledError",
    "TaskDefinitionError",
    "TaskFailureEvent",
    "TaskMapEvent",
    "TaskOmitEvent",
    "TaskRegistry",
    "TaskRetryEvent",
    "TaskSkipEvent",
    "TaskSpec",
    "TaskStartEvent",
    "TaskSuccessEvent",
    "TaskTemplate",
    "TaskTimeoutError",
    "TickEvent",
    "UnknownDagError",
    "UnknownOptionError",
    "UnknownRunError",
    "UnknownTaskError",
    "UpstreamState",
    "__version__",
    "build_default_engine",
    "fn_hook",
    "task",
    "task_template",
]


if not TYPE_CHECKING:  # hidden from mypy, so that a misspelt name stays an error there

    def __getattr__(name: str) -> Any:
        """Load the SQLite store on first use of one of its names (PEP 562)."""
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value


def __dir__() -> list[str]:
    """Every public name, the lazy ones included (``dir()``, tab completion)."""
    return sorted(set(globals()) | set(__all__))
