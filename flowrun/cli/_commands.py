"""The commands: run, resume, validate, list, graph, runs, show (``prune``: ``_history``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._context import RunContext
from .._engine import Engine
from .._render import format_report, render_run
from .._report import build_report
from ..errors import (
    DagValidationError,
    suggest,
)
from ._history import check_readable, results_text, with_pruned_marks, without_results
from ._run import execute, print_json, table, task_summary, took, when
from ._store import PREFIX_SCAN, db_path, find_run, open_store, serializer_name
from ._target import UsageError, load_target


def cmd_run(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    engine, dag = target.resolve(args.dag, "run")
    engine.validate(dag)
    targets = args.targets
    refresh: list[str] | None = args.refresh_cache  # [] (no TASK): the whole DAG

    async def start(runner: Engine, context: RunContext[Any] | None) -> str:
        if refresh is not None:  # in the command's store, before the run looks anything up
            runner.clear_cache(dag, refresh or None)
        if targets:
            return await runner.run_subgraph(dag, targets, context)
        return await runner.run_once(dag, context)

    known = engine.get_dag(dag).specs
    # an unknown task name is a usage error, found before anything runs
    for option, names in (("--target", targets), ("--refresh-cache", refresh)):
        for name in names or ():
            if name not in known:
                raise UsageError(
                    f"{option} {name!r}: DAG {dag!r} has no such task.{suggest(name, known)}"
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
    """Every DAG of every TARGET (a folder: its ``*.py`` files), one line per DAG; exit 1 if
    any is invalid or a TARGET named among several cannot be loaded."""
    specs = _validate_targets(args.targets)
    several = len(specs) > 1 or any(from_folder for _, from_folder in specs)
    invalid = 0
    found_any = False
    for spec, from_folder in specs:
        try:
            target = load_target(spec)
        except UsageError as exc:
            if not several:
                raise
            invalid += 1
            print(f"error   {spec}: {exc}", file=sys.stderr)
            continue
        if not target.dags:
            if from_folder:
                continue  # a helper module beside the pipelines
            if not several:
                target.resolve(None, "validate")  # raises: no DAG
            invalid += 1
            print(f"error   {spec}: no DAG found", file=sys.stderr)
            continue
        found_any = True
        where = f"  [{spec}]" if several else ""
        for dag, found in target.dags.items():
            for _, engine in found:
                try:
                    engine.validate(dag)
                except DagValidationError as exc:
                    invalid += 1
                    print(f"invalid {dag}{where}: {exc}", file=sys.stderr)
                else:
                    count = len(engine.list_tasks(dag))
                    print(f"ok      {dag} ({count} task{'s' if count != 1 else ''}){where}")
    if not found_any and not invalid:
        raise UsageError(f"no DAG found in {', '.join(args.targets)}")
    return 1 if invalid else 0


def _validate_targets(targets: list[str]) -> list[tuple[str, bool]]:
    """The TARGETs, a folder replaced by its ``*.py`` files (not ``_*.py``, not conftest.py),
    each with whether it came from a folder."""
    specs: list[tuple[str, bool]] = []
    for spec in targets:
        folder = Path(spec)
        if not folder.is_dir():
            specs.append((spec, False))
            continue
        files = sorted(
            p for p in folder.glob("*.py") if not p.name.startswith("_") and p.name != "conftest.py"
        )
        if not files:
            raise UsageError(f"folder {spec!r} holds no Python file (*.py) to validate")
        specs.extend((str(p), True) for p in files)
    return specs


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
        print_json(listing)
    else:
        print("\n\n".join(texts))
    return 1 if invalid else 0


def cmd_graph(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    engine, dag = target.resolve(args.dag, "graph")
    print(engine.display_dag(dag, args.format))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """The history, newest first, read as summaries: no result is read from the database nor
    decoded (so a big result costs nothing here and any serializer's runs list)."""
    status = args.status.upper() if args.status else None
    with open_store(args, create=False) as store:
        records = store.list_runs(args.dag, status, args.limit, results=False)
        reports = [without_results(build_report(r)) for r in records]
        if not reports and args.dag:
            known = sorted({r.dag_name for r in store.list_runs(limit=PREFIX_SCAN, results=False)})
            if args.dag not in known:
                listed = ", ".join(repr(d) for d in known) or "none"
                print(
                    f"flowrun: no runs of DAG {args.dag!r} in {db_path(args)!r} (DAGs with "
                    f"runs: {listed}).{suggest(args.dag, known)}",
                    file=sys.stderr,
                )
    if args.json:
        print_json(reports)
        return 0
    if not reports:
        if not args.dag:
            print(f"no runs in {db_path(args)!r}", file=sys.stderr)
        return 0
    scheduled = any(r["trigger"] != "manual" for r in reports)  # the column only then
    rows = [["RUN ID", "DAG", "STATUS", "STARTED", "TOOK", "TASKS"] + (["TRIGGER"] * scheduled)]
    for r in reports:
        row = [r["run_id"], r["dag_name"], r["status"], when(r["created_at"]), took(r)]
        row.append(task_summary(r))
        if scheduled:
            due = r["scheduled_for"]
            row.append(r["trigger"] if due is None else f"{r['trigger']} {when(due)}")
        rows.append(row)
    print(table(rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """One run: its report without results (read from no result, whatever serializer stored
    them) unless ``--results``, which needs the serializer that stored them."""
    if args.results and args.format != "text" and not args.json:
        raise UsageError(
            f"--results adds the results to the text report or to --json; --format "
            f"{args.format} draws the run without them"
        )
    with open_store(args, create=False) as store:
        run_id = find_run(store, args.run_id, args)
        record = store.load_run(run_id, results=False)
        if args.results:
            check_readable(record, serializer_name(args))
            record = store.load_run(run_id)
    report = build_report(record)
    if args.json:
        print_json(with_pruned_marks(report, record) if args.results else without_results(report))
        return 0
    if args.format == "text":
        print(f"started {when(report['created_at'])}, took {took(report)}")
        print(format_report(report))
        if args.results:
            print("\n".join(results_text(record, report)))
        return 0
    parents: dict[str, tuple[str, ...]] = {n: t.deps for n, t in record.tasks.items()}
    if args.target is not None and not any(parents.values()):
        # no edge recorded: a run of an older flowrun (or a DAG without any); ask TARGET
        target = load_target(args.target)
        engine, _ = target.resolve(report["dag_name"], "show")
        parents = dict(engine.get_dag(report["dag_name"]).parents)
    print(render_run(report, args.format, parents))
    return 0
