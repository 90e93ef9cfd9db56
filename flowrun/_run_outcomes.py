"""What follows an attempt that did not succeed, and a task that will not run: retries after
their back-off, failure events, the trigger rules applied to a task whose parents are final,
and failures and omissions carried downstream in one traversal; and the warning of an attempt
that went wrong without failing. Functions of the ``Run`` (``_scheduler``), in their own module
to keep each to one concern; ``_triggers`` holds the rules themselves."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ._hooks import TaskFailureEvent, TaskOmitEvent, TaskRetryEvent, TaskSkipEvent
from ._triggers import decide
from .errors import TaskTimeoutError, describe_failure
from .state.records import OMITTED, PENDING, SKIPPED, SUCCESS

if TYPE_CHECKING:
    from ._attempt import Attempt
    from ._scheduler import Run

__all__ = [
    "decided_not_to_run",
    "failure_event",
    "note_warning",
    "propagate",
    "record_not_run",
    "retry",
    "settle",
]


def settle(run: Run, name: str) -> None:
    """``name`` awaits no parent any more but has a rule, a map or an omitted parent: run
    (or expand) it, or make it SKIPPED or OMITTED and carry that downstream."""
    if decided_not_to_run(run, name):
        record_not_run(run, [name])
        propagate(run, name)


def decided_not_to_run(run: Run, name: str) -> bool:
    """Apply ``name``'s rule: queue it, or set its status and reason (the caller records)."""
    status = run.status
    outcome, reason = decide(
        run.triggers.get(name), ((p, status.get(p, SUCCESS)) for p in run.parents[name])
    )
    if outcome is None:
        run.queue(name)
        return False
    status[name] = outcome
    run.errors[name] = reason
    return True


def propagate(run: Run, origin: str) -> None:
    """``origin`` FAILED, was SKIPPED or OMITTED: tell its descendants, in one traversal.

    An ``all_success`` child of a failure is SKIPPED at once (as the original product
    skips); every other child counts the outcome and, once it awaits no parent, decides by
    its rule. Children that end up not running carry it on.
    """
    status = run.status
    waiting = run.waiting
    triggers = run.triggers
    consumers_left = run.consumers_left
    reason = f"upstream task {origin!r} failed"
    decided: list[str] = []
    stack = [origin]
    while stack:
        name = stack.pop()
        failure = status[name] != OMITTED
        if name in consumers_left:
            run.results[name] = None  # what a child that runs anyway receives
        for child in run.children[name]:
            if status[child] != PENDING:
                continue  # already decided, e.g. skipped through another failed parent
            if failure and child not in triggers:
                status[child] = SKIPPED
                run.errors[child] = reason
            else:
                if not failure:
                    run.omitted_parents.add(child)
                waiting[child] -= 1
                if waiting[child] or not decided_not_to_run(run, child):
                    continue
            decided.append(child)
            stack.append(child)
    if decided:
        record_not_run(run, decided)


def record_not_run(run: Run, names: list[str]) -> None:
    """Store, announce and log tasks that became SKIPPED or OMITTED (``run.errors`` holds
    why): one store call per status and reason, events in ``names`` order."""
    status, errors = run.status, run.errors
    groups: dict[tuple[str, str], list[str]] = {}
    for name in names:
        groups.setdefault((status[name], errors[name]), []).append(name)
    for (outcome, reason), group in groups.items():
        if outcome == SKIPPED:
            run.store.mark_skipped(run.run_id, group, reason)
        else:
            run.store.mark_omitted(run.run_id, group, reason)
    want_skip = run.hooks.wants(TaskSkipEvent)
    want_omit = run.hooks.wants(TaskOmitEvent)
    log_info = run.logger.isEnabledFor(logging.INFO)
    for name in names:
        run.consumed(name)
        skipped = status[name] == SKIPPED
        if want_skip if skipped else want_omit:
            event = TaskSkipEvent if skipped else TaskOmitEvent
            run.events.append(event(run.run_id, run.dag_name, name, errors[name]))
        if log_info:
            word = "skipped" if skipped else "omitted"
            run.logger.info("task %r %s: %s", name, word, errors[name])


def retry(run: Run, attempt: Attempt, error: Exception, finished: float, duration: float) -> None:
    spec = attempt.spec
    name = attempt.name
    delay = spec.retry_delay(attempt.number)
    if spec.retry_jitter and delay:
        delay *= 1.0 + spec.retry_jitter * (2.0 * run.random() - 1.0)
    text, trace = describe_failure(error)
    run.store.mark_retry(run.run_id, name, attempt.start_wall, finished, text, trace)
    run.status[name] = PENDING
    nxt = attempt.number + 1
    failure_event(run, attempt, duration, text, final=False)
    if run.hooks.wants(TaskRetryEvent):
        run.events.append(
            TaskRetryEvent(
                run.run_id,
                run.dag_name,
                name,
                attempt.number,
                nxt,
                spec.max_attempts,
                delay,
                duration,
                text,
            )
        )
    level = logging.WARNING if isinstance(error, TaskTimeoutError) else logging.INFO
    if run.logger.isEnabledFor(level):
        run.logger.log(
            level,
            "task %r attempt %d/%d failed: %s; retrying in %.3fs",
            name,
            attempt.number,
            spec.max_attempts,
            text,
            delay,
        )
    run.logger.debug("traceback of task %r attempt %d:\n%s", name, attempt.number, trace)
    if delay > 0:
        sleeper = run.loop.create_task(ready_after(run, name, nxt, delay))
        run.sleeping.add(sleeper)
    else:
        run.ready.append((name, nxt, run.now))


async def ready_after(run: Run, name: str, number: int, delay: float) -> None:
    try:
        await run.clock.sleep(delay)
    except Exception:  # a broken clock must not strand the task: retry it now
        run.logger.exception("clock.sleep(%r) failed; retrying task %r now", delay, name)
    finally:
        current = asyncio.current_task()
        if current is not None:
            run.sleeping.discard(current)
    run.ready.append((name, number, run.clock.monotonic()))
    run.wake()


def failure_event(run: Run, attempt: Attempt, duration: float, error: str, final: bool) -> None:
    if run.hooks.wants(TaskFailureEvent):
        spec = attempt.spec
        run.events.append(
            TaskFailureEvent(
                run.run_id,
                run.dag_name,
                attempt.name,
                attempt.number,
                spec.max_attempts,
                duration,
                error,
                final,
            )
        )


def note_warning(run: Run, attempt: Attempt) -> None:
    """The attempt left a warning (``attempt.warning``: it blocked the event loop past its
    timeout): log it, and keep it on the task's record when the store can (``add_warning`` of
    the built-in stores; a custom store without it still gets the log record)."""
    warning = attempt.warning
    if warning is None:
        return
    run.logger.warning("%s", warning)
    add = getattr(run.store, "add_warning", None)
    if add is not None:
        add(run.run_id, attempt.name, warning)
