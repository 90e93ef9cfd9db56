"""The executor contract on a process pool (spawned workers), and what happens there to a
sync attempt that times out or whose run is cancelled: it is abandoned, and its worker
process runs it to the end. Calls to a process pool are pickled with the standard pickle (the
pool's own), other executors' with cloudpickle: tested here with in-process executors."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import re
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import _executor_tasks as tasks
import pytest

from flowrun import SystemClock, build_default_engine
from flowrun._sync_calls import SyncCall
from flowrun.testing import ExecutorContract, run_dag

T = TypeVar("T")


@pytest.fixture(scope="module")
def executor() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


class TestProcessPool(ExecutorContract):
    pickles = True


def wait_for(path: Path, timeout: float = 30.0) -> str:
    """The content of ``path`` once a worker has written it (polling, bounded)."""
    assert tasks.wait_for_file(str(path), timeout) == "released", f"{path} never appeared"
    return path.read_text(encoding="utf-8")


def test_tasks_run_in_worker_processes(executor: ProcessPoolExecutor) -> None:
    engine = build_default_engine(executor=executor, max_parallel=2)
    template = engine.task_template(tasks.spin_pid, dag="pids")
    for i in range(6):
        template.bind(f"spin{i}", seconds=0.05)
    report = run_dag(engine, "pids", clock=SystemClock())
    pids = {info["result"] for info in report["tasks"].values()}
    assert report["status"] == "SUCCESS"
    assert os.getpid() not in pids
    assert pids <= {p.pid for p in multiprocessing.active_children()}


def test_timed_out_attempt_runs_on_in_its_worker_process(
    executor: ProcessPoolExecutor, tmp_path: Path
) -> None:
    marker = tmp_path / "finished"
    engine = build_default_engine(executor=executor)
    engine.task_template(tasks.nap_then_touch, dag="slow", timeout_s=0.2).bind(
        "nap", seconds=1.0, marker=str(marker)
    )
    report = run_dag(engine, "slow", clock=SystemClock())
    nap = report["tasks"]["nap"]
    assert nap["status"] == "FAILED"
    assert nap["error"].startswith("TaskTimeoutError: task 'nap' timed out after 0.2s")
    assert "counted from its submission to ProcessPoolExecutor" in nap["error"]
    assert "runs on until it returns" in nap["error"]
    assert not marker.exists()  # the run did not wait for it...
    assert int(wait_for(marker)) != os.getpid()  # ...and its worker process finished it


def test_cancelled_run_abandons_its_attempt_to_the_worker(
    executor: ProcessPoolExecutor, tmp_path: Path
) -> None:
    marker, started = tmp_path / "finished", tmp_path / "started"
    engine = build_default_engine(executor=executor)
    engine.task_template(tasks.nap_then_touch, dag="slow").bind(
        "nap", seconds=1.0, marker=str(marker), started=str(started)
    )

    async def cancel_once_started() -> str:
        running = asyncio.ensure_future(engine.run_once("slow"))
        await asyncio.to_thread(wait_for, started)  # the worker process is running it
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        (run,) = engine.list_runs("slow")
        return str(run["run_id"])

    run_id = asyncio.run(cancel_once_started())
    nap = engine.get_run_report(run_id)["tasks"]["nap"]
    assert nap["status"] == "FAILED"
    assert nap["error"] == "CancelledError: run cancelled while task 'nap' was running"
    assert int(wait_for(marker)) != os.getpid()


def test_function_the_worker_cannot_import_fails_only_its_task(
    executor: ProcessPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module that exists only in this process: its functions pickle by reference here,
    # and the worker fails to import them.
    module = types.ModuleType("flowrun_only_here")
    exec("def hello():\n    return 'hello'\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    engine = build_default_engine(executor=executor)
    engine.task(name="hello", dag="lost")(module.hello)
    engine.task(name="pid", dag="lost")(tasks.pid)
    report = run_dag(engine, "lost", clock=SystemClock())
    hello = report["tasks"]["hello"]
    assert hello["status"] == "FAILED"
    assert hello["error"].startswith(
        "UnpicklingError: task 'hello' could not be unpickled in the worker: "
        "ModuleNotFoundError: No module named 'flowrun_only_here'"
    )
    assert report["tasks"]["pid"]["status"] == "SUCCESS"  # the pool still works


def test_exception_that_cannot_travel_back_fails_only_its_task(
    executor: ProcessPoolExecutor,
) -> None:
    engine = build_default_engine(executor=executor)
    engine.task(name="locked", dag="locked")(tasks.raise_locked)
    engine.task(name="pid", dag="locked")(tasks.pid)
    report = run_dag(engine, "locked", clock=SystemClock())
    locked = report["tasks"]["locked"]
    assert locked["status"] == "FAILED"
    assert locked["error"].startswith(
        "PicklingError: task 'locked' raised LockedError: quota exceeded, an exception that "
        "could not be pickled to send it back from the worker: TypeError: "
    )
    assert report["tasks"]["pid"]["status"] == "SUCCESS"


def test_process_pool_refuses_a_closure_with_the_standard_pickle(
    executor: ProcessPoolExecutor,
) -> None:
    offset = 1

    def closure() -> int:
        return offset

    engine = build_default_engine(executor=executor)
    engine.task(name="closure", dag="local")(closure)
    engine.task(name="pid", dag="local")(tasks.pid)
    report = run_dag(engine, "local", clock=SystemClock())
    error = report["tasks"]["closure"]["error"]
    assert report["tasks"]["pid"]["status"] == "SUCCESS"
    assert error.startswith(
        "PicklingError: task 'closure' could not be pickled to send it to the executor: "
        "AttributeError: Can't "  # 'pickle' up to Python 3.12, 'get' from 3.13
    ), error
    assert "local object" in error
    assert "the standard pickle (used for a process pool" in error
    assert "must be defined at module level of a module the workers can import" in error


class RoundTripExecutor(Executor):
    """Runs each call in this process once pickled and unpickled, as a worker receives it."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(pickle.loads(pickle.dumps(fn))(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class RoundTripProcessPool(RoundTripExecutor, ProcessPoolExecutor):
    """The same, typed as a process pool (it starts no process: ``submit`` is overridden)."""


