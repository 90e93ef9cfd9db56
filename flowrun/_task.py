"""Tasks: ``TaskSpec``, the ``TaskRegistry``, the ``@task`` decorators and task templates.

Registration does all the work that never changes between runs: option checks, the
resolution of callable dependencies to names, and the call plan (``_call_plan``). A run only
follows the plan.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, Unpack, overload

from ._cache import CacheKeyError, task_fingerprint
from ._call_plan import NO_PARAMS, CallPlan, async_kind, make_call_plan
from ._context import ContextSource, check_context_source, describe_source
from ._options import (
    OPTION_NAMES,
    TaskOptions,
    TaskOptionsDict,
    check_option_names,
    closest_option,
)
from .errors import DuplicateTaskError, TaskDefinitionError, suggest

__all__ = [
    "DEFAULT_DAG",
    "TaskRegistry",
    "TaskSpec",
    "TaskTemplate",
    "task",
    "task_template",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DAG = "default"
"""The DAG of tasks registered without ``dag=`` (the implicit, legacy DAG)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec(TaskOptions):
    """A registered task: its options (``TaskOptions``' fields) and what registration found.
    ``deps`` are names; ``dag`` is ``DEFAULT_DAG`` for unscoped tasks."""

    name: str
    dag: str
    func: Callable[..., Any]
    deps: tuple[str, ...] = ()
    is_async: bool = False
    plan: CallPlan = NO_PARAMS
    scoped: bool = True
    map_param: str | None = None  # a mapped task: the parameter that receives each item...
    map_source: str | None = None  # ...of this parent's result (one of ``deps``)
    cache_fingerprint: str = ""  # cache=True: its code, version and template arguments
    extras: bool = False  # a trigger rule, a pool, a map or a cache: a run looks closer


def _where(name: str, dag: str | None) -> str:
    return f"task {name!r} in DAG {dag or DEFAULT_DAG!r}"


def _default_name(func: Callable[..., Any]) -> str:
    target: Any = func
    while isinstance(target, functools.partial):
        target = target.func
    name = getattr(target, "__name__", None)
    if not isinstance(name, str):
        name = type(target).__name__
    return name


_active_registry: contextvars.ContextVar[TaskRegistry | None] = contextvars.ContextVar(
    "flowrun_active_registry", default=None
)


