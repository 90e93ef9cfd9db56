"""The ``Engine`` facade: registration, validation, runs, resume, reports and resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, Unpack, overload

from ._attempt import Launcher, launcher_for
from ._clock import Clock, SystemClock
from ._context import ContextSource, RunContext, open_context
from ._dag import DAG, build_dag
from ._hooks import HookDispatcher, RunHook
from ._limits import Limiter, Pool
from ._options import TaskOptionsDict
from ._overrides import override_tasks
from ._render import render_dag, render_run
from ._report import build_report
from ._resume import ResumePlan, plan_resume
from ._scheduler import Run
from ._task import (
    DEFAULT_DAG,
    TaskRegistry,
    TaskSpec,
    TaskTemplate,
)
from ._threads import DaemonThreadPool
from .errors import PoolError, UnknownDagError, suggest
from .state.memory import InMemoryStateStore
from .state.protocol import StateStoreProtocol
from .state.records import FINISHED_STATUSES, RUNNING

if TYPE_CHECKING:  # loaded by schedule() and serve(): import flowrun stays light
    from ._schedules import Schedule, ScheduleOptions
    from ._serve import TickCallback

__all__ = ["DagScope", "Engine", "SchedulerConfig", "build_default_engine"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Concurrency limits: ``max_parallel`` tasks in flight across the whole engine (all
    concurrent runs together); ``max_workers`` threads in the pool the engine owns when no
    ``executor`` is given."""

    max_parallel: int = 4
    max_workers: int = 8

    def __post_init__(self) -> None:
        for field_name in ("max_parallel", "max_workers"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{field_name!r} must be an int >= 1 (got {value!r})")
            if value < 1:
                raise ValueError(f"{field_name!r} must be >= 1 (got {value})")


class Engine:
    """Registers tasks, runs DAGs and answers questions about them.

    Build one with ``build_default_engine(...)``. Use ``async with engine:`` (or ``close()``)
    to shut down the thread pool the engine owns; an ``executor`` you pass stays yours.
    """

    def __init__(
        self,
        *,
        registry: TaskRegistry | None = None,
        config: SchedulerConfig | None = None,
        executor: Executor | None = None,
        state_store: StateStoreProtocol | None = None,
        hooks: Sequence[RunHook] | None = None,
        logger: logging.Logger | None = None,
        clock: Clock | None = None,
    ) -> None:
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}"
            )
        self.registry = registry if registry is not None else TaskRegistry()
        self.config = config if config is not None else SchedulerConfig()
        self.logger = logger if logger is not None else logging.getLogger("flowrun")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.state_store: StateStoreProtocol = (
            state_store if state_store is not None else InMemoryStateStore()
        )
        self.hooks: tuple[RunHook, ...] = tuple(hooks or ())
        self.executor = executor  # None: sync tasks use a thread pool the engine owns
        self._hooks = HookDispatcher(self.hooks, self.logger)
        self._owned_pool: DaemonThreadPool | None = None
        self._launcher: tuple[Executor, Launcher] | None = None
        self._limiter = Limiter(self.config.max_parallel)
        self._dag_cache: dict[str, tuple[int, DAG]] = {}
        self._rng = random.Random()
        self._schedules: dict[str, Schedule] = {}

    def derive(
        self,
        *,
        state_store: StateStoreProtocol | None = None,
        extra_hooks: Sequence[RunHook] = (),
        max_parallel: int | None = None,
    ) -> Engine:
        """A new engine over this one's registry, executor, clock and logger, with its hooks
        plus ``extra_hooks``, and optionally another store or ``max_parallel``: how a tool
        (the ``flowrun`` command) runs a user's pipelines its own way, leaving the user's
        engine untouched. It owns its own thread pool and slots: close it when done."""
        config = self.config
        if max_parallel is not None:
            config = SchedulerConfig(max_parallel=max_parallel, max_workers=config.max_workers)
        derived = Engine(
            registry=self.registry,
            config=config,
            executor=self.executor,
            state_store=state_store if state_store is not None else self.state_store,
            hooks=[*self.hooks, *extra_hooks],
            logger=self.logger,
            clock=self.clock,
        )
        for name, slots in self.pools.items():
            derived.pool(name, slots=slots)
        derived._schedules.update(self._schedules)
        return derived

    # -- registration --------------------------------------------------------------------
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
        """Register a task in this engine: ``@engine.task``, ``@engine.task(name=..., ...)``."""
        return self.registry.task(name, **options)

    def task_template(
        self,
        func: Callable[..., Any],
        *,
        dag: str | None = None,
        **options: Unpack[TaskOptionsDict],
    ) -> TaskTemplate:
        """Register ``func`` several times with ``.bind(name, **kwargs)``."""
        return self.registry.task_template(func, dag=dag, **options)

    def dag(self, name: str, *, context: ContextSource | None = None) -> DagScope:
        """A scope that fills in ``dag=name`` for registration and runs.

        ``context`` declares the DAG's default context, used by every run of it that is given
        none (``run_once``, ``run_subgraph``, ``resume``, ``flowrun run``, ``pytest
        --flowrun-run``, ``run_dag``): a ``RunContext``, or a zero-argument callable returning
        one (or an awaitable of one, or a sync or async context manager yielding one, entered
        for the run and exited after it). An explicit ``context=`` always wins.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a DAG name must be a non-empty string (got {name!r})")
        if context is not None:
            self.registry.set_default_context(name, context)
        return DagScope(self, name)

    def override(
        self, dag_name: str, /, **funcs: Callable[..., Any]
    ) -> AbstractContextManager[Mapping[str, TaskSpec]]:
        """Run stubs instead of task functions inside a ``with`` block (tests, dry runs).

        ``with engine.override("etl", extract=lambda: [...]):`` keeps each task's deps and
        options and applies the same injection rules to the stub; the originals are back on
        exit, even on error.
        """
        return override_tasks(self, dag_name, **funcs)

    # -- discovery and validation --------------------------------------------------------
    def list_dags(self) -> list[str]:
        """Names of every DAG that has at least one task, in registration order."""
        return self.registry.dag_names()

    def resolve_dag_name(self, dag_name: str) -> str:
        """The DAG a name refers to; unscoped registries accept any name (legacy)."""
        if not isinstance(dag_name, str):
            raise TypeError(f"a DAG name must be a string, got {type(dag_name).__name__}")
        if self.registry.tasks_of(dag_name):
            return dag_name
        if self.registry.only_implicit_dag():
            return DEFAULT_DAG
        raise UnknownDagError(dag_name, self.registry.dag_names())

    def get_dag(self, dag_name: str) -> DAG:
        """The validated, immutable DAG (cached until the registry changes)."""
        name = self.resolve_dag_name(dag_name)
        version = self.registry.version
        cached = self._dag_cache.get(name)
        if cached is not None and cached[0] == version:
            dag = cached[1]
            if dag.pooled:  # pools may have been declared since (or tasks named one later)
                self._check_pools(dag)
            return dag
        dag = build_dag(name, self.registry.tasks_of(name), self.registry.all_dags())
        self._check_pools(dag)
        self._dag_cache[name] = (version, dag)
        return dag

    def validate(self, dag_name: str) -> None:
        """Raise a ``DagValidationError`` (or ``UnknownDagError``) if the DAG cannot run."""
        self.get_dag(dag_name)

    # -- pools -------------------------------------------------------------------------------
    def pool(self, name: str, *, slots: int) -> None:
        """Declare a pool: at most ``slots`` slots taken at once by the tasks that name it
        (``@task(pool=name, pool_slots=1)``), across every DAG and run of this engine.

        Declaring it again with the same slots does nothing (a module imported twice); with
        other slots it raises, since running tasks already count on the first number."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a pool name must be a non-empty string (got {name!r})")
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"pool {name!r}: 'slots' must be an int >= 1 (got {slots!r})")
        pools = self._limiter.pools
        known = pools.get(name)
        if known is not None:
            if known.slots != slots:
                raise ValueError(
                    f"pool {name!r} is already declared with slots={known.slots}; declare "
                    f"each pool once (got slots={slots})"
                )
            return
        pools[name] = Pool(name, slots)

    @property
    def pools(self) -> Mapping[str, int]:
        """Each declared pool's number of slots."""
        return {name: pool.slots for name, pool in self._limiter.pools.items()}

    def _check_pools(self, dag: DAG) -> None:
        pools = self._limiter.pools
        for task, (name, wanted) in dag.pooled.items():
            pool = pools.get(name)
            if pool is None:
                raise PoolError(dag.name, task, name, sorted(pools), wanted)
            if wanted > pool.slots:
                raise PoolError(dag.name, task, name, sorted(pools), wanted, pool.slots)

    def list_tasks(self, dag_name: str) -> list[str]:
        """Task names in topological order."""
        return list(self.get_dag(dag_name).order)

    def display_dag(self, dag_name: str, format: str = "text") -> str:
        """Draw the DAG: ``"text"`` (default), ``"mermaid"`` or ``"dot"``."""
        return render_dag(self.get_dag(dag_name), format)

    # -- schedules -------------------------------------------------------------------------
    def schedule(
        self,
        dag: str,
        *,
        cron: str | None = None,
        every: float | None = None,
        tz: str = "UTC",
        catchup: str = "latest",
        max_catchup: int = 10,
        overlap: str = "skip",
        origin: float = 0.0,
        name: str | None = None,
    ) -> Schedule:
        """Run DAG ``dag`` on a schedule when the engine serves (``await engine.serve()``,
        ``flowrun serve``): at the times of a 5-field ``cron`` expression read in zone ``tz``,
        or ``every`` seconds (ticks at ``origin + k * every``, so restarts do not drift).

        ``catchup`` (after a downtime): ``"latest"`` runs the most recent missed tick,
        ``"all"`` the last ``max_catchup`` of them, oldest first, ``"none"`` none.
        ``overlap`` (a tick due while this schedule's previous run is still running):
        ``"skip"`` records it skipped, ``"queue"`` runs it afterwards, ``"allow"`` runs it
        alongside. ``name`` (default: the DAG and the when) keys the ticks in the state store.
        Every option is checked now: a ``ScheduleError`` names the DAG and the option."""
        from ._schedules import ScheduleError, make_schedule  # on first use: cron, zoneinfo

        made = make_schedule(
            dag,
            cron=cron,
            every=every,
            tz=tz,
            catchup=catchup,
            max_catchup=max_catchup,
            overlap=overlap,
            origin=origin,
            name=name,
        )
        if made.name in self._schedules:
            raise ScheduleError(
                f"schedule {made.name!r} of DAG {dag!r} is declared twice; give the second "
                "one another name= (two schedules of a DAG need distinct names)",
                dag=dag,
                schedule=made.name,
                option="name",
                got=name,
            )
        self._schedules[made.name] = made
        return made

    @property
    def schedules(self) -> Mapping[str, Schedule]:
        """The declared schedules by name, in declaration order (read-only)."""
        return MappingProxyType(self._schedules)

    async def serve(
        self,
        *,
        stop: asyncio.Event | None = None,
        until: float | None = None,
        max_runs: int | None = None,
        grace_s: float = 30.0,
        on_tick: TickCallback | None = None,
    ) -> None:
        """Run every schedule of the engine until cancelled, ``stop`` is set, the engine
        clock passes ``until`` (wall time: ticks due after it are not started) or
        ``max_runs`` runs have started; then wait for the runs in flight (after ``stop``:
        ``grace_s`` seconds, then they are cancelled, recorded FAILED and resumable).

        Each tick is claimed in the state store before it runs (one claim per schedule and
        due time wins), so a restart continues from the last recorded tick and two servers on
        one SQLite file never both run a tick. ``on_tick`` is called with a ``TickEvent`` for
        each tick: when its run finished, or when it was skipped or missed."""
        from ._serve import serve

        await serve(
            self,
            list(self._schedules.values()),
            stop=stop,
            until=until,
            max_runs=max_runs,
            grace_s=grace_s,
            on_tick=on_tick,
        )

    async def _run_scheduled(self, dag_name: str, run_id: str, scheduled_for: float) -> str:
        """A run of a schedule's tick: the DAG's default context, the tick's run id."""
        return await self._execute(
            self.get_dag(dag_name), None, run_id=run_id, scheduled_for=scheduled_for
        )

    # -- runs ------------------------------------------------------------------------------
    async def run_once(self, dag_name: str, context: RunContext[Any] | None = None) -> str:
        """Run every task of the DAG once; returns the run id when the run is final."""
        return await self._execute(self.get_dag(dag_name), context)

    async def run_subgraph(
        self, dag_name: str, targets: Iterable[str], context: RunContext[Any] | None = None
    ) -> str:
        """Run ``targets`` and everything they depend on."""
        if isinstance(targets, str):
            raise TypeError(f"targets must be a list of task names; write targets=[{targets!r}]")
        return await self._execute(self.get_dag(dag_name).subgraph(targets), context)

    async def resume(
        self,
        run_id: str,
        from_tasks: Iterable[str] | None = None,
        context: RunContext[Any] | None = None,
    ) -> str:
        """Start a new run that continues ``run_id``; returns the new run id.

        Keeps the successful tasks that are not downstream of ``from_tasks`` and
        re-runs the rest; with ``from_tasks=None`` it re-runs every task that did not
        succeed. A kept task whose result was not retained is re-run too when a re-run task
        needs its result. A ``run_subgraph`` run resumes only that subgraph.
        """
        old = self.state_store.load_run(run_id)
        plan = plan_resume(old, self.get_dag(old.dag_name), from_tasks)
        return await self._execute(plan.dag, context, plan)

    async def _execute(
        self,
        dag: DAG,
        context: RunContext[Any] | None,
        resume: ResumePlan | None = None,
        *,
        run_id: str | None = None,
        scheduled_for: float | None = None,
    ) -> str:
        if context is not None and not isinstance(context, RunContext):
            raise TypeError(
                f"context must be a RunContext (wrap your deps: RunContext(deps)), got "
                f"{type(context).__name__}"
            )
        source = None if context is not None else self.registry.default_context(dag.name)
        if source is None:
            return await self._start(dag, context, resume, run_id, scheduled_for)
        async with contextlib.AsyncExitStack() as stack:
            made = await open_context(source, stack, f"the default context of DAG {dag.name!r}")
            return await self._start(dag, made, resume, run_id, scheduled_for)

    async def _start(
        self,
        dag: DAG,
        context: RunContext[Any] | None,
        resume: ResumePlan | None,
        run_id: str | None = None,
        scheduled_for: float | None = None,
    ) -> str:
        run = Run(
            run_id=run_id if run_id is not None else uuid.uuid4().hex,
            dag=dag,
            context=context,
            store=self.state_store,
            clock=self.clock,
            limiter=self._limiter,
            sync_launcher=self._launcher_for_sync,
            hooks=self._hooks,
            logger=self.logger,
            rng=self._rng,
            resume=resume,
            scheduled_for=scheduled_for,
        )
        with self.registry.run_in_progress(dag.name):
            return await run.execute()

    def _launcher_for_sync(self) -> Launcher:
        """How sync tasks start: chosen once for the executor (the engine's own pool is made
        on first use, and again after ``close()``)."""
        executor: Executor | None = self.executor
        if executor is None:
            executor = self._owned_pool
            if executor is None:
                executor = self._owned_pool = DaemonThreadPool(
                    max_workers=self.config.max_workers, thread_name_prefix="flowrun"
                )
        cached = self._launcher
        if cached is not None and cached[0] is executor:
            return cached[1]
        launcher = launcher_for(executor)
        self._launcher = (executor, launcher)
        return launcher

    # -- reports ---------------------------------------------------------------------------
    def get_run_report(self, run_id: str) -> dict[str, Any]:
        """The run report (a snapshot: changing it changes nothing stored)."""
        return build_report(self.state_store.load_run(run_id))

    def list_runs(
        self, dag_name: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Reports of past runs, newest first."""
        statuses = sorted({RUNNING, *FINISHED_STATUSES} - {"SKIPPED", "OMITTED"})
        if status is not None and status not in statuses:
            raise ValueError(
                f"unknown run status {status!r}; a run is one of {', '.join(statuses)}."
                f"{suggest(str(status).upper(), statuses)}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"'limit' must be >= 0 (got {limit!r})")
        return [build_report(r) for r in self.state_store.list_runs(dag_name, status, limit)]

    def clear_cache(self, dag: str, tasks: Iterable[str] | None = None) -> int:
        """Forget the cached results of the DAG's tasks (``@task(cache=True)``), of every
        task or of ``tasks`` only, so that their next run computes them again; returns how
        many cache entries were removed. An unknown DAG or task name raises
        (``UnknownDagError``, ``UnknownTaskError``) with the closest name."""
        if isinstance(tasks, str):
            raise TypeError(f"tasks must be a list of task names; write tasks=[{tasks!r}]")
        graph = self.get_dag(dag)
        names = None if tasks is None else graph.check_names(tasks, "clear_cache")
        return self.state_store.cache_clear(graph.name, names)

    def display_run(self, run_id: str, format: str = "mermaid") -> str:
        """Draw a run: ``"mermaid"`` (default), ``"dot"`` or ``"text"``, each task coloured by
        its status, with the edges the run recorded (no need for the code that defined it)."""
        run = self.state_store.load_run(run_id)
        parents = {name: rec.deps for name, rec in run.tasks.items()}
        return render_run(build_report(run), format, parents)

    # -- resources -------------------------------------------------------------------------
    def close(self) -> None:
        """Shut down the thread pool the engine owns (never an executor you passed).

        Does not wait for worker threads: a sync task abandoned after a timeout may still be
        running, and waiting for it could hang. A later run starts a new pool.
        """
        pool, self._owned_pool = self._owned_pool, None
        if pool is not None:
            self.logger.debug("shutting down the engine's thread pool")
            pool.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Engine(dags={self.list_dags()!r}, max_parallel={self.config.max_parallel}, "
            f"store={type(self.state_store).__name__})"
        )


class DagScope:
    """``engine.dag("name")``: the engine's API with ``dag=name`` filled in."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name

    @property
    def context(self) -> ContextSource | None:
        """The DAG's default context (``engine.dag(name, context=...)``), or None."""
        return self.engine.registry.default_context(self.name)

    @overload
    def task(self, func: F, /) -> F: ...

    @overload
    def task(
        self,
        name: str | None = None,
        **options: Unpack[TaskOptionsDict],
    ) -> Callable[[F], F]: ...

    def task(self, name: Any = None, **options: Any) -> Any:
        if "dag" in options:
            raise TypeError(
                f"DAG scope {self.name!r} sets dag= itself; use engine.task(dag=...) instead"
            )
        return self.engine.registry.task(name, dag=self.name, **options)

    def task_template(
        self, func: Callable[..., Any], **options: Unpack[TaskOptionsDict]
    ) -> TaskTemplate:
        return self.engine.registry.task_template(func, dag=self.name, **options)

    async def run_once(self, context: RunContext[Any] | None = None) -> str:
        return await self.engine.run_once(self.name, context=context)

    async def run_subgraph(
        self, targets: Iterable[str], context: RunContext[Any] | None = None
    ) -> str:
        return await self.engine.run_subgraph(self.name, targets, context=context)

    def validate(self) -> None:
        self.engine.validate(self.name)

    def schedule(self, **options: Unpack[ScheduleOptions]) -> Schedule:
        """``engine.schedule(name_of_this_dag, **options)``."""
        return self.engine.schedule(self.name, **options)

    def display(self, format: str = "text") -> str:
        return self.engine.display_dag(self.name, format)

    def list_tasks(self) -> list[str]:
        return self.engine.list_tasks(self.name)

    def __repr__(self) -> str:
        return f"DagScope({self.name!r})"


def build_default_engine(
    executor: Executor | None = None,
    max_workers: int = 8,
    max_parallel: int = 4,
    logger: logging.Logger | None = None,
    hooks: Sequence[RunHook] | None = None,
    state_store: StateStoreProtocol | None = None,
    *,
    clock: Clock | None = None,
    registry: TaskRegistry | None = None,
) -> Engine:
    """An engine with an in-memory store, the system clock and an owned thread pool."""
    return Engine(
        registry=registry,
        config=SchedulerConfig(max_parallel=max_parallel, max_workers=max_workers),
        executor=executor,
        state_store=state_store,
        hooks=hooks,
        logger=logger,
        clock=clock,
    )
