"""Structured output (`LLMRequest.response_format`) on every vendor, for generate and stream alike.

Each test drives the real SDK through our adapter against the vendor's fake server. Asked for JSON, the fakes answer
like a model that obeys: the last user message, verbatim (tests/fakes/*: "JSON mode"). So a prompt that is valid JSON
comes back as the answer, and the repair request (whose last message is our list of problems) never does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, Field

from llm.backends.deepseek import DeepSeekBackend
from llm.base import LLMBackend, LLMBackendType, LLMRequest, LLMResponse, ResponseDone, TextDelta
from llm.errors import LLMError, LLMStructuredOutputError, LLMValidationError
from tests.fakes.openai_fake import VENDOR as OPENAI
from tests.fakes.server import FakeServer
from tests.fakes.vendor import Vendor
from tests.fakes.vendors import VENDORS

STREAM = pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
DEEPSEEK = dataclasses.replace(OPENAI, name="deepseek", backend_type=LLMBackendType.DEEPSEEK,
                               backend_cls=DeepSeekBackend, model="deepseek-chat")
ALL = [*VENDORS, DEEPSEEK]


class City(BaseModel):
    name: str = Field(max_length=40)
    population: int
    country: str | None = None


CITY_JSON = '{"name": "Paris", "population": 2100000}'


@pytest.fixture(params=ALL, ids=[v.label for v in ALL])
def vendor(request: pytest.FixtureRequest) -> Vendor:
    return request.param  # type: ignore[no-any-return]


def ask(prompt: str, response_format: Any = City) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": prompt}], max_tokens=200, response_format=response_format)


async def call(backend: LLMBackend, request: LLMRequest, stream: bool) -> LLMResponse:
    if not stream:
        return await backend.generate(request)
    final = None
    texts = []
    async for event in backend.stream(request):
        if isinstance(event, TextDelta):
            texts.append(event.text)
        elif isinstance(event, ResponseDone):
            final = event.response
    assert final is not None
    assert "".join(texts).endswith(final.content)
    return final


def generations(vendor: Vendor, server: FakeServer) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if vendor.generate_path in r.path]


# -- the native field on the wire, per vendor ------------------------------------------------------------------------


def _openai_wire(body: dict[str, Any]) -> dict[str, Any]:
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "City" and fmt["json_schema"]["strict"]
    schema: dict[str, Any] = fmt["json_schema"]["schema"]
    # strict-valid: closed, every property required, the optional one nullable, no defaults
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["name", "population", "country"]
    assert "default" not in schema["properties"]["country"]
    return schema


def _deepseek_wire(body: dict[str, Any]) -> dict[str, Any]:
    assert body["response_format"] == {"type": "json_object"}  # DeepSeek's JSON Output has no json_schema
    system = body["messages"][0]
    assert system["role"] == "system" and '"population"' in system["content"] and "JSON" in system["content"]
    return {"properties": {"name": {}, "population": {}}}


def _claude_wire(body: dict[str, Any]) -> dict[str, Any]:
    fmt = body["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    schema: dict[str, Any] = fmt["schema"]
    assert schema["additionalProperties"] is False  # anthropic.transform_schema closed it
    return schema


def _gemini_wire(body: dict[str, Any]) -> dict[str, Any]:
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema: dict[str, Any] = config["responseJsonSchema"]
    return schema


def _ollama_wire(body: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = body["format"]
    assert schema["type"] == "object"
    return schema


WIRE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "openai": _openai_wire, "deepseek": _deepseek_wire, "claude": _claude_wire, "gemini": _gemini_wire,
    "ollama": _ollama_wire,
}


@STREAM
async def test_the_vendors_native_field_is_sent_and_parsed_comes_back(
        vendor: Vendor, server: FakeServer, backend: LLMBackend, stream: bool) -> None:
    response = await call(backend, ask(CITY_JSON), stream)
    assert response.parsed == City(name="Paris", population=2100000)
    assert isinstance(response.parsed, City)
    bodies = generations(vendor, server)
    assert len(bodies) == 1
    schema = WIRE[vendor.name](bodies[0])
    assert {"name", "population"} <= set(schema["properties"])


@STREAM
async def test_a_schema_dict_gives_the_parsed_dict(vendor: Vendor, server: FakeServer, backend: LLMBackend,
                                                   stream: bool) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
              "required": ["ok", "n"], "additionalProperties": False}
    response_format = {"type": "json_schema", "json_schema": {"name": "flag", "schema": schema}}
    response = await call(backend, ask('{"ok": true, "n": 3}', response_format), stream)
    assert response.parsed == {"ok": True, "n": 3}
    assert len(generations(vendor, server)) == 1


async def test_without_response_format_parsed_is_none(vendor: Vendor, server: FakeServer,
                                                      backend: LLMBackend) -> None:
    response = await backend.generate(LLMRequest(messages=[{"role": "user", "content": CITY_JSON}], max_tokens=50))
    assert response.parsed is None and response.content.startswith("echo: ")


# -- invalid output: one repair, then the typed error ---------------------------------------------------------------


@STREAM
async def test_invalid_output_gets_one_repair_then_a_typed_error(
        vendor: Vendor, server: FakeServer, backend: LLMBackend, stream: bool) -> None:
    with pytest.raises(LLMStructuredOutputError) as caught:
        await call(backend, ask('{"name": "Paris"}'), stream)  # valid JSON, but population is missing
    error = caught.value
    assert isinstance(error, LLMError) and error.retryable is False
    assert error.errors and "not JSON" in error.errors[0]  # the repair answer (our own message) is not JSON at all
    assert "corrected JSON" in error.raw_text
    bodies = generations(vendor, server)
    assert len(bodies) == 2
    # the repair request sent the model's answer back, with what was wrong with it
    repair = str(bodies[1])
    assert "population" in repair and "Field required" in repair and "corrected JSON" in repair


@STREAM
async def test_text_that_is_not_json_is_repaired_once(vendor: Vendor, server: FakeServer, backend: LLMBackend,
                                                      stream: bool) -> None:
    with pytest.raises(LLMStructuredOutputError):
        await call(backend, ask("Paris has about two million people."), stream)
    assert len(generations(vendor, server)) == 2


# -- what a vendor cannot take is refused before any request --------------------------------------------------------

RECURSIVE = {"type": "json_schema", "json_schema": {"name": "tree", "schema": {
    "type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}}}}
ARRAY_ROOT = {"type": "json_schema", "json_schema": {"name": "names", "schema": {
    "type": "array", "items": {"type": "string"}}}}
REMOTE_REF = {"type": "json_schema", "json_schema": {"name": "remote", "schema": {
    "type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}}}

REFUSED: dict[str, list[tuple[Any, str]]] = {
    "openai": [(ARRAY_ROOT, "top level must be an object"), (REMOTE_REF, "outside the schema")],
    "deepseek": [(ARRAY_ROOT, "top level must be an object")],
    "claude": [(RECURSIVE, "recursive"), (ARRAY_ROOT, "top level must be an object"),
               ({"type": "json_object"}, "needs a JSON schema")],
    "gemini": [(RECURSIVE, "recursive"), (REMOTE_REF, "outside the schema")],
    "ollama": [(REMOTE_REF, "outside the schema")],
}


@STREAM
async def test_a_schema_the_vendor_cannot_take_is_refused_locally(
        vendor: Vendor, server: FakeServer, backend: LLMBackend, stream: bool) -> None:
    for response_format, reason in REFUSED[vendor.name]:
        with pytest.raises(LLMValidationError) as caught:
            await call(backend, ask(CITY_JSON, response_format), stream)
        assert caught.value.field == "response_format"
        assert reason in str(caught.value) and backend.display_name in str(caught.value)  # type: ignore[attr-defined]
    assert server.count() == 0


@pytest.mark.parametrize("response_format", [
    {"type": "json_schema"}, {"type": "xml"}, "City", int, {"type": "json_schema", "json_schema": {"schema": []}},
    {"type": "json_schema", "json_schema": {"name": "a b", "schema": {"type": "object"}}},
    {"type": "json_schema", "json_schema": {"schema": {"type": 5}}},
])
async def test_a_malformed_response_format_is_a_validation_error(
        vendor: Vendor, server: FakeServer, backend: LLMBackend, response_format: Any) -> None:
    with pytest.raises(LLMValidationError) as caught:
        await backend.generate(ask(CITY_JSON, response_format))
    assert caught.value.field is not None and caught.value.field.startswith("response_format")
    assert server.count() == 0


# -- through the manager: no retry, no failover on a schema failure unless asked -------------------------------------


@STREAM
async def test_the_manager_neither_retries_nor_fails_over_on_a_schema_failure(stream: bool) -> None:
    from tests.manager.helpers import gen_count, managed

    async with managed("openai", "claude") as (manager, servers):
        with pytest.raises(LLMStructuredOutputError):
            if stream:
                async for _ in manager.stream(ask('{"name": "Paris"}')):
                    pass
            else:
                await manager.generate(ask('{"name": "Paris"}'))
        assert gen_count("openai", servers[0]) == 2  # the answer and its one repair
        assert gen_count("claude", servers[1]) == 0


async def test_the_manager_fails_over_on_a_schema_failure_when_asked() -> None:
    from llm.errors import LLMAllBackendsFailedError
    from tests.manager.helpers import gen_count, managed

    async with managed("openai", "claude", structured_failover=True) as (manager, servers):
        with pytest.raises(LLMAllBackendsFailedError) as caught:
            await manager.generate(ask('{"name": "Paris"}'))
        assert [type(e) for e in caught.value.exceptions] == [LLMStructuredOutputError] * 2
        assert gen_count("openai", servers[0]) == 2 and gen_count("claude", servers[1]) == 2
        response = await manager.generate(ask(CITY_JSON))
        assert response.parsed == City(name="Paris", population=2100000)


async def test_a_repaired_answer_is_parsed_and_its_usage_adds_both_requests() -> None:
    from tests.fakes.server import Reply

    def completion(text: str) -> Reply:
        return Reply(body={"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

    async with OPENAI.fake_cls() as server:
        backend = OPENAI.backend(server)
        server.enqueue(completion('{"name": "Paris", "population": "many"}'))
        server.enqueue(completion(CITY_JSON))
        try:
            response = await backend.generate(ask("Tell me about Paris"))
        finally:
            await backend.cleanup()
    assert response.parsed == City(name="Paris", population=2100000)
    assert response.metadata["structured_repair"] is True
    assert response.usage == {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
    repair = server.requests[-1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"name": "Paris", "population": "many"}'}
    assert "population: Input should be a valid integer" in repair[-1]["content"]
