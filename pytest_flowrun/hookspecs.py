"""The hook the plugin adds: ``pytest_flowrun_context``, implemented in ``conftest.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from flowrun import Engine


@pytest.hookspec(firstresult=True)
def pytest_flowrun_context(dag_name: str, engine: Engine, config: pytest.Config) -> object:
    """Return the context to run DAG ``dag_name`` of ``engine`` with (``--flowrun-run`` and
    the ``flowrun`` marker when it has no ``context=``).

    Return a ``flowrun.RunContext`` or the deps object to wrap in one; ``None`` lets the next
    implementation answer, and when none does the run uses the DAG's default context
    (``engine.dag(name, context=...)``), if any. Call ``pytest.skip(reason)`` to skip the
    DAG. The first non-``None`` result wins; conftest files apply to the DAG files below them.
    """
    return None
