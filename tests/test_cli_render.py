"""What the command line draws and prints: run drawings (render_run) and the progress hooks."""

from __future__ import annotations

import io
import re

import pytest

import flowrun.testing
from flowrun import Engine, build_default_engine
from flowrun._render import format_report, render_run
from flowrun.cli._progress import LiveProgress, PlainProgress
from flowrun.testing import run_dag


def _failing_etl(engine: Engine) -> None:
    engine.task("extract", dag="etl")(lambda: 1)

    @engine.task('trans"form<x>#1', dag="etl", deps=["extract"], retries=1)
    def transform(upstream: dict[str, int]) -> int:
        raise RuntimeError("bad data " + "x" * 100)

    engine.task("load", dag="etl", deps=['trans"form<x>#1'])(lambda upstream: 1)


def test_render_run_mermaid_colours_nodes_by_status_and_escapes_labels() -> None:
    engine = build_default_engine()
    _failing_etl(engine)
    report = run_dag(engine, "etl")
    text = render_run(report, "mermaid", engine.get_dag("etl").parents)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert lines[1] == f"    %% run {report['run_id']} of DAG 'etl': FAILED"
    label = re.search(r't1\["(.*)"\]', text)
    assert label is not None
    parts = label.group(1).split("<br/>")
    assert parts[0] == "trans#quot;form#lt;x#gt;#35;1"
    assert parts[1].startswith("FAILED, 2 attempts, ")
    assert parts[2].startswith("RuntimeError: bad data x")
    assert parts[2].endswith("...")
    assert len(parts[2]) == 60
    assert "    t0 --> t1" in lines
    assert "    t1 --> t2" in lines
    assert "    class t0 success" in lines
    assert "    class t1 failed" in lines
    assert "    class t2 skipped" in lines


def test_render_run_dot_and_text_and_errors() -> None:
    engine = build_default_engine()
    _failing_etl(engine)
    report = run_dag(engine, "etl")
    dot = render_run(report, "dot", engine.get_dag("etl").parents)
    assert dot.startswith('digraph "etl" {')
    assert '"extract" -> "trans\\"form<x>#1";' in dot
    assert re.search(r'"load" \[label="load\\nSKIPPED", fillcolor="#f1f3f5"', dot)
    assert "->" not in render_run(report, "dot")  # no DAG: nodes only
    assert render_run(report, "text") == format_report(report)
    with pytest.raises(ValueError, match="unknown run display format 'png'"):
        render_run(report, "png")


def test_testing_keeps_its_report_helpers() -> None:
    assert flowrun.testing.format_report is format_report
    assert "format_report" in flowrun.testing.__all__
    assert "trim_traceback" in flowrun.testing.__all__


def test_plain_progress_prints_one_line_per_event() -> None:
    out = io.StringIO()
    engine = build_default_engine(hooks=[PlainProgress(out)])
    _failing_etl(engine)
    run_dag(engine, "etl")
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines[0].endswith("of DAG 'etl': 3 tasks")
    assert lines[1] == "start   extract (attempt 1/1)"
    assert lines[2].startswith("ok      extract in ")
    assert lines[2].endswith("[1/3 done]")
    assert lines[4].startswith('retry   trans"form<x>#1: attempt 1/2 failed: RuntimeError')
    assert lines[6].startswith('FAILED  trans"form<x>#1 (attempt 2/2): RuntimeError')
    assert lines[7] == "skipped load: upstream task 'trans\"form<x>#1' failed"
    assert lines[8].endswith("FAILED in 0.00s [3/3 done]")  # every task is final
    assert len(lines) == 9  # the retried attempt's failure is its retry line, not a second one


def test_live_progress_redraws_a_status_line_that_never_wraps() -> None:
    out = io.StringIO()
    live = LiveProgress(out, width=40, interval_s=0.01)
    engine = build_default_engine(hooks=[live])
    _failing_etl(engine)
    run_dag(engine, "etl")
    text = out.getvalue()
    redraws = [chunk.split("\x1b[K")[0] for chunk in text.split("\r") if "done" in chunk]
    assert redraws
    assert all(len(line) <= 39 for line in redraws)
    assert any(line.endswith("...") for line in redraws)  # the long task name was cut
    assert "| 1 retry" in live.status_line()
    assert "| 1 failed | 1 skipped" in live.status_line()
    assert live.done == 3  # final: succeeded, failed for good, skipped
    assert live.total == 3
    assert text.endswith("\nFAILED in 0.00s\n")
