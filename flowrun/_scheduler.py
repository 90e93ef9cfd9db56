"""One run of a DAG: unfinished-parent counters, a ready queue and an engine-wide slot limiter.

The driver sleeps until an attempt completes, then handles the completed batch: it records
each transition, enqueues the children whose last parent just succeeded, schedules retries,
or skips every descendant of a final failure in one traversal. Nothing scans all tasks per
completion, so a run costs O(V + E). The state store gets the batch's transitions followed
by one ``flush()``; hooks see the batch's events in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import random
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ._attempt import Attempt, EscalatedError, Launcher, launch_async
from ._clock import Clock
from ._context import RunContext, UpstreamState
from ._dag import DAG
from ._hooks import (
    DagEndEvent,
    DagStartEvent,
    HookDispatcher,
    HookEvent,
    TaskFailureEvent,
    TaskOmitEvent,
    TaskStartEvent,
    TaskSuccessEvent,
)
from ._limits import Limiter, ReadyEntry
from ._report import run_status
from ._resume import ResumePlan
from ._run_abort import abort, give_up_creating
from ._run_cache import remember, served_from_cache
from ._run_maps import expand, instance_final
from ._run_outcomes import failure_event, note_warning, propagate, retry, settle
from ._task import TaskSpec
from .errors import Omit, describe_failure
from .state.protocol import Durable, EncodingFailures, StateStoreProtocol
from .state.records import (
    FAILED,
    OMITTED,
    PENDING,
    RUNNING,
    SUCCESS,
    RunRecord,
    TaskRecord,
)

__all__ = ["Run"]

Deferred = tuple[str, Callable[[], None], Callable[[Exception], None]]
"""A success waiting for its commit: the task, what it does then, what if it cannot be kept."""
Held = HookEvent | Deferred  # what waits for a commit, in the order it happened
FlushLater = Callable[[Durable], bool]  # a store's optional flush_later (see state.protocol)


class Run:
    """Executes one run; ``execute()`` returns the run id once the run is final."""

    def __init__(
        self,
        *,
        run_id: str,
        dag: DAG,
        context: RunContext[Any] | None,
        store: StateStoreProtocol,
        clock: Clock,
        limiter: Limiter,
        sync_launcher: Callable[[], Launcher],
        hooks: HookDispatcher,
        logger: logging.Logger,
        rng: random.Random,
        resume: ResumePlan | None = None,
        scheduled_for: float | None = None,
    ) -> None:
        self.run_id = run_id
        self.scheduled_for = scheduled_for  # a schedule's run: its tick's due time
        self.dag = dag
        self.dag_name = dag.name
        specs, parents, children = dag.tables()  # read, never changed (copied if grown)
        self.specs: Mapping[str, TaskSpec] = specs
        self.parents: Mapping[str, tuple[str, ...]] = parents
        self.children: Mapping[str, tuple[str, ...]] = children
        self.triggers = dag.triggers
        # Tasks whose readiness needs a decision: a trigger rule, or a map to expand.
        self.special = dag.mapped.union(dag.triggers) if dag.mapped else dag.triggers
        self.context = context if context is not None else RunContext(None)
        self.store = store
        self.mark_running = _mark_running_of(store)
        # A store that commits on its own thread (SQLite): the loop never waits for it; a
        # success takes effect (events, children, cache) once its commit is durable.
        self.flush_later: FlushLater | None = getattr(store, "flush_later", None)
        self.unconfirmed: list[Held] = []  # reported since the last flush_later
        self.confirmed: list[Held] = []  # durable now: to take effect
        self.committed_events: list[HookEvent] = []  # durable now: for the hooks
        self.encoding_failures: dict[str, Exception] = {}  # results the store could not keep
        self.commits = 0  # group commits asked for and not over yet
        self.flushing = False  # in flush_later: a commit it makes itself ends inside it
        self.store_error: BaseException | None = None
        self.aborting = False
        self.deferred: list[Held] = []  # starts whose commit may wait a little
        self.start_timer: asyncio.TimerHandle | None = None  # when they may wait no more
        self.starts_due = False
        self.started = False  # a task launched since the last flush (its start to write)
        # How long a batch of mere starts may wait for its commit (SqliteStateStore's
        # start_delay_s): a task ending within it costs one commit instead of two.
        self.start_delay: float = getattr(store, "start_delay_s", 0.0)
        self.clock = clock
        self.limiter = limiter
        self._attempt_done = self.attempt_done  # bound once, not per attempt
        self._sync_launcher = sync_launcher  # the engine's, for its executor of the moment
        self.launch_async: Launcher = launch_async
        if hooks.in_attempt:  # a hook sets context variables for the attempts' own code
            self.launch_async = _in_attempt_context(hooks, dag.name, launch_async)
            self._sync_launcher = _sync_in_attempt_context(hooks, dag.name, sync_launcher)
        self.hooks = hooks
        self.logger = logger
        # Jitter comes from the clock when it offers random() (virtual clocks: reproducible).
        self.random: Callable[[], float] = getattr(clock, "random", None) or rng.random
        self.loop = asyncio.get_running_loop()
        self.virtual = hasattr(self.loop, "executor_jobs")
        self.loop_thread = threading.get_ident()
        self.kept: Mapping[str, TaskRecord] = {} if resume is None else resume.kept
        self.resumed_from = None if resume is None else resume.resumed_from
        self.kept_instances = {} if resume is None else resume.kept_instances
        self.reusable = {} if resume is None else resume.reusable
        # Working set: private to this run; the store stays the source of truth for reports.
        self.status: dict[str, str] = {n: r.status for n, r in self.kept.items()}
        self.results: dict[str, Any] = {} if resume is None else dict(resume.kept_results)
        self.waiting: dict[str, int] = {}  # per task: parents whose outcome it still awaits
        # Parents that did not succeed, counted only where a trigger rule needs them.
        self.omitted_parents: set[str] = set()  # all_success tasks that will be OMITTED
        self.errors: dict[str, str] = {}  # why a task FAILED, was SKIPPED or OMITTED
        self.consumers_left: dict[str, int] = {}
        self.ready: deque[ReadyEntry] = deque()
        self.now = 0.0  # monotonic time of the batch being handled: when its tasks got ready
        self.pooled = dag.pooled  # task -> (pool, slots), for the tasks of a pool
        self.pool_held: set[str] = set()  # ready or running tasks that hold their pool slots
        self.parked = 0  # ready tasks queued for their pool (in the limiter, not in ready)
        self.queued: dict[str, float] = {}  # seconds each task waited for slots, if any
        self.closed = False
        # Mapped tasks: instances join specs/parents/children (copies, grown by expansion).
        self.mapped = dag.mapped
        if dag.mapped:
            self.specs = dict(specs)
            self.parents = dict(parents)
            self.children = dict(children)
            self.pooled = dict(dag.pooled)
        self.instance_of: dict[str, str] = {}  # instance -> its mapped task
        self.instances: dict[str, list[str]] = {}  # mapped task -> instances, input order
        self.instances_left: dict[str, int] = {}  # mapped task -> instances not final yet
        self.items: dict[str, Any] = {}  # instance -> its item
        self.instance_results: dict[str, Any] = {}  # succeeded instance -> result
        # cache=True tasks (and their instances), and the cache key of each once looked up
        # ("" when an input could not be hashed: not cached this run).
        self.cached: set[str] = set(dag.cached)
        self.cache_keys: dict[str, str] = {}
        self.cache_hits: set[str] = set()  # served from the cache in this run
        self.running: set[Attempt] = set()
        self.sleeping: set[asyncio.Task[None]] = set()
        self.completed: list[Attempt] = []
        self.events: list[HookEvent] = []
        self.waiter: asyncio.Future[None] | None = None
        self.poked = False  # woken (retry due, slot granted) while not waiting
        self.wants_slot = False
        self.granted = 0
        # Decided once per run so the per-task path skips work nobody asked for.
        self.want_start = hooks.wants(TaskStartEvent)
        self.want_success = hooks.wants(TaskSuccessEvent)
        self.log_info = logger.isEnabledFor(logging.INFO)
        self.log_debug = logger.isEnabledFor(logging.DEBUG)

    # -- called from callbacks -----------------------------------------------------------
    def wake(self) -> None:
        self.poked = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def attempt_done(self, attempt: Attempt) -> None:
        self.completed.append(attempt)
        self.wake()

    def pool_granted(self, entry: ReadyEntry) -> None:
        """The limiter gave a parked task its pool slots: it is first in line for an engine
        slot."""
        self.parked -= 1
        self.pool_held.add(entry[0])
        self.ready.appendleft(entry)
        self.wake()

    # -- the run ---------------------------------------------------------------------------
    async def execute(self) -> str:
        started = self.clock.monotonic()
        try:
            self._create()
        except BaseException as exc:
            give_up_creating(self, exc)
            raise
        try:
            if self.hooks.wants(DagStartEvent):
                await self.hooks.emit(
                    DagStartEvent(self.run_id, self.dag_name, self.dag.order, self.resumed_from)
                )
            await self._drive()
        except BaseException as exc:
            await abort(self, exc, started)
            raise
        status = run_status(self.status.values())
        await self.finish(status, started)
        return self.run_id

    def _create(self) -> None:
        self.now = self.clock.monotonic()
        dag = self.dag
        order = dag.order
        _, parents, children = dag.tables()
        kept = self.kept
        # The run keeps its edges: it can be drawn without its code.
        tasks = {name: TaskRecord(deps=deps) for name, deps in parents.items()}
        for name in dag.mapped:
            tasks[name].mapped = True
        for name, record in kept.items():
            tasks[name] = replace(record, deps=parents[name])
        for own in self.kept_instances.values():  # a kept mapped task keeps its instances
            tasks.update(own)
        self.store.create_run(
            RunRecord(
                self.run_id,
                dag.name,
                self.clock.time(),
                tasks=tasks,
                targets=dag.targets,
                resumed_from=self.resumed_from,
                scheduled_for=self.scheduled_for,
            )
        )
        if self.flush_later is None:  # otherwise written by the first group commit
            self.store.flush()
        undecided: list[str] = []
        if kept:  # resume: kept tasks neither wait nor are waited for
            waiting = {n: sum(p not in kept for p in parents[n]) for n in order if n not in kept}
            consumers = {}
            for name in order:
                count = sum(c not in kept for c in children[name])
                if count:
                    consumers[name] = count
            self.results = {n: r for n, r in self.results.items() if n in consumers}
            for name in waiting:  # a kept OMITTED parent counts as omitted, its result None
                omitted = [p for p in parents[name] if p in kept and kept[p].status == OMITTED]
                if omitted:
                    self.omitted_parents.add(name)
                    self.results.update(dict.fromkeys(omitted, None))
                    self.errors.update((p, kept[p].error or "") for p in omitted)
        else:
            waiting = dag.in_degrees()
            consumers = {n: len(kids) for n, kids in children.items() if kids}
        self.waiting = waiting
        self.consumers_left = consumers
        self.status.update(dict.fromkeys(waiting, PENDING))
        special = self.special
        now = self.now
        if not kept and not special:
            self.ready.extend((name, 1, now) for name in dag.roots)
        elif not special and not self.omitted_parents:
            self.ready.extend((name, 1, now) for name, count in waiting.items() if count == 0)
        else:
            for name, count in waiting.items():
                if count == 0:
                    if name in special or name in self.omitted_parents:
                        undecided.append(name)
                    else:
                        self.ready.append((name, 1, now))
            for name in undecided:
                settle(self, name)
        if self.logger.isEnabledFor(logging.INFO):
            again = f" (resuming run {self.resumed_from})" if self.resumed_from else ""
            self.logger.info(
                "run %s of DAG %r started: %d task(s) to run%s",
                self.run_id,
                dag.name,
                len(self.waiting),
                again,
            )

    async def _drive(self) -> None:
        loop = self.loop
        self._pump()
        self._flush()
        while True:
            if self.store_error is not None:
                raise self.store_error
            if self.committed_events:
                await self._emit_committed()
            elif self.events and self.flush_later is None:
                await self._emit()
            if not self.completed and not self.poked:
                busy = self.running or self.ready or self.sleeping or self.parked
                if not busy and not self.commits and self.start_timer is None:
                    return
                self.waiter = loop.create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
            self.poked = False
            self.now = self.clock.monotonic()
            batch, self.completed = self.completed, []
            for attempt in batch:
                self._handle(attempt)
            if self.confirmed:
                self._take_effect()
            self._pump()
            if self.flush_later is None:
                self.store.flush()
            else:
                self._flush()

    def _flush(self) -> None:
        """Have the batch's transitions written: at once (in-memory store), or by the store's
        next group commit, after which the batch's successes take effect (``_take_effect``)."""
        flush_later = self.flush_later
        if flush_later is None:
            self.store.flush()
            return
        batch, self.unconfirmed = self.unconfirmed, []
        if self.deferred:  # starts held back by an earlier call, before what came since
            batch[:0] = self.deferred
            self.deferred = []
        if self.events:  # hooks see events once their transitions are committed
            batch.extend(self.events)
            self.events = []
        if (
            self.start_delay
            and (batch or self.started)
            and not self.starts_due
            and all(type(item) is TaskStartEvent for item in batch)
        ):  # only starts: a task ending within the delay joins the same commit
            self.started = False
            self.deferred = batch
            if self.start_timer is None:
                self.start_timer = self.loop.call_later(self.start_delay, self._starts_due)
            return
        if self.start_timer is not None:
            self.start_timer.cancel()
            self.start_timer = None
        self.starts_due = self.started = False
        self.commits += 1
        self._awaiting_thread(1)
        self.flushing = True
        try:
            later = flush_later(functools.partial(self._durable_soon, batch))
        finally:
            self.flushing = False
        if not later:
            self.commits -= 1  # nothing left to write: what they reported is durable already
            self._awaiting_thread(-1)
            if batch:
                self.confirmed.extend(batch)
                self.poked = True

    def _starts_due(self) -> None:
        self.start_timer = None
        self.starts_due = True
        self.wake()

    def _durable_soon(
        self, batch: list[Held], error: BaseException | None, failures: EncodingFailures
    ) -> None:
        """Where the commit ended (the store's writer thread, or the loop itself when the
        store committed in ``flush_later``): hand its outcome to the loop."""
        if threading.get_ident() == self.loop_thread:
            self._durable(batch, error, failures)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(self._durable, batch, error, failures)

    def _durable(
        self, batch: list[Held], error: BaseException | None, failures: EncodingFailures
    ) -> None:
        self.commits -= 1
        self._awaiting_thread(-1)
        if error is not None:
            if self.store_error is None:
                self.store_error = error
        elif not batch and not failures and self.flushing:
            return  # committed inside _flush with nothing held: no need to go round again
        else:
            self.confirmed.extend(batch)
            run_id = self.run_id
            for failed_run, task, exc in failures:
                if failed_run == run_id:
                    self.encoding_failures[task] = exc
        self.wake()

    def _awaiting_thread(self, change: int) -> None:
        """Count a commit in flight as work in a thread: a virtual-time loop
        (``flowrun.testing``) must not jump to its next timer while the writer works."""
        if self.virtual:
            self.loop.executor_jobs += change  # type: ignore[attr-defined]

    def after_durable(
        self, name: str, effect: Callable[[], None], failed: Callable[[Exception], None]
    ) -> None:
        """Run ``effect`` once the success of ``name`` is durable (now, with an in-memory
        store), or ``failed`` with the error if the store could not encode its result: no
        hook, child or report sees a success that a crash could lose."""
        if self.flush_later is None:
            effect()
        else:
            self._hold((name, effect, failed))

    def _hold(self, deferred: Deferred) -> None:
        unconfirmed = self.unconfirmed
        if self.events:  # the events before it stay before it
            unconfirmed.extend(self.events)
            self.events = []
        unconfirmed.append(deferred)

    def _take_effect(self) -> None:
        confirmed, self.confirmed = self.confirmed, []
        failures = self.encoding_failures
        events = self.committed_events
        for item in confirmed:
            if not isinstance(item, tuple):
                events.append(item)
                continue
            name, effect, failed = item
            error = failures.pop(name, None) if failures else None
            if error is None:
                effect()
            else:
                failed(error)

    async def _emit(self) -> None:
        events, self.events = self.events, []
        for event in events:
            await self.hooks.emit(event)

    async def _emit_committed(self) -> None:
        events, self.committed_events = self.committed_events, []
        for event in events:
            await self.hooks.emit(event)

    def _pump(self) -> None:
        """Launch ready tasks while the engine has free slots; a task of a pool takes its
        pool slots first, or is parked in the pool's queue without holding an engine slot."""
        ready = self.ready
        limiter = self.limiter
        acquire = limiter.acquire
        pooled = self.pooled
        now = self.now
        queued = self.queued
        launch = self._launch
        cached = self.cached
        if not pooled and not cached:  # the common case, kept tight
            while ready:
                if not acquire(self):
                    return
                name, number, since = ready.popleft()
                if since < now:  # it waited for a slot (over all attempts: queued_s)
                    queued[name] = (
                        now - since if number == 1 else queued.get(name, 0.0) + now - since
                    )
                launch(name, number)
            return
        while ready:
            entry = ready[0]
            name = entry[0]
            if cached and name in cached and name not in self.cache_keys:
                ready.popleft()  # a first look at the cache, before any slot is taken
                if served_from_cache(self, name):
                    continue
                ready.appendleft(entry)
            if pooled and name in pooled and name not in self.pool_held:
                ready.popleft()
                pool, slots = pooled[name]
                if not limiter.take_pool(self, pool, slots, entry):
                    self.parked += 1
                    continue
                self.pool_held.add(name)
                ready.appendleft(entry)
            if not acquire(self):
                return
            name, number, since = ready.popleft()
            if since < now:
                queued[name] = queued.get(name, 0.0) + (now - since)
            launch(name, number)

    def _launch(self, name: str, number: int) -> None:
        spec = self.specs[name]
        now = self.clock.time()
        queued = self.queued
        self.mark_running(self.run_id, name, number, now, queued.get(name, 0.0) if queued else 0.0)
        self.status[name] = RUNNING
        self.started = True
        plan = spec.plan
        context = None
        if plan.wants_context:
            context = self.context.for_attempt(
                self.run_id, self.dag_name, name, number, self.clock, self.scheduled_for
            )
            parents = self.parents[name]
            if name in self.triggers:
                status, errors = self.status, self.errors
                context.set_upstream({p: UpstreamState(status[p], errors.get(p)) for p in parents})
            else:
                context.set_upstream(parents)
        attempt = Attempt(
            self.loop, self.clock, self.run_id, spec, number, context, self._attempt_done, name
        )
        self.running.add(attempt)
        if self.pool_held and name in self.pool_held and not spec.is_async:
            attempt.track_return()  # its pool slots stay taken until the call returns
        if plan.params:
            item = self.items.get(name) if self.items else None
            args, kwargs = plan.build(context, self.results, self.parents[name], item)
        else:
            args, kwargs = _NO_ARGS, _NO_KWARGS
        if self.want_start:
            self.events.append(
                TaskStartEvent(self.run_id, self.dag_name, name, number, spec.max_attempts)
            )
        if self.log_debug:
            self.logger.debug(
                "launching task %r attempt %d/%d of run %s (%s)",
                name,
                number,
                spec.max_attempts,
                self.run_id,
                "async" if spec.is_async else "sync",
            )
        attempt.start_wall = now  # sync attempts on threads overwrite it when they really start
        attempt.start(args, kwargs, self.launch_async if spec.is_async else self._sync_launcher())

    def _handle(self, attempt: Attempt) -> None:
        self.running.discard(attempt)
        self.limiter.release()
        spec = attempt.spec
        name = attempt.name
        if self.pool_held and name in self.pool_held:
            self.release_pool(attempt)
        finished_wall = self.clock.time()
        duration = max(0.0, self.clock.monotonic() - attempt.start_mono)
        if attempt.warning is not None:
            note_warning(self, attempt)
        error: BaseException | None
        future = attempt.future
        assert future is not None
        if attempt.timed_out:
            error = attempt.timeout_error()
        elif future.cancelled():  # the task's own code raised CancelledError
            error = asyncio.CancelledError(f"task {name!r} raised CancelledError")
        else:
            error = future.exception()
        if error is None:
            result = future.result()
            error = self.record_success(attempt, result, finished_wall)
            if error is not None:  # e.g. a result the store cannot encode: no retry helps
                self._failed_for_good(attempt, error, finished_wall, duration)
            elif self.flush_later is None:
                self._succeeded(attempt, result, duration)
            else:
                self._succeed_once_durable(attempt, result, finished_wall, duration)
            return
        if isinstance(error, EscalatedError):
            error = error.original
        if isinstance(error, Omit):
            self._omitted_itself(attempt, error, finished_wall, duration)
            return
        if not isinstance(error, Exception) or isinstance(error, asyncio.CancelledError):
            self._failed_for_good(attempt, error, finished_wall, duration)
            raise error
        if attempt.number < spec.max_attempts and isinstance(error, spec.retry_on):
            retry(self, attempt, error, finished_wall, duration)
        else:
            self._failed_for_good(attempt, error, finished_wall, duration)

    def release_pool(self, attempt: Attempt) -> None:
        """Give the attempt's pool slots back: a sync call abandoned after its timeout (or an
        aborted run) keeps them until its thread or worker really returns, since it may still
        be using what the pool protects."""
        name = attempt.name
        self.pool_held.discard(name)
        pool, slots = self.pooled[name]
        release = self.limiter.release_pool
        attempt.when_call_returns(lambda: release(pool, slots))

    def record_success(self, attempt: Attempt, result: Any, finished: float) -> Exception | None:
        """Store a successful attempt; what the store raised instead (e.g. a result its
        serializer cannot encode), which fails the task."""
        spec = attempt.spec
        try:
            self.store.mark_success(
                self.run_id, attempt.name, attempt.start_wall, finished, result, spec.retain_result
            )
        except Exception as error:
            return error
        self.status[attempt.name] = SUCCESS
        return None

    def _succeed_once_durable(
        self, attempt: Attempt, result: Any, finished: float, duration: float
    ) -> None:
        effect = functools.partial(self._succeeded, attempt, result, duration)
        failed = functools.partial(
            self._failed_for_good, attempt, finished=finished, duration=duration
        )
        self._hold((attempt.name, effect, failed))

    def _succeeded(self, attempt: Attempt, result: Any, duration: float) -> None:
        """The success of ``attempt`` takes effect: events, cache, children."""
        name = attempt.name
        if self.want_success:
            self.events.append(
                TaskSuccessEvent(self.run_id, self.dag_name, name, attempt.number, duration, result)
            )
        if self.log_info:
            self.logger.info(
                "task %r succeeded (attempt %d, %.3fs)", name, attempt.number, duration
            )
        if self.cache_keys and self.cache_keys.get(name):
            remember(self, name, result)
        if self.instance_of:
            self.after_success(name, result)
        else:  # the common case, one call shorter
            self.children_may_start(name, result)

    def after_success(self, name: str, result: Any) -> None:
        """``name`` succeeded (ran, or was served from the cache) with ``result``."""
        if self.instance_of and name in self.instance_of:
            self.instance_results[name] = result
            self.consumed(name)
            instance_final(self, name)
            return
        self.children_may_start(name, result)

    def children_may_start(self, name: str, result: Any) -> None:
        """``name`` succeeded with ``result``: children that wait for nothing else start."""
        children = self.children[name]
        if children:
            if name in self.consumers_left:
                self.results[name] = result
            waiting = self.waiting
            special = self.special
            omitted = self.omitted_parents
            ready = self.ready
            for child in children:
                left = waiting.get(child)
                if left is None:
                    continue  # kept from the resumed run: it does not wait
                left -= 1
                waiting[child] = left
                if left == 0:
                    if child in special or child in omitted:
                        settle(self, child)
                    else:
                        ready.append((child, 1, self.now))
        self.consumed(name)

    def queue(self, name: str) -> None:
        """``name`` may run: queue it, or expand it if it is a mapped task."""
        if name in self.mapped:
            expand(self, name)
        else:
            self.ready.append((name, 1, self.now))

    def consumed(self, name: str) -> None:
        """``name`` is finished for good: its parents' results may no longer be needed."""
        consumers_left = self.consumers_left
        for parent in self.parents[name]:
            left = consumers_left.get(parent)
            if left is None:
                continue
            if left == 1:
                del consumers_left[parent]
                self.results.pop(parent, None)
            else:
                consumers_left[parent] = left - 1

    def _failed_for_good(
        self, attempt: Attempt, error: BaseException, finished: float, duration: float
    ) -> None:
        name = attempt.name
        text, trace = describe_failure(error)
        self.store.mark_failed(self.run_id, name, attempt.start_wall, finished, text, trace)
        self.status[name] = FAILED
        failure_event(self, attempt, duration, text, final=True)
        self.logger.warning("task %r failed after %d attempt(s): %s", name, attempt.number, text)
        self.logger.debug("traceback of task %r attempt %d:\n%s", name, attempt.number, trace)
        self.errors[name] = text
        self.consumed(name)
        if self.instance_of and name in self.instance_of:
            instance_final(self, name)
            return
        propagate(self, name)

    def _omitted_itself(
        self, attempt: Attempt, omit: Omit, finished: float, duration: float
    ) -> None:
        name = attempt.name
        reason = omit.reason or f"task {name!r} raised Omit"
        self.store.mark_omitted(self.run_id, [name], reason, finished)
        self.status[name] = OMITTED
        self.errors[name] = reason
        if self.hooks.wants(TaskOmitEvent):
            self.events.append(TaskOmitEvent(self.run_id, self.dag_name, name, reason))
        if self.log_info:
            self.logger.info("task %r omitted itself (%.3fs): %s", name, duration, reason)
        self.consumed(name)
        if self.instance_of and name in self.instance_of:
            instance_final(self, name)
            return
        propagate(self, name)

    def fail_outright(self, name: str, text: str) -> None:
        """``name`` failed for good without an attempt of its own (a mapped task's input or
        instances, a result the store could not keep)."""
        now = self.clock.time()
        self.store.mark_failed(self.run_id, name, now, now, text, None)
        self.status[name] = FAILED
        self.errors[name] = text
        self.logger.warning("task %r failed: %s", name, text)
        if self.hooks.wants(TaskFailureEvent):
            self.events.append(
                TaskFailureEvent(self.run_id, self.dag_name, name, 0, 1, 0.0, text, True)
            )
        self.consumed(name)
        if self.instance_of and name in self.instance_of:
            instance_final(self, name)
            return
        propagate(self, name)

    async def finish(self, status: str, started: float) -> None:
        self.store.finish_run(self.run_id, status, self.clock.time())
        if self.flush_later is None or self.aborting:
            self.store.flush()  # an aborted run's end is written even if the loop is going
        else:
            await self._durable_end()
        duration = self.clock.monotonic() - started
        log = self.logger.info if status == SUCCESS else self.logger.warning
        log("run %s of DAG %r finished: %s in %.3fs", self.run_id, self.dag_name, status, duration)
        if self.hooks.wants(DagEndEvent):
            self.events.append(DagEndEvent(self.run_id, self.dag_name, status, duration))
        await self._emit()

    async def _durable_end(self) -> None:
        """Wait, without blocking the loop, for the commit of the run's end."""
        assert self.flush_later is not None
        done: asyncio.Future[BaseException | None] = self.loop.create_future()

        def settle(error: BaseException | None) -> None:
            if not done.done():
                done.set_result(error)

        def over(error: BaseException | None, failures: EncodingFailures) -> None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(settle, error)

        if self.flush_later(over):
            self._awaiting_thread(1)
            try:
                error = await done
            finally:
                self._awaiting_thread(-1)
            if error is not None:
                raise error


