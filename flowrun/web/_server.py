"""The web view's HTTP server: the standard library's ``ThreadingHTTPServer`` on a daemon
thread, a handful of read-only JSON endpoints, the run's SVG, and one static page.

Routes (``GET`` and ``HEAD`` only; anything else is 405):

- ``/``, ``/runs/<run_id>``, ``/dags/<dag>``: the page (``static/index.html``), which
  reads the API; an unknown run or DAG answers 404 (the page then shows the API's message).
- ``/api/runs?dag=&status=&limit=``: runs newest first; ``/api/dags``: the DAG names.
- ``/api/runs/<run_id>``: the run with its tasks; ``/api/runs/<run_id>/svg``: its DAG.
- ``/api/dags/<dag>/grid?limit=``: the last runs of a DAG by task.
- ``/static/<file>``: ``index.html``, ``app.js``, ``app.css``.

Every response forbids inline scripts (``Content-Security-Policy``) as a second line of
defence behind escaping, and API answers are never cached, so a polling page sees each change.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..state.memory import InMemoryStateStore
from ..state.sqlite import SCHEMA_VERSION, SqliteStateStore, StateDatabaseError
from . import _data
from ._data import STATUSES, Store, UnknownError
from ._svg import render_run_svg, xml_text

__all__ = ["UiServer", "open_read_only", "start_ui"]

STATIC = ("index.html", "app.js", "app.css")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
DEFAULT_LIMIT = 50
GRID_LIMIT = 25
DAGS_TTL_S = 10.0  # the DAG names (the runs page's filter) are gathered at most this often


class BadRequest(ValueError):
    """A query parameter the API cannot use: 400 with this message."""


def open_read_only(path: str | Path) -> SqliteStateStore:
    """A store on an existing flowrun database that this process will only read.

    Checked first through a read-only SQLite connection (``mode=ro``), so that opening never
    creates a file, never writes a new schema into an empty one and never migrates an old
    one: those would be writes. The store itself is then only asked for summaries."""
    file = Path(path).resolve()
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "does not exist"
        raise StateDatabaseError(
            f"flowrun state database '{file}' {what}; pass --db with the file your runs "
            "write (flowrun ui never creates one)",
            path=str(file),
        )
    try:
        conn = sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise StateDatabaseError(
            f"flowrun state database '{file}' cannot be read ({error}); flowrun left it untouched",
            path=str(file),
        ) from error
    if version == 0:
        raise StateDatabaseError(
            f"flowrun state database '{file}' is not a flowrun state database (no schema "
            "version); flowrun left it untouched",
            path=str(file),
        )
    if version < SCHEMA_VERSION:
        raise StateDatabaseError(
            f"flowrun state database '{file}' has schema version {version}, older than this "
            f"flowrun's {SCHEMA_VERSION}; the web view does not upgrade it (that is a write): "
            f"run `flowrun runs --db {file}` once, then start the view again",
            path=str(file),
        )
    return SqliteStateStore(file)  # a newer schema is refused here, before any write


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    content_type: str
    body: bytes
    cache: bool = False


_JSON_HTML = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _json(status: int, payload: Any) -> _Response:
    """JSON with ``<``, ``>`` and ``&`` as ``\\u`` escapes (they only occur in strings), so
    the body reads as no HTML even to a client that mistakes it for a page."""
    text = json.dumps(payload, allow_nan=False, separators=(",", ":"))
    return _Response(status, "application/json", text.translate(_JSON_HTML).encode())


def _error_page(status: int, message: str) -> _Response:
    text = xml_text(message)
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>flowrun: {status}</title></head><body><h1>{status}</h1>"
        f'<p class="error">{text}</p><p><a href="/">All runs</a></p></body></html>'
    )
    return _Response(status, _TYPES[".html"], body.encode())


def _limit(query: dict[str, list[str]], default: int) -> int:
    raw = query.get("limit", [str(default)])[-1]
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(
            f"'limit' must be an integer from 1 to {_data.MAX_LIMIT} (got {raw!r})"
        ) from None
    if not 1 <= value <= _data.MAX_LIMIT:
        raise BadRequest(f"'limit' must be an integer from 1 to {_data.MAX_LIMIT} (got {value})")
    return value


def _optional(query: dict[str, list[str]], key: str) -> str | None:
    value = query.get(key, [""])[-1]
    return value or None


class _App:
    """The routes over one store; ``_lock`` keeps one reader at a time on it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._dags: tuple[float, list[str]] | None = None  # (expires at, names)
        self._static = {
            name: (resources.files(__package__) / "static" / name).read_bytes() for name in STATIC
        }

    def handle(self, raw_path: str) -> _Response:
        split = urlsplit(raw_path)
        parts = [unquote(p) for p in split.path.split("/")[1:]]
        query = parse_qs(split.query)
        api = bool(parts) and parts[0] == "api"
        try:
            with self._lock:
                return self._route(parts, query)
        except UnknownError as error:
            return _json(404, {"error": error.message}) if api else self._page(404)
        except BadRequest as error:  # only the API reads query parameters
            return _json(400, {"error": str(error)})
        except StateDatabaseError as error:
            return _json(503, {"error": str(error)}) if api else _error_page(503, str(error))

    def _page(self, status: int = 200) -> _Response:
        return _Response(status, _TYPES[".html"], self._static["index.html"])

    def _route(self, parts: list[str], query: dict[str, list[str]]) -> _Response:
        now = time.time()
        store = self.store
        match parts:
            case [""]:
                return self._page()
            case ["runs", run_id]:
                _data.load(store, run_id)  # 404 for an unknown id
                return self._page()
            case ["dags", dag]:
                _data.known_dag(store, dag)
                return self._page()
            case ["static", name] if name in self._static:
                kind = _TYPES[Path(name).suffix]
                return _Response(200, kind, self._static[name], cache=True)
            case ["api", "runs"]:
                status = _optional(query, "status")
                if status is not None and status.upper() not in STATUSES:
                    raise BadRequest(
                        f"unknown run status {status!r}; choose one of {', '.join(STATUSES)}"
                    )
                runs = _data.run_list(
                    store,
                    _optional(query, "dag"),
                    None if status is None else status.upper(),
                    _limit(query, DEFAULT_LIMIT),
                    now,
                )
                return _json(200, {"runs": runs, "now": now})
            case ["api", "dags"]:
                if self._dags is None or self._dags[0] < now:  # a scan of many runs: cached
                    self._dags = (now + DAGS_TTL_S, _data.dag_names(store))
                return _json(200, {"dags": self._dags[1]})
            case ["api", "runs", run_id]:
                return _json(200, _data.run_detail(_data.load(store, run_id), now))
            case ["api", "runs", run_id, "svg"]:
                detail = _data.run_detail(_data.load(store, run_id), now)
                title = f"DAG {detail['dag_name']}, run {run_id}: {detail['status']}"
                svg = render_run_svg(detail["tasks"], title)
                return _Response(200, "image/svg+xml; charset=utf-8", svg.encode())
            case ["api", "dags", dag, "grid"]:
                return _json(200, _data.dag_grid(store, dag, _limit(query, GRID_LIMIT), now))
        path = "/" + "/".join(parts)
        message = (
            f"no such page: {path!r}; the pages are /, /runs/<run_id> and /dags/<dag>, the "
            "API is under /api/runs and /api/dags"
        )
        return _json(404, {"error": message}) if parts[:1] == ["api"] else _error_page(404, message)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "flowrun-ui"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _refuse(self) -> None:
        response = _json(
            405, {"error": f"{self.command} is not allowed: the web view is read-only"}
        )
        self._send(response, body=True, extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _answer(self, body: bool) -> None:
        try:
            response = self.server.app.handle(self.path)
        except Exception as error:  # a bug or a broken file: say so rather than hang up
            message = f"internal error: {type(error).__name__}: {error}"
            response = _json(500, {"error": message})
        self._send(response, body)

    def _send(self, response: _Response, body: bool, extra: dict[str, str] | None = None) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "max-age=60" if response.cache else "no-store")
        for key, value in {**_SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a page polling every second would fill the terminal."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: _App


class UiServer:
    """A running web view. ``url`` is where it answers; ``close()`` stops it (and closes the
    store it opened itself; a store passed in stays the caller's). A context manager."""

    def __init__(self, httpd: _HTTPServer, store: Store, owned: SqliteStateStore | None) -> None:
        self._httpd = httpd
        self.store = store
        self._owned = owned
        self.host, self.port = str(httpd.server_address[0]), int(httpd.server_address[1])
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}/"
        self._thread = threading.Thread(
            target=httpd.serve_forever, name=f"flowrun-ui:{self.port}", daemon=True
        )
        self._thread.start()
        self._closed = False

    def close(self) -> None:
        """Stop answering, wait for the server thread, close an owned store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> UiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"UiServer({self.url!r})"


def start_ui(
    store_or_db_path: Store | str | Path, host: str = "127.0.0.1", port: int = 8765
) -> UiServer:
    """Serve the web view of a state database on ``host:port`` (``port=0``: any free port; see
    ``url``), on a daemon thread; returns at once. A path is opened read-only
    (``open_read_only``) and closed with the server; a store is read as it is, for a process
    that is also writing it (``flowrun serve --ui``)."""
    store: Store
    owned: SqliteStateStore | None = None
    if isinstance(store_or_db_path, (InMemoryStateStore, SqliteStateStore)):
        store = store_or_db_path
    else:
        store = owned = open_read_only(store_or_db_path)
    try:
        httpd = _HTTPServer((host, port), _Handler)
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    httpd.app = _App(store)
    return UiServer(httpd, store, owned)
