"""Task options: the one place that says which options a task takes, their types, defaults and
checks. Every decorator (``@engine.task``, ``@scope.task``, the global ``@task``, templates)
takes ``**options: Unpack[TaskOptionsDict]``, so adding an option is an edit of this module
(and mypy flags a misspelt option at the call site)."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypedDict, cast

from .errors import TaskDefinitionError, UnknownOptionError, suggest

__all__ = [
    "ALL_SUCCESS",
    "OPTION_NAMES",
    "TRIGGER_RULES",
    "TaskOptions",
    "TaskOptionsDict",
    "TriggerRule",
    "check_option_names",
    "closest_option",
]

DEFAULT_MAX_MAP = 10_000
"""Instances one mapped task may have unless ``max_map=`` says otherwise: a result longer than
that fails the task (never truncated), so a runaway input cannot flood a run."""

TriggerRule = Literal["all_success", "all_done", "none_failed", "one_failed"]
ALL_SUCCESS: TriggerRule = "all_success"
TRIGGER_RULES: tuple[TriggerRule, ...] = ("all_success", "all_done", "none_failed", "one_failed")
"""When a task runs, decided once every parent is final (``all_success`` decides earlier: at
its first failed parent, as the original product skips): ``all_success`` every parent
succeeded; ``all_done`` whatever they did (cleanup, always-notify); ``none_failed`` no parent
FAILED or was SKIPPED (a join after a branch that was omitted); ``one_failed`` a parent FAILED
or was SKIPPED (alerting). A rule not met because of a failure makes the task SKIPPED; one not
met without any failure makes it OMITTED."""


class TaskOptionsDict(TypedDict, total=False):
    """The keyword options of every task decorator (all optional)."""

    deps: Sequence[str | Callable[..., Any]] | None
    timeout_s: float | None
    retries: int
    retain_result: bool
    retry_delay_s: float
    retry_backoff: float
    retry_jitter: float
    retry_on: Iterable[type[BaseException]] | type[BaseException]
    trigger: TriggerRule
    pool: str | None
    pool_slots: int
    map: Mapping[str, str | Callable[..., Any]] | None
    map_key: Callable[[Any], object] | None
    max_map: int
    cache: bool
    cache_ttl_s: float | None
    cache_version: str


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """A task's checked options (``deps`` aside: the registry resolves those to names).

    ``TaskSpec`` extends it, so ``spec.retries`` and the like read these fields directly.
    """

    timeout_s: float | None = None
    retries: int = 0
    retain_result: bool = True
    retry_delay_s: float = 0.0
    retry_backoff: float = 2.0
    retry_jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    trigger: TriggerRule = ALL_SUCCESS
    pool: str | None = None
    pool_slots: int = 1
    # {parameter: upstream task}: one instance per item of the upstream's result
    map: Mapping[str, str | Callable[..., Any]] | None = None
    map_key: Callable[[Any], object] | None = None  # an item's key (default: its index)
    max_map: int = DEFAULT_MAX_MAP
    cache: bool = False
    cache_ttl_s: float | None = None
    cache_version: str = ""

    @classmethod
    def checked(cls, where: str, given: Mapping[str, Any]) -> TaskOptions:
        """The options in ``given`` (names already checked), validated and normalized;
        ``where`` (``"task 'x' in DAG 'd'"``) ends every message."""
        timeout_s = given.get("timeout_s")
        retries = given.get("retries", 0)
        retain_result = given.get("retain_result", True)
        retry_delay_s = given.get("retry_delay_s", 0.0)
        retry_backoff = given.get("retry_backoff", 2.0)
        retry_jitter = given.get("retry_jitter", 0.0)
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TaskDefinitionError(
                f"'retries' must be an int (got {retries!r}) for {where}",
                option="retries",
                got=retries,
            )
        if retries < 0:
            raise TaskDefinitionError(
                f"'retries' must be >= 0 (got {retries}) for {where}", option="retries", got=retries
            )
        if timeout_s is not None:
            if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
                raise TaskDefinitionError(
                    f"'timeout_s' must be a number or None (got {timeout_s!r}) for {where}",
                    option="timeout_s",
                    got=timeout_s,
                )
            if not timeout_s > 0 or math.isnan(timeout_s):
                raise TaskDefinitionError(
                    f"'timeout_s' must be > 0 or None (got {timeout_s}) for {where}; "
                    "use None for no timeout",
                    option="timeout_s",
                    got=timeout_s,
                )
        if not isinstance(retry_delay_s, (int, float)) or not 0 <= retry_delay_s < math.inf:
            raise TaskDefinitionError(
                f"'retry_delay_s' must be a finite number >= 0 (got {retry_delay_s!r}) for {where}",
                option="retry_delay_s",
                got=retry_delay_s,
            )
        if not isinstance(retry_backoff, (int, float)) or not 1 <= retry_backoff < math.inf:
            raise TaskDefinitionError(
                f"'retry_backoff' must be a finite number >= 1 (got {retry_backoff!r}) for {where}",
                option="retry_backoff",
                got=retry_backoff,
            )
        if not isinstance(retry_jitter, (int, float)) or not 0 <= retry_jitter <= 1:
            raise TaskDefinitionError(
                f"'retry_jitter' must be between 0 and 1 (got {retry_jitter!r}) for {where}",
                option="retry_jitter",
                got=retry_jitter,
            )
        if not isinstance(retain_result, bool):
            raise TaskDefinitionError(
                f"'retain_result' must be True or False (got {retain_result!r}) for {where}",
                option="retain_result",
                got=retain_result,
            )
        trigger = given.get("trigger", ALL_SUCCESS)
        if trigger not in TRIGGER_RULES:
            raise TaskDefinitionError(
                f"'trigger' must be one of {', '.join(map(repr, TRIGGER_RULES))} (got "
                f"{trigger!r}) for {where}.{suggest(str(trigger), TRIGGER_RULES)}",
                option="trigger",
                got=trigger,
            )
        pool = given.get("pool")
        if pool is not None and (not isinstance(pool, str) or not pool):
            raise TaskDefinitionError(
                f"'pool' must be the name of a pool (engine.pool(name, slots=...)) or None "
                f"(got {pool!r}) for {where}",
                option="pool",
                got=pool,
            )
        pool_slots = given.get("pool_slots", 1)
        if isinstance(pool_slots, bool) or not isinstance(pool_slots, int) or pool_slots < 1:
            raise TaskDefinitionError(
                f"'pool_slots' must be an int >= 1 (got {pool_slots!r}) for {where}",
                option="pool_slots",
                got=pool_slots,
            )
        if pool is None and pool_slots != 1:
            raise TaskDefinitionError(
                f"'pool_slots' needs a 'pool' (got pool_slots={pool_slots!r} without one) for "
                f"{where}; name the pool the task takes its slots from: pool='...'",
                option="pool_slots",
                got=pool_slots,
            )
        mapping = _checked_map(given, where, trigger)
        cache = given.get("cache", False)
        if not isinstance(cache, bool):
            raise TaskDefinitionError(
                f"'cache' must be True or False (got {cache!r}) for {where}",
                option="cache",
                got=cache,
            )
        cache_ttl_s = given.get("cache_ttl_s")
        if cache_ttl_s is not None and (
            isinstance(cache_ttl_s, bool)
            or not isinstance(cache_ttl_s, (int, float))
            or not 0 < cache_ttl_s < math.inf
        ):
            raise TaskDefinitionError(
                f"'cache_ttl_s' must be a finite number > 0 or None (no expiry) (got "
                f"{cache_ttl_s!r}) for {where}",
                option="cache_ttl_s",
                got=cache_ttl_s,
            )
        cache_version = given.get("cache_version", "")
        if not isinstance(cache_version, str):
            raise TaskDefinitionError(
                f"'cache_version' must be a string (got {cache_version!r}) for {where}",
                option="cache_version",
                got=cache_version,
            )
        for option, value in (("cache_ttl_s", cache_ttl_s), ("cache_version", cache_version)):
            if not cache and value:
                raise TaskDefinitionError(
                    f"{option!r} needs cache=True (got {option}={value!r} without it) for {where}",
                    option=option,
                    got=value,
                )
        if cache and not retain_result:
            raise TaskDefinitionError(
                f"'cache=True' needs the task's result, but retain_result=False drops it, for "
                f"{where}; keep the result or drop the cache",
                option="cache",
                got=cache,
            )
        return cls(
            timeout_s=None if timeout_s is None else float(timeout_s),
            retries=retries,
            retain_result=retain_result,
            retry_delay_s=float(retry_delay_s),
            retry_backoff=float(retry_backoff),
            retry_jitter=float(retry_jitter),
            retry_on=_exception_types(given.get("retry_on", (Exception,)), where),
            trigger=trigger,
            pool=pool,
            pool_slots=pool_slots,
            map=mapping[0],
            map_key=mapping[1],
            max_map=mapping[2],
            cache=cache,
            cache_ttl_s=None if cache_ttl_s is None else float(cache_ttl_s),
            cache_version=cache_version,
        )

    def options(self) -> dict[str, Any]:
        """These options as decorator keywords (``deps`` not included), e.g. to re-register."""
        return {name: getattr(self, name) for name in _OPTION_FIELDS}

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def retry_delay(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``, without jitter."""
        return self.retry_delay_s * self.retry_backoff ** (attempt - 1)


