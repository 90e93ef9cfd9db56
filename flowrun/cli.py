"""The ``flowrun`` command line (also ``python -m flowrun``): run, inspect and resume pipelines.

Exit codes: 0 success; 1 a run FAILED, a DAG is invalid or the pipeline's own code failed
(e.g. its context factory raised); 2 a usage error (bad option, a TARGET that does not import,
an unknown DAG, task or run id). Errors go to stderr.

The state lives in the SQLite database ``.flowrun/flowrun.sqlite`` under the current directory
(``--db PATH`` or ``FLOWRUN_DB`` to change it; ``--db :memory:`` keeps nothing), created on
the first run, so ``runs``, ``show`` and ``resume`` work across invocations. Results are
stored as JSON unless ``--serializer pickle`` (or ``FLOWRUN_SERIALIZER=pickle``) says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import re
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, TextIO

from . import __version__
from ._context import ContextSource, RunContext, check_context_source, open_context
from ._discovery import find_dags
from ._engine import DagScope, Engine
from ._hooks import DagStartEvent, RunHook
from ._progress import PROGRESS_MODES, LiveProgress, PlainProgress
from ._render import FORMATS, RUN_FORMATS, format_report, render_run, trim_traceback
from ._report import build_report
from .errors import (
    ContextFactoryError,
    DagValidationError,
    UnknownDagError,
    UnknownRunError,
    UnknownTaskError,
    suggest,
)
from .state.memory import InMemoryStateStore
from .state.protocol import StateStoreProtocol
from .state.records import FAILED, SUCCESS
from .state.serializers import JsonSerializer, PickleSerializer, ResultSerializer
from .state.sqlite import SqliteStateStore, StateDatabaseError

__all__ = ["DEFAULT_DB", "main"]

DEFAULT_DB = os.path.join(".flowrun", "flowrun.sqlite")
"""The database every command uses unless ``--db`` or ``FLOWRUN_DB`` says otherwise."""
MEMORY_DB = ":memory:"
STATUSES = ("SUCCESS", "FAILED", "RUNNING")
PREFIX_SCAN = 500  # a run id prefix is looked up among this many newest runs
SERIALIZERS: dict[str, Callable[[], ResultSerializer]] = {
    "json": JsonSerializer,
    "pickle": PickleSerializer,
}
"""``--serializer`` / ``FLOWRUN_SERIALIZER``: how the database stores task results."""


class UsageError(Exception):
    """The command line asks for something that cannot be done as written: exit code 2."""


class CommandFailed(Exception):
    """The pipeline's code or definition failed (not the user's typing): exit code 1."""


# -- loading a TARGET ------------------------------------------------------------------------
@dataclass
class Target:
    """An imported TARGET and the DAGs of its module-level engines and DAG scopes."""

    spec: str
    module: ModuleType
    dags: dict[str, list[tuple[str, Engine]]]  # DAG name -> (attribute, engine) that define it

    def resolve(self, dag: str | None, command: str) -> tuple[Engine, str]:
        """The engine and DAG a command names (``dag`` may be omitted if there is one)."""
        if not self.dags:
            raise UsageError(
                f"{self.spec!r} defines no DAG: it has no module-level Engine or DagScope "
                "with tasks"
            )
        if dag is None:
            if len(self.dags) > 1:
                names = ", ".join(repr(name) for name in self.dags)
                first = next(iter(self.dags))
                raise UsageError(
                    f"{self.spec!r} defines {len(self.dags)} DAGs ({names}); name the one to "
                    f"use, e.g. flowrun {command} {self.spec} {first}"
                )
            dag = next(iter(self.dags))
        found = self.dags.get(dag)
        if found is None:
            raise UnknownDagError(dag, list(self.dags))
        if len(found) > 1:
            options = ", ".join(f"{self.spec}:{attr}" for attr, _ in found)
            raise UsageError(
                f"DAG {dag!r} is defined by {len(found)} engines in {self.spec!r}; pick one "
                f"with TARGET module:attribute ({options})"
            )
        return found[0][1], dag


def _split_target(spec: str) -> tuple[str, str | None]:
    """``"path/or.module:attr"`` -> (``"path/or.module"``, ``"attr"``); a drive letter stays."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail.isidentifier():
        return head, tail
    return spec, None


def _looks_like_path(text: str) -> bool:
    return text.endswith(".py") or "/" in text or os.sep in text or Path(text).is_file()


