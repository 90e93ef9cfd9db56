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


# -- state stores: history (summaries without results, prune) ---------------------------------

DAY_S = 86400.0


class StoreContract:
    """What a state store with history management does (both built-in stores pass it): runs
    read as summaries without their results, and ``prune``. A class-based pytest suite: a
    subclass in a test module that provides a ``store`` fixture (a new, empty store per
    test) runs it::

        @pytest.fixture
        def store(tmp_path):
            with SqliteStateStore(tmp_path / "state.db") as store:
                yield store

        class TestMyStore(StoreContract):
            pass

    Runs are written through the store's own protocol methods, with wall times one day apart
    from ``epoch``; ``prune`` gets ``now`` explicitly, so nothing depends on the real clock.
    """

    epoch: float = 1_700_000_000.0

    # -- helpers -----------------------------------------------------------------------------
    def add_run(
        self,
        store: Any,
        run_id: str,
        dag: str,
        day: int,
        status: str = "SUCCESS",
        results: bool = True,
    ) -> None:
        """A run of ``dag`` created on ``day`` (days after ``epoch``): tasks ``a`` (result
        ``{"run": run_id}``, kept if ``results``) and ``b``; ``status`` RUNNING leaves it
        running (``a`` done, ``b`` running), FAILED fails ``b``."""
        from ..state.records import RunRecord, TaskRecord

        created = self.epoch + day * DAY_S
        store.create_run(
            RunRecord(run_id, dag, created, tasks={"a": TaskRecord(), "b": TaskRecord(deps=("a",))})
        )
        store.mark_running(run_id, "a", 1, created)
        store.mark_success(run_id, "a", created, created + 1, {"run": run_id}, results)
        store.mark_running(run_id, "b", 1, created + 1)
        if status == "FAILED":
            store.mark_failed(run_id, "b", created + 1, created + 2, "ValueError: bad", None)
        elif status != "RUNNING":
            store.mark_success(run_id, "b", created + 1, created + 2, 2, results)
        if status != "RUNNING":
            store.finish_run(run_id, status, created + 3)
        store.flush()

    def ids(self, store: Any, **filters: Any) -> list[str]:
        return [r.run_id for r in store.list_runs(limit=1000, results=False, **filters)]

    def history(self, store: Any) -> None:
        """etl: e0..e4 on days 0..4; sync: s0, s1 on days 1 and 3, each created after the
        etl run of its day (runs are created in time order, as an engine creates them)."""
        for day in range(5):
            self.add_run(store, f"e{day}", "etl", day)
            if day in (1, 3):
                self.add_run(store, f"s{day // 2}", "sync", day)

    # -- summaries ---------------------------------------------------------------------------
    def test_summaries_carry_no_result_but_say_one_is_stored(self, store: Any) -> None:
        self.add_run(store, "r1", "etl", 0)
        self.add_run(store, "r2", "etl", 1, results=False)
        (r2, r1) = store.list_runs(results=False)
        assert (r1.tasks["a"].result, r1.tasks["a"].has_result) == (None, True)
        assert (r2.tasks["a"].result, r2.tasks["a"].has_result) == (None, False)
        assert (r1.status, r1.tasks["b"].status) == ("SUCCESS", "SUCCESS")
        assert r1.tasks["b"].deps == ("a",)
        summary = store.load_run("r1", results=False)
        assert (summary.tasks["a"].result, summary.tasks["a"].has_result) == (None, True)
        full = store.load_run("r1")  # the default still reads the results
        assert full.tasks["a"].result == {"run": "r1"}
        assert store.list_runs()[1].tasks["a"].result == {"run": "r1"}

    # -- prune -------------------------------------------------------------------------------
    def test_prune_without_a_criterion_is_refused_and_deletes_nothing(self, store: Any) -> None:
        import pytest

        self.history(store)
        with pytest.raises(ValueError, match="prune needs keep_last=N and/or older_than_s"):
            store.prune()
        with pytest.raises(ValueError, match="prune needs"):
            store.prune(dag="etl", results_only=True)
        assert len(self.ids(store)) == 7

    def test_keep_last_counts_per_dag(self, store: Any) -> None:
        self.history(store)
        pruned = store.prune(keep_last=2)
        assert [r.run_id for r in pruned] == ["e2", "e1", "e0"]  # newest first
        assert (pruned[0].dag_name, pruned[0].status) == ("etl", "SUCCESS")
        assert pruned[0].created_at == self.epoch + 2 * DAY_S
        assert self.ids(store) == ["e4", "s1", "e3", "s0"]
        assert store.prune(keep_last=2) == []  # nothing left to prune

    def test_older_than_is_measured_from_now(self, store: Any) -> None:
        self.history(store)
        now = self.epoch + 4 * DAY_S
        pruned = store.prune(older_than_s=2.5 * DAY_S, now=now)  # created before day 1.5
        assert sorted(r.run_id for r in pruned) == ["e0", "e1", "s0"]
        assert self.ids(store) == ["e4", "s1", "e3", "e2"]
        # exactly older_than_s old is not older than it
        assert store.prune(older_than_s=2 * DAY_S, now=now) == []

    def test_both_criteria_must_agree_and_dag_narrows(self, store: Any) -> None:
        self.history(store)
        now = self.epoch + 4 * DAY_S
        both = store.prune(keep_last=4, older_than_s=0.5 * DAY_S, now=now, dry_run=True)
        assert [r.run_id for r in both] == ["e0"]  # s0 is old, but among sync's 4 newest
        only_sync = store.prune(keep_last=1, dag="sync")
        assert [r.run_id for r in only_sync] == ["s0"]
        assert self.ids(store, dag_name="etl") == ["e4", "e3", "e2", "e1", "e0"]
        assert store.prune(keep_last=0, dag="nope") == []

    def test_a_running_run_is_never_pruned_and_counts_among_the_newest(self, store: Any) -> None:
        self.add_run(store, "old", "etl", 0, status="RUNNING")
        self.add_run(store, "failed", "etl", 1, status="FAILED")
        self.add_run(store, "new", "etl", 2)
        self.add_run(store, "live", "etl", 3, status="RUNNING")
        pruned = store.prune(keep_last=2, older_than_s=0.0, now=self.epoch + 10 * DAY_S)
        assert [r.run_id for r in pruned] == ["failed"]  # "live" and "new" are the newest 2
        assert [r.status for r in pruned] == ["FAILED"]
        assert self.ids(store) == ["live", "new", "old"]
        assert [r.run_id for r in store.prune(keep_last=0)] == ["new"]  # RUNNING ones stay
        assert self.ids(store) == ["live", "old"]
        assert store.load_run("old").tasks["b"].status == "RUNNING"

    def test_dry_run_lists_what_would_go_and_changes_nothing(self, store: Any) -> None:
        self.history(store)
        would = store.prune(keep_last=1, dry_run=True)
        assert [r.run_id for r in would] == ["e3", "e2", "s0", "e1", "e0"]
        assert len(self.ids(store)) == 7
        assert store.load_run("e0").tasks["a"].result == {"run": "e0"}
        assert store.prune(keep_last=1, results_only=True, dry_run=True) == would
        assert store.load_run("e0").tasks["a"].has_result
        assert store.prune(keep_last=1) == would

    def test_a_pruned_run_is_gone(self, store: Any) -> None:
        import pytest

        from ..errors import UnknownRunError

        self.history(store)
        store.prune(keep_last=0, dag="sync")
        with pytest.raises(UnknownRunError):
            store.load_run("s0")
        with pytest.raises(UnknownRunError):
            store.load_run("s1", results=False)
        assert self.ids(store, dag_name="sync") == []

    def test_results_only_keeps_the_runs_and_their_task_states(self, store: Any) -> None:
        self.add_run(store, "bare", "etl", 0, results=False)  # no result to drop
        self.history(store)
        dropped = store.prune(keep_last=3, dag="etl", results_only=True)
        assert [r.run_id for r in dropped] == ["e1", "e0"]
        assert len(self.ids(store)) == 8  # every run is still there
        run = store.load_run("e0")
        assert run.status == "SUCCESS"
        for name in ("a", "b"):
            task = run.tasks[name]
            assert (task.status, task.attempt) == ("SUCCESS", 1)
            assert (task.result, task.has_result, task.result_pruned) == (None, False, True)
        summary = store.load_run("e0", results=False).tasks["a"]
        assert (summary.has_result, summary.result_pruned) == (False, True)
        bare = store.load_run("bare").tasks["a"]
        assert (bare.has_result, bare.result_pruned) == (False, False)  # never had one
        assert store.load_run("e2").tasks["a"].result == {"run": "e2"}  # kept: among the 3
        assert store.prune(keep_last=3, dag="etl", results_only=True) == []  # nothing left
        # results_only then a full prune: the run goes too
        assert [r.run_id for r in store.prune(keep_last=3, dag="etl")] == ["e1", "e0", "bare"]

    def test_cache_entries_of_a_pruned_run_stay(self, store: Any) -> None:
        from ..state.records import CacheEntry

        self.add_run(store, "r1", "etl", 0)
        self.add_run(store, "r2", "etl", 1)
        store.cache_put(CacheEntry("k", "etl", "a", "r1", self.epoch, None, {"rows": 3}))
        store.flush()
        assert [r.run_id for r in store.prune(keep_last=1)] == ["r1"]
        entry = store.cache_get("k", self.epoch + 2 * DAY_S)
        assert entry is not None
        assert (entry.run_id, entry.result) == ("r1", {"rows": 3})

    def test_prune_checks_its_arguments(self, store: Any) -> None:
        import pytest

        self.history(store)
        bad: list[tuple[dict[str, Any], type[Exception], str]] = [
            ({"keep_last": -1}, ValueError, "'keep_last' must be an int >= 0"),
            ({"keep_last": True}, ValueError, "'keep_last' must be an int >= 0"),
            ({"keep_last": "3"}, ValueError, "'keep_last' must be an int >= 0"),
            ({"older_than_s": -1.0}, ValueError, "'older_than_s' must be a finite number"),
            ({"older_than_s": float("nan")}, ValueError, "'older_than_s' must be a finite"),
            ({"older_than_s": "30d"}, ValueError, "e.g. 30 \\* 86400 for 30 days"),
            ({"keep_last": 1, "dag": 3}, TypeError, "'dag' must be a DAG name"),
            ({"keep_last": 1, "results_only": "yes"}, TypeError, "'results_only' must be True"),
            ({"keep_last": 1, "dry_run": 1}, TypeError, "'dry_run' must be True or False"),
            ({"older_than_s": 1.0, "now": "today"}, ValueError, "'now' must be a wall time"),
        ]
        for kwargs, error, message in bad:
            with pytest.raises(error, match=message):
                store.prune(**kwargs)
        assert len(self.ids(store)) == 7  # nothing was pruned by a refused call
