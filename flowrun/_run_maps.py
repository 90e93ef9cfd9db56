"""Mapped tasks within a run: expanding a mapped task into its instances, counting them down,
and its aggregate outcome. Functions of the ``Run`` (``_scheduler``), in their own module to
keep each to one concern; ``_mapping`` decides the items and keys."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, cast

from ._hooks import TaskMapEvent, TaskSuccessEvent
from ._mapping import MapInputError, instance_name, map_items
from ._resume import UNKNOWN
from ._run_outcomes import propagate, record_not_run
from .errors import describe
from .state.records import OMITTED, PENDING, RUNNING, SUCCESS, TaskRecord

if TYPE_CHECKING:
    from ._scheduler import Run
    from ._task import TaskSpec

__all__ = ["expand", "instance_final", "map_final"]


def expand(run: Run, name: str) -> None:
    """Every parent of the mapped task ``name`` succeeded: add one instance per item of
    its source's result (nodes and edges, O(items)) and queue them."""
    spec = run.specs[name]
    source = spec.map_source
    assert source is not None
    try:
        pairs = map_items(spec, run.results.get(source))
    except MapInputError as error:
        run.fail_outright(name, describe(error))
        return
    run.store.mark_running(run.run_id, name, 0, run.clock.time())
    run.status[name] = RUNNING
    parents = run.parents[name]
    specs = cast("dict[str, TaskSpec]", run.specs)
    parent_map = cast("dict[str, tuple[str, ...]]", run.parents)
    pool = run.pooled.get(name)
    pooled = cast("dict[str, tuple[str, int]]", run.pooled)
    status, items, instance_of, ready, now = (
        run.status,
        run.items,
        run.instance_of,
        run.ready,
        run.now,
    )
    names: list[str] = []
    records: dict[str, TaskRecord] = {}
    reusable = run.reusable.get(name)
    launched = 0
    for key, item in pairs:
        instance = instance_name(name, key)
        names.append(instance)
        if reusable is not None and key in reusable:
            record, old_item = reusable[key]
            if _same_item(old_item, item):  # resume: key and input unchanged
                records[instance] = replace(record, deps=parents, map_of=name)
                status[instance] = SUCCESS
                run.instance_results[instance] = record.result
                continue
        instance_of[instance] = name
        specs[instance] = spec
        parent_map[instance] = parents  # no children: its end goes to _instance_final
        if pool is not None:
            pooled[instance] = pool
        records[instance] = TaskRecord(deps=parents, map_of=name)
        status[instance] = PENDING
        items[instance] = item
        if spec.cache:
            run.cached.add(instance)
        ready.append((instance, 1, now))
        launched += 1
    if records:
        run.store.add_tasks(run.run_id, records)
    consumers_left = run.consumers_left
    for parent in parents:  # each instance reads its parents' results, as the task would
        if parent in consumers_left:
            consumers_left[parent] += launched
    run.instances[name] = names
    run.instances_left[name] = launched
    if run.hooks.wants(TaskMapEvent):
        run.events.append(TaskMapEvent(run.run_id, run.dag_name, name, tuple(names)))
    if run.log_info:
        kept = f", {len(names) - launched} kept from run {run.resumed_from}" if reusable else ""
        run.logger.info("task %r mapped over %d item(s) of %r%s", name, len(names), source, kept)
    if not launched:
        map_final(run, name)


def instance_final(run: Run, instance: str) -> None:
    name = run.instance_of[instance]
    left = run.instances_left[name] - 1
    run.instances_left[name] = left
    run.items.pop(instance, None)
    if left == 0:
        map_final(run, name)


def map_final(run: Run, name: str) -> None:
    """Every instance of ``name`` is final: FAILED if one failed, OMITTED if every one
    omitted itself, else SUCCESS with the succeeded instances' results in input order."""
    instances = run.instances[name]
    status = run.status
    now = run.clock.time()
    failed = [i for i in instances if status[i] != SUCCESS and status[i] != OMITTED]
    if failed:
        run.fail_outright(
            name, run.errors.get(failed[0], f"instance {failed[0]!r} {status[failed[0]]}")
        )
        return
    results = run.instance_results
    succeeded = [results.pop(i) for i in instances if status[i] == SUCCESS]
    if instances and not succeeded:
        status[name] = OMITTED
        run.errors[name] = f"every instance of task {name!r} was omitted"
        record_not_run(run, [name])
        propagate(run, name)
        return
    spec = run.specs[name]
    keep = spec.retain_result and not instances  # instances keep their own results
    run.store.mark_success(run.run_id, name, now, now, succeeded, keep)
    status[name] = SUCCESS

    def effect() -> None:
        if run.want_success:
            run.events.append(TaskSuccessEvent(run.run_id, run.dag_name, name, 0, 0.0, succeeded))
        run.children_may_start(name, succeeded)  # which also releases its parents' results

    run.after_durable(name, effect, lambda error: run.fail_outright(name, describe(error)))


def _same_item(old: object, new: object) -> bool:
    """Whether a resumed instance ran on this very input (never true for an unknown one)."""
    if old is UNKNOWN:
        return False
    try:
        return bool(old == new)
    except Exception:  # e.g. a DataFrame, whose == is elementwise: cannot tell, run again
        return False
