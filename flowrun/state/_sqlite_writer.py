"""The thread that owns a SQLite store's connection.

Every use of the connection runs here, one after another: the store's group commits and the
jobs of other threads (reads, tick claims, prune, vacuum). So the event loop never waits on the
disk or on another process's lock, and the order of writes is the order of the queue. Before
each batch of jobs the thread commits what the store has pending, so a read sees every
transition queued before it, from whichever thread asked.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ._sqlite_connection import Database

__all__ = ["Writer"]

T = TypeVar("T")

Job = tuple[Callable[[Database], Any], "Future[Any]"]


def _checkpoint(db: Database) -> None:
    """A passive checkpoint, failures ignored: the next one (or SQLite's own at close) moves
    the pages; nobody waits for this one."""
    with contextlib.suppress(Exception):
        db.checkpoint()


class Writer:
    """Runs jobs on the connection in one daemon thread; ``commit`` (the store's group
    commit) runs before every batch of jobs and whenever ``commit_soon`` asks for it, a
    checkpoint whenever ``checkpoint_soon`` asks for it and nothing else is to do.

    A daemon thread, so a store the user never closes does not keep the interpreter alive:
    the store's exit handler commits what is pending on the exiting thread instead.
    """

    def __init__(
        self, db: Database, commit: Callable[[], object], connections: threading.Lock
    ) -> None:
        self.db = db
        self._commit = commit
        self.connections = connections  # held while the store's connections write
        self.working = False  # jobs queued, or a batch of them (and its commit) in progress
        self._cv = threading.Condition(threading.Lock())
        self._jobs: list[Job] = []
        self._wanted = False  # a group commit was asked for
        self._checkpoint = False  # a checkpoint was asked for
        self._stopping = False
        self._thread = threading.Thread(
            target=self._serve, name=f"flowrun-sqlite-writer {db.path}", daemon=True
        )
        self._thread.start()

    @property
    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def commit_soon(self) -> None:
        """Ask for a group commit, without waiting for it."""
        with self._cv:
            if not self._wanted:
                self._wanted = True
                self._cv.notify()

    def checkpoint_soon(self) -> None:
        """Ask for a WAL checkpoint, without waiting for it. It runs on this thread's own
        connection and neither holds ``connections`` nor counts as ``working``: the caller's
        own commits go on meanwhile (a passive checkpoint never blocks a writer). Were it a
        job, every commit asked for while it syncs would go to this thread, and while the
        event loop is busy each of them waits on the GIL for milliseconds (a convoy that
        lasts as long as the loop stays busy)."""
        with self._cv:
            if not self._checkpoint:
                self._checkpoint = True
                self._cv.notify()

    def call(self, job: Callable[[Database], T]) -> T:
        """Run ``job(db)`` on the writer after committing what is pending, and wait for it.
        On the writer's own thread (or once it stopped: at exit), run it here."""
        if self.on_thread:  # a job of this thread's: it holds ``connections`` already
            self._commit()
            return job(self.db)
        if not self._thread.is_alive():
            with self.connections:
                self._commit()
                return job(self.db)
        return self.submit(job).result()

    def submit(self, job: Callable[[Database], T]) -> Future[T]:
        """Queue ``job(db)`` for the writer (after a group commit); its future."""
        future: Future[T] = Future()
        with self._cv:
            if self._stopping:
                raise RuntimeError("the state store's writer has stopped")
            self._jobs.append((job, future))
            self.working = True
            self._cv.notify()
        return future

    def stop(self) -> None:
        """Let the thread finish what is queued, then end it."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if not self.on_thread:
            self._thread.join()

    def _serve(self) -> None:
        cv = self._cv
        while True:
            with cv:
                while not (self._jobs or self._wanted or self._stopping or self._checkpoint):
                    cv.wait()
                only_checkpoint = not (self._jobs or self._wanted or self._stopping)
                if only_checkpoint:
                    self._checkpoint = False
                else:
                    jobs, self._jobs = self._jobs, []
                    self._wanted = False
                    stopping = self._stopping
                    self.working = True
            if only_checkpoint:
                _checkpoint(self.db)
                continue
            with self.connections:
                self._run(jobs)
            with cv:
                self.working = bool(self._jobs)
            if stopping and not self._jobs:
                return

    def _run(self, jobs: list[Job]) -> None:
        error: BaseException | None = None
        try:
            self._commit()  # delivers its own failure to whoever waits for it
        except BaseException as exc:  # handed to the jobs below, which need the commit
            error = exc
        for job, future in jobs:
            if error is not None:
                future.set_exception(error)
                continue
            try:
                future.set_result(job(self.db))
            except BaseException as exc:  # the caller re-raises it
                future.set_exception(exc)
