"""A fake OpenAI API: POST /v1/chat/completions (JSON and SSE) and GET /v1/models.

It validates what the real API validates (bearer key, model, messages, roles, temperature range, token limits) and
answers with OpenAI's error envelope `{"error": {"message", "type", "param", "code"}}`. The default answer echoes the
last user message; scripted replies (recordings, faults) take precedence.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from llm.accounting.usage import usage_dict
from llm.base import LLMBackendType
from tests.fakes.recordings import replay, replay_file
from tests.fakes.server import FakeServer, Recorded, Reply, StreamReply, json_error, sse
from tests.fakes.vendor import Expected, Vendor

API_KEY = "sk-test-openai"
ROLES = {"system", "developer", "user", "assistant", "tool"}
#: The usage details the recorded answers report (`prompt_tokens_details`, `completion_tokens_details`).
OPENAI_DETAILS: dict[str, int] = {"cached_tokens": 0, "reasoning_tokens": 0}


def openai_error(status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> web.Response:
    return json_error(status, {"error": {"message": message, "type": type_, "param": param, "code": code}}, headers)


def forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool a request forces the model to call ("required": the first), or None."""
    tools, choice = body.get("tools") or [], body.get("tool_choice")
    if not tools or choice in (None, "auto", "none"):
        return None
    if isinstance(choice, dict):
        wanted = choice.get("function", {}).get("name")
        return next((tool for tool in tools if tool["function"]["name"] == wanted), None)
    return dict(tools[0])


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            return str(content)
    return ""


def json_answer(text: str) -> str:
    """What an obeying model answers in JSON mode: the JSON object `text` holds (first "{" to last "}"), else `text`."""
    start, end = text.find("{"), text.rfind("}")
    return text[start:end + 1] if 0 <= start < end else text