class TaskRegistry:
    """Holds task specs per DAG. Engines own one (``engine.registry``); the global ``@task``
    writes to the one passed as ``registry=`` or to the one made current by ``activate()``."""

    def __init__(self) -> None:
        self._dags: dict[str, dict[str, TaskSpec]] = {}
        self._by_func: dict[int, tuple[Any, list[TaskSpec]]] = {}
        self._version = 0
        self._running: dict[str, int] = {}  # DAG -> runs of it in progress
        self._contexts: dict[str, ContextSource] = {}

    # -- reading -----------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Grows on every change, so derived DAGs know when to rebuild."""
        return self._version

    def dag_names(self) -> list[str]:
        return list(self._dags)

    def tasks_of(self, dag: str) -> Mapping[str, TaskSpec]:
        """The specs of one DAG in registration order (empty if the DAG is unknown)."""
        return self._dags.get(dag, {})

    def all_dags(self) -> Mapping[str, Mapping[str, TaskSpec]]:
        return self._dags

    def only_implicit_dag(self) -> bool:
        """True when every task was registered without ``dag=`` (the legacy single DAG)."""
        return list(self._dags) == [DEFAULT_DAG] and not any(
            s.scoped for s in self._dags[DEFAULT_DAG].values()
        )

    def default_context(self, dag: str) -> ContextSource | None:
        """What makes a run's context when none is passed (``engine.dag(name, context=...)``)."""
        return self._contexts.get(dag)

    def set_default_context(self, dag: str, source: ContextSource) -> None:
        """Declare the default context of DAG ``dag``; every task of the DAG shares it."""
        what = f"the default context of DAG {dag!r}"
        check_context_source(source, what)
        declared = self._contexts.get(dag)
        if declared is not None and declared is not source:
            raise ValueError(
                f"DAG {dag!r} already has a default context ({describe_source(declared)}); "
                f"it cannot also be {describe_source(source)}. Declare it once, with "
                "engine.dag(name, context=...), and pass context= to a run to use another"
            )
        self._contexts[dag] = source

    def __contains__(self, key: object) -> bool:
        """``(dag, name) in registry``."""
        if isinstance(key, tuple) and len(key) == 2:
            dag, name = key
            return name in self._dags.get(dag, {})
        return False

    def __len__(self) -> int:
        return sum(len(tasks) for tasks in self._dags.values())

    def __repr__(self) -> str:
        return f"TaskRegistry(dags={self.dag_names()!r}, tasks={len(self)})"

    # -- activation --------------------------------------------------------------------------
    def activate(self) -> contextvars.Token[TaskRegistry | None]:
        """Make this registry the target of the global ``@task``; keep the token to undo it."""
        return _active_registry.set(self)

    @staticmethod
    def deactivate(token: contextvars.Token[TaskRegistry | None]) -> None:
        """Undo ``activate()``: the previously active registry (if any) becomes current again."""
        _active_registry.reset(token)

    @staticmethod
    def current() -> TaskRegistry | None:
        """The registry made current by ``activate()``, if any."""
        return _active_registry.get()

    # -- writing -----------------------------------------------------------------------------
    def resolve_dep(self, dep: object, dag: str, owner: str) -> str:
        """A dependency given as a name or as a decorated callable, as a task name."""
        if isinstance(dep, str):
            if not dep:
                raise TaskDefinitionError(f"{_where(owner, dag)} has an empty dependency name")
            return dep
        if not callable(dep):
            raise TaskDefinitionError(
                f"{_where(owner, dag)}: a dependency must be a task name or a decorated task "
                f"function (got {type(dep).__name__}: {dep!r})"
            )
        entry = self._by_func.get(id(dep))
        specs = entry[1] if entry is not None and entry[0] is dep else []
        if not specs:
            return _default_name(dep)  # unregistered: validation reports it as missing
        same_dag = [s for s in specs if s.dag == dag]
        chosen = same_dag or specs
        if len(chosen) > 1:
            names = ", ".join(repr(s.name) for s in chosen)
            raise TaskDefinitionError(
                f"{_where(owner, dag)}: dependency {_default_name(dep)!r} is ambiguous, the "
                f"function is registered as {names}; name the dependency instead"
            )
        return chosen[0].name

    def register(self, spec: TaskSpec, *, source: Callable[..., Any] | None = None) -> None:
        """Add a spec; a second task of the same name in one DAG is an error.

        ``source`` is the function a template bound, so it can name the task as a dependency.
        """
        self._refuse_while_running(spec.dag, spec.name, "register")
        tasks = self._dags.setdefault(spec.dag, {})
        if spec.name in tasks:
            raise DuplicateTaskError(
                spec.dag, spec.name, _qualname(tasks[spec.name].func), _qualname(spec.func)
            )
        tasks[spec.name] = spec
        for func in (spec.func, source) if source is not None else (spec.func,):
            entry = self._by_func.get(id(func))
            if entry is None or entry[0] is not func:
                entry = (func, [])
                self._by_func[id(func)] = entry
            entry[1].append(spec)
        self._version += 1

    def replace(self, spec: TaskSpec) -> TaskSpec:
        """Put ``spec`` in place of the task of the same DAG and name (overrides); returns the
        spec it replaced. The task keeps its position, so the DAG's order does not change."""
        self._refuse_while_running(spec.dag, spec.name, "replace")
        tasks = self._dags.get(spec.dag, {})
        old = tasks.get(spec.name)
        if old is None:
            raise KeyError(f"DAG {spec.dag!r} has no task {spec.name!r}")
        tasks[spec.name] = spec
        for entry in self._by_func.values():
            entry[1][:] = [spec if s is old else s for s in entry[1]]
        self._version += 1
        return old

    def unregister(self, dag: str, name: str) -> TaskSpec:
        """Remove a task (tests and overrides); returns its spec."""
        self._refuse_while_running(dag, name, "remove")
        try:
            spec = self._dags[dag].pop(name)
        except KeyError:
            raise KeyError(f"DAG {dag!r} has no task {name!r}") from None
        if not self._dags[dag]:
            del self._dags[dag]
        for entry in self._by_func.values():
            if spec in entry[1]:
                entry[1].remove(spec)
        self._version += 1
        return spec

    @contextlib.contextmanager
    def run_in_progress(self, dag: str) -> Iterator[None]:
        """While a run of ``dag`` goes on, its tasks cannot change (the engine enters this)."""
        self._running[dag] = self._running.get(dag, 0) + 1
        try:
            yield
        finally:
            left = self._running[dag] - 1
            if left:
                self._running[dag] = left
            else:
                del self._running[dag]

    def _refuse_while_running(self, dag: str, name: str, what: str) -> None:
        if self._running.get(dag):
            raise TaskDefinitionError(
                f"cannot {what} task {name!r} in DAG {dag!r} while a run of DAG {dag!r} is in "
                "progress: that run would not see the change and the next one would; declare "
                "every task before running the DAG (at import time, or before run_once)",
                dag=dag,
                task=name,
            )

    def build_spec(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        dag: str | None = None,
        **options: Unpack[TaskOptionsDict],
    ) -> TaskSpec:
        """Check every option and compute the call plan; does not register."""
        if not callable(func):
            raise TaskDefinitionError(f"a task must be callable (got {type(func).__name__})")
        task_name = _default_name(func) if name is None else name
        if not isinstance(task_name, str) or not task_name:
            raise TaskDefinitionError(f"a task name must be a non-empty string (got {task_name!r})")
        if dag is not None and (not isinstance(dag, str) or not dag):
            raise TaskDefinitionError(
                f"'dag' must be a non-empty string or None (got {dag!r}) for task {task_name!r}",
                task=task_name,
                option="dag",
                got=dag,
            )
        dag_name = DEFAULT_DAG if dag is None else dag
        try:
            return self._checked_spec(func, task_name, dag, options)
        except TaskDefinitionError as error:  # every check below names the task it is about
            if error.task is None:
                error.dag, error.task = dag_name, task_name
            raise

    def _checked_spec(
        self, func: Callable[..., Any], task_name: str, dag: str | None, options: TaskOptionsDict
    ) -> TaskSpec:
        dag_name = DEFAULT_DAG if dag is None else dag
        where = _where(task_name, dag)
        check_option_names(options, where)
        checked = TaskOptions.checked(where, options)
        is_async, unusable = async_kind(func)
        if unusable:
            raise TaskDefinitionError(f"{where} {unusable}")
        deps = options.get("deps") or ()
        if isinstance(deps, (str, bytes)) or not isinstance(deps, Iterable):
            raise TaskDefinitionError(
                f"'deps' must be a list of task names or task functions (got {deps!r}) for "
                f"{where}; write deps=[{deps!r}]",
                option="deps",
                got=deps,
            )
        names = list(dict.fromkeys(self.resolve_dep(d, dag_name, task_name) for d in deps))
        map_param = map_source = None
        if checked.map is not None:
            ((map_param, given_source),) = checked.map.items()
            map_source = self.resolve_dep(given_source, dag_name, task_name)
            if map_source == task_name:
                raise TaskDefinitionError(
                    f"{where} maps over its own result (map={{{map_param!r}: {map_source!r}}}); "
                    "map over an upstream task",
                    option="map",
                    got=checked.map,
                )
            if map_source not in names:
                names.append(map_source)  # the mapped source is a dependency
        plan = make_call_plan(func, where, names, self.tasks_of(dag_name), map_param)
        fingerprint = ""
        if checked.cache:
            identity = types.SimpleNamespace(
                name=task_name, dag=dag_name, func=func, cache_version=checked.cache_version
            )
            try:
                fingerprint = task_fingerprint(identity)
            except CacheKeyError as error:
                raise TaskDefinitionError(
                    f"{error}. cache=True keys the cache on the task's template arguments: "
                    "bind ones that pickle, or drop the cache",
                    option="cache",
                    got=True,
                ) from None
        return TaskSpec(
            name=task_name,
            dag=dag_name,
            func=func,
            deps=tuple(names),
            is_async=is_async,
            plan=plan,
            scoped=dag is not None,
            map_param=map_param,
            map_source=map_source,
            cache_fingerprint=fingerprint,
            extras=bool(
                checked.trigger != "all_success" or checked.pool or map_param or checked.cache
            ),
            **checked.options(),
        )

    @overload
    def task(self, func: F, /) -> F: ...

    @overload
    def task(
        self,
        name: str | None = None,
        *,
        dag: str | None = None,
        **options: Unpack[TaskOptionsDict],
    ) -> Callable[[F], F]: ...

    def task(self, name: Any = None, **options: Any) -> Any:
        """Register a task: ``@registry.task``, ``@registry.task(...)``, ``@registry.task("n")``.

        Returns the original function unchanged, so it stays callable and picklable.
        """
        return _decorate(lambda: self, name, options)

    def task_template(
        self,
        func: Callable[..., Any],
        *,
        dag: str | None = None,
        **options: Unpack[TaskOptionsDict],
    ) -> TaskTemplate:
        """A function to register several times with different bound arguments."""
        return TaskTemplate(self, func, dag, options)


