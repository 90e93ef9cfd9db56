"""Tests of the ETL pipeline with the flowrun fixtures and marker."""

from __future__ import annotations

from typing import Any

import pytest
from dags.etl import Deps, etl

from flowrun.testing import VirtualClock


@pytest.mark.flowrun(etl)
def test_marker_runs_the_dag_with_the_conftest_context(flowrun_report: dict[str, Any]) -> None:
    assert flowrun_report["status"] == "SUCCESS"
    assert flowrun_report["tasks"]["load"]["result"] == 2


def test_transform_with_a_stubbed_extract(flowrun_run: Any) -> None:
    deps = Deps(api_rows=[])
    report = flowrun_run(
        etl, context=deps, overrides={"extract": lambda: [{"name": "grace hopper"}]}
    )
    assert report["status"] == "SUCCESS"
    assert deps.warehouse == [{"name": "Grace Hopper"}]


def test_retries_take_no_real_time(flowrun_run: Any, flowrun_clock: VirtualClock) -> None:
    calls = []

    async def flaky_extract() -> list[dict[str, Any]]:
        calls.append(flowrun_clock.monotonic())
        if len(calls) < 3:
            raise ConnectionError("API down")
        return []

    report = flowrun_run(etl, context=Deps(api_rows=[]), overrides={"extract": flaky_extract})
    assert report["status"] == "SUCCESS"
    assert calls == [0.0, 30.0, 90.0]  # retry_delay_s=30, doubling
    assert report["tasks"]["extract"]["attempt"] == 3


@pytest.mark.flowrun(etl, context=Deps(api_rows=[{"name": None}]), targets=["transform"])
def test_subgraph(flowrun_report: dict[str, Any]) -> None:
    assert list(flowrun_report["tasks"]) == ["extract", "transform"]
    assert flowrun_report["tasks"]["transform"]["result"] == []
