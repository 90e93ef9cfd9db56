"""What a resume runs again and what it keeps: a pure function of the old run and the DAG."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._call_plan import Inject
from ._dag import DAG
from .errors import UnknownTaskError
from .state.records import OMITTED, RUNNING, SUCCESS, RunRecord, TaskRecord

__all__ = ["ResumePlan", "plan_resume"]


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """A resume, decided: run ``dag`` again except the ``kept`` tasks (with ``kept_results``,
    their retained results), as a continuation of run ``resumed_from``."""

    dag: DAG
    resumed_from: str
    kept: dict[str, TaskRecord] = field(default_factory=dict)
    kept_results: dict[str, Any] = field(default_factory=dict)


def plan_resume(old: RunRecord, full: DAG, from_tasks: Iterable[str] | None) -> ResumePlan:
    """Keep the final tasks of ``old`` (SUCCESS or OMITTED) that are not downstream of a task
    run again: of ``from_tasks`` or of one that did not end well (so a cleanup or alert task
    after a re-run one runs again too); plan the rest again. A kept task whose result was not
    retained is planned again too when a re-run task needs it. ``full`` is the DAG as it is
    registered now; a ``run_subgraph`` run resumes only its subgraph."""
    run_id = old.run_id
    if old.status == RUNNING:
        raise ValueError(
            f"run {run_id!r} of DAG {old.dag_name!r} is still RUNNING: resuming it now would "
            "execute its tasks twice. Wait for it to finish; if the process running it died, "
            "open the store with SqliteStateStore(..., recover=True) first"
        )
    dag = full if old.targets is None else full.subgraph(old.targets)
    failed = {n for n in dag.order if _status(old, n) not in _KEPT}
    if from_tasks is None:
        rerun = dag.descendants(failed)
    else:
        if isinstance(from_tasks, str):
            raise TypeError(
                f"from_tasks must be a list of task names; write from_tasks=[{from_tasks!r}]"
            )
        from_tasks = list(from_tasks)
        outside = [n for n in from_tasks if n in full.specs and n not in dag.specs]
        if outside:
            raise UnknownTaskError(
                old.dag_name,
                outside[0],
                dag.order,
                f"resume of run {run_id!r} (a run_subgraph run of targets "
                f"{list(old.targets or ())}, which does not include it)",
            )
        names = dag.check_names(from_tasks, f"resume of run {run_id!r}")
        if not names:
            raise ValueError(
                f"resume of run {run_id!r}: from_tasks is empty; pass None to re-run "
                "every task that did not succeed"
            )
        rerun = dag.descendants([*names, *failed])
    _add_unretained_inputs(dag, old, rerun)
    plan = ResumePlan(dag, run_id)
    for name in dag.order:
        if name not in rerun:
            record = old.tasks[name]
            plan.kept[name] = record
            if record.has_result:
                plan.kept_results[name] = record.result
    return plan


_KEPT = frozenset({SUCCESS, OMITTED})


def _status(run: RunRecord, name: str) -> str | None:
    record = run.tasks.get(name)
    return None if record is None else record.status


def _add_unretained_inputs(dag: DAG, old: RunRecord, rerun: set[str]) -> None:
    """A re-run task needs its parents' results: re-run the kept parents that have none."""
    stack = list(rerun)
    while stack:
        name = stack.pop()
        params = dag.specs[name].plan.params
        needed: Iterable[str]
        if any(p.source is Inject.UPSTREAM for p in params):
            needed = dag.parents[name]
        else:
            needed = [p.dep for p in params if p.source is Inject.RESULT]
        for parent in needed:
            record = old.tasks[parent]
            if parent not in rerun and record.status == SUCCESS and not record.has_result:
                rerun.add(parent)
                stack.append(parent)
