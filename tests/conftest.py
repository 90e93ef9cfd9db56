"""Shared test fixtures: the engine clock of the tests (``build_default_engine(clock=...)``)."""

from __future__ import annotations

import pytest
from support import new_clock

from flowrun.testing import VirtualClock


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """``VirtualClock`` at ``support.WALL_START``: retry back-off costs no time, ``sleeps``
    records it."""
    return new_clock()
