"""API ingest: paged JSON from an HTTP API, async, with retries and back-off, into SQLite.

    flowrun run examples/api_ingest.py

The DAG's default context, ``local_api`` (``engine.dag("api_ingest", context=local_api)``),
starts a small JSON API on 127.0.0.1 (standard library ``http.server``, on a port the OS
picks) for the duration of each run, and stops it afterwards. It announces how many pages
of orders it has at ``/orders/pages`` and serves them at ``/orders?page=N``; page 3 answers
``503 Service Unavailable`` to its first two requests, so its instance succeeds on attempt 3
after 0.05 s and 0.1 s of back-off. The orders are then cleaned and loaded into
``.flowrun/api_ingest/warehouse.sqlite`` under the current directory (``API_INGEST_DIR`` to
choose another directory).

    list_pages --> fetch_page[1..N] --> transform --> load

``fetch_page`` is mapped over the pages ``list_pages`` found (``map={"page": list_pages}``):
one instance per page, however many the API announces, each with its own retries, and at most
two talking to the API at once (``engine.pool("orders_api", slots=2)``).

Against a real API, pass ``--context`` a factory of yours that returns
``RunContext(Source(base_url))``: an explicit context wins over the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flowrun import RunContext, build_default_engine

PAGES = 4
PAGE_SIZE = 25
FLAKY_PAGE = 3  # fails FLAKY_FAILURES times before it answers
FLAKY_FAILURES = 2


@dataclass(frozen=True)
class Source:
    base_url: str


# -- the local API ---------------------------------------------------------------------------
def _order(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "customer": f"  Customer {n % 7} ",  # messy on purpose: transform strips it
        "amount_cents": (n * 7919) % 50_000,
        "currency": "EUR" if n % 3 else "eur",
    }


class _OrdersHandler(BaseHTTPRequestHandler):
    server: _OrdersServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/orders/pages":
            self._send(200, {"pages": PAGES})
            return
        page = int(parse_qs(url.query).get("page", ["1"])[0])
        if url.path != "/orders" or not 1 <= page <= PAGES:
            self._send(404, {"error": "not found"})
            return
        if page == FLAKY_PAGE and self.server.flaky_left > 0:
            self.server.flaky_left -= 1
            self._send(503, {"error": "try again"})
            return
        first = (page - 1) * PAGE_SIZE + 1
        items = [_order(n) for n in range(first, first + PAGE_SIZE)]
        self._send(200, {"page": page, "pages": PAGES, "items": items})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the run's output clean


class _OrdersServer(ThreadingHTTPServer):
    flaky_left = FLAKY_FAILURES


@contextlib.contextmanager
def local_api() -> Iterator[RunContext[Source]]:
    """Serve the orders API on 127.0.0.1 for as long as the run lasts."""
    server = _OrdersServer(("127.0.0.1", 0), _OrdersHandler)  # port 0: the OS picks a free one
    thread = threading.Thread(target=server.serve_forever, name="orders-api", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield RunContext(Source(base_url=f"http://{host!s}:{port}"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


engine = build_default_engine(max_parallel=4)
engine.pool("orders_api", slots=2)  # the API allows two requests at a time
api_ingest = engine.dag("api_ingest", context=local_api)  # every run without a context uses it


# -- an async HTTP GET on asyncio streams ----------------------------------------------------
class HttpError(Exception):
    pass


async def get_json(url: str, timeout_s: float = 5.0) -> Any:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise HttpError(f"GET {target} answered {status}")
    return json.loads(body)


# -- the pipeline ----------------------------------------------------------------------------
def _source(context: RunContext[Source]) -> Source:
    if not isinstance(context.deps, Source):
        raise RuntimeError(
            f"no API to read from: the run's context holds {context.deps!r}; give it "
            "RunContext(Source(base_url)) (the DAG's default, local_api, does)"
        )
    return context.deps


@api_ingest.task(retries=3, retry_delay_s=0.05, retry_on=(HttpError, OSError, TimeoutError))
async def list_pages(context: RunContext[Source]) -> list[int]:
    data = await get_json(f"{_source(context).base_url}/orders/pages")
    return list(range(1, int(data["pages"]) + 1))


@api_ingest.task(
    map={"page": list_pages},
    map_key=str,  # instances fetch_page[1], fetch_page[2], ...
    pool="orders_api",
    retries=3,
    retry_delay_s=0.05,
    retry_backoff=2.0,
    retry_on=(HttpError, OSError, TimeoutError),
    timeout_s=10,
)
async def fetch_page(context: RunContext[Source], page: int) -> list[dict[str, Any]]:
    data = await get_json(f"{_source(context).base_url}/orders?page={page}")
    items: list[dict[str, Any]] = data["items"]
    return items


@api_ingest.task(deps=[fetch_page])
def transform(fetch_page: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for page in fetch_page:  # the pages' items, in page order
        for item in page:
            rows.append(
                {
                    "id": item["id"],
                    "customer": " ".join(item["customer"].split()),
                    "amount": item["amount_cents"] / 100,
                    "currency": item["currency"].upper(),
                }
            )
    return rows


def warehouse_path() -> Path:
    folder = Path(os.environ.get("API_INGEST_DIR", os.path.join(".flowrun", "api_ingest")))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "warehouse.sqlite"


@api_ingest.task(deps=[transform])
def load(transform: list[dict[str, Any]]) -> dict[str, Any]:
    path = warehouse_path()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT, "
            "amount REAL, currency TEXT)"
        )
        conn.executemany(  # idempotent: a re-run or a resume loads the same rows again
            "INSERT OR REPLACE INTO orders VALUES (:id, :customer, :amount, :currency)",
            transform,
        )
        (count,) = conn.execute("SELECT count(*) FROM orders").fetchone()
    return {"database": str(path), "loaded": len(transform), "rows_in_table": count}
