"""An immutable, validated DAG: topological order, parents and children of each task.

Everything here is iterative (no recursion), so a 100,000-task chain registered in any order
validates, sorts and renders without ``RecursionError``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ._options import ALL_SUCCESS
from ._task import TaskSpec
from .errors import (
    CrossDagDependencyError,
    CycleError,
    MissingDependencyError,
    UnknownTaskError,
)

__all__ = ["DAG", "build_dag"]


class DAG:
    """Built by ``build_dag``; never changes. ``specs`` iterate in topological order.

    ``specs``, ``parents`` and ``children`` are read-only views: the engine caches a DAG and
    every run of it shares it, so a caller must not be able to edit it under them.
    """

    __slots__ = (
        "_in_degree",
        "_tables",
        "cached",
        "children",
        "mapped",
        "name",
        "order",
        "parents",
        "pooled",
        "roots",
        "specs",
        "targets",
        "triggers",
    )

    def __init__(
        self,
        name: str,
        specs: dict[str, TaskSpec],
        parents: dict[str, tuple[str, ...]],
        children: dict[str, tuple[str, ...]],
        targets: tuple[str, ...] | None = None,
        in_degree: dict[str, int] | None = None,
    ) -> None:
        self.name = name
        self.specs: Mapping[str, TaskSpec] = MappingProxyType(specs)
        self.order = tuple(specs)
        self.parents: Mapping[str, tuple[str, ...]] = MappingProxyType(parents)
        self.children: Mapping[str, tuple[str, ...]] = MappingProxyType(children)
        self.targets = targets
        self._tables = (specs, parents, children)
        # What every run starts from, worked out once: each task's count of parents (a run
        # copies it), and the tasks with none, in order.
        if in_degree is None:
            in_degree = {n: len(deps) for n, deps in parents.items()}
        self._in_degree = in_degree
        self.roots = tuple(n for n, deps in parents.items() if not deps)
        # The few tasks with a trigger rule, a pool, a map or a cache, which a run's per-edge
        # path looks up (one pass, and one test per plain task).
        triggers: dict[str, str] = {}
        pooled: dict[str, tuple[str, int]] = {}
        mapped: set[str] = set()
        cached: set[str] = set()
        for n, s in specs.items():
            if not s.extras:
                continue
            if s.trigger != ALL_SUCCESS:
                triggers[n] = s.trigger
            if s.pool is not None:
                pooled[n] = (s.pool, s.pool_slots)
            if s.map_param is not None:
                mapped.add(n)
            if s.cache:
                cached.add(n)
        self.triggers: Mapping[str, str] = MappingProxyType(triggers)
        self.pooled: Mapping[str, tuple[str, int]] = MappingProxyType(pooled)
        self.mapped = frozenset(mapped)
        self.cached = frozenset(cached)

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, name):
            raise AttributeError(f"DAG {self.name!r} is immutable: cannot set {name!r}")
        object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.order)

    def tables(
        self,
    ) -> tuple[dict[str, TaskSpec], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
        """``specs``, ``parents`` and ``children`` as the dicts behind the views, for the
        engine's runs, which only read them: a lookup in a dict is the interpreter's fast
        path, one through a read-only view is not (several per task)."""
        return self._tables

    def in_degrees(self) -> dict[str, int]:
        """A new dict: each task's number of parents, in topological order."""
        return self._in_degree.copy()

    def __repr__(self) -> str:
        return f"DAG({self.name!r}, tasks={len(self)})"

    def check_names(self, names: Iterable[str], what: str) -> list[str]:
        """The names as a list; an unknown one raises with a close-match suggestion."""
        checked: list[str] = []
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"{what}: task names must be strings, got {name!r}")
            if name not in self.specs:
                raise UnknownTaskError(self.name, name, self.order, what)
            checked.append(name)
        return checked

    def ancestors(self, names: Iterable[str]) -> set[str]:
        """The names and every task they depend on, transitively."""
        return _closure(names, self.parents)

    def descendants(self, names: Iterable[str]) -> set[str]:
        """The names and every task that depends on them, transitively."""
        return _closure(names, self.children)

    def subgraph(self, targets: Iterable[str]) -> DAG:
        """The targets plus everything they need, as a DAG of its own (same name)."""
        wanted = self.check_names(targets, "run_subgraph")
        if not wanted:
            raise ValueError(
                f"run_subgraph of DAG {self.name!r} needs at least one target task; "
                f"tasks: {', '.join(self.order)}"
            )
        keep = self.ancestors(wanted)
        specs = {n: s for n, s in self.specs.items() if n in keep}
        parents = {n: self.parents[n] for n in specs}
        children = {n: tuple(c for c in self.children[n] if c in keep) for n in specs}
        return DAG(self.name, specs, parents, children, tuple(dict.fromkeys(wanted)))


