"""The engine's own thread pool: a ThreadPoolExecutor whose workers are daemon threads."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import CancelledError

import pytest

from flowrun._threads import DaemonThreadPool


def test_runs_calls_and_reports_results_and_exceptions() -> None:
    pool = DaemonThreadPool(2, thread_name_prefix="p")
    try:
        assert pool.submit(pow, 2, 10).result(5) == 1024
        assert pool.submit(threading.current_thread).result(5).name.startswith("p_")
        assert pool.submit(threading.current_thread).result(5).daemon
        with pytest.raises(ZeroDivisionError):
            pool.submit(divmod, 1, 0).result(5)
        assert list(pool.map(abs, [-1, -2])) == [1, 2]
    finally:
        pool.shutdown()


def test_never_more_threads_than_max_workers() -> None:
    pool = DaemonThreadPool(2)
    release = threading.Event()
    names: set[str] = set()
    lock = threading.Lock()

    def blocked() -> None:
        with lock:
            names.add(threading.current_thread().name)
        release.wait(10)

    futures = [pool.submit(blocked) for _ in range(5)]
    release.set()
    for future in futures:
        future.result(10)
    pool.shutdown()
    assert 1 <= len(names) <= 2


def test_shutdown_cancels_queued_work_and_refuses_new_work() -> None:
    pool = DaemonThreadPool(1)
    release = threading.Event()
    running = pool.submit(release.wait, 10)
    queued = pool.submit(pow, 2, 2)
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.submit(pow, 2, 2)
    assert queued.cancelled()
    with pytest.raises(CancelledError):
        queued.result(1)
    release.set()
    assert running.result(10) is True
    pool.shutdown(wait=True)


def test_bad_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'max_workers' must be >= 1 \(got 0\)"):
        DaemonThreadPool(0)


def test_a_blocked_worker_does_not_keep_the_interpreter_alive() -> None:
    script = (
        "import threading\n"
        "from flowrun._threads import DaemonThreadPool\n"
        "pool = DaemonThreadPool(1)\n"
        "started = threading.Event()\n"
        "pool.submit(lambda: (started.set(), threading.Event().wait()))\n"
        "started.wait(10)\n"
        "print('done')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "done"
