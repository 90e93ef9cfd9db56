"""The cache within a run (``@task(cache=True)``): looking a task up before it takes any slot,
and keeping its result once it succeeded. Functions of the ``Run`` (``_scheduler``); the keys
and digests are ``_cache``'s, the entries live in the state store.

A task's key is its fingerprint (code, ``cache_version``, template arguments) and its inputs:
for each parent, the parent's own cache key when its result came from the cache (digesting it
again would cost as much as it saved), else a digest of the parent's result, so a parent that
ran again and returned other data changes its children's keys; a mapped instance's item
stands for its mapped source's whole result. An input that
cannot be hashed leaves the task uncached for the run, with a warning: never a failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._cache import CacheKeyError, cache_key, value_digest
from ._hooks import TaskSuccessEvent
from .errors import describe
from .state.records import SUCCESS, CacheEntry

if TYPE_CHECKING:
    from ._scheduler import Run

__all__ = ["remember", "served_from_cache"]


def served_from_cache(run: Run, name: str) -> bool:
    """Look ``name`` up (once per run, before its first attempt); on a hit it is SUCCESS with
    attempt 0 and ``cached_from``, and its children may start, as after a run of it."""
    spec = run.specs[name]
    key = _key(run, name)
    run.cache_keys[name] = key
    if not key:
        return False
    now = run.clock.time()
    entry = run.store.cache_get(key, now)
    if entry is None:
        return False
    run.store.mark_cached(run.run_id, name, now, entry.result, spec.retain_result, entry.run_id)
    run.status[name] = SUCCESS
    run.cache_hits.add(name)

    def effect() -> None:
        if run.want_success:
            run.events.append(
                TaskSuccessEvent(run.run_id, run.dag_name, name, 0, 0.0, entry.result)
            )
        if run.log_info:
            run.logger.info(
                "task %r served from the cache (computed by run %s)", name, entry.run_id
            )
        run.after_success(name, entry.result)

    run.after_durable(name, effect, lambda error: run.fail_outright(name, describe(error)))
    return True


def remember(run: Run, name: str, result: Any) -> None:
    """Keep the result of ``name``, which ran and succeeded, under the key it was looked up
    with; a result the store cannot encode is not cached (a warning, the run goes on)."""
    spec = run.specs[name]
    now = run.clock.time()
    ttl = spec.cache_ttl_s
    entry = CacheEntry(
        run.cache_keys[name],
        run.dag_name,
        run.instance_of.get(name, name),  # an instance's entry is cleared with its task's
        run.run_id,
        now,
        None if ttl is None else now + ttl,
        result,
    )
    try:
        run.store.cache_put(entry)
    except Exception as error:
        run.logger.warning("the result of task %r is not cached: %s", name, describe(error))


def _key(run: Run, name: str) -> str:
    spec = run.specs[name]
    instance = name in run.instance_of
    inputs: list[tuple[str, str]] = []
    try:
        for parent in run.parents[name]:
            if instance and parent == spec.map_source:
                item = run.items.get(name)
                inputs.append(("[item]", value_digest(item, what=f"the item of {name!r}")))
                continue
            if parent in run.cache_hits:
                inputs.append((parent, "key:" + run.cache_keys[parent]))
            elif parent in run.results:
                what = f"the result of task {parent!r}"
                inputs.append((parent, value_digest(run.results[parent], what=what)))
            else:  # e.g. a parent kept by a resume whose result was not retained
                raise CacheKeyError(f"the result of task {parent!r} is not at hand")
    except CacheKeyError as error:
        run.logger.warning("task %r is not cached in this run: %s", name, error)
        return ""
    return cache_key(spec.cache_fingerprint, inputs)