def _in_attempt_context(hooks: HookDispatcher, dag_name: str, launch: Launcher) -> Launcher:
    """``launch`` inside a fresh copy of the current context, after the hooks'
    ``on_attempt_context`` set what they want in it: the attempt's asyncio task (created there)
    or its worker thread (``launcher_for`` copies the context it is called in) runs in it."""
    enter = hooks.enter_attempt

    def launch_in_context(
        attempt: Attempt, args: list[Any], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any]:
        spec = attempt.spec
        event = TaskStartEvent(
            attempt.run_id, dag_name, attempt.name, attempt.number, spec.max_attempts
        )
        context = contextvars.copy_context()
        context.run(enter, event)
        return context.run(launch, attempt, args, kwargs)

    return launch_in_context


def _sync_in_attempt_context(
    hooks: HookDispatcher, dag_name: str, sync_launcher: Callable[[], Launcher]
) -> Callable[[], Launcher]:
    """The engine's sync launcher of the moment (one per executor), wrapped once each."""
    wrapped: dict[Launcher, Launcher] = {}

    def launcher() -> Launcher:
        launch = sync_launcher()
        found = wrapped.get(launch)
        if found is None:
            found = wrapped[launch] = _in_attempt_context(hooks, dag_name, launch)
        return found

    return launcher


MarkRunning = Callable[[str, str, int, float, float], None]
_TAKES_QUEUED: weakref.WeakKeyDictionary[type[Any], bool] = weakref.WeakKeyDictionary()


def _mark_running_of(store: StateStoreProtocol) -> MarkRunning:
    """The store's ``mark_running``; a custom store written before ``queued_s`` joined it
    (four arguments) keeps working: it is called without it. Decided once per store type."""
    method = store.mark_running
    takes = _TAKES_QUEUED.get(type(store))
    if takes is None:
        try:
            params = inspect.signature(method).parameters.values()
        except (TypeError, ValueError):  # pragma: no cover - a builtin: assume the protocol
            takes = True
        else:
            kinds = [p.kind for p in params]
            takes = inspect.Parameter.VAR_POSITIONAL in kinds or len(kinds) >= 5
        _TAKES_QUEUED[type(store)] = takes
    if takes:
        return method

    def without_queued(run_id: str, task: str, attempt: int, started: float, _: float) -> None:
        method(run_id, task, attempt, started)

    return without_queued


_NO_ARGS: list[Any] = []  # shared by calls without parameters; never mutated
_NO_KWARGS: dict[str, Any] = {}
