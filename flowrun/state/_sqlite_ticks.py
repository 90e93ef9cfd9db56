"""Schedule ticks in the ``ticks`` table (schema version 6). Each function runs inside the
store's transaction; a claim is written at once, not with the run's batched transitions, so a
second server on the file sees it before it could claim the same tick."""

from __future__ import annotations

import sqlite3

from .records import TickRecord

__all__ = ["insert_tick", "select_ticks", "update_tick"]

_COLUMNS = "schedule, due_at, dag, outcome, run_id, reason, recorded_at"


def _values(tick: TickRecord) -> tuple[object, ...]:
    return (
        tick.schedule,
        tick.due_at,
        tick.dag,
        tick.outcome,
        tick.run_id,
        tick.reason,
        tick.recorded_at,
    )


def insert_tick(conn: sqlite3.Connection, tick: TickRecord) -> bool:
    """Claim ``tick``: True if this call wrote it, False if its (schedule, due_at) exists."""
    cursor = conn.execute(
        f"INSERT OR IGNORE INTO ticks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", _values(tick)
    )
    return cursor.rowcount == 1


def update_tick(conn: sqlite3.Connection, tick: TickRecord) -> None:
    cursor = conn.execute(
        "UPDATE ticks SET dag = ?, outcome = ?, run_id = ?, reason = ?, recorded_at = ? "
        "WHERE schedule = ? AND due_at = ?",
        (*_values(tick)[2:], tick.schedule, tick.due_at),
    )
    if cursor.rowcount != 1:
        raise KeyError(f"no tick of schedule {tick.schedule!r} due at {tick.due_at!r}")


def select_ticks(
    conn: sqlite3.Connection, schedule: str | None, limit: int | None
) -> list[TickRecord]:
    """Newest due time first."""
    query = f"SELECT {_COLUMNS} FROM ticks"
    params: list[object] = []
    if schedule is not None:
        query += " WHERE schedule = ?"
        params.append(schedule)
    query += " ORDER BY due_at DESC, schedule DESC"
    if limit is not None:
        query += " LIMIT ?"
        params.append(limit)
    return [TickRecord(*row) for row in conn.execute(query, params)]
