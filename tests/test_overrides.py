"""override_tasks: a stub receives what the task it replaces could receive (template arguments,
the context by name, results, a mapped item); a stub that does not fit is one clear error."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from flowrun import RunContext, TaskDefinitionError, build_default_engine
from flowrun._engine import Engine
from flowrun.testing import override_tasks, run_dag


def _site(**options: Any) -> Engine:
    """DAG ``site``: two template tasks ``home``/``about`` (bound ``page``) and ``summary``."""
    engine = build_default_engine()
    site = engine.dag("site")

    def check(ctx: RunContext[dict[str, str]], *, page: str, retries_left: int = 0) -> str:
        return f"{ctx.deps['base']}/{page} up"

    template = site.task_template(check, **options)
    template.bind("home", page="index")
    template.bind("about", page="about")

    @site.task(deps=["home", "about"])
    def summary(home: str, about: str) -> list[str]:
        return [home, about]

    return engine


CONTEXT = {"base": "https://example.org"}


def test_a_template_stub_receives_the_bound_arguments_and_the_context_by_name() -> None:
    engine = _site(retries=2)

    def always_down(context: Any, *, page: str) -> str:  # the stub, unannotated
        raise ConnectionError(f"{context.deps['base']}/{page} down")

    report = run_dag(engine, "site", context=CONTEXT, overrides={"home": always_down})
    assert report["tasks"]["home"]["status"] == "FAILED"
    assert report["tasks"]["home"]["attempt"] == 3  # the task's retries=2 kept
    assert report["tasks"]["home"]["error"] == ("ConnectionError: https://example.org/index down")
    assert report["tasks"]["about"]["result"] == "https://example.org/about up"


def test_a_stub_takes_only_what_it_names() -> None:
    engine = _site()
    stubs: dict[str, Callable[..., Any]] = {
        "home": lambda: "no arguments",
        "about": lambda page, ctx: f"{page}@{ctx.deps['base']}",  # the task's own context name
    }
    report = run_dag(engine, "site", context=CONTEXT, overrides=stubs)
    assert report["tasks"]["summary"]["result"] == ["no arguments", "about@https://example.org"]


def test_a_stub_parameter_with_a_default_still_gets_the_template_argument() -> None:
    engine = _site()
    report = run_dag(
        engine, "site", context=CONTEXT, overrides={"home": lambda page="default": page}
    )
    assert report["tasks"]["home"]["result"] == "index"


def test_a_stub_with_var_keywords_gets_every_template_argument() -> None:
    engine = _site()
    seen: list[dict[str, Any]] = []

    def stub(**kwargs: Any) -> str:
        seen.append(kwargs)
        return "ok"

    run_dag(engine, "site", context=CONTEXT, overrides={"home": stub})
    assert seen == [{"page": "index"}]


def test_a_stub_of_a_partial_task_gets_its_keywords() -> None:
    engine = build_default_engine()

    def fetch(table: str) -> str:
        return f"real {table}"

    engine.task("users", dag="d")(functools.partial(fetch, table="users"))
    report = run_dag(engine, "d", overrides={"users": lambda table: f"stub {table}"})
    assert report["tasks"]["users"]["result"] == "stub users"


def test_a_stub_receives_results_upstream_and_a_mapped_item() -> None:
    engine = build_default_engine()
    etl = engine.dag("etl")

    @etl.task
    def tables() -> list[str]:
        return ["users", "orders"]

    @etl.task(map={"table": tables})
    def load(table: str) -> int:
        raise RuntimeError("no database in tests")

    @etl.task(deps=[load])
    def summary(upstream: dict[str, Any]) -> object:
        return upstream

    def load_stub(table: str, context: Any) -> int:
        return len(table) * int(context.deps["factor"])

    def summary_stub(load: list[int]) -> int:
        return sum(load)

    overrides: dict[str, Callable[..., Any]] = {"load": load_stub, "summary": summary_stub}
    report = run_dag(engine, "etl", context={"factor": 10}, overrides=overrides)
    assert report["tasks"]["summary"]["result"] == 110
    overrides = {"load": lambda table: table[0], "summary": lambda upstream: upstream}
    report = run_dag(engine, "etl", overrides=overrides)
    assert report["tasks"]["summary"]["result"] == {"load": ["u", "o"]}


def test_the_stub_of_a_mapped_task_must_take_the_item() -> None:
    engine = build_default_engine()
    etl = engine.dag("etl")

    @etl.task
    def tables() -> list[str]:
        return ["users"]

    @etl.task(map={"table": tables})
    def load(table: str) -> int:
        return 1

    with pytest.raises(TaskDefinitionError) as caught:
        override_tasks(engine, "etl", load=lambda **kwargs: 1)
    assert str(caught.value) == (
        "override_tasks: the stub <lambda> for task 'load' in DAG 'etl' lacks the parameter "
        "'table': the task is mapped over 'tables' (map={'table': 'tables'}) and each "
        "instance receives its item as 'table'; add it to the stub"
    )
    assert (caught.value.dag, caught.value.task) == ("etl", "load")


def test_a_stub_parameter_nothing_supplies_is_one_message_with_a_suggestion() -> None:
    engine = _site()
    version = engine.registry.version

    def always_down(context: Any, *, pag: str) -> str:
        raise ConnectionError("down")

    with pytest.raises(TaskDefinitionError) as caught:
        override_tasks(engine, "site", home=always_down)  # raised here, before `with`
    assert str(caught.value) == (
        "override_tasks: parameter 'pag' of the stub always_down() for task 'home' in DAG "
        "'site' would receive nothing: the task cannot supply it. Did you mean 'page'? The "
        "stub can take: 'page' (template argument), 'ctx' or 'context' (the run context), "
        "'upstream' (every parent's result by name). Rename the parameter or give it a default"
    )
    assert (caught.value.dag, caught.value.task) == ("site", "home")
    assert engine.registry.version == version  # nothing changed

    with pytest.raises(TaskDefinitionError, match=r"'home' \(the result of task 'home'\)"):
        override_tasks(engine, "site", summary=lambda home, abuot: [])
    with pytest.raises(TaskDefinitionError, match=r"Did you mean 'about'\?"):
        override_tasks(engine, "site", summary=lambda home, abuot: [])


def test_stub_errors_name_the_fix() -> None:
    engine = _site()
    with pytest.raises(TaskDefinitionError, match=r"takes 'upstream'.*read upstream\['home'\]"):
        override_tasks(engine, "site", summary=lambda upstream, home: [])

    def positional(page: str, /) -> str:
        return page

    with pytest.raises(TaskDefinitionError, match=r"'page' of the stub .* is positional-only"):
        override_tasks(engine, "site", home=positional)

    def generator() -> Any:
        yield 1

    with pytest.raises(TaskDefinitionError, match=r"^override_tasks: the stub .* generator"):
        override_tasks(engine, "site", home=generator)
    with pytest.raises(TaskDefinitionError, match="cannot read the signature of the stub"):
        override_tasks(engine, "site", home=type)


def test_an_async_stub_replaces_a_sync_task_and_the_original_comes_back() -> None:
    engine = _site()
    original = engine.registry.tasks_of("site")["home"]

    async def stub(page: str) -> str:
        return f"async {page}"

    with override_tasks(engine, "site", home=stub) as stubs:
        assert stubs["home"].is_async
        assert stubs["home"].options() == original.options()
        assert stubs["home"].deps == original.deps
        report = run_dag(engine, "site", context=CONTEXT)
    assert report["tasks"]["home"]["result"] == "async index"
    assert engine.registry.tasks_of("site")["home"] is original


def test_a_cached_task_stub_gets_its_own_fingerprint() -> None:
    engine = _site(cache=True)
    original = engine.registry.tasks_of("site")["home"]
    with override_tasks(engine, "site", home=lambda page: page) as stubs:
        assert stubs["home"].cache_fingerprint not in ("", original.cache_fingerprint)
