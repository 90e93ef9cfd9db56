"""The history commands' parts: reports without results (``runs``, ``show``), results shown
on request (``show --results``), and ``prune``.

Listing reads summaries, which read no result from the database, so a big result costs
nothing there and a run stored with any serializer lists. Only ``show --results`` decodes
results, and checks first that the command's ``--serializer`` reads every one of them: a
pickled result is unpickled only when the user asked for pickle.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from .._mapping import instance_key
from ..errors import suggest
from ..state.records import SUCCESS, PrunedRun, RunRecord
from ..state.sqlite import SqliteStateStore
from ._run import table, when
from ._store import PREFIX_SCAN, SERIALIZERS, db_path, open_store
from ._target import UsageError

__all__ = [
    "add_prune_command",
    "check_readable",
    "cmd_prune",
    "duration",
    "keep_count",
    "results_text",
    "with_pruned_marks",
    "without_results",
]

SHOWN_CHARS = 200  # ``show --results`` shows a result's repr up to this long (--json: whole)

_JSON = "json"  # JSON results are safe to load, and every store reads them


def without_results(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` without the ``result`` of its tasks and instances (a summary's report:
    its ``None`` would read as a task that returned None)."""
    for entry in report["tasks"].values():
        entry.pop("result", None)
        for instance in entry.get("instances", {}).values():
            instance.pop("result", None)
    return report


def with_pruned_marks(report: dict[str, Any], record: RunRecord) -> dict[str, Any]:
    """``report`` with ``"result_pruned": true`` on each task (or instance) whose result
    ``prune --results-only`` dropped, so that it does not read as a task that returned None."""
    entries = report["tasks"]
    for name, rec in record.tasks.items():
        if not rec.result_pruned:
            continue
        if rec.map_of is None:
            entries[name]["result_pruned"] = True
        else:
            entries[rec.map_of]["instances"][instance_key(rec.map_of, name)]["result_pruned"] = True
    return report


def check_readable(record: RunRecord, serializer: str) -> None:
    """Refuse (exit 2) to decode a run holding results that ``--serializer serializer``
    cannot read, naming each such task and the ``--serializer`` that reads it."""
    wrong: dict[str, list[str]] = {}
    for name, rec in record.tasks.items():
        fmt = rec.result_format
        if rec.has_result and fmt is not None and fmt not in (serializer, _JSON):
            wrong.setdefault(fmt, []).append(name)
    if not wrong:
        return
    needs = []
    for fmt, names in wrong.items():
        shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
        tasks = f"task {shown}" if len(names) == 1 else f"tasks {shown}"
        if fmt in SERIALIZERS:
            needs.append(f"{tasks}: --serializer {fmt}")
        else:
            needs.append(
                f"{tasks}: the serializer named {fmt!r}, which the command line does not "
                "have (read it from Python: SqliteStateStore(path, serializer=...))"
            )
    fix = next((f for f in wrong if f in SERIALIZERS), None)
    hint = f"; run: flowrun show {record.run_id} --results --serializer {fix}" if fix else ""
    raise UsageError(
        f"run {record.run_id} holds results that --serializer {serializer} cannot read "
        f"({'; '.join(needs)}){hint}"
    )


def results_text(record: RunRecord, report: dict[str, Any]) -> list[str]:
    """The ``results:`` section of ``show --results``: each task's result, shortened."""
    lines = ["", "results:"]
    for name, entry in report["tasks"].items():
        rec = record.tasks[name]
        own = [r for r in record.tasks.values() if r.map_of == name] if rec.mapped else [rec]
        if any(r.result_pruned for r in own):
            text = "(pruned: flowrun prune --results-only dropped it)"
        elif any(r.has_result for r in own):
            text = repr(entry["result"])
            if len(text) > SHOWN_CHARS:
                text = f"{text[:SHOWN_CHARS]}... ({len(text):,} characters; --json shows it all)"
        elif entry["status"] == SUCCESS:
            text = "(not kept: retain_result=False)"
        else:
            continue
        lines.append(f"  {name}: {text}")
    if len(lines) == 2:
        lines.append("  (none: no task has a result)")
    return lines


# -- prune ------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def duration(text: str) -> float:
    """``--older-than``: ``30d``, ``12h``, ``90m``, ``3600s`` -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 30d, 12h, 90m or 3600s (a number and a unit: d, h, "
            f"m or s), got {text!r}"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def keep_count(text: str) -> int:
    """``--keep-last``: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {value})")
    return value


