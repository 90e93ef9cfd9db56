"""The error a state database raises, worded in one place: every part of the store names the
file the same way and ends with what to do."""

from __future__ import annotations

import sqlite3
from typing import NoReturn

__all__ = ["StateDatabaseError", "database_error", "explain", "fail", "not_ours"]


class StateDatabaseError(Exception):
    """The state database cannot be used: wrong kind of file, newer schema, not writable,
    closed, or locked for longer than the busy timeout. The message says what to do.

    ``path`` is the database; ``needs_format`` is set when a result is stored in a format
    this store's serializer does not read: the name of the serializer that does."""

    __module__ = "flowrun.state.sqlite"  # where users import it: tracebacks and pickles say so

    def __init__(
        self, message: str, *, path: str | None = None, needs_format: str | None = None
    ) -> None:
        self.path = path
        self.needs_format = needs_format
        super().__init__(message)


def database_error(path: str, problem: str, needs_format: str | None = None) -> StateDatabaseError:
    return StateDatabaseError(
        f"flowrun state database '{path}' {problem}",
        path=str(path),
        needs_format=needs_format,
    )


def fail(path: str, problem: str, needs_format: str | None = None) -> NoReturn:
    raise database_error(path, problem, needs_format)


def not_ours(path: str, what: str) -> NoReturn:
    fail(
        path,
        f"is {what}; flowrun left it untouched. Pass the path of a flowrun state database "
        "or of a file that does not exist yet",
    )


def explain(error: sqlite3.Error) -> str:
    """SQLite's message, with the fix for the failures a user can do something about."""
    text = str(error)
    if "not a database" in text or "malformed" in text:
        return f"is not a usable SQLite database ({text}); flowrun left it untouched"
    if "readonly" in text or "unable to open" in text or "read-only" in text:
        return (
            f"is not writable ({text}): this process must be able to write the file and "
            "its directory (SQLite creates the -wal and -shm files beside it)"
        )
    return f"failed: {text}"
