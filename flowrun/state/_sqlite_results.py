"""Task results between the records the scheduler and readers see and the rows kept on disk.

A result is stored as the serializer's bytes tagged with the serializer's name, so a file
written with another serializer is refused with the name of the one that reads it (JSON
excepted: it is safe to load whatever this store writes).
"""

from __future__ import annotations

from typing import Any

from ._sqlite_errors import fail
from ._sqlite_rows import CacheRow, RunRow, TaskRow
from .records import CacheEntry, RunRecord, TaskRecord
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
        return self._encode(
            result,
            f"task {task!r} returned a {type(result).__name__} that the state store cannot "
            f"save (run {run_id})",
            " (or set retain_result=False on the task if nothing needs its result after the run)",
            f"task {task!r} (run {run_id})",
        )

    def _encode(self, result: Any, cannot: str, fix: str, where: str) -> bytes:
        serializer = self.serializer
        try:
            blob = serializer.serialize(result)
        except Exception as error:
            raise ResultEncodingError(f"{cannot}: {error}{fix}") from error
        if not isinstance(blob, bytes):
            raise ResultEncodingError(
                f"{where}: serializer {serializer!r} returned {type(blob).__name__}, not "
                "bytes; fix its serialize()"
            )
        return blob

    def cache_row(self, entry: CacheEntry) -> CacheRow:
        """``entry`` with its result encoded; ``ResultEncodingError`` if it cannot be."""
        where = f"the cache of task {entry.task!r} in DAG {entry.dag!r} (run {entry.run_id})"
        blob = self._encode(
            entry.result,
            f"{where} cannot keep a {type(entry.result).__name__}",
            "; the result is not cached (open the store with a serializer that can encode "
            "it, or drop cache=True)",
            where,
        )
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
        )

    def task_row(self, run_id: str, position: int, name: str, rec: TaskRecord) -> TaskRow:
        """A task's row, its result (if any) encoded."""
        blob = self.encode(run_id, name, rec.result) if rec.has_result else None
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
            self.format if blob is not None else None,
            rec.queued_s,
            rec.cached_from,
            rec.deps,
            rec.map_of,
            rec.mapped,
        )

    def record(self, run: RunRow, path: str) -> RunRecord:
        """A fresh snapshot of ``run``: results decoded anew, so callers may mutate them."""
        tasks = {}
        for name, t in run.tasks.items():
            result = None if t.blob is None else self._decode(run, t, t.blob, path)
            tasks[name] = TaskRecord(
                t.status,
                t.attempt,
                t.started_at,
                t.finished_at,
                t.error,
                t.traceback,
                result,
                t.blob is not None,
                t.deps,
                t.queued_s or 0.0,
                t.map_of,
                t.mapped,
                t.cached_from,
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
        )

    def _decode(self, run: RunRow, task: TaskRow, blob: bytes, path: str) -> Any:
        json = DEFAULT_SERIALIZER
        if task.fmt == json.name and self.format != json.name:
            return json.deserialize(blob)  # JSON is safe to load whatever this store writes
        if task.fmt != self.format:
            known = _KNOWN_SERIALIZERS.get(task.fmt or "")
            fix = f"serializer={known}" if known else f"the serializer named {task.fmt!r}"
            fail(
                path,
                f"holds the result of task {task.name!r} of run {run.run_id} in the "
                f"{task.fmt!r} format, but this store's serializer is {self.format!r}; "
                f"open the database with {fix} to read it",
                needs_format=task.fmt,
            )
        return self.serializer.deserialize(blob)
