"""The web view in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver (nothing is downloaded). Skipped with the reason when either is missing;
`.ci/run` installs both and sets FLOWRUN_REQUIRE_BROWSER=1, which turns the skip into an error.

FLOWRUN_UI_SCREENSHOTS=docs/images makes the tests save the README's screenshots there:
``FLOWRUN_UI_SCREENSHOTS=docs/images python -m pytest tests/test_web_browser.py``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
_missing = [
    what
    for what, found in [
        ("the chromium package (apt-get install chromium)", CHROMIUM),
        ("the chromium-driver package (apt-get install chromium-driver)", CHROMEDRIVER),
        ("selenium (pip install -e '.[browser]')", importlib.util.find_spec("selenium")),
    ]
    if not found
]
if _missing:
    _reason = f"the browser tests need {'; '.join(_missing)}"
    if os.environ.get("FLOWRUN_REQUIRE_BROWSER") == "1":  # .ci/run installed them: must run
        raise RuntimeError(f"FLOWRUN_REQUIRE_BROWSER=1 but {_reason}")
    pytest.skip(_reason, allow_module_level=True)

from _web_runs import (  # noqa: E402
    CHROMIUM_FLAGS,
    EVIL,
    LiveRun,
    Runs,
    make_big_run,
    make_runs,
    make_showcase,
)
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from flowrun._render import STATUS_COLOURS  # noqa: E402
from flowrun.web import UiServer, start_ui  # noqa: E402

WAIT_S = 30.0  # generous: a loaded CI machine; every wait returns as soon as its condition holds
SCREENSHOTS = os.environ.get("FLOWRUN_UI_SCREENSHOTS")


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    assert CHROMIUM is not None
    assert CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="flowrun-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runs, LiveRun]]:
    """SUCCESS and FAILED runs of ``etl``, a mapped run, and a run left RUNNING."""
    runs = make_runs(tmp_path_factory.mktemp("browser") / "flowrun.db")
    live = LiveRun(runs.db, run_id="still-running")
    try:
        yield runs, live
    finally:
        live.close()


@pytest.fixture(scope="module")
def ui(history: tuple[Runs, LiveRun]) -> Iterator[UiServer]:
    with start_ui(history[0].db, port=0) as server:
        yield server


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT_S).until(condition, message=f"waited for {what}")


def open_page(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready") == "1", url)


def colour(element: WebElement, prop: str) -> str:
    """The computed CSS colour, as the browser gives it (``rgb(r, g, b)``)."""
    value: str = element.parent.execute_script(
        "return getComputedStyle(arguments[0]).getPropertyValue(arguments[1])", element, prop
    )
    return value


def status_of_row(driver: WebDriver, run_id: str) -> str:
    cell = driver.find_element(By.CSS_SELECTOR, f'tr[data-run-id="{run_id}"] td.status-cell')
    return cell.text


def no_alert(driver: WebDriver) -> bool:
    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return True
    alert.dismiss()
    return False


def screenshot(driver: WebDriver, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SCREENSHOTS) / name))


def test_the_runs_page_then_the_failed_run(
    browser: WebDriver, ui: UiServer, history: tuple[Runs, LiveRun]
) -> None:
    runs, live = history
    open_page(browser, ui.url)
    assert status_of_row(browser, runs.success) == "SUCCESS"
    assert status_of_row(browser, runs.failed) == "FAILED"
    assert status_of_row(browser, live.run_id) == "RUNNING"
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-run-id="{runs.failed}"]')
    assert row.find_element(By.CSS_SELECTOR, "td.first-failed").text == "transform"
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    assert [r.get_attribute("data-run-id") for r in rows] == [
        live.run_id,
        runs.mapped,
        runs.failed,
        runs.success,
    ]

    row.find_element(By.CSS_SELECTOR, "a.run-link").click()
    wait(browser, lambda d: d.current_url == f"{ui.url}runs/{runs.failed}", "the run's URL")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#graph svg g.node"), "the SVG")
    for task, status in [
        ("extract", "SUCCESS"),
        ("transform", "FAILED"),
        ("audit", "OMITTED"),
        ("load", "SKIPPED"),
    ]:
        rect = browser.find_element(By.CSS_SELECTOR, f'#graph g.node[data-task="{task}"] rect')
        assert colour(rect, "fill") == _rgb(STATUS_COLOURS[status][0]), task
    badge = browser.find_element(By.CSS_SELECTOR, "#run-status")
    assert badge.text == "FAILED"
    assert badge.get_attribute("data-status") == "FAILED"

    error = browser.find_element(By.CSS_SELECTOR, 'tr[data-task="transform"] .error-text')
    assert error.is_displayed()
    assert error.text == f"ValueError: bad row {EVIL}"  # the markup, as text
    summary = browser.find_element(By.CSS_SELECTOR, 'tr[data-task="transform"] summary')
    summary.click()
    trace = browser.find_element(By.CSS_SELECTOR, 'tr[data-task="transform"] pre.traceback')
    wait(browser, lambda d: trace.is_displayed(), "the traceback")
    assert 'raise ValueError(f"bad row {EVIL}")' in trace.text
    assert browser.execute_script("return window.__pwned === undefined")  # nothing ran
    assert (
        browser.execute_script("return document.querySelectorAll('#app img, #app script').length")
        == 0
    )
    assert no_alert(browser)
    assert browser.execute_script("return window.flowrunUi.polling") is False  # final: no poll


def test_a_running_run_turns_final_without_a_reload(browser: WebDriver, tmp_path: Path) -> None:
    db = tmp_path / "flowrun.db"
    make_runs(db)
    live = LiveRun(db)
    try:
        with start_ui(db, port=0) as ui:
            open_page(browser, f"{ui.url}runs/{live.run_id}")
            badge = browser.find_element(By.CSS_SELECTOR, "#run-status")
            assert badge.get_attribute("data-status") == "RUNNING"
            assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-polling") == "on"
            first = browser.find_element(By.CSS_SELECTOR, '#graph g.node[data-task="first"] rect')
            assert colour(first, "fill") == _rgb(STATUS_COLOURS["RUNNING"][0])
            browser.execute_script("window.__sameDocument = true")  # gone if the page reloads
            wait(
                browser, lambda d: d.execute_script("return window.flowrunUi.polls") >= 1, "a poll"
            )

            live.finish()
            wait(
                browser,
                lambda d: (
                    d.find_element(By.CSS_SELECTOR, "#run-status").get_attribute("data-status")
                    == "SUCCESS"
                ),
                "the run to turn SUCCESS on the page",
            )
            assert browser.execute_script("return window.__sameDocument") is True
            cells = browser.find_elements(By.CSS_SELECTOR, "#tasks tbody td.status-cell")
            assert [c.text for c in cells] == ["SUCCESS", "SUCCESS"]
            wait(
                browser,
                lambda d: (
                    colour(
                        d.find_element(By.CSS_SELECTOR, '#graph g.node[data-task="second"] rect'),
                        "fill",
                    )
                    == _rgb(STATUS_COLOURS["SUCCESS"][0])
                ),
                "the SVG redrawn",
            )
            body = browser.find_element(By.TAG_NAME, "body")
            assert body.get_attribute("data-polling") == "off"  # final: polling stopped
            assert browser.execute_script("return window.flowrunUi.polling") is False
    finally:
        live.close()


def test_the_runs_page_follows_a_running_run(browser: WebDriver, tmp_path: Path) -> None:
    db = tmp_path / "flowrun.db"
    make_runs(db)
    live = LiveRun(db)
    try:
        with start_ui(db, port=0) as ui:
            open_page(browser, ui.url)
            assert status_of_row(browser, live.run_id) == "RUNNING"
            live.finish()
            wait(browser, lambda d: status_of_row(d, live.run_id) == "SUCCESS", "SUCCESS")
            wait(
                browser,
                lambda d: (
                    d.find_element(By.TAG_NAME, "body").get_attribute("data-polling") == "off"
                ),
                "polling to stop",
            )
    finally:
        live.close()


def test_filters_and_the_dag_grid(
    browser: WebDriver, ui: UiServer, history: tuple[Runs, LiveRun]
) -> None:
    runs, _ = history
    open_page(browser, f"{ui.url}?dag=etl&status=FAILED")
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    assert [r.get_attribute("data-run-id") for r in rows] == [runs.failed]
    dag = browser.find_element(By.ID, "filter-dag")
    wait(browser, lambda d: "fan" in dag.text, "the DAG names")
    assert dag.get_attribute("value") == "etl"

    open_page(browser, f"{ui.url}dags/etl")
    cells: list[WebElement] = browser.find_elements(
        By.CSS_SELECTOR, '#grid tr[data-task="transform"] a.cell'
    )
    assert [c.get_attribute("data-status") for c in cells] == ["SUCCESS", "FAILED"]
    assert colour(cells[1], "background-color") == _rgb(STATUS_COLOURS["FAILED"][0])
    cells[1].click()
    wait(browser, lambda d: d.current_url == f"{ui.url}runs/{runs.failed}", "the run page")


def test_mapped_instances_unfold_under_their_task(
    browser: WebDriver, ui: UiServer, history: tuple[Runs, LiveRun]
) -> None:
    runs, _ = history
    open_page(browser, f"{ui.url}runs/{runs.mapped}")
    instances = browser.find_elements(By.CSS_SELECTOR, 'tr[data-instance-of="square"]')
    assert len(instances) == 3
    assert not any(i.is_displayed() for i in instances)
    button = browser.find_element(By.CSS_SELECTOR, 'tr[data-task="square"] button.fold')
    assert button.text == "\u25b8 3 instances"
    button.click()
    wait(browser, lambda d: all(i.is_displayed() for i in instances), "the instances")
    assert [i.find_element(By.CSS_SELECTOR, ".task-name").text for i in instances] == [
        "[0]",
        "[1]",
        "[2]",
    ]


def test_an_unknown_run_shows_what_was_unknown(browser: WebDriver, ui: UiServer) -> None:
    open_page(browser, f"{ui.url}runs/no-such-run")
    error = browser.find_element(By.ID, "error")
    assert error.text.startswith("unknown run id 'no-such-run': the database has no such run.")


def test_a_1000_task_run_page_renders_every_task(browser: WebDriver, tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    run_id = make_big_run(db)
    with start_ui(db, port=0) as ui:
        open_page(browser, f"{ui.url}runs/{run_id}")
        count = browser.execute_script(
            "return [document.querySelectorAll('#tasks tbody tr').length,"
            " document.querySelectorAll('#graph g.node').length,"
            " document.querySelectorAll('#gantt .bar').length]"
        )
    assert count == [1000, 1000, 1000]


def test_a_day_of_runs_as_the_readme_shows_it(browser: WebDriver, tmp_path: Path) -> None:
    """The README's screenshots (saved with FLOWRUN_UI_SCREENSHOTS=docs/images)."""
    failed, running = make_showcase(tmp_path / "flowrun.db")
    with start_ui(tmp_path / "flowrun.db", port=0) as ui:
        open_page(browser, ui.url)
        assert status_of_row(browser, failed) == "FAILED"
        assert status_of_row(browser, running) == "RUNNING"
        rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody td.status-cell")
        assert [r.text for r in rows] == ["RUNNING", "FAILED", "SUCCESS", "SUCCESS", "SUCCESS"]
        screenshot(browser, "ui-runs.png")

        browser.set_window_size(1280, 1180)
        try:
            open_page(browser, f"{ui.url}runs/{failed}")
            nodes = browser.find_elements(By.CSS_SELECTOR, "#graph g.node")
            assert {
                n.get_attribute("data-task"): n.get_attribute("data-status") for n in nodes
            } == {
                "extract": "SUCCESS",
                "fetch_rates": "SUCCESS",
                "clean": "SUCCESS",
                "transform": "FAILED",
                "load": "SKIPPED",
                "notify": "SUCCESS",
            }
            transform = browser.find_element(By.CSS_SELECTOR, '#tasks tr[data-task="transform"]')
            assert transform.find_elements(By.TAG_NAME, "td")[2].text == "2"  # retried once
            bars = browser.find_elements(By.CSS_SELECTOR, '#gantt .bar[data-task="transform"]')
            assert [b.get_attribute("data-attempt") for b in bars] == ["1", None]  # both drawn
            assert "earlier" in (bars[0].get_attribute("class") or "")
            assert (
                transform.find_element(By.CSS_SELECTOR, ".error-text").text == "KeyError: 'amount'"
            )
            transform.find_element(By.TAG_NAME, "summary").click()
            trace = transform.find_element(By.CSS_SELECTOR, "pre.traceback")
            wait(browser, lambda d: trace.is_displayed(), "the traceback")
            assert 'return int(row["amount"] or 0)' in trace.text
            screenshot(browser, "ui-run.png")
        finally:
            browser.set_window_size(1280, 860)
