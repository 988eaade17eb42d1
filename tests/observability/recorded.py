"""The JSON bodies of the recorded vendor answers in tests/fixtures (see tests/fixtures/PROVENANCE.md)."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.recordings import interaction_body, read_text


def body(cassette: str, index: int = 0) -> dict[str, Any]:
    """The JSON response body of one cassette interaction."""
    data = json.loads(interaction_body(cassette, index))
    assert isinstance(data, dict)
    return data


def json_file(name: str) -> dict[str, Any]:
    data = json.loads(read_text(name))
    assert isinstance(data, dict)
    return data


def sse_events(name: str) -> list[dict[str, Any]]:
    """The JSON payloads of a recorded SSE body (LF or CRLF framing), `[DONE]` left out."""
    events = []
    for line in read_text(name).splitlines():
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload and payload != "[DONE]":
                events.append(json.loads(payload))
    return events


def ndjson(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_text(name).splitlines() if line.strip()]
