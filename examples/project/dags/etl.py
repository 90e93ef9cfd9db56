"""Daily ETL: extract rows from an API, clean them, load them into a warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowrun import RunContext, build_default_engine

engine = build_default_engine()
etl = engine.dag("etl")


@dataclass
class Deps:
    api_rows: list[dict[str, Any]]
    warehouse: list[dict[str, Any]] = field(default_factory=list)


@etl.task(retries=3, retry_delay_s=30)
async def extract(context: RunContext[Deps]) -> list[dict[str, Any]]:
    return list(context.deps.api_rows)


@etl.task(deps=[extract])
def transform(extract: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "name": row["name"].strip().title()} for row in extract if row.get("name")]


@etl.task(deps=[transform], timeout_s=600)
def load(transform: list[dict[str, Any]], context: RunContext[Deps]) -> int:
    context.deps.warehouse.extend(transform)
    return len(transform)
