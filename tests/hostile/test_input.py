"""Hostile input (issue 12, items 1, 2, 3, 8): whatever a caller puts in a request or a config, the answer is an
`LLMValidationError` / `LLMConfigError` naming the field; nothing is sent, nothing is retried, no breaker moves.

Every case runs through the manager against every vendor's real adapter on its fake server, and asserts the request
count the server saw (0) and the backend's health afterwards (no error counted, breaker closed).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from llm.backends.sdk.adapter import SDKBackend
from llm.base import LLMConfig, LLMRequest, validate_request
from llm.errors import LLMConfigError, LLMError, LLMValidationError
from llm.manager import LLMManager
from tests.fakes.vendors import VENDORS
from tests.manager.helpers import backend_for, gen_count, managed

KINDS = [vendor.name for vendor in VENDORS]

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_DICT: dict[str, Any] = {}
_node = DEEP_DICT
for _ in range(200):
    _node["x"] = {}
    _node = _node["x"]


def user(**fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": "hi", **fields}


def call_message(call: Any) -> list[dict[str, Any]]:
    """A history with one assistant tool call `call` and its result."""
    return [user(), {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}]


def a_call(arguments: Any = "{}", call_id: Any = "c1", name: Any = "f") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}

#: (request fields, the field the error must name). Each of these crashed with a raw exception at 9875685.
HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"messages": [user()], "tools": ["not a dict"]}, "tools[0]"),
    ({"messages": [user()], "tools": [TOOL], "tool_choice": {"type": "function", "function": "f"}}, "tool_choice"),
    ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": {"a": 1}, "content": "hi"}]}, "messages[0].role"),
    ({"messages": [user(), {"role": "assistant", "content": "x", "tool_calls": 5}]}, "messages[1].tool_calls"),
    ({"messages": call_message(a_call(arguments=5))}, "messages[1].tool_calls[0].function.arguments"),
    ({"messages": call_message(a_call(arguments="{\"n\": " + "9" * 5000 + "}"))},
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": call_message(a_call(arguments={"n": 10**5000}))}, "messages[1].tool_calls[0].function.arguments"),
    ({"messages": call_message(a_call(arguments="{\"a\": " + DEEP + "}"))},
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": call_message(a_call(arguments=DEEP_DICT))}, "messages[1].tool_calls[0].function.arguments"),
    ({"messages": call_message(a_call(call_id=["c1"]))}, "messages[1].tool_calls[0].id"),
    ({"messages": [*call_message(a_call())[:2], {"role": "tool", "tool_call_id": "c1", "content": DEEP}]},
     "messages[2].content"),
    ({"messages": [*call_message(a_call())[:2], {"role": "tool", "tool_call_id": "c1", "content": "1", "name": 5}]},
     "messages[2].name"),
    ({"messages": [user()], "extra_params": {"stop": 5}}, "extra_params.stop"),
    ({"messages": [user()], "extra_params": {"response_format": {"type": "json_schema", "json_schema": "s"}}},
     "extra_params.response_format.json_schema"),
    ({"messages": [user()], "extra_params": {"response_format": {"type": "json_schema",
                                                                 "json_schema": {"name": "s", "schema": 5}}}},
     "extra_params.response_format.json_schema"),
    ({"messages": [user()], "tools": [{"type": "function", "function": {"name": "f", "parameters": DEEP_DICT}}]},
     "tools[0].function.parameters"),
    ({"messages": [user()], "temperature": math.nan}, "temperature"),
    ({"messages": [user()], "max_tokens": 10**30}, "max_tokens"),
    ({"messages": [user()], "extra_params": {"seed": 1.5}}, "extra_params.seed"),
    ({"messages": [user(content=[{"type": "text", "text": 5}])]}, "messages[0].content[0].text"),
    ({"messages": [user(content={"text": "hi"})]}, "messages[0].content"),
]


@pytest.mark.parametrize(("fields", "field"), HOSTILE, ids=[f"{i}-{f}" for i, (_, f) in enumerate(HOSTILE)])
def test_validation_names_the_field_of_any_odd_shape(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(LLMValidationError) as caught:
        validate_request(LLMRequest(**fields))
    assert caught.value.field == field, caught.value
    assert str(caught.value).startswith(field)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_hostile_requests_send_nothing_and_leave_the_breaker_alone(kind: str, stream: bool) -> None:
    """Items 1-3: every hostile request, five times over, through the manager: 0 requests, no retry, breaker closed."""
    async with managed(kind, breaker_min_calls=1, breaker_failure_rate=0.01) as (manager, (server,)):
        for fields, field in HOSTILE:
            for _ in range(2):
                with pytest.raises(LLMValidationError) as caught:
                    if stream:
                        [event async for event in manager.stream(LLMRequest(**fields))]
                    else:
                        await manager.generate(LLMRequest(**fields))
                assert caught.value.field == field
        health = manager.get_backend_health(kind)
    assert gen_count(kind, server) == 0
    assert health is not None and health.breaker_state == "closed" and health.error_count == 0
    assert health.requests == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_an_adapter_that_cannot_translate_a_request_raises_a_local_error(
    kind: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 2: anything but an LLMError out of request preparation is our side's error (LLMValidationError, field
    "request"), never a backend failure: 0 requests, no retry, breaker untouched after 5 such calls."""
    def broken(self: Any, request: LLMRequest, model: str, stream: bool) -> dict[str, Any]:
        raise RecursionError("maximum recursion depth exceeded")

    async with managed(kind, breaker_min_calls=1, breaker_failure_rate=0.01) as (manager, (server,)):
        monkeypatch.setattr(type(manager.backends[kind]), "_request_params", broken)
        for _ in range(5):
            with pytest.raises(LLMValidationError) as caught:
                await manager.generate(LLMRequest(messages=[user()]))
            assert caught.value.field == "request" and "RecursionError" in str(caught.value)
        health = manager.get_backend_health(kind)
    assert gen_count(kind, server) == 0
    assert health is not None and health.breaker_state == "closed" and health.consecutive_failures == 0