def _qualname(func: Callable[..., Any]) -> str:
    target: Any = func
    while isinstance(target, functools.partial):
        target = target.func
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', _default_name(target))}"


def _decorate(get_registry: Callable[[], TaskRegistry], name: Any, options: dict[str, Any]) -> Any:
    """Shared by every ``task`` decorator: ``name`` is the function itself for a bare ``@task``."""
    if callable(name) and not isinstance(name, str):
        registry = get_registry()
        registry.register(registry.build_spec(name, **options))
        return name
    if name is not None and not isinstance(name, str):
        raise TaskDefinitionError(
            f"@task takes a function or a task name, got {type(name).__name__}: {name!r}"
        )

    def decorator(func: F) -> F:
        registry = get_registry()
        registry.register(registry.build_spec(func, name=name, **options))
        return func

    return decorator


def _global_registry(explicit: TaskRegistry | None) -> Callable[[], TaskRegistry]:
    def get() -> TaskRegistry:
        registry = explicit if explicit is not None else _active_registry.get()
        if registry is None:
            raise TaskDefinitionError(
                "the global @task has no registry: pass registry=TaskRegistry() (or an engine's "
                "engine.registry), call registry.activate() first, or use @engine.task"
            )
        return registry

    return get


@overload
def task(func: F, /) -> F: ...


