"""Errors raised by flowrun.

Every definition error is a ``ValueError`` so callers can catch bad input in one place; the
messages name the DAG and the task, say what was wrong and, where possible, the fix.
"""

from __future__ import annotations

import difflib
import traceback
from collections.abc import Iterable, Sequence

__all__ = [
    "ContextFactoryError",
    "CrossDagDependencyError",
    "CycleError",
    "DagValidationError",
    "DuplicateTaskError",
    "MissingDependencyError",
    "Omit",
    "PoolError",
    "ScheduleError",
    "TaskCancelledError",
    "TaskDefinitionError",
    "TaskTimeoutError",
    "UnknownDagError",
    "UnknownOptionError",
    "UnknownRunError",
    "UnknownTaskError",
]


def describe(error: BaseException) -> str:
    """``"ExcType: message"`` (just ``"ExcType"`` without a message): how reports show errors."""
    try:
        message = str(error)
    except Exception as broken:  # its __str__ raised: a report must still say what it was
        try:
            shown = repr(error)
        except Exception:
            shown = f"<{type(error).__name__} object>"
        message = f"{shown} (str() of it raised {type(broken).__name__})"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def describe_failure(error: BaseException) -> tuple[str, str]:
    """``describe(error)`` and the formatted traceback: what a report keeps of a failure."""
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return describe(error), trace


def suggest(name: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or an empty string."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean {matches[0]!r}?" if matches else ""


class DagValidationError(ValueError):
    """A DAG is not well formed: a missing or cross-DAG dependency, a cycle, a duplicate task."""


class TaskDefinitionError(DagValidationError):
    """A task's own declaration is invalid (bad option, unusable signature, generator...).

    ``dag`` and ``task`` name the task (None before its name is known); ``option`` and ``got``
    name a bad option and the value given (None when the problem is not one option). The
    message says what was wrong and where."""

    def __init__(
        self,
        message: str,
        *,
        dag: str | None = None,
        task: str | None = None,
        option: str | None = None,
        got: object = None,
    ) -> None:
        self.dag = dag
        self.task = task
        self.option = option
        self.got = got
        super().__init__(message)


class UnknownOptionError(TaskDefinitionError, TypeError):
    """A keyword that is no task option (``retry=3`` for ``retries=3``): a
    ``TaskDefinitionError`` with ``option`` and ``got`` set, and still the ``TypeError`` an
    unexpected keyword argument has always raised, so ``except TypeError`` keeps catching it."""


class CycleError(DagValidationError):
    """The DAG has a cycle; ``cycle`` holds its path, first node repeated at the end."""

    def __init__(self, dag_name: str, cycle: Sequence[str]) -> None:
        self.dag_name = dag_name
        self.cycle = list(cycle)
        path = " -> ".join(self.cycle)
        super().__init__(f"DAG {dag_name!r} has a cycle: {path}")


class PoolError(DagValidationError):
    """A task names a pool the engine does not have (``pool`` is None when ``available`` is
    fine but the task wants more slots, ``slots``, than the pool has, ``pool_slots``)."""

    def __init__(
        self,
        dag_name: str,
        task_name: str,
        pool: str,
        available: Sequence[str],
        wanted: int = 1,
        slots: int | None = None,
    ) -> None:
        self.dag_name = dag_name
        self.task_name = task_name
        self.pool = pool
        self.available = list(available)
        self.wanted = wanted
        self.slots = slots
        where = f"task {task_name!r} in DAG {dag_name!r}"
        if slots is None:
            listed = ", ".join(repr(p) for p in self.available) or "none"
            message = (
                f"{where} names pool {pool!r}, which the engine does not have (pools: "
                f"{listed}); declare it with engine.pool({pool!r}, slots=N)."
                f"{suggest(pool, available)}"
            )
        else:
            message = (
                f"{where} takes pool_slots={wanted} of pool {pool!r}, which has only "
                f"{slots} slot(s): it could never run; lower pool_slots or raise the pool's slots"
            )
        super().__init__(message)


class UnknownDagError(ValueError):
    """A DAG name that no registered task uses."""

    def __init__(self, dag_name: str, available: Sequence[str]) -> None:
        self.dag_name = dag_name
        self.available = list(available)
        listed = ", ".join(repr(d) for d in self.available) or "none"
        super().__init__(
            f"unknown DAG {dag_name!r}; available DAGs: {listed}.{suggest(dag_name, available)}"
        )


class UnknownTaskError(ValueError):
    """A task name that the DAG does not have; ``what`` names what asked for it, ``fix``
    (optional) ends the message with what to do."""

    def __init__(
        self, dag_name: str, task_name: str, available: Sequence[str], what: str, *, fix: str = ""
    ) -> None:
        self.dag_name = dag_name
        self.task_name = task_name
        hint = suggest(task_name, available)
        super().__init__(
            f"{what}: DAG {dag_name!r} has no task {task_name!r}.{hint}{f' {fix}' if fix else ''}"
        )


class UnknownRunError(ValueError):
    """A run id that the state store does not know."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"unknown run id {run_id!r}: the state store has no such run")


class ContextFactoryError(Exception):
    """The code that makes a run's context (a DAG's default context, ``--context``) raised.

    ``source`` says which factory (e.g. ``"the default context of DAG 'etl' (local_api())"``);
    ``error`` is what it raised, also chained as ``__cause__`` so its traceback is kept."""

    def __init__(self, source: str, error: BaseException) -> None:
        self.source = source
        self.error = error
        super().__init__(f"{source} raised {describe(error)}")


class TaskTimeoutError(TimeoutError):
    """An attempt ran past its ``timeout_s``: the engine's timeout, not one the task raised."""


