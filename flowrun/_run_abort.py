"""How a run ends when it cannot go on: the store failing while the run is created, or a
cancellation or ``BaseException`` while it runs. Functions of the ``Run`` (``_scheduler``), in
their own module to keep each to one concern."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .errors import describe, describe_failure
from .state.records import FAILED, PENDING, RUNNING, SKIPPED

if TYPE_CHECKING:
    from ._scheduler import Run

__all__ = ["abort", "give_up_creating"]


def give_up_creating(run: Run, exc: BaseException) -> None:
    """The store failed while the run was being created (e.g. a database locked past its
    busy timeout): nothing ran, so mark everything SKIPPED and the run FAILED, so a later
    flush never leaves it RUNNING."""
    try:
        run.store.mark_skipped(run.run_id, list(run.dag.order), f"run not started: {describe(exc)}")
        run.store.finish_run(run.run_id, FAILED, run.clock.time())
    except Exception:  # the run may not exist in the store at all
        run.logger.debug("could not record the failed start of run %s", run.run_id)
    run.logger.warning("run %s of DAG %r could not start: %s", run.run_id, run.dag_name, exc)


async def abort(run: Run, exc: BaseException, started: float) -> None:
    """Finalize after a BaseException (cancellation, KeyboardInterrupt...) before it
    propagates: in-flight attempts FAILED, pending tasks SKIPPED, the run FAILED."""
    what = (
        "run cancelled"
        if isinstance(exc, asyncio.CancelledError)
        else (f"run aborted by {type(exc).__name__}")
    )
    for sleeper in run.sleeping:
        sleeper.cancel()
    run.sleeping.clear()
    settle_in_flight(run, what)
    skip_pending(run, what)
    run.closed = True  # pools no longer grant it slots
    for name, _, _ in run.ready:
        if name in run.pool_held:  # ready, holding pool slots, not launched
            run.pool_held.discard(name)
            run.limiter.release_pool(*run.pooled[name])
    run.ready.clear()
    run.limiter.give_back(run)
    run.events = []
    if run.start_timer is not None:
        run.start_timer.cancel()
        run.start_timer = None
    run.logger.warning("run %s of DAG %r: %s", run.run_id, run.dag_name, what)
    run.aborting = True  # its end is written at once, the loop may be going away
    try:
        await run.finish(FAILED, started)
    except BaseException:  # already propagating one exception; a hook must not mask it
        run.logger.exception("error while finalizing aborted run %s", run.run_id)


def settle_in_flight(run: Run, what: str) -> None:
    """Attempts that completed but were not handled yet keep their real outcome; the
    others are abandoned (a sync one runs on in its thread or worker) and FAILED."""
    finished = run.clock.time()
    for attempt in list(run.running):
        run.running.discard(attempt)
        run.limiter.release()
        name = attempt.name
        if name in run.pool_held:
            if not attempt.succeeded():
                attempt.abandon()  # before the release: the call may still be running
            run.release_pool(attempt)
        error_text = f"CancelledError: {what} while task {name!r} was running"
        trace = None
        future = attempt.future
        if attempt.succeeded() and future is not None:
            error = run.record_success(attempt, future.result(), finished)
            if error is None:
                continue
            error_text, trace = describe_failure(error)
        attempt.abandon()
        run.store.mark_failed(run.run_id, name, attempt.start_wall, finished, error_text, trace)
        run.status[name] = FAILED
    run.completed.clear()


def skip_pending(run: Run, what: str) -> None:
    pending = [n for n, s in run.status.items() if s == PENDING]
    if pending:
        run.store.mark_skipped(run.run_id, pending, what)
        for name in pending:
            run.status[name] = SKIPPED
    now = run.clock.time()
    for name in run.instances:  # a mapped task whose instances were cut short
        if run.status[name] == RUNNING:
            run.store.mark_failed(run.run_id, name, now, now, f"CancelledError: {what}", None)
            run.status[name] = FAILED
