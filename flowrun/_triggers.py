"""Trigger rules: given the final statuses of a task's parents, does it run, or is it SKIPPED
(blocked by a failure) or OMITTED (left out, no failure involved)?"""

from __future__ import annotations

from collections.abc import Iterable

from .state.records import FAILED, OMITTED, SKIPPED

__all__ = ["decide"]


def decide(rule: str | None, parents: Iterable[tuple[str, str]]) -> tuple[str | None, str]:
    """``(None, "")`` to run the task, else ``(SKIPPED or OMITTED, reason)``.

    ``rule`` is the task's trigger (None for ``all_success``); ``parents`` are its parents'
    ``(name, status)``, all final, except for ``all_success``, which is decided as soon as it
    cannot run (its first failed parent skips it; the scheduler does that itself).
    """
    failed: list[str] = []
    omitted: list[str] = []
    for name, status in parents:
        if status in (FAILED, SKIPPED):
            failed.append(name)
        elif status == OMITTED:
            omitted.append(name)
    if rule is None or rule == "all_success":
        if failed:
            return SKIPPED, f"upstream task {failed[0]!r} failed"
        if omitted:
            return OMITTED, f"upstream task {omitted[0]!r} was omitted"
        return None, ""
    if rule == "none_failed":
        if failed:
            return SKIPPED, (
                f"trigger rule 'none_failed' not met: upstream task {failed[0]!r} "
                "failed or was skipped"
            )
        return None, ""
    if rule == "one_failed":
        if failed:
            return None, ""
        return OMITTED, "trigger rule 'one_failed' not met: no upstream task failed"
    return None, ""  # all_done: whatever the parents did
