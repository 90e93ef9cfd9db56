"""How a persistent state store turns task results into bytes and back.

A serializer only says what it can and cannot encode; the store adds the task and run to the
message, so the error a user sees names the task, the type and the fix.
"""

from __future__ import annotations

import json
import pickle
from abc import ABCMeta
from typing import TYPE_CHECKING, Any

__all__ = [
    "JsonSerializer",
    "PickleSerializer",
    "ResultEncodingError",
    "ResultSerializer",
]

_JSON_SCALARS = (str, int, float)  # bool is an int; json.dumps also takes them (and None) as keys


class ResultEncodingError(TypeError):
    """A task's result cannot be stored by the state store's serializer. The store raises it
    from ``mark_success``, so the scheduler records that task FAILED with this message."""


class _QualnameDefault:
    """``name`` when a serializer sets none: its class's ``__qualname__``. A non-data
    descriptor, so a subclass (class attribute) or an instance (``self.name = ...``) can set
    its own."""

    def __get__(self, obj: object, owner: type | None = None) -> str:
        return (owner if owner is not None else type(obj)).__qualname__


# Not abstract on purpose: an incomplete subclass (say, one with the old dumps/loads) reaches
# the store's check_serializer, whose message says what to rename.
class ResultSerializer(metaclass=ABCMeta):  # noqa: B024 - ABCMeta only for __subclasshook__
    """Encodes results for a persistent store: subclass it and implement ``serialize`` and
    ``deserialize``.

    ``serialize(obj) -> bytes`` raises any ``Exception`` whose message says what it cannot
    encode and how to fix it; ``deserialize(data) -> Any`` gives the value back.

    ``name`` (default: the class's ``__qualname__``) is stored beside every encoded result,
    so a database read back with another serializer fails with a clear message instead of
    returning garbage (or unpickling data the reader did not ask to trust). Set it to keep
    databases readable when the class is renamed, or change it when the bytes change.

    ``isinstance(obj, ResultSerializer)`` is also true for any object whose class has
    ``serialize`` and ``deserialize`` methods, without subclassing.
    """

    if TYPE_CHECKING:
        name: str
    else:
        name = _QualnameDefault()

    def serialize(self, obj: Any) -> bytes:
        raise NotImplementedError(f"{type(self).__qualname__} must implement serialize(obj)")

    def deserialize(self, data: bytes) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must implement deserialize(data)")

    @classmethod
    def __subclasshook__(cls, other: type) -> bool:
        if cls is not ResultSerializer:  # JsonSerializer and the like: ordinary isinstance
            return NotImplemented  # type: ignore[no-any-return]
        methods = ("serialize", "deserialize")
        return all(any(k.__dict__.get(m) is not None for k in other.__mro__) for m in methods)


def check_serializer(serializer: object) -> str:
    """The format name a store records for ``serializer``; a clear ``TypeError`` if it is not
    a serializer (including one written against the old ``dumps``/``loads`` protocol)."""
    kind = type(serializer)
    missing = [
        method
        for method in ("serialize", "deserialize")
        if not callable(getattr(serializer, method, None))
        or getattr(kind, method, None) is getattr(ResultSerializer, method)
    ]
    if missing:
        if callable(getattr(serializer, "dumps", None)) or callable(
            getattr(serializer, "loads", None)
        ):
            raise TypeError(
                f"serializer {serializer!r} has dumps()/loads(), but a ResultSerializer "
                "implements serialize(obj) -> bytes and deserialize(data) -> Any: rename dumps "
                "to serialize and loads to deserialize"
            )
        raise TypeError(
            f"serializer must be a ResultSerializer (such as JsonSerializer()) implementing "
            f"serialize(obj) -> bytes and deserialize(data) -> Any; {serializer!r} does not "
            f"implement {' nor '.join(m + '()' for m in missing)}"
        )
    name = getattr(serializer, "name", None)
    if name is None:
        name = kind.__qualname__  # duck-typed, not a subclass: the same default
    if not isinstance(name, str) or not name:
        raise TypeError(f"serializer {serializer!r}: 'name' must be a non-empty str, got {name!r}")
    return name


class JsonSerializer(ResultSerializer):
    """The default: readable, portable, safe to load from any database.

    Stores whatever ``json.dumps`` accepts, with its semantics: tuples come back as lists,
    ``int``/``float``/``bool``/``None`` dict keys as ``str``, NaN and infinities are kept. One
    ``json.dumps`` per result (a big list or dict: per slice of 1000 items, the same text, so a
    thread encoding it lets others run between slices); a value is walked only when that
    fails, to name the culprit.

    ``JsonSerializer(strict=True)`` refuses anything JSON would change, so a resumed run
    receives exactly what its task produced; it checks by decoding each result again.
    """

    name = "json"

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict

    def serialize(self, obj: Any) -> bytes:
        if obj is None:
            return b"null"
        kind = type(obj)
        if kind is str or kind is int or kind is bool:
            return _encode(json.dumps(obj, ensure_ascii=False), obj)
        try:
            text, exact = _json_text(obj, self.strict)
        except (TypeError, ValueError) as error:  # unsupported type or key, circular reference
            raise TypeError(_json_refusal(obj, self.strict) or str(error)) from None
        if not exact:  # strict: a tuple, a non-str key... (or a NaN, which it keeps)
            refusal = _json_refusal(obj, strict=True)
            if refusal:
                raise TypeError(refusal)
        return _encode(text, obj)

    def deserialize(self, data: bytes) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonSerializer(strict=True)" if self.strict else "JsonSerializer()"


