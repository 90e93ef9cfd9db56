"""RunContext: what a task receives about its run, plus read-through access to user deps."""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, NamedTuple, TypeAlias, TypeVar

from ._clock import Clock
from .errors import ContextFactoryError, TaskCancelledError

__all__ = [
    "ContextSource",
    "RunContext",
    "UpstreamState",
    "check_context_source",
    "open_context",
]

DepsT = TypeVar("DepsT")


class UpstreamState(NamedTuple):
    """How a parent task ended, as a task that runs after it sees it: ``status`` (SUCCESS,
    FAILED, SKIPPED, OMITTED) and ``error`` (the error, skip or omission reason; None on
    SUCCESS)."""

    status: str
    error: str | None


_SUCCEEDED = UpstreamState("SUCCESS", None)


class RunContext(Generic[DepsT]):
    """Per-run dependencies for tasks, e.g. ``RunContext(Deps(api_base=...))``.

    Attribute reads fall through to ``deps`` (an object or a mapping), so a task writes
    ``context.api_base``. The engine hands each attempt its own copy carrying the run id, the task
    name, the attempt number and a cancellation signal: a sync task that the engine abandoned
    (its timeout passed, or the run was cancelled) keeps running in its thread, because Python
    cannot kill a thread, and should poll ``cancelled()`` / ``raise_if_cancelled()`` to stop early.
    """

    __slots__ = (
        "_cancel",
        "_clock",
        "_deadline",
        "_upstream",
        "attempt",
        "dag_name",
        "deps",
        "run_id",
        "scheduled_for",
        "task_name",
    )

    deps: DepsT
    run_id: str | None
    dag_name: str | None
    task_name: str | None
    attempt: int
    scheduled_for: float | None

    def __init__(self, deps: DepsT = None) -> None:  # type: ignore[assignment]
        self.deps = deps
        self.run_id = None
        self.dag_name = None
        self.task_name = None
        self.attempt = 0
        self.scheduled_for = None  # a scheduled run: its tick's due time (epoch seconds)
        self._cancel: threading.Event | None = None
        self._deadline: float | None = None
        self._clock: Clock | None = None
        self._upstream: Mapping[str, UpstreamState] | tuple[str, ...] = ()

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails, i.e. for names of the user's deps.
        if name.startswith("__"):
            raise AttributeError(name)
        deps = object.__getattribute__(self, "deps")
        if isinstance(deps, Mapping):
            try:
                return deps[name]
            except KeyError:
                keys = ", ".join(repr(k) for k in deps) or "none"
                raise AttributeError(
                    f"RunContext has no attribute {name!r} and its deps mapping has no such key "
                    f"(keys: {keys})"
                ) from None
        try:
            return getattr(deps, name)
        except AttributeError:
            raise AttributeError(
                f"RunContext has no attribute {name!r} and neither has its deps "
                f"({type(deps).__name__})"
            ) from None

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to another process (a process pool, Dask): deps and identity travel; the
        # cancellation signal and clock belong to this process, so there ``cancelled()`` stays
        # False and ``time_remaining_s()`` is None.
        identity = (self.run_id, self.dag_name, self.task_name, self.attempt, self.scheduled_for)
        return (_rebuild, (self.deps, *identity))

    def for_attempt(
        self,
        run_id: str,
        dag_name: str,
        task_name: str,
        attempt: int,
        clock: Clock,
        scheduled_for: float | None = None,
    ) -> RunContext[DepsT]:
        """The copy one attempt sees: same deps, its own identity and cancellation signal.
        ``scheduled_for`` is the due time of the schedule's tick that started the run (the
        time window a scheduled ETL run should load), None for a run started otherwise."""
        ctx: RunContext[DepsT] = RunContext(self.deps)
        ctx.scheduled_for = scheduled_for
        ctx.run_id = run_id
        ctx.dag_name = dag_name
        ctx.task_name = task_name
        ctx.attempt = attempt
        ctx._cancel = threading.Event()
        ctx._clock = clock
        return ctx

    @property
    def upstream_states(self) -> Mapping[str, UpstreamState]:
        """Each parent task's final status and error, for this attempt's task.

        A task with a trigger rule (``trigger="all_done"``, ...) may run after a parent that
        FAILED, was SKIPPED or OMITTED; it receives ``None`` for that parent's result and reads
        here what happened. Every parent of an ``all_success`` task succeeded.
        """
        upstream = self._upstream
        if isinstance(upstream, tuple):
            return dict.fromkeys(upstream, _SUCCEEDED)
        return upstream

    def set_upstream(self, upstream: Mapping[str, UpstreamState] | tuple[str, ...]) -> None:
        """Engine use: the parents' states (a tuple of names when every parent succeeded)."""
        self._upstream = upstream

    def set_deadline(self, deadline: float | None) -> None:
        """Set the attempt's deadline on the engine clock's monotonic time (engine use)."""
        self._deadline = deadline

    def cancel(self) -> None:
        """Signal the attempt to stop (the engine calls this on timeout or run cancellation)."""
        if self._cancel is not None:
            self._cancel.set()

    def cancelled(self) -> bool:
        """True once the engine has given up on this attempt."""
        return self._cancel is not None and self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise ``TaskCancelledError`` if the engine has given up on this attempt."""
        if self.cancelled():
            raise TaskCancelledError(
                f"task {self.task_name!r} attempt {self.attempt} of run {self.run_id!r} was "
                "cancelled by the engine (timed out or run cancelled)"
            )

    def time_remaining_s(self) -> float | None:
        """Seconds left before this attempt's timeout, ``None`` without a timeout."""
        if self._deadline is None or self._clock is None:
            return None
        return max(0.0, self._deadline - self._clock.monotonic())

    def __repr__(self) -> str:
        where = f", task={self.task_name!r}, attempt={self.attempt}" if self.task_name else ""
        return f"RunContext({self.deps!r}{where})"


