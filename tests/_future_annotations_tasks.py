"""Task functions whose annotations are strings (``from __future__ import annotations``).

Loaded by ``test_injection.py``; the functions are registered there, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import flowrun
from flowrun import RunContext


@dataclass(frozen=True)
class Deps:
    api_base: str


def positional(context: RunContext[Deps]) -> str:
    return f"positional:{context.api_base}"


def qualified(ctx: flowrun.RunContext[Deps]) -> str:
    return f"qualified:{ctx.api_base}"


def optional_union(source: int, context: RunContext[Deps] | None) -> str:
    assert context is not None
    return f"union:{source}:{context.api_base}"


def optional_typing(context: Optional[RunContext[Deps]]) -> str:  # noqa: UP045
    assert context is not None
    return f"optional:{context.api_base}"


def keyword_only(*, source: int, context: RunContext[Deps]) -> str:
    return f"kwonly:{source}:{context.api_base}"


def make_unresolvable() -> Callable[..., Any]:
    """A task whose annotation names a local class, so ``get_type_hints`` cannot resolve it."""

    @dataclass(frozen=True)
    class LocalDeps:
        api_base: str

    def unresolvable(source: int, context: RunContext[LocalDeps]) -> str:
        return f"local:{source}:{context.api_base}"

    return unresolvable


def make_unresolvable_optional() -> Callable[..., Any]:
    @dataclass(frozen=True)
    class LocalDeps:
        api_base: str

    def unresolvable_optional(*, ctx: RunContext[LocalDeps] | None = None) -> str:
        assert ctx is not None
        return f"local-optional:{ctx.api_base}"

    return unresolvable_optional


def make_not_a_context() -> Callable[..., Any]:
    """A string annotation that merely contains the word, which must not inject the context."""

    class MyRunContextual:
        pass

    def not_context(value: MyRunContextual) -> None:
        return None

    return not_context
