"""A periodic sync: exchange rates every 15 minutes, served by flowrun itself.

    flowrun serve examples/rates_sync.py          # until Ctrl-C or SIGTERM
    flowrun schedules examples/rates_sync.py      # last tick, last status, next due time
    flowrun run examples/rates_sync.py            # one run now, by hand

Each run fetches the rates of its 15-minute window from a stand-in for a rates API and
appends them to ``.flowrun/rates_sync/rates.jsonl`` (set ``RATES_SYNC_DIR`` to choose another
directory); a scheduled run uses the window of its tick (``context.scheduled_for``), so a
run that catches up after a downtime loads the window it was due for, not the current one.
``RATES_SYNC_EVERY_S`` shortens the interval (the docs serve it every second).

    fetch_rates --> check_rates --> append_rates
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from flowrun import RunContext, build_default_engine

engine = build_default_engine()
rates_sync = engine.dag("rates_sync")

EVERY_S = float(os.environ.get("RATES_SYNC_EVERY_S", "900"))
CURRENCIES = ("USD", "GBP", "CHF", "JPY")

# Catch up only the newest missed window after a downtime, and never run two syncs at once:
# a tick due while the previous sync still runs is recorded as skipped.
rates_sync.schedule(every=EVERY_S, catchup="latest", overlap="skip")


def out_dir() -> Path:
    path = Path(os.environ.get("RATES_SYNC_DIR", os.path.join(".flowrun", "rates_sync")))
    path.mkdir(parents=True, exist_ok=True)
    return path


def window_of(context: RunContext[Any]) -> float:
    """The start of the window this run loads: its tick's due time when scheduled, else the
    current window."""
    if context.scheduled_for is not None:
        return context.scheduled_for
    return math.floor(time.time() / EVERY_S) * EVERY_S


@rates_sync.task(retries=2, retry_delay_s=5, timeout_s=30)
def fetch_rates(context: RunContext[Any]) -> dict[str, Any]:
    """Stand-in for ``GET /rates?at=...``: deterministic rates for the window."""
    window = window_of(context)
    step = int(window // EVERY_S)
    rates = {c: round(1 + (i + 1) * 0.1 + (step % 7) * 0.001, 4) for i, c in enumerate(CURRENCIES)}
    return {"window": window, "base": "EUR", "rates": rates}


@rates_sync.task(deps=[fetch_rates])
def check_rates(fetch_rates: dict[str, Any]) -> dict[str, Any]:
    missing = [c for c in CURRENCIES if c not in fetch_rates["rates"]]
    if missing:
        raise ValueError(f"the rates API left out {', '.join(missing)}")
    return fetch_rates


@rates_sync.task(deps=[check_rates])
def append_rates(check_rates: dict[str, Any]) -> str:
    path = out_dir() / "rates.jsonl"
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(check_rates, sort_keys=True) + "\n")
    return str(path)
