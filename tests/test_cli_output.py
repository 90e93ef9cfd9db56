"""What tasks print during ``flowrun run``: above the live status line on a terminal, prefixed
with the task name in plain mode, on stderr with ``--json``; and the display's end state."""

from __future__ import annotations

import io
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
from support import flowrun, on_a_terminal

from flowrun import Omit, TaskStartEvent, build_default_engine
from flowrun.cli._output import TaskOutput
from flowrun.cli._progress import LiveProgress, PlainProgress
from flowrun.testing import VirtualClock, run_dag

PIPELINE = textwrap.dedent(
    """
    import asyncio
    import logging
    import subprocess
    import sys
    import time

    from flowrun import Omit, TaskStartEvent, build_default_engine

    engine = build_default_engine(max_parallel=4)
    etl = engine.dag("etl")
    log = logging.getLogger("etl.parse")
    calls = {"flaky": 0}


    @etl.task
    async def crawl() -> int:
        for page in range(5):
            print(f"crawled page {page}")
            await asyncio.sleep(0.02)
        return 5


    @etl.task
    def parse() -> int:
        for item in range(5):
            print(f"parsed item {item}", flush=True)
            log.warning("parse warning %d", item)
            time.sleep(0.02)
        sys.stdout.write("parse: no newline at the end")
        sys.stdout.flush()
        return 5


    @etl.task(retries=1, retry_delay_s=0.5)
    def flaky() -> None:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ConnectionError("API down")


    @etl.task(deps=[crawl, parse])
    def broken(crawl: int, parse: int) -> None:
        print("broken starts", file=sys.stderr)
        subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
        raise ValueError("bad row")


    @etl.task(deps=[broken])
    def load(broken: None) -> None:
        print("never printed")
    """
)

TASK_LINES = {
    "crawl": [f"crawled page {page}" for page in range(5)],
    "parse": [
        *(line for item in range(5) for line in (f"parsed item {item}", f"parse warning {item}")),
        "parse: no newline at the end",
    ],
    "broken": ["broken starts"],
}
"""What each task prints, in its order (``parse``'s log records interleave with its prints)."""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(PIPELINE, encoding="utf-8")
    return tmp_path


def screen(output: str) -> list[str]:
    """The lines a terminal shows for ``output`` (carriage return, erase-line, newline)."""
    lines = [""]
    col = 0
    i = 0
    while i < len(output):
        if output.startswith("\x1b[K", i):
            lines[-1] = lines[-1][:col]
            i += 3
            continue
        char = output[i]
        i += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            lines.append("")
        else:
            line = lines[-1]
            lines[-1] = line[:col] + char + line[col + 1 :]
            col += 1
    return lines


def test_task_lines_show_whole_above_the_live_status_line(project: Path) -> None:
    code, raw = on_a_terminal(project, "run", "pipeline.py", "--db", ":memory:")
    assert code == 1
    out = raw.decode()
    shown = screen(out)
    for task, lines in TASK_LINES.items():
        where = []
        for line in lines:
            assert line in shown, f"{line!r} of task {task!r} is not a line of its own"
            where.append(shown.index(line))
        assert where == sorted(where), f"the lines of {task!r} changed order"
    assert "never printed" not in out
    # every status line on screen is one: no task output glued to it
    status = [line for line in shown if " done | " in line]
    assert status
    assert not [line for line in status if "crawled" in line or "parsed" in line]
    # a task waiting out its retry back-off is shown so, with the time left
    assert re.search(r"waiting 1: flaky \(retry in 0\.\ds\)", out)
    # the end: a final status line without a spinner, every task counted
    end = shown.index(next(line for line in shown if line.startswith("FAILED in ")))
    assert re.fullmatch(
        r"5/5 done \| 0:\d\d\.\d \| 1 retry \| 1 failed \| 1 skipped", shown[end - 1]
    )
    assert not re.search(r"\r[|/\\-] \d+/\d+ done", out[out.index("FAILED in ") :])
    assert shown[end + 1].startswith("run ")
    assert shown[end + 1].endswith("of DAG 'etl': FAILED")  # the report follows


