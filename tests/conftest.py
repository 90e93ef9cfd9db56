"""Shared test helpers: a fake clock for the engine (``build_default_engine(clock=...)``)."""

from __future__ import annotations

import pytest
from support import WALL_START, FakeClock

__all__ = ["WALL_START", "FakeClock"]


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
