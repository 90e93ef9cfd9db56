"""display_dag: the text listing, Mermaid and Graphviz DOT."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from flowrun import CycleError, Engine, UnknownDagError, build_default_engine


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with build_default_engine() as eng:
        yield eng


def noop() -> None:
    return None


def _etl(engine: Engine) -> None:
    """extract -> (clean, enrich) -> load; registered out of order."""
    engine.task("load", dag="etl", deps=["clean", "enrich"])(noop)
    engine.task("clean", dag="etl", deps=["extract"])(noop)
    engine.task("enrich", dag="etl", deps=["extract"])(noop)
    engine.task("extract", dag="etl")(noop)


EDGES = {("extract", "clean"), ("extract", "enrich"), ("clean", "load"), ("enrich", "load")}


def _mermaid_edges(text: str) -> set[tuple[str, str]]:
    labels = dict(re.findall(r'^\s+(\w+)\["(.*)"\]$', text, flags=re.MULTILINE))
    pairs = re.findall(r"^\s+(\w+) --> (\w+)$", text, flags=re.MULTILINE)
    return {(labels[a], labels[b]) for a, b in pairs}


def _dot_edges(text: str) -> set[tuple[str, str]]:
    return set(re.findall(r'^\s+"([^"]*)" -> "([^"]*)";$', text, flags=re.MULTILINE))


def test_text_format_lists_tasks_in_order_with_parents(engine: Engine) -> None:
    _etl(engine)
    text = engine.display_dag("etl")
    assert text == engine.display_dag("etl", format="text")
    lines = text.splitlines()
    assert lines[0] == "DAG etl (4 tasks)"
    body = lines[1:]
    assert len(body) == 4
    order = engine.list_tasks("etl")
    for line, name in zip(body, order, strict=True):
        assert re.search(rf"\b{name}\b", line), (line, name)
    by_task = dict(zip(order, body, strict=True))
    assert "<-" not in by_task["extract"]
    assert by_task["clean"].endswith("<- extract")
    assert by_task["load"].endswith("<- clean, enrich")
    assert body[-1].startswith("└── ")
    assert all(line.startswith("├── ") for line in body[:-1])


def test_text_format_of_a_single_task(engine: Engine) -> None:
    engine.task("only", dag="one")(noop)
    assert engine.display_dag("one") == "DAG one (1 task)\n└── only"


def test_mermaid_format(engine: Engine) -> None:
    _etl(engine)
    mermaid = engine.display_dag("etl", format="mermaid")
    assert mermaid.splitlines()[0] == "flowchart TD"
    assert _mermaid_edges(mermaid) == EDGES
    labels = re.findall(r'\["(.*)"\]', mermaid)
    assert labels == engine.list_tasks("etl")


def test_mermaid_escapes_quotes_in_names(engine: Engine) -> None:
    engine.task('say "hi"', dag="q")(noop)
    engine.task("after it", dag="q", deps=['say "hi"'])(noop)
    mermaid = engine.display_dag("q", format="mermaid")
    assert '"say #quot;hi#quot;"' in mermaid
    assert _mermaid_edges(mermaid) == {("say #quot;hi#quot;", "after it")}


def test_dot_format(engine: Engine) -> None:
    _etl(engine)
    dot = engine.display_dag("etl", format="dot")
    lines = dot.splitlines()
    assert lines[0] == 'digraph "etl" {'
    assert lines[-1] == "}"
    for name in ("extract", "clean", "enrich", "load"):
        assert f'    "{name}";' in lines
    assert _dot_edges(dot) == EDGES


def test_dot_quotes_awkward_names(engine: Engine) -> None:
    engine.task("my task", dag="my dag")(noop)
    engine.task('with "quote"', dag="my dag", deps=["my task"])(noop)
    dot = engine.display_dag("my dag", format="dot")
    assert dot.startswith('digraph "my dag" {')
    assert '"my task" -> "with \\"quote\\"";' in dot


def test_non_ascii_names_render_as_themselves(engine: Engine) -> None:
    # Graphviz reads UTF-8 and knows no \uXXXX escapes: names must not be ASCII-escaped.
    engine.task("café", dag="données")(noop)
    engine.task("résumé", dag="données", deps=["café"])(noop)
    dot = engine.display_dag("données", format="dot")
    assert '"café" -> "résumé";' in dot
    assert dot.startswith('digraph "données" {')
    mermaid = engine.display_dag("données", format="mermaid")
    assert '["café"]' in mermaid
    assert "café" in engine.display_dag("données")


def test_unknown_format_lists_the_formats(engine: Engine) -> None:
    _etl(engine)
    with pytest.raises(ValueError, match=r"'svg'.*text, mermaid, dot"):
        engine.display_dag("etl", format="svg")
    with pytest.raises(ValueError, match=r"'graphviz'.*text, mermaid, dot"):
        engine.dag("etl").display(format="graphviz")


def test_scope_display_matches_engine(engine: Engine) -> None:
    _etl(engine)
    scope = engine.dag("etl")
    for fmt in ("text", "mermaid", "dot"):
        assert scope.display(fmt) == engine.display_dag("etl", format=fmt)
    assert scope.display() == engine.display_dag("etl")


def test_display_of_unknown_or_invalid_dag_raises(engine: Engine) -> None:
    engine.task("a", dag="loop", deps=["a"])(noop)
    with pytest.raises(UnknownDagError, match="Did you mean 'loop'"):
        engine.display_dag("lopo")
    with pytest.raises(CycleError, match="a -> a"):
        engine.display_dag("loop", format="dot")


def test_display_reflects_new_registrations(engine: Engine) -> None:
    engine.task("a", dag="d")(noop)
    assert "(1 task)" in engine.display_dag("d")
    engine.task("b", dag="d", deps=["a"])(noop)
    assert _dot_edges(engine.display_dag("d", format="dot")) == {("a", "b")}
