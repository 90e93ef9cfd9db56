"""Registration: the decorators, DAG scopes, task templates, the global ``@task`` and TaskSpec."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from support import new_clock

import flowrun
from flowrun import (
    DEFAULT_DAG,
    DagScope,
    Engine,
    MissingDependencyError,
    RunContext,
    SystemClock,
    TaskDefinitionError,
    TaskRegistry,
    TaskSpec,
    TaskTemplate,
    build_default_engine,
    task,
    task_template,
)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with build_default_engine() as eng:
        yield eng


def _spec(registry: TaskRegistry, dag: str, name: str) -> TaskSpec:
    return registry.tasks_of(dag)[name]


def _results(engine: Engine, run_id: str) -> dict[str, Any]:
    report = engine.get_run_report(run_id)
    assert report["status"] == "SUCCESS", report
    return {name: t["result"] for name, t in report["tasks"].items()}


# -- @engine.task forms -------------------------------------------------------------------------


async def test_bare_decorator_registers_under_function_name(engine: Engine) -> None:
    @engine.task
    def extract() -> int:
        return 41

    assert engine.list_dags() == [DEFAULT_DAG]
    assert engine.list_tasks(DEFAULT_DAG) == ["extract"]
    run_id = await engine.run_once(DEFAULT_DAG)
    assert _results(engine, run_id) == {"extract": 41}


async def test_bare_decorator_returns_the_original_function(engine: Engine) -> None:
    def original(x: int = 1) -> int:
        return x * 2

    decorated = engine.task(original)
    assert decorated is original
    assert decorated(5) == 10


def test_decorator_with_options_returns_original_function(engine: Engine) -> None:
    def load() -> str:
        return "ok"

    result = engine.task(name="loader", dag="etl", retries=2, timeout_s=3)(load)
    assert result is load
    assert load() == "ok"
    spec = _spec(engine.registry, "etl", "loader")
    assert spec.func is load
    assert spec.retries == 2
    assert spec.timeout_s == 3.0


async def test_decorator_with_name_dag_and_deps(engine: Engine) -> None:
    @engine.task(name="extract", dag="daily")
    def extract_rows() -> list[int]:
        return [1, 2, 3]

    @engine.task(name="transform", dag="daily", deps=["extract"])
    def transform(extract: list[int]) -> int:
        return sum(extract)

    assert engine.list_dags() == ["daily"]
    assert engine.list_tasks("daily") == ["extract", "transform"]
    run_id = await engine.run_once("daily")
    assert _results(engine, run_id) == {"extract": [1, 2, 3], "transform": 6}


async def test_positional_name_form(engine: Engine) -> None:
    @engine.task("first", dag="d")
    def a() -> int:
        return 1

    @engine.task("second", dag="d", deps=["first"])
    def b(first: int) -> int:
        return first + 1

    assert engine.list_tasks("d") == ["first", "second"]
    run_id = await engine.run_once("d")
    assert _results(engine, run_id) == {"first": 1, "second": 2}


def test_two_different_names_is_an_error(engine: Engine) -> None:
    def f() -> None:
        return None

    # The name is one parameter, given positionally or by keyword: Python rejects both.
    with pytest.raises(TypeError, match="multiple values for argument 'name'"):
        engine.task("a", name="b")(f)  # type: ignore[call-overload]


async def test_deps_by_decorated_callable(engine: Engine) -> None:
    @engine.task(name="extract", dag="etl")
    def extract_fn() -> list[int]:
        return [1, 2]

    @engine.task(dag="etl", deps=[extract_fn])
    def total(extract: list[int]) -> int:
        return sum(extract)

    assert _spec(engine.registry, "etl", "total").deps == ("extract",)
    run_id = await engine.run_once("etl")
    assert _results(engine, run_id)["total"] == 3


def test_callable_dep_prefers_the_registration_in_the_same_dag(engine: Engine) -> None:
    def shared() -> int:
        return 1

    engine.task(name="in_a", dag="a")(shared)
    engine.task(name="in_b", dag="b")(shared)

    @engine.task(dag="b", deps=[shared])
    def consumer(in_b: int) -> int:
        return in_b

    assert _spec(engine.registry, "b", "consumer").deps == ("in_b",)
    engine.validate("b")


def test_callable_registered_twice_in_one_dag_is_an_ambiguous_dep(engine: Engine) -> None:
    def shared() -> int:
        return 1

    engine.task(name="copy1", dag="d")(shared)
    engine.task(name="copy2", dag="d")(shared)

    with pytest.raises(TaskDefinitionError, match=r"ambiguous.*'copy1', 'copy2'") as info:
        engine.task(name="consumer", dag="d", deps=[shared])(lambda upstream: upstream)
    assert "consumer" in str(info.value)
    assert "'d'" in str(info.value)


def test_unregistered_callable_dep_is_reported_as_missing(engine: Engine) -> None:
    def never_registered() -> None:
        return None

    @engine.task(dag="d", deps=[never_registered])
    def consumer() -> None:
        return None

    with pytest.raises(MissingDependencyError, match=r"'consumer'.*'never_registered'"):
        engine.validate("d")


def test_duplicate_deps_are_collapsed(engine: Engine) -> None:
    @engine.task(dag="d")
    def a() -> int:
        return 1

    @engine.task(dag="d", deps=["a", a])
    def b(a: int) -> int:
        return a

    assert _spec(engine.registry, "d", "b").deps == ("a",)


def test_non_callable_non_string_dep_is_rejected(engine: Engine) -> None:
    with pytest.raises(TaskDefinitionError, match=r"'consumer'.*'d'.*a dependency must be"):
        engine.task(name="consumer", dag="d", deps=[42])(lambda: None)  # type: ignore[list-item]


def test_an_empty_dependency_name_is_a_definition_error() -> None:
    engine = build_default_engine(clock=new_clock())

    with pytest.raises(TaskDefinitionError, match=r"'t'.*empty dependency name"):

        @engine.task(name="t", dag="d", deps=[""])
        def t() -> None:
            return None


@pytest.mark.parametrize("name", ["", 123])
def test_a_task_name_must_be_a_non_empty_string(name: Any) -> None:
    registry = TaskRegistry()

    def f() -> None:
        return None

    with pytest.raises(TaskDefinitionError, match=r"task name|@task takes a function or a task"):
        registry.task(name)(f)
    assert len(registry) == 0


def test_a_non_string_task_name_is_reported_with_its_type() -> None:
    registry = TaskRegistry()

    with pytest.raises(
        TaskDefinitionError, match=r"@task takes a function or a task name, got int"
    ):
        registry.task(123)  # type: ignore[call-overload]


@pytest.mark.parametrize("dag", ["", 5])
def test_dag_must_be_a_non_empty_string(dag: Any) -> None:
    registry = TaskRegistry()

    def f() -> None:
        return None

    with pytest.raises(TaskDefinitionError, match=r"'dag' must be a non-empty string.*'f'"):
        registry.task(name="f", dag=dag)(f)


# -- engine.dag scope ---------------------------------------------------------------------------


async def test_dag_scope_api(engine: Engine) -> None:
    etl = engine.dag("daily_etl")
    assert isinstance(etl, DagScope)

    @etl.task(name="extract")
    def extract() -> list[int]:
        return [1, 2, 3]

    @etl.task(name="sum_values", deps=[extract])
    def sum_values(extract: list[int]) -> int:
        return sum(extract)

    @etl.task
    def unrelated() -> str:
        return "u"

    assert extract() == [1, 2, 3]  # still the plain function
    assert engine.list_dags() == ["daily_etl"]
    assert etl.list_tasks() == ["extract", "unrelated", "sum_values"]
    assert etl.list_tasks() == engine.list_tasks("daily_etl")
    etl.validate()
    assert "sum_values" in etl.display()
    assert etl.display("mermaid").startswith("flowchart TD")

    run_id = await etl.run_once()
    assert engine.get_run_report(run_id)["dag_name"] == "daily_etl"
    assert _results(engine, run_id) == {"extract": [1, 2, 3], "unrelated": "u", "sum_values": 6}

    sub_id = await etl.run_subgraph(["sum_values"])
    assert set(engine.get_run_report(sub_id)["tasks"]) == {"extract", "sum_values"}


async def test_dag_scope_passes_context(engine: Engine) -> None:
    scope = engine.dag("ctx")

    @scope.task
    def read(context: RunContext[dict[str, int]]) -> int:
        return int(context.value)

    run_id = await scope.run_once(context=RunContext({"value": 7}))
    assert _results(engine, run_id) == {"read": 7}
    sub_id = await scope.run_subgraph(["read"], context=RunContext({"value": 8}))
    assert _results(engine, sub_id) == {"read": 8}


def test_dag_scope_rejects_dag_option(engine: Engine) -> None:
    scope = engine.dag("one")
    with pytest.raises(TypeError, match=r"'one'"):
        scope.task(name="x", dag="two")  # type: ignore[call-overload]


def test_dag_scope_name_must_be_non_empty(engine: Engine) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        engine.dag("")


async def test_dag_scope_task_template(engine: Engine) -> None:
    scope = engine.dag("etl")

    def fetch_table(*, table: str) -> str:
        return f"select * from {table}"

    tpl = scope.task_template(fetch_table)
    tpl.bind("fetch_users", table="users")
    assert scope.list_tasks() == ["fetch_users"]
    run_id = await scope.run_once()
    assert _results(engine, run_id) == {"fetch_users": "select * from users"}


# -- task templates -----------------------------------------------------------------------------


async def test_task_template_binds_kwargs(engine: Engine) -> None:
    def fetch_table(*, table: str) -> str:
        return f"select * from {table}"

    tpl = engine.task_template(fetch_table, dag="etl")
    assert isinstance(tpl, TaskTemplate)
    tpl.bind("fetch_users", table="users")
    tpl.bind("fetch_orders", table="orders")

    assert engine.list_tasks("etl") == ["fetch_users", "fetch_orders"]
    run_id = await engine.run_once("etl")
    assert _results(engine, run_id) == {
        "fetch_users": "select * from users",
        "fetch_orders": "select * from orders",
    }


async def test_task_template_bind_accepts_task_options(engine: Engine) -> None:
    @engine.task(dag="etl")
    def source() -> int:
        return 10

    def scale(source: int, *, factor: int) -> int:
        return source * factor

    tpl = engine.task_template(scale, dag="etl", retries=1)
    tpl.bind("double", deps=["source"], factor=2)
    tpl.bind("triple", deps=[source], factor=3, retries=4, timeout_s=9.0, retain_result=False)

    double = _spec(engine.registry, "etl", "double")
    triple = _spec(engine.registry, "etl", "triple")
    assert (double.deps, double.retries, double.timeout_s) == (("source",), 1, None)
    assert (triple.deps, triple.retries, triple.timeout_s) == (("source",), 4, 9.0)
    assert triple.retain_result is False

    run_id = await engine.run_once("etl")
    assert engine.get_run_report(run_id)["tasks"]["double"]["result"] == 20
    assert engine.get_run_report(run_id)["status"] == "SUCCESS"


async def test_bound_template_task_can_be_a_callable_dep(engine: Engine) -> None:
    def fetch(*, table: str) -> str:
        return table

    tpl = engine.task_template(fetch, dag="etl")
    users = tpl.bind("fetch_users", table="users")
    assert users() == "users"  # bind returns the bound callable

    @engine.task(dag="etl", deps=[users])
    def count(fetch_users: str) -> int:
        return len(fetch_users)

    assert _spec(engine.registry, "etl", "count").deps == ("fetch_users",)
    run_id = await engine.run_once("etl")
    assert _results(engine, run_id)["count"] == 5


def test_task_template_unknown_kwarg_suggests_the_parameter(engine: Engine) -> None:
    def fetch_table(*, table: str) -> str:
        return table

    tpl = engine.task_template(fetch_table, dag="etl")
    with pytest.raises(
        TaskDefinitionError, match=r"'fetch_users'.*'etl'.*'tabel'.*Did you mean 'table'\?"
    ):
        tpl.bind("fetch_users", tabel="users")
    assert engine.list_dags() == []


def test_task_template_unknown_option_is_rejected(engine: Engine) -> None:
    def f() -> None:
        return None

    with pytest.raises(
        TaskDefinitionError, match=r"unknown task option 'retrys'.*Did you mean 'retries'"
    ) as caught:
        engine.task_template(f, dag="etl", retrys=2)  # type: ignore[call-arg]
    assert (caught.value.dag, caught.value.option, caught.value.got) == ("etl", "retrys", 2)
    assert isinstance(caught.value, TypeError)  # what an unexpected keyword always raised


def test_template_function_bound_twice_is_an_ambiguous_dep(engine: Engine) -> None:
    def fetch(*, table: str) -> str:
        return table

    tpl = engine.task_template(fetch, dag="etl")
    tpl.bind("fetch_users", table="users")
    tpl.bind("fetch_orders", table="orders")

    with pytest.raises(TaskDefinitionError, match=r"ambiguous.*'fetch_users'.*'fetch_orders'"):
        engine.task(name="consumer", dag="etl", deps=[fetch])(lambda upstream: upstream)


def test_task_template_validates_task_options_at_bind(engine: Engine) -> None:
    def f(*, x: int) -> int:
        return x

    tpl = engine.task_template(f, dag="etl")
    with pytest.raises(TaskDefinitionError, match=r"'retries' must be >= 0.*'bad'.*'etl'"):
        tpl.bind("bad", x=1, retries=-1)


def test_a_template_bound_under_an_empty_name_is_rejected() -> None:
    registry = TaskRegistry()

    def f(x: int) -> int:
        return x

    with pytest.raises(TaskDefinitionError, match=r"non-empty string \(got ''\)"):
        registry.task_template(f).bind("", x=1)


def test_task_template_needs_a_callable() -> None:
    engine = build_default_engine(clock=new_clock())

    with pytest.raises(TaskDefinitionError, match=r"task_template needs a callable, got int"):
        engine.task_template(42)  # type: ignore[arg-type]


async def test_template_of_a_function_with_var_keyword_accepts_any_keyword() -> None:
    engine = build_default_engine(clock=new_clock())

    def collect(base: int, **extra: int) -> dict[str, int]:
        return {"base": base, **extra}

    template = engine.task_template(collect, dag="d")
    template.bind("one", base=1, anything=2, retries=1)

    run_id = await engine.run_once("d")

    assert engine.get_run_report(run_id)["tasks"]["one"]["result"] == {"base": 1, "anything": 2}


# -- the global @task ---------------------------------------------------------------------------


@pytest.fixture
def active_registry() -> Iterator[TaskRegistry]:
    registry = TaskRegistry()
    token = registry.activate()
    yield registry
    TaskRegistry.deactivate(token)


def test_global_task_bare_form(active_registry: TaskRegistry) -> None:
    @task
    def my_task() -> int:
        return 1

    assert my_task() == 1
    assert list(active_registry.tasks_of(DEFAULT_DAG)) == ["my_task"]


def test_global_task_call_form(active_registry: TaskRegistry) -> None:
    @task(name="loader", dag="etl", retries=2)
    def load() -> int:
        return 2

    assert load() == 2
    spec = active_registry.tasks_of("etl")["loader"]
    assert spec.retries == 2
    assert spec.func is load


def test_global_task_positional_name_form(active_registry: TaskRegistry) -> None:
    @task("named", dag="etl")
    def f() -> int:
        return 3

    @task("after", dag="etl", deps=[f])
    def g(named: int) -> int:
        return named

    assert f() == 3
    assert active_registry.tasks_of("etl")["after"].deps == ("named",)


def test_global_task_explicit_registry_wins_over_active(active_registry: TaskRegistry) -> None:
    other = TaskRegistry()

    @task(registry=other, dag="x")
    def f() -> None:
        return None

    @task("g", registry=other)
    def g() -> None:
        return None

    assert ("x", "f") in other
    assert (DEFAULT_DAG, "g") in other
    assert len(active_registry) == 0


def test_global_task_without_registry_is_a_clear_error() -> None:
    assert TaskRegistry.current() is None

    def f() -> None:
        return None

    registrations: list[Callable[[], object]] = [
        lambda: task(f),
        lambda: task()(f),
        lambda: task("name")(f),
    ]
    for register in registrations:
        with pytest.raises(TaskDefinitionError, match=r"registry=.*activate\(\)"):
            register()


def test_global_task_template_needs_a_registry() -> None:
    def f(*, x: int) -> int:
        return x

    with pytest.raises(TaskDefinitionError, match="registry"):
        task_template(f, dag="d")
    registry = TaskRegistry()
    task_template(f, registry=registry, dag="d").bind("one", x=1)
    assert ("d", "one") in registry


def test_global_task_rejects_a_non_registry() -> None:
    with pytest.raises(TypeError, match="TaskRegistry"):
        task(registry=object())  # type: ignore[call-overload]


def test_activate_and_deactivate_nest() -> None:
    outer, inner = TaskRegistry(), TaskRegistry()
    outer_token = outer.activate()
    try:
        assert TaskRegistry.current() is outer
        inner_token = inner.activate()
        assert TaskRegistry.current() is inner

        @task
        def into_inner() -> None:
            return None

        TaskRegistry.deactivate(inner_token)
        assert TaskRegistry.current() is outer

        @task
        def into_outer() -> None:
            return None
    finally:
        TaskRegistry.deactivate(outer_token)
    assert TaskRegistry.current() is None
    assert list(inner.tasks_of(DEFAULT_DAG)) == ["into_inner"]
    assert list(outer.tasks_of(DEFAULT_DAG)) == ["into_outer"]


def test_engine_registry_is_a_public_task_registry() -> None:
    engine = build_default_engine()
    assert isinstance(engine.registry, TaskRegistry)

    @engine.task(dag="d")
    def f() -> None:
        return None

    assert ("d", "f") in engine.registry
    assert engine.registry.tasks_of("d")["f"].func is f


async def test_engine_runs_tasks_from_the_global_decorator() -> None:
    registry = TaskRegistry()
    token = registry.activate()
    try:

        @task(dag="etl")
        def extract() -> list[int]:
            return [1, 2, 3]

        @task("total", dag="etl", deps=[extract])
        def total_fn(extract: list[int]) -> int:
            return sum(extract)
    finally:
        TaskRegistry.deactivate(token)

    async with build_default_engine(registry=registry) as engine:
        assert engine.registry is registry
        assert engine.list_tasks("etl") == ["extract", "total"]
        run_id = await engine.run_once("etl")
        assert _results(engine, run_id) == {"extract": [1, 2, 3], "total": 6}


async def test_engine_sees_tasks_registered_after_it_was_built() -> None:
    registry = TaskRegistry()
    async with build_default_engine(registry=registry) as engine:

        @task(registry=registry, dag="late")
        def late() -> str:
            return "here"

        run_id = await engine.run_once("late")
        assert _results(engine, run_id) == {"late": "here"}


# -- TaskSpec -----------------------------------------------------------------------------------


def test_task_spec_fields(engine: Engine) -> None:
    @engine.task(dag="etl")
    def upstream_task() -> int:
        return 1

    @engine.task(
        name="load",
        dag="etl",
        deps=[upstream_task],
        timeout_s=2,
        retries=3,
        retain_result=False,
        retry_delay_s=0.5,
        retry_backoff=3.0,
        retry_jitter=0.25,
        retry_on=ConnectionError,
    )
    async def load_fn(upstream_task: int) -> int:
        return upstream_task

    spec = _spec(engine.registry, "etl", "load")
    assert isinstance(spec, TaskSpec)
    assert spec.name == "load"
    assert spec.dag == "etl"
    assert spec.func is load_fn
    assert spec.deps == ("upstream_task",)
    assert spec.timeout_s == 2.0
    assert isinstance(spec.timeout_s, float)
    assert spec.retries == 3
    assert spec.max_attempts == 4
    assert spec.retain_result is False
    assert spec.retry_delay_s == 0.5
    assert spec.retry_backoff == 3.0
    assert spec.retry_jitter == 0.25
    assert spec.retry_on == (ConnectionError,)
    assert spec.is_async is True
    assert spec.retry_delay(1) == 0.5
    assert spec.retry_delay(3) == 4.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.retries = 5  # type: ignore[misc]


def test_task_spec_defaults(engine: Engine) -> None:
    @engine.task
    def plain() -> None:
        return None

    spec = _spec(engine.registry, DEFAULT_DAG, "plain")
    assert spec.dag == DEFAULT_DAG
    assert spec.deps == ()
    assert spec.timeout_s is None
    assert spec.retries == 0
    assert spec.retain_result is True
    assert spec.retry_delay_s == 0.0
    assert spec.is_async is False


def test_same_function_in_two_engines_is_independent() -> None:
    first, second = build_default_engine(), build_default_engine()

    def f() -> None:
        return None

    first.task(dag="d")(f)
    second.task(dag="e")(f)
    assert first.list_dags() == ["d"]
    assert second.list_dags() == ["e"]


def test_public_exports_are_all_importable() -> None:
    for name in flowrun.__all__:
        assert hasattr(flowrun, name), name
    registered: Callable[..., Any] = flowrun.task
    assert callable(registered)


def test_a_misspelt_option_is_refused_with_the_closest_name(engine: Engine) -> None:
    # mypy flags each typo too: were it not, these ignores would be unused and fail mypy --strict
    message = (
        r"unknown task option 'retires' \(retires=3\) for task 'load' in DAG 'etl'\. "
        r"Did you mean 'retries'\?"
    )
    with pytest.raises(TaskDefinitionError, match=message):
        engine.task("load", dag="etl", retires=3)(lambda: 1)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=message):  # and `except TypeError` still catches it
        engine.task("load", dag="etl", retires=3)(lambda: 1)  # type: ignore[call-overload]
    with pytest.raises(TaskDefinitionError, match=message):
        engine.dag("etl").task("load", retires=3)(lambda: 1)  # type: ignore[call-overload]
    with pytest.raises(TaskDefinitionError, match=r"unknown task option 'timeout'.*'timeout_s'\?"):
        engine.task_template(lambda: 1, dag="etl", timeout=3).bind("t")  # type: ignore[call-arg]
    assert engine.list_dags() == []


def test_every_decorator_option_is_a_task_option_and_round_trips() -> None:
    import dataclasses

    from flowrun._options import OPTION_NAMES, TaskOptions

    assert {f.name for f in dataclasses.fields(TaskOptions)} | {"deps"} == OPTION_NAMES
    engine = build_default_engine()
    engine.task("a", dag="d", retries=2, timeout_s=5, retry_on=ValueError)(lambda: 1)
    spec = engine.registry.tasks_of("d")["a"]
    assert isinstance(spec, TaskOptions)
    assert spec.options() == {
        "timeout_s": 5.0,
        "retries": 2,
        "retain_result": True,
        "retry_delay_s": 0.0,
        "retry_backoff": 2.0,
        "retry_jitter": 0.0,
        "retry_on": (ValueError,),
        "trigger": "all_success",
        "pool": None,
        "pool_slots": 1,
        "map": None,
        "map_key": None,
        "max_map": 10_000,
        "cache": False,
        "cache_ttl_s": None,
        "cache_version": "",
    }
    with engine.override("d", a=lambda: 2) as stubs:  # a stub keeps every option
        assert stubs["a"].options() == spec.options()


# -- the registry itself, and reprs -------------------------------------------------------------


def test_registry_unregister_len_and_membership() -> None:
    registry = TaskRegistry()

    @registry.task(name="a", dag="one")
    def a() -> None:
        return None

    @registry.task(name="b", dag="two")
    def b() -> None:
        return None

    assert len(registry) == 2
    assert ("one", "a") in registry
    assert "a" not in registry
    assert ("one", "a", "x") not in registry

    with pytest.raises(KeyError, match=r"DAG 'one' has no task 'zzz'"):
        registry.unregister("one", "zzz")
    with pytest.raises(KeyError, match=r"DAG 'nope' has no task 'a'"):
        registry.unregister("nope", "a")

    spec = registry.unregister("one", "a")

    assert spec.name == "a"
    assert len(registry) == 1
    assert registry.dag_names() == ["two"]  # the emptied DAG is gone
    assert ("one", "a") not in registry


def test_reprs_name_the_useful_parts() -> None:
    engine = build_default_engine(max_parallel=3, clock=new_clock())
    scope = engine.dag("etl")

    @scope.task(name="extract")
    def extract() -> int:
        return 1

    def fetch(url: str) -> str:
        return url

    template = scope.task_template(fetch)

    assert repr(engine) == "Engine(dags=['etl'], max_parallel=3, store=InMemoryStateStore)"
    assert repr(scope) == "DagScope('etl')"
    assert repr(engine.registry) == "TaskRegistry(dags=['etl'], tasks=1)"
    assert repr(template) == "TaskTemplate(fetch, dag='etl')"
    assert repr(engine.get_dag("etl")) == "DAG('etl', tasks=1)"
    assert repr(SystemClock()) == "SystemClock()"
    engine.close()


def test_registering_a_task_while_its_dag_runs_is_refused_naming_both() -> None:
    from flowrun.testing import run_dag

    engine = build_default_engine()
    etl = engine.dag("etl")
    other = engine.dag("other")
    seen: dict[str, object] = {}

    @etl.task()
    def extract() -> int:
        try:
            etl.task("late")(lambda: 2)
        except TaskDefinitionError as error:
            seen["error"] = error
        other.task("elsewhere")(lambda: 3)  # another DAG may change meanwhile
        return 1

    report = run_dag(etl)
    assert report["status"] == "SUCCESS"
    error = seen["error"]
    assert isinstance(error, TaskDefinitionError)
    assert (error.dag, error.task) == ("etl", "late")
    assert "while a run of DAG 'etl' is in progress" in str(error)
    assert engine.list_tasks("etl") == ["extract"]  # the DAG did not change
    assert engine.list_tasks("other") == ["elsewhere"]
    etl.task("late")(lambda: 2)  # once the run is over, it registers
    assert engine.list_tasks("etl") == ["extract", "late"]