def _closure(start: Iterable[str], edges: Mapping[str, tuple[str, ...]]) -> set[str]:
    seen = set(start)
    stack = list(seen)
    while stack:
        for nxt in edges[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def build_dag(
    name: str,
    tasks: Mapping[str, TaskSpec],
    all_dags: Mapping[str, Mapping[str, TaskSpec]],
) -> DAG:
    """Validate ``tasks`` (missing and cross-DAG dependencies, cycles) and sort them."""
    children: dict[str, list[str]] = {n: [] for n in tasks}
    waiting: dict[str, int] = {}
    ready: deque[str] = deque()
    for n, spec in tasks.items():
        deps = spec.deps
        waiting[n] = len(deps)
        if deps:
            for dep in deps:
                try:
                    children[dep].append(n)
                except KeyError:
                    raise _missing(name, spec, dep, tasks, all_dags) from None
        else:
            ready.append(n)
    # Kahn's algorithm; ties keep registration order so the order is deterministic. The
    # DAG's three maps are filled as tasks come out, in topological order.
    specs: dict[str, TaskSpec] = {}
    parents: dict[str, tuple[str, ...]] = {}
    kids: dict[str, tuple[str, ...]] = {}
    popleft, push = ready.popleft, ready.append
    in_degree: dict[str, int] = {}
    while ready:
        current = popleft()
        spec = tasks[current]
        specs[current] = spec
        parents[current] = spec.deps
        in_degree[current] = len(spec.deps)
        mine = children[current]
        kids[current] = tuple(mine)
        for child in mine:
            left = waiting[child] - 1
            waiting[child] = left
            if not left:
                push(child)
    if len(specs) != len(tasks):
        raise CycleError(name, _find_cycle(tasks, {n: c for n, c in waiting.items() if c}))
    return DAG(name, specs, parents, kids, in_degree=in_degree)


def _missing(
    dag: str,
    spec: TaskSpec,
    dep: str,
    tasks: Mapping[str, TaskSpec],
    all_dags: Mapping[str, Mapping[str, TaskSpec]],
) -> Exception:
    elsewhere = [other for other, specs in all_dags.items() if other != dag and dep in specs]
    if elsewhere:
        return CrossDagDependencyError(dag, spec.name, dep, elsewhere[0])
    return MissingDependencyError(dag, spec.name, dep, tasks)


def _find_cycle(tasks: Mapping[str, TaskSpec], waiting: Mapping[str, int]) -> list[str]:
    """Walk parents among the unsorted tasks (each has one) until a task repeats."""
    stuck = {n for n, count in waiting.items() if count > 0}
    node = next(n for n in tasks if n in stuck)
    path: list[str] = []
    position: dict[str, int] = {}
    while node not in position:
        position[node] = len(path)
        path.append(node)
        node = next(dep for dep in tasks[node].deps if dep in stuck)
    cycle = path[position[node] :]
    cycle.reverse()  # walked child -> parent; report upstream -> downstream
    rank = {name: i for i, name in enumerate(tasks)}
    first = min(range(len(cycle)), key=lambda i: rank[cycle[i]])
    cycle = cycle[first:] + cycle[:first]  # start at the earliest-registered task
    return [*cycle, cycle[0]]
