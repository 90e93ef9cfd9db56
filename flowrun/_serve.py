"""``engine.serve()``: run an engine's schedules until stopped, durably.

One driver coroutine per schedule sleeps on the engine's clock until the next tick, then
claims the tick in the state store (``record_tick``: the first claim of a (schedule, due
time) wins, so a restarted server continues where it stopped and two servers on one SQLite
file never both run a tick) and starts the run, or records why not. A server that was down
catches up by the schedule's ``catchup`` policy; a tick due while the schedule's previous run
is still running follows its ``overlap`` policy (checked within this server: another server's
runs are not waited for). Stopping (the ``stop`` event, ``until``, ``max_runs``) ends the
drivers first, then gives the runs in flight ``grace_s`` seconds before cancelling them, which
records them FAILED and resumable.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._schedules import DuePlan, Schedule, ScheduleError, plan_due
from .errors import UnknownRunError, describe
from .state.records import TickRecord

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["TickEvent", "TickStore", "serve"]

log = logging.getLogger("flowrun")

_STUCK_SLEEPS = 1000  # sleeps in a row that did not reach a tick: the clock does not move


@runtime_checkable
class TickStore(Protocol):
    """What a state store needs to serve schedules (both built-in stores have it)."""

    def record_tick(self, tick: TickRecord) -> bool: ...

    def update_tick(self, tick: TickRecord) -> None: ...

    def list_ticks(
        self, schedule: str | None = None, limit: int | None = None
    ) -> list[TickRecord]: ...


@dataclass(frozen=True, slots=True)
class TickEvent:
    """What became of one tick, for ``serve(on_tick=...)``: its schedule, its record and, for
    a tick that ran, the finished run's report (None for a skipped, missed or failed-to-start
    tick)."""

    schedule: Schedule
    tick: TickRecord
    report: dict[str, Any] | None


TickCallback = Callable[[TickEvent], None]


class _Server:
    def __init__(
        self,
        engine: Engine,
        schedules: Sequence[Schedule],
        store: TickStore,
        *,
        stop: asyncio.Event | None,
        until: float | None,
        max_runs: int | None,
        grace_s: float,
        on_tick: TickCallback | None,
    ) -> None:
        self.engine = engine
        self.clock = engine.clock
        self.store = store
        self.schedules = schedules
        self.external_stop = stop
        self.until = until
        self.max_runs = max_runs
        self.grace_s = grace_s
        self.on_tick = on_tick
        self.stopping = asyncio.Event()
        self.started = 0
        self.runs: dict[asyncio.Task[Any], TickRecord] = {}  # in flight, by their task
        self.queued: dict[str, deque[TickRecord]] = {s.name: deque() for s in schedules}
        self.idle = asyncio.Event()  # no run in flight
        self.idle.set()
        self.wait_all = False  # max_runs reached: the runs in flight finish, however long

    # -- the whole serve ---------------------------------------------------------------------
    async def serve(self) -> None:
        drivers = [
            asyncio.create_task(self._drive(s), name=f"serve {s.name}") for s in self.schedules
        ]
        watcher = None
        if self.external_stop is not None:
            watcher = asyncio.create_task(self._watch(self.external_stop))
        try:
            await asyncio.gather(*drivers)
            await self._drain()
        except BaseException:
            self.stopping.set()  # a queued tick must not start while the runs are cancelled
            for task in [*drivers, *self.runs]:
                task.cancel()
            await asyncio.gather(*drivers, *self.runs, return_exceptions=True)
            self._abandon_queued("the server was cancelled before the tick could run")
            raise
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _watch(self, event: asyncio.Event) -> None:
        await event.wait()
        self.stopping.set()

    async def _drain(self) -> None:
        """Wait for the runs in flight (and the queued ticks they lead to); once stopped, for
        ``grace_s`` seconds only, then cancel what is left (after ``max_runs``: all of them)."""
        while self.runs and (self.wait_all or not self.stopping.is_set()):
            idle = asyncio.create_task(self.idle.wait())
            waiters = {idle}
            if not self.wait_all:
                waiters.add(asyncio.create_task(self.stopping.wait()))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        if self.runs:
            await self._grace()
        self._abandon_queued("the server stopped before the tick could run")

    async def _grace(self) -> None:
        deadline = asyncio.create_task(self.clock.sleep(self.grace_s))
        try:
            while self.runs and not deadline.done():
                await asyncio.wait({*self.runs, deadline}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deadline.cancel()
        left = list(self.runs)
        if not left:
            return
        log.warning(
            "serve: %d run(s) still running after the %gs grace period: cancelling them (they "
            "are recorded FAILED; continue them with engine.resume(run_id))",
            len(left),
            self.grace_s,
        )
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    # -- one schedule ------------------------------------------------------------------------
    async def _drive(self, schedule: Schedule) -> None:
        newest = self.store.list_ticks(schedule.name, 1)
        now = self.clock.time()
        cursor = now
        if newest:  # a restart: what fell due while no server ran
            last = newest[0].due_at
            self._handle(schedule, plan_due(schedule, last, now, awake=False), catching_up=True)
            cursor = max(last, now)
        while not self.stopping.is_set():
            due = schedule.next_after(cursor)
            if self.until is not None and due > self.until:
                return
            if not await self._sleep_until(due):
                return
            now = self.clock.time()
            plan = plan_due(schedule, cursor, max(now, due), awake=True)
            self._handle(schedule, plan, catching_up=len(plan.run) > 1 or plan.missed > 0)
            cursor = max(now, due)

    async def _sleep_until(self, due: float) -> bool:
        """Sleep on the engine's clock until wall time ``due``; False if stopped first."""
        stuck = 0
        while True:
            if self.stopping.is_set():
                return False
            delay = due - self.clock.time()
            if delay <= 0:
                return True
            stuck += 1
            if stuck > _STUCK_SLEEPS:
                raise RuntimeError(
                    f"serve: the engine clock ({self.clock!r}) stayed at "
                    f"{self.clock.time()!r} through {_STUCK_SLEEPS} sleeps: its time does "
                    "not move with the event loop's (e.g. a SystemClock on a virtual-time "
                    "loop); serve on virtual time with flowrun.testing.serve_for, or "
                    "run_virtual(engine.serve(...), clock=engine.clock) with a VirtualClock"
                )
            sleeper = asyncio.create_task(self.clock.sleep(delay))
            waiter = asyncio.create_task(self.stopping.wait())
            try:
                await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waiter.cancel()

    def _handle(self, schedule: Schedule, plan: DuePlan, *, catching_up: bool) -> None:
        if plan.missed:
            assert plan.missed_first is not None
            assert plan.missed_last is not None
            span = (
                f"the tick due {schedule.local(plan.missed_first)} was"
                if plan.missed == 1
                else f"{plan.missed} ticks due from {schedule.local(plan.missed_first)} to "
                f"{schedule.local(plan.missed_last)} were"
            )
            policy = f"catchup={schedule.catchup!r}"
            if schedule.catchup == "all":
                policy += f" runs at most max_catchup={schedule.max_catchup}"
            tick = TickRecord(
                schedule.name,
                plan.missed_last,
                schedule.dag,
                "missed",
                reason=f"{span} not run: no server was running ({policy})",
                recorded_at=self.clock.time(),
            )
            if self.store.record_tick(tick):
                log.info("schedule %r: %s", schedule.name, tick.reason)
                self._tell(schedule, tick, None)
        for due in plan.run:
            self._submit(schedule, due, in_order=catching_up)

    def _submit(self, schedule: Schedule, due: float, *, in_order: bool) -> None:
        """A tick is due: start its run, or queue or skip it by the overlap policy. Ticks run
        to catch up go one after another unless ``overlap="allow"``."""
        if self.stopping.is_set():
            return
        overlap = schedule.overlap
        if in_order and overlap == "skip":
            overlap = "queue"
        active, queued = self._running(schedule), self.queued[schedule.name]
        busy = bool(active or queued)
        now = self.clock.time()
        if busy and overlap == "skip":
            running = active[0]
            tick = TickRecord(
                schedule.name,
                due,
                schedule.dag,
                "skipped",
                reason=f"run {running.run_id} of the tick due {schedule.local(running.due_at)} "
                "was still running (overlap='skip')",
                recorded_at=now,
            )
            if self.store.record_tick(tick):
                log.info("schedule %r: tick due %s skipped: %s", schedule.name, due, tick.reason)
                self._tell(schedule, tick, None)
            return
        if busy and overlap == "queue":
            tick = TickRecord(schedule.name, due, schedule.dag, "queued", recorded_at=now)
            if self.store.record_tick(tick):
                queued.append(tick)
            return
        tick = TickRecord(schedule.name, due, schedule.dag, "started", uuid.uuid4().hex, None, now)
        if self.store.record_tick(tick):
            self._start(schedule, tick)
        else:
            log.debug("schedule %r: the tick due %s was claimed elsewhere", schedule.name, due)

    def _start(self, schedule: Schedule, tick: TickRecord) -> None:
        assert tick.run_id is not None
        task = asyncio.create_task(self._run(schedule, tick), name=f"run {tick.run_id}")
        self.runs[task] = tick
        self.idle.clear()
        self.started += 1
        if self.max_runs is not None and self.started >= self.max_runs:
            self.wait_all = True  # start no more; the runs in flight finish
            self.stopping.set()

    async def _run(self, schedule: Schedule, tick: TickRecord) -> None:
        assert tick.run_id is not None
        try:
            await self.engine._run_scheduled(schedule.dag, tick.run_id, tick.due_at)
        except asyncio.CancelledError:
            self._tell_finished(schedule, tick)  # cancelled runs are recorded FAILED
            raise
        except Exception as exc:  # the run could not start (its context factory failed...)
            failed = replace(
                tick, outcome="error", reason=describe(exc), recorded_at=self.clock.time()
            )
            self.store.update_tick(failed)
            log.error(
                "schedule %r: the run of the tick due %s failed to start: %s",
                schedule.name,
                schedule.local(tick.due_at),
                failed.reason,
            )
            self._tell(schedule, failed, None)
        else:
            self._tell_finished(schedule, tick)
        finally:
            self._finished(schedule)

    def _running(self, schedule: Schedule) -> list[TickRecord]:
        """The schedule's runs in flight, oldest first (a handful: no index is kept)."""
        return [tick for tick in self.runs.values() if tick.schedule == schedule.name]

    def _tell_finished(self, schedule: Schedule, tick: TickRecord) -> None:
        assert tick.run_id is not None
        try:
            report = self.engine.get_run_report(tick.run_id)
        except UnknownRunError:  # cancelled before the run was created
            report = None
        self._tell(schedule, tick, report)

    def _finished(self, schedule: Schedule) -> None:
        task = asyncio.current_task()
        if task is not None:
            del self.runs[task]
        queued = self.queued[schedule.name]
        if queued and not self._running(schedule) and not self.stopping.is_set():
            waiting = queued.popleft()
            started = replace(
                waiting, outcome="started", run_id=uuid.uuid4().hex, recorded_at=self.clock.time()
            )
            self.store.update_tick(started)
            self._start(schedule, started)
        if not self.runs:
            self.idle.set()

    def _abandon_queued(self, reason: str) -> None:
        for schedule in self.schedules:
            queued = self.queued[schedule.name]
            while queued:
                tick = replace(
                    queued.popleft(),
                    outcome="skipped",
                    reason=reason,
                    recorded_at=self.clock.time(),
                )
                self.store.update_tick(tick)
                self._tell(schedule, tick, None)

    def _tell(self, schedule: Schedule, tick: TickRecord, report: dict[str, Any] | None) -> None:
        if self.on_tick is not None:
            self.on_tick(TickEvent(schedule, tick, report))


