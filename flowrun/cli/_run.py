"""Running a DAG from the command line: the store, the progress display, the report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from .._context import RunContext
from .._engine import Engine
from .._hooks import DagStartEvent, RunHook
from .._render import format_report
from ..state.protocol import StateStoreProtocol
from ..state.records import FAILED, FINISHED_STATUSES, SUCCESS
from ._output import TaskOutput
from ._progress import PROGRESS_MODES, LiveProgress, PlainProgress
from ._store import Store, db_path, open_store, serializer_name
from ._target import Target, UsageError, enter_context, enter_default_context


class _RunIdHook(RunHook):
    """Remembers the id of the run in progress, to print the resume command on Ctrl-C."""

    def __init__(self) -> None:
        self.run_id: str | None = None

    def on_dag_start(self, event: DagStartEvent) -> None:
        self.run_id = event.run_id


def _progress_mode(args: argparse.Namespace) -> str:
    """``live``, ``plain`` or ``off``: ``--progress`` (or ``FLOWRUN_PROGRESS``), where ``auto``
    is live on a terminal, plain elsewhere, and off with ``--json``."""
    mode = args.progress or os.environ.get("FLOWRUN_PROGRESS") or "auto"
    if mode not in PROGRESS_MODES:
        raise UsageError(
            f"FLOWRUN_PROGRESS={mode!r} is not a progress mode; choose one of "
            f"{', '.join(PROGRESS_MODES)}"
        )
    if mode == "auto":
        if args.json:
            return "off"
        live = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
        return "live" if live else "plain"
    return mode


def _progress_hooks(args: argparse.Namespace, store: StateStoreProtocol) -> list[RunHook]:
    """The progress display of ``args`` on its own, without task output routing (``serve``)."""
    return _display_hooks(_progress_mode(args), args, store)


def _display_hooks(
    mode: str,
    args: argparse.Namespace,
    store: StateStoreProtocol,
    engine: Engine | None = None,
    out: TaskOutput | None = None,
) -> list[RunHook]:
    """The progress display of ``mode``, on stdout (stderr with ``--json``), on the engine's
    clock, sharing the task output's lock; a live one also takes the lines tasks print."""
    if mode == "off":
        return []
    if out is None:
        stream: TextIO = sys.stderr if args.json else sys.stdout
    else:
        stream = out.real_stderr if args.json else out.real_stdout
    clock = None if engine is None else engine.clock
    lock = None if out is None else out.lock

    def kept(run_id: str) -> list[str]:
        if isinstance(store, Store):  # a built-in store reads no result for this
            record = store.load_run(run_id, results=False)
        else:
            record = store.load_run(run_id)
        return [name for name, t in record.tasks.items() if t.status in FINISHED_STATUSES]

    if mode == "live":
        live = LiveProgress(stream, kept=kept, clock=clock, lock=lock)
        if out is not None:
            out.display = live
        return [live]
    return [PlainProgress(stream, kept=kept, clock=clock, lock=lock)]


def _configure_logging(level: str | None) -> None:
    """``--log-level``: the engine's records on stderr (the task output's stream while the
    run is on, so they show above the status line too)."""
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
    context is ``--context``, else the DAG's default context, else none. While it runs, what
    tasks print goes through ``TaskOutput`` (above the status line; stderr with ``--json``)."""
    mode = _progress_mode(args)
    tracker = _RunIdHook()
    routed = mode != "off" or args.json  # --progress off alone changes nothing
    with TaskOutput(prefix=mode == "plain", json=args.json, active=routed) as output:
        _configure_logging(args.log_level)
        with open_store(args, create=True) as store:
            runner = engine.derive(
                state_store=store,
                extra_hooks=[
                    tracker,
                    *output.hooks,
                    *_display_hooks(mode, args, store, engine, output),
                ],
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
                output.end_lines()
                if output.display is not None:
                    output.display.close()
                if tracker.run_id is not None and db_path(args) != ":memory:":
                    print(
                        f"\ninterrupted: run {tracker.run_id} is recorded as FAILED; continue "
                        f"it with\n  {_resume_command(args, tracker.run_id)}",
                        file=sys.stderr,
                    )
                raise
            finally:
                runner.close()
            report = runner.get_run_report(run_id)
    hint = _encoding_hint(args, report)
    if args.json:
        print_json(report)
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


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return repr(value)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=_json_default))


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def took(report: dict[str, Any]) -> str:
    finished = report["finished_at"]
    return "-" if finished is None else f"{finished - report['created_at']:.2f}s"


def task_summary(report: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for info in report["tasks"].values():
        counts[info["status"]] = counts.get(info["status"], 0) + 1
    words = {"SUCCESS": "ok", "FAILED": "failed", "SKIPPED": "skipped", "OMITTED": "omitted"}
    return ", ".join(f"{n} {words.get(s, s.lower())}" for s, n in counts.items())


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