def _rebuild(
    deps: Any,
    run_id: str | None,
    dag_name: str | None,
    task_name: str | None,
    attempt: int,
    scheduled_for: float | None = None,
) -> RunContext[Any]:
    ctx: RunContext[Any] = RunContext(deps)
    ctx.run_id, ctx.dag_name, ctx.task_name, ctx.attempt = run_id, dag_name, task_name, attempt
    ctx.scheduled_for = scheduled_for
    return ctx


ContextSource: TypeAlias = "RunContext[Any] | Callable[[], Any]"
"""What may stand for a run's context where none is passed: a ``RunContext``, or a
zero-argument callable returning one, an awaitable of one, or a (sync or async) context
manager that yields one (entered for the run and exited after it)."""


def describe_source(source: ContextSource) -> str:
    """``local_api()`` for a factory, ``RunContext(...)`` for a context: how messages name it."""
    if isinstance(source, RunContext):
        return repr(source)
    name = getattr(source, "__qualname__", None) or type(source).__name__
    return f"{name}()"


def check_context_source(source: object, what: str) -> None:
    """Refuse, when it is declared, what could never make a context (``what`` names the
    declaration in the message, e.g. ``"engine.dag('etl', context=...)"``)."""
    if isinstance(source, RunContext):
        return
    if not callable(source):
        raise TypeError(
            f"{what} is a {type(source).__name__}, not a RunContext or a zero-argument "
            "callable returning one; wrap your deps: RunContext(deps)"
        )
    try:
        inspect.signature(source).bind()
    except TypeError:
        raise TypeError(
            f"{what}: {describe_source(source)} must take no arguments (it is called once "
            "per run to make the run's context)"
        ) from None
    except ValueError:  # pragma: no cover - a builtin without a signature: call it later
        pass


async def open_context(
    source: ContextSource, stack: contextlib.AsyncExitStack, what: str
) -> RunContext[Any]:
    """Make the run's context from ``source`` (see ``ContextSource``); a context manager is
    entered on ``stack``. What the factory raises comes out as ``ContextFactoryError``."""
    if isinstance(source, RunContext):
        return source
    try:
        made = source()
        if inspect.isawaitable(made):
            made = await made
        if hasattr(made, "__aenter__") and hasattr(made, "__aexit__"):
            made = await stack.enter_async_context(made)
        elif hasattr(made, "__enter__") and hasattr(made, "__exit__"):
            made = stack.enter_context(made)
    except Exception as exc:
        raise ContextFactoryError(f"{what}: {describe_source(source)}", exc) from exc
    if not isinstance(made, RunContext):
        raise TypeError(
            f"{what}: {describe_source(source)} gave a {type(made).__name__}, not a "
            "RunContext; return RunContext(your_deps)"
        )
    return made
