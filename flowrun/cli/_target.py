"""Loading a TARGET (a file or module) and finding its DAGs; making the run's context."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from .._context import ContextSource, RunContext, check_context_source, open_context
from .._engine import DagScope, Engine
from .._render import trim_traceback
from ..errors import (
    ContextFactoryError,
    UnknownDagError,
    describe,
    suggest,
)
from ._discovery import find_dags


class UsageError(Exception):
    """The command line asks for something that cannot be done as written: exit code 2."""


class CommandFailed(Exception):
    """The pipeline's code or definition failed (not the user's typing): exit code 1."""


@dataclass
class Target:
    """An imported TARGET and the DAGs of its module-level engines and DAG scopes."""

    spec: str
    module: ModuleType
    dags: dict[str, list[tuple[str, Engine]]]  # DAG name -> (attribute, engine) that define it

    def resolve(self, dag: str | None, command: str) -> tuple[Engine, str]:
        """The engine and DAG a command names (``dag`` may be omitted if there is one)."""
        if not self.dags:
            raise UsageError(
                f"{self.spec!r} defines no DAG: it has no module-level Engine or DagScope "
                "with tasks"
            )
        if dag is None:
            if len(self.dags) > 1:
                names = ", ".join(repr(name) for name in self.dags)
                first = next(iter(self.dags))
                raise UsageError(
                    f"{self.spec!r} defines {len(self.dags)} DAGs ({names}); name the one to "
                    f"use, e.g. flowrun {command} {self.spec} {first}"
                )
            dag = next(iter(self.dags))
        found = self.dags.get(dag)
        if found is None:
            raise UnknownDagError(dag, list(self.dags))
        if len(found) > 1:
            options = ", ".join(f"{self.spec}:{attr}" for attr, _ in found)
            raise UsageError(
                f"DAG {dag!r} is defined by {len(found)} engines in {self.spec!r}; pick one "
                f"with TARGET module:attribute ({options})"
            )
        return found[0][1], dag


def _split_target(spec: str) -> tuple[str, str | None]:
    """``"path/or.module:attr"`` -> (``"path/or.module"``, ``"attr"``); a drive letter stays."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail.isidentifier():
        return head, tail
    return spec, None


def _looks_like_path(text: str) -> bool:
    return text.endswith(".py") or "/" in text or os.sep in text or Path(text).is_file()


def _import_file(text: str, spec: str) -> ModuleType:
    path = Path(text)
    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob("*.py")) if path.parent.is_dir() else []
        where = "" if path.parent.is_dir() else f" (directory {str(path.parent)!r} not found)"
        raise UsageError(
            f"TARGET {spec!r}: no such file {text!r}{where}.{suggest(path.name, near)}"
        )
    path = path.resolve()
    # A file inside a package is imported as part of it, so its relative imports work.
    parts = [] if path.stem == "__init__" else [path.stem]
    root = path.parent
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    name = ".".join(parts)
    if len(parts) > 1 or (name and name not in sys.modules):
        module = importlib.import_module(name)
        loaded = getattr(module, "__file__", None)
        if loaded is None or Path(loaded).resolve() != path:
            raise UsageError(
                f"TARGET {spec!r}: importing it as {name!r} found {loaded!r} instead; another "
                "module of that name comes first on sys.path (rename the file)"
            )
        return module
    # A top-level file whose name is taken (e.g. json.py): load it under a private name.
    private = f"flowrun_target_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}"
    file_spec = importlib.util.spec_from_file_location(private, path)
    if file_spec is None or file_spec.loader is None:  # pragma: no cover - a .py file loads
        raise UsageError(f"TARGET {spec!r}: {text!r} cannot be loaded as Python")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[private] = module
    file_spec.loader.exec_module(module)
    return module


def _import_module(text: str, spec: str) -> ModuleType:
    if not all(part.isidentifier() for part in text.split(".")):
        raise UsageError(
            f"TARGET {spec!r} is neither a Python file (no such file) nor a module name"
        )
    if os.getcwd() not in sys.path:  # `python -m` adds it; the console script does not
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(text)


def _import_error(spec: str, exc: BaseException) -> UsageError:
    if isinstance(exc, UsageError):
        return exc
    if isinstance(exc, ModuleNotFoundError) and exc.name and spec.startswith(exc.name):
        hint = ""
        as_file = Path(*spec.split(":", maxsplit=1)[0].split(".")).with_suffix(".py")
        if as_file.is_file():
            hint = f"; did you mean the file {str(as_file)!r}?"
        return UsageError(f"cannot import TARGET {spec!r}: no module named {exc.name!r}{hint}")
    trace = trim_traceback("".join(traceback.format_exception(exc))).rstrip()
    return UsageError(
        f"cannot import TARGET {spec!r}: {type(exc).__name__} while importing it\n{trace}"
    )


