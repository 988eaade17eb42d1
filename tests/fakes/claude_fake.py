"""A fake Anthropic API: POST /v1/messages (JSON and SSE with `event:` lines) and GET /v1/models.

It validates what the real API validates (the key in `x-api-key` or `Authorization: Bearer`, the
`anthropic-version` header, required `model`,
`max_tokens` and `messages`, roles only user/assistant, `temperature` and `top_p` in [0, 1], tool definitions, every
`tool_use` answered by a `tool_result` in the next message and no orphan `tool_result`, non-empty text blocks, image
sources) and answers with Anthropic's error envelope `{"type": "error", "error": {"type", "message"}, "request_id"}`
plus the `request-id` header. The default answer echoes the last user message, honouring `max_tokens` (one token per
word) and `stop_sequences`; a forced tool choice (`any` / `tool`) is answered with a `tool_use` block. Scripted replies
(recordings, faults) take precedence.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from llm.accounting.usage import usage_dict
from llm.base import LLMBackendType
from tests.fakes.recordings import fixture_path, replay, replay_file
from tests.fakes.server import FakeServer, Recorded, Reply, StreamReply, json_error, sse
from tests.fakes.vendor import Expected, Vendor

API_KEY = "sk-ant-test-claude"
API_VERSION = "2023-06-01"
#: The cache counts the recorded answers report (`cache_read_input_tokens`, `cache_creation_input_tokens`).
CLAUDE_DETAILS: dict[str, int] = {"cached_tokens": 0, "cache_creation_tokens": 0}
INPUT_TOKENS = 12
#: What the API reports as the model used for an alias it was asked for (it answers with the dated snapshot).
MODEL_IDS = {
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-sonnet-4-6": "claude-sonnet-4-6",
    "claude-opus-4-6": "claude-opus-4-6",
}
IMAGE_MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}

_request_ids = itertools.count(1)


def _request_id() -> str:
    return f"req_fake{next(_request_ids):06d}"


def anthropic_error(status: int, type_: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """The real error envelope, with the `request-id` header the API always sends."""
    request_id = _request_id()
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}
    return json_error(status, body, {"request-id": request_id, "x-should-retry": "false", **(headers or {})})


def invalid(message: str) -> web.Response:
    return anthropic_error(400, "invalid_request_error", message)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(block.get("text", "") for block in content if block.get("type") == "text")
    return str(content)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and _text(message.get("content")):
            return _text(message["content"])
    return ""


# -- request validation -------------------------------------------------------------------------------------------


def _check_number(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if value > 1:
        return f"{name}: Input should be less than or equal to 1"
    if value < 0:
        return f"{name}: Input should be greater than or equal to 0"
    return None


def _check_block(where: str, block: Any) -> str | None:
    if not isinstance(block, dict) or "type" not in block:
        return f"{where}: Input does not match the expected shape."
    if block["type"] == "text" and not block.get("text"):
        return "messages: text content blocks must be non-empty"
    if block["type"] == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64" and source.get("media_type") not in IMAGE_MEDIA_TYPES:
            return f"{where}.source.base64.media_type: Input should be {sorted(IMAGE_MEDIA_TYPES)}"
        if source.get("type") not in ("base64", "url") or not (source.get("data") or source.get("url")):
            return f"{where}.source: Input does not match the expected shape."
    return None


def _tool_ids(message: Mapping[str, Any] | None, block_type: str, key: str) -> list[str]:
    content = message.get("content") if message else None
    return [b[key] for b in content if b.get("type") == block_type] if isinstance(content, list) else []


def _check_tool_pairs(messages: list[dict[str, Any]]) -> str | None:
    """Every tool_use answered in the next message; every tool_result answering the previous one."""
    for i, message in enumerate(messages):
        following = messages[i + 1] if i + 1 < len(messages) else None
        missing = set(_tool_ids(message, "tool_use", "id")) - set(_tool_ids(following, "tool_result", "tool_use_id"))
        if missing and following is not None:
            return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(sorted(missing))}. Each `tool_use` block must have a corresponding `tool_result` "
                    "block in the next message.")
        previous = messages[i - 1] if i else None
        orphans = set(_tool_ids(message, "tool_result", "tool_use_id")) - set(_tool_ids(previous, "tool_use", "id"))
        if orphans:
            return (f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{', '.join(sorted(orphans))}. Each `tool_result` block must have a corresponding `tool_use` "
                    "block in the previous message.")
    return None


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return "messages: Field required"
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            return ('messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
                    'not "system" as an input message role.')
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else []):
            problem = _check_block(f"messages.{i}.content.{j}", block)
            if problem:
                return problem
    return _check_tool_pairs(messages)


def _check_tools(body: Mapping[str, Any]) -> str | None:
    tools = body.get("tools")
    for i, tool in enumerate(tools or []):
        for key in ("name", "input_schema"):
            if key not in tool:
                return f"tools.{i}.custom.{key}: Field required"
    if "tool_choice" in body and not tools:
        return "tool_choice: tool_choice may only be specified while providing tools"
    return None


def validate_body(body: Any) -> str | None:
    """The first problem the real API would report for this request body, or None."""
    if not isinstance(body, dict):
        return "There was an error parsing the body of your request"
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 0:
        return "max_tokens: Input should be a valid integer greater than or equal to 0"
    return (_check_messages(body["messages"]) or _check_number(body, "temperature") or _check_number(body, "top_p")
            or _check_tools(body))


# -- answers ------------------------------------------------------------------------------------------------------


def _echo(body: Mapping[str, Any]) -> tuple[list[str], str, str | None]:
    """The echoed words, cut at the first stop sequence or at max_tokens; with the stop reason and sequence."""
    # Asked for JSON (output_config.format), the fake answers like a model that obeys: the last user text, verbatim.
    json_mode = bool((body.get("output_config") or {}).get("format"))
    text = ("" if json_mode else "echo: ") + last_user_text(body["messages"])
    stop_reason, stop_sequence = "end_turn", None
    hits = [(text.find(seq), seq) for seq in body.get("stop_sequences") or [] if seq in text]
    if hits:
        position, stop_sequence = min(hits)
        text, stop_reason = text[:position], "stop_sequence"
    words = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]
    if len(words) > body["max_tokens"]:
        words, stop_reason, stop_sequence = words[: body["max_tokens"]], "max_tokens", None
    return words, stop_reason, stop_sequence


def _forced_tool(body: Mapping[str, Any]) -> str | None:
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool":
        return str(choice["name"])
    if choice.get("type") == "any":
        return str(body["tools"][0]["name"])
    return None


def _usage(output_tokens: int) -> dict[str, Any]:
    return {"input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": output_tokens, "service_tier": "standard"}


def _message(body: Mapping[str, Any], content: list[dict[str, Any]], stop: str | None, seq: str | None,
             output_tokens: int) -> dict[str, Any]:
    return {"model": MODEL_IDS.get(body["model"], body["model"]), "id": "msg_fake01", "type": "message",
            "role": "assistant", "content": content, "stop_reason": stop, "stop_sequence": seq,
            "usage": _usage(output_tokens)}


def claude_sse(events: list[dict[str, Any]]) -> list[str]:
    """SSE frames as Anthropic sends them: an `event:` line named after each payload's type, then `data:`."""
    return sse(events, event_names=[event["type"] for event in events])


