"""The executor contract on a thread pool, and what a timed-out sync attempt does there."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from flowrun.testing import ExecutorContract


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2, thread_name_prefix="contract") as pool:
        yield pool


class TestThreadPool(ExecutorContract):
    pickles = False
