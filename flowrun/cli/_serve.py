"""``flowrun serve`` (run the schedules of TARGET's engines until stopped) and ``flowrun
schedules`` (each schedule with its last tick and next due time)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from .._engine import Engine
from .._hooks import RunHook
from .._schedules import Schedule
from .._serve import TickEvent, TickStore
from ..state.protocol import StateStoreProtocol
from ..state.records import TickRecord
from ._run import _configure_logging, _progress_hooks, print_json, table
from ._store import open_store
from ._target import Target, UsageError, load_target
from ._ui import serve_ui

__all__ = ["cmd_schedules", "cmd_serve", "tick_line"]


def _engines(target: Target) -> list[Engine]:
    """TARGET's engines that have schedules, each once, in the order their DAGs appear."""
    engines: dict[int, Engine] = {}
    for holders in target.dags.values():
        for _, engine in holders:
            if engine.schedules:
                engines.setdefault(id(engine), engine)
    if not engines:
        raise UsageError(
            f"{target.spec!r} declares no schedule; add one, e.g. "
            "engine.dag('etl').schedule(cron='0 6 * * *') or engine.schedule('etl', every=900)"
        )
    return list(engines.values())


def tick_line(event: TickEvent) -> str:
    """One line per tick, for logs: due time (in the schedule's zone), schedule, outcome."""
    tick, schedule, report = event.tick, event.schedule, event.report
    head = f"{schedule.local(tick.due_at)} {schedule.name}:"
    if tick.outcome == "started" and report is not None:
        finished = report["finished_at"]
        took = "" if finished is None else f" in {finished - report['created_at']:.2f}s"
        done = sum(t["status"] in ("SUCCESS", "OMITTED") for t in report["tasks"].values())
        return (
            f"{head} run {tick.run_id} {report['status']}{took} "
            f"({done}/{len(report['tasks'])} tasks done)"
        )
    return f"{head} {tick.outcome}: {tick.reason}"


def cmd_serve(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    engines = _engines(target)
    for engine in engines:
        for schedule in engine.schedules.values():
            engine.validate(schedule.dag)
    _configure_logging(args.log_level)
    with open_store(args, create=True) as store:
        ui = serve_ui(args, store) if getattr(args, "ui", False) else None
        runners = [
            engine.derive(
                state_store=store,
                extra_hooks=_live_progress(args, store),
                max_parallel=args.max_parallel,
            )
            for engine in engines
        ]
        try:
            return asyncio.run(_serve_all(runners, args, _printer()))
        finally:
            for runner in runners:
                runner.close()
            if ui is not None:
                ui.close()


def _live_progress(args: argparse.Namespace, store: StateStoreProtocol) -> list[RunHook]:
    """Each run's live status line on a terminal (``--progress live``, or auto on a tty);
    otherwise nothing but the line per tick, which is what logs of a server want."""
    mode = args.progress or os.environ.get("FLOWRUN_PROGRESS") or "auto"
    if mode == "auto":
        mode = "live" if sys.stdout.isatty() and os.environ.get("TERM") != "dumb" else "plain"
    if mode != "live":
        return []
    return _progress_hooks(argparse.Namespace(**{**vars(args), "progress": "live"}), store)


def _printer() -> Callable[[TickEvent], None]:
    def show(event: TickEvent) -> None:
        print(tick_line(event), flush=True)

    return show


async def _serve_all(
    runners: list[Engine], args: argparse.Namespace, on_tick: Callable[[TickEvent], None]
) -> int:
    """Serve until SIGTERM/SIGINT (then a grace period for the runs in flight: exit 0) or a
    second SIGINT (cancel at once: exit 130)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()
    assert main is not None
    aborted = False

    def on_signal(signum: int) -> None:
        nonlocal aborted
        if not stop.is_set():
            stop.set()
            print(
                f"\nflowrun serve: {signal.Signals(signum).name}: starting no more runs; "
                f"waiting up to {args.grace_s:g}s for the runs in flight (Ctrl-C again to "
                "cancel them now)",
                file=sys.stderr,
                flush=True,
            )
        elif signum == signal.SIGINT:
            aborted = True
            main.cancel()

    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    names = ", ".join(f"{n!r}" for r in runners for n in r.schedules)
    print(f"flowrun serve: serving {names} (Ctrl-C or SIGTERM to stop)", flush=True)
    try:
        await asyncio.gather(
            *(
                runner.serve(
                    stop=stop, max_runs=args.max_runs, grace_s=args.grace_s, on_tick=on_tick
                )
                for runner in runners
            )
        )
    except asyncio.CancelledError:
        if aborted:
            print(
                "flowrun serve: cancelled; the runs in flight are recorded FAILED", file=sys.stderr
            )
            return 130
        raise
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    return 0


def _last_status(store: StateStoreProtocol, tick: TickRecord | None) -> str:
    if tick is None:
        return "-"
    if tick.outcome != "started" or tick.run_id is None:
        return tick.outcome
    try:
        return store.load_run(tick.run_id).status
    except Exception:  # the run was pruned, or its process died before creating it
        return "started"


def schedule_rows(
    engines: list[Engine], store: StateStoreProtocol, now: float
) -> list[dict[str, Any]]:
    """Each schedule with its policies, last tick and next due time (``flowrun schedules``)."""
    rows = []
    for engine in engines:
        for schedule in engine.schedules.values():
            ticks = store.list_ticks(schedule.name, 1) if isinstance(store, TickStore) else []
            last = ticks[0] if ticks else None
            after = now if last is None else max(now, last.due_at)
            rows.append(_row(schedule, last, _last_status(store, last), after))
    return rows


def _row(schedule: Schedule, last: TickRecord | None, status: str, after: float) -> dict[str, Any]:
    due = schedule.next_after(after)
    return {
        "schedule": schedule.name,
        "dag": schedule.dag,
        "cron": schedule.cron,
        "every": schedule.every,
        "tz": schedule.tz,
        "catchup": schedule.catchup,
        "max_catchup": schedule.max_catchup,
        "overlap": schedule.overlap,
        "last_due": None if last is None else last.due_at,
        "last_run_id": None if last is None else last.run_id,
        "last_status": status,
        "next_due": due,
        "next_due_local": schedule.local(due),
        "_last_local": "-" if last is None else schedule.local(last.due_at),
        "_spec": schedule.spec,
    }


def cmd_schedules(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    engines = _engines(target)
    with open_store(args, create=False) as store:
        now = engines[0].clock.time()
        rows = schedule_rows(engines, store, now)
    if args.json:
        print_json([{k: v for k, v in row.items() if not k.startswith("_")} for row in rows])
        return 0
    lines = [["schedule", "when", "policy", "last tick", "last status", "next due"]]
    for row in rows:
        lines.append(
            [
                row["schedule"],
                row["_spec"],
                f"catchup={row['catchup']} overlap={row['overlap']}",
                row["_last_local"],
                row["last_status"],
                row["next_due_local"],
            ]
        )
    print(table(lines))
    return 0