class FakeOpenAI(FakeServer):
    """OpenAI Chat Completions on 127.0.0.1; base URL for the SDK: `server.url + "/v1"`."""

    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.route("POST", "/v1/chat/completions", self.chat)
        self.route("GET", "/v1/models", self.models)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def _auth_error(self, recorded: Recorded) -> web.Response | None:
        if recorded.headers.get("authorization") != f"Bearer {self.api_key}":
            return openai_error(401, "Incorrect API key provided: sk-te*****. You can find your API key at "
                                "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                                "invalid_api_key")
        return None

    def _validate(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return openai_error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        if not body.get("model"):
            return openai_error(400, "you must provide a model parameter", "invalid_request_error", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return openai_error(400, "'messages' must contain at least 1 item", "invalid_request_error",
                                "empty_array", "messages")
        for i, message in enumerate(messages):
            if message.get("role") not in ROLES:
                return openai_error(400, f"Invalid value for 'messages[{i}].role'", "invalid_request_error",
                                    "invalid_value", f"messages[{i}].role")
        temperature = body.get("temperature")
        if temperature is not None and not 0 <= temperature <= 2:
            return openai_error(400, "Invalid 'temperature': decimal above maximum value.", "invalid_request_error",
                                "decimal_above_max_value", "temperature")
        if "max_tokens" in body and "max_completion_tokens" in body:
            return openai_error(400, "max_tokens and max_completion_tokens cannot both be set",
                                "invalid_request_error", param="max_tokens")
        return None

    async def chat(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        error = self._auth_error(recorded) or self._validate(recorded.body)
        if error is not None:
            return error
        body = recorded.body
        forced = forced_tool(body)
        if forced is not None:
            return await self.tool_call(request, body, forced)
        # Asked for JSON (response_format), the fake answers like a model that obeys: the JSON object in the last user
        # text ("Extract the city from: {...}" answers the object alone), else that text verbatim.
        json_mode = (body.get("response_format") or {}).get("type") in ("json_object", "json_schema")
        asked = last_user_text(body["messages"])
        text = json_answer(asked) if json_mode else "echo: " + asked
        words = text.split(" ")
        usage = {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body["model"],
                "system_fingerprint": "fp_fake"}
        if not body.get("stream"):
            return web.json_response({
                **base, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage,
            })
        chunks: list[dict[str, Any]] = [{**base, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            chunks.append({**base, "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        chunks.append({**base, "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        frames = [*sse(chunks), "data: [DONE]\n\n"]
        return await self.stream(request, StreamReply(frames))

    async def tool_call(self, request: web.Request, body: dict[str, Any], tool: dict[str, Any]) -> web.StreamResponse:
        """A forced tool call (tool_choice "required" or a named function): arguments from the schema's required
        properties, with placeholder values."""
        function = tool["function"]
        schema = function.get("parameters") or {}
        placeholders = {"string": "example", "integer": 1, "number": 1.5, "boolean": True}
        arguments = json.dumps({name: placeholders.get(spec.get("type"))
                                for name, spec in (schema.get("properties") or {}).items()
                                if name in (schema.get("required") or [])})
        call = {"id": "call_fake_1", "type": "function", "function": {"name": function["name"], "arguments": arguments}}
        usage = {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            return web.json_response({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                 "finish_reason": "tool_calls"}]})
        delta = {"tool_calls": [{"index": 0, **call}]}
        chunks = [{**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                  {**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
                  {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}]
        return await self.stream(request, StreamReply([*sse(chunks), "data: [DONE]\n\n"]))

    async def models(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        error = self._auth_error(recorded)
        if error is not None:
            return error
        return web.json_response({"object": "list", "data": [
            {"id": name, "object": "model", "created": 1700000000, "owned_by": "system"}
            for name in ("gpt-4.1-mini", "gpt-4o", "gpt-4o-mini")
        ]})


# -- the shared behaviour table's view of OpenAI ------------------------------------------------------------------

ERROR_TYPES = {
    400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None), 404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", None), 409: ("conflict", None), 413: ("invalid_request_error", None),
    422: ("invalid_request_error", None), 429: ("requests", "rate_limit_exceeded"),
}


def error_reply(status: int, headers: Mapping[str, str]) -> Reply:
    type_, code = ERROR_TYPES.get(status, ("server_error", None))
    body = {"error": {"message": f"fake error {status}", "type": type_, "param": None, "code": code}}
    return Reply(status=status, body=body, headers=dict(headers))


def _text_chunks(*pieces: str) -> list[str]:
    return sse({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1-mini",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]} for piece in pieces)


def recorded_usage(prompt: int, completion: int, total: int | None = None) -> dict[str, int]:
    return usage_dict(prompt, completion, total) | OPENAI_DETAILS


def _vendor() -> Vendor:
    from llm.backends.openai import OpenAIBackend

    return Vendor(
        name="openai",
        backend_type=LLMBackendType.OPENAI,
        backend_cls=OpenAIBackend,
        fake_cls=FakeOpenAI,
        api_key=API_KEY,
        model="gpt-4.1-mini",
        base_url=lambda server: server.url + "/v1",
        generate_path="/chat/completions",
        error_reply=error_reply,
        quota_reply=replay_file("openai/vercel_ai__openai-error.1.json", "application/json", status=429),
        text_sync=(replay("openai/mirascope__test_call_openai_gpt_4o_completions_sync.yaml"),
                   Expected("\\(4200 + 42 = 4242\\).", recorded_usage(16, 12, 28), "stop", "gpt-4o-2024-08-06")),
        text_stream=(replay_file("openai/extracted__mirascope__gpt_4o_completions_stream__0.sse", "text/event-stream"),
                     Expected("4200 + 42 equals 4242.", recorded_usage(16, 10, 26), "stop", "gpt-4o-2024-08-06")),
        tools_sync=(replay("openai/llm__test_tool_use_chain_of_two_calls.yaml", 0),
                    Expected("", recorded_usage(92, 17, 109), "tool_calls", "gpt-4o-mini-2024-07-18",
                             [("lookup_population", {"country": "Crumpet"})])),
        tools_stream=(replay_file("openai/extracted__llm__test_tool_use_basic__0_streamed_tool_call.sse",
                                  "text/event-stream", chunk_size=97),
                      Expected("", recorded_usage(54, 20, 74), "tool_calls", "gpt-4o-mini-2024-07-18",
                               [("multiply", {"a": 1231, "b": 2331})])),
        midstream_error=(StreamReply([*_text_chunks("Hello", " wor"),
                                      *sse([{"error": {"message": "The server had an error while processing "
                                                       "your request.", "type": "server_error"}}])]),
                         "Hello wor"),
        malformed_chunk=StreamReply([*_text_chunks("Hello"), "data: {not json\n\n"]),
        dropped_stream=StreamReply(_text_chunks("Hello", " there"), then="drop"),
        stainless=True,
    )


VENDOR = _vendor()
