"""Finding the DAGs a user module defines: what ``flowrun`` (the CLI) and ``pytest --flowrun``
both look for, so they always agree on what a pipeline file contains."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._engine import DagScope, Engine

__all__ = ["FoundDag", "find_dags", "unwrap"]


@dataclass(frozen=True, slots=True)
class FoundDag:
    """One DAG found in a module: the attribute that holds its engine (or ``DagScope``)."""

    attribute: str
    engine: Engine
    dag: str

    @property
    def home_module(self) -> str | None:
        """The module where the DAG's first task function is defined (None: no task)."""
        for spec in self.engine.registry.tasks_of(self.dag).values():
            return getattr(unwrap(spec.func), "__module__", None)
        return None


def find_dags(namespace: Mapping[str, object]) -> list[FoundDag]:
    """Every DAG of the engines and DAG scopes among ``namespace``'s values (a module's
    ``vars()``), in attribute order, each (engine, DAG) once; a scope counts once it has tasks."""
    found: list[FoundDag] = []
    seen: set[tuple[int, str]] = set()
    for attribute, value in list(namespace.items()):
        if isinstance(value, Engine):
            pairs = [(value, dag) for dag in value.list_dags()]
        elif isinstance(value, DagScope):
            has_tasks = bool(value.engine.registry.tasks_of(value.name))
            pairs = [(value.engine, value.name)] if has_tasks else []
        else:
            continue
        for engine, dag in pairs:
            if (id(engine), dag) not in seen:
                seen.add((id(engine), dag))
                found.append(FoundDag(attribute, engine, dag))
    return found


def unwrap(func: Any) -> Any:
    """The function a task really runs: through partials and functools.wraps layers."""
    while isinstance(func, functools.partial):
        func = func.func
    try:
        return inspect.unwrap(func)
    except ValueError:  # pragma: no cover - a __wrapped__ cycle
        return func
