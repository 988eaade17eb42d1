"""Read the recorded provider traffic in tests/fixtures (see tests/fixtures/PROVENANCE.md) into replayable replies."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.server import Reply, StreamReply

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# Response headers a replay keeps: the ones that change client behaviour.
KEPT_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry", "request-id", "x-request-id")


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        raise FileNotFoundError(f"no fixture {name} under {FIXTURES}")
    return path


def read_text(name: str) -> str:
    return fixture_path(name).read_text(encoding="utf-8")


def read_json(name: str) -> Any:
    return json.loads(read_text(name))


def cassette(name: str) -> list[dict[str, Any]]:
    """The interactions of a vcrpy cassette."""
    data = yaml.safe_load(fixture_path(name).read_text(encoding="utf-8"))
    return list(data["interactions"])


def _body_bytes(response: dict[str, Any]) -> bytes:
    body = response.get("body", {})
    if "parsed_body" in response:  # pydantic-ai cassettes store JSON re-serialised as YAML
        return json.dumps(response["parsed_body"]).encode()
    raw = body.get("string", b"") if isinstance(body, dict) else body
    if isinstance(raw, bytes):
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return str(raw).encode()


def _headers(response: dict[str, Any]) -> dict[str, str]:
    headers = {}
    for name, values in (response.get("headers") or {}).items():
        if name.lower() in KEPT_HEADERS:
            headers[name.lower()] = values[0] if isinstance(values, list) else str(values)
    return headers


def interaction_body(name: str, index: int = 0) -> bytes:
    return _body_bytes(cassette(name)[index]["response"])


def interaction_request(name: str, index: int = 0) -> Any:
    request = cassette(name)[index]["request"]
    body = request.get("body")
    if isinstance(body, dict) and "parsed_body" not in body:
        body = body.get("string")
    if "parsed_body" in request:
        return request["parsed_body"]
    return json.loads(body) if isinstance(body, str | bytes) and body else body


def replay(name: str, index: int = 0, *, chunk_size: int | None = None) -> Reply | StreamReply:
    """The recorded answer of interaction `index` of a cassette, as a scripted reply.

    A streamed body (text/event-stream, NDJSON) is sent as a stream, split at event boundaries (or every `chunk_size`
    bytes, to exercise the clients' reassembly).
    """
    response = cassette(name)[index]["response"]
    status = int(response["status"]["code"])
    body = _body_bytes(response)
    content_types = {k.lower(): v for k, v in (response.get("headers") or {}).items()}.get("content-type", [""])
    content_type = (content_types[0] if isinstance(content_types, list) else str(content_types)).split(";")[0]
    if "event-stream" in content_type or "ndjson" in content_type:
        return StreamReply(split_stream(body, chunk_size), content_type=content_type, status=status,
                           headers=_headers(response))
    return Reply(status=status, body=body, headers=_headers(response), content_type=content_type or "application/json")


def replay_file(name: str, content_type: str, *, status: int = 200, chunk_size: int | None = None,
                headers: dict[str, str] | None = None) -> Reply | StreamReply:
    """A body-only fixture file as a scripted reply."""
    body = fixture_path(name).read_bytes()
    if "event-stream" in content_type or "ndjson" in content_type:
        return StreamReply(split_stream(body, chunk_size), content_type=content_type, status=status,
                           headers=headers or {})
    return Reply(status=status, body=body, content_type=content_type, headers=headers or {})


def split_stream(body: bytes, chunk_size: int | None = None) -> list[bytes]:
    """Split a stream body into the pieces a server would flush: SSE events (LF or CRLF framing), NDJSON lines."""
    if chunk_size:
        return [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
    for separator in (b"\r\n\r\n", b"\n\n"):
        if separator in body:
            parts = body.split(separator)
            pieces = [part + separator for part in parts[:-1]]
            if parts[-1]:
                pieces.append(parts[-1])
            return pieces
    return [line + b"\n" for line in body.split(b"\n") if line]
