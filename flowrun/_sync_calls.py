"""Sync calls sent to an executor that pickles them (a process pool, Dask): ``SyncCall``.

A ``SyncCall`` is pickled with what its executor itself uses: the standard pickle for a
``ProcessPoolExecutor`` (functions travel by reference: module level only), cloudpickle for any
other executor when it is installed (as Dask does: closures, lambdas and notebook functions
travel by value). cloudpickle is imported lazily, so the core stays stdlib-only.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import io
import pickle
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, cast

from .errors import describe

__all__ = ["SyncCall", "call_pickler", "call_sync_task"]


_CALL_PICKLERS: weakref.WeakKeyDictionary[type[Executor], str] = weakref.WeakKeyDictionary()


def call_pickler(executor: Executor) -> str:
    """The pickler of the calls sent to ``executor``, decided once per executor type.

    A ``ProcessPoolExecutor`` pickles results with the standard pickle, so its calls use it
    too: the same rules both ways. Any other executor gets cloudpickle when it is installed,
    as Dask (which installs it) does itself; else the standard pickle.
    """
    kind = type(executor)
    pickler = _CALL_PICKLERS.get(kind)
    if pickler is None:
        pickler = "pickle"
        if not issubclass(kind, ProcessPoolExecutor):
            try:
                _pickler_class("cloudpickle")
                pickler = "cloudpickle"
            except ImportError:
                pass
        _CALL_PICKLERS[kind] = pickler
    return pickler


@functools.cache
def _pickler_class(name: str) -> type[pickle.Pickler]:
    """The ``Pickler`` of ``"pickle"`` or ``"cloudpickle"``, imported at first use (cloudpickle
    is not a dependency of the core, and has no type stubs)."""
    if name == "pickle":
        return pickle.Pickler
    return cast("type[pickle.Pickler]", importlib.import_module(name).Pickler)


def _dumps(pickler: str, obj: object) -> bytes:
    buffer = io.BytesIO()
    _pickler_class(pickler)(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


class SyncCall:
    """One sync attempt as submitted to an executor that is not a ``ThreadPoolExecutor``
    (a process pool, Dask): a picklable callable taking no arguments.

    ``key`` is ``"{run_id}/{task}/{attempt}"``, for executors that label their work (the Dask
    executor of ``flowrun.executors`` passes it as the Dask key); ``name`` is the task name;
    ``pickler`` (``"pickle"`` or ``"cloudpickle"``) is what pickles the function and arguments:
    the engine picks it per executor type (see the module docstring).

    Pickling a ``SyncCall`` pickles the function and its arguments into one payload up front:
    when they cannot be pickled, what travels instead is a call that fails with a
    ``pickle.PicklingError`` naming the task, so the executor's machinery never sees the error.
    In the worker, the payload is unpickled when the call runs (a function the worker cannot
    import fails the task, not the worker process), and the result, or the exception the task
    raised, is checked to pickle, with the payload's pickler, before it is handed back to the
    executor.
    """

    __slots__ = ("args", "func", "key", "kwargs", "name", "pickler")

    def __init__(
        self,
        key: str,
        name: str,
        func: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        pickler: str = "pickle",
    ) -> None:
        self.key = key
        self.name = name
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.pickler = pickler

    def __call__(self) -> Any:  # run by an executor that does not pickle it
        return call_sync_task(self.name, self.func, self.args, self.kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        try:
            payload = _dumps(self.pickler, (self.func, self.args, self.kwargs))
        except Exception as exc:
            if self.pickler == "pickle":
                advice = (
                    "the standard pickle (used for a process pool, and for any executor when "
                    "cloudpickle is not installed) sends functions by reference: a task's "
                    "function must be defined at module level of a module the workers can "
                    "import (not a closure or a lambda)"
                )
            else:
                advice = (
                    "cloudpickle sends closures, lambdas and notebook functions by value, but "
                    "what they refer to must pickle too (not e.g. a lock, an open file or a "
                    "connection: create those inside the task)"
                )
            message = (
                f"task {self.name!r} could not be pickled to send it to the executor: "
                f"{describe(exc)}; {advice}; its arguments (upstream results, context deps) "
                "must be picklable"
            )
            return (_FailedCall, (self.key, message))
        return (_ReceivedCall, (self.key, self.name, payload, self.pickler))

    def __repr__(self) -> str:
        return f"SyncCall({self.key!r})"


class _ReceivedCall:
    """A ``SyncCall`` unpickled in a worker: its payload is unpickled when it runs, and what
    goes back is checked with the payload's ``pickler``: the executor then sends it back with
    the same (Dask cloudpickles what the standard pickle refuses)."""

    __slots__ = ("key", "name", "payload", "pickler")

    def __init__(self, key: str, name: str, payload: bytes, pickler: str = "pickle") -> None:
        self.key = key
        self.name = name
        self.payload = payload
        self.pickler = pickler

    def __call__(self) -> Any:
        name, pickler = self.name, self.pickler
        try:
            func, args, kwargs = pickle.loads(self.payload)  # also loads cloudpickle's output
        except Exception as exc:
            if pickler == "pickle":
                advice = (
                    "a task's function must be importable by the worker (defined at module "
                    "level of a module the worker can import, not in a notebook)"
                )
            else:
                advice = (
                    "the worker needs cloudpickle and every module the task's function and "
                    "arguments refer to (cloudpickle sends functions of modules by reference)"
                )
            raise pickle.UnpicklingError(
                f"task {name!r} could not be unpickled in the worker: {describe(exc)}; {advice}"
            ) from exc
        try:
            result = call_sync_task(name, func, args, kwargs)
        except Exception as exc:
            try:
                pickle.loads(_dumps(pickler, exc))
            except Exception as problem:
                raise pickle.PicklingError(
                    f"task {name!r} raised {describe(exc)}, an exception that could not be "
                    f"pickled to send it back from the worker: {describe(problem)}"
                ) from None
            raise
        try:
            _pickler_class(pickler)(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(result)
        except Exception as exc:
            examples = "an open file, a lock or a connection"
            if pickler == "pickle":
                examples = "an open file, a lock, a connection or a lambda"
            raise pickle.PicklingError(
                f"task {name!r} returned a result that could not be pickled to send it back "
                f"from the worker: {describe(exc)}; return picklable data (not e.g. {examples})"
            ) from None
        return result

    def __repr__(self) -> str:
        return f"SyncCall({self.key!r})"


class _FailedCall:
    """Stands in, in the worker, for a call whose function or arguments did not pickle."""

    __slots__ = ("key", "message")

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message

    def __call__(self) -> Any:
        raise pickle.PicklingError(self.message)


class _Discard:
    """A file that drops what it is given: pickling into it only checks that a value pickles."""

    __slots__ = ()

    def write(self, data: bytes) -> int:
        return len(data)


def call_sync_task(
    name: str, func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> Any:
    """Call a sync task where it runs (thread, process, cluster); module-level so it pickles."""
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # avoid "coroutine was never awaited"
        raise TypeError(
            f"task {name!r} is a sync function that returned an awaitable "
            f"({type(result).__name__}); declare it 'async def' so the engine awaits it"
        )
    return result
