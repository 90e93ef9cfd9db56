"""flowrun: a lightweight async DAG orchestrator with no runtime dependency."""

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
    TaskCancelledError,
    TaskDefinitionError,
    TaskTimeoutError,
    UnknownDagError,
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
from .state.sqlite import SqliteStateStore, StateDatabaseError

__version__ = "0.1.0"

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
    "UnknownDagError",
    "UnknownRunError",
    "UnknownTaskError",
    "UpstreamState",
    "__version__",
    "build_default_engine",
    "fn_hook",
    "task",
    "task_template",
]
