"""``ExecutorContract``: the pytest suite any ``concurrent.futures.Executor`` given to an
engine must pass (task functions at module level here, so workers import them)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, TypeVar

from .._context import RunContext
from .._engine import Engine
from .._hooks import (
    TaskRetryEvent,
)
from .._render import format_report
from ._recording import RecordingHook
from ._runs import run_dag

T = TypeVar("T")


def _contract_numbers() -> list[int]:
    return [1, 2, 3]


def _contract_total(numbers: list[int]) -> int:
    return sum(numbers)


def _contract_fail(message: str) -> None:
    raise ValueError(message)


def _contract_count(upstream: Mapping[str, Any]) -> int:  # pragma: no cover - skipped
    return len(upstream)


def _contract_flaky(context: RunContext[Any]) -> int:
    if context.attempt < 2:
        raise ConnectionError(f"attempt {context.attempt} of {context.task_name!r} lost")
    return context.attempt


def _contract_hold(release: str, finished: str, limit_s: float) -> str:
    """Block until the file ``release`` exists (at most ``limit_s``), then write ``finished``:
    a task that is still running for as long as the test wants, with no timing involved."""
    deadline = time.monotonic() + limit_s
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    partial = f"{finished}.{os.getpid()}.tmp"
    with open(partial, "w", encoding="utf-8") as out:
        out.write("released" if os.path.exists(release) else "gave up")
    os.replace(partial, finished)  # atomic: a reader never sees it half written
    return "woke up"


def _wait_for_file(path: str, limit_s: float) -> str | None:
    deadline = time.monotonic() + limit_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
    with open(path, encoding="utf-8") as file:
        return file.read()


def _contract_spin(seconds: float) -> float:
    """Pure-Python work for ``seconds`` of this process's CPU time or less."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


