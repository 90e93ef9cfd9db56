"""A Polars pipeline: a large frame that is never stored, small summaries that are.

    python -m pip install -e ".[examples]"    # installs polars
    flowrun run examples/polars_pipeline.py

``events`` builds a frame of ``POLARS_ROWS`` rows (default 500 000) and ``clean`` filters it;
both set ``retain_result=False``, so the frames are handed from task to task in memory and
dropped as soon as their consumers are done: they are never written to the state store (a
DataFrame is not JSON anyway). The summaries (plain lists of dicts) are retained, and
``write_report`` writes them as CSV under ``.flowrun/polars_pipeline/`` in the current
directory (``POLARS_PIPELINE_DIR`` to choose another directory).

    events --> clean --+--> daily_revenue --+
                       +--> top_customers --+--> write_report
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

try:
    import polars as pl
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "examples/polars_pipeline.py needs Polars: python -m pip install 'flowrun-dag[examples]'"
    ) from exc

from flowrun import build_default_engine

engine = build_default_engine(max_parallel=2)
polars_pipeline = engine.dag("polars_pipeline")


def out_dir() -> Path:
    default = os.path.join(".flowrun", "polars_pipeline")
    path = Path(os.environ.get("POLARS_PIPELINE_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


@polars_pipeline.task(retain_result=False)
def events() -> pl.DataFrame:
    rows = int(os.environ.get("POLARS_ROWS", "500000"))
    ids = pl.int_range(0, rows, eager=True)
    return pl.DataFrame(
        {
            "event_id": ids,
            "customer_id": ids % 1_000,
            "day": (ids % 30) + 1,
            "amount_cents": (ids * 7_919) % 100_000 - 1_000,  # a few refunds (< 0)
        }
    )


@polars_pipeline.task(deps=[events], retain_result=False)
def clean(events: pl.DataFrame) -> pl.DataFrame:
    return events.filter(pl.col("amount_cents") > 0).with_columns(
        (pl.col("amount_cents") / 100).alias("amount"),
        pl.format("2024-06-{}", pl.col("day").cast(pl.String).str.zfill(2)).alias("date"),
    )


@polars_pipeline.task(deps=[clean])
def daily_revenue(clean: pl.DataFrame) -> list[dict[str, Any]]:
    frame = (
        clean.group_by("date")
        .agg(pl.len().alias("orders"), pl.col("amount").sum().round(2).alias("revenue"))
        .sort("date")
    )
    return frame.to_dicts()


@polars_pipeline.task(deps=[clean])
def top_customers(clean: pl.DataFrame) -> list[dict[str, Any]]:
    frame = (
        clean.group_by("customer_id")
        .agg(pl.col("amount").sum().round(2).alias("revenue"))
        .sort(["revenue", "customer_id"], descending=[True, False])
        .head(10)
    )
    return frame.to_dicts()


@polars_pipeline.task(deps=[daily_revenue, top_customers])
def write_report(
    daily_revenue: list[dict[str, Any]], top_customers: list[dict[str, Any]]
) -> dict[str, Any]:
    folder = out_dir()
    pl.DataFrame(daily_revenue).write_csv(folder / "daily_revenue.csv")
    pl.DataFrame(top_customers).write_csv(folder / "top_customers.csv")
    return {
        "days": len(daily_revenue),
        "revenue": round(sum(row["revenue"] for row in daily_revenue), 2),
        "files": [str(folder / "daily_revenue.csv"), str(folder / "top_customers.csv")],
    }
