"""How a persistent state store turns task results into bytes and back.

A serializer only says what it can and cannot encode; the store adds the task and run to the
message, so the error a user sees names the task, the type and the fix.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol, runtime_checkable

__all__ = ["JsonSerializer", "PickleSerializer", "ResultEncodingError", "ResultSerializer"]


class ResultEncodingError(TypeError):
    """A task's result cannot be stored by the state store's serializer. The store raises it
    from ``mark_success``, so the scheduler records that task FAILED with this message."""


@runtime_checkable
class ResultSerializer(Protocol):
    """Encodes results for a persistent store.

    ``name`` is stored beside every encoded result, so a database read back with another
    serializer fails with a clear message instead of returning garbage (or unpickling data
    the reader did not ask to trust). ``dumps`` raises any ``Exception`` whose message says
    what it cannot encode and how to fix it.
    """

    @property
    def name(self) -> str: ...

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """The default: readable, portable, safe to load from any database.

    Stores only values JSON gives back *exactly* (``None``, ``bool``, ``int``, ``float``,
    ``str``, lists, dicts with ``str`` keys). Anything JSON would silently change, such as a
    tuple coming back as a list or an ``int`` dict key coming back as a ``str``, is refused:
    a resumed run must receive the same input its task produced.
    """

    name = "json"

    def dumps(self, value: Any) -> bytes:
        if value is None:
            return b"null"
        kind = type(value)
        if kind is str or kind is int or kind is bool:
            return json.dumps(value, ensure_ascii=False).encode()
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError) as error:  # unsupported type, circular reference
            raise TypeError(_json_refusal(value) or str(error)) from None
        if json.loads(text) != value:  # a tuple, a non-str dict key... (or a NaN: accepted)
            refusal = _json_refusal(value)
            if refusal:
                raise TypeError(refusal)
        return text.encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonSerializer()"


class PickleSerializer:
    """Stores any picklable object (tuples, sets, dates, dataclasses...).

    Loading a pickle runs code chosen by whoever wrote it: use it only on databases you trust.
    Classes are pickled by reference, so the code that reads a result must import them.
    """

    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:
            raise TypeError(f"pickle cannot encode it ({error}); return picklable data") from None

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)

    def __repr__(self) -> str:
        return "PickleSerializer()"


def _json_refusal(value: Any) -> str | None:
    """Why JSON cannot store ``value`` exactly, pointing at the first culprit; None if it can."""
    found = _first_inexact(value, "result", set())
    if found is None:
        return None
    where, what = found
    at = "" if where == "result" else f" (at {where})"
    return (
        f"JSON cannot store {what}{at} exactly; return None, bool, int, float, str, lists and "
        "dicts with str keys, or open the store with serializer=PickleSerializer()"
    )


def _first_inexact(value: Any, where: str, seen: set[int]) -> tuple[str, str] | None:
    if value is None or isinstance(value, (str, int, float)):
        return None
    if isinstance(value, (list, dict)):
        if id(value) in seen:
            return where, "a circular reference"
        seen.add(id(value))
        if isinstance(value, list):
            for index, item in enumerate(value):
                found = _first_inexact(item, f"{where}[{index}]", seen)
                if found is not None:
                    return found
        else:
            for key, item in value.items():
                if not isinstance(key, str):
                    return where, f"a dict key of type {type(key).__name__} ({key!r})"
                found = _first_inexact(item, f"{where}[{key!r}]", seen)
                if found is not None:
                    return found
        seen.discard(id(value))
        return None
    return where, f"a {type(value).__name__}"
