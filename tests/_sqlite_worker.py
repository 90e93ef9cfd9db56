"""Subprocess side of the SQLite fault-injection tests (tests/test_sqlite_crash.py).

Usage: ``python _sqlite_worker.py MODE DB ...``

- ``crash DB LOG``: run the ``pipeline`` DAG; ``transform`` prints ``started <run_id>`` and
  blocks forever, so the parent can SIGKILL this process mid-run.
- ``resume DB LOG RUN_ID``: a fresh engine with the same tasks resumes ``RUN_ID``; prints the
  new run id.
- ``backoff DB LOG``: run the ``flaky`` DAG; ``fetch`` fails its first attempt and waits an hour
  to retry; on its ``TaskRetryEvent`` (hooks see a batch's events after the store flushed it)
  the worker prints ``backoff <run_id>``, so the parent can SIGKILL it during the back-off.
- ``resume-backoff DB LOG RUN_ID``: a fresh engine where ``fetch`` works resumes ``RUN_ID``;
  prints the new run id.
- ``many DB COUNT TAG``: print ``ready``, wait for a line on stdin, run the ``many`` DAG COUNT
  times (5 runs at a time), printing ``done <run_id> <index>`` after each run.
- ``commit-kill DB LOG``: run the ``pipeline`` DAG (``transform`` does not block); the group
  commit that would make ``audit`` SUCCESS stops inside its transaction (statements run, no
  COMMIT) and the worker prints ``in-commit <run_id>``, so the parent can SIGKILL it there.
- ``tagged DB``: run the ``tagged`` DAG on a store with the user serializer ``TaggedJson``;
  prints the run id (tests/test_serializers.py reads it back in the test process).

Every ``pipeline`` task appends its name to LOG when it executes, so the parent counts
executions across processes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from flowrun import (
    Engine,
    JsonSerializer,
    ResultSerializer,
    RunContext,
    SqliteStateStore,
    TaskRetryEvent,
    build_default_engine,
    fn_hook,
)


class TaggedJson(ResultSerializer):
    """A user's serializer written against the protocol only (serialize/deserialize, no name:
    its name is its ``__qualname__``, ``"TaggedJson"``): JSON behind a ``b"tag:"`` prefix."""

    decoded = 0  # deserialize calls in this process: proof the reader used this class

    def serialize(self, obj: Any) -> bytes:
        return b"tag:" + json.dumps(obj).encode()

    def deserialize(self, data: bytes) -> Any:
        if not data.startswith(b"tag:"):
            raise ValueError(f"not written by TaggedJson: {data[:20]!r}")
        TaggedJson.decoded += 1
        return json.loads(data[4:])


def pipeline(store: SqliteStateStore, log: str, block: bool) -> Engine:
    engine = build_default_engine(state_store=store)

    def executed(name: str) -> None:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")

    @engine.task(dag="pipeline")
    def extract() -> list[int]:
        executed("extract")
        return [1, 2, 3]

    @engine.task(dag="pipeline", deps=[extract])
    def audit(extract: list[int]) -> dict[str, int]:
        executed("audit")
        return {"rows": len(extract)}

    @engine.task(dag="pipeline", deps=[extract, audit])
    async def transform(context: RunContext[None], extract: list[int]) -> list[int]:
        executed("transform")
        if block:
            print(f"started {context.run_id}", flush=True)
            await asyncio.Event().wait()  # until SIGKILL
        return [x * 10 for x in extract]

    @engine.task(dag="pipeline", deps=[transform])
    def load(transform: list[int]) -> int:
        executed("load")
        return sum(transform)

    return engine


def flaky(store: SqliteStateStore, log: str, fail: bool) -> Engine:
    def announce(event: TaskRetryEvent) -> None:
        print(f"backoff {event.run_id}", flush=True)

    engine = build_default_engine(state_store=store, hooks=[fn_hook(on_task_retry=announce)])

    def executed(name: str) -> None:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")

    @engine.task(dag="flaky")
    def source() -> int:
        executed("source")
        return 2

    @engine.task(dag="flaky", deps=[source], retries=1, retry_delay_s=3600.0)
    def fetch(source: int) -> int:
        executed("fetch")
        if fail:
            raise ConnectionError("the API answered 503")
        return source * 21

    @engine.task(dag="flaky", deps=[fetch])
    def store_it(fetch: int) -> int:
        executed("store_it")
        return fetch

    return engine


def many(store: SqliteStateStore) -> Engine:
    engine = build_default_engine(state_store=store, max_parallel=8)

    @engine.task(dag="many")
    def source(context: RunContext[dict[str, Any]]) -> dict[str, Any]:
        return {"tag": context.deps["tag"], "index": context.deps["index"]}

    @engine.task(dag="many", deps=[source])
    async def double(source: dict[str, Any]) -> int:
        await asyncio.sleep(0)
        return int(source["index"]) * 2

    @engine.task(dag="many", deps=[source])
    def label(source: dict[str, Any]) -> str:
        return f"{source['tag']}-{source['index']}"

    @engine.task(dag="many", deps=[double, label])
    def combine(double: int, label: str) -> list[Any]:
        return [label, double]

    return engine


def tagged(store: SqliteStateStore) -> Engine:
    engine = build_default_engine(state_store=store)

    @engine.task(dag="tagged")
    def extract() -> tuple[list[dict[str, int]], list[str]]:
        return [{"id": 1}, {"id": 2}], ["row 3: bad date"]

    @engine.task(dag="tagged", deps=[extract])
    def count(extract: tuple[list[dict[str, int]], list[str]]) -> dict[int, str]:
        rows, errors = extract
        return {len(rows): "rows", len(errors): "errors"}

    return engine


async def run_many(engine: Engine, count: int, tag: str) -> None:
    async def one(index: int) -> None:
        run_id = await engine.run_once("many", RunContext({"tag": tag, "index": index}))
        print(f"done {run_id} {index}", flush=True)

    for start in range(0, count, 5):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 5, count))))


def stop_in_the_commit_of(task: str) -> None:
    """Make the writer stop, mid-transaction, in the group commit that writes ``task``
    SUCCESS: the statements have run, the COMMIT never comes."""
    import threading

    import flowrun.state.sqlite as sqlite_store

    write_runs = sqlite_store.write_runs  # type: ignore[attr-defined]

    def stopping(conn: Any, writes: list[Any]) -> Any:
        created = write_runs(conn, writes)
        for w in writes:
            names = {row.position: row.name for row in w.rows}
            updates = (*w.updates, *w.plain, *w.starts, *w.queued_starts, *w.ends)
            for update in updates:  # each ends with (run key, position)
                if update[0] == "SUCCESS" and names[update[-1]] == task:
                    print(f"in-commit {w.run.run_id}", flush=True)
                    threading.Event().wait()  # until SIGKILL, the transaction open
        return created

    sqlite_store.write_runs = stopping  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    mode, db = argv[0], argv[1]
    serializer = TaggedJson() if mode == "tagged" else JsonSerializer()
    with SqliteStateStore(db, serializer=serializer) as store:
        if mode == "crash":
            asyncio.run(pipeline(store, argv[2], block=True).run_once("pipeline"))
            return 1  # not reached: transform blocks until the process is killed
        if mode == "commit-kill":
            stop_in_the_commit_of("audit")
            asyncio.run(pipeline(store, argv[2], block=False).run_once("pipeline"))
            return 1  # not reached: the commit of audit's success never ends
        if mode == "resume":
            engine = pipeline(store, argv[2], block=False)
            print(asyncio.run(engine.resume(argv[3])), flush=True)
            return 0
        if mode == "backoff":
            asyncio.run(flaky(store, argv[2], fail=True).run_once("flaky"))
            return 1  # not reached: the back-off lasts an hour, the parent kills us first
        if mode == "resume-backoff":
            engine = flaky(store, argv[2], fail=False)
            print(asyncio.run(engine.resume(argv[3])), flush=True)
            return 0
        if mode == "many":
            engine = many(store)
            print("ready", flush=True)
            sys.stdin.readline()  # the parent starts every worker at once
            asyncio.run(run_many(engine, int(argv[2]), argv[3]))
            return 0
        if mode == "tagged":
            print(asyncio.run(tagged(store).run_once("tagged")), flush=True)
            return 0
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
