"""State stores: where runs and task states live."""

from .memory import InMemoryStateStore, StateStore
from .protocol import StateStoreProtocol
from .records import FAILED, PENDING, RUNNING, SKIPPED, SUCCESS, RunRecord, TaskRecord

__all__ = [
    "FAILED",
    "PENDING",
    "RUNNING",
    "SKIPPED",
    "SUCCESS",
    "InMemoryStateStore",
    "RunRecord",
    "StateStore",
    "StateStoreProtocol",
    "TaskRecord",
]
