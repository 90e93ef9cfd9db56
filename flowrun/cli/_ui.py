"""``flowrun ui``: serve the web view of the state database until Ctrl-C; and the same view
started inside ``flowrun serve --ui``."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from ..state.sqlite import SqliteStateStore
from ..web import UiServer, start_ui
from ._store import MEMORY_DB, Store, db_path
from ._target import UsageError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "add_ui_command", "cmd_ui", "port_number", "serve_ui"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def add_ui_command(sub: Any) -> None:
    p = sub.add_parser(
        "ui",
        help="a read-only web view of the runs in the database (until Ctrl-C)",
        description="Serve a web view of the state database: the runs, each run's DAG, "
        "timeline and tasks, and a grid of each DAG's last runs. It only reads the database. "
        f"It listens on {DEFAULT_HOST} (this machine only) unless --host says otherwise.",
    )
    p.add_argument(
        "--db",
        metavar="PATH",
        help="state database (default: $FLOWRUN_DB or .flowrun/flowrun.sqlite)",
    )
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 shares every run's "
        "errors and tracebacks with the network, without a login)",
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0: any free port, printed)",
    )
    p.set_defaults(handler=cmd_ui)


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535 (got {value})")
    return value


def _start(source: Store | str, host: str, port: int) -> UiServer:
    try:
        return start_ui(source, host, port)
    except OSError as error:  # the port is taken, the address is not this machine's, ...
        raise UsageError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); choose another "
            "--port (0 picks a free one) or --host"
        ) from None


def _local_only(host: str) -> bool:
    """``host`` is the address the server bound (an IP address, never a name)."""
    return ipaddress.ip_address(host).is_loopback


def announce(ui: UiServer, db: str, out: TextIO, err: TextIO) -> None:
    """Where the view is, that it is read-only, and who can reach it."""
    print(f"flowrun ui: {ui.url} (database {db}, read-only)", file=out, flush=True)
    if _local_only(ui.host):
        print(
            f"flowrun ui: listening on {ui.host} only: other machines cannot reach it",
            file=out,
            flush=True,
        )
    else:
        print(
            f"flowrun ui: warning: listening on {ui.host}: anyone who can reach this machine "
            f"on port {ui.port} can read every run, error and traceback in {db}, without a "
            f"login; the default --host {DEFAULT_HOST} keeps it to this machine",
            file=err,
            flush=True,
        )


def cmd_ui(args: argparse.Namespace) -> int:
    path = db_path(args)
    if path == MEMORY_DB:
        raise UsageError(
            "flowrun ui reads a database file; ':memory:' holds no runs another process can "
            "read (flowrun serve --ui shows the runs of its own in-memory database)"
        )
    stop = threading.Event()
    with _stopped_by_signals(stop):  # before the address is printed: a client may stop it then
        ui = _start(path, args.host, args.port)
        try:
            shown = ui.store.path if isinstance(ui.store, SqliteStateStore) else path
            announce(ui, shown, sys.stdout, sys.stderr)
            print("flowrun ui: Ctrl-C or SIGTERM to stop", flush=True)
            stop.wait()
        finally:
            ui.close()
    print("flowrun ui: stopped", flush=True)
    return 0


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop``: stopping the view is its normal end (exit 0)."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def serve_ui(args: argparse.Namespace, store: Store) -> UiServer:
    """The view inside ``flowrun serve --ui``, on 127.0.0.1: a database file is read by a
    store of its own (read-only, as ``flowrun ui`` reads it), ``:memory:`` through the
    server's store, the only one that holds its runs."""
    path = db_path(args)
    ui = _start(store if path == MEMORY_DB else path, DEFAULT_HOST, args.ui_port)
    announce(ui, path, sys.stdout, sys.stderr)
    return ui
