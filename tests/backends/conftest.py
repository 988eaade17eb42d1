"""Fixtures shared by the per-vendor behaviour tables: each module parametrises its own `vendor` fixture; `server`
runs that vendor's fake and `backend` is our adapter pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llm.backends.base import LLMBackend
from tests.fakes.server import FakeServer
from tests.fakes.vendor import Vendor


@pytest.fixture
async def server(vendor: Vendor) -> AsyncIterator[FakeServer]:
    async with vendor.fake_cls() as fake:
        yield fake


@pytest.fixture
async def backend(vendor: Vendor, server: FakeServer) -> AsyncIterator[LLMBackend]:
    instance = vendor.backend(server)
    assert await instance.initialize()
    yield instance
    await instance.cleanup()
