"""Caching task results across runs: the digests and keys (``@task(cache=True)``).

A cached task's key covers the task's identity (``task_fingerprint``: DAG, name, code,
``cache_version``, template arguments) and its inputs (``cache_key``: each parent's result
digest, ``value_digest``, or the parent's own cache key). The state store keeps the entries
(``CacheEntry``; ``cache_get``, ``cache_put``, ``cache_clear``); the scheduler looks a key up
before running the task. Everything here is deterministic across processes and runs: the
same data gives the same digest in any process (no ``hash()``, no ``id()``, no set order).

Digest rules (``value_digest``), on a tagged, length-prefixed encoding fed to SHA-256:

- JSON-like data is encoded canonically: ``None``, ``bool``, ``int``, ``float``, ``str``,
  ``bytes``, ``list``, ``tuple``, ``dict``, ``set``, ``frozenset`` (exact types; subclasses
  such as a namedtuple or an ``IntEnum`` are objects, below). Dicts with ``str`` keys are
  encoded in sorted key order; other dicts, sets and frozensets in the order of their items'
  digests, so neither insertion order nor hash seeds matter. Types stay apart: a tuple is not
  a list, ``1`` is not ``1.0`` nor ``True``, ``-0.0`` is not ``0.0`` (all NaNs are one NaN).
- Any other object is encoded the way pickle (protocol ``PICKLE_PROTOCOL``) sees it: its
  ``__reduce_ex__`` (the class, by reference, and its arguments and state), each part encoded
  by these same rules, so a set inside a dataclass is sorted too. Classes and functions are
  encoded by reference (module and name). What that cannot encode (a reduction that recurses
  without end) is pickled whole: the pickle's bytes are digested.
- A value neither can encode (a lock, a generator, an open file, a local function) raises
  ``CacheKeyError`` naming where it is in the value. The scheduler then runs the task without
  the cache (a warning, never a failure).

Limits: equal data may still digest differently (a cache miss, the task runs again: never a
wrong hit for different data) when an object's reduction is not deterministic (e.g. an
object whose state is built from a set's iteration order, or a whole-value pickle holding
sets of strings), and across Python or library versions that reduce differently.
"""

from __future__ import annotations

import ast
import contextlib
import copyreg
import functools
import hashlib
import inspect
import math
import pickle
import textwrap
import types
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .state.records import CacheEntry

__all__ = [
    "PICKLE_PROTOCOL",
    "CacheEntry",
    "CacheKeyError",
    "TaskIdentity",
    "cache_key",
    "task_fingerprint",
    "value_digest",
]

PICKLE_PROTOCOL = 5
"""The pickle protocol of every reduction and pickle a digest is taken from (fixed: a digest
must not change with the interpreter's default protocol)."""

_VALUE_FORMAT = b"flowrun-value-1\x00"  # bump to invalidate every digest if the rules change
_PICKLED_FORMAT = b"flowrun-pickled-1\x00"
_FINGERPRINT_FORMAT = "flowrun-task-1"
_KEY_FORMAT = "flowrun-key-1"
_FLUSH_AT = 1 << 16  # bytes buffered before they are fed to the hash


class CacheKeyError(ValueError):
    """A value cannot be digested for a cache key; the message names it and where it is."""


