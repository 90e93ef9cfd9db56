"""Weekly report: waits for the warehouse to settle, then summarises it."""

from __future__ import annotations

import asyncio

from flowrun import build_default_engine

engine = build_default_engine()


@engine.task(dag="weekly_report", timeout_s=3600)
async def settle() -> None:
    await asyncio.sleep(15 * 60)  # on virtual time in tests: instant


@engine.task(dag="weekly_report", deps=[settle])
def summary() -> dict[str, int]:
    return {"rows": 3}