def _import_file(text: str, spec: str) -> ModuleType:
    path = Path(text)
    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob("*.py")) if path.parent.is_dir() else []
        where = "" if path.parent.is_dir() else f" (directory {str(path.parent)!r} not found)"
        raise UsageError(
            f"TARGET {spec!r}: no such file {text!r}{where}.{suggest(path.name, near)}"
        )
    path = path.resolve()
    # A file inside a package is imported as part of it, so its relative imports work.
    parts = [] if path.stem == "__init__" else [path.stem]
    root = path.parent
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    name = ".".join(parts)
    if len(parts) > 1 or (name and name not in sys.modules):
        module = importlib.import_module(name)
        loaded = getattr(module, "__file__", None)
        if loaded is None or Path(loaded).resolve() != path:
            raise UsageError(
                f"TARGET {spec!r}: importing it as {name!r} found {loaded!r} instead; another "
                "module of that name comes first on sys.path (rename the file)"
            )
        return module
    # A top-level file whose name is taken (e.g. json.py): load it under a private name.
    private = f"flowrun_target_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}"
    file_spec = importlib.util.spec_from_file_location(private, path)
    if file_spec is None or file_spec.loader is None:  # pragma: no cover - a .py file loads
        raise UsageError(f"TARGET {spec!r}: {text!r} cannot be loaded as Python")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[private] = module
    file_spec.loader.exec_module(module)
    return module


def _import_module(text: str, spec: str) -> ModuleType:
    if not all(part.isidentifier() for part in text.split(".")):
        raise UsageError(
            f"TARGET {spec!r} is neither a Python file (no such file) nor a module name"
        )
    if os.getcwd() not in sys.path:  # `python -m` adds it; the console script does not
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(text)


def _import_error(spec: str, exc: BaseException) -> UsageError:
    if isinstance(exc, UsageError):
        return exc
    if isinstance(exc, ModuleNotFoundError) and exc.name and spec.startswith(exc.name):
        hint = ""
        as_file = Path(*spec.split(":", maxsplit=1)[0].split(".")).with_suffix(".py")
        if as_file.is_file():
            hint = f"; did you mean the file {str(as_file)!r}?"
        return UsageError(f"cannot import TARGET {spec!r}: no module named {exc.name!r}{hint}")
    trace = trim_traceback("".join(traceback.format_exception(exc))).rstrip()
    return UsageError(
        f"cannot import TARGET {spec!r}: {type(exc).__name__} while importing it\n{trace}"
    )


def load_module(spec: str, text: str) -> ModuleType:
    """Import the file or module ``text`` (part of the TARGET ``spec``)."""
    try:
        if _looks_like_path(text):
            return _import_file(text, spec)
        return _import_module(text, spec)
    except (Exception, SystemExit) as exc:
        raise _import_error(spec, exc) from None


def load_target(spec: str) -> Target:
    """Import a TARGET (file path, module, or either with ``:attribute``) and find its DAGs."""
    text, attr = _split_target(spec)
    module = load_module(spec, text)
    if attr is not None:
        if not hasattr(module, attr):
            holders = [n for n, v in vars(module).items() if isinstance(v, (Engine, DagScope))]
            listed = ", ".join(holders) or "none"
            raise UsageError(
                f"TARGET {spec!r}: module {module.__name__!r} has no attribute {attr!r} "
                f"(engines and DAG scopes: {listed}).{suggest(attr, holders)}"
            )
        value = getattr(module, attr)
        if not isinstance(value, (Engine, DagScope)):
            raise UsageError(
                f"TARGET {spec!r}: {attr!r} is a {type(value).__name__}, not an Engine or a "
                "DagScope (engine.dag(...))"
            )
        namespace: dict[str, Any] = {attr: value}
    else:
        namespace = vars(module)
    dags: dict[str, list[tuple[str, Engine]]] = {}
    for found in find_dags(namespace):
        dags.setdefault(found.dag, []).append((found.attribute, found.engine))
    return Target(spec, module, dags)


