#!/usr/bin/env python3
"""Web view benchmark: how fast ``flowrun ui`` serves and draws the page of a big run.

Builds a SQLite state database holding one run of ``--tasks`` no-op tasks (1,000 by default)
in layers of ``--width`` (each task after the first layer depends on two of the layer before;
the last task fails, so the page has an error and a traceback), starts the view on a free
port, and times, best and median of ``--repeat``:

- the pieces in process: reading the run's summary (``load_run(results=False)``), building
  the page's JSON, drawing the SVG;
- each HTTP answer as the page fetches it: ``/runs/<id>`` (the HTML), ``/api/runs/<id>``
  (JSON), ``/api/runs/<id>/svg``, plus ``/api/runs`` and the DAG grid;
- with Chromium, chromedriver and selenium installed (skipped otherwise, or with
  ``--no-browser``): the page in headless Chromium, from navigation start to the first
  complete render (graph, timeline and task table drawn), as the page itself measures it.

The target (issue 15): the 1,000-task run page loads in under a second.

Usage:
  python benchmarks/bench_ui.py                       # 1,000 tasks, best of 20 (5 in Chromium)
  python benchmarks/bench_ui.py --tasks 5000 --repeat 5 --no-browser
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowrun import SqliteStateStore
from flowrun.web import start_ui
from flowrun.web._data import run_detail
from flowrun.web._svg import render_run_svg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _web_runs import CHROMIUM_FLAGS, make_big_run

TARGET_MS = 1000.0


def timed(action: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Best and median milliseconds of ``repeat`` calls, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times), result


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        body: bytes = response.read()
        return body


def browser_load_ms(url: str, repeat: int) -> list[float] | str:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        return "selenium is not installed"
    if chromium is None or driver_path is None:
        return "chromium or chromedriver is not installed"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="flowrun-bench-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    loads = []
    try:
        for _ in range(repeat + 1):  # the first load warms the browser's caches: not counted
            driver.get(url)
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return document.body.dataset.ready") == "1"
            )
            rows = driver.execute_script(
                "return document.querySelectorAll('#tasks tbody tr').length"
            )
            assert rows > 0, "the task table is empty"
            loads.append(float(driver.execute_script("return window.flowrunUi.readyMs")))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return loads[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--width", type=int, default=40, help="tasks per layer (default 40)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--browser-repeat", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)

    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "flowrun.db"
        start = time.perf_counter()
        run_id = make_big_run(db, args.tasks, args.width)
        print(
            f"built a {args.tasks}-task run in {time.perf_counter() - start:.2f}s", file=sys.stderr
        )

        with SqliteStateStore(db) as store:
            best, median, run = timed(lambda: store.load_run(run_id, results=False), args.repeat)
            rows.append(("load_run(results=False)", best, median, f"{len(run.tasks)} tasks"))
            best, median, detail = timed(lambda: run_detail(run, time.time()), args.repeat)
            rows.append(("the page's JSON, built", best, median, ""))
            best, median, svg = timed(lambda: render_run_svg(detail["tasks"], "big"), args.repeat)
            rows.append(("the SVG, drawn", best, median, f"{len(svg) / 1024:.0f} KiB"))

        with start_ui(db, port=0) as ui:
            for label, path in [
                ("GET /runs/<id> (HTML)", f"runs/{run_id}"),
                ("GET /api/runs/<id>", f"api/runs/{run_id}"),
                ("GET /api/runs/<id>/svg", f"api/runs/{run_id}/svg"),
                ("GET /api/runs", "api/runs"),
                ("GET /api/dags/big/grid", "api/dags/big/grid"),
            ]:
                best, median, body = timed(lambda p=path: fetch(ui.url + p), args.repeat)
                rows.append((label, best, median, f"{len(body) / 1024:.0f} KiB"))
            page = (
                "page + JSON + SVG over HTTP",
                sum(r[1] for r in rows[3:6]),
                sum(r[2] for r in rows[3:6]),
                "",
            )
            rows.append(page)
            browser: list[float] | str = "skipped (--no-browser)"
            if not args.no_browser:
                browser = browser_load_ms(f"{ui.url}runs/{run_id}", args.browser_repeat)
            if isinstance(browser, list):
                rows.append(
                    (
                        "Chromium: navigation to full render",
                        min(browser),
                        statistics.median(browser),
                        "",
                    )
                )

    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'best ms':>9}  {'median ms':>9}  size")
    for label, best, median, note in rows:
        print(f"{label:<{width}}  {best:>9.1f}  {median:>9.1f}  {note}")
    if isinstance(browser, str):
        print(f"Chromium: {browser}")
        verdict = page[2]
    else:
        verdict = statistics.median(browser)
    ok = verdict < TARGET_MS
    print(
        f"target: the {args.tasks}-task run page in under {TARGET_MS:.0f} ms: "
        f"{verdict:.0f} ms median, {'met' if ok else 'NOT met'}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"tasks": args.tasks, "rows": rows, "browser_ms": browser}, indent=2)
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
