"""Task overrides: swap task functions for a while, keeping every option and dependency.

``override_tasks(engine, "etl", extract=lambda: [...])`` checks every stub when it is called
and returns a context manager; inside it the DAG runs the stubs, on exit (even on error) the
original tasks are back, in their original registration order.

A stub receives what the task it replaces could receive, by parameter name: the result of
each dependency, ``upstream``, the run context (a parameter annotated ``RunContext``, or
named ``context``, ``ctx`` or like the task's own context parameter: a lambda cannot be
annotated), a mapped task's item, and the task's template arguments (the keywords bound by
``task_template(...).bind(name, page=3)``, which the stub takes only if it names them). A
parameter nothing supplies is one ``TaskDefinitionError`` naming the DAG, the task, the stub
and the parameter, raised by ``override_tasks`` itself.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Protocol

from ._cache import CacheKeyError, task_fingerprint
from ._call_plan import Inject, async_kind, make_call_plan
from ._task import TaskRegistry, TaskSpec
from .errors import (
    DagValidationError,
    TaskDefinitionError,
    UnknownDagError,
    UnknownTaskError,
    suggest,
)

__all__ = ["hide_usage_error", "override_tasks"]

CONTEXT_NAMES = ("context", "ctx")
"""Parameter names of a stub that receive the run context without a ``RunContext`` annotation."""


def hide_usage_error(excinfo: Any) -> bool:
    """pytest's ``__tracebackhide__``: a mistake in a helper's arguments (an unknown task, a
    stub that cannot be called like the task) is shown at the test's line, without the
    helper's frames; any other exception keeps every frame."""
    return isinstance(
        getattr(excinfo, "value", None), (DagValidationError, UnknownDagError, UnknownTaskError)
    )


class _Registers(Protocol):
    """What overriding needs of an ``Engine`` (so this module does not import the engine's)."""

    @property
    def registry(self) -> TaskRegistry: ...

    def resolve_dag_name(self, dag_name: str) -> str: ...


def override_tasks(
    engine: _Registers, dag_name: str, /, **funcs: Callable[..., Any]
) -> AbstractContextManager[Mapping[str, TaskSpec]]:
    """Replace the functions of tasks of ``dag_name`` for the duration of the ``with`` block.

    Each keyword names a task; its value is the stub called instead, with the original's deps,
    timeout, retries and other options, and the same injection (see the module's docstring).
    The ``with`` block gets the stub specs by task name. Every stub is checked here, before
    anything changes: an unknown task name raises ``UnknownTaskError`` (with the closest
    name), a stub that is not callable ``TypeError``, a stub that cannot be a task or asks for
    a parameter the task cannot supply ``TaskDefinitionError``.
    """
    __tracebackhide__ = hide_usage_error
    registry = engine.registry
    dag = engine.resolve_dag_name(dag_name)
    tasks = registry.tasks_of(dag)
    stubs: dict[str, TaskSpec] = {}
    originals: dict[str, TaskSpec] = {}
    for task_name, func in funcs.items():
        spec = tasks.get(task_name)
        if spec is None:
            raise UnknownTaskError(dag, task_name, list(tasks), "override_tasks")
        if not callable(func):
            raise TypeError(
                f"the override of task {task_name!r} in DAG {dag!r} must be callable (got "
                f"{type(func).__name__}: {func!r}); write {task_name}=lambda: ..."
            )
        stubs[task_name] = stub_spec(registry, spec, func)
        originals[task_name] = spec
    return _Overrides(registry, stubs, originals)


class _Overrides(AbstractContextManager[Mapping[str, TaskSpec]]):
    """The ``with`` block of ``override_tasks``: stubs in on enter, originals back on exit."""

    def __init__(
        self,
        registry: TaskRegistry,
        stubs: Mapping[str, TaskSpec],
        originals: Mapping[str, TaskSpec],
    ) -> None:
        self._registry = registry
        self._stubs = stubs
        self._originals = originals

    def __enter__(self) -> Mapping[str, TaskSpec]:
        _swap(self._registry, self._stubs)
        return dict(self._stubs)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _swap(self._registry, self._originals)


def _swap(registry: TaskRegistry, replacements: Mapping[str, TaskSpec]) -> None:
    for spec in replacements.values():
        registry.replace(spec)


def template_args(func: Callable[..., Any]) -> dict[str, Any]:
    """The keyword arguments ``functools.partial`` layers bind (a template's ``bind``)."""
    keywords: dict[str, Any] = {}
    while isinstance(func, functools.partial):  # the outer layer's keywords win
        keywords = {**func.keywords, **keywords}
        func = func.func
    return keywords


