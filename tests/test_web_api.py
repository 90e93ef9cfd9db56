"""The web view without a browser: its JSON API, the server-side SVG, escaping, read-only
access, bad input, and the `flowrun ui` / `flowrun serve --ui` commands."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _web_runs import EVIL, LiveRun, Runs, make_big_run, make_runs, make_showcase
from support import WAIT_S, flowrun

from flowrun import InMemoryStateStore, StateDatabaseError, build_default_engine
from flowrun._render import STATUS_COLOURS
from flowrun.web import UiServer, start_ui
from flowrun.web._svg import layered_layout, render_run_svg

SVG = "{http://www.w3.org/2000/svg}"


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json", self.headers
        return json.loads(self.body)


def get(ui: UiServer, path: str, method: str = "GET") -> Reply:
    request = urllib.request.Request(ui.url.rstrip("/") + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return make_runs(tmp_path_factory.mktemp("web") / "flowrun.db")


@pytest.fixture
def ui(runs: Runs) -> Iterator[UiServer]:
    with start_ui(runs.db, port=0) as server:
        yield server


# -- the runs page ---------------------------------------------------------------------------
def test_runs_newest_first_with_status_duration_and_first_failed_task(
    ui: UiServer, runs: Runs
) -> None:
    listed = get(ui, "/api/runs").json()["runs"]
    assert [r["run_id"] for r in listed] == [runs.mapped, runs.failed, runs.success]
    by_id = {r["run_id"]: r for r in listed}
    failed = by_id[runs.failed]
    assert failed["status"] == "FAILED"
    assert failed["final"] is True
    assert failed["first_failed"] == {"task": "transform", "error": f"ValueError: bad row {EVIL}"}
    assert failed["counts"] == {"SUCCESS": 1, "FAILED": 1, "OMITTED": 1, "SKIPPED": 1}
    assert by_id[runs.success]["first_failed"] is None
    assert failed["duration_s"] == pytest.approx(failed["finished_at"] - failed["created_at"])
    assert by_id[runs.mapped]["counts"] == {"SUCCESS": 3}  # instances folded: 3 tasks, not 6


def test_runs_filtered_by_dag_and_status(ui: UiServer, runs: Runs) -> None:
    etl = get(ui, "/api/runs?dag=etl").json()["runs"]
    assert [r["run_id"] for r in etl] == [runs.failed, runs.success]
    assert [r["run_id"] for r in get(ui, "/api/runs?status=failed").json()["runs"]] == [runs.failed]
    assert get(ui, "/api/runs?dag=fan&status=FAILED").json()["runs"] == []
    assert [r["run_id"] for r in get(ui, "/api/runs?limit=1").json()["runs"]] == [runs.mapped]
    assert get(ui, "/api/dags").json() == {"dags": ["etl", "fan"]}


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/runs?dag=elt", 404, "unknown DAG 'elt': no run of it in the database"),
        ("/api/runs?status=DONE", 400, "unknown run status 'DONE'; choose one of SUCCESS"),
        ("/api/runs?limit=0", 400, "'limit' must be an integer from 1 to 500 (got 0)"),
        ("/api/runs?limit=many", 400, "'limit' must be an integer from 1 to 500 (got 'many')"),
        ("/api/dags/elt/grid", 404, "unknown DAG 'elt'"),
        ("/api/nothing", 404, "no such page: '/api/nothing'"),
    ],
)
def test_bad_queries_answer_with_what_was_wrong(
    ui: UiServer, path: str, status: int, message: str
) -> None:
    reply = get(ui, path)
    assert reply.status == status
    assert message in reply.json()["error"]
    if "elt" in path:
        assert reply.json()["error"].endswith("Did you mean 'etl'?")


# -- a run's page ----------------------------------------------------------------------------
def test_a_run_with_its_tasks_errors_and_trimmed_tracebacks(ui: UiServer, runs: Runs) -> None:
    run = get(ui, f"/api/runs/{runs.failed}").json()
    assert run["run_id"] == runs.failed
    assert run["status"] == "FAILED"
    assert run["final"] is True
    tasks = {t["name"]: t for t in run["tasks"]}
    assert [t["name"] for t in run["tasks"]] == ["extract", "transform", "audit", "load"]
    assert tasks["transform"]["deps"] == ["extract"]
    assert tasks["transform"]["error"] == f"ValueError: bad row {EVIL}"
    trace = tasks["transform"]["traceback"]
    assert 'raise ValueError(f"bad row {EVIL}")' in trace  # the user's frame...
    assert "flowrun/_attempt.py" not in trace
    assert "asyncio" not in trace
    assert tasks["load"]["status"] == "SKIPPED"
    assert tasks["load"]["attempt"] == 0
    assert tasks["audit"]["status"] == "OMITTED"
    assert tasks["audit"]["error"] == "nothing to audit"
    assert tasks["extract"]["duration_s"] >= 0
    assert tasks["extract"]["queued_s"] == 0


def test_mapped_instances_are_folded_under_their_task(ui: UiServer, runs: Runs) -> None:
    run = get(ui, f"/api/runs/{runs.mapped}").json()
    assert [t["name"] for t in run["tasks"]] == ["items", "square", "total"]
    square = run["tasks"][1]
    assert [(i["name"], i["status"]) for i in square["instances"]] == [
        ("0", "SUCCESS"),
        ("1", "SUCCESS"),
        ("2", "SUCCESS"),
    ]
    assert run["tasks"][0]["instances"] is None
    svg = ET.fromstring(get(ui, f"/api/runs/{runs.mapped}/svg").body)
    nodes = svg.findall(f".//{SVG}g[@class='node']")
    assert [n.get("data-task") for n in nodes] == ["items", "square", "total"]
    assert "3/3 instances" in "".join(nodes[1].itertext())


def test_a_long_traceback_keeps_its_last_lines(tmp_path: Path) -> None:
    store = InMemoryStateStore()
    engine = build_default_engine(state_store=store)

    @engine.task(dag="deep")
    def dive() -> None:
        def down(n: int) -> None:  # two functions in turn: Python folds no repeated frame
            if n == 0:
                raise RecursionError("bottom")
            across(n - 1)

        def across(n: int) -> None:
            down(n)

        down(50)

    import asyncio

    run_id = asyncio.run(engine.run_once("deep"))
    with start_ui(store, port=0) as ui:
        trace = get(ui, f"/api/runs/{run_id}").json()["tasks"][0]["traceback"]
    lines = trace.splitlines()
    assert len(lines) == 61
    assert re.fullmatch(r"\.\.\. \d+ lines above not shown", lines[0])
    assert lines[-1] == "RecursionError: bottom"


def test_an_unknown_run_id_is_404_naming_it_and_the_closest_id(ui: UiServer, runs: Runs) -> None:
    typo = runs.failed[:-1] + ("0" if runs.failed[-1] != "0" else "1")
    reply = get(ui, f"/api/runs/{typo}")
    assert reply.status == 404
    assert reply.json()["error"] == (
        f"unknown run id {typo!r}: the database has no such run. Did you mean {runs.failed!r}?"
    )
    prefix = get(ui, f"/api/runs/{runs.failed[:8]}").json()["error"]
    assert prefix.endswith(f"Did you mean {runs.failed!r}?")
    page = get(ui, f"/runs/{typo}")  # the page answers 404 too, and shows the API's message
    assert page.status == 404
    assert page.headers["Content-Type"].startswith("text/html")
    assert get(ui, "/dags/nope").status == 404
    assert get(ui, f"/api/runs/{typo}/svg").status == 404


# -- the SVG ---------------------------------------------------------------------------------
def test_the_svg_colours_each_task_by_status_and_draws_each_dependency(
    ui: UiServer, runs: Runs
) -> None:
    reply = get(ui, f"/api/runs/{runs.failed}/svg")
    assert reply.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
    svg = ET.fromstring(reply.body)
    nodes = {n.get("data-task"): n for n in svg.iter(f"{SVG}g") if n.get("class") == "node"}
    assert set(nodes) == {"extract", "transform", "audit", "load"}
    for name, status in [
        ("extract", "SUCCESS"),
        ("transform", "FAILED"),
        ("audit", "OMITTED"),
        ("load", "SKIPPED"),
    ]:
        rect = nodes[name].find(f"{SVG}rect")
        assert rect is not None
        assert nodes[name].get("data-status") == status
        assert (rect.get("fill"), rect.get("stroke")) == STATUS_COLOURS[status][:2]
    assert (
        len(svg.findall(f".//{SVG}path[@class='edge']")) == 3
    )  # extract->transform, ->audit, ->load
    x = {name: float(node.find(f"{SVG}rect").get("x", "")) for name, node in nodes.items()}  # type: ignore[union-attr]
    assert x["extract"] < x["transform"] == x["audit"] < x["load"]  # columns by depth


def test_user_text_is_escaped_in_the_svg_and_the_json(ui: UiServer, runs: Runs) -> None:
    svg = get(ui, f"/api/runs/{runs.failed}/svg").text
    assert "<script" not in svg
    assert "<img" not in svg
    assert "&lt;script&gt;" in svg
    tooltip = "".join(ET.fromstring(svg).itertext())
    assert EVIL in tooltip  # the error is there, as text
    body = get(ui, f"/api/runs/{runs.failed}").text
    assert "<" not in body
    assert ">" not in body
    assert "&" not in body
    assert EVIL in json.loads(body)["tasks"][1]["error"]  # the same text once parsed


def test_svg_of_hostile_names_parses_and_keeps_the_names_as_text() -> None:
    name = 'a"b<c>&d\x00e'
    tasks = [
        {"name": name, "status": "FAILED", "deps": [], "error": "</svg><script>x()</script>"},
        {"name": "<b>", "status": "WEIRD", "deps": [name, "missing"]},
    ]
    root = ET.fromstring(render_run_svg(tasks, "DAG <x>"))
    nodes = root.findall(f".//{SVG}g[@class='node']")
    assert [n.get("data-task") for n in nodes] == ['a"b<c>&d\ufffde', "<b>"]
    assert root.findtext(f"{SVG}title") == "DAG <x>"
    unknown = nodes[1].find(f"{SVG}rect")
    assert unknown is not None
    assert unknown.get("fill") == STATUS_COLOURS["PENDING"][0]
    assert len(root.findall(f".//{SVG}path[@class='edge']")) == 1  # "missing" is ignored


def test_layered_layout_puts_each_task_one_column_after_its_deepest_parent() -> None:
    parents = {
        "a": [],
        "b": ["a"],
        "c": ["a", "b"],
        "d": [],
        "e": ["d", "c"],
    }
    # d, a root, sits just before its only child instead of far left of it
    assert layered_layout(parents) == [["a"], ["b"], ["d", "c"], ["e"]]
    assert layered_layout({"r": [], "alone": [], "s": ["r"]}) == [["r", "alone"], ["s"]]
    assert layered_layout({}) == []
    cycle = layered_layout({"x": [], "y": ["z"], "z": ["y"]})
    assert cycle[0] == ["x"]
    assert sorted(cycle[1]) == ["y", "z"]


def test_layered_layout_orders_rows_by_their_parents() -> None:
    # p1 feeds c1, p2 feeds c2; registered crossed, the sweep uncrosses them
    parents = {"p1": [], "p2": [], "c2": ["p2"], "c1": ["p1"]}
    assert layered_layout(parents) == [["p1", "p2"], ["c1", "c2"]]


# -- the grid --------------------------------------------------------------------------------
def test_the_dag_grid_has_the_last_runs_by_task(ui: UiServer, runs: Runs) -> None:
    grid = get(ui, "/api/dags/etl/grid").json()
    assert [r["run_id"] for r in grid["runs"]] == [runs.success, runs.failed]  # oldest first
    assert grid["final"] is True
    assert {row["task"]: row["cells"] for row in grid["tasks"]} == {
        "extract": ["SUCCESS", "SUCCESS"],
        "transform": ["SUCCESS", "FAILED"],
        "audit": ["OMITTED", "OMITTED"],
        "load": ["SUCCESS", "SKIPPED"],
    }
    one = get(ui, "/api/dags/etl/grid?limit=1").json()
    assert [r["run_id"] for r in one["runs"]] == [runs.failed]
    fan = get(ui, "/api/dags/fan/grid").json()
    assert [row["task"] for row in fan["tasks"]] == ["items", "square", "total"]  # no instances
    assert get(ui, "/dags/etl").status == 200


# -- the page, static files, headers ----------------------------------------------------------
def test_the_page_and_its_static_files_forbid_inline_scripts(ui: UiServer, runs: Runs) -> None:
    for path in ["/", f"/runs/{runs.failed}", "/dags/etl", "/static/index.html"]:
        page = get(ui, path)
        assert page.status == 200
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert '<script src="/static/app.js" defer></script>' in page.text
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Content-Type-Options"] == "nosniff"
    js = get(ui, "/static/app.js")
    assert js.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "innerHTML" not in js.text
    assert "insertAdjacentHTML" not in js.text
    assert get(ui, "/static/app.css").headers["Content-Type"] == "text/css; charset=utf-8"
    assert get(ui, "/api/runs").headers["Cache-Control"] == "no-store"
    for path in ["/static/_server.py", "/static/..%2f_server.py", "/static/%2e%2e/__init__.py"]:
        assert get(ui, path).status == 404
    head = get(ui, "/api/runs", method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert int(head.headers["Content-Length"]) > 0


def test_the_css_uses_the_status_colours_of_the_drawings(ui: UiServer) -> None:
    css = get(ui, "/static/app.css").text
    for status, (fill, stroke, colour) in STATUS_COLOURS.items():
        rule = re.search(rf"\.st-{status} \{{([^}}]*)\}}", css)
        assert rule is not None, status
        assert f"background: {fill}" in rule.group(1)
        assert f"border-color: {stroke}" in rule.group(1)
        assert f"color: {colour}" in rule.group(1)


# -- read-only -------------------------------------------------------------------------------
def _fingerprint(db: Path) -> tuple[str, int]:
    return hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns


def test_browsing_never_writes_the_database(tmp_path: Path) -> None:
    runs = make_runs(tmp_path / "flowrun.db")
    before = _fingerprint(runs.db)
    with start_ui(runs.db, port=0) as ui:
        paths = ["/", "/api/runs", "/api/dags", "/api/dags/etl/grid", "/dags/etl", "/api/runs/x"]
        for run_id in (runs.success, runs.failed, runs.mapped):
            paths += [f"/runs/{run_id}", f"/api/runs/{run_id}", f"/api/runs/{run_id}/svg"]
        for path in paths:
            assert get(ui, path).status in (200, 404)
        for method in ("POST", "PUT", "DELETE"):
            refused = get(ui, f"/api/runs/{runs.failed}", method=method)
            assert refused.status == 405
            assert refused.headers["Allow"] == "GET, HEAD"
            assert "read-only" in refused.json()["error"]
    assert _fingerprint(runs.db) == before


def test_a_missing_or_foreign_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    with pytest.raises(StateDatabaseError, match="does not exist; pass --db"):
        start_ui(missing, port=0)
    assert not missing.exists()  # not created
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(StateDatabaseError, match="is not a flowrun state database"):
        start_ui(empty, port=0)
    assert empty.read_bytes() == b""  # no schema written into it
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(StateDatabaseError, match="cannot be read"):
        start_ui(text, port=0)
    assert text.read_text() == "hello\n"


def test_an_older_schema_is_not_upgraded_by_the_view(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    make_runs(db)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 1")
    before = _fingerprint(db)
    with pytest.raises(StateDatabaseError, match=r"older than this flowrun's .*`flowrun runs --db"):
        start_ui(db, port=0)
    assert _fingerprint(db) == before


# -- live runs -------------------------------------------------------------------------------
def test_a_running_run_reads_as_not_final_until_it_ends(tmp_path: Path) -> None:
    db = tmp_path / "flowrun.db"
    make_runs(db)
    live = LiveRun(db)
    try:
        with start_ui(db, port=0) as ui:
            run = get(ui, f"/api/runs/{live.run_id}").json()
            assert (run["status"], run["final"]) == ("RUNNING", False)
            assert [t["status"] for t in run["tasks"]] == ["RUNNING", "PENDING"]
            assert run["tasks"][0]["finished_at"] is None
            assert run["tasks"][0]["duration_s"] >= 0
            assert get(ui, "/api/runs").json()["runs"][0]["final"] is False
            assert get(ui, "/api/dags/live/grid").json()["final"] is False
            live.finish()
            run = get(ui, f"/api/runs/{live.run_id}").json()
            assert (run["status"], run["final"]) == ("SUCCESS", True)
            assert [t["status"] for t in run["tasks"]] == ["SUCCESS", "SUCCESS"]
    finally:
        live.close()


def test_a_store_passed_in_is_read_as_it_is_and_left_open() -> None:
    store = InMemoryStateStore()
    engine = build_default_engine(state_store=store)
    engine.task("only", dag="mem")(lambda: 1)
    import asyncio

    run_id = asyncio.run(engine.run_once("mem"))
    with start_ui(store, port=0) as ui:
        assert [r["run_id"] for r in get(ui, "/api/runs").json()["runs"]] == [run_id]
        assert repr(ui) == f"UiServer({ui.url!r})"
        assert ui.host == "127.0.0.1"
    assert store.load_run(run_id).status == "SUCCESS"  # still usable
    ui.close()  # closing again is harmless; the port is closed
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(ui.url + "api/runs", timeout=WAIT_S)


def test_a_1000_task_run_is_served_whole(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    run_id = make_big_run(db)
    with start_ui(db, port=0) as ui:
        run = get(ui, f"/api/runs/{run_id}").json()
        svg = ET.fromstring(get(ui, f"/api/runs/{run_id}/svg").body)
    assert len(run["tasks"]) == 1000
    assert run["first_failed"]["task"] == "step_0999"
    assert len(svg.findall(f".//{SVG}g[@class='node']")) == 1000
    assert len(svg.findall(f".//{SVG}path[@class='edge']")) == sum(
        len(t["deps"]) for t in run["tasks"]
    )


# -- the commands ----------------------------------------------------------------------------
def _read_until(proc: subprocess.Popen[str], pattern: str) -> tuple[re.Match[str], list[str]]:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match, seen
    raise AssertionError(f"no line matched {pattern!r}; got {seen}")


def _popen(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRUN_")}
    return subprocess.Popen(
        [sys.executable, "-m", "flowrun", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=WAIT_S) as response:
        return json.loads(response.read())


def test_flowrun_ui_serves_until_sigterm_on_localhost(tmp_path: Path) -> None:
    runs = make_runs(tmp_path / "flowrun.db")
    proc = _popen(tmp_path, "ui", "--db", str(runs.db), "--port", "0")
    try:
        match, _ = _read_until(
            proc, r"flowrun ui: (http://127\.0\.0\.1:\d+/) \(database (.*), read-only\)"
        )
        url = match.group(1)
        assert match.group(2) == str(runs.db)
        _read_until(proc, r"listening on 127\.0\.0\.1 only: other machines cannot reach it")
        _read_until(proc, r"Ctrl-C or SIGTERM to stop")
        listed = _fetch_json(url + "api/runs")["runs"]
        assert [r["run_id"] for r in listed] == [runs.mapped, runs.failed, runs.success]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT_S * 4)
    assert proc.returncode == 0, err
    assert "flowrun ui: stopped" in out
    assert err == ""


def test_flowrun_ui_on_all_interfaces_warns(tmp_path: Path) -> None:
    runs = make_runs(tmp_path / "flowrun.db")
    proc = _popen(tmp_path, "ui", "--db", str(runs.db), "--port", "0", "--host", "0.0.0.0")
    try:
        _read_until(proc, r"flowrun ui: http://0\.0\.0\.0:\d+/")
        _read_until(proc, r"Ctrl-C or SIGTERM to stop")
        assert proc.stderr is not None
        warning = proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=WAIT_S * 4)
    assert warning.startswith("flowrun ui: warning: listening on 0.0.0.0: anyone who can reach")
    assert "without a login" in warning
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "nowhere.db"], "nowhere.db' does not exist; pass --db"),
        (["--db", ":memory:"], "flowrun ui reads a database file"),
        (["--port", "70000"], "must be from 0 to 65535 (got 70000)"),
        (["--port", "http"], "expected a port number, got 'http'"),
    ],
)
def test_flowrun_ui_refuses_what_it_cannot_serve(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = flowrun(tmp_path, "ui", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "nowhere.db").exists()


def test_flowrun_ui_on_a_port_in_use_says_so(tmp_path: Path, runs: Runs) -> None:
    with start_ui(runs.db, port=0) as taken:
        done = flowrun(tmp_path, "ui", "--db", str(runs.db), "--port", str(taken.port))
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{taken.port}" in done.stderr
    assert "choose another --port" in done.stderr


PIPELINE = textwrap.dedent(
    """
    from flowrun import build_default_engine

    engine = build_default_engine()
    engine.task("tick", dag="pulse")(lambda: "ok")
    engine.schedule("pulse", every=1)
    """
)


def test_flowrun_serve_ui_shows_the_runs_it_starts(tmp_path: Path) -> None:
    (tmp_path / "pulse.py").write_text(PIPELINE)
    db = tmp_path / "flowrun.db"
    proc = _popen(tmp_path, "serve", "pulse.py", "--db", str(db), "--ui", "--ui-port", "0")
    try:
        match, _ = _read_until(proc, r"flowrun ui: (http://127\.0\.0\.1:\d+/) \(database")
        url = match.group(1)
        _read_until(proc, r"pulse every 1s: run \w+ SUCCESS")  # the first tick's run has ended
        listed = _fetch_json(url + "api/runs?dag=pulse")["runs"]
        assert listed
        assert listed[-1]["status"] == "SUCCESS"
        assert _fetch_json(url + f"api/runs/{listed[-1]['run_id']}")["tasks"][0]["name"] == "tick"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT_S * 6)
    assert proc.returncode == 0, err


def test_a_store_that_fails_is_a_503_or_a_500_not_a_hang_up() -> None:
    class Broken(InMemoryStateStore):
        def list_runs(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("disk on fire")

    with start_ui(Broken(), port=0) as ui:
        reply = get(ui, "/api/runs")
    assert reply.status == 500
    assert reply.json() == {"error": "internal error: RuntimeError: disk on fire"}


def test_a_closed_database_is_a_503_naming_it(tmp_path: Path) -> None:
    from flowrun import SqliteStateStore

    runs = make_runs(tmp_path / "flowrun.db")
    store = SqliteStateStore(runs.db)
    with start_ui(store, port=0) as ui:
        store.close()
        api = get(ui, f"/api/runs/{runs.failed}")
        page = get(ui, f"/runs/{runs.failed}")
    assert api.status == 503
    assert "is closed" in api.json()["error"]
    assert page.status == 503
    assert "is closed" in page.text


def test_a_failed_instance_of_a_running_mapped_task_names_its_task() -> None:
    from flowrun.state.records import FAILED, RUNNING, RunRecord, TaskRecord

    store = InMemoryStateStore()
    tasks = {
        "fan": TaskRecord(status=RUNNING, mapped=True),
        "fan[0]": TaskRecord(status=FAILED, map_of="fan", error="ValueError: bad\nmore"),
        "fan[1]": TaskRecord(status=RUNNING, map_of="fan"),
    }
    store.create_run(RunRecord("r1", "maps", 1.0, status=RUNNING, tasks=tasks))
    with start_ui(store, port=0) as ui:
        [run] = get(ui, "/api/runs").json()["runs"]
    assert run["first_failed"] == {"task": "fan", "error": "ValueError: bad"}
    assert run["counts"] == {"RUNNING": 1}


def test_a_retried_task_carries_its_earlier_attempts_for_the_timeline(tmp_path: Path) -> None:
    failed, _ = make_showcase(tmp_path / "flowrun.db")
    with start_ui(tmp_path / "flowrun.db", port=0) as ui:
        run = get(ui, f"/api/runs/{failed}").json()
    tasks = {t["name"]: t for t in run["tasks"]}
    (earlier,) = tasks["transform"]["earlier_attempts"]
    assert earlier["attempt"] == 1
    assert earlier["error"] == tasks["transform"]["error"]  # it failed the same way twice
    assert earlier["started_at"] <= earlier["finished_at"] <= tasks["transform"]["started_at"]
    assert tasks["extract"]["earlier_attempts"] == []
