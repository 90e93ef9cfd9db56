"""``pytest --flowrun``: a collector per DAG module and an item per DAG.

Nothing of flowrun is imported at module level: the engine is loaded when a DAG module is.
"""

from __future__ import annotations

import fnmatch
import inspect
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from flowrun import Engine
    from flowrun.cli._discovery import FoundDag

__all__ = [
    "DAG_MARKER",
    "SETTINGS",
    "DagFailure",
    "DagImportErrorItem",
    "DagItem",
    "DagModule",
    "NoDagFoundItem",
    "Settings",
    "matches",
]


@dataclass(frozen=True)
class Settings:
    """The plugin's configuration, from the command line and the ini file."""

    collect: bool
    run: bool
    files: tuple[str, ...]
    # Paths named on the command line: a file is collected for DAGs whatever its name, and
    # so are the files directly in a folder (not the test files, ``python_files``).
    named_files: frozenset[Path] = frozenset()
    named_dirs: frozenset[Path] = frozenset()
    test_files: tuple[str, ...] = ()

    def wants(self, path: Path) -> bool:
        """Whether ``path`` (a ``.py`` file) is collected for DAGs."""
        if matches(path, self.files):
            return True
        if not (self.named_files or self.named_dirs):
            return False
        real = path.resolve()
        if real in self.named_files:
            return True
        return real.parent in self.named_dirs and not matches(path, self.test_files)

    def describe(self) -> str:
        return (
            f"flowrun: collect DAGs={'on' if self.collect else 'off (--flowrun)'}, "
            f"run DAGs={'on' if self.run else 'off'}, flowrun_files={' '.join(self.files)}"
        )


SETTINGS = pytest.StashKey[Settings]()

DAG_MARKER = "flowrun_dag"
"""The marker of collected DAG items, apart from ``flowrun`` (the marker of the user's tests
that run a DAG), so ``-m flowrun_dag`` and ``-m flowrun`` select one kind each."""


def matches(path: Path, patterns: Sequence[str]) -> bool:
    """Like pytest's ``python_files`` globs: a pattern without ``/`` matches the file name, one
    with ``/`` matches the end of the path (``dags/*.py`` matches ``any/where/dags/x.py``)."""
    posix = path.as_posix()
    for glob in patterns:
        pattern = glob.replace(os.sep, "/")
        if "/" in pattern:
            if fnmatch.fnmatch(posix, pattern if pattern.startswith("*") else f"*/{pattern}"):
                return True
        elif fnmatch.fnmatch(path.name, pattern):
            return True
    return False


class DagFailure(Exception):
    """A DAG item failed; ``text`` is the whole rendering shown instead of a pytest traceback."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _plugin_dirs() -> tuple[str, ...]:
    """pytest's, pluggy's and this plugin's code: frames a DAG module's import error hides."""
    import _pytest
    import pluggy

    return tuple(
        os.path.dirname(str(module.__file__)) + os.sep
        for module in (_pytest, pluggy, sys.modules[__name__.rpartition(".")[0]])
    )


class DagModule(pytest.Module):
    """A file matching ``flowrun_files``: imported like a test module, one item per DAG."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            module = self.obj
        except self.CollectError as exc:  # ImportError, SyntaxError: already formatted
            yield DagImportErrorItem.from_parent(self, name="import", text=str(exc))
            return
        except (Exception, SystemExit) as exc:  # any error raised by the module's code
            from flowrun.testing import trim_traceback

            trace = trim_traceback("".join(traceback.format_exception(exc)), _plugin_dirs())
            text = f"error while importing DAG module '{self.path}':\n{trace.rstrip()}"
            yield DagImportErrorItem.from_parent(self, name="import", text=text)
            return
        names: set[str] = set()
        for found in _dags_of(module, self.config.stash[SETTINGS].files):
            dag = found.dag
            name = dag if dag not in names else f"{dag}[{found.attribute}]"
            names.add(name)
            item = DagItem.from_parent(self, name=name, engine=found.engine, dag_name=dag)
            item.add_marker(DAG_MARKER)
            yield item


def _dags_of(module: ModuleType, patterns: Sequence[str]) -> Iterator[FoundDag]:
    """The module's DAGs (``find_dags``) whose first task is defined in this module, or in a
    module that is not itself a DAG file."""
    from flowrun.cli._discovery import find_dags

    for found in find_dags(vars(module)):
        home = found.home_module
        if home is not None and home != module.__name__:
            other_file = getattr(sys.modules.get(home), "__file__", None)
            if other_file and matches(Path(other_file), patterns):
                continue  # collected with the module that defines it
        yield found


class _MessageItem(pytest.Item):
    """An item whose failure is a ``DagFailure`` message, shown as is (no pytest traceback)."""

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, DagFailure):
            return excinfo.value.text
        return super().repr_failure(excinfo, style=style)  # pragma: no cover


class DagItem(_MessageItem):
    """Validates one DAG and, with ``--flowrun-run``, runs it on virtual time."""

    def __init__(self, *, engine: Engine, dag_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.dag_name = dag_name
        self.report: dict[str, Any] | None = None

    def runtest(self) -> None:
        from flowrun import DagValidationError
        from flowrun.testing import VirtualClock, format_report, run_dag

        try:
            self.engine.validate(self.dag_name)
        except DagValidationError as exc:
            raise DagFailure(self._invalid(exc)) from None
        if not self.config.stash[SETTINGS].run:
            return
        context = self.ihook.pytest_flowrun_context(
            dag_name=self.dag_name, engine=self.engine, config=self.config
        )
        report = run_dag(self.engine, self.dag_name, context=context, clock=VirtualClock())
        self.report = report
        if report["status"] != "SUCCESS":
            text = format_report(report)
            self.add_report_section("call", "flowrun report", text)
            drawing = self.engine.display_dag(self.dag_name)
            raise DagFailure(f"DAG {self.dag_name!r} did not succeed\n\n{text}\n\n{drawing}")

    def _invalid(self, exc: Exception) -> str:
        lines = [f"DAG {self.dag_name!r} is invalid: {exc}", "", "tasks:"]
        for spec in self.engine.registry.tasks_of(self.dag_name).values():
            deps = ", ".join(spec.deps) or "-"
            lines.append(f"  {spec.name}  <- {deps}")
        return "\n".join(lines)

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        description = f"flowrun DAG {self.dag_name!r}"
        from flowrun.cli._discovery import unwrap

        for spec in self.engine.registry.tasks_of(self.dag_name).values():
            func = unwrap(spec.func)
            try:
                source = inspect.getsourcefile(func)
                _, line = inspect.getsourcelines(func)
            except (OSError, TypeError):
                break
            if source:
                return source, line - 1, description
            break
        return self.path, None, description


class DagImportErrorItem(_MessageItem):
    """A DAG module that could not be imported: fails with the module's traceback."""

    def __init__(self, *, text: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text = text

    def runtest(self) -> None:
        raise DagFailure(self.text)

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        return self.path, None, f"flowrun import of {self.path.name}"


class NoDagFoundItem(_MessageItem):
    """Added when ``--flowrun`` found no DAG: a silent pass would hide a misconfigured glob."""

    def runtest(self) -> None:
        files = " ".join(self.config.stash[SETTINGS].files)
        raise DagFailure(
            "--flowrun found no DAG: no file matching flowrun_files = "
            f"{files!r} under {', '.join(self.config.args) or '.'} defines a module-level "
            "Engine or DagScope with tasks. Set the flowrun_files ini option (globs: 'name' "
            "matches file names, 'dir/name' path ends) or pass the DAG directory."
        )

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        return self.path, None, "flowrun: no DAG found"
