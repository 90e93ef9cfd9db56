"""The command line's state database: where it is, which serializer, run ids by prefix."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import (
    UnknownRunError,
    suggest,
)
from ..state.memory import InMemoryStateStore
from ..state.serializers import JsonSerializer, PickleSerializer, ResultSerializer
from ..state.sqlite import SqliteStateStore
from ._target import UsageError

DEFAULT_DB = os.path.join(".flowrun", "flowrun.sqlite")
"""The database every command uses unless ``--db`` or ``FLOWRUN_DB`` says otherwise."""


MEMORY_DB = ":memory:"

Store = InMemoryStateStore | SqliteStateStore
"""The stores a command opens: the built-in ones, whose summaries (``results=False``) and
``prune`` the commands use."""


PREFIX_SCAN = 500  # a run id prefix is looked up among this many newest runs


SERIALIZERS: dict[str, Callable[[], ResultSerializer]] = {
    "json": JsonSerializer,
    "pickle": PickleSerializer,
}
"""``--serializer`` / ``FLOWRUN_SERIALIZER``: how the database stores task results."""


def db_path(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("FLOWRUN_DB") or DEFAULT_DB)


@contextlib.contextmanager
def open_store(args: argparse.Namespace, *, create: bool) -> Iterator[Store]:
    """The command's state store. A read-only command (``create=False``) on a database that
    does not exist yet sees an empty store and creates nothing."""
    path = db_path(args)
    serializer = SERIALIZERS[serializer_name(args)]()
    if path == MEMORY_DB or (not create and not Path(path).exists()):
        yield InMemoryStateStore()
        return
    if create:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStateStore(path, serializer, recover=True)
    try:
        yield store
    finally:
        store.close()


def serializer_name(args: argparse.Namespace) -> str:
    """``--serializer``, else ``FLOWRUN_SERIALIZER``, else ``json``."""
    name: str = args.serializer or os.environ.get("FLOWRUN_SERIALIZER") or "json"
    if name not in SERIALIZERS:
        raise UsageError(
            f"FLOWRUN_SERIALIZER={name!r} is not a serializer; choose one of "
            f"{', '.join(SERIALIZERS)}"
        )
    return name


def find_run(store: Store, run_id: str, args: argparse.Namespace) -> str:
    """A full run id from a full id or a unique prefix of one (reading no result)."""
    try:
        store.load_run(run_id, results=False)
        return run_id
    except UnknownRunError:
        pass
    recent = [r.run_id for r in store.list_runs(limit=PREFIX_SCAN, results=False)]
    matches = [rid for rid in recent if rid.startswith(run_id)] if run_id else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise UsageError(f"run id prefix {run_id!r} is ambiguous: {listed}")
    raise UsageError(
        f"unknown run id {run_id!r} in the database {db_path(args)!r} (see `flowrun runs`)."
        f"{suggest(run_id, recent)}"
    )
