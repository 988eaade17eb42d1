"""A fake Gemini API (Generative Language API v1beta): POST /v1beta/models/{model}:generateContent,
POST /v1beta/models/{model}:streamGenerateContent (`alt=sse`, CRLF framing like the real API) and GET /v1beta/models.

It validates what the real API validates (the `x-goog-api-key` key, unknown fields, non-empty contents and
parts, roles user/model, the temperature range, one function response per function call) and answers with Google's
error envelope `{"error": {"code", "message", "status", "details"?}}`. A bad key gets the recorded 400
INVALID_ARGUMENT / API_KEY_INVALID body. The default answer echoes the last user text; with `toolConfig` mode ANY it
calls the first allowed function instead. Scripted replies (recordings, faults) take precedence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from llm.accounting.usage import usage_dict
from llm.base import LLMBackendType
from tests.fakes.recordings import read_json, replay
from tests.fakes.server import FakeServer, Recorded, Reply, StreamReply, json_error
from tests.fakes.vendor import Expected, Vendor

API_KEY = "AIzaSy-test-gemini-key"
MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite", "gemini-2.0-flash", "gemini-3-flash-preview")
ROLES = {"user", "model"}
REQUEST_FIELDS = {"contents", "systemInstruction", "tools", "toolConfig", "safetySettings", "generationConfig",
                  "cachedContent", "labels", "serviceTier"}
GENERATION_FIELDS = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "candidateCount",
                     "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty", "frequencyPenalty",
                     "responseLogprobs", "logprobs", "responseModalities", "thinkingConfig", "speechConfig",
                     "mediaResolution", "imageConfig", "enableEnhancedCivicAnswers"}
#: google.rpc.Code names Google puts in `error.status` for each HTTP status.
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                408: "DEADLINE_EXCEEDED", 409: "ABORTED", 413: "INVALID_ARGUMENT", 422: "INVALID_ARGUMENT",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
                504: "DEADLINE_EXCEEDED", 529: "UNAVAILABLE"}
PROMPT_TOKENS = 7


def google_error(status: int, message: str, *, details: list[dict[str, Any]] | None = None,
                 headers: Mapping[str, str] | None = None) -> web.Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return json_error(status, {"error": error}, headers)


def invalid(message: str) -> web.Response:
    return google_error(400, message)


def sse_frames(chunks: list[dict[str, Any]]) -> list[str]:
    """`alt=sse` frames as Gemini sends them: `data: <json>` ended by CRLF CRLF."""
    return [f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks]


def last_user_text(contents: list[dict[str, Any]]) -> str:
    for content in reversed(contents):
        texts = [part["text"] for part in content.get("parts", []) if "text" in part]
        if content.get("role", "user") == "user" and texts:
            return " ".join(texts)
    return ""


def camel(name: str) -> str:
    """Proto JSON accepts a field's lowerCamelCase name and its proto (snake_case) name alike; the SDK sends both."""
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def field(message: Mapping[str, Any], name: str) -> Any:
    """A field by its lowerCamelCase name, whichever of its two JSON names the client used."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return message.get(name, message.get(snake))


def _count_parts(content: Mapping[str, Any], kind: str) -> int:
    return sum(1 for part in content.get("parts", []) if kind in {camel(key) for key in part})


def _check_contents(contents: Any) -> web.Response | None:
    if not isinstance(contents, list) or not contents:
        return invalid("* GenerateContentRequest.contents: contents is not specified\n")
    for i, content in enumerate(contents):
        if content.get("role", "user") not in ROLES:
            return invalid("Please use a valid role: user, model.")
        if not content.get("parts"):
            return invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n")
        responses = _count_parts(content, "functionResponse")
        previous = contents[i - 1] if i else {}
        if responses and responses != _count_parts(previous, "functionCall"):
            return invalid("Please ensure that the number of function response parts is equal to the number of "
                           "function call parts of the function call turn.")
    return None


def _check_generation_config(config: Any) -> web.Response | None:
    if not isinstance(config, dict):
        return None
    for name in config:
        if camel(name) not in GENERATION_FIELDS:
            return invalid(f'Invalid JSON payload received. Unknown name "{name}" at \'generation_config\': '
                           "Cannot find field.")
    temperature = config.get("temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        return invalid("* GenerateContentRequest.generation_config.temperature: must be in the range [0.0, 2.0]\n")
    return None


def validate_body(body: Any) -> web.Response | None:
    """The 400 the real API answers to a malformed generateContent body, or None."""
    if not isinstance(body, dict):
        return invalid("Invalid JSON payload received. Expected an object.")
    for name in body:
        if camel(name) not in REQUEST_FIELDS:
            return invalid(f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
    return _check_contents(body.get("contents")) or _check_generation_config(field(body, "generationConfig"))


def forced_function(body: Mapping[str, Any]) -> str | None:
    """The function a request forces (toolConfig mode ANY): the first allowed, else the first declared."""
    config = field(field(body, "toolConfig") or {}, "functionCallingConfig") or {}
    if config.get("mode") != "ANY":
        return None
    allowed = field(config, "allowedFunctionNames") or []
    declared = [d["name"] for tool in body.get("tools") or [] for d in field(tool, "functionDeclarations") or []]
    names: list[str] = [*allowed, *declared]
    return names[0] if names else None


class FakeGemini(FakeServer):
    """The Gemini API on 127.0.0.1; base URL for the SDK: `server.url` (the SDK appends `v1beta/...`)."""

    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.route("POST", "/v1beta/models/{model}:generateContent", self.generate)
        self.route("POST", "/v1beta/models/{model}:streamGenerateContent", self.stream_generate)
        self.route("GET", "/v1beta/models", self.models)

    @property
    def base_url(self) -> str:
        return self.url

    def _auth_error(self, recorded: Recorded) -> web.Response | None:
        key = recorded.headers.get("x-goog-api-key") or recorded.query.get("key")
        if not key:
            return google_error(403, "Method doesn't allow unregistered callers (callers without established "
                                     "identity). Please use API Key or other form of API consumer identity to call "
                                     "this API.")
        if key != self.api_key:
            return json_error(400, read_json("gemini/extracted__mirascope__gemini_api_key_invalid__0.json"))
        return None

    def _check(self, recorded: Recorded) -> web.Response | None:
        # Any model name is served (the shared table sends made-up ones); the real 404 is replayed from a recording.
        return self._auth_error(recorded) or validate_body(recorded.body)

    def answer_chunks(self, model: str, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The default answer as stream chunks (one per word, usage on each, finishReason on the last)."""
        function = forced_function(body)
        if function is not None:
            pieces: list[dict[str, Any]] = [{"functionCall": {"name": function, "args": {}}}]
        else:
            # Asked for JSON (responseMimeType), the fake answers like a model that obeys: the last user text.
            config = field(body, "generationConfig") or {}
            json_mode = field(config, "responseMimeType") == "application/json"
            words = (("" if json_mode else "echo: ") + last_user_text(body["contents"])).split(" ")
            pieces = [{"text": word if i == 0 else " " + word} for i, word in enumerate(words)]
        chunks = []
        for i, part in enumerate(pieces, start=1):
            candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": 0}
            if i == len(pieces):
                candidate["finishReason"] = "STOP"
            chunks.append({"candidates": [candidate],
                           "usageMetadata": {"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": i,
                                             "totalTokenCount": PROMPT_TOKENS + i},
                           "modelVersion": model, "responseId": "fake-response-id"})
        return chunks

    async def generate(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        error = self._check(recorded)
        if error is not None:
            return error
        chunks = self.answer_chunks(request.match_info["model"], recorded.body)
        parts = [part for chunk in chunks for part in chunk["candidates"][0]["content"]["parts"]]
        if parts and "text" in parts[0]:
            parts = [{"text": "".join(part["text"] for part in parts)}]
        answer = {**chunks[-1], "candidates": [{**chunks[-1]["candidates"][0], "content": {"parts": parts,
                                                                                          "role": "model"}}]}
        return web.json_response(answer)

    async def stream_generate(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        error = self._check(recorded)
        if error is not None:
            return error
        chunks = self.answer_chunks(request.match_info["model"], recorded.body)
        return await self.stream(request, StreamReply(sse_frames(chunks)))

    async def models(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        error = self._auth_error(recorded)
        if error is not None:
            return error
        return web.json_response({"models": [
            {"name": f"models/{name}", "version": "001", "displayName": name, "inputTokenLimit": 1048576,
             "outputTokenLimit": 65536, "supportedGenerationMethods": ["generateContent", "countTokens"]}
            for name in MODELS
        ]})


# -- the shared behaviour table's view of Gemini -------------------------------------------------------------------


def error_reply(status: int, headers: Mapping[str, str]) -> Reply:
    body = {"error": {"code": status, "message": f"fake error {status}", "status": STATUS_NAMES.get(status, "UNKNOWN")}}
    return Reply(status=status, body=body, headers=dict(headers))


#: A free-tier daily quota hit, in the shape the API documents (no real recording with details exists; see
#: tests/fixtures/PROVENANCE.md): QuotaFailure on a per-day quota, plus the RetryInfo Gemini adds to it.
QUOTA_BODY = {"error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details. For more information on "
               "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for "
               "metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 250, model: "
               "gemini-2.5-flash\nPlease retry in 20.5s.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"}, "quotaValue": "250"}]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [
            {"description": "Learn more about Gemini API quotas",
             "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"},
    ],
}}