_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(TaskOptions))

OPTION_NAMES: frozenset[str] = frozenset(TaskOptionsDict.__annotations__)
"""Every keyword a task decorator takes besides ``name`` and ``dag``."""


# What people write for an option, out of habit or from other tools: spelling alone would
# suggest 'retry_on' for 'retry', a list of exception types where an int was meant.
_ALIASES: dict[str, str] = {
    "retry": "retries",
    "retrys": "retries",
    "max_retries": "retries",
    "num_retries": "retries",
    "retry_count": "retries",
    "attempts": "retries",
    "timeout": "timeout_s",
    "timeout_seconds": "timeout_s",
    "retry_delay": "retry_delay_s",
    "delay": "retry_delay_s",
    "backoff": "retry_backoff",
    "jitter": "retry_jitter",
    "depends_on": "deps",
    "dependencies": "deps",
    "upstream": "deps",
    "after": "deps",
    "trigger_rule": "trigger",
    "cache_ttl": "cache_ttl_s",
    "ttl": "cache_ttl_s",
}


def closest_option(key: str) -> str | None:
    """The task option ``key`` most likely stands for (an alias, another case, a misspelling),
    or None."""
    normal = key.lower().replace("-", "_")
    if normal in OPTION_NAMES:
        return normal
    if normal in _ALIASES:
        return _ALIASES[normal]
    matches = difflib.get_close_matches(normal, sorted(OPTION_NAMES), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _short(value: object, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # a value whose repr raises still gets its option named
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def check_option_names(
    given: Mapping[str, object], where: str, *, dag: str | None = None, task: str | None = None
) -> None:
    """A keyword that is no task option raises ``UnknownOptionError`` naming the task and the
    closest option (``dag``/``task`` fill the error's fields; ``where`` ends the message)."""
    for key, value in given.items():
        if key in OPTION_NAMES:
            continue
        closest = closest_option(key)
        hint = f" Did you mean {closest!r}?" if closest else ""
        raise UnknownOptionError(
            f"unknown task option {key!r} ({key}={_short(value)}) for {where}.{hint} Task options: "
            f"{', '.join(sorted(OPTION_NAMES))}",
            dag=dag,
            task=task,
            option=key,
            got=value,
        )


def _checked_map(
    given: Mapping[str, Any], where: str, trigger: str
) -> tuple[Mapping[str, str | Callable[..., Any]] | None, Callable[[Any], object] | None, int]:
    """``map``, ``map_key`` and ``max_map``, checked (the source is resolved to a task name,
    and made a dependency, by the registry)."""
    mapping = given.get("map")
    map_key = given.get("map_key")
    max_map = given.get("max_map", DEFAULT_MAX_MAP)
    if isinstance(max_map, bool) or not isinstance(max_map, int) or max_map < 1:
        raise TaskDefinitionError(
            f"'max_map' must be an int >= 1 (got {max_map!r}) for {where}",
            option="max_map",
            got=max_map,
        )
    if map_key is not None and not callable(map_key):
        raise TaskDefinitionError(
            f"'map_key' must be a function of one item returning its key, e.g. map_key=str "
            f"(got {map_key!r}) for {where}",
            option="map_key",
            got=map_key,
        )
    if mapping is None:
        unmapped = (("map_key", map_key, None), ("max_map", max_map, DEFAULT_MAX_MAP))
        for option, value, default in unmapped:
            if value != default:
                raise TaskDefinitionError(
                    f"{option!r} needs 'map' (got {option}={value!r} without it) for {where}",
                    option=option,
                    got=value,
                )
        return None, None, max_map
    example = "map={'table': list_tables}"
    if not isinstance(mapping, Mapping) or not mapping:
        raise TaskDefinitionError(
            f"'map' must be a dict of one parameter name to the upstream task whose result "
            f"it maps over, e.g. {example} (got {mapping!r}) for {where}",
            option="map",
            got=mapping,
        )
    if len(mapping) > 1:
        raise TaskDefinitionError(
            f"'map' takes exactly one mapped source (got {len(mapping)}: "
            f"{', '.join(map(repr, mapping))}) for {where}; map over one upstream and take the "
            "others whole through deps",
            option="map",
            got=mapping,
        )
    ((param, source),) = mapping.items()
    if not isinstance(param, str) or not param.isidentifier():
        raise TaskDefinitionError(
            f"'map' keys are parameter names of the task (got {param!r}) for {where}",
            option="map",
            got=mapping,
        )
    if not (isinstance(source, str) and source) and not callable(source):
        raise TaskDefinitionError(
            f"'map' values are upstream tasks, by name or function (got {source!r} for "
            f"parameter {param!r}) for {where}",
            option="map",
            got=mapping,
        )
    if trigger != ALL_SUCCESS:
        raise TaskDefinitionError(
            f"a mapped task runs once its source succeeded: trigger={trigger!r} cannot apply "
            f"to it, for {where}; put the rule on a task downstream of it",
            option="trigger",
            got=trigger,
        )
    return MappingProxyType(dict(mapping)), map_key, max_map


def _exception_types(retry_on: object, where: str) -> tuple[type[BaseException], ...]:
    kinds: tuple[Any, ...]
    if isinstance(retry_on, type):
        kinds = (retry_on,)
    else:
        try:
            kinds = tuple(cast("Iterable[Any]", retry_on))
        except TypeError:  # one exception instance or another non-iterable: reported below
            kinds = (retry_on,)
    for kind in kinds:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise TaskDefinitionError(
                f"'retry_on' must hold exception types (got {kind!r}) for {where}",
                option="retry_on",
                got=kind,
            )
    return kinds