@overload
def task(
    name: str | None = None,
    *,
    registry: TaskRegistry | None = None,
    dag: str | None = None,
    **options: Unpack[TaskOptionsDict],
) -> Callable[[F], F]: ...


def task(name: Any = None, **options: Any) -> Any:
    """The global decorator: ``@task``, ``@task(...)`` and ``@task("name", ...)``.

    Registers into ``registry=`` or into the registry made current by ``activate()``; the
    registry is looked up when the function is decorated.
    """
    registry = options.pop("registry", None)
    if registry is not None and not isinstance(registry, TaskRegistry):
        raise TypeError(f"registry= must be a TaskRegistry, got {type(registry).__name__}")
    return _decorate(_global_registry(registry), name, options)


class TaskTemplate:
    """Registers one function as several tasks, each with its own bound keyword arguments."""

    def __init__(
        self,
        registry: TaskRegistry,
        func: Callable[..., Any],
        dag: str | None,
        options: Mapping[str, Any],
    ) -> None:
        if not callable(func):
            raise TaskDefinitionError(f"task_template needs a callable, got {type(func).__name__}")
        check_option_names(
            options,
            f"task_template({_default_name(func)}) in DAG {dag or DEFAULT_DAG!r}",
            dag=dag or DEFAULT_DAG,
        )
        self._registry = registry
        self.func = func
        self.dag = dag
        self._options = dict(options)

    def bind(self, name: str, /, **kwargs: Any) -> Callable[..., Any]:
        """Register ``func`` with ``kwargs`` bound as task ``name``; returns the bound callable.

        Task options (``deps``, ``retries``, ``timeout_s`` ...) given here override the
        template's; every other keyword is an argument of the function.
        """
        options = dict(self._options)
        call_kwargs: dict[str, Any] = {}
        for key, value in kwargs.items():
            (options if key in OPTION_NAMES else call_kwargs)[key] = value
        self._check_kwargs(name, call_kwargs)
        bound = functools.partial(self.func, **call_kwargs)
        self._registry.register(
            self._registry.build_spec(bound, name=name, dag=self.dag, **options), source=self.func
        )
        return bound

    def _check_kwargs(self, name: str, kwargs: Mapping[str, Any]) -> None:
        try:
            params = inspect.signature(self.func).parameters
        except (TypeError, ValueError):
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        for key in kwargs:
            if key not in params:
                hint = suggest(key, params)
                option = closest_option(key)
                if not hint and option:  # bind() takes task options too: a misspelt one
                    hint = f" Did you mean the task option {option!r}?"
                raise TaskDefinitionError(
                    f"{_where(name, self.dag)}: {_default_name(self.func)}() has no parameter "
                    f"{key!r}.{hint}",
                    dag=self.dag or DEFAULT_DAG,
                    task=name,
                    got=key,
                )

    def __repr__(self) -> str:
        return f"TaskTemplate({_default_name(self.func)}, dag={self.dag!r})"


def task_template(
    func: Callable[..., Any],
    *,
    registry: TaskRegistry | None = None,
    dag: str | None = None,
    **options: Unpack[TaskOptionsDict],
) -> TaskTemplate:
    """Global ``task_template``: registers into ``registry=`` or the active registry."""
    target = _global_registry(registry)()
    return target.task_template(func, dag=dag, **options)
