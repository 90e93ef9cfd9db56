"""Executors for sync tasks beyond the engine's own thread pool.

``build_default_engine(executor=...)`` takes any ``concurrent.futures.Executor``. For a thread
pool or a ``ProcessPoolExecutor`` nothing more is needed; this module adapts a Dask
distributed ``Client``:

    from distributed import Client
    from flowrun.executors import dask_executor

    engine = build_default_engine(executor=dask_executor(Client(...)), max_parallel=...)

Dask is imported lazily, by the client you pass: the core stays stdlib-only. Sync calls sent
to any executor but a ``ProcessPoolExecutor`` are pickled with cloudpickle (Dask depends on it),
so closures and lambdas run on Dask; a process pool gets the standard pickle it uses itself.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, Protocol, TypeVar

__all__ = ["DaskExecutor", "dask_executor"]

T = TypeVar("T")


class _DaskClient(Protocol):
    """What this module uses of ``distributed.Client``."""

    def get_executor(self, **kwargs: Any) -> Executor: ...


class DaskExecutor(Executor):
    """Runs each call on a Dask cluster through ``client.get_executor(pure=False)``.

    - ``pure=False``: Dask's default (``pure=True``) names a call by a hash of its function and
      arguments, so a retry of a side-effecting task would get the failed attempt's outcome
      back; every submission here is a new Dask task.
    - A call that carries a ``key`` (the engine's sync attempts do: ``"{run_id}/{task}/
      {attempt}"``) is submitted under that key, so the Dask dashboard shows which task of which
      run each Dask task is.
    - ``cancel()`` on a returned future reaches the Dask scheduler (``Future.cancel``): a
      queued call never starts; a running one cannot be interrupted, runs on in its worker
      thread and its result is dropped. The engine cancels a sync attempt when it times out or
      its run is cancelled.
    - ``shutdown()`` waits for (``wait=True``) or cancels (``wait=False``) the calls submitted
      through this executor; it never closes the client, which stays yours.
    """

    def __init__(self, client: _DaskClient) -> None:
        self.client = client
        self._executor = client.get_executor(pure=False)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        key = getattr(fn, "key", None)
        if isinstance(key, str):
            # Dask's ClientExecutor passes keyword arguments on to Client.submit.
            return self._executor.submit(fn, *args, key=key, **kwargs)
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait and not cancel_futures)

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client!r})"


def dask_executor(client: Any) -> DaskExecutor:
    """An ``Executor`` that runs sync tasks on the Dask cluster of ``client``
    (a ``distributed.Client``): see ``DaskExecutor``.

    Pass it to ``build_default_engine(executor=...)``. Calls are pickled with cloudpickle, as
    Dask does: closures, lambdas and notebook functions work, and functions of modules travel
    by reference (the workers must be able to import those modules). Arguments and results
    must pickle: they travel between the driver and the workers for every task.
    """
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "flowrun.executors.dask_executor needs Dask distributed: "
            "pip install 'flowrun-dag[dask]'"
        ) from exc
    if not isinstance(client, distributed.Client):
        raise TypeError(f"dask_executor() takes a distributed.Client, got {type(client).__name__}")
    return DaskExecutor(client)