class TaskIdentity(Protocol):
    """What ``task_fingerprint`` reads from a task (``TaskSpec`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def dag(self) -> str: ...

    @property
    def func(self) -> Callable[..., Any]: ...

    @property
    def cache_version(self) -> str: ...


# -- values ---------------------------------------------------------------------------------


def value_digest(value: Any, *, what: str = "the value") -> str:
    """A hex SHA-256 digest of ``value``: equal data gives the same digest in every process
    and run (the rules and their limits: this module's docstring). ``what`` names the value
    in the ``CacheKeyError`` raised when it cannot be digested."""
    try:
        return _digest(value)
    except _Undigestable as error:
        raise _key_error(value, error, what) from error.cause
    except RecursionError:  # nested too deep for the encoder: pickle copes with more
        return _pickled_digest(value, what)


def _digest(value: Any) -> str:
    hasher = hashlib.sha256(_VALUE_FORMAT)
    encoder = _Encoder(hasher)
    encoder.encode(value)
    encoder.flush()
    return hasher.hexdigest()


def _pickled_digest(value: Any, what: str) -> str:
    try:
        data = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
    except Exception as error:  # RecursionError included
        raise CacheKeyError(
            f"{what} cannot be part of a cache key: a {_type_name(value)} that pickle cannot "
            f"encode ({error}); give the task plain data (dicts, lists, strings, numbers) or "
            "picklable objects"
        ) from error
    return hashlib.sha256(_PICKLED_FORMAT + data).hexdigest()


class _Undigestable(Exception):
    """Internal: ``leaf`` (somewhere in the value) can be neither reduced nor pickled."""

    def __init__(self, leaf: Any, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.leaf = leaf
        self.cause = cause


class _Encoder:
    """The canonical encoding, streamed to a hash. Every item is self-delimiting (a tag, then
    a length or a count), so two different values never encode alike."""

    __slots__ = ("active", "buf", "hasher")

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher
        self.buf = bytearray()
        self.active: set[int] = set()  # containers being encoded: a cycle is pickled whole

    def flush(self) -> None:
        self.hasher.update(self.buf)
        self.buf.clear()

    def atom(self, tag: bytes, data: bytes) -> None:
        buf = self.buf
        buf += tag
        buf += b"%d:" % len(data)
        buf += data
        if len(buf) > _FLUSH_AT:
            self.flush()

    def encode(self, value: Any) -> None:
        kind = type(value)
        if value is None:
            self.buf += b"N"
        elif kind is bool:
            self.buf += b"T" if value else b"F"
        elif kind is int:
            self.atom(b"i", format(value, "x").encode())  # hex: no digit limit for big ints
        elif kind is float:
            self.atom(b"f", b"nan" if math.isnan(value) else value.hex().encode())
        elif kind is str:
            self.atom(b"s", value.encode("utf-8", "surrogatepass"))
        elif kind is bytes:
            self.atom(b"b", value)
        elif kind is list or kind is tuple or kind is dict or kind is set or kind is frozenset:
            if id(value) in self.active:
                self.pickled(value)
                return
            self.active.add(id(value))
            self.container(value, kind)
            self.active.discard(id(value))
        else:
            self.obj(value)

    def container(self, value: Any, kind: type) -> None:
        if kind is list or kind is tuple:
            self.buf += b"l%d:" % len(value) if kind is list else b"t%d:" % len(value)
            for item in value:
                self.encode(item)
        elif kind is dict:
            if all(type(key) is str for key in value):
                self.buf += b"d%d:" % len(value)
                for key in sorted(value):
                    self.atom(b"s", key.encode("utf-8", "surrogatepass"))
                    self.encode(value[key])
            else:  # keys of several types cannot be sorted: sort the pairs' digests
                self.digests(b"D", [self.sub_digest(pair) for pair in value.items()])
        else:
            tag = b"S" if kind is set else b"Z"
            self.digests(tag, [self.sub_digest(item) for item in value])

    def digests(self, tag: bytes, digests: list[bytes]) -> None:
        digests.sort()
        self.buf += tag + b"%d:" % len(digests)
        self.buf += b"".join(digests)

    def sub_digest(self, value: Any) -> bytes:
        hasher = hashlib.sha256()
        sub = _Encoder(hasher)
        sub.active = self.active  # a cycle through a set or a dict is still a cycle
        sub.encode(value)
        sub.flush()
        return hasher.digest()

    def obj(self, value: Any) -> None:
        """Anything else, as pickle reduces it; by reference for classes and functions."""
        if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
            self.pickled(value, tag=b"G")  # pickled by reference: module and name
            return
        if id(value) in self.active:
            self.pickled(value)
            return
        try:
            reducer = copyreg.dispatch_table.get(type(value))
            reduced = (
                reducer(value) if reducer is not None else value.__reduce_ex__(PICKLE_PROTOCOL)
            )
        except Exception:
            self.pickled(value)  # pickle has the last word (and names the problem)
            return
        if isinstance(reduced, str):  # a module-level singleton: pickled by reference
            self.pickled(value, tag=b"G")
            return
        if not isinstance(reduced, tuple) or not 2 <= len(reduced) <= 6:
            self.pickled(value)
            return
        self.active.add(id(value))
        try:
            parts = list(reduced) + [None] * (6 - len(reduced))
            func, args, state, list_items, dict_items, setter = parts
            self.buf += b"R"
            self.encode(func)
            self.encode(args)
            self.encode(state)
            self.encode(None if list_items is None else list(list_items))
            self.encode(None if dict_items is None else list(dict_items))
            self.encode(setter)
        finally:
            self.active.discard(id(value))

    def pickled(self, value: Any, tag: bytes = b"P") -> None:
        try:
            data = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        except Exception as error:
            raise _Undigestable(value, error) from error
        self.atom(tag, data)


def _key_error(value: Any, error: _Undigestable, what: str) -> CacheKeyError:
    leaf = error.leaf
    path = _find(value, leaf, "", set())
    at = f" (at {path})" if path else ""
    kind = f"class {leaf.__qualname__}" if isinstance(leaf, type) else f"a {_type_name(leaf)}"
    return CacheKeyError(
        f"{what} cannot be part of a cache key: it holds {kind}{at}, which "
        f"cannot be digested ({error.cause}); give the task plain data (dicts, lists, "
        "strings, numbers) or picklable objects"
    )


def _find(value: Any, leaf: Any, path: str, seen: set[int]) -> str | None:
    """Where ``leaf`` is in ``value`` (``"['rows'][2]"``; ``""`` for the value itself)."""
    if value is leaf:
        return path
    if id(value) in seen:
        return None
    seen.add(id(value))
    items: Iterable[tuple[str, Any]]
    if isinstance(value, dict):
        items = ((f"[{key!r}]", item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"[{index}]", item) for index, item in enumerate(value))
    elif isinstance(value, (set, frozenset)):
        items = (("{...}", item) for item in value)
    else:
        attrs = getattr(value, "__dict__", None)
        if not isinstance(attrs, dict):
            return None
        items = ((f".{name}", item) for name, item in attrs.items())
    for step, item in items:
        found = _find(item, leaf, path + step, seen)
        if found is not None:
            return found
    return None


def _type_name(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


# -- tasks ----------------------------------------------------------------------------------


def task_fingerprint(spec: TaskIdentity) -> str:
    """A hex digest of what a task is: its DAG and name, its code, its ``cache_version`` and
    its template arguments. Any of them changing makes every cached entry of the task miss.

    The code: ``functools.partial`` layers are taken off (their arguments are the template
    arguments) and decorators are seen through with ``inspect.unwrap``; for a callable object
    it is the code of its class's ``__call__``, for a bound method its function. The code is
    the function's source text (from its ``def`` line: the decorator lines above it are not
    part of it, so changing ``retries=`` keeps the cache; any other change of the text does
    not, a comment or blank line included) and its compiled code (bytecode, constants and
    names, which also stands alone when the source is not available, e.g. a lambda typed in
    a REPL). A lambda's source is its whole line. Closure variables, and the state of a
    callable object or of a bound method's object, are part of it when they can be digested
    (else only their type is); a function they hold counts by its code.

    Not part of it: the functions the task calls, module globals, libraries. When those
    change what the task computes, bump ``cache_version``.

    Raises ``CacheKeyError`` when a template argument cannot be digested."""
    func: Any = spec.func
    where = f"task {spec.name!r} in DAG {spec.dag!r}"
    args: list[Any] = []
    keywords: dict[str, Any] = {}
    while isinstance(func, functools.partial):  # the outer layer's arguments come last
        args = [*func.args, *args]
        keywords = {**func.keywords, **keywords}
        func = func.func
    arg_digests = tuple(
        value_digest(arg, what=f"template argument #{index} of {where}")
        for index, arg in enumerate(args)
    )
    keyword_digests = tuple(
        (name, value_digest(keywords[name], what=f"template argument {name!r} of {where}"))
        for name in sorted(keywords)
    )
    parts = (
        _FINGERPRINT_FORMAT,
        spec.dag,
        spec.name,
        _callable_identity(func, set()),
        spec.cache_version,
        arg_digests,
        keyword_digests,
    )
    return value_digest(parts, what=f"the identity of {where}")


def _callable_identity(func: Any, seen: set[int]) -> tuple[Any, ...]:
    """The code of ``func`` and the state it carries, as plain data (see task_fingerprint)."""
    if id(func) in seen:
        return ("seen",)  # a function reaching itself through its closure
    seen.add(id(func))
    state: list[Any] = []
    while True:
        if isinstance(func, functools.partial):  # inside a decorator: part of the state
            state.append(_state_part(func.args, seen))
            state.append(_state_part(dict(func.keywords), seen))
            func = func.func
            continue
        with contextlib.suppress(ValueError):  # a __wrapped__ cycle: take func as it is
            func = inspect.unwrap(func)
        if inspect.ismethod(func):
            state.append(_state_part(func.__self__, seen))
            func = func.__func__
            continue
        if isinstance(func, (types.FunctionType, type, types.BuiltinFunctionType)):
            break
        call = type(func).__call__  # a callable object: its class's code
        if not isinstance(call, types.FunctionType):  # a __call__ written in C: its name
            break
        state.append(_state_part(func, seen))
        func = call
    closure = getattr(func, "__closure__", None) or ()
    for cell in closure:
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell (a name assigned after the function was made)
            state.append("empty")
            continue
        state.append(_state_part(contents, seen))
    return (_source_digest(func), _code_digest(func), tuple(state))


def _state_part(value: Any, seen: set[int]) -> Any:
    """A closure variable or an object's state: a function by its code, data by its digest,
    and anything that cannot be digested by its type."""
    if isinstance(value, (types.FunctionType, types.MethodType, functools.partial)):
        return ("callable", _callable_identity(value, seen))
    try:
        return ("value", value_digest(value))
    except CacheKeyError:
        return ("opaque", _type_name(value))


def _source_digest(func: Any) -> str | None:
    try:
        lines, _ = inspect.getsourcelines(func)
    except (OSError, TypeError):  # no source: a REPL, exec'd code, a builtin
        return None
    source = _from_def_line(textwrap.dedent("".join(lines)))
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def _from_def_line(source: str) -> str:
    """The source without the decorator lines above its ``def`` (or ``class``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a lambda's lines need not parse alone: keep them whole
        return source
    first = tree.body[0] if tree.body else None
    decorated = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    if isinstance(first, decorated) and first.decorator_list:
        return "".join(source.splitlines(keepends=True)[first.lineno - 1 :])
    return source


def _code_digest(func: Any) -> str:
    code = getattr(func, "__code__", None)
    if isinstance(code, types.CodeType):
        return value_digest(_code_parts(code))
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return f"{module}.{name}" if name else _type_name(func)


def _code_parts(code: types.CodeType) -> tuple[Any, ...]:
    """A code object as plain data: what it does, not where it is (no file, no line)."""
    consts = tuple(
        _code_parts(const) if isinstance(const, types.CodeType) else const
        for const in code.co_consts
    )
    return (
        code.co_code,
        consts,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
    )


# -- keys -----------------------------------------------------------------------------------


def cache_key(fingerprint: str, inputs: Iterable[tuple[str, str]]) -> str:
    """The key of one execution of a task: its ``fingerprint`` with one ``(parent name, input
    digest)`` pair per parent it takes (the digest of the parent's result, or the parent's own
    cache key), in parent-name order whatever the order given."""
    pairs = []
    for pair in inputs:
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or not all(isinstance(part, str) for part in pair)
        ):
            raise TypeError(
                f"cache_key inputs are (parent name, digest) pairs of strings, got {pair!r}"
            )
        pairs.append(pair)
    if not isinstance(fingerprint, str):
        raise TypeError(f"a task fingerprint is a str, got {type(fingerprint).__name__}")
    return value_digest((_KEY_FORMAT, fingerprint, tuple(sorted(pairs))))