def load_module(spec: str, text: str) -> ModuleType:
    """Import the file or module ``text`` (part of the TARGET ``spec``)."""
    try:
        if _looks_like_path(text):
            return _import_file(text, spec)
        return _import_module(text, spec)
    except (Exception, SystemExit) as exc:
        raise _import_error(spec, exc) from None


def load_target(spec: str) -> Target:
    """Import a TARGET (file path, module, or either with ``:attribute``) and find its DAGs."""
    text, attr = _split_target(spec)
    module = load_module(spec, text)
    if attr is not None:
        if not hasattr(module, attr):
            holders = [n for n, v in vars(module).items() if isinstance(v, (Engine, DagScope))]
            listed = ", ".join(holders) or "none"
            raise UsageError(
                f"TARGET {spec!r}: module {module.__name__!r} has no attribute {attr!r} "
                f"(engines and DAG scopes: {listed}).{suggest(attr, holders)}"
            )
        value = getattr(module, attr)
        if not isinstance(value, (Engine, DagScope)):
            raise UsageError(
                f"TARGET {spec!r}: {attr!r} is a {type(value).__name__}, not an Engine or a "
                "DagScope (engine.dag(...))"
            )
        namespace: dict[str, Any] = {attr: value}
    else:
        namespace = vars(module)
    dags: dict[str, list[tuple[str, Engine]]] = {}
    for found in find_dags(namespace):
        dags.setdefault(found.dag, []).append((found.attribute, found.engine))
    return Target(spec, module, dags)


async def enter_context(
    name: str | None, target: Target, stack: contextlib.AsyncExitStack
) -> RunContext[Any] | None:
    """``--context NAME``: a module attribute (or ``module:attribute``) that is a RunContext, or
    a zero-argument callable returning one, an awaitable of one, or a (async) context manager
    that yields one: entered before the run and exited after it."""
    if name is None:
        return None
    what = f"--context {name}"
    if ":" in name:
        text, attr = name.rsplit(":", 1)
        module = load_module(name, text)
    else:
        module, attr = target.module, name
    if not hasattr(module, attr):
        public = [n for n in vars(module) if not n.startswith("_")]
        raise UsageError(
            f"{what}: module {module.__name__!r} has no attribute {attr!r}.{suggest(attr, public)}"
        )
    value = getattr(module, attr)
    try:
        check_context_source(value, what)
    except TypeError as exc:
        raise UsageError(str(exc)) from None
    return await _open_context(value, stack, what, wrong_kind=UsageError)


async def enter_default_context(
    engine: Engine, dag: str, stack: contextlib.AsyncExitStack
) -> RunContext[Any] | None:
    """The DAG's default context (``engine.dag(name, context=...)``), if it declares one."""
    source = engine.registry.default_context(dag)
    if source is None:
        return None
    return await _open_context(
        source, stack, f"the default context of DAG {dag!r}", wrong_kind=CommandFailed
    )


async def _open_context(
    source: ContextSource,
    stack: contextlib.AsyncExitStack,
    what: str,
    wrong_kind: type[Exception],
) -> RunContext[Any]:
    # A context manager is entered on a stack of its own, left through ``_leave`` when
    # ``stack`` closes (after the run): what its exit raises is reported like its entry.
    own = contextlib.AsyncExitStack()
    try:
        context = await open_context(source, own, what)
    except ContextFactoryError as exc:
        raise CommandFailed(f"{exc}\n{_user_trace(exc.error)}") from None
    except TypeError as exc:  # it gave something that is not a RunContext
        await own.aclose()
        raise wrong_kind(str(exc)) from None
    stack.push_async_exit(_leave(own, what))
    return context


def _leave(
    own: contextlib.AsyncExitStack, what: str
) -> Callable[
    [type[BaseException] | None, BaseException | None, TracebackType | None], Awaitable[bool]
]:
    async def leave(
        kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> bool:
        try:
            return bool(await own.__aexit__(kind, error, trace))
        except Exception as exc:
            raise CommandFailed(
                f"{what}: leaving its context after the run raised {describe(exc)}\n"
                f"{_user_trace(exc)}"
            ) from None

    return leave


def _user_trace(error: BaseException) -> str:
    """``error``'s traceback trimmed to the user's code, as a failed task's: flowrun's frames
    (open_context) and contextlib's (a context manager's ``__enter__``/``__exit__``) only say
    how the factory was called."""
    trace = "".join(traceback.format_exception(error))
    return trim_traceback(trace, also=(contextlib.__file__,)).rstrip()
