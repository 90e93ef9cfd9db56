"""Supplies the context each DAG runs with under `pytest --flowrun --flowrun-run` (and under
the `flowrun` marker when it gives no `context=`)."""

from __future__ import annotations

import pytest
from dags.etl import Deps

from flowrun import Engine

SAMPLE_ROWS = [{"name": " ada lovelace "}, {"name": ""}, {"name": "alan turing"}]


@pytest.hookimpl(optionalhook=True)  # so `pytest -p no:flowrun` still works here
def pytest_flowrun_context(dag_name: str, engine: Engine) -> object:
    if dag_name == "etl":
        return Deps(api_rows=list(SAMPLE_ROWS))
    return None  # the other DAGs need no context