@pytest.mark.parametrize("kind", ["gemini", "ollama"])
async def test_a_tool_message_name_that_is_not_text_is_not_a_server_error(kind: str) -> None:
    """Item 3: `name=5` on a tool message was reported as a server error and retried (Gemini, Ollama)."""
    history = [*call_message(a_call())[:2], {"role": "tool", "tool_call_id": "c1", "content": "42", "name": 5}]
    async with managed(kind) as (manager, (server,)):
        with pytest.raises(LLMValidationError) as caught:
            await manager.generate(LLMRequest(messages=history))
    assert caught.value.field == "messages[2].name"
    assert not caught.value.__class__.__name__.endswith("ServerError")
    assert gen_count(kind, server) == 0


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 0, "5"])
@pytest.mark.parametrize("name", ["timeout", "retry_delay"])
def test_config_refuses_durations_that_defeat_deadlines(name: str, value: Any) -> None:
    """Item 8: `LLMConfig(timeout=nan)` was accepted and defeated every deadline."""
    if name == "retry_delay" and value == 0:
        return  # no delay between retries is a valid choice
    with pytest.raises(LLMConfigError) as caught:
        LLMConfig(backend_type="openai", model_name="m", **{name: value})
    assert name in str(caught.value)


async def test_a_nan_timeout_cannot_reach_a_call() -> None:
    """Item 8, end to end: the backend with the bad timeout is never built, so no call can run unbounded."""
    from tests.fakes.openai_fake import FakeOpenAI

    async with FakeOpenAI() as server:
        with pytest.raises(LLMConfigError):
            backend_for("openai", server, timeout=math.nan)
        with pytest.raises(ValueError, match="timeout"):
            LLMManager(timeout=math.nan)
    assert server.count() == 0


# -- property tests ---------------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10,
)
ANY = JSON | st.tuples(JSON) | st.sets(st.integers(), max_size=2) | st.builds(object) | st.just(b"\xff")
ROLE = st.sampled_from(["user", "assistant", "system", "tool", "model", ""]) | ANY
CALL = st.fixed_dictionaries({"id": st.text(max_size=3) | ANY, "function": st.fixed_dictionaries(
    {"name": st.text(max_size=3) | ANY, "arguments": st.text(max_size=8) | JSON})}) | ANY
