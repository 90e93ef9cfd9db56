"""Call plans: which parameters of a task function receive the run context, the ``upstream``
dict or a named upstream result. Decided once at registration, so an attempt only follows the
plan."""

from __future__ import annotations

import difflib
import enum
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ._context import RunContext
from .errors import TaskDefinitionError, suggest

__all__ = ["NO_PARAMS", "CallPlan", "Inject", "PlannedParam", "async_kind", "make_call_plan"]


class Inject(enum.Enum):
    """What a task parameter receives."""

    CONTEXT = "context"  # the attempt's RunContext
    UPSTREAM = "upstream"  # {parent name: result} of every parent
    RESULT = "result"  # the result of the parent of the same name
    ITEM = "item"  # a mapped task instance's item of its source's result


# Module globals: reading them costs less than Inject.RESULT, on the per-attempt path.
_RESULT = Inject.RESULT
_CONTEXT = Inject.CONTEXT
_ITEM = Inject.ITEM


class PlannedParam(NamedTuple):
    """One parameter of a call plan (``dep`` is the parent's name for ``Inject.RESULT``)."""

    name: str
    source: Inject
    dep: str
    positional: bool


@dataclass(frozen=True, slots=True)
class CallPlan:
    """How to call a task: the parameters that receive something, in signature order."""

    params: tuple[PlannedParam, ...]
    wants_context: bool
    # The same as plain tuples: unpacking an exact tuple is the interpreter's fast path, a
    # NamedTuple's is not, and build() runs for every attempt.
    _steps: tuple[tuple[str, Inject, str, bool], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_steps", tuple(tuple(p) for p in self.params))

    def build(
        self,
        context: object,
        results: Mapping[str, Any],
        parents: Sequence[str],
        item: object = None,
    ) -> tuple[list[Any], dict[str, Any]]:
        """Arguments for one call; ``results`` holds the finished parents' results, ``item``
        a mapped instance's item."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param, source, dep, positional in self._steps:
            if source is _RESULT:
                value = results[dep]
            elif source is _CONTEXT:
                value = context
            elif source is _ITEM:
                value = item
            else:
                value = {p: results[p] for p in parents}
            if positional:
                args.append(value)
            else:
                kwargs[param] = value
        return args, kwargs


def _unwrap(func: Any) -> Any:
    """The callable a task really calls: partials unwrapped, objects' ``__call__``."""
    while isinstance(func, functools.partial):
        func = func.func
    if not inspect.isroutine(func) and not isinstance(func, type):
        func = getattr(type(func), "__call__", func)  # noqa: B004
    return func


def async_kind(func: Callable[..., Any]) -> tuple[bool, str | None]:
    """(is async, reason it cannot be a task)."""
    target = _unwrap(func)
    if inspect.isasyncgenfunction(target):
        return False, "is an async generator function; a task must return its result"
    if inspect.isgeneratorfunction(target):
        return False, "is a generator function; a task must return its result (use a list)"
    # A decorator made with functools.wraps around an async function returns its coroutine.
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        inspect.unwrap(target)
    ), None


_CONTEXT_TEXT = re.compile(r"(?:[\w.]+\.)?RunContext(?:\[.*\])?")
_OPTIONAL_TEXT = re.compile(r"(?:[\w.]+\.)?Optional\[(.*)\]")


def _is_context_annotation(annotation: Any) -> bool:
    """``RunContext``, ``RunContext[D]``, optionally ``| None`` / ``Optional[...]``."""
    if annotation is inspect.Parameter.empty:
        return False
    if isinstance(annotation, str):
        text = annotation.strip()
        optional = _OPTIONAL_TEXT.fullmatch(text)
        if optional:
            text = optional.group(1).strip()
        parts = [part.strip() for part in text.split("|")]
        found = [p for p in parts if p != "None"]
        return len(found) == 1 and _CONTEXT_TEXT.fullmatch(found[0]) is not None
    if isinstance(annotation, type) and issubclass(annotation, RunContext):
        return True
    origin = typing.get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, RunContext):
        return True
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _is_context_annotation(args[0])
    return False


def _annotations(func: Callable[..., Any]) -> dict[str, Any]:
    target = _unwrap(func)
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable string annotations: fall back to the raw strings
        return dict(getattr(target, "__annotations__", {}) or {})