async def serve(
    engine: Engine,
    schedules: Sequence[Schedule],
    *,
    stop: asyncio.Event | None = None,
    until: float | None = None,
    max_runs: int | None = None,
    grace_s: float = 30.0,
    on_tick: TickCallback | None = None,
) -> None:
    """Serve ``schedules`` on ``engine`` (see ``Engine.serve``)."""
    if not schedules:
        raise ScheduleError(
            "serve: the engine has no schedules; declare one first, e.g. "
            "engine.dag('etl').schedule(cron='0 6 * * *') or engine.schedule('etl', every=900)"
        )
    store = engine.state_store
    if not isinstance(store, TickStore):
        raise TypeError(
            f"serve: the state store {type(store).__name__} cannot keep schedule ticks: it needs "
            "record_tick, update_tick and list_ticks (InMemoryStateStore and SqliteStateStore "
            "have them)"
        )
    for schedule in schedules:
        engine.resolve_dag_name(schedule.dag)  # an unknown DAG fails now, with a suggestion
    for name, value in (("until", until), ("grace_s", grace_s)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"serve: {name} must be a number of seconds (got {value!r})")
    if grace_s < 0:
        raise ValueError(f"serve: grace_s must be >= 0 (got {grace_s!r})")
    if max_runs is not None and (
        isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1
    ):
        raise ValueError(f"serve: max_runs must be an integer >= 1 or None (got {max_runs!r})")
    server = _Server(
        engine,
        schedules,
        store,
        stop=stop,
        until=until,
        max_runs=max_runs,
        grace_s=float(grace_s),
        on_tick=on_tick,
    )
    await server.serve()