# -- the run context -------------------------------------------------------------------------
async def enter_context(
    name: str | None, target: Target, stack: contextlib.AsyncExitStack
) -> RunContext[Any] | None:
    """``--context NAME``: a module attribute (or ``module:attribute``) that is a RunContext, or
    a zero-argument callable returning one, an awaitable of one, or a (async) context manager
    that yields one: entered before the run and exited after it."""
    if name is None:
        return None
    what = f"--context {name}"
    if ":" in name:
        text, attr = name.rsplit(":", 1)
        module = load_module(name, text)
    else:
        module, attr = target.module, name
    if not hasattr(module, attr):
        public = [n for n in vars(module) if not n.startswith("_")]
        raise UsageError(
            f"{what}: module {module.__name__!r} has no attribute {attr!r}.{suggest(attr, public)}"
        )
    value = getattr(module, attr)
    try:
        check_context_source(value, what)
    except TypeError as exc:
        raise UsageError(str(exc)) from None
    return await _open_context(value, stack, what, wrong_kind=UsageError)


async def enter_default_context(
    engine: Engine, dag: str, stack: contextlib.AsyncExitStack
) -> RunContext[Any] | None:
    """The DAG's default context (``engine.dag(name, context=...)``), if it declares one."""
    source = engine.registry.default_context(dag)
    if source is None:
        return None
    return await _open_context(
        source, stack, f"the default context of DAG {dag!r}", wrong_kind=CommandFailed
    )


async def _open_context(
    source: ContextSource,
    stack: contextlib.AsyncExitStack,
    what: str,
    wrong_kind: type[Exception],
) -> RunContext[Any]:
    try:
        return await open_context(source, stack, what)
    except ContextFactoryError as exc:
        trace = "".join(traceback.format_exception(exc.error)).rstrip()
        raise CommandFailed(f"{exc}\n{trace}") from None
    except TypeError as exc:  # it gave something that is not a RunContext
        raise wrong_kind(str(exc)) from None


# -- the state store -------------------------------------------------------------------------
def db_path(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("FLOWRUN_DB") or DEFAULT_DB)


@contextlib.contextmanager
def open_store(args: argparse.Namespace, *, create: bool) -> Iterator[StateStoreProtocol]:
    """The command's state store. A read-only command (``create=False``) on a database that
    does not exist yet sees an empty store and creates nothing."""
    path = db_path(args)
    serializer = SERIALIZERS[serializer_name(args)]()
    if path == MEMORY_DB or (not create and not Path(path).exists()):
        yield InMemoryStateStore()
        return
    if create:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStateStore(path, serializer, recover=True)
    try:
        yield store
    finally:
        store.close()


def serializer_name(args: argparse.Namespace) -> str:
    """``--serializer``, else ``FLOWRUN_SERIALIZER``, else ``json``."""
    name: str = args.serializer or os.environ.get("FLOWRUN_SERIALIZER") or "json"
    if name not in SERIALIZERS:
        raise UsageError(
            f"FLOWRUN_SERIALIZER={name!r} is not a serializer; choose one of "
            f"{', '.join(SERIALIZERS)}"
        )
    return name


def find_run(store: StateStoreProtocol, run_id: str, args: argparse.Namespace) -> str:
    """A full run id from a full id or a unique prefix of one."""
    try:
        store.load_run(run_id)
        return run_id
    except UnknownRunError:
        pass
    recent = [r.run_id for r in store.list_runs(limit=PREFIX_SCAN)]
    matches = [rid for rid in recent if rid.startswith(run_id)] if run_id else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise UsageError(f"run id prefix {run_id!r} is ambiguous: {listed}")
    raise UsageError(
        f"unknown run id {run_id!r} in the database {db_path(args)!r} (see `flowrun runs`)."
        f"{suggest(run_id, recent)}"
    )


# -- running ---------------------------------------------------------------------------------
class _RunIdHook(RunHook):
    """Remembers the id of the run in progress, to print the resume command on Ctrl-C."""

    def __init__(self) -> None:
        self.run_id: str | None = None

    def on_dag_start(self, event: DagStartEvent) -> None:
        self.run_id = event.run_id


def _progress_hooks(args: argparse.Namespace, store: StateStoreProtocol) -> list[RunHook]:
    mode = args.progress or os.environ.get("FLOWRUN_PROGRESS") or "auto"
    if mode not in PROGRESS_MODES:
        raise UsageError(
            f"FLOWRUN_PROGRESS={mode!r} is not a progress mode; choose one of "
            f"{', '.join(PROGRESS_MODES)}"
        )
    if mode == "off" or (mode == "auto" and args.json):
        return []
    stream: TextIO = sys.stderr if args.json else sys.stdout
    if mode == "auto":
        live = stream.isatty() and os.environ.get("TERM") != "dumb"
        mode = "live" if live else "plain"

    def kept(run_id: str) -> int:
        return sum(t.status == SUCCESS for t in store.load_run(run_id).tasks.values())

    if mode == "live":
        return [LiveProgress(stream, kept=kept)]
    return [PlainProgress(stream, kept=kept)]