def run_closure(executor: Executor) -> dict[str, Any]:
    offset = 41

    def closure() -> int:
        return offset + 1

    engine = build_default_engine(executor=executor)
    engine.task(name="closure", dag="local")(closure)
    info: dict[str, Any] = run_dag(engine, "local", clock=SystemClock())["tasks"]["closure"]
    return info


def test_calls_are_pickled_with_what_the_executor_type_uses() -> None:
    pytest.importorskip("cloudpickle")
    closure = run_closure(RoundTripExecutor())  # any executor: cloudpickle, by value
    assert closure["status"] == "SUCCESS", closure["error"]
    assert closure["result"] == 42
    with RoundTripProcessPool() as pool:  # a process pool: its own standard pickle
        closure = run_closure(pool)
    assert closure["status"] == "FAILED"
    assert "local object" in closure["error"]  # "Can't pickle/get local object", by version


NO_CLOUDPICKLE = """
import pickle
import sys
from concurrent.futures import Executor, Future

sys.modules["cloudpickle"] = None  # from now on, import cloudpickle raises ImportError

from flowrun import SystemClock, build_default_engine
from flowrun.testing import run_dag


class RoundTripExecutor(Executor):
    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        try:
            future.set_result(pickle.loads(pickle.dumps(fn))(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def closure():
    return offset


offset = 1
engine = build_default_engine(executor=RoundTripExecutor())
engine.task(name="module_level", dag="d")(closure)  # a function of __main__: by reference
engine.task(name="lambda", dag="d")(lambda: offset)
tasks = run_dag(engine, "d", clock=SystemClock())["tasks"]
assert tasks["module_level"]["result"] == 1, tasks
assert tasks["lambda"]["status"] == "FAILED", tasks
print(tasks["lambda"]["error"])
"""


def test_without_cloudpickle_every_executor_gets_the_standard_pickle() -> None:
    """In a fresh interpreter where cloudpickle cannot be imported: the core needs none."""
    done = subprocess.run(
        [sys.executable, "-c", NO_CLOUDPICKLE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "PicklingError: task 'lambda' could not be pickled to send it to the executor: "
        "PicklingError: Can't pickle <function <lambda>"
    ), done.stdout
    assert "for any executor when cloudpickle is not installed" in done.stdout


def test_sync_call_round_trips_through_pickle_in_this_process() -> None:
    """What a worker does with a ``SyncCall``, run here (so coverage sees it)."""
    received = pickle.loads(pickle.dumps(SyncCall("r/spin/1", "spin", tasks.spin_pid, [0.0], {})))
    assert repr(received) == "SyncCall('r/spin/1')"
    assert received.key == "r/spin/1"
    assert received() == os.getpid()
    # An executor that does not pickle calls runs the call itself.
    assert SyncCall("r/pid/1", "pid", tasks.pid, [], {})() == os.getpid()


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (lambda: 1, "task 'f' could not be pickled to send it to the executor: "),
        (threading.Lock, "task 'f' returned a result that could not be pickled"),
        (tasks.raise_locked, "task 'f' raised LockedError: quota exceeded, an exception that"),
    ],
    ids=["function", "result", "exception"],
)
def test_sync_call_pickling_failures_name_the_task(func: Any, message: str) -> None:
    received = pickle.loads(pickle.dumps(SyncCall("r/f/1", "f", func, [], {})))
    assert received.key == "r/f/1"
    with pytest.raises(pickle.PicklingError, match=re.escape(message)):
        received()


def test_sync_call_with_cloudpickle_carries_lambdas_both_ways() -> None:
    pytest.importorskip("cloudpickle")
    call = SyncCall("r/f/1", "f", lambda: lambda x: x + 1, [], {}, pickler="cloudpickle")
    received = pickle.loads(pickle.dumps(call))
    assert received()(1) == 2  # a returned lambda passes: Dask cloudpickles results
    plain = pickle.loads(pickle.dumps(SyncCall("r/f/1", "f", tasks.make_lambda, [], {})))
    with pytest.raises(pickle.PicklingError, match="task 'f' returned a result that could not"):
        plain()  # the standard pickle, as a process pool sends results back


def test_sync_call_with_cloudpickle_names_the_task_it_cannot_pickle() -> None:
    pytest.importorskip("cloudpickle")
    lock = threading.Lock()

    def locked() -> bool:
        return lock.locked()

    call = SyncCall("r/f/1", "f", locked, [], {}, pickler="cloudpickle")
    with pytest.raises(pickle.PicklingError, match=re.escape("task 'f' could not be pickled")):
        pickle.loads(pickle.dumps(call))()


def test_sync_call_of_a_function_the_worker_lacks_fails_with_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("flowrun_gone_soon")
    exec("def hello():\n    return 'hello'\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    payload = pickle.dumps(SyncCall("r/hello/1", "hello", module.hello, [], {}))
    monkeypatch.delitem(sys.modules, module.__name__)
    received = pickle.loads(payload)  # the function is unpickled only when the call runs
    with pytest.raises(pickle.UnpicklingError, match="task 'hello' could not be unpickled"):
        received()


def test_sync_call_keeps_picklable_task_errors() -> None:
    received = pickle.loads(pickle.dumps(SyncCall("r/f/1", "f", int, ["x"], {})))
    with pytest.raises(ValueError, match="invalid literal"):
        received()