def _stream_events(body: Mapping[str, Any], blocks: list[dict[str, Any]], stop: str, seq: str | None,
                   deltas: list[list[dict[str, Any]]], output_tokens: int) -> list[dict[str, Any]]:
    start = _message(body, [], None, None, 1)
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, (block, block_deltas) in enumerate(zip(blocks, deltas, strict=True)):
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        if index == 0:
            events.append({"type": "ping"})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in block_deltas]
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": seq},
                   "usage": {"output_tokens": output_tokens}})
    events.append({"type": "message_stop"})
    return events


def _tool_answer(body: Mapping[str, Any], name: str, stream: bool) -> dict[str, Any] | list[dict[str, Any]]:
    arguments = {"query": last_user_text(body["messages"])}
    block = {"type": "tool_use", "id": "toolu_fake01", "name": name, "input": arguments}
    if not stream:
        return _message(body, [block], "tool_use", None, 9)
    raw = json.dumps(arguments)
    pieces = [raw[:5], raw[5:]]
    deltas = [[{"type": "input_json_delta", "partial_json": piece} for piece in ["", *pieces]]]
    return _stream_events(body, [{**block, "input": {}}], "tool_use", None, deltas, 9)


def answer(body: Mapping[str, Any], stream: bool) -> dict[str, Any] | list[dict[str, Any]]:
    """The default answer: a Message (JSON) or the list of stream events."""
    tool = _forced_tool(body)
    if tool is not None:
        return _tool_answer(body, tool, stream)
    words, stop, seq = _echo(body)
    if not stream:
        return _message(body, [{"type": "text", "text": "".join(words)}], stop, seq, len(words))
    deltas = [[{"type": "text_delta", "text": word} for word in words if word]]
    return _stream_events(body, [{"type": "text", "text": ""}], stop, seq, deltas, len(words))


