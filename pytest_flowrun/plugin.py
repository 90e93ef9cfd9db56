"""Entry point of the pytest plugin (``pytest11``: ``flowrun``): options, ini keys, markers,
the report header, DAG collection and the fixtures.

Cheap to import: flowrun itself is imported only by fixtures and items that need it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import hookspecs
from .fixtures import (
    EXPECT_MISMATCH,
    _flowrun_marker,
    flowrun_clock,
    flowrun_engine,
    flowrun_events,
    flowrun_registry,
    flowrun_report,
    flowrun_run,
    flowrun_serve,
)
from .items import (
    SETTINGS,
    DagImportErrorItem,
    DagItem,
    DagModule,
    NoDagFoundItem,
    Settings,
)

__all__ = [
    "flowrun_clock",
    "flowrun_engine",
    "flowrun_events",
    "flowrun_registry",
    "flowrun_report",
    "flowrun_run",
    "flowrun_serve",
]

_ = _flowrun_marker  # registered with the other fixtures of this module

DEFAULT_FILES = ["*_dag.py", "*_dags.py", "dags/*.py"]

MARKERS = (
    "flowrun(engine_or_scope, dag=None, *, context=..., targets=None, overrides=None, "
    "expect='SUCCESS'): run the DAG on virtual time before the test; the report is the "
    "flowrun_report fixture; a status other than expect fails the test",
    "flowrun_real_time: run this test's flowrun fixtures and marker on real time",
    "flowrun_dag: a DAG collected by pytest --flowrun (select them with -m flowrun_dag; "
    "-m flowrun selects the tests marked @pytest.mark.flowrun)",
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flowrun", "flowrun pipelines")
    group.addoption(
        "--flowrun",
        action="store_true",
        default=False,
        dest="flowrun",
        help="collect every DAG in files matching the flowrun_files ini globs as a test item "
        "that validates it",
    )
    group.addoption(
        "--flowrun-run",
        action="store_true",
        default=None,
        dest="flowrun_run",
        help="also run each collected DAG on virtual time and fail unless it succeeds "
        "(implies --flowrun; default: the flowrun_run ini value)",
    )
    parser.addini(
        "flowrun_files",
        type="args",
        default=DEFAULT_FILES,
        help="globs of the files --flowrun collects DAGs from (default: "
        f"{' '.join(DEFAULT_FILES)})",
    )
    parser.addini(
        "flowrun_run",
        type="bool",
        default=False,
        help="with --flowrun, also run each DAG (like --flowrun-run)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    run_option = config.getoption("flowrun_run")
    run = bool(config.getini("flowrun_run")) if run_option is None else bool(run_option)
    collect = bool(config.getoption("flowrun")) or bool(run_option)
    files = tuple(str(p) for p in config.getini("flowrun_files"))
    named_files: set[Path] = set()
    named_dirs: set[Path] = set()
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if path.is_dir():
            named_dirs.add(path)
        elif path.suffix == ".py":
            named_files.add(path)
    config.stash[SETTINGS] = Settings(
        collect=collect,
        run=run,
        files=files,
        named_files=frozenset(named_files),
        named_dirs=frozenset(named_dirs),
        test_files=tuple(str(p) for p in config.getini("python_files")),
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """A test whose ``flowrun`` marker run ended other than ``expect=`` fails here, in the
    call phase, with the run's report; its body does not run."""
    mismatch = pyfuncitem.stash.get(EXPECT_MISMATCH, None)
    if mismatch is not None:
        del pyfuncitem.stash[EXPECT_MISMATCH]  # a rerun of the item decides anew
        pytest.fail(mismatch, pytrace=False)
    return None


def pytest_report_header(config: pytest.Config) -> str:
    return config.stash[SETTINGS].describe()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    settings = parent.config.stash[SETTINGS]
    if (
        settings.collect
        and file_path.suffix == ".py"
        and file_path.name not in ("conftest.py", "__init__.py")
        and settings.wants(file_path)
    ):
        module: DagModule = DagModule.from_parent(parent, path=file_path)
        return module
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not config.stash[SETTINGS].collect:
        return
    if not any(isinstance(item, (DagItem, DagImportErrorItem)) for item in items):
        items.append(
            NoDagFoundItem.from_parent(session, name="no-dag-found", nodeid="flowrun::no-dag-found")
        )
