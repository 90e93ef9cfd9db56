"""The executor contract on Dask distributed: a LocalCluster with 2 worker processes, started
here once for the module. A sync attempt that times out or whose run is cancelled is cancelled
through the client: Dask forgets its key; a call already running finishes in its worker thread
and its result is dropped. Calls travel with cloudpickle, as Dask's own do: closures, lambdas
and notebook functions run on the workers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _executor_tasks as tasks
import pytest

from flowrun import RunContext, SystemClock, build_default_engine
from flowrun.executors import DaskExecutor, dask_executor
from flowrun.testing import ExecutorContract, format_report, run_dag

distributed = pytest.importorskip(
    "distributed", reason="Dask distributed is not installed: pip install 'flowrun-dag[dask]'"
)

# Arguments travel inside the task graph; Dask warns about the 10 MB one of the contract.
pytestmark = pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        yield dask_client


@pytest.fixture(scope="module")
def executor(client: Any) -> DaskExecutor:
    return dask_executor(client)


class TestDask(ExecutorContract):
    pickles = True


def wait_for(path: Path, timeout: float = 30.0) -> str:
    assert tasks.wait_for_file(str(path), timeout) == "released", f"{path} never appeared"
    return path.read_text(encoding="utf-8")


def wait_until_forgotten(client: Any, key: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while key in client.run_on_scheduler(tasks.scheduler_keys):
        assert time.monotonic() < deadline, f"the Dask scheduler still holds {key!r}"
        time.sleep(0.05)


def test_tasks_run_in_the_worker_processes(client: Any, executor: DaskExecutor) -> None:
    engine = build_default_engine(executor=executor, max_parallel=2)
    template = engine.task_template(tasks.spin_pid, dag="pids")
    for i in range(6):
        template.bind(f"spin{i}", seconds=0.05)
    report = run_dag(engine, "pids", clock=SystemClock())
    pids = {info["result"] for info in report["tasks"].values()}
    worker_pids = set(client.run(os.getpid).values())
    assert report["status"] == "SUCCESS"
    assert os.getpid() not in worker_pids
    assert pids <= worker_pids


def test_closures_lambdas_and_notebook_functions_run_in_the_workers(
    client: Any, executor: DaskExecutor
) -> None:
    offset = 40  # captured by the closure: it travels with it
    notebook: dict[str, Any] = {"__name__": "__main__"}  # a cell's function, as in Jupyter
    exec("import os\n\ndef cell(plus):\n    return os.getpid(), plus[1] * 10\n", notebook)
    engine = build_default_engine(executor=executor, max_parallel=2)

    @engine.task(dag="local")
    def src() -> tuple[int, int]:
        return os.getpid(), offset

    engine.task(name="plus", dag="local", deps=[src])(lambda src: (os.getpid(), src[1] + 2))
    engine.task(name="cell", dag="local", deps=["plus"])(notebook["cell"])
    engine.task(name="triple", dag="local")(lambda: lambda x: x * 3)  # returns a lambda
    engine.task(name="apply", dag="local", deps=["triple", "cell"])(
        lambda triple, cell: (os.getpid(), triple(cell[1]))
    )
    report = run_dag(engine, "local", clock=SystemClock())
    assert report["status"] == "SUCCESS", format_report(report)
    results = {name: info["result"] for name, info in report["tasks"].items()}
    assert [results[name][1] for name in ("src", "plus", "cell", "apply")] == [40, 42, 420, 1260]
    assert results["triple"](2) == 6  # the lambda a task returned came back, and ran in "apply"
    pids = {results[name][0] for name in ("src", "plus", "cell", "apply")}
    worker_pids = set(client.run(os.getpid).values())
    assert os.getpid() not in worker_pids
    assert pids <= worker_pids


def test_each_attempt_is_submitted_under_its_readable_key(executor: DaskExecutor) -> None:
    engine = build_default_engine(executor=executor)
    engine.task(name="key", dag="keys")(tasks.dask_key)
    engine.task(name="flaky", dag="keys", retries=1)(tasks.flaky_dask_key)
    report = run_dag(engine, "keys", context=RunContext(None), clock=SystemClock())
    run_id = report["run_id"]
    assert report["tasks"]["key"]["result"] == f"{run_id}/key/1"
    assert report["tasks"]["flaky"]["result"] == f"{run_id}/flaky/2"  # pure=False: re-run


def test_timed_out_attempt_is_cancelled_in_dask(
    client: Any, executor: DaskExecutor, tmp_path: Path
) -> None:
    marker, started = tmp_path / "finished", tmp_path / "started"
    engine = build_default_engine(executor=executor)
    engine.task_template(tasks.nap_then_touch, dag="slow", timeout_s=0.5).bind(
        "nap", seconds=1.5, marker=str(marker), started=str(started)
    )
    report = run_dag(engine, "slow", clock=SystemClock())
    nap = report["tasks"]["nap"]
    assert nap["status"] == "FAILED"
    assert nap["error"].startswith("TaskTimeoutError: task 'nap' timed out after 0.5s")
    assert "counted from its submission to DaskExecutor" in nap["error"]
    wait_until_forgotten(client, f"{report['run_id']}/nap/1")
    # Dask cannot interrupt the running call: its worker runs it to the end.
    assert started.exists()
    assert int(wait_for(marker)) in set(client.run(os.getpid).values())


def test_cancelled_run_cancels_its_attempt_in_dask(
    client: Any, executor: DaskExecutor, tmp_path: Path
) -> None:
    marker, started = tmp_path / "finished", tmp_path / "started"
    engine = build_default_engine(executor=executor)
    engine.task_template(tasks.nap_then_touch, dag="slow").bind(
        "nap", seconds=1.0, marker=str(marker), started=str(started)
    )

    async def cancel_once_started() -> str:
        running = asyncio.ensure_future(engine.run_once("slow"))
        await asyncio.to_thread(wait_for, started)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        (run,) = engine.list_runs("slow")
        return str(run["run_id"])

    run_id = asyncio.run(cancel_once_started())
    nap = engine.get_run_report(run_id)["tasks"]["nap"]
    assert nap["error"] == "CancelledError: run cancelled while task 'nap' was running"
    wait_until_forgotten(client, f"{run_id}/nap/1")
    wait_for(marker)


def test_executor_passes_other_calls_through(client: Any, executor: DaskExecutor) -> None:
    assert executor.submit(pow, 2, 10).result(timeout=30) == 1024
    assert executor.submit(pow, 2, 10, key="two-to-the-ten").result(timeout=30) == 1024
    assert repr(executor).startswith("DaskExecutor(<Client")
    own = dask_executor(client)
    future = own.submit(tasks.pid)
    own.shutdown(wait=True)  # waits for its calls; the client stays open
    assert future.done()
    assert client.status == "running"


def test_dask_executor_wants_a_client() -> None:
    with pytest.raises(TypeError, match=r"takes a distributed.Client, got str"):
        dask_executor("tcp://127.0.0.1:8786")
