"""The thread pool an engine owns when no ``executor`` is given.

It is ``concurrent.futures.ThreadPoolExecutor`` minus one behaviour: its workers are daemon
threads. Python joins a ``ThreadPoolExecutor``'s workers when the interpreter exits, so one sync
task abandoned after its timeout (a thread cannot be killed) would keep a finished command, a
test session or a Ctrl-C waiting until the function returns, possibly forever. Work the engine
still waits for is never lost by this: a run returns only once every attempt it awaits is done.

``call_for_loop`` is the engine's own way in: it hands the result straight to an asyncio future
of the loop, without the ``concurrent.futures.Future`` (a lock, a condition, callbacks) that
``loop.run_in_executor`` creates and chains per call: that chain is most of what a sync no-op
task costs beyond the thread hand-off itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["DaemonThreadPool"]

P = ParamSpec("P")
T = TypeVar("T")

# (future, fn, args, kwargs) from submit(); (asyncio future, fn, args, then) from call_for_loop()
_WorkItem = tuple["Future[Any] | asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...], Any]
_NO_CONTEXT = contextvars.Context()  # what handing a result back to the loop runs in


class DaemonThreadPool(Executor):
    """Up to ``max_workers`` daemon threads, started on demand, named ``{prefix}_{n}``."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "flowrun") -> None:
        if max_workers < 1:
            raise ValueError(f"'max_workers' must be >= 1 (got {max_workers})")
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._numbers = itertools.count()
        self._shutdown = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        self._put((future, fn, args, kwargs))
        return future

    def call_for_loop(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[..., T],
        /,
        *args: Any,
        then: Callable[[asyncio.Future[T]], object] | None = None,
    ) -> asyncio.Future[T]:
        """``loop.run_in_executor(self, fn, *args)``, at a fraction of its cost: the worker
        hands the outcome to the returned future through ``loop.call_soon_threadsafe``, and
        ``then(future)`` is called right after on the loop (cheaper than a done callback,
        which costs a loop handle of its own). A call whose future is cancelled before a
        worker takes it does not run, as with ``run_in_executor``; one cancelled later runs
        on, its outcome dropped (``then`` is not called)."""
        future: asyncio.Future[T] = loop.create_future()
        self._put((future, fn, args, then))
        return future

    def _put(self, item: _WorkItem) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._work.put(item)
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._prefix}_{next(self._numbers)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                self._work.put(None)  # wake the next worker: the pool is shutting down
                return
            future, fn, args, kwargs = item  # kwargs: call_for_loop's ``then``
            del item
            if isinstance(future, Future):
                if future.set_running_or_notify_cancel():
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:  # the awaiting side decides what it means
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            elif not future.cancelled():  # read without the loop: at worst, the call runs
                settle: Callable[[asyncio.Future[Any], Any, Any], None]
                try:
                    value = fn(*args)
                    settle = _set_result
                except BaseException as exc:
                    value, settle = exc, _set_exception
                # a closed loop: nobody waits for the outcome any more
                with contextlib.suppress(RuntimeError):
                    future.get_loop().call_soon_threadsafe(
                        settle, future, value, kwargs, context=_NO_CONTEXT
                    )
                del value
            del future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        continue
                    future = item[0]
                    if isinstance(future, Future):
                        future.cancel()
                    else:  # an asyncio future is cancelled on its loop's thread
                        with contextlib.suppress(RuntimeError):
                            future.get_loop().call_soon_threadsafe(future.cancel)
            self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


def _set_result(
    future: asyncio.Future[Any], result: Any, then: Callable[[Any], object] | None
) -> None:
    if not future.done():  # cancelled meanwhile (a timeout, an aborted run): dropped
        future.set_result(result)
        if then is not None:
            then(future)


def _set_exception(
    future: asyncio.Future[Any], error: BaseException, then: Callable[[Any], object] | None
) -> None:
    if not future.done():
        future.set_exception(error)
        if then is not None:
            then(future)