_SLICE = 1000  # items of a big list or dict per json.dumps call (a millisecond or so)
_CONTAINERS = (list, tuple, dict)


def _json_text(obj: Any, strict: bool) -> tuple[str, bool]:
    """``json.dumps(obj, ensure_ascii=False)``, and whether it decodes back to ``obj`` (only
    checked if ``strict``). A big list, tuple or dict (and such containers inside it) is
    encoded a slice at a time, with the same text as a whole: a thread encoding a 10 MB
    result lets the event loop run between slices instead of holding the GIL throughout."""
    if type(obj) not in _CONTAINERS or not _big_inside(obj):
        text = json.dumps(obj, ensure_ascii=False)
        return text, not strict or json.loads(text) == obj
    out: list[str] = []
    exact = _slices(obj, strict, out)
    return "".join(out), exact


def _big(value: Any) -> bool:
    return type(value) in _CONTAINERS and len(value) > _SLICE


def _big_inside(obj: Any) -> bool:
    if len(obj) > _SLICE:
        return True
    values = obj.values() if type(obj) is dict else obj
    return any(_big(value) for value in values)


def _slices(obj: Any, strict: bool, out: list[str]) -> bool:
    """Append the JSON text of the list, tuple or dict ``obj`` to ``out`` in pieces; whether
    each piece decodes back to what it encodes (``strict``; a tuple never does)."""
    is_dict = type(obj) is dict
    exact = not (strict and type(obj) is tuple)
    out.append("{" if is_dict else "[")
    first = True
    batch: list[Any] = []

    def flush() -> None:
        nonlocal first, exact
        if not batch:
            return
        part: Any = dict(batch) if is_dict else batch
        text = json.dumps(part, ensure_ascii=False)
        if strict and exact and json.loads(text) != part:
            exact = False
        out.append(text[1:-1] if first else ", " + text[1:-1])
        first = False
        batch.clear()

    for entry in obj.items() if is_dict else obj:
        value = entry[1] if is_dict else entry
        if not _big(value):
            batch.append(entry)
            if len(batch) == _SLICE:
                flush()
            continue
        flush()
        if is_dict:  # the key as json.dumps writes it (str() of an int key, "true"...)
            key = json.dumps({entry[0]: 0}, ensure_ascii=False)[1:-2]
            if strict and exact and json.loads("{" + key + "0}") != {entry[0]: 0}:
                exact = False
            out.append(key if first else ", " + key)
        elif not first:
            out.append(", ")
        first = False
        exact = _slices(value, strict, out) and exact
    flush()
    out.append("}" if is_dict else "]")
    return exact


def _encode(text: str, obj: Any) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: JSON's \u escapes keep it
        return json.dumps(obj).encode()


class PickleSerializer(ResultSerializer):
    """Stores any picklable object (tuples, sets, dates, dataclasses...).

    Loading a pickle runs code chosen by whoever wrote it: use it only on databases you trust.
    Classes are pickled by reference, so the code that reads a result must import them.
    """

    name = "pickle"

    def serialize(self, obj: Any) -> bytes:
        try:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:
            raise TypeError(f"pickle cannot encode it ({error}); return picklable data") from None

    def deserialize(self, data: bytes) -> Any:
        return pickle.loads(data)

    def __repr__(self) -> str:
        return "PickleSerializer()"


def _json_refusal(value: Any, strict: bool) -> str | None:
    """Why JSON cannot store ``value`` (exactly, if ``strict``), pointing at the first culprit;
    None if it can."""
    found = _first_refused(value, "result", set(), strict)
    if found is None:
        return None
    where, what = found
    at = "" if where == "result" else f" (at {where})"
    if strict:
        return (
            f"JSON cannot store {what}{at} exactly; return None, bool, int, float, str, lists "
            "and dicts with str keys, or open the store with serializer=PickleSerializer()"
        )
    return (
        f"JSON cannot store {what}{at}; return None, bool, int, float, str, lists, tuples and "
        "dicts (with str, int, float, bool or None keys), or open the store with "
        "serializer=PickleSerializer()"
    )


def _first_refused(value: Any, where: str, seen: set[int], strict: bool) -> tuple[str, str] | None:
    if value is None or isinstance(value, _JSON_SCALARS):
        return None
    containers = (list, dict) if strict else (list, tuple, dict)
    if not isinstance(value, containers):
        return where, f"a {type(value).__name__}"
    if id(value) in seen:
        return where, "a circular reference"
    seen.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) and (strict or not _json_key(key)):
                return where, f"a dict key of type {type(key).__name__} ({key!r})"
            found = _first_refused(item, f"{where}[{key!r}]", seen, strict)
            if found is not None:
                return found
    else:
        for index, item in enumerate(value):
            found = _first_refused(item, f"{where}[{index}]", seen, strict)
            if found is not None:
                return found
    seen.discard(id(value))
    return None


def _json_key(key: Any) -> bool:
    return key is None or isinstance(key, _JSON_SCALARS)