def _configure_logging(level: str | None) -> None:
    if level:
        logging.basicConfig(
            level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    else:  # the progress display says it all; keep the engine's warnings off the terminal
        logging.getLogger("flowrun").addHandler(logging.NullHandler())


def execute(
    args: argparse.Namespace,
    target: Target,
    engine: Engine,
    dag: str,
    start: Callable[[Engine, RunContext[Any] | None], Any],
) -> int:
    """Run ``start(engine, context)`` (a coroutine giving a run id) with the CLI's store and
    progress display, then print the report; the exit code follows the run status. The
    context is ``--context``, else the DAG's default context, else none."""
    _configure_logging(args.log_level)
    tracker = _RunIdHook()
    with open_store(args, create=True) as store:
        runner = engine.derive(
            state_store=store,
            extra_hooks=[tracker, *_progress_hooks(args, store)],
            max_parallel=args.max_parallel,
        )

        async def go() -> str:
            async with contextlib.AsyncExitStack() as stack:
                context = await enter_context(args.context, target, stack)
                if context is None:
                    context = await enter_default_context(runner, dag, stack)
                run_id: str = await start(runner, context)
                return run_id

        try:
            run_id = asyncio.run(go())
        except KeyboardInterrupt:
            if tracker.run_id is not None and db_path(args) != ":memory:":
                print(
                    f"\ninterrupted: run {tracker.run_id} is recorded as FAILED; continue it with"
                    f"\n  {_resume_command(args, tracker.run_id)}",
                    file=sys.stderr,
                )
            raise
        finally:
            runner.close()
        report = runner.get_run_report(run_id)
    hint = _encoding_hint(args, report)
    if args.json:
        _print_json(report)
        if hint:
            print(hint, file=sys.stderr)
    else:
        print(format_report(report))
        if hint:
            print(f"\n{hint}")
        if report["status"] != SUCCESS:
            if db_path(args) == ":memory:":
                print("\n(--db :memory: kept nothing: fix the cause and run it again)")
            else:
                print(f"\nresume after fixing the cause:\n  {_resume_command(args, run_id)}")
    return 0 if report["status"] == SUCCESS else 1


def _encoding_hint(args: argparse.Namespace, report: dict[str, Any]) -> str | None:
    """For a task that failed because JSON cannot store its result: how to store it anyway."""
    if serializer_name(args) != "json":
        return None  # pickle refused it too: the error's own fix (retain_result=False) stands
    names = [
        name
        for name, info in report["tasks"].items()
        if info["status"] == FAILED and str(info["error"]).startswith("ResultEncodingError:")
    ]
    if not names:
        return None
    which = ", ".join(repr(name) for name in names)
    return (
        f"hint: the database stores results as JSON, which cannot store the result of {which}; "
        "run with --serializer pickle (or FLOWRUN_SERIALIZER=pickle) to store any picklable "
        "result, and pass it to every command that reads those runs (runs, show, resume)"
    )


def _resume_command(args: argparse.Namespace, run_id: str) -> str:
    parts = ["flowrun", "resume", run_id, args.target]
    if args.db:
        parts += ["--db", args.db]
    if args.serializer:
        parts += ["--serializer", args.serializer]
    if args.context:
        parts += ["--context", args.context]
    return shlex.join(parts)


# -- output helpers --------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return repr(value)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=_json_default))


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _took(report: dict[str, Any]) -> str:
    finished = report["finished_at"]
    return "-" if finished is None else f"{finished - report['created_at']:.2f}s"


def _task_summary(report: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for info in report["tasks"].values():
        counts[info["status"]] = counts.get(info["status"], 0) + 1
    words = {"SUCCESS": "ok", "FAILED": "failed", "SKIPPED": "skipped"}
    return ", ".join(f"{n} {words.get(s, s.lower())}" for s, n in counts.items())


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# -- commands --------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    engine, dag = target.resolve(args.dag, "run")
    engine.validate(dag)
    targets = args.targets

    async def start(runner: Engine, context: RunContext[Any] | None) -> str:
        if targets:
            return await runner.run_subgraph(dag, targets, context)
        return await runner.run_once(dag, context)

    if targets:  # an unknown task name is a usage error, found before anything runs
        known = engine.get_dag(dag).specs
        for name in targets:
            if name not in known:
                raise UsageError(
                    f"--target {name!r}: DAG {dag!r} has no such task.{suggest(name, known)}"
                )
    return execute(args, target, engine, dag, start)


def cmd_resume(args: argparse.Namespace) -> int:
    with open_store(args, create=False) as store:
        run_id = find_run(store, args.run_id, args)
        dag = store.load_run(run_id).dag_name
    target = load_target(args.target)
    if dag not in target.dags:
        defined = ", ".join(repr(d) for d in target.dags) or "none"
        raise UsageError(
            f"run {run_id} is a run of DAG {dag!r}, which {args.target!r} does not define "
            f"(its DAGs: {defined})"
        )
    engine, dag = target.resolve(dag, "resume")
    from_tasks = args.from_tasks

    async def start(runner: Engine, context: RunContext[Any] | None) -> str:
        return await runner.resume(run_id, from_tasks, context)

    return execute(args, target, engine, dag, start)


def cmd_validate(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    if not target.dags:
        target.resolve(None, "validate")  # raises: no DAG
    invalid = 0
    for dag, found in target.dags.items():
        for _, engine in found:
            try:
                engine.validate(dag)
            except DagValidationError as exc:
                invalid += 1
                print(f"invalid {dag}: {exc}", file=sys.stderr)
            else:
                count = len(engine.list_tasks(dag))
                print(f"ok      {dag} ({count} task{'s' if count != 1 else ''})")
    return 1 if invalid else 0


def cmd_list(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    if not target.dags:
        target.resolve(None, "list")  # raises: no DAG
    invalid = 0
    listing: list[dict[str, Any]] = []
    texts: list[str] = []
    for dag, found in target.dags.items():
        for attr, engine in found:
            label = dag if len(found) == 1 else f"{dag} [{attr}]"
            try:
                graph = engine.get_dag(dag)
            except DagValidationError as exc:
                invalid += 1
                print(f"invalid {label}: {exc}", file=sys.stderr)
                continue
            listing.append(
                {
                    "dag": dag,
                    "engine": attr,
                    "tasks": [{"name": n, "deps": list(graph.parents[n])} for n in graph.order],
                }
            )
            texts.append(engine.display_dag(dag))
    if args.json:
        _print_json(listing)
    else:
        print("\n\n".join(texts))
    return 1 if invalid else 0


def cmd_graph(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    engine, dag = target.resolve(args.dag, "graph")
    print(engine.display_dag(dag, args.format))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    status = args.status.upper() if args.status else None
    with open_store(args, create=False) as store:
        reports = Engine(state_store=store).list_runs(args.dag, status, args.limit)
        if not reports and args.dag:
            known = sorted({r.dag_name for r in store.list_runs(limit=PREFIX_SCAN)})
            if args.dag not in known:
                listed = ", ".join(repr(d) for d in known) or "none"
                print(
                    f"flowrun: no runs of DAG {args.dag!r} in {db_path(args)!r} (DAGs with "
                    f"runs: {listed}).{suggest(args.dag, known)}",
                    file=sys.stderr,
                )
    if args.json:
        _print_json(reports)
        return 0
    if not reports:
        if not args.dag:
            print(f"no runs in {db_path(args)!r}", file=sys.stderr)
        return 0
    rows = [["RUN ID", "DAG", "STATUS", "STARTED", "TOOK", "TASKS"]]
    for r in reports:
        rows.append(
            [
                r["run_id"],
                r["dag_name"],
                r["status"],
                _when(r["created_at"]),
                _took(r),
                _task_summary(r),
            ]
        )
    print(_table(rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with open_store(args, create=False) as store:
        run_id = find_run(store, args.run_id, args)
        record = store.load_run(run_id)
    report = build_report(record)
    if args.json:
        _print_json(report)
        return 0
    if args.format == "text":
        print(f"started {_when(report['created_at'])}, took {_took(report)}")
        print(format_report(report))
        return 0
    parents: dict[str, tuple[str, ...]] = {n: t.deps for n, t in record.tasks.items()}
    if args.target is not None and not any(parents.values()):
        # no edge recorded: a run of an older flowrun (or a DAG without any); ask TARGET
        target = load_target(args.target)
        engine, _ = target.resolve(report["dag_name"], "show")
        parents = dict(engine.get_dag(report["dag_name"]).parents)
    print(render_run(report, args.format, parents))
    return 0


# -- argument parsing ------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if match:
            choices = [c.strip(" '") for c in match.group(2).split(",")]
            hint = suggest(match.group(1), choices)
            message += f".{hint}" if hint else ""
        super().error(message)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flowrun",
        description="Run, inspect and resume flowrun pipelines.",
        epilog=(
            "TARGET is a Python file (examples/daily_etl.py), a module (examples.daily_etl) or "
            "either followed by :attribute (an Engine or engine.dag(...) scope). State is kept "
            f"in {DEFAULT_DB} under the current directory (--db or FLOWRUN_DB to change; "
            "--db :memory: keeps nothing). Exit codes: 0 success, 1 failed run or invalid DAG, "
            "2 usage error."
        ),
    )
    parser.add_argument("--version", action="version", version=f"flowrun {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = _Parser(add_help=False)
    db.add_argument(
        "--db",
        metavar="PATH",
        help=f"state database (default: $FLOWRUN_DB or {DEFAULT_DB}; ':memory:' keeps nothing)",
    )
    db.add_argument(
        "--serializer",
        choices=tuple(SERIALIZERS),
        help="how the database stores task results: json (default, or $FLOWRUN_SERIALIZER) or "
        "pickle (any picklable result; only for databases you trust)",
    )
    running = _Parser(add_help=False)
    running.add_argument(
        "--context",
        metavar="NAME",
        help="module attribute (or module:attribute) that is a RunContext, or a zero-argument "
        "callable returning one (or a context manager yielding one)",
    )
    running.add_argument(
        "--max-parallel", type=_positive, metavar="N", help="tasks in flight at once"
    )
    running.add_argument("--json", action="store_true", help="print the run report as JSON")
    running.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        help="live (redrawn status line), plain (one line per event) or off; default auto "
        "(live on a terminal) or $FLOWRUN_PROGRESS",
    )
    running.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="show the engine's log records on stderr",
    )

    p = sub.add_parser("run", parents=[db, running], help="run a DAG")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("dag", metavar="DAG", nargs="?", help="optional if TARGET defines one DAG")
    p.add_argument(
        "--target",
        dest="targets",
        metavar="TASK",
        nargs="+",
        action="extend",
        help="run only these tasks and what they depend on",
    )
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("resume", parents=[db, running], help="continue a run in a new run")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    p.add_argument("target", metavar="TARGET")
    p.add_argument(
        "--from",
        dest="from_tasks",
        metavar="TASK",
        nargs="+",
        action="extend",
        help="re-run these tasks and everything downstream (default: every task that did not "
        "succeed)",
    )
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser("validate", help="validate every DAG of TARGET")
    p.add_argument("target", metavar="TARGET")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("list", help="the DAGs of TARGET and their tasks")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("graph", help="draw a DAG")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("dag", metavar="DAG", nargs="?", help="optional if TARGET defines one DAG")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser("runs", parents=[db], help="past runs, newest first")
    p.add_argument("--dag", metavar="NAME", help="only runs of this DAG")
    p.add_argument(
        "--status",
        metavar="STATUS",
        type=str.upper,
        choices=STATUSES,
        help="only runs with this status (SUCCESS, FAILED, RUNNING)",
    )
    p.add_argument("--limit", type=_positive, default=20, metavar="N", help="default 20")
    p.add_argument("--json", action="store_true", help="the run reports as JSON")
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser("show", parents=[db], help="the report of one run")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    p.add_argument(
        "target",
        metavar="TARGET",
        nargs="?",
        help="optional: the pipeline, to draw the dependencies of a run recorded by a "
        "flowrun that did not keep them",
    )
    p.add_argument("--format", choices=RUN_FORMATS, default="text")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(handler=cmd_show)
    return parser


def _serializer_hint(error: StateDatabaseError) -> str:
    """The command-line spelling of a store error's "open the database with serializer=..."."""
    if error.needs_format in SERIALIZERS:
        return f" (on the command line: --serializer {error.needs_format})"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``flowrun`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
        sys.stdout.flush()
    except (UsageError, UnknownDagError, UnknownTaskError, UnknownRunError) as exc:
        print(f"flowrun: error: {exc}", file=sys.stderr)
        return 2
    except StateDatabaseError as exc:
        print(f"flowrun: error: {exc}{_serializer_hint(exc)}", file=sys.stderr)
        return 2
    except (CommandFailed, DagValidationError) as exc:
        print(f"flowrun: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `flowrun runs | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code
