"""What a resume runs again and what it keeps: a pure function of the old run and the DAG."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._call_plan import Inject
from ._dag import DAG
from ._mapping import MapInputError, instance_key, map_items
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
    # A kept mapped task's instances, copied as they are; a re-run one's succeeded instances,
    # by key, with the item each ran on (``_UNKNOWN`` when the old item cannot be told), to
    # keep those whose key and input are unchanged.
    kept_instances: dict[str, dict[str, TaskRecord]] = field(default_factory=dict)
    reusable: dict[str, dict[str, tuple[TaskRecord, Any]]] = field(default_factory=dict)


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
    dag = full if old.targets is None else _subgraph(old, full)
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
    instances: dict[str, dict[str, TaskRecord]] = {}
    for name, record in old.tasks.items():
        if record.map_of is not None:
            instances.setdefault(record.map_of, {})[name] = record
    results = _results(old, instances)
    _add_unretained_inputs(dag, old, rerun, results)
    plan = ResumePlan(dag, run_id)
    for name in dag.order:
        if name not in rerun:
            plan.kept[name] = old.tasks[name]
            if name in results:
                plan.kept_results[name] = results[name]
            if name in instances:
                plan.kept_instances[name] = instances[name]
        elif name in instances and name in dag.mapped:
            plan.reusable[name] = _reusable(dag, old, name, instances[name])
    return plan


def _subgraph(old: RunRecord, full: DAG) -> DAG:
    """The subgraph a ``run_subgraph`` run ran, as the DAG is now; a target since removed (or
    renamed) is named with the run it belonged to, not as a ``run_subgraph`` typo."""
    targets = list(old.targets or ())
    gone = [name for name in targets if name not in full.specs]
    if gone:
        raise UnknownTaskError(
            old.dag_name,
            gone[0],
            full.order,
            f"resume of run {old.run_id!r} (a run_subgraph run of targets {targets})",
            fix=(
                f"The target {gone[0]!r} was removed or renamed since that run. Register it "
                "again to resume the run, or start a new run of the tasks you want now: "
                f"engine.run_subgraph({old.dag_name!r}, [...]) (flowrun run TARGET "
                f"{old.dag_name} --target TASK)."
            ),
        )
    return full.subgraph(targets)


UNKNOWN = object()
"""The item an old instance ran on, when the old run no longer tells (its source's result
was not retained): such an instance runs again."""


def _results(old: RunRecord, instances: dict[str, dict[str, TaskRecord]]) -> dict[str, Any]:
    """The retained result of each task of ``old``; a mapped task's is its succeeded
    instances' results, when each of them was retained."""
    results = {n: r.result for n, r in old.tasks.items() if r.has_result and r.map_of is None}
    for name, own in instances.items():
        succeeded = [r for r in own.values() if r.status == SUCCESS]
        if all(r.has_result for r in succeeded) and old.tasks[name].status == SUCCESS:
            results[name] = [r.result for r in succeeded]
    return results


def _reusable(
    dag: DAG, old: RunRecord, name: str, own: dict[str, TaskRecord]
) -> dict[str, tuple[TaskRecord, Any]]:
    spec = dag.specs[name]
    source = old.tasks.get(spec.map_source or "")
    old_items: dict[str, Any] = {}
    if source is not None and source.has_result:
        try:
            old_items = dict(map_items(spec, source.result))
        except MapInputError:  # the source's result changed shape since: nothing to compare
            old_items = {}
    return {
        instance_key(name, instance): (record, old_items.get(instance_key(name, instance), UNKNOWN))
        for instance, record in own.items()
        if record.status == SUCCESS and (record.has_result or not spec.retain_result)
    }


_KEPT = frozenset({SUCCESS, OMITTED})


def _status(run: RunRecord, name: str) -> str | None:
    record = run.tasks.get(name)
    return None if record is None else record.status


def _add_unretained_inputs(
    dag: DAG, old: RunRecord, rerun: set[str], results: dict[str, Any]
) -> None:
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
            if parent in rerun:  # a task added since the old run is re-run: it has no record
                continue
            record = old.tasks[parent]
            if record.status == SUCCESS and parent not in results:
                rerun.add(parent)
                stack.append(parent)
