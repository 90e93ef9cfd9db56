"""Daily ETL: the quick start made real.

    flowrun run examples/daily_etl.py

Generates yesterday's orders (CSV) and the customer list (JSON), reads both, joins and totals
them per region, and writes ``daily_totals.json``. Everything is written under
``.flowrun/daily_etl/`` in the current directory (set ``DAILY_ETL_DIR`` to choose another
directory); the source tree is never touched.

    orders.csv ----> extract_orders ----+
                                         +--> transform --> load --> daily_totals.json
    customers.json -> extract_customers -+                    |
                                                        clean_up (trigger="all_done")

``clean_up`` removes the staged inputs once ``load`` is final, whether it succeeded or not: a
cleanup task never turns a failed run green, and it receives ``None`` for a parent that did
not succeed.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import random
from pathlib import Path

from flowrun import build_default_engine

engine = build_default_engine(max_parallel=4)
daily_etl = engine.dag("daily_etl")

REGIONS = ("north", "south", "east", "west")


def work_dir() -> Path:
    """Where the inputs and the result live (created on demand)."""
    path = Path(os.environ.get("DAILY_ETL_DIR", os.path.join(".flowrun", "daily_etl")))
    path.mkdir(parents=True, exist_ok=True)
    return path


@daily_etl.task
def generate_inputs() -> dict[str, str]:
    """Stand-in for yesterday's export: a CSV of orders and a JSON list of customers."""
    day = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    rng = random.Random(day)  # the same data for the same day
    folder = work_dir()
    customers = [
        {"id": i, "name": f"customer-{i}", "region": REGIONS[i % len(REGIONS)]} for i in range(20)
    ]
    customers_path = folder / "customers.json"
    customers_path.write_text(json.dumps(customers, indent=2), encoding="utf-8")
    orders_path = folder / "orders.csv"
    with orders_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["order_id", "day", "customer_id", "amount"])
        for order_id in range(1, 201):
            amount = f"{rng.uniform(5, 500):.2f}" if order_id % 50 else "n/a"  # a few bad rows
            writer.writerow([order_id, day, rng.randrange(len(customers)), amount])
    return {"day": day, "orders": str(orders_path), "customers": str(customers_path)}


@daily_etl.task(deps=[generate_inputs], retries=2, retry_delay_s=0.5)
def extract_orders(generate_inputs: dict[str, str]) -> list[dict[str, str]]:
    with open(generate_inputs["orders"], newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@daily_etl.task(deps=[generate_inputs], retries=2, retry_delay_s=0.5)
def extract_customers(generate_inputs: dict[str, str]) -> list[dict[str, object]]:
    with open(generate_inputs["customers"], encoding="utf-8") as fh:
        customers: list[dict[str, object]] = json.load(fh)
    return customers


@daily_etl.task(deps=[extract_orders, extract_customers])
def transform(
    extract_orders: list[dict[str, str]], extract_customers: list[dict[str, object]]
) -> dict[str, object]:
    region_of = {int(str(c["id"])): str(c["region"]) for c in extract_customers}
    totals: dict[str, float] = dict.fromkeys(REGIONS, 0.0)
    counts: dict[str, int] = dict.fromkeys(REGIONS, 0)
    rejected = 0
    for row in extract_orders:
        try:
            amount = float(row["amount"])
        except ValueError:
            rejected += 1
            continue
        region = region_of[int(row["customer_id"])]
        totals[region] += amount
        counts[region] += 1
    return {
        "regions": {r: {"orders": counts[r], "total": round(totals[r], 2)} for r in REGIONS},
        "orders": sum(counts.values()),
        "rejected": rejected,
    }


@daily_etl.task(deps=[generate_inputs, transform], timeout_s=60)
def load(generate_inputs: dict[str, str], transform: dict[str, object]) -> str:
    out = work_dir() / "daily_totals.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"day": generate_inputs["day"], **transform}, indent=2), "utf-8")
    tmp.replace(out)  # atomic: a reader never sees half a file
    return str(out)


@daily_etl.task(deps=[generate_inputs, load], trigger="all_done")
def clean_up(generate_inputs: dict[str, str] | None, load: str | None) -> list[str]:
    """Remove the staged inputs, whatever happened to the load (None: it did not succeed)."""
    if generate_inputs is None:
        return []  # nothing was staged
    removed = []
    for key in ("orders", "customers"):
        path = Path(generate_inputs[key])
        if path.exists():
            path.unlink()
            removed.append(path.name)
    return removed
