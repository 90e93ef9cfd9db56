"""Mapped tasks: the items a mapped task fans out over, their keys and instance names.

``@task(map={"table": list_tables})`` runs one instance of the task per item of
``list_tables``' result, each named ``task[KEY]``. The scheduler expands a mapped task once its
parents succeeded; this module decides the items and keys, and says clearly what is wrong
with an input that cannot be mapped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sized
from typing import Any

from ._task import TaskSpec
from .errors import describe

__all__ = ["MapInputError", "instance_key", "instance_name", "map_items"]


class MapInputError(Exception):
    """The mapped source's result cannot be mapped over; the message says why and how."""


def instance_name(task: str, key: str) -> str:
    return f"{task}[{key}]"


def instance_key(task: str, instance: str) -> str:
    """The KEY of ``task[KEY]``."""
    return instance[len(task) + 1 : -1]


def map_items(spec: TaskSpec, result: object) -> list[tuple[str, Any]]:
    """``(key, item)`` for each item of ``result``, in input order."""
    source = spec.map_source
    where = f"task {spec.name!r} in DAG {spec.dag!r}"
    if isinstance(result, (str, bytes, bytearray, Mapping)) or not (
        isinstance(result, Iterable) and isinstance(result, Sized)
    ):
        kind = type(result).__name__
        fix = "return a list of items"
        if isinstance(result, Mapping):
            fix = "return list(the_dict.items()) or list(the_dict) to map over its entries"
        elif isinstance(result, (str, bytes, bytearray)):
            fix = "a string is one value: return a list of strings"
        elif isinstance(result, Iterable):
            fix = "a generator or iterator has no length: return a list"
        raise MapInputError(
            f"{where} maps over the result of task {source!r}, which is a {kind}, not a list "
            f"of items; {fix}"
        )
    if len(result) > spec.max_map:
        raise MapInputError(
            f"{where} maps over {len(result)} items of task {source!r}, more than its "
            f"max_map={spec.max_map}; a mapped task is never truncated: raise max_map= or map "
            "over fewer items"
        )
    key_of = spec.map_key
    pairs: list[tuple[str, Any]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(result):
        if key_of is None:
            key = str(index)
        else:
            try:
                key = str(key_of(item))
            except Exception as exc:
                raise MapInputError(
                    f"{where}: map_key failed on item {index} of task {source!r} "
                    f"({_short(item)}): {describe(exc)}"
                ) from exc
            if not key:
                raise MapInputError(
                    f"{where}: map_key gave an empty key for item {index} of task {source!r} "
                    f"({_short(item)}); every instance needs a key to be named {spec.name}[KEY]"
                )
            if key in seen:
                raise MapInputError(
                    f"{where}: map_key gives items {seen[key]} and {index} of task {source!r} "
                    f"the same key {key!r}; instance names must be unique: make map_key tell "
                    "them apart (or leave it out to key by position)"
                )
        seen[key] = index
        pairs.append((key, item))
    return pairs


def _short(item: object) -> str:
    text = repr(item)
    return text if len(text) <= 60 else text[:57] + "..."