def _contract_blob(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


def _contract_size(blob: bytes) -> int:
    return len(blob)


def _contract_lock() -> Any:
    return threading.Lock()


def _contract_meet(barrier: Any, who: str) -> str:
    barrier.wait()  # both tasks must be running at once for either to get past this
    return who


class _CountingExecutor(Executor):
    """Forwards to ``inner`` and records the largest number of calls in flight at once."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        future = self.inner.submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self.in_flight -= 1


class ExecutorContract:
    """What any ``concurrent.futures.Executor`` given to ``build_default_engine(executor=...)``
    must do for sync tasks, as a class-based pytest suite. Plug an executor in by subclassing
    it in a test module that provides an ``executor`` fixture (at least 2 workers)::

        @pytest.fixture(scope="module")
        def executor():
            with ProcessPoolExecutor(2) as pool:
                yield pool

        class TestMyPool(ExecutorContract):
            pickles = True  # False if the executor runs calls in this process (threads)

    The class name does not start with ``Test``, so pytest collects only the subclasses. The
    task functions are module-level functions of ``flowrun.testing._contract``, which workers
    must be able to import. Each test builds its own engine on real time; none closes the executor.
    """

    pickles: bool = True
    """Whether the executor pickles calls and results (processes, Dask) or not (threads)."""

    timeout_s: float = 0.3
    """The timeout of the task that the timeout test holds running until the run is over."""

    hold_limit_s: float = 60.0
    """How long the timeout test's task waits to be released at most (its marker files must
    be on a file system the workers share with the test, as on one machine)."""

    def engine(self, executor: Executor, **options: Any) -> Engine:
        from .._engine import build_default_engine

        return build_default_engine(executor=executor, **options)

    def run(self, engine: Engine, dag: str, **options: Any) -> dict[str, Any]:
        from .._clock import SystemClock

        return run_dag(engine, dag, clock=SystemClock(), **options)

    def test_results_flow_downstream(self, executor: Executor) -> None:
        engine = self.engine(executor)
        engine.task(name="numbers", dag="flow")(_contract_numbers)
        engine.task(name="total", dag="flow", deps=["numbers"])(_contract_total)
        report = self.run(engine, "flow")
        assert report["status"] == "SUCCESS", format_report(report)
        assert report["tasks"]["numbers"]["result"] == [1, 2, 3]
        assert report["tasks"]["total"]["result"] == 6

    def test_failure_keeps_the_exception_type(self, executor: Executor) -> None:
        engine = self.engine(executor)
        engine.task_template(_contract_fail, dag="fail").bind("broken", message="bad row 42")
        engine.task(name="after", dag="fail", deps=["broken"])(_contract_count)
        report = self.run(engine, "fail")
        broken = report["tasks"]["broken"]
        assert report["status"] == "FAILED"
        assert broken["status"] == "FAILED"
        assert broken["error"] == "ValueError: bad row 42"
        assert "bad row 42" in broken["traceback"]
        assert report["tasks"]["after"]["status"] == "SKIPPED"

    def test_retries(self, executor: Executor) -> None:
        hook = RecordingHook()
        engine = self.engine(executor, hooks=[hook])
        engine.task(name="flaky", dag="retry", retries=1)(_contract_flaky)
        report = self.run(engine, "retry")
        flaky = report["tasks"]["flaky"]
        assert flaky["status"] == "SUCCESS", format_report(report)
        assert flaky["attempt"] == 2
        assert flaky["result"] == 2
        (retry,) = hook.of(TaskRetryEvent)
        assert retry.error == "ConnectionError: attempt 1 of 'flaky' lost"

    def test_timeout_fails_the_attempt_without_waiting_for_it(
        self, executor: Executor, tmp_path: Path
    ) -> None:
        release, finished = tmp_path / "release", tmp_path / "finished"
        engine = self.engine(executor)
        engine.task_template(_contract_hold, dag="slow", timeout_s=self.timeout_s).bind(
            "nap", release=str(release), finished=str(finished), limit_s=self.hold_limit_s
        )
        engine.task(name="numbers", dag="slow")(_contract_numbers)
        try:
            report = self.run(engine, "slow")
            # Proof by marker, not by the clock: the task is held until after the run ends.
            assert not finished.exists(), "the run waited for its timed-out task"
        finally:
            release.touch()
        error = report["tasks"]["nap"]["error"]
        assert report["tasks"]["nap"]["status"] == "FAILED"
        assert error.startswith(f"TaskTimeoutError: task 'nap' timed out after {self.timeout_s:g}s")
        assert report["tasks"]["numbers"]["status"] == "SUCCESS"
        # The abandoned call runs on to its end where it runs; its late result is discarded.
        assert _wait_for_file(str(finished), self.hold_limit_s) == "released"
        assert report["tasks"]["nap"]["result"] is None

    def test_max_parallel_bounds_calls_in_flight(self, executor: Executor) -> None:
        counting = _CountingExecutor(executor)
        engine = self.engine(counting, max_parallel=2)
        template = engine.task_template(_contract_spin, dag="wide")
        for i in range(6):
            template.bind(f"spin{i}", seconds=0.02)
        report = self.run(engine, "wide")
        assert report["status"] == "SUCCESS", format_report(report)
        assert counting.peak == 2

    def test_large_results_come_back(self, executor: Executor) -> None:
        size = 10 * 1024 * 1024
        engine = self.engine(executor)
        engine.task_template(_contract_blob, dag="big").bind("blob", size=size)
        engine.task(name="size", dag="big", deps=["blob"])(_contract_size)
        report = self.run(engine, "big")
        assert report["status"] == "SUCCESS", format_report(report)
        assert report["tasks"]["blob"]["result"] == _contract_blob(size)
        assert report["tasks"]["size"]["result"] == size

    def test_unpicklable_function_fails_only_its_task(self, executor: Executor) -> None:
        lock = threading.Lock()

        def local_function() -> int:  # a closure over a lock: neither pickle nor cloudpickle
            with lock:
                return 1

        engine = self.engine(executor)
        engine.task(name="local", dag="local")(local_function)
        engine.task(name="numbers", dag="local")(_contract_numbers)
        report = self.run(engine, "local")
        assert report["tasks"]["numbers"]["status"] == "SUCCESS"
        local = report["tasks"]["local"]
        if not self.pickles:
            assert local["status"] == "SUCCESS", format_report(report)
            return
        assert local["status"] == "FAILED"
        assert local["error"].startswith(
            "PicklingError: task 'local' could not be pickled to send it to the executor: "
        ), local["error"]

    def test_unpicklable_result_fails_only_its_task(self, executor: Executor) -> None:
        engine = self.engine(executor)
        engine.task(name="lock", dag="lock")(_contract_lock)
        engine.task(name="numbers", dag="lock")(_contract_numbers)
        report = self.run(engine, "lock")
        assert report["tasks"]["numbers"]["status"] == "SUCCESS"
        lock = report["tasks"]["lock"]
        if not self.pickles:
            assert lock["status"] == "SUCCESS", format_report(report)
            return
        assert lock["status"] == "FAILED"
        assert lock["error"].startswith(
            "PicklingError: task 'lock' returned a result that could not be pickled"
        ), lock["error"]

    def test_independent_tasks_run_concurrently(self, executor: Executor) -> None:
        import multiprocessing

        with multiprocessing.get_context("spawn").Manager() as manager:
            barrier = manager.Barrier(2, timeout=30)  # a proxy: it pickles and works anywhere
            engine = self.engine(executor, max_parallel=2)
            template = engine.task_template(_contract_meet, dag="meet")
            template.bind("left", barrier=barrier, who="left")
            template.bind("right", barrier=barrier, who="right")
            report = self.run(engine, "meet")
        assert report["status"] == "SUCCESS", format_report(report)
        assert report["tasks"]["left"]["result"] == "left"