def text_chunks(*pieces: str, model: str = "gemini-2.5-flash") -> list[str]:
    return sse_frames([{"candidates": [{"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}],
                        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": i, "totalTokenCount": 5 + i},
                        "modelVersion": model, "responseId": "r-1"} for i, piece in enumerate(pieces, start=1)])


MIDSTREAM_ERROR = {"error": {"code": 500, "message": "An internal error has occurred. Please retry or report in "
                             "https://developers.generativeai.google/guide/troubleshooting", "status": "INTERNAL"}}


def thoughts(count: int) -> dict[str, int]:
    """The `thoughtsTokenCount` of a recorded answer, as usage reports it."""
    return {"reasoning_tokens": count}


def _vendor() -> Vendor:
    from llm.backends.gemini import GeminiBackend

    tool_calls = [("secret_retrieval_tool", {"password": "mellon"}),
                  ("secret_retrieval_tool", {"password": "radiance"})]
    return Vendor(
        name="gemini",
        backend_type=LLMBackendType.GEMINI,
        backend_cls=GeminiBackend,
        fake_cls=FakeGemini,
        api_key=API_KEY,
        model="gemini-2.5-flash",
        base_url=lambda server: server.url,
        generate_path="enerateContent",  # matches both :generateContent and :streamGenerateContent
        error_reply=error_reply,
        quota_reply=Reply(status=429, body=QUOTA_BODY),
        text_sync=(replay("gemini/mirascope__test_call_google_gemini_2_5_flash_sync.yaml"),
                   Expected("To calculate 4200 + 42:\n\n*   **Hundreds, thousands:** 4200\n*   **Tens, ones:** 42\n\n"
                            "Adding them together:\n4200\n+  42\n-----\n4242\n\nSo, 4200 + 42 = **4242**.",
                            usage_dict(13, 77 + 25, 115) | thoughts(25), "stop", "gemini-2.5-flash")),
        text_stream=(replay("gemini/mirascope__test_call_google_gemini_2_5_flash_stream.yaml"),
                     Expected("To find the sum of 4200 + 42, we can align the numbers by their place values:\n\n"
                              "  4200\n+   42\n------\n  4242\n\nSo, 4200 + 42 = **4242**.",
                              usage_dict(13, 63 + 75, 151) | thoughts(75), "stop", "gemini-2.5-flash")),
        tools_sync=(replay("gemini/mirascope__test_call_with_tools_google_gemini_2_5_flash_sync.yaml", 0),
                    Expected("", usage_dict(70, 40 + 76, 186) | thoughts(76), "tool_calls", "gemini-2.5-flash",
                             tool_calls)),
        tools_stream=(replay("gemini/mirascope__test_call_with_tools_google_gemini_2_5_flash_stream.yaml", 0,
                             chunk_size=97),
                      Expected("", usage_dict(70, 40 + 61, 171) | thoughts(61), "tool_calls", "gemini-2.5-flash",
                               tool_calls)),
        midstream_error=(StreamReply([*text_chunks("Hello", " wor"), *sse_frames([MIDSTREAM_ERROR])]), "Hello wor"),
        malformed_chunk=StreamReply([*text_chunks("Hello"), "data: {not json\r\n\r\n"]),
        dropped_stream=StreamReply(text_chunks("Hello", " there"), then="drop"),
        stainless=False,
    )


VENDOR = _vendor()
