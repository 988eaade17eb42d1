"""A fake Ollama server: POST /api/chat (one JSON object, or NDJSON lines when streaming) and GET /api/tags.

It validates what the real server validates (a JSON body, `model`, Go-typed message fields, base64 `images`, tool-call
`arguments` as an object, `format`), streams by default like the real server (`"stream"` omitted means true), and
answers errors with Ollama's envelope `{"error": "..."}`. An unknown model (one of `missing_models`) gets Ollama's 404.
The default answer echoes the last user message; `options.num_predict` truncates it (`done_reason: "length"`).
Scripted replies (recordings, faults) take precedence. API: https://github.com/ollama/ollama/blob/main/docs/api.md
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from llm.accounting.usage import usage_dict
from llm.base import LLMBackendType
from tests.fakes.recordings import read_json, replay, replay_file
from tests.fakes.server import FakeServer, Recorded, Reply, StreamReply, json_error
from tests.fakes.vendor import Expected, Vendor

NDJSON = "application/x-ndjson"
TAGS_FIXTURE = "ollama/extracted__langchain__api_tags__0.json"
CREATED_AT = "2025-06-28T21:08:54.123456Z"
PROMPT_TOKENS = 7
#: Go's JSON type names, for the decoder errors Ollama returns on a wrongly typed field.
GO_TYPES: dict[str, tuple[type, str]] = {
    "role": (str, "string"), "content": (str, "string"), "thinking": (str, "string"), "tool_name": (str, "string"),
}
TIMINGS = {"total_duration": 1_234_567, "load_duration": 12_345, "prompt_eval_duration": 23_456,
           "eval_duration": 345_678}


def ollama_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_error(status, {"error": message}, headers)


def not_found_message(model: str) -> str:
    return f'model "{model}" not found, try pulling it first'


def chat_line(model: str, content: str = "", *, tool_calls: list[dict[str, Any]] | None = None,
              done: bool = False, done_reason: str = "stop", prompt_tokens: int = PROMPT_TOKENS,
              completion_tokens: int = 0) -> dict[str, Any]:
    """One /api/chat object with the real field set: a stream line, or (done=True) the final line / whole answer."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    line: dict[str, Any] = {"model": model, "created_at": CREATED_AT, "message": message, "done": done}
    if done:
        line.update(done_reason=done_reason, **TIMINGS, prompt_eval_count=prompt_tokens,
                    eval_count=completion_tokens)
    return line


def tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A tool call as Ollama sends it: no id, arguments as an object."""
    return {"function": {"name": name, "arguments": arguments}}


def ndjson(lines: Iterable[Mapping[str, Any] | str]) -> list[str]:
    return [(line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines]


def chat_reply(text: str = "", *, model: str = "llama3.2", tool_calls: list[dict[str, Any]] | None = None,
               done_reason: str = "stop", prompt_tokens: int = PROMPT_TOKENS, completion_tokens: int = 3) -> Reply:
    """A whole (non-streamed) /api/chat answer."""
    return Reply(body=chat_line(model, text, tool_calls=tool_calls, done=True, done_reason=done_reason,
                                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))


def chat_stream(pieces: Iterable[str] = (), *, model: str = "llama3.2",
                tool_calls: Iterable[list[dict[str, Any]]] = (), done_reason: str = "stop",
                prompt_tokens: int = PROMPT_TOKENS, completion_tokens: int = 3, final: bool = True,
                then: str = "end") -> StreamReply:
    """A streamed /api/chat answer: a line per text piece, a line per batch of tool calls, then the done line."""
    lines = [chat_line(model, piece) for piece in pieces]
    lines += [chat_line(model, tool_calls=batch) for batch in tool_calls]
    if final:
        lines.append(chat_line(model, done=True, done_reason=done_reason, prompt_tokens=prompt_tokens,
                               completion_tokens=completion_tokens))
    return StreamReply(ndjson(lines), content_type=NDJSON, then=then)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def _go_type_error(value: Any, go_type: str, field: str) -> str:
    kind = {str: "string", bool: "bool", int: "number", float: "number", list: "array", dict: "object"}.get(
        type(value), "value")
    return f"json: cannot unmarshal {kind} into Go struct field {field} of type {go_type}"


def _message_error(message: Any) -> str | None:
    """What Go's JSON decoder (or Ollama's handler) says about one message, or None when it is fine."""
    if not isinstance(message, dict):
        return _go_type_error(message, "api.Message", "ChatRequest.messages")
    for name, (py_type, go_type) in GO_TYPES.items():
        if name in message and not isinstance(message[name], py_type):
            return _go_type_error(message[name], go_type, f"ChatRequest.messages.{name}")
    for image in message.get("images") or []:
        try:
            base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError, TypeError):
            return "illegal base64 data at input byte 0"
    for call in message.get("tool_calls") or []:
        arguments = (call.get("function") or {}).get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            return _go_type_error(arguments, "api.ToolCallFunctionArguments",
                                  "ChatRequest.messages.tool_calls.function.arguments")
    return None


class FakeOllama(FakeServer):
    """Ollama on 127.0.0.1; base URL for the client: `server.url`. Models in `missing_models` are "not pulled"."""

    def __init__(self, missing_models: Iterable[str] = (), api_key: str | None = None) -> None:
        super().__init__()
        self.missing_models = set(missing_models)
        self.api_key = api_key  # a local Ollama has none; ollama.com and auth proxies want a bearer key
        self.route("POST", "/api/chat", self.chat)
        self.route("GET", "/api/tags", self.tags)

    @property
    def base_url(self) -> str:
        return self.url

    def _auth_error(self, recorded: Recorded) -> web.Response | None:
        if self.api_key is not None and recorded.headers.get("authorization") != f"Bearer {self.api_key}":
            return ollama_error(401, "unauthorized")
        return None

    def _validate(self, body: Any) -> web.Response | None:
        if body is None:
            return ollama_error(400, "missing request body")
        if not isinstance(body, dict):
            return ollama_error(400, "invalid character looking for beginning of value")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return ollama_error(400, "model is required")
        if not isinstance(body.get("messages", []), list):
            return ollama_error(400, _go_type_error(body["messages"], "[]api.Message", "ChatRequest.messages"))
        for message in body.get("messages") or []:
            error = _message_error(message)
            if error is not None:
                return ollama_error(400, error)
        fmt = body.get("format")
        if fmt not in (None, "", "json") and not isinstance(fmt, dict):
            return ollama_error(400, f'invalid format: {json.dumps(fmt)}; expected "json" or a valid JSON Schema')
        if not isinstance(body.get("options") or {}, dict):
            return ollama_error(400, _go_type_error(body["options"], "map[string]interface {}", "ChatRequest.options"))
        if body["model"] in self.missing_models:
            return ollama_error(404, not_found_message(body["model"]))
        return None

    async def chat(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        error = self._auth_error(recorded) or self._validate(recorded.body)
        if error is not None:
            return error
        body = recorded.body
        # Asked for JSON (format), the fake answers like a model that obeys: the last user text, verbatim.
        prefix = "" if body.get("format") else "echo: "
        words = (prefix + last_user_text(body.get("messages") or [])).split(" ")
        limit = (body.get("options") or {}).get("num_predict")
        done_reason = "stop"
        if isinstance(limit, int) and 0 < limit < len(words):
            words, done_reason = words[:limit], "length"
        model = body["model"]
        if not body.get("stream", True):  # Ollama streams unless told not to
            return web.json_response(chat_line(model, " ".join(words), done=True, done_reason=done_reason,
                                               completion_tokens=len(words)))
        pieces = [word if i == 0 else " " + word for i, word in enumerate(words)]
        return await self.stream(request, chat_stream(pieces, model=model, done_reason=done_reason,
                                                      completion_tokens=len(words)))

    async def tags(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        error = self._auth_error(recorded)
        if error is not None:
            return error
        return web.json_response(read_json(TAGS_FIXTURE))


# -- the shared behaviour table's view of Ollama ------------------------------------------------------------------

ERROR_MESSAGES = {
    401: "unauthorized",
    404: not_found_message("llama3.2"),
    500: "an error was encountered while running the model",
    502: "bad gateway",
}


def error_reply(status: int, headers: Mapping[str, str]) -> Reply:
    body = {"error": ERROR_MESSAGES.get(status, f"fake error {status}")}
    return Reply(status=status, body=body, headers=dict(headers))


def _text_lines(*pieces: str) -> list[str]:
    return ndjson(chat_line("llama3.2", piece) for piece in pieces)


RECORDED_JOKE = (
    'A joke about OpenTelemetry!\n\nWhy did the OpenTelemetry agent go to therapy?\n\nBecause it was struggling to '
    '"instrument" its feelings and had a lot of "traces" of anxiety!\n\n(Sorry, I know it\'s a bit of a "stretch", '
    'but I hope it brings a smile to your face!)'
)
RECORDED_STREAMED_JOKE = (
    "Why did the OpenTelemetry agent go to therapy?\n\nBecause it was feeling traced out and needed some "
    "instrumentation in its life!\n\n(Sorry, I know it's a bit of a stretch, but I hope it brought a smile to your "
    "face!)"
)


def _vendor() -> Vendor:
    from llm.backends.ollama import OllamaBackend

    return Vendor(
        name="ollama",
        backend_type=LLMBackendType.OLLAMA,
        backend_cls=OllamaBackend,
        fake_cls=FakeOllama,
        api_key="",  # a local Ollama takes no key
        model="llama3.2",
        base_url=lambda server: server.url,
        generate_path="/api/chat",
        error_reply=error_reply,
        quota_reply=None,  # Ollama has no quota error
        text_sync=(replay("ollama/openllmetry__test_ollama_chat_legacy.yaml"),
                   Expected(RECORDED_JOKE, usage_dict(17, 66), "stop", "llama3")),
        text_stream=(replay_file("ollama/extracted__openllmetry__streaming_chat__0.ndjson", NDJSON, chunk_size=97),
                     Expected(RECORDED_STREAMED_JOKE, usage_dict(17, 50), "stop", "llama3")),
        # No real /api/chat answer carrying message.tool_calls exists (tests/fixtures/PROVENANCE.md, "gaps");
        # tests/backends/test_ollama.py covers tool-call answers with the documented shape instead.
        tools_sync=None,
        tools_stream=None,
        midstream_error=(StreamReply([*_text_lines("Hello", " wor"),
                                      '{"error":"an error was encountered while running the model"}\n'],
                                     content_type=NDJSON),
                         "Hello wor"),
        malformed_chunk=StreamReply([*_text_lines("Hello"), "{not json\n"], content_type=NDJSON),
        dropped_stream=StreamReply(_text_lines("Hello", " there"), content_type=NDJSON, then="drop"),
        stainless=False,
    )


VENDOR = _vendor()
