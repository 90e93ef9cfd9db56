"""State stores: where runs and task states live."""

from .memory import InMemoryStateStore, StateStore
from .protocol import StateStoreProtocol
from .records import FAILED, OMITTED, PENDING, RUNNING, SKIPPED, SUCCESS, RunRecord, TaskRecord
from .serializers import JsonSerializer, PickleSerializer, ResultEncodingError, ResultSerializer
from .sqlite import SqliteStateStore, StateDatabaseError

__all__ = [
    "FAILED",
    "OMITTED",
    "PENDING",
    "RUNNING",
    "SKIPPED",
    "SUCCESS",
    "InMemoryStateStore",
    "JsonSerializer",
    "PickleSerializer",
    "ResultEncodingError",
    "ResultSerializer",
    "RunRecord",
    "SqliteStateStore",
    "StateDatabaseError",
    "StateStore",
    "StateStoreProtocol",
    "TaskRecord",
]
