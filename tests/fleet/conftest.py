"""Fixtures for the fleet tests: a fresh key namespace per test and a fake clock for the single-process limiter tests
(the Valkey servers are tests/conftest.py's)."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


class FakeClock:
    """A monotonic clock that moves only when the code under test sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