def _stub_label(func: Callable[..., Any]) -> str:
    target: Any = func
    while isinstance(target, functools.partial):
        target = target.func
    name = getattr(target, "__qualname__", None)
    if not isinstance(name, str):
        return f"{type(target).__name__}()"
    name = name.rpartition("<locals>.")[2]  # a stub defined in a test function
    return name if name.endswith("<lambda>") else f"{name}()"


def stub_spec(registry: TaskRegistry, spec: TaskSpec, func: Callable[..., Any]) -> TaskSpec:
    """The spec of ``spec``'s task running ``func``: every option and dependency kept, the
    call plan made for ``func`` with the injection the task allows (module docstring)."""
    __tracebackhide__ = hide_usage_error
    where = f"the stub {_stub_label(func)} for task {spec.name!r} in DAG {spec.dag!r}"
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError) as exc:
        raise _error(spec, f"cannot read the signature of {where}: {exc}") from None
    bound = template_args(spec.func)
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    takes_upstream = "upstream" in params and params["upstream"].kind not in (
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    )
    context_names = {*CONTEXT_NAMES}
    context_names.update(p.name for p in spec.plan.params if p.source is Inject.CONTEXT)
    passed: dict[str, Any] = {}
    for param in params.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if param.name in bound and param.name != spec.map_param:
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise _error(
                    spec,
                    f"parameter {param.name!r} of {where} is positional-only, and the "
                    "template argument it names is passed by keyword: make it a regular "
                    "parameter",
                )
            passed[param.name] = bound[param.name]
            continue
        if (
            param.default is not inspect.Parameter.empty
            or param.name in (spec.map_param, "upstream")
            or param.name in context_names
            or (param.name in spec.deps and not takes_upstream)
        ):
            continue
        raise _error(spec, _unsupplied(param.name, where, spec, bound, takes_upstream))
    if spec.map_param is not None and (
        spec.map_param not in params
        or params[spec.map_param].kind
        in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ):
        raise _error(
            spec,
            f"{where} lacks the parameter {spec.map_param!r}: the task is mapped over "
            f"{spec.map_source!r} (map={{{spec.map_param!r}: {spec.map_source!r}}}) and each "
            f"instance receives its item as {spec.map_param!r}; add it to the stub",
        )
    if var_keyword:  # **kwargs: every template argument, as the task's function got them
        passed = {**bound, **passed}
    target: Callable[..., Any] = functools.partial(func, **passed) if passed else func
    is_async, unusable = async_kind(target)
    if unusable:
        raise _error(spec, f"{where} {unusable}")
    try:
        plan = make_call_plan(
            target,
            where,
            spec.deps,
            registry.tasks_of(spec.dag),
            spec.map_param,
            context_names=context_names,
        )
    except TaskDefinitionError as error:
        raise _error(spec, str(error)) from None
    fingerprint = ""
    if spec.cache:
        identity = types.SimpleNamespace(
            name=spec.name, dag=spec.dag, func=target, cache_version=spec.cache_version
        )
        try:
            fingerprint = task_fingerprint(identity)
        except CacheKeyError as error:
            raise _error(spec, f"{where}: {error}") from None
    return dataclasses.replace(
        spec, func=target, is_async=is_async, plan=plan, cache_fingerprint=fingerprint
    )


def _error(spec: TaskSpec, message: str) -> TaskDefinitionError:
    return TaskDefinitionError(f"override_tasks: {message}", dag=spec.dag, task=spec.name)


def _unsupplied(
    param: str, where: str, spec: TaskSpec, bound: Mapping[str, Any], takes_upstream: bool
) -> str:
    """The message for a stub parameter that nothing supplies, with what it could take."""
    base = f"parameter {param!r} of {where} would receive nothing"
    if takes_upstream and param in spec.deps:
        return (
            f"{base}: the stub takes 'upstream', which disables named injection; read "
            f"upstream[{param!r}] instead, or give {param!r} a default"
        )
    offers: dict[str, str] = {}
    if not takes_upstream:
        offers.update((dep, f"the result of task {dep!r}") for dep in spec.deps)
    offers.update((name, "template argument") for name in bound)
    if spec.map_param is not None:
        offers[spec.map_param] = f"each item of {spec.map_source!r}"
    context_params = [p.name for p in spec.plan.params if p.source is Inject.CONTEXT]
    for name in (*context_params, *CONTEXT_NAMES):
        offers.setdefault(name, "the run context")
    offers.setdefault("upstream", "every parent's result by name")
    by_what: dict[str, list[str]] = {}
    for name, what in offers.items():
        by_what.setdefault(what, []).append(repr(name))
    listed = ", ".join(f"{' or '.join(names)} ({what})" for what, names in by_what.items())
    return (
        f"{base}: the task cannot supply it.{suggest(param, offers)} The stub can take: "
        f"{listed}. Rename the parameter or give it a default"
    )
