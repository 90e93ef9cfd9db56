"""What a task receives: named upstream results, ``upstream``, the RunContext; async callables."""

from __future__ import annotations

import functools
import gc
import importlib.util
import sys
import warnings
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Optional

import pytest
from support import new_clock

from flowrun import (
    DEFAULT_DAG,
    Engine,
    RunContext,
    TaskDefinitionError,
    build_default_engine,
)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with build_default_engine() as eng:
        yield eng


def _load_future_module() -> ModuleType:
    """Load ``_future_annotations_tasks.py`` by path (works whether or not tests/ is a package)."""
    name = "flowrun_tests_future_annotations_tasks"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).with_name("_future_annotations_tasks.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


future = _load_future_module()


@dataclass(frozen=True)
class Deps:
    api_base: str
    retries: int = 3


async def _run(engine: Engine, dag: str, context: RunContext[Any] | None = None) -> dict[str, Any]:
    run_id = await engine.run_once(dag, context=context)
    return engine.get_run_report(run_id)


async def _results(
    engine: Engine, dag: str, context: RunContext[Any] | None = None
) -> dict[str, Any]:
    report = await _run(engine, dag, context)
    assert report["status"] == "SUCCESS", report
    return {name: t["result"] for name, t in report["tasks"].items()}


# -- named upstream results and the upstream dict -----------------------------------------------


async def test_named_upstream_results(engine: Engine) -> None:
    @engine.task(dag="etl")
    def a() -> int:
        return 1

    @engine.task(dag="etl")
    async def b() -> int:
        return 10

    @engine.task(dag="etl", deps=[a, b])
    def combine(b: int, a: int) -> tuple[int, int]:  # order differs from deps on purpose
        return (a, b)

    results = await _results(engine, "etl")
    assert results["combine"] == (1, 10)


async def test_deps_not_taken_as_parameters_only_order(engine: Engine) -> None:
    seen: list[str] = []

    @engine.task(dag="etl")
    def first() -> None:
        seen.append("first")

    @engine.task(dag="etl", deps=[first])
    def second() -> str:
        seen.append("second")
        return "done"

    assert (await _results(engine, "etl"))["second"] == "done"
    assert seen == ["first", "second"]


async def test_upstream_dict_receives_every_parent(engine: Engine) -> None:
    @engine.task(dag="etl")
    def a() -> str:
        return "A"

    @engine.task(dag="etl")
    def b() -> str:
        return "B"

    @engine.task(dag="etl")
    def unrelated() -> str:
        return "U"

    @engine.task(name="combine", dag="etl", deps=["a", "b"])
    def combine(upstream: dict[str, object]) -> object:
        return dict(upstream)

    results = await _results(engine, "etl")
    assert results["combine"] == {"a": "A", "b": "B"}


async def test_upstream_of_a_root_task_is_empty(engine: Engine) -> None:
    @engine.task(dag="etl")
    def root(upstream: dict[str, object]) -> int:
        return len(upstream)

    assert (await _results(engine, "etl"))["root"] == 0


def test_upstream_disables_named_injection(engine: Engine) -> None:
    @engine.task(dag="etl")
    def a() -> int:
        return 1

    with pytest.raises(
        TaskDefinitionError,
        match=r"parameter 'a' of task 'combine' in DAG 'etl'.*'upstream'.*upstream\['a'\]",
    ):

        @engine.task(dag="etl", deps=[a])
        def combine(upstream: dict[str, object], a: int) -> int:
            return a


async def test_upstream_with_defaulted_dep_name_keeps_the_default(engine: Engine) -> None:
    @engine.task(dag="etl")
    def a() -> int:
        return 1

    @engine.task(dag="etl", deps=[a])
    def combine(upstream: dict[str, object], a: int = 99) -> tuple[object, int]:
        return (upstream["a"], a)

    assert (await _results(engine, "etl"))["combine"] == (1, 99)


async def test_dep_parameter_with_default_still_gets_the_result(engine: Engine) -> None:
    @engine.task(dag="etl")
    def a() -> int:
        return 5

    @engine.task(dag="etl", deps=[a])
    def b(a: int = 0, flag: bool = True) -> tuple[int, bool]:
        return (a, flag)

    assert (await _results(engine, "etl"))["b"] == (5, True)


async def test_positional_only_dependency_parameter(engine: Engine) -> None:
    @engine.task(dag="etl")
    def a() -> int:
        return 2

    @engine.task(dag="etl", deps=[a])
    def b(a: int, /, scale: int = 3) -> int:
        return a * scale

    assert (await _results(engine, "etl"))["b"] == 6


def test_positional_only_default_before_an_injected_parameter_is_a_definition_error() -> None:
    engine = build_default_engine(clock=new_clock())

    @engine.task(name="a", dag="d")
    def a() -> int:
        return 1

    def b(x: int = 0, a: int = 0, /) -> int:
        return x + a

    with pytest.raises(
        TaskDefinitionError, match=r"task 'b'.*positional-only parameters with defaults"
    ):
        engine.task(name="b", dag="d", deps=["a"])(b)


async def test_positional_only_injected_parameters_in_order_are_fine() -> None:
    engine = build_default_engine(clock=new_clock())

    @engine.task(name="a", dag="d")
    def a() -> int:
        return 1

    def b(a: int, ctx: RunContext[dict[str, int]], /, k: int = 5) -> int:
        bonus: int = ctx.bonus
        return a + bonus + k

    engine.task(name="b", dag="d", deps=["a"])(b)

    run_id = await engine.run_once("d", RunContext({"bonus": 10}))

    assert engine.get_run_report(run_id)["tasks"]["b"]["result"] == 16


async def test_var_args_receive_nothing(engine: Engine) -> None:
    @engine.task(dag="etl")
    def a() -> int:
        return 2

    @engine.task(dag="etl", deps=[a])
    def b(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return (args, kwargs)

    assert (await _results(engine, "etl"))["b"] == ((), {})


def test_unbound_parameter_names_task_and_parameter(engine: Engine) -> None:
    @engine.task(dag="etl")
    def extract() -> int:
        return 1

    with pytest.raises(
        TaskDefinitionError,
        match=r"parameter 'extrat' of task 'transform' in DAG 'etl'.*Did you mean 'extract'\?",
    ):

        @engine.task(dag="etl", deps=[extract])
        def transform(extrat: int) -> int:
            return extrat

    assert engine.list_tasks("etl") == ["extract"]


def test_a_typo_in_deps_is_pointed_at_in_deps_not_in_the_parameter(engine: Engine) -> None:
    @engine.task(dag="etl")
    def extract() -> int:
        return 1

    with pytest.raises(TaskDefinitionError) as info:

        @engine.task(dag="etl", deps=["extrct"])
        def transform(extract: int) -> int:
            return extract

    message = str(info.value)
    assert message == (
        "parameter 'extract' of task 'transform' in DAG 'etl' would receive nothing: it names "
        "the task 'extract', which is not among its deps ('extrct'); replace 'extrct' with "
        "'extract' in deps to receive its result"
    )
    assert "Did you mean 'extrct'" not in message


def test_a_parameter_naming_a_task_left_out_of_deps_says_add_it(engine: Engine) -> None:
    engine.task("extract", dag="etl")(lambda: 1)
    with pytest.raises(TaskDefinitionError, match=r"add 'extract' in deps to receive its result"):
        engine.task("load", dag="etl")(lambda extract: extract)


def test_unbound_parameter_without_deps(engine: Engine) -> None:
    def lonely(value: int) -> int:
        return value

    with pytest.raises(
        TaskDefinitionError, match=rf"'value' of task 'lonely' in DAG '{DEFAULT_DAG}'.*deps: none"
    ):
        engine.task(lonely)


def test_unannotated_context_parameter_gets_a_hint(engine: Engine) -> None:
    def pull(context) -> None:  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(TaskDefinitionError, match=r"'context' of task 'pull'.*annotate it as"):
        engine.task(dag="etl")(pull)


# -- RunContext ---------------------------------------------------------------------------------


async def test_context_as_positional_parameter_reads_through_dataclass_deps(
    engine: Engine,
) -> None:
    @engine.task(name="pull", dag="etl")
    def pull(context: RunContext[Deps]) -> dict[str, object]:
        return {
            "base": context.api_base,
            "retries": context.retries,
            "deps_is_deps": isinstance(context.deps, Deps),
            "task": context.task_name,
            "dag": context.dag_name,
            "attempt": context.attempt,
            "has_run_id": bool(context.run_id),
        }

    results = await _results(engine, "etl", RunContext(Deps(api_base="https://api")))
    assert results["pull"] == {
        "base": "https://api",
        "retries": 3,
        "deps_is_deps": True,
        "task": "pull",
        "dag": "etl",
        "attempt": 1,
        "has_run_id": True,
    }


async def test_context_reads_through_mapping_deps(engine: Engine) -> None:
    @engine.task(dag="etl")
    async def pull(context: RunContext[dict[str, str]]) -> str:
        return str(context.api_base)

    results = await _results(engine, "etl", RunContext({"api_base": "mapped"}))
    assert results["pull"] == "mapped"


def test_context_missing_attribute_names_it() -> None:
    ctx = RunContext(Deps(api_base="x"))
    assert ctx.api_base == "x"
    with pytest.raises(AttributeError, match=r"'api_bse'.*Deps"):
        _ = ctx.api_bse
    mapped: RunContext[dict[str, int]] = RunContext({"known": 1})
    assert mapped.known == 1
    with pytest.raises(AttributeError, match=r"'unknown'.*'known'"):
        _ = mapped.unknown
    assert not hasattr(ctx, "__missing_dunder__")


def test_run_context_missing_attribute_of_object_deps_names_the_deps_type() -> None:
    ctx = RunContext(SimpleNamespace(api_base="http://x"))

    assert ctx.api_base == "http://x"
    with pytest.raises(
        AttributeError, match=r"'missing'.*neither has its deps \(SimpleNamespace\)"
    ):
        _ = ctx.missing


async def test_missing_context_attribute_fails_the_task_with_its_name(engine: Engine) -> None:
    @engine.task(dag="etl")
    def pull(context: RunContext[Deps]) -> str:
        return str(context.api_bse)

    report = await _run(engine, "etl", RunContext(Deps(api_base="x")))
    task = report["tasks"]["pull"]
    assert task["status"] == "FAILED"
    assert task["error"].startswith("AttributeError:")
    assert "'api_bse'" in task["error"]


async def test_context_without_context_argument_has_no_deps(engine: Engine) -> None:
    @engine.task(dag="etl")
    def pull(context: RunContext[None]) -> tuple[object, object]:
        return (context.deps, context.task_name)

    assert (await _results(engine, "etl"))["pull"] == (None, "pull")


async def test_context_binds_by_name_not_position(engine: Engine) -> None:
    @engine.task(dag="etl")
    def source() -> int:
        return 4

    @engine.task(dag="etl", deps=[source])
    def second_position(source: int, ctx: RunContext[Deps]) -> str:
        return f"{source}:{ctx.api_base}"

    @engine.task(dag="etl", deps=[source])
    def first_position(ctx: RunContext[Deps], source: int, extra: str = "e") -> str:
        return f"{ctx.api_base}:{source}:{extra}"

    results = await _results(engine, "etl", RunContext(Deps(api_base="B")))
    assert results["second_position"] == "4:B"
    assert results["first_position"] == "B:4:e"


async def test_context_annotations_in_runtime_forms(engine: Engine) -> None:
    @engine.task(dag="etl")
    def source() -> int:
        return 1

    @engine.task(dag="etl", deps=[source])
    def union(source: int, context: RunContext[Deps] | None) -> str:
        assert context is not None
        return f"union:{context.api_base}"

    @engine.task(dag="etl")
    def optional(context: Optional[RunContext[Deps]]) -> str:  # noqa: UP045
        assert context is not None
        return f"optional:{context.api_base}"

    @engine.task(dag="etl", deps=[source])
    def keyword_only(*, source: int, any_name: RunContext[Deps]) -> str:
        return f"kwonly:{source}:{any_name.api_base}"

    @engine.task(dag="etl")
    def unparametrized(c: RunContext) -> str:  # type: ignore[type-arg]
        return f"bare:{c.api_base}"

    @engine.task(dag="etl")
    def with_default(context: RunContext[Deps] | None = None) -> str:
        assert context is not None
        return f"default:{context.api_base}"

    results = await _results(engine, "etl", RunContext(Deps(api_base="X")))
    assert results["union"] == "union:X"
    assert results["optional"] == "optional:X"
    assert results["keyword_only"] == "kwonly:1:X"
    assert results["unparametrized"] == "bare:X"
    assert results["with_default"] == "default:X"


async def test_context_string_annotations_from_future_module(engine: Engine) -> None:
    dag = engine.dag("future")

    @dag.task
    def source() -> int:
        return 7

    dag.task(future.positional)
    dag.task(future.qualified)
    dag.task(deps=[source])(future.optional_union)
    dag.task(future.optional_typing)
    dag.task(deps=[source])(future.keyword_only)
    dag.task(deps=[source])(future.make_unresolvable())
    dag.task(future.make_unresolvable_optional())

    results = await _results(engine, "future", RunContext(future.Deps(api_base="F")))
    assert results["positional"] == "positional:F"
    assert results["qualified"] == "qualified:F"
    assert results["optional_union"] == "union:7:F"
    assert results["optional_typing"] == "optional:F"
    assert results["keyword_only"] == "kwonly:7:F"
    assert results["unresolvable"] == "local:7:F"
    assert results["unresolvable_optional"] == "local-optional:F"


def test_string_annotation_that_only_contains_the_word_is_not_the_context(
    engine: Engine,
) -> None:
    with pytest.raises(TaskDefinitionError, match=r"'value' of task 'not_context'"):
        engine.task(future.make_not_a_context())


async def test_context_via_exec_with_string_annotations(engine: Engine) -> None:
    source = (
        "from __future__ import annotations\n"
        "from flowrun import RunContext\n"
        "def via_exec(n: int, /, ctx: RunContext[object]) -> int:\n"
        "    return n + ctx.offset\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "<via_exec>", "exec"), namespace)
    func = namespace["via_exec"]
    assert isinstance(func.__annotations__["ctx"], str)

    @engine.task(dag="x")
    def n() -> int:
        return 1

    engine.task(dag="x", deps=["n"])(func)
    assert (await _results(engine, "x", RunContext({"offset": 10})))["via_exec"] == 11


async def test_optional_run_context_as_an_unresolvable_string_annotation_is_injected() -> None:
    engine = build_default_engine(clock=new_clock())
    seen: list[object] = []

    def with_ctx(ctx, extra: int = 0):  # type: ignore[no-untyped-def]
        seen.append(ctx.api_base)
        return extra

    # A name that cannot be resolved forces the raw-string path.
    with_ctx.__annotations__ = {"ctx": "Optional[RunContext[NotDefinedAnywhere]]", "extra": "int"}
    engine.task(name="with_ctx", dag="d")(with_ctx)

    run_id = await engine.run_once("d", RunContext({"api_base": "http://api"}))

    assert seen == ["http://api"]
    assert engine.get_run_report(run_id)["tasks"]["with_ctx"]["result"] == 0


async def test_run_context_repr_shows_deps_and_the_attempt_identity() -> None:
    assert repr(RunContext({"api": "x"})) == "RunContext({'api': 'x'})"
    seen: list[str] = []
    engine = build_default_engine(clock=new_clock())

    @engine.task(name="t", dag="d")
    async def t(ctx: RunContext[dict[str, str]]) -> None:
        seen.append(repr(ctx))

    await engine.run_once("d", context=RunContext({"api": "x"}))

    assert seen == ["RunContext({'api': 'x'}, task='t', attempt=1)"]


async def test_run_once_with_unwrapped_deps_asks_to_wrap_them_in_run_context() -> None:
    engine = build_default_engine(clock=new_clock())
    calls: list[str] = []

    @engine.task(name="t", dag="d")
    def t() -> None:
        calls.append("t")

    with pytest.raises(TypeError, match=r"RunContext\(deps\).*got dict"):
        await engine.run_once("d", context={"api": "x"})  # type: ignore[arg-type]

    assert calls == []
    assert engine.list_runs() == []
    engine.close()


def test_a_run_context_pickles_without_its_process_bound_parts() -> None:
    """Sent to a worker process, a context keeps deps and identity; its cancellation signal
    and deadline belong to the engine's process and stay behind."""
    import pickle

    from flowrun import SystemClock

    ctx = RunContext({"api": "https://x"}).for_attempt("r1", "etl", "load", 2, SystemClock())
    ctx.set_deadline(SystemClock().monotonic() + 60)
    ctx.cancel()
    copy = pickle.loads(pickle.dumps(ctx))
    assert (copy.api, copy.run_id, copy.dag_name, copy.task_name, copy.attempt) == (
        "https://x",
        "r1",
        "etl",
        "load",
        2,
    )
    assert ctx.cancelled()
    assert not copy.cancelled()
    assert ctx.time_remaining_s() is not None
    assert copy.time_remaining_s() is None


# -- callables of every kind --------------------------------------------------------------------


class AsyncCallable:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    async def __call__(self, source: int) -> int:
        return source + self.offset


class SyncCallable:
    def __call__(self, source: int) -> int:
        return source * 2


async def test_object_with_async_call_is_awaited(engine: Engine) -> None:
    @engine.task(dag="etl")
    def source() -> int:
        return 1

    engine.task("async_obj", dag="etl", deps=[source])(AsyncCallable(100))
    engine.task("sync_obj", dag="etl", deps=[source])(SyncCallable())
    assert engine.registry.tasks_of("etl")["async_obj"].is_async is True
    assert engine.registry.tasks_of("etl")["sync_obj"].is_async is False

    results = await _results(engine, "etl")
    assert results["async_obj"] == 101
    assert results["sync_obj"] == 2


async def test_object_with_async_call_bare_decorator_uses_class_name(engine: Engine) -> None:
    class Ping:
        async def __call__(self) -> str:
            return "pong"

    engine.task(Ping())
    assert engine.list_tasks(DEFAULT_DAG) == ["Ping"]
    assert (await _results(engine, DEFAULT_DAG))["Ping"] == "pong"


async def test_partial_tasks(engine: Engine) -> None:
    def scale(source: int, factor: int) -> int:
        return source * factor

    async def ascale(source: int, *, factor: int) -> int:
        return source * factor

    @engine.task(dag="etl")
    def source() -> int:
        return 3

    engine.task("double", dag="etl", deps=[source])(functools.partial(scale, factor=2))
    engine.task("triple", dag="etl", deps=[source])(functools.partial(ascale, factor=3))
    assert engine.registry.tasks_of("etl")["triple"].is_async is True

    results = await _results(engine, "etl")
    assert results["double"] == 6
    assert results["triple"] == 9


def test_partial_without_name_uses_the_function_name(engine: Engine) -> None:
    def scale(factor: int) -> int:
        return factor

    engine.task(functools.partial(scale, factor=2))
    assert engine.list_tasks(DEFAULT_DAG) == ["scale"]


async def test_partial_of_an_async_callable_object_is_awaited(engine: Engine) -> None:
    @engine.task(dag="etl")
    def source() -> int:
        return 1

    engine.task("p", dag="etl", deps=[source])(functools.partial(AsyncCallable(40)))
    results = await _results(engine, "etl")
    assert results["p"] == 41


async def test_template_of_an_async_callable_object_is_awaited(engine: Engine) -> None:
    class Fetch:
        async def __call__(self, *, table: str) -> str:
            return f"rows of {table}"

    tpl = engine.task_template(Fetch(), dag="etl")
    tpl.bind("users", table="users")
    results = await _results(engine, "etl")
    assert results["users"] == "rows of users"


async def test_template_of_an_async_function_is_awaited(engine: Engine) -> None:
    async def fetch(*, table: str) -> str:
        return f"rows of {table}"

    engine.task_template(fetch, dag="etl").bind("users", table="users")
    assert engine.registry.tasks_of("etl")["users"].is_async is True
    assert (await _results(engine, "etl"))["users"] == "rows of users"


async def test_bound_methods_as_tasks(engine: Engine) -> None:
    class Service:
        def __init__(self) -> None:
            self.base = 10

        def sync_method(self) -> int:
            return self.base

        async def async_method(self, sync_method: int) -> int:
            return sync_method + 1

    service = Service()
    engine.task(dag="svc")(service.sync_method)
    engine.task(dag="svc", deps=["sync_method"])(service.async_method)
    results = await _results(engine, "svc")
    assert results == {"sync_method": 10, "async_method": 11}


async def _injection_coro() -> int:
    return 1


def _sync_returning_coroutine() -> Any:
    return _injection_coro()


class _SyncObjectReturningCoroutine:
    def __call__(self) -> Any:
        return _injection_coro()


def _never_awaited(caught: list[warnings.WarningMessage]) -> list[str]:
    # Only this module's coroutine: other tests' garbage may be collected meanwhile.
    return [
        str(w.message) for w in caught if "'_injection_coro' was never awaited" in str(w.message)
    ]


async def _assert_awaitable_result_fails(engine: Engine) -> None:
    engine.task("sync_fn", dag="bad")(_sync_returning_coroutine)
    engine.task("sync_obj", dag="bad")(_SyncObjectReturningCoroutine())
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = await _run(engine, "bad")
        gc.collect()
    assert report["status"] == "FAILED"
    for name in ("sync_fn", "sync_obj"):
        task = report["tasks"][name]
        assert task["status"] == "FAILED", (name, task)
        assert task["result"] is None
        assert task["error"].startswith("TypeError:")
        assert f"'{name}'" in task["error"]
        assert "awaitable" in task["error"]
        assert "async def" in task["error"]
    assert _never_awaited(caught) == []


async def test_sync_callable_returning_a_coroutine_fails_clearly(engine: Engine) -> None:
    await _assert_awaitable_result_fails(engine)


class _InlineExecutor(Executor):
    """A non-thread-pool executor (like a process pool or Dask) that runs work inline."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


async def test_sync_callable_returning_a_coroutine_fails_on_any_executor() -> None:
    async with build_default_engine(executor=_InlineExecutor()) as engine:
        await _assert_awaitable_result_fails(engine)


async def test_an_async_function_behind_a_functools_wraps_decorator_is_awaited(
    engine: Engine,
) -> None:
    def logged(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)  # hands back the coroutine

        return wrapper

    @engine.task(dag="w")
    @logged
    async def fetch() -> str:
        return "fetched"

    report = engine.get_run_report(await engine.run_once("w"))
    assert (report["status"], report["tasks"]["fetch"]["result"]) == ("SUCCESS", "fetched")
