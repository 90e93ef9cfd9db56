"""State stores: where runs and task states live.

``SqliteStateStore`` and ``StateDatabaseError`` load on first use (module ``__getattr__``), so
that importing the package (every ``import flowrun`` does) loads no ``sqlite3``.
"""

from typing import TYPE_CHECKING, Any

from .memory import InMemoryStateStore, StateStore
from .protocol import StateStoreProtocol
from .records import (
    FAILED,
    OMITTED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCESS,
    AttemptRecord,
    PrunedRun,
    RunRecord,
    TaskRecord,
    TickRecord,
)
from .serializers import JsonSerializer, PickleSerializer, ResultEncodingError, ResultSerializer

if TYPE_CHECKING:  # mypy sees the real names; at run time __getattr__ loads them
    from .sqlite import SqliteStateStore, StateDatabaseError

_LAZY = frozenset({"SqliteStateStore", "StateDatabaseError"})

__all__ = [
    "FAILED",
    "OMITTED",
    "PENDING",
    "RUNNING",
    "SKIPPED",
    "SUCCESS",
    "AttemptRecord",
    "InMemoryStateStore",
    "JsonSerializer",
    "PickleSerializer",
    "PrunedRun",
    "ResultEncodingError",
    "ResultSerializer",
    "RunRecord",
    "SqliteStateStore",
    "StateDatabaseError",
    "StateStore",
    "StateStoreProtocol",
    "TaskRecord",
    "TickRecord",
]


if not TYPE_CHECKING:  # hidden from mypy, so that a misspelt name stays an error there

    def __getattr__(name: str) -> Any:
        """Load the SQLite store on first use of one of its names (PEP 562)."""
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from . import sqlite

        value = getattr(sqlite, name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value


def __dir__() -> list[str]:
    """Every public name, the lazy ones included (``dir()``, tab completion)."""
    return sorted(set(globals()) | set(__all__))
