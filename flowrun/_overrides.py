"""Task overrides: swap task functions for a while, keeping every option and dependency.

``override_tasks(engine, "etl", extract=lambda: [...])`` is a context manager; inside it the
DAG runs the stubs, on exit (even on error) the original tasks are back, in their original
registration order. A stub goes through the same checks and injection rules as the task it
replaces, so it receives the same upstream results and context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from ._task import TaskRegistry, TaskSpec
from .errors import UnknownTaskError

__all__ = ["override_tasks"]


class _Registers(Protocol):
    """What overriding needs of an ``Engine`` (so this module does not import the engine's)."""

    @property
    def registry(self) -> TaskRegistry: ...

    def resolve_dag_name(self, dag_name: str) -> str: ...


@contextmanager
def override_tasks(
    engine: _Registers, dag_name: str, /, **funcs: Callable[..., Any]
) -> Iterator[Mapping[str, TaskSpec]]:
    """Replace the functions of tasks of ``dag_name`` for the duration of the ``with`` block.

    Each keyword names a task; its value is the stub called instead, with the original's deps,
    timeout, retries and other options. Yields the stub specs by task name. An unknown task
    name raises ``UnknownTaskError`` (with the closest name), a stub that cannot be a task
    raises ``TaskDefinitionError``; in both cases nothing was changed.
    """
    registry = engine.registry
    dag = engine.resolve_dag_name(dag_name)
    tasks = registry.tasks_of(dag)
    stubs: dict[tuple[str, str], TaskSpec] = {}
    originals: dict[tuple[str, str], TaskSpec] = {}
    for task_name, func in funcs.items():
        spec = tasks.get(task_name)
        if spec is None:
            raise UnknownTaskError(dag, task_name, list(tasks), "override_tasks")
        if not callable(func):
            raise TypeError(
                f"the override of task {task_name!r} in DAG {dag!r} must be callable (got "
                f"{type(func).__name__}: {func!r}); write {task_name}=lambda: ..."
            )
        stubs[(dag, task_name)] = _respec(registry, spec, func)
        originals[(dag, task_name)] = spec
    if not stubs:
        yield {}
        return
    _swap(registry, stubs)
    try:
        yield {name: spec for (_, name), spec in stubs.items()}
    finally:
        _swap(registry, originals)


def _respec(registry: TaskRegistry, spec: TaskSpec, func: Callable[..., Any]) -> TaskSpec:
    """A spec for ``func`` with every option of ``spec`` (checked like a new registration)."""
    return registry.build_spec(
        func,
        name=spec.name,
        dag=spec.dag if spec.scoped else None,
        deps=list(spec.deps),
        **spec.options(),
    )


def _swap(registry: TaskRegistry, replacements: Mapping[tuple[str, str], TaskSpec]) -> None:
    for spec in replacements.values():
        registry.replace(spec)
