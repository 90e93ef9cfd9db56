"""The product description's quick start: extract -> transform -> load on one engine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from flowrun import RunContext, build_default_engine

engine = build_default_engine(max_workers=4, max_parallel=3)


@dataclass(frozen=True)
class Deps:
    source_path: str


@engine.task(name="extract", dag="daily_etl")
def extract(context: RunContext[Deps]) -> list[dict[str, int]]:
    # In real jobs, read from context.source_path (a file, an API, a database).
    return [{"id": 1, "amount": 10}, {"id": 2, "amount": 15}]


@engine.task(name="transform", dag="daily_etl", deps=[extract])
def transform(extract: list[dict[str, int]]) -> dict[str, int]:
    total = sum(row["amount"] for row in extract)
    return {"rows": len(extract), "total": total}


@engine.task(name="load", dag="daily_etl", deps=[transform])
def load(transform: dict[str, int]) -> str:
    return f"loaded rows={transform['rows']} total={transform['total']}"


async def main() -> dict[str, object]:
    ctx = RunContext(Deps(source_path="/tmp/data.json"))
    async with engine:
        engine.validate("daily_etl")
        run_id = await engine.run_once("daily_etl", context=ctx)
        report = engine.get_run_report(run_id)
    print(engine.display_dag("daily_etl"))
    for name, task in report["tasks"].items():
        print(f"{name:10} {task['status']:8} result={task['result']!r}")
    print(report["status"])  # SUCCESS | FAILED | RUNNING
    return report


if __name__ == "__main__":
    asyncio.run(main())
