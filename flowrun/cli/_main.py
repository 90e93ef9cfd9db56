"""The argument parser and ``main()``, which maps errors to exit codes."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from .._render import FORMATS, RUN_FORMATS
from ..errors import (
    DagValidationError,
    UnknownDagError,
    UnknownRunError,
    UnknownTaskError,
    suggest,
)
from ..state.sqlite import StateDatabaseError
from ._commands import cmd_graph, cmd_list, cmd_resume, cmd_run, cmd_runs, cmd_show, cmd_validate
from ._progress import PROGRESS_MODES
from ._store import DEFAULT_DB, SERIALIZERS
from ._target import CommandFailed, UsageError

STATUSES = ("SUCCESS", "FAILED", "RUNNING")


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
        action="append",
        help="run only this task and what it depends on (once per task: --target a --target "
        "b; anywhere on the line)",
    )
    p.add_argument(
        "--refresh-cache",
        dest="refresh_cache",
        metavar="TASK",
        nargs="*",
        action="extend",
        help="compute cached tasks (@task(cache=True)) again: forget the cached results of "
        "these tasks, or of every task of the DAG when none is named, before the run (name "
        "DAG before this option: flowrun run TARGET DAG --refresh-cache TASK)",
    )
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("resume", parents=[db, running], help="continue a run in a new run")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    p.add_argument("target", metavar="TARGET")
    p.add_argument(
        "--from",
        dest="from_tasks",
        metavar="TASK",
        action="append",
        help="re-run this task and everything downstream (once per task: --from a --from b; "
        "default: every task that did not succeed)",
    )
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser("validate", help="validate every DAG of each TARGET")
    p.add_argument(
        "targets",
        metavar="TARGET",
        nargs="+",
        help="files, modules or folders (a folder's *.py files, not _*.py or conftest.py)",
    )
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