def test_plain_mode_prefixes_each_task_line_with_its_task(project: Path) -> None:
    proc = flowrun(project, "run", "pipeline.py", "--db", ":memory:")
    assert proc.returncode == 1
    out = proc.stdout.splitlines()
    err = proc.stderr.splitlines()
    for task, lines in TASK_LINES.items():
        prefixed = [f"[{task}] {line}" for line in lines]
        found = [line for line in out + err if line.startswith(f"[{task}] ")]
        assert sorted(found) == sorted(prefixed), task
        # each stream keeps the task's order
        for stream in (out, err):
            mine = [line for line in stream if line in prefixed]
            assert mine == [line for line in prefixed if line in mine]
    assert "[parse] parsed item 0" in out  # stdout stays stdout...
    assert "[parse] parse warning 0" in err  # ...and stderr, stderr
    assert "[broken] broken starts" in err
    assert any(line.endswith("FAILED in " + line.split(" in ")[-1]) for line in out)
    assert re.search(
        r"^\[ *\d+\.\d\ds\] run \w+ FAILED in \d+\.\d\ds \[5/5 done\]$", proc.stdout, re.M
    )


def test_json_keeps_stdout_for_the_report_alone(project: Path) -> None:
    proc = flowrun(project, "run", "pipeline.py", "--db", ":memory:", "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)  # nothing else on stdout
    assert report["tasks"]["load"]["status"] == "SKIPPED"
    err = proc.stderr.splitlines()
    for lines in TASK_LINES.values():
        assert [line for line in err if line in lines] == lines  # whole, in order, unprefixed
    assert "from a child process" in err  # file descriptor 1 pointed at stderr meanwhile


def test_json_with_plain_progress_prefixes_task_lines_on_stderr(project: Path) -> None:
    proc = flowrun(
        project, "run", "pipeline.py", "--db", ":memory:", "--json", "--progress", "plain"
    )
    assert json.loads(proc.stdout)["status"] == "FAILED"
    assert "[crawl] crawled page 4" in proc.stderr.splitlines()
    assert re.search(r"\] ok      crawl in \d", proc.stderr)


def test_streams_are_restored_and_partial_lines_kept_when_a_run_is_cut_short(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = sys.stdout, sys.stderr

    def cut_short() -> None:
        with TaskOutput(prefix=True):
            assert sys.stdout is not before[0]
            print("half a line", end="")
            sys.stderr.write("progress 10%\rprogress 100%")  # a bar redrawn with \r
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cut_short()
    assert (sys.stdout, sys.stderr) == before
    captured = capsys.readouterr()
    assert captured.out == "half a line\n"  # written outside a task: no prefix
    assert captured.err == "progress 100%\n"  # as the terminal would have shown it


def test_routed_streams_answer_as_the_real_ones() -> None:
    real = io.TextIOWrapper(io.BytesIO(), encoding="latin-1", errors="replace")
    real.isatty = lambda: True  # type: ignore[method-assign]
    saved = sys.stdout
    sys.stdout = real
    try:
        with TaskOutput():
            assert sys.stdout is not real
            assert sys.stdout.isatty()
            assert (sys.stdout.encoding, sys.stdout.errors) == ("latin-1", "replace")
            assert sys.stdout.buffer is real.buffer  # what it does not route is the real's
            assert sys.stdout.writable()
            assert not sys.stdout.readable()
            assert not sys.stdout.seekable()
            with pytest.raises(io.UnsupportedOperation):
                sys.stdout.fileno()  # the real stream's answer: it has no descriptor
            assert sys.stdout.write("abc") == 3
            sys.stdout.flush()
            assert value(real) == ""  # line-buffered: nothing before the newline
            sys.stdout.writelines(["d\n", "e"])
            assert value(real) == "abcd\n"
            with pytest.raises(TypeError, match="must be str, not bytes"):
                sys.stdout.write(b"x")  # type: ignore[arg-type]
    finally:
        sys.stdout = saved
    assert value(real) == "abcd\ne\n"


def value(stream: io.TextIOWrapper) -> str:
    stream.flush()
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode("latin-1")


def test_lines_go_above_a_live_status_line_and_a_cut_short_one_is_ended() -> None:
    out = io.StringIO()
    live = LiveProgress(out, width=80)
    saved = sys.stdout
    sys.stdout = out
    try:
        with TaskOutput() as output:
            output.display = live
            print("before the run")  # no status line yet: written as it is
            live.on_task_start(TaskStartEvent("r1", "etl", "crawl", 1, 1))
            print("crawled")
    finally:
        sys.stdout = saved
    text = out.getvalue()
    status = "| 0/0 done | 0:00.0 | running 1: crawl"
    assert text.startswith(f"before the run\n\r{status}\x1b[K")
    assert f"\r\x1b[Kcrawled\n\r{status}\x1b[K" in text  # erased, written, redrawn
    assert text.endswith(f"\r{status}\x1b[K\n")  # no end event: the line is ended


def test_an_omitted_task_counts_as_done() -> None:
    out = io.StringIO()
    engine = build_default_engine(hooks=[PlainProgress(out)])

    @engine.task(name="check", dag="etl")
    def check() -> None:
        raise Omit("nothing new")

    @engine.task(name="load", dag="etl", deps=[check])
    def load(check: None) -> None: ...

    run_dag(engine, "etl")
    lines = out.getvalue().splitlines()
    assert lines[-3].endswith("omitted check: nothing new [1/2 done]")
    assert lines[-1].endswith("SUCCESS in 0.00s [2/2 done]")


def test_live_status_shows_a_retry_back_off_counting_down_on_the_engine_clock() -> None:
    clock = VirtualClock()
    out = io.StringIO()
    live = LiveProgress(out, clock=clock, width=200, interval_s=1.0)
    engine = build_default_engine(hooks=[live], clock=clock)
    calls: list[int] = []

    @engine.task(name="pull", dag="sync", retries=1, retry_delay_s=30)
    def pull() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("API down")

    assert run_dag(engine, "sync", clock=clock)["status"] == "SUCCESS"
    redraws = [chunk.split("\x1b[K")[0] for chunk in out.getvalue().split("\r")]
    left = [int(m.group(1)) for r in redraws if (m := re.search(r"retry in (\d+)s\)", r))]
    assert left[0] == 30  # virtual time: the countdown of a 30 s back-off, second by second
    assert left == sorted(left, reverse=True)
    assert len(left) >= 20
    assert any("running 1: pull (attempt 2)" in r and "waiting" not in r for r in redraws)
    assert out.getvalue().endswith("\r1/1 done | 0:30.0 | 1 retry\x1b[K\nSUCCESS in 30.00s\n")


MAPPED = textwrap.dedent(
    """
    from pathlib import Path

    from flowrun import Omit, TaskStartEvent, build_default_engine

    engine = build_default_engine()
    fan = engine.dag("fan")


    @fan.task
    def items() -> list[int]:
        return [1, 2, 3]


    @fan.task(map={"item": items})
    def double(item: int) -> int:
        if item == 3 and Path("broken.flag").exists():
            raise ValueError("three")
        return item * 2


    @fan.task(deps=[double])
    def total(double: list[int]) -> int:
        return sum(double)
    """
)


def test_done_counts_every_final_task_of_a_resumed_mapped_run(tmp_path: Path) -> None:
    (tmp_path / "fan.py").write_text(MAPPED, encoding="utf-8")
    (tmp_path / "broken.flag").touch()
    failed = flowrun(tmp_path, "run", "fan.py")
    assert failed.returncode == 1
    assert failed.stdout.splitlines()[0].endswith("3 tasks")
    assert re.search(r"run \w+ FAILED in \S+ \[6/6 done\]", failed.stdout)  # 3 + 3 instances
    (tmp_path / "broken.flag").unlink()
    run_id = re.search(r"flowrun resume (\w+)", failed.stdout)
    assert run_id is not None
    resumed = flowrun(tmp_path, "resume", run_id.group(1), "fan.py")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "3 tasks, 1 kept from the resumed run" in resumed.stdout  # items
    assert "ok      double[2] in " in resumed.stdout  # the instance that failed runs again
    assert "start   double[0]" not in resumed.stdout  # the others are reused
    assert re.search(r"run \w+ SUCCESS in \S+ \[6/6 done\]", resumed.stdout)