MESSAGE = st.fixed_dictionaries(
    {"role": ROLE, "content": st.text(max_size=8) | ANY},
    optional={"tool_calls": st.lists(CALL, max_size=2) | ANY, "tool_call_id": st.text(max_size=3) | ANY,
              "name": st.text(max_size=3) | ANY},
) | ANY
FUNCTION = st.fixed_dictionaries({"name": st.text(max_size=3) | ANY}, optional={"parameters": JSON})
TOOLS = st.none() | st.lists(st.fixed_dictionaries({"type": st.just("function") | ANY, "function": FUNCTION}) | ANY,
                             max_size=2) | ANY
EXTRA = st.dictionaries(st.sampled_from(["top_p", "top_k", "stop", "seed", "response_format", "user",
                                         "model_name_override", "bogus"]), ANY, max_size=2) | ANY
class _Shape(BaseModel):
    name: str
    size: int | None = None


SCHEMA = st.fixed_dictionaries({"type": st.sampled_from(["object", "array", "string"]) | ANY},
                               optional={"properties": st.dictionaries(st.text(max_size=3), JSON, max_size=2) | ANY,
                                         "required": ANY, "$ref": st.sampled_from(["#", "#/$defs/a", "http://x"]),
                                         "$defs": st.dictionaries(st.just("a"), JSON, max_size=1)})
RESPONSE_FORMAT = st.none() | ANY | st.just(_Shape) | st.just(int) | st.fixed_dictionaries(
    {"type": st.sampled_from(["json_schema", "json_object", "text"]) | ANY},
    optional={"json_schema": st.fixed_dictionaries({"schema": SCHEMA | ANY},
                                                   optional={"name": st.text(max_size=4) | ANY, "strict": ANY})})
REQUESTS = st.builds(
    LLMRequest,
    response_format=RESPONSE_FORMAT,
    messages=st.lists(MESSAGE, max_size=3) | ANY,
    system_prompt=st.none() | st.text(max_size=5) | ANY,
    temperature=st.none() | st.floats() | ANY,
    max_tokens=st.none() | st.integers() | ANY,
    tools=TOOLS,
    tool_choice=st.none() | st.sampled_from(["auto", "none", "required", "any"]) | ANY,
    extra_params=EXTRA,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REQUESTS)
def test_validation_is_total(request: LLMRequest) -> None:
    """Nothing but LLMValidationError (with a field) leaves validation, whatever the request holds."""
    try:
        validate_request(request)
    except LLMValidationError as exc:
        assert exc.field
    # any other exception fails the test


@pytest.mark.parametrize("kind", KINDS)
def test_preparation_is_total_for_every_adapter(kind: str) -> None:
    """Validation plus each adapter's translation, with no network: only LLMErrors, for any request."""
    from tests.fakes.vendors import VENDORS as vendors

    vendor = next(v for v in vendors if v.name == kind)

    class _Url:
        url = "http://127.0.0.1:9"
        base_url = url

    backend = vendor.backend(_Url())
    assert isinstance(backend, SDKBackend)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(REQUESTS, st.booleans())
    def prepare(request: LLMRequest, stream: bool) -> None:
        scope = backend._errors(backend.config.model_name)
        try:
            with scope:
                spec = backend._output_spec(request)  # structured output: checked, then in the vendor's form
                scope.prepare(backend._native_request(request, spec), stream)
        except LLMError:
            pass

    prepare()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(REQUESTS)
async def test_through_the_manager_rejected_input_sends_nothing(request: LLMRequest) -> None:
    """The property end to end: an LLMRequest either is answered or rejected with an LLMError; when rejected as
    invalid, the server saw no request and the breaker did not move."""
    async with managed("openai", breaker_min_calls=1, breaker_failure_rate=0.01) as (manager, (server,)):
        try:
            await manager.generate(request)
        except LLMValidationError:
            assert server.count("/chat") == 0
        except LLMError:
            pass
        health = manager.get_backend_health("openai")
    assert health is not None and health.breaker_state == "closed"
