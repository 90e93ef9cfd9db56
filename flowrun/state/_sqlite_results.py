"""Task results between the records the scheduler and readers see and the rows kept on disk.

A result is stored as the serializer's bytes tagged with the serializer's name, so a file
written with another serializer is refused with the name of the one that reads it (JSON
excepted: it is safe to load whatever this store writes).
"""

from __future__ import annotations

import json
from typing import Any

from ._prune import PRUNED_FORMAT
from ._sqlite_errors import fail
from ._sqlite_rows import CacheRow, RunRow, TaskRow
from .records import AttemptRecord, CacheEntry, RunRecord, TaskRecord
from .serializers import JsonSerializer, ResultEncodingError, ResultSerializer, check_serializer

__all__ = ["DEFAULT_SERIALIZER", "ResultCodec"]

DEFAULT_SERIALIZER = JsonSerializer()
_KNOWN_SERIALIZERS = {"json": "JsonSerializer()", "pickle": "PickleSerializer()"}


class ResultCodec:
    """The store's serializer, and the conversions that need it."""

    def __init__(self, serializer: ResultSerializer) -> None:
        self.format = check_serializer(serializer)  # the name stored beside each result
        self.serializer = serializer

    def encode(self, run_id: str, task: str, result: Any) -> bytes:
        try:
            blob = self.serializer.serialize(result)
        except Exception as error:
            raise ResultEncodingError(
                f"task {task!r} returned a {type(result).__name__} that the state store "
                f"cannot save (run {run_id}): {error} (or set retain_result=False on the "
                "task if nothing needs its result after the run)"
            ) from error
        if type(blob) is not bytes:
            self._check(blob, f"task {task!r} (run {run_id})")
        return blob

    def _check(self, blob: Any, where: str) -> None:
        """Refuse a serializer's output that is not ``bytes`` (its message is written only
        then: ``encode`` runs once per result)."""
        if not isinstance(blob, bytes):
            raise ResultEncodingError(
                f"{where}: serializer {self.serializer!r} returned {type(blob).__name__}, not "
                "bytes; fix its serialize()"
            )

    def cache_row(self, entry: CacheEntry) -> CacheRow:
        """``entry`` with its result encoded; ``ResultEncodingError`` if it cannot be."""
        where = f"the cache of task {entry.task!r} in DAG {entry.dag!r} (run {entry.run_id})"
        try:
            blob = self.serializer.serialize(entry.result)
        except Exception as error:
            raise ResultEncodingError(
                f"{where} cannot keep a {type(entry.result).__name__}: {error}; the result is "
                "not cached (open the store with a serializer that can encode it, or drop "
                "cache=True)"
            ) from error
        self._check(blob, where)
        return CacheRow(
            entry.key,
            entry.dag,
            entry.task,
            entry.run_id,
            entry.created_at,
            entry.expires_at,
            blob,
            self.format,
        )

    def cache_entry(self, row: CacheRow) -> CacheEntry | None:
        """The entry of ``row``, its result decoded anew; None (a cache miss: the task runs
        and replaces it) when this store cannot read it: another serializer's format, or
        bytes that no longer decode (e.g. a pickled class that was renamed)."""
        decoder: ResultSerializer = self.serializer
        if row.fmt != self.format:
            if row.fmt != DEFAULT_SERIALIZER.name:
                return None
            decoder = DEFAULT_SERIALIZER  # JSON is safe to load whatever this store writes
        try:
            result = decoder.deserialize(row.blob)
        except Exception:
            return None
        return CacheEntry(
            row.key, row.dag, row.task, row.run_id, row.created_at, row.expires_at, result
        )

    def new_row(self, run: RunRecord) -> RunRow:
        """A run not written yet (``key`` None), its kept results encoded."""
        tasks = {
            name: self.task_row(run.run_id, position, name, rec)
            for position, (name, rec) in enumerate(run.tasks.items())
        }
        return RunRow(
            None,
            run.run_id,
            run.dag_name,
            run.created_at,
            run.status,
            run.finished_at,
            run.targets,
            run.resumed_from,
            tasks,
            scheduled_for=run.scheduled_for,
        )

    def task_row(self, run_id: str, position: int, name: str, rec: TaskRecord) -> TaskRow:
        """A task's row, its result (if any) encoded."""
        blob = self.encode(run_id, name, rec.result) if rec.has_result else None
        fmt = self.format if blob is not None else PRUNED_FORMAT if rec.result_pruned else None
        return TaskRow(
            position,
            name,
            rec.status,
            rec.attempt,
            rec.started_at,
            rec.finished_at,
            rec.error,
            rec.traceback,
            blob,
            fmt,
            rec.queued_s,
            rec.cached_from,
            json.dumps(list(rec.warnings)) if rec.warnings else None,
            _attempts_json(rec.earlier_attempts),
            rec.deps,
            rec.map_of,
            rec.mapped,
        )

    def record(self, run: RunRow, path: str, results: bool = True) -> RunRecord:
        """A fresh snapshot of ``run``: results decoded anew, so callers may mutate them;
        ``results=False``: none decoded (``run`` may be a summary row, see ``select_run``).
        A result this store cannot read fails the whole snapshot, before anything is decoded."""
        if results:
            self._check_readable(run, path)
        tasks = {}
        for name, t in run.tasks.items():
            stored = t.fmt is not None and t.fmt != PRUNED_FORMAT
            result = None
            if results and t.blob is not None:
                result = self._decode(t.fmt, t.blob)
            tasks[name] = TaskRecord(
                t.status,
                t.attempt,
                t.started_at,
                t.finished_at,
                t.error,
                t.traceback,
                result,
                stored,
                t.deps,
                t.queued_s or 0.0,
                t.map_of,
                t.mapped,
                t.cached_from,
                t.fmt if stored else None,
                t.fmt == PRUNED_FORMAT,
                tuple(json.loads(t.warnings)) if t.warnings else (),
                _attempts(t.attempts),
            )
        return RunRecord(
            run.run_id,
            run.dag_name,
            run.created_at,
            run.status,
            run.finished_at,
            tasks,
            run.targets,
            run.resumed_from,
            scheduled_for=run.scheduled_for,
        )

    def readable(self, fmt: str) -> bool:
        """Whether this store decodes results stored in format ``fmt``."""
        return fmt in (self.format, DEFAULT_SERIALIZER.name)

    def _check_readable(self, run: RunRow, path: str) -> None:
        """Refuse a run holding a result of another serializer before decoding anything,
        naming the first such task and the serializer that reads it."""
        for t in run.tasks.values():
            fmt = t.fmt or ""
            if t.blob is None or self.readable(fmt):
                continue
            known = _KNOWN_SERIALIZERS.get(fmt)
            fix = f"serializer={known}" if known else f"the serializer named {fmt!r}"
            fail(
                path,
                f"holds the result of task {t.name!r} of run {run.run_id} in the {fmt!r} "
                f"format, but this store's serializer is {self.format!r}; open the database "
                f"with {fix} to read it",
                needs_format=fmt,
            )

    def _decode(self, fmt: str | None, blob: bytes) -> Any:
        if fmt == DEFAULT_SERIALIZER.name and self.format != fmt:
            return DEFAULT_SERIALIZER.deserialize(blob)  # JSON: safe whatever this store writes
        return self.serializer.deserialize(blob)


def _attempts_json(attempts: tuple[AttemptRecord, ...]) -> str | None:
    if not attempts:  # the common case: one row per task of a new run
        return None
    return json.dumps([[a.attempt, a.started_at, a.finished_at, a.error] for a in attempts])


def _attempts(text: str | None) -> tuple[AttemptRecord, ...]:
    return tuple(AttemptRecord(*row) for row in json.loads(text)) if text else ()