PRUNE_EPILOG = (
    "A run goes when every criterion given says so: not among the N newest runs of its DAG, "
    "and started more than DURATION ago. A RUNNING run is never pruned. Cache entries "
    "(@task(cache=True)) and schedule ticks stay. Without --vacuum the file keeps its size "
    "(SQLite reuses the space); --vacuum rewrites it smaller. Exit codes: 0 done (also "
    "when nothing matched), 2 usage error (no criterion, a bad DURATION or N)."
)


def add_prune_command(sub: Any, db: argparse.ArgumentParser) -> None:
    """``flowrun prune``'s parser (``sub``: the subcommands; ``db``: --db and --serializer)."""
    p = sub.add_parser(
        "prune",
        parents=[db],
        help="delete old runs (or only their results) from the database",
        epilog=PRUNE_EPILOG,
    )
    p.add_argument(
        "--older-than",
        type=duration,
        metavar="DURATION",
        help="only runs started more than DURATION ago: 30d, 12h, 90m or 3600s",
    )
    p.add_argument(
        "--keep-last",
        type=keep_count,
        metavar="N",
        help="keep the N newest runs of each DAG (0: none)",
    )
    p.add_argument("--dag", metavar="NAME", help="only runs of this DAG")
    p.add_argument(
        "--results-only",
        action="store_true",
        help="drop the stored results only: the runs and their task states stay (show "
        "--results says pruned; resume runs a task again when a re-run task needs its result)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would go, and change nothing")
    p.add_argument(
        "--vacuum",
        action="store_true",
        help="then give the freed space back to the file system (SQLite VACUUM; rewrites "
        "the file); alone, only that",
    )
    p.set_defaults(handler=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    """Delete old runs (or only their results) by age and/or count per DAG; ``--vacuum``
    gives the space back. With no criterion it refuses, rather than delete every run."""
    criteria = args.older_than is not None or args.keep_last is not None
    if not criteria and not args.vacuum:
        raise UsageError(
            "prune needs --older-than DURATION and/or --keep-last N: with neither it would "
            "delete every run. To delete every run of a DAG, say so: --keep-last 0 --dag NAME "
            "(--vacuum alone only compacts the file)"
        )
    if not criteria and (args.results_only or args.dag):
        raise UsageError("--results-only and --dag need --older-than and/or --keep-last")
    path = db_path(args)
    with open_store(args, create=False) as store:
        if criteria:
            pruned = store.prune(
                keep_last=args.keep_last,
                older_than_s=args.older_than,
                dag=args.dag,
                results_only=args.results_only,
                dry_run=args.dry_run,
            )
            _report(pruned, args, path)
            if args.dag and not pruned:
                _note_unknown_dag(store.list_runs(limit=PREFIX_SCAN, results=False), args, path)
        if args.vacuum:
            _vacuum(store, args, path)
    return 0


def _report(pruned: list[PrunedRun], args: argparse.Namespace, path: str) -> None:
    what = "the results of " if args.results_only else ""
    count = f"{len(pruned)} run{'s' if len(pruned) != 1 else ''}"
    if not pruned:
        print(f"nothing to prune in {path!r}")
        return
    if args.dry_run:
        verb = "would drop" if args.results_only else "would prune"
        print(f"{verb} {what}{count} in {path!r} (--dry-run: nothing was changed):")
        rows = [["RUN ID", "DAG", "STATUS", "STARTED"]]
        rows += [[r.run_id, r.dag_name, r.status, when(r.created_at)] for r in pruned]
        print(table(rows))
        return
    per_dag: dict[str, int] = {}
    for run in pruned:
        per_dag[run.dag_name] = per_dag.get(run.dag_name, 0) + 1
    dags = ", ".join(f"{n} of {dag}" for dag, n in sorted(per_dag.items()))
    verb = "dropped" if args.results_only else "pruned"
    print(f"{verb} {what}{count} in {path!r} ({dags})")


def _note_unknown_dag(runs: list[RunRecord], args: argparse.Namespace, path: str) -> None:
    known = sorted({r.dag_name for r in runs})
    if args.dag not in known:
        listed = ", ".join(repr(d) for d in known) or "none"
        print(
            f"flowrun: no runs of DAG {args.dag!r} in {path!r} (DAGs with runs: {listed})."
            f"{suggest(args.dag, known)}",
            file=sys.stderr,
        )


def _vacuum(store: object, args: argparse.Namespace, path: str) -> None:
    if args.dry_run:
        print("--dry-run: the database was not vacuumed")
        return
    if not isinstance(store, SqliteStateStore):
        print(f"nothing to vacuum: no database at {path!r}")
        return
    before = _file_size(store.path)
    store.vacuum()
    print(f"vacuumed {path!r}: {_size(before)} -> {_size(_file_size(store.path))}")


def _file_size(path: str) -> int:
    """The database's bytes on disk, its write-ahead log included."""
    return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"