class FakeClaude(FakeServer):
    """The Anthropic API on 127.0.0.1; base URL for the SDK: `server.url` (the SDK adds `/v1/...`)."""

    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.route("POST", "/v1/messages", self.messages)
        self.route("GET", "/v1/models", self.models)

    @property
    def base_url(self) -> str:
        return self.url

    def _check_headers(self, recorded: Recorded) -> web.Response | None:
        # Keys travel as `x-api-key` (older SDKs, the recordings) or, since the 2026-10-21 API version the SDK
        # pins, as `Authorization: Bearer`; the API accepts both.
        keys = {recorded.headers.get("x-api-key"), recorded.headers.get("authorization", "").removeprefix("Bearer ")}
        if self.api_key not in keys:
            return anthropic_error(401, "authentication_error", "invalid x-api-key")
        if not recorded.headers.get("anthropic-version"):
            return invalid("anthropic-version: header is required")
        return None

    async def messages(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        error = self._check_headers(recorded)
        if error is not None:
            return error
        problem = validate_body(recorded.body)
        if problem is not None:
            return invalid(problem)
        body = recorded.body
        headers = {"request-id": _request_id()}
        if not body.get("stream"):
            return web.json_response(answer(body, stream=False), headers=headers)
        events = answer(body, stream=True)
        assert isinstance(events, list)
        return await self.stream(request, StreamReply(claude_sse(events), headers=headers))

    async def models(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        error = self._check_headers(recorded)
        if error is not None:
            return error
        data = [{"type": "model", "id": model_id, "display_name": model_id, "created_at": "2025-10-01T00:00:00Z",
                 "lifecycle": "active"} for model_id in MODEL_IDS.values()]
        return web.json_response({"data": data, "has_more": False, "first_id": data[0]["id"],
                                  "last_id": data[-1]["id"]}, headers={"request-id": _request_id()})


# -- the shared behaviour table's view of Anthropic ---------------------------------------------------------------

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 408: "timeout_error", 409: "conflict_error", 413: "request_too_large",
    422: "invalid_request_error", 429: "rate_limit_error", 504: "timeout_error", 529: "overloaded_error",
}


def error_reply(status: int, headers: Mapping[str, str]) -> Reply:
    """Anthropic's error envelope for a status (`api_error` for other 5xx), with the `request-id` header."""
    request_id = _request_id()
    body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": f"fake error {status}"},
            "request_id": request_id}
    return Reply(status=status, body=body, headers={"request-id": request_id, **headers})


def text_events(*pieces: str, model: str = "claude-haiku-4-5-20251001") -> list[str]:
    """The opening of a real text stream (message_start, a text block, ping) and one text delta per piece."""
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"model": model, "id": "msg_fake02", "type": "message",
                                              "role": "assistant", "content": [], "stop_reason": None,
                                              "stop_sequence": None, "usage": _usage(1)}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
               for piece in pieces]
    return claude_sse(events)


#: The quoted mid-stream `event: error` frame (overloaded_error) of a real 200 stream (see PROVENANCE.md).
MIDSTREAM_ERROR_FILE = "anthropic/quoted__helicone_pr4678__midstream_event_error_overloaded.sse"
MIDSTREAM_ERROR_FRAME = fixture_path(MIDSTREAM_ERROR_FILE).read_text(encoding="utf-8")
#: A spend-limit 429 as the current SDK models it (`error.details.error_code`); no recording exists.
QUOTA_BODY = {"type": "error", "request_id": "req_fakequota",
              "error": {"type": "rate_limit_error", "details": {"error_code": "enforced_spend_limit_reached"},
                        "message": "Your organization has reached its monthly API usage limit."}}

TOOLS_TEXT = "I'll retrieve the secrets for both passwords you provided."


def recorded_usage(prompt: int, completion: int, total: int | None = None) -> dict[str, int]:
    return usage_dict(prompt, completion, total) | CLAUDE_DETAILS


def _vendor() -> Vendor:
    from llm.backends.claude import ClaudeBackend

    return Vendor(
        name="claude",
        backend_type=LLMBackendType.CLAUDE,
        backend_cls=ClaudeBackend,
        fake_cls=FakeClaude,
        api_key=API_KEY,
        model="claude-haiku-4-5",
        base_url=lambda server: server.url,
        generate_path="/v1/messages",
        error_reply=error_reply,
        quota_reply=Reply(status=429, body=QUOTA_BODY, headers={"request-id": "req_fakequota"}),
        text_sync=(replay("anthropic/mirascope__test_call_anthropic_claude_sonnet_4_0_sync.yaml"),
                   Expected("4200 + 42 = 4242", recorded_usage(17, 15), "stop", "claude-sonnet-4-20250514")),
        text_stream=(replay_file("anthropic/extracted__llm_anthropic__test_stream_events_text__0.sse",
                                 "text/event-stream"),
                     Expected("Hello", recorded_usage(10, 4), "stop", "claude-haiku-4-5-20251001")),
        tools_sync=(replay("anthropic/mirascope__test_call_with_tools_anthropic_claude_sonnet_4_0_sync.yaml", 0),
                    Expected(TOOLS_TEXT, recorded_usage(416, 109), "tool_calls", "claude-sonnet-4-20250514",
                             [("secret_retrieval_tool", {"password": "mellon"}),
                              ("secret_retrieval_tool", {"password": "radiance"})])),
        tools_stream=(replay_file("anthropic/extracted__mirascope__claude_sonnet_4_0_tools_stream__0.sse",
                                  "text/event-stream", chunk_size=97),
                      Expected(TOOLS_TEXT, recorded_usage(416, 109), "tool_calls", "claude-sonnet-4-20250514",
                               [("secret_retrieval_tool", {"password": "mellon"}),
                                ("secret_retrieval_tool", {"password": "radiance"})])),
        midstream_error=(StreamReply([*text_events("Hello", " wor"), MIDSTREAM_ERROR_FRAME]), "Hello wor"),
        malformed_chunk=StreamReply([*text_events("Hello"), "event: content_block_delta\ndata: {not json\n\n"]),
        dropped_stream=StreamReply(text_events("Hello", " there"), then="drop"),
        stainless=True,
    )


VENDOR = _vendor()
