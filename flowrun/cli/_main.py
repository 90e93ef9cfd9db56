"""The argument parser and ``main()``, which maps errors to exit codes."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import __version__
from .._render import FORMAT_HELP, FORMATS, RUN_FORMAT_HELP, RUN_FORMATS
from ..errors import (
    DagValidationError,
    UnknownDagError,
    UnknownRunError,
    UnknownTaskError,
    suggest,
)
from ..state.sqlite import StateDatabaseError
from ._commands import cmd_graph, cmd_list, cmd_resume, cmd_run, cmd_runs, cmd_show, cmd_validate
from ._history import add_prune_command
from ._progress import PROGRESS_MODES
from ._serve import cmd_schedules, cmd_serve
from ._store import DEFAULT_DB, SERIALIZERS
from ._target import CommandFailed, UsageError
from ._ui import DEFAULT_PORT, add_ui_command, port_number

STATUSES = ("SUCCESS", "FAILED", "RUNNING")
TARGET_HELP = (
    "a Python file (pipelines/etl.py), a module (pipelines.etl) or either followed by "
    ":attribute (an Engine or engine.dag(...) scope of it)"
)
RUN_EXIT_CODES = (
    "Exit codes: 0 the run succeeded, 1 it FAILED (or the pipeline's code failed outside a "
    "task), 2 usage error, 130 interrupted (Ctrl-C): the run is recorded as FAILED and "
    "`flowrun resume` continues it."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if match:
            choices = [c.strip(" '") for c in match.group(2).split(",")]
            hint = suggest(match.group(1), choices)
            message += f".{hint}" if hint else ""
        super().error(message)


class _WideCommands(argparse.HelpFormatter):
    """The top-level help, the same on Python 3.11 to 3.13: from 3.13 on, argparse measures
    the column of the commands' help with their indentation, before it without; starting
    from the measure of the longest command (``widest``, set by ``build_parser``) gives both
    the 3.13 layout."""

    widest = 0

    def __init__(self, prog: str) -> None:
        super().__init__(prog)
        self._action_max_length = max(self._action_max_length, self.widest)


def _formats_epilog(meanings: dict[str, str]) -> str:
    """The ``--format`` choices, one line each (for a ``RawDescriptionHelpFormatter`` epilog)."""
    width = max(map(len, meanings))
    lines = [f"  {name:<{width}}  {meaning}" for name, meaning in meanings.items()]
    return "--format:\n" + "\n".join(lines)


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
            "2 usage error, 130 interrupted (Ctrl-C: the run is recorded as FAILED; resume "
            "continues it)."
        ),
        formatter_class=_WideCommands,
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

    p = sub.add_parser("run", parents=[db, running], help="run a DAG", epilog=RUN_EXIT_CODES)
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
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

    p = sub.add_parser(
        "resume", parents=[db, running], help="continue a run in a new run", epilog=RUN_EXIT_CODES
    )
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
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
        help=f"{TARGET_HELP}, or a folder (its *.py files, not _*.py or conftest.py)",
    )
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("list", help="the DAGs of TARGET and their tasks")
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser(
        "graph",
        help="draw a DAG",
        epilog=_formats_epilog(FORMAT_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("dag", metavar="DAG", nargs="?", help="optional if TARGET defines one DAG")
    p.add_argument(
        "--format", choices=FORMATS, default="text", help="how to draw it (below; default text)"
    )
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
    p.add_argument("--json", action="store_true", help="the run reports as JSON, without results")
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser(
        "show",
        parents=[db],
        help="the report of one run",
        epilog=_formats_epilog(RUN_FORMAT_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    p.add_argument(
        "target",
        metavar="TARGET",
        nargs="?",
        help="optional: the pipeline, to draw the dependencies of a run recorded by a "
        "flowrun that did not keep them",
    )
    p.add_argument(
        "--format", choices=RUN_FORMATS, default="text", help="how to show it (below; default text)"
    )
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument(
        "--results",
        action="store_true",
        help="also the tasks' results (text: each shortened; --json: whole), read with "
        "--serializer; without it nothing reads or decodes a result",
    )
    p.set_defaults(handler=cmd_show)
    add_prune_command(sub, db)
    _add_schedule_commands(sub, db)
    add_ui_command(sub)
    _WideCommands.widest = 4 + max(map(len, sub.choices))  # a command, as indented in the help
    return parser


def _add_schedule_commands(sub: Any, db: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[db],
        help="run the schedules of TARGET's engines until stopped",
        epilog=(
            "Each tick is recorded in the database before its run starts, so a restart "
            "continues from the last recorded tick (catching up by each schedule's catchup "
            "policy) and two servers on one database never start the same tick. SIGTERM or "
            "Ctrl-C: start no more runs, give the runs in flight --grace-s seconds, then "
            "record what is left FAILED (resumable); exit 0. A second Ctrl-C cancels at "
            "once: exit 130. Exit codes: 0 stopped, 1 the pipeline's code failed, 2 usage "
            "error (no schedule, bad option), 130 cancelled."
        ),
    )
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument(
        "--max-parallel", type=_positive, metavar="N", help="tasks in flight at once, per run"
    )
    p.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        help="live (each run's redrawn status line, on a terminal) or plain / off (only the "
        "line per tick, printed in every mode); default auto (live on a terminal) or "
        "$FLOWRUN_PROGRESS",
    )
    p.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="show the engine's log records on stderr",
    )
    p.add_argument(
        "--grace-s",
        type=_non_negative,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM/Ctrl-C, how long the runs in flight may finish (default 30)",
    )
    p.add_argument(
        "--max-runs",
        type=_positive,
        metavar="N",
        help="stop once N runs have started and finished (per engine; for smoke tests)",
    )
    p.add_argument(
        "--ui",
        action="store_true",
        help="also serve the web view of the database (read-only, on 127.0.0.1; see `flowrun ui`)",
    )
    p.add_argument(
        "--ui-port",
        type=port_number,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"the web view's port with --ui (default {DEFAULT_PORT}; 0: any free port)",
    )
    p.set_defaults(handler=cmd_serve, json=False, serving=True)

    p = sub.add_parser(
        "schedules", parents=[db], help="the schedules of TARGET: last tick, next due time"
    )
    p.add_argument("target", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("--json", action="store_true", help="as JSON (times in epoch seconds)")
    p.set_defaults(handler=cmd_schedules)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (got {text})")
    return value


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
