"""What the shared behaviour table (tests/backends/test_shared_behaviours.py) needs to know about one vendor.

Each fake module defines one `Vendor` named `VENDOR`; `tests/fakes/vendors.py` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llm.base import LLMBackend, LLMBackendType, LLMConfig
from tests.fakes.server import FakeServer, Reply, StreamReply


@dataclass
class Expected:
    """What a replayed recording must come back as."""

    content: str
    usage: dict[str, int]
    finish_reason: str
    model: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, arguments)


@dataclass
class Vendor:
    name: str
    backend_type: LLMBackendType
    backend_cls: type[LLMBackend]
    fake_cls: Callable[[], FakeServer]
    api_key: str
    model: str
    #: The fake's base URL in the form the backend's `LLMConfig.base_url` wants.
    base_url: Callable[[Any], str]
    #: Path fragment of the generation endpoint, to count generation requests (streams included).
    generate_path: str
    #: The vendor's error reply for an HTTP status (its real error envelope), with extra headers.
    error_reply: Callable[[int, Mapping[str, str]], Reply]
    #: The vendor's "quota exhausted" 429 reply, or None when the vendor has no distinct quota error.
    quota_reply: Reply | None
    #: Recorded plain-text answers: (non-streamed reply, expected), (streamed reply, expected).
    text_sync: tuple[Reply | StreamReply, Expected]
    text_stream: tuple[Reply | StreamReply, Expected]
    #: Recorded tool-call answers, same shape; None when no recording exists for the vendor.
    tools_sync: tuple[Reply | StreamReply, Expected] | None
    tools_stream: tuple[Reply | StreamReply, Expected] | None
    #: A stream that fails with the vendor's in-stream error after some text (`expected partial text`).
    midstream_error: tuple[StreamReply, str]
    #: A stream that sends some text, then one malformed chunk.
    malformed_chunk: StreamReply
    #: A stream that sends some text, then the connection drops.
    dropped_stream: StreamReply
    #: The SDK forwards no retry-count header for every vendor; True where `x-stainless-retry-count` is sent.
    stainless: bool = False
    #: Keyword arguments of the backend class (e.g. `http_transport`), and the label they add to test ids.
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    variant: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}-{self.variant}" if self.variant else self.name

    def config(self, server: Any, **overrides: Any) -> LLMConfig:
        values: dict[str, Any] = {
            "backend_type": self.backend_type,
            "model_name": self.model,
            "api_key": self.api_key,
            "base_url": self.base_url(server),
            "timeout": 5,
        }
        values.update(overrides)
        return LLMConfig(**values)

    def backend(self, server: Any, **overrides: Any) -> LLMBackend:
        return self.backend_cls(self.config(server, **overrides), **self.backend_options)  # type: ignore[call-arg]