class TaskCancelledError(Exception):
    """Raised by ``RunContext.raise_if_cancelled()`` once the engine gave up on the attempt."""


class MissingDependencyError(DagValidationError):
    """A task depends on a name that no task of its DAG (or any DAG) has; ``suggestion`` is
    the closest task name of the DAG, if any."""

    def __init__(
        self, dag_name: str, task_name: str, dependency: str, available: Iterable[str]
    ) -> None:
        self.dag_name = dag_name
        self.task_name = task_name
        self.dependency = dependency
        matches = difflib.get_close_matches(dependency, list(available), n=1, cutoff=0.6)
        self.suggestion: str | None = matches[0] if matches else None
        hint = f" Did you mean {self.suggestion!r}?" if self.suggestion else ""
        super().__init__(
            f"task {task_name!r} in DAG {dag_name!r} depends on {dependency!r}, which is not a "
            f"task of that DAG.{hint}"
        )


class CrossDagDependencyError(DagValidationError):
    """A task depends on a task that belongs to another DAG (``other_dag``)."""

    def __init__(self, dag_name: str, task_name: str, dependency: str, other_dag: str) -> None:
        self.dag_name = dag_name
        self.task_name = task_name
        self.dependency = dependency
        self.other_dag = other_dag
        super().__init__(
            f"task {task_name!r} in DAG {dag_name!r} depends on {dependency!r}, which belongs to "
            f"DAG {other_dag!r}; a task can only depend on tasks of its own DAG (register "
            f"{dependency!r} in DAG {dag_name!r} too, or move {task_name!r})"
        )


class DuplicateTaskError(DagValidationError):
    """Two tasks of one DAG share a name; ``first`` and ``second`` name their functions."""

    def __init__(self, dag_name: str, task_name: str, first: str, second: str) -> None:
        self.dag_name = dag_name
        self.task_name = task_name
        self.first = first
        self.second = second
        super().__init__(
            f"duplicate task name {task_name!r} in DAG {dag_name!r}: already registered by "
            f"{first}, now by {second}"
        )


class Omit(Exception):
    """Raised by a task to leave itself and its downstream out of the run on purpose.

    The task gets the final status OMITTED with ``reason`` as its ``error``; it is not retried,
    and it never fails the run. Its ``all_success`` children are OMITTED too; children with
    another trigger rule decide by their rule (and receive ``None`` for its result).
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class ScheduleError(ValueError):
    """A schedule's declaration is invalid, or it cannot be served (its DAG is unknown).

    ``dag`` and ``schedule`` name it; ``option`` and ``got`` name the bad option and the value
    given (None when the problem is not one option)."""

    def __init__(
        self,
        message: str,
        *,
        dag: str | None = None,
        schedule: str | None = None,
        option: str | None = None,
        got: object = None,
    ) -> None:
        self.dag = dag
        self.schedule = schedule
        self.option = option
        self.got = got
        super().__init__(message)