def make_call_plan(
    func: Callable[..., Any],
    where: str,
    deps: Sequence[str],
    known: Collection[str] = (),
    mapped: str | None = None,
    context_names: Collection[str] = (),
) -> CallPlan:
    """Decide once, at registration, what each parameter of ``func`` receives (``where``:
    ``"task 'x' in DAG 'd'"``; ``known``: the tasks the DAG has so far, to tell a typo in
    ``deps`` from a typo in a parameter; ``mapped``: the parameter that receives a mapped
    instance's item; ``context_names``: parameters that receive the context by name, without
    a ``RunContext`` annotation, as an override's stub may: a lambda cannot be annotated)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise TaskDefinitionError(f"cannot read the signature of {where}: {exc}") from None
    hints = _annotations(func)
    params = signature.parameters
    takes_upstream = "upstream" in params and params["upstream"].kind not in (
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    )
    if mapped is not None:
        found = params.get(mapped)
        if found is None or found.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            raise TaskDefinitionError(
                f"{where}: map={{{mapped!r}: ...}} names no parameter of the function "
                f"(parameters: {', '.join(params) or 'none'}).{suggest(mapped, params)}",
                option="map",
                got=mapped,
            )
    plan: list[PlannedParam] = []
    wants_context = False
    for param in params.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        positional = param.kind is inspect.Parameter.POSITIONAL_ONLY
        annotation = hints.get(param.name, param.annotation)
        if param.name == mapped:
            plan.append(PlannedParam(param.name, Inject.ITEM, "", positional))
        elif _is_context_annotation(annotation):
            plan.append(PlannedParam(param.name, Inject.CONTEXT, "", positional))
            wants_context = True
        elif param.name == "upstream":
            plan.append(PlannedParam(param.name, Inject.UPSTREAM, "", positional))
        elif param.name in deps and not takes_upstream:
            plan.append(PlannedParam(param.name, Inject.RESULT, param.name, positional))
        elif param.name in context_names:
            plan.append(PlannedParam(param.name, Inject.CONTEXT, "", positional))
            wants_context = True
        elif param.default is not inspect.Parameter.empty:
            continue
        else:
            raise TaskDefinitionError(
                _unbound_message(param.name, where, deps, takes_upstream, known)
            )
    if any(p.positional for p in plan):
        # Positional-only parameters must be passed in order, with nothing skipped before them.
        positional_names = [
            p.name for p in params.values() if p.kind is inspect.Parameter.POSITIONAL_ONLY
        ]
        bound = [p.name for p in plan if p.positional]
        if bound != positional_names[: len(bound)]:
            raise TaskDefinitionError(
                f"{where}: positional-only parameters with defaults cannot precede "
                "injected ones; make them regular parameters"
            )
    return CallPlan(tuple(plan), wants_context)


def _unbound_message(
    param: str,
    where: str,
    deps: Sequence[str],
    takes_upstream: bool,
    known: Collection[str],
) -> str:
    base = f"parameter {param!r} of {where} would receive nothing"
    if takes_upstream and param in deps:
        return (
            f"{base}: the task takes 'upstream', which disables named injection; "
            f"read upstream[{param!r}] instead, or give {param!r} a default"
        )
    if param in ("context", "ctx"):
        return f"{base}: annotate it as RunContext (e.g. '{param}: RunContext[Deps]')"
    listed = ", ".join(repr(d) for d in deps) or "none"
    if param in known:  # the parameter names a task: the typo, if any, is in deps
        close = difflib.get_close_matches(param, list(deps), n=1, cutoff=0.6)
        fix = f"replace {close[0]!r} with {param!r}" if close else f"add {param!r}"
        return (
            f"{base}: it names the task {param!r}, which is not among its deps ({listed}); "
            f"{fix} in deps to receive its result"
        )
    hint = suggest(param, deps)
    return (
        f"{base}: it is not a dependency (deps: {listed}), not 'upstream', not annotated "
        f"RunContext, and has no default.{hint}"
    )


NO_PARAMS = CallPlan((), False)
"""The plan of a function that takes nothing (``TaskSpec``'s default)."""
