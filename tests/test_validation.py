"""Bad task options, DAG validation (missing/cross-DAG deps, cycles), discovery, big DAGs."""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from support import new_clock

import flowrun
from flowrun import (
    DEFAULT_DAG,
    CrossDagDependencyError,
    CycleError,
    DagValidationError,
    DuplicateTaskError,
    Engine,
    MissingDependencyError,
    SchedulerConfig,
    TaskDefinitionError,
    TaskRegistry,
    UnknownDagError,
    UnknownTaskError,
    build_default_engine,
)
from flowrun.testing import run_dag


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with build_default_engine() as eng:
        yield eng


def noop() -> None:
    return None


def _assert_topological(engine: Engine, dag: str, order: list[str]) -> None:
    position = {name: i for i, name in enumerate(order)}
    assert len(position) == len(order)
    for name in order:
        for dep in engine.registry.tasks_of(engine.resolve_dag_name(dag))[name].deps:
            assert position[dep] < position[name], (dep, name)


# -- bad task options ---------------------------------------------------------------------------

BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"retries": -1}, r"'retries' must be >= 0 \(got -1\)"),
    ({"retries": 1.5}, r"'retries' must be an int \(got 1.5\)"),
    ({"retries": "2"}, r"'retries' must be an int \(got '2'\)"),
    ({"retries": True}, r"'retries' must be an int \(got True\)"),
    ({"timeout_s": 0}, r"'timeout_s' must be > 0"),
    ({"timeout_s": -2.5}, r"'timeout_s' must be > 0 or None \(got -2.5\)"),
    ({"timeout_s": float("nan")}, r"'timeout_s' must be > 0"),
    ({"timeout_s": "30"}, r"'timeout_s' must be a number or None \(got '30'\)"),
    ({"retry_delay_s": -1}, r"'retry_delay_s' must be a finite number >= 0 \(got -1\)"),
    ({"retry_delay_s": math.inf}, r"'retry_delay_s' must be a finite number >= 0 \(got inf\)"),
    ({"retry_backoff": 0.5}, r"'retry_backoff' must be a finite number >= 1 \(got 0.5\)"),
    ({"retry_backoff": math.inf}, r"'retry_backoff' must be a finite number >= 1 \(got inf\)"),
    ({"retry_jitter": -0.1}, r"'retry_jitter' must be between 0 and 1 \(got -0.1\)"),
    ({"retry_jitter": 1.5}, r"'retry_jitter' must be between 0 and 1 \(got 1.5\)"),
    ({"retry_on": [int]}, r"'retry_on' must hold exception types \(got <class 'int'>\)"),
    ({"retry_on": ValueError("x")}, r"'retry_on' must hold exception types"),
    ({"retry_on": ["ValueError"]}, r"'retry_on' must hold exception types \(got 'ValueError'\)"),
    ({"retain_result": "no"}, r"'retain_result' must be True or False"),
    ({"deps": "extract"}, r"'deps' must be a list.*write deps=\['extract'\]"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_option_names_option_task_and_dag(
    engine: Engine, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TaskDefinitionError, match=message) as info:
        engine.task(name="load", dag="daily_etl", **options)(noop)
    assert "task 'load' in DAG 'daily_etl'" in str(info.value)
    assert engine.list_dags() == []  # nothing half-registered


def test_bad_option_in_unscoped_task_names_the_default_dag(engine: Engine) -> None:
    with pytest.raises(TaskDefinitionError, match=rf"task 'noop' in DAG '{DEFAULT_DAG}'"):
        engine.task(retries=-3)(noop)


def test_bad_option_through_dag_scope(engine: Engine) -> None:
    with pytest.raises(TaskDefinitionError, match=r"'timeout_s'.*task 'x' in DAG 'etl'"):
        engine.dag("etl").task("x", timeout_s=0)(noop)


def test_good_edge_values_are_accepted(engine: Engine) -> None:
    engine.task(
        name="ok",
        dag="d",
        retries=0,
        timeout_s=0.001,
        retry_delay_s=0,
        retry_backoff=1,
        retry_jitter=1,
        retry_on=(OSError, KeyboardInterrupt),
    )(noop)
    spec = engine.registry.tasks_of("d")["ok"]
    assert spec.retry_on == (OSError, KeyboardInterrupt)


@pytest.mark.parametrize(
    ("kwargs", "field", "got"),
    [
        ({"max_parallel": 0}, "max_parallel", "0"),
        ({"max_parallel": -4}, "max_parallel", "-4"),
        ({"max_parallel": 2.0}, "max_parallel", "2.0"),
        ({"max_workers": 0}, "max_workers", "0"),
        ({"max_workers": "8"}, "max_workers", "'8'"),
    ],
)
def test_bad_engine_limits(kwargs: dict[str, Any], field: str, got: str) -> None:
    with pytest.raises(ValueError, match=rf"'{field}' must be .*>= 1.*\(got {got}\)"):
        build_default_engine(**kwargs)


def test_scheduler_config_limits() -> None:
    assert SchedulerConfig(max_parallel=1, max_workers=1).max_parallel == 1
    with pytest.raises(ValueError, match="max_parallel"):
        SchedulerConfig(max_parallel=0)


def test_bad_executor_is_rejected() -> None:
    with pytest.raises(TypeError, match="Executor"):
        build_default_engine(executor=object())  # type: ignore[arg-type]


def test_generator_function_is_rejected(engine: Engine) -> None:
    def rows() -> Iterator[int]:
        yield 1

    with pytest.raises(TaskDefinitionError, match=r"task 'rows' in DAG 'etl' is a generator"):
        engine.task(dag="etl")(rows)
    assert engine.list_dags() == []


def test_async_generator_function_is_rejected(engine: Engine) -> None:
    async def stream() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(
        TaskDefinitionError, match=r"task 'stream' in DAG 'etl' is an async generator"
    ):
        engine.task(dag="etl")(stream)


def test_object_with_generator_call_is_rejected(engine: Engine) -> None:
    class Rows:
        def __call__(self) -> Iterator[int]:
            yield 1

    with pytest.raises(TaskDefinitionError, match=r"'rows'.*'etl'.*generator"):
        engine.task("rows", dag="etl")(Rows())


def test_non_callable_task_is_rejected(engine: Engine) -> None:
    with pytest.raises(TaskDefinitionError, match="callable"):
        engine.registry.build_spec(42)  # type: ignore[arg-type]


def test_a_callable_with_an_unreadable_signature_is_a_definition_error() -> None:
    engine = build_default_engine(clock=new_clock())

    def odd() -> None:
        return None

    odd.__signature__ = "not a signature"  # type: ignore[attr-defined]

    with pytest.raises(TaskDefinitionError, match=r"cannot read the signature of task 'odd'"):
        engine.task(name="odd", dag="d")(odd)
    assert engine.list_dags() == []


def test_template_of_a_function_with_an_unreadable_signature_cannot_be_bound() -> None:
    engine = build_default_engine(clock=new_clock())

    def odd(x: int) -> int:
        return x

    odd.__signature__ = "not a signature"  # type: ignore[attr-defined]
    template = engine.task_template(odd, dag="d")

    with pytest.raises(TaskDefinitionError, match=r"cannot read the signature of task 'one'"):
        template.bind("one", x=1)
    assert engine.list_dags() == []


def test_duplicate_task_name_in_one_dag_names_both(engine: Engine) -> None:
    def first_impl() -> int:
        return 1

    def second_impl() -> int:
        return 2

    engine.task("load", dag="etl")(first_impl)
    with pytest.raises(DuplicateTaskError, match=r"'load'.*'etl'") as info:
        engine.task("load", dag="etl")(second_impl)
    message = str(info.value)
    assert "first_impl" in message
    assert "second_impl" in message
    assert engine.registry.tasks_of("etl")["load"].func is first_impl


def test_duplicate_through_bare_decorator(engine: Engine) -> None:
    engine.task(noop)
    with pytest.raises(DuplicateTaskError, match=rf"'noop'.*'{DEFAULT_DAG}'"):
        engine.task(noop)


def test_same_name_in_two_dags_is_fine(engine: Engine) -> None:
    engine.task("load", dag="a")(noop)
    engine.task("load", dag="b")(noop)
    engine.validate("a")
    engine.validate("b")
    assert engine.list_tasks("a") == ["load"]
    assert engine.list_tasks("b") == ["load"]


def test_binding_a_template_twice_under_one_name_names_the_template_function() -> None:
    engine = build_default_engine(clock=new_clock())

    def fetch(url: str) -> str:
        return url

    template = engine.task_template(fetch, dag="d")
    template.bind("get", url="a")

    with pytest.raises(
        DuplicateTaskError, match=r"'get' in DAG 'd'.*already registered by .*fetch"
    ):
        template.bind("get", url="b")


def test_a_partial_registered_twice_names_the_wrapped_function() -> None:
    registry = TaskRegistry()

    def work(n: int) -> int:
        return n

    registry.task(name="w", dag="d")(functools.partial(work, 1))

    with pytest.raises(DuplicateTaskError, match=r"already registered by .*work, now by .*work"):
        registry.task(name="w", dag="d")(functools.partial(work, 2))


# -- validation and discovery -------------------------------------------------------------------


def test_validate_returns_none_and_list_dags_keeps_registration_order(engine: Engine) -> None:
    engine.task("x", dag="zeta")(noop)
    engine.task("y", dag="alpha")(noop)
    engine.task("z", dag="zeta")(noop)
    assert engine.list_dags() == ["zeta", "alpha"]
    assert engine.validate("zeta") is None  # type: ignore[func-returns-value]


def test_list_dags_of_an_empty_engine(engine: Engine) -> None:
    assert engine.list_dags() == []


def _register_diamond(engine: Engine) -> None:
    # Registered downstream first: the order must come from the edges, not registration.
    engine.task("report", dag="d", deps=["left", "right"])(noop)
    engine.task("right", dag="d", deps=["root"])(noop)
    engine.task("left", dag="d", deps=["root"])(noop)
    engine.task("root", dag="d")(noop)


def test_list_tasks_is_topological_and_deterministic(engine: Engine) -> None:
    _register_diamond(engine)
    order = engine.list_tasks("d")
    assert sorted(order) == ["left", "report", "right", "root"]
    assert order[0] == "root"
    assert order[-1] == "report"
    _assert_topological(engine, "d", order)
    assert engine.list_tasks("d") == order

    other = build_default_engine()
    _register_diamond(other)
    assert other.list_tasks("d") == order


def test_independent_tasks_keep_registration_order(engine: Engine) -> None:
    for name in ("zulu", "alpha", "mike", "bravo"):
        engine.task(name, dag="d")(noop)
    assert engine.list_tasks("d") == ["zulu", "alpha", "mike", "bravo"]


def test_missing_dependency_suggests_close_match(engine: Engine) -> None:
    engine.task("extract", dag="etl")(noop)
    engine.task("transform", dag="etl", deps=["extrct"])(noop)
    with pytest.raises(
        MissingDependencyError,
        match=r"'transform' in DAG 'etl' depends on 'extrct'.*Did you mean 'extract'\?",
    ):
        engine.validate("etl")


def test_missing_dependency_without_close_match(engine: Engine) -> None:
    engine.task("extract", dag="etl")(noop)
    engine.task("transform", dag="etl", deps=["zzzzzz"])(noop)
    with pytest.raises(MissingDependencyError, match=r"'transform'.*'zzzzzz'") as info:
        engine.validate("etl")
    assert "Did you mean" not in str(info.value)


def test_validation_errors_surface_on_every_entry_point(engine: Engine) -> None:
    engine.task("transform", dag="etl", deps=["nope"])(noop)
    with pytest.raises(MissingDependencyError):
        engine.list_tasks("etl")
    with pytest.raises(MissingDependencyError):
        engine.display_dag("etl")
    with pytest.raises(MissingDependencyError):
        engine.dag("etl").validate()
    with pytest.raises(MissingDependencyError):
        asyncio.run(engine.run_once("etl"))
    assert engine.list_runs() == []  # validation happens before a run is created


def test_cross_dag_dependency_names_the_other_dag(engine: Engine) -> None:
    engine.task("extract", dag="ingest")(noop)
    engine.task("transform", dag="reporting", deps=["extract"])(noop)
    engine.validate("ingest")
    with pytest.raises(
        CrossDagDependencyError,
        match=r"'transform' in DAG 'reporting' depends on 'extract'.*belongs to DAG 'ingest'",
    ):
        engine.validate("reporting")


def test_cross_dag_dependency_by_callable(engine: Engine) -> None:
    def extract() -> int:
        return 1

    engine.task(dag="ingest")(extract)
    engine.task("transform", dag="reporting", deps=[extract])(noop)
    with pytest.raises(CrossDagDependencyError, match=r"'reporting'.*DAG 'ingest'"):
        engine.validate("reporting")


def _assert_cycle(error: CycleError, engine: Engine, dag: str, members: set[str]) -> None:
    cycle = error.cycle
    assert cycle[0] == cycle[-1]
    assert set(cycle) == members
    assert len(cycle) == len(members) + 1
    specs = engine.registry.tasks_of(dag)
    for upstream, downstream in itertools.pairwise(cycle):
        assert upstream in specs[downstream].deps, (upstream, downstream)
    assert error.dag_name == dag
    assert " -> ".join(cycle) in str(error)
    assert repr(dag) in str(error)


def test_three_node_cycle_is_reported_as_a_path(engine: Engine) -> None:
    engine.task("a", dag="loop", deps=["c"])(noop)
    engine.task("b", dag="loop", deps=["a"])(noop)
    engine.task("c", dag="loop", deps=["b"])(noop)
    with pytest.raises(CycleError) as info:
        engine.validate("loop")
    _assert_cycle(info.value, engine, "loop", {"a", "b", "c"})
    rotations = ["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"]
    assert any(r in str(info.value) for r in rotations), str(info.value)


def test_two_node_cycle(engine: Engine) -> None:
    engine.task("a", dag="loop", deps=["b"])(noop)
    engine.task("b", dag="loop", deps=["a"])(noop)
    with pytest.raises(CycleError, match=r"'loop'.*(a -> b -> a|b -> a -> b)") as info:
        engine.validate("loop")
    _assert_cycle(info.value, engine, "loop", {"a", "b"})


def test_self_loop(engine: Engine) -> None:
    engine.task("a", dag="loop", deps=["a"])(noop)
    with pytest.raises(CycleError, match=r"DAG 'loop' has a cycle: a -> a") as info:
        engine.validate("loop")
    assert info.value.cycle == ["a", "a"]


def test_cycle_path_excludes_tasks_hanging_off_it(engine: Engine) -> None:
    engine.task("tail", dag="loop", deps=["x"])(noop)
    engine.task("root", dag="loop")(noop)
    engine.task("x", dag="loop", deps=["y", "root"])(noop)
    engine.task("y", dag="loop", deps=["x"])(noop)
    engine.task("after", dag="loop", deps=["tail"])(noop)
    with pytest.raises(CycleError) as info:
        engine.validate("loop")
    _assert_cycle(info.value, engine, "loop", {"x", "y"})


def test_unknown_dag_lists_available_and_closest(engine: Engine) -> None:
    engine.task("a", dag="daily_etl")(noop)
    engine.task("b", dag="weekly_report")(noop)
    pattern = (
        r"unknown DAG 'daily_etll'; available DAGs: 'daily_etl', 'weekly_report'"
        r".*Did you mean 'daily_etl'\?"
    )
    with pytest.raises(UnknownDagError, match=pattern) as info:
        engine.validate("daily_etll")
    assert info.value.available == ["daily_etl", "weekly_report"]
    for call in (
        lambda: engine.list_tasks("daily_etll"),
        lambda: engine.display_dag("daily_etll"),
        lambda: engine.dag("daily_etll").list_tasks(),
        lambda: asyncio.run(engine.run_once("daily_etll")),
    ):
        with pytest.raises(UnknownDagError, match="Did you mean 'daily_etl'"):
            call()


def test_unknown_dag_without_close_match(engine: Engine) -> None:
    engine.task("a", dag="daily_etl")(noop)
    with pytest.raises(UnknownDagError, match=r"available DAGs: 'daily_etl'") as info:
        engine.validate("xyz")
    assert "Did you mean" not in str(info.value)


def test_unknown_dag_in_an_empty_engine(engine: Engine) -> None:
    with pytest.raises(UnknownDagError, match=r"'anything'.*available DAGs: none"):
        engine.validate("anything")


async def test_legacy_unscoped_registry_is_one_implicit_dag(engine: Engine) -> None:
    @engine.task
    def extract() -> list[int]:
        return [1, 2]

    @engine.task(deps=[extract])
    def total(extract: list[int]) -> int:
        return sum(extract)

    assert engine.list_dags() == [DEFAULT_DAG]
    for name in ("daily_etl", "anything", DEFAULT_DAG):
        assert engine.resolve_dag_name(name) == DEFAULT_DAG
        engine.validate(name)
        assert engine.list_tasks(name) == ["extract", "total"]
    run_id = await engine.run_once("my_pipeline")
    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS"
    assert report["tasks"]["total"]["result"] == 3
    scoped_run = await engine.dag("whatever").run_once()
    assert engine.get_run_report(scoped_run)["status"] == "SUCCESS"


def test_mixing_scoped_tasks_ends_the_legacy_behaviour(engine: Engine) -> None:
    engine.task("unscoped")(noop)
    assert engine.resolve_dag_name("anything") == DEFAULT_DAG
    engine.task("scoped", dag="etl")(noop)
    assert engine.resolve_dag_name("etl") == "etl"
    assert engine.resolve_dag_name(DEFAULT_DAG) == DEFAULT_DAG
    with pytest.raises(UnknownDagError, match=r"'anything'.*'default', 'etl'"):
        engine.resolve_dag_name("anything")


def test_explicit_default_dag_is_not_legacy(engine: Engine) -> None:
    engine.task("scoped", dag=DEFAULT_DAG)(noop)
    with pytest.raises(UnknownDagError, match="'other'"):
        engine.validate("other")


def test_resolve_dag_name_rejects_non_strings(engine: Engine) -> None:
    with pytest.raises(TypeError, match="string"):
        engine.resolve_dag_name(3)  # type: ignore[arg-type]


ERROR_CLASSES: list[type[Exception]] = [
    DagValidationError,
    TaskDefinitionError,
    CycleError,
    MissingDependencyError,
    CrossDagDependencyError,
    DuplicateTaskError,
    UnknownDagError,
    UnknownTaskError,
    flowrun.UnknownRunError,
]


@pytest.mark.parametrize("error", ERROR_CLASSES, ids=lambda e: e.__name__)
def test_errors_are_value_errors_exported_from_flowrun(error: type[Exception]) -> None:
    assert issubclass(error, ValueError)
    assert getattr(flowrun, error.__name__) is error
    assert error.__name__ in flowrun.__all__


def test_validation_errors_share_a_base(engine: Engine) -> None:
    for cls in (TaskDefinitionError, CycleError, MissingDependencyError, DuplicateTaskError):
        assert issubclass(cls, DagValidationError)
    engine.task("a", dag="d", deps=["a"])(noop)
    with pytest.raises(DagValidationError):
        engine.validate("d")


def test_dag_is_revalidated_after_new_registrations(engine: Engine) -> None:
    engine.task("a", dag="d")(noop)
    engine.validate("d")
    first = engine.get_dag("d")
    assert engine.get_dag("d") is first  # cached while nothing changes

    engine.task("b", dag="d", deps=["a"])(noop)
    assert engine.list_tasks("d") == ["a", "b"]

    engine.task("broken", dag="d", deps=["missing_task"])(noop)
    with pytest.raises(MissingDependencyError, match="'broken'"):
        engine.validate("d")

    engine.registry.unregister("d", "broken")
    engine.validate("d")
    assert engine.list_tasks("d") == ["a", "b"]


def test_registration_in_another_dag_can_break_a_cached_dag(engine: Engine) -> None:
    engine.task("x", dag="one")(noop)
    engine.task("y", dag="two", deps=["x"])(noop)
    with pytest.raises(CrossDagDependencyError, match="'one'"):
        engine.validate("two")
    engine.task("x", dag="two")(noop)
    engine.validate("two")
    assert engine.list_tasks("two") == ["x", "y"]


# -- scale: 100,000 tasks -----------------------------------------------------------------------

CHAIN = 100_000


@pytest.fixture(scope="module")
def chain_engine() -> Iterator[Engine]:
    """A chain t0 -> t1 -> ... registered from the last task back to the first."""
    engine = build_default_engine()
    register: Callable[..., Any] = engine.task
    for i in range(CHAIN - 1, 0, -1):
        register(f"t{i}", dag="chain", deps=[f"t{i - 1}"])(noop)
    register("t0", dag="chain")(noop)
    yield engine
    engine.close()


def test_long_chain_registered_in_reverse_validates_and_lists(chain_engine: Engine) -> None:
    chain_engine.validate("chain")
    order = chain_engine.list_tasks("chain")
    assert len(order) == CHAIN
    assert order == [f"t{i}" for i in range(CHAIN)]


def test_long_chain_renders_in_every_format(chain_engine: Engine) -> None:
    text = chain_engine.display_dag("chain")
    assert text.splitlines()[0] == f"DAG chain ({CHAIN} tasks)"
    assert len(text.splitlines()) == CHAIN + 1

    mermaid = chain_engine.display_dag("chain", format="mermaid")
    assert mermaid.startswith("flowchart TD")
    assert mermaid.count("-->") == CHAIN - 1

    dot = chain_engine.display_dag("chain", format="dot")
    assert dot.startswith("digraph")
    assert dot.count("->") == CHAIN - 1
    assert f'"t{CHAIN - 2}" -> "t{CHAIN - 1}";' in dot


def test_long_cycle_is_found_without_recursion(chain_engine: Engine) -> None:
    registry = chain_engine.registry
    original = registry.unregister("chain", "t0")
    try:
        registry.task("t0", dag="chain", deps=[f"t{CHAIN - 1}"])(noop)
        with pytest.raises(CycleError) as info:
            chain_engine.validate("chain")
        assert len(info.value.cycle) == CHAIN + 1
        assert info.value.cycle[0] == info.value.cycle[-1]
    finally:
        registry.unregister("chain", "t0")
        registry.register(original)
    chain_engine.validate("chain")


def test_wide_fan_in_and_fan_out(engine: Engine) -> None:
    width = 5_000
    engine.task("sink", dag="wide", deps=[f"mid{i}" for i in range(width)])(noop)
    for i in range(width):
        engine.task(f"mid{i}", dag="wide", deps=["source"])(noop)
    engine.task("source", dag="wide")(noop)
    order = engine.list_tasks("wide")
    assert order[0] == "source"
    assert order[-1] == "sink"
    assert len(order) == width + 2


def test_get_dag_hands_out_a_read_only_view(engine: Engine) -> None:
    engine.task("a", dag="d")(noop)
    engine.task("b", dag="d", deps=["a"])(noop)
    dag = engine.get_dag("d")
    with pytest.raises(TypeError):
        dag.parents["b"] = ()  # type: ignore[index]
    with pytest.raises(TypeError):
        dag.children["a"] = ()  # type: ignore[index]
    with pytest.raises(TypeError):
        del dag.specs["a"]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="DAG 'd' is immutable: cannot set 'order'"):
        dag.order = ()
    assert dict(dag.parents) == {"a": (), "b": ("a",)}
    report = run_dag(engine, "d")  # the cached DAG the next run uses is intact
    assert report["status"] == "SUCCESS"
    assert list(report["tasks"]) == ["a", "b"]
