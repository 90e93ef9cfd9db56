"""What ``prune`` removes, decided the same way by both built-in stores: the arguments checked
once, and the choice of runs as a pure function of the history, newest first.

A run is pruned when every criterion given says so: it is not among the ``keep_last`` newest
runs of its DAG, and it was created more than ``older_than_s`` seconds before ``now``. A
RUNNING run is never pruned (it still counts among the newest runs of its DAG): its process
may be writing it. With no criterion at all, prune would delete every run, so that is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .records import RUNNING, PrunedRun

__all__ = ["PRUNED_FORMAT", "PruneRule", "choose", "prune_rule"]

PRUNED_FORMAT = ""
"""The ``result_format`` of a task whose result ``prune(results_only=True)`` dropped (no
serializer has an empty name), so a reader can say "pruned" rather than "no result"."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PruneRule:
    """``prune``'s criteria, checked: ``before`` is the creation time under which a run is old
    enough (None: age does not matter)."""

    keep_last: int | None
    before: float | None
    dag: str | None
    results_only: bool
    dry_run: bool


def prune_rule(
    keep_last: int | None,
    older_than_s: float | None,
    dag: str | None,
    results_only: bool,
    dry_run: bool,
    now: float | None,
    wall_time: Callable[[], float],
) -> PruneRule:
    """The checked criteria; ``ValueError``/``TypeError`` naming the argument and the fix.
    Age is measured from ``now`` (epoch seconds), by default ``wall_time()``: the store's
    clock, so that a test can prune on virtual time."""
    if keep_last is None and older_than_s is None:
        raise ValueError(
            "prune needs keep_last=N and/or older_than_s=SECONDS: with neither it would delete "
            "every run. To delete every run (of one DAG), say so: keep_last=0 (and dag=NAME)"
        )
    if keep_last is not None and (
        isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0
    ):
        raise ValueError(
            f"'keep_last' must be an int >= 0, the number of newest runs of each DAG to keep "
            f"(got {keep_last!r})"
        )
    before = None
    if older_than_s is not None:
        if (
            isinstance(older_than_s, bool)
            or not isinstance(older_than_s, (int, float))
            or not math.isfinite(older_than_s)
            or older_than_s < 0
        ):
            raise ValueError(
                f"'older_than_s' must be a finite number of seconds >= 0, e.g. 30 * 86400 for "
                f"30 days (got {older_than_s!r})"
            )
        if now is None:
            now = wall_time()
        elif isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise ValueError(f"'now' must be a wall time in epoch seconds, or None (got {now!r})")
        before = now - older_than_s
    if dag is not None and not isinstance(dag, str):
        raise TypeError(f"'dag' must be a DAG name (a str) or None (got {dag!r})")
    for label, flag in (("results_only", results_only), ("dry_run", dry_run)):
        if not isinstance(flag, bool):
            raise TypeError(f"{label!r} must be True or False (got {flag!r})")
    return PruneRule(keep_last, before, dag, results_only, dry_run)


def choose(runs: Iterable[tuple[PrunedRun, T]], rule: PruneRule) -> Iterator[tuple[PrunedRun, T]]:
    """The runs ``rule`` prunes, of ``runs`` given newest first (each with the store's own
    handle on it: a row id, a record), in that order."""
    seen: dict[str, int] = {}
    for run, handle in runs:
        if rule.dag is not None and run.dag_name != rule.dag:
            continue
        rank = seen[run.dag_name] = seen.get(run.dag_name, 0) + 1
        if run.status == RUNNING:
            continue
        if rule.keep_last is not None and rank <= rule.keep_last:
            continue
        if rule.before is not None and not run.created_at < rule.before:
            continue
        yield run, handle
