"""Usage detail per vendor, read from recorded vendor bodies (whole answers and streams) and from the SDKs' objects."""

from __future__ import annotations

import math
from typing import Any

import pytest

from llm.accounting.usage import anthropic_usage, gemini_usage, ollama_usage, openai_usage, usage_for_backend
from tests.observability.recorded import body, json_file, ndjson, sse_events


def _last_with(events: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return [event for event in events if event.get(key)][-1]


# -- OpenAI -----------------------------------------------------------------------------------------------------------


def test_openai_whole_answer_keeps_the_reported_zero_details() -> None:
    data = body("openai/mirascope__test_call_openai_gpt_4o_completions_sync.yaml")
    assert openai_usage(data["usage"]) == {"prompt_tokens": 16, "completion_tokens": 12, "total_tokens": 28,
                                           "cached_tokens": 0, "reasoning_tokens": 0}


def test_openai_stream_usage_chunk() -> None:
    events = sse_events("openai/extracted__mirascope__gpt_4o_completions_stream__0.sse")
    assert openai_usage(_last_with(events, "usage")["usage"]) == {
        "prompt_tokens": 16, "completion_tokens": 10, "total_tokens": 26, "cached_tokens": 0, "reasoning_tokens": 0}
    tool_events = sse_events("openai/extracted__llm__test_tool_use_basic__0_streamed_tool_call.sse")
    usage = openai_usage(_last_with(tool_events, "usage")["usage"])
    assert usage is not None and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_openai_cached_and_reasoning_tokens_and_deepseek_cache_hits() -> None:
    raw = {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
           "prompt_tokens_details": {"cached_tokens": 1920}, "completion_tokens_details": {"reasoning_tokens": 256}}
    assert openai_usage(raw) == {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                                 "cached_tokens": 1920, "reasoning_tokens": 256}
    deepseek = {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55, "prompt_cache_hit_tokens": 32,
                "prompt_cache_miss_tokens": 18}
    assert openai_usage(deepseek) == {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55,
                                      "cached_tokens": 32}


def test_openai_sdk_object() -> None:
    from openai.types import CompletionUsage

    raw = CompletionUsage.model_validate({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                                          "prompt_tokens_details": {"cached_tokens": 8}})
    assert openai_usage(raw) == {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "cached_tokens": 8}


# -- Anthropic --------------------------------------------------------------------------------------------------------


def test_anthropic_whole_answer() -> None:
    data = body("anthropic/mirascope__test_call_anthropic_claude_sonnet_4_0_sync.yaml")
    assert anthropic_usage(data["usage"]) == {"prompt_tokens": 17, "completion_tokens": 15, "total_tokens": 32,
                                              "cached_tokens": 0, "cache_creation_tokens": 0}


def test_anthropic_stream_start_then_delta() -> None:
    events = sse_events("anthropic/extracted__llm_anthropic__test_stream_events_text__0.sse")
    start = next(e for e in events if e["type"] == "message_start")
    delta = next(e for e in events if e["type"] == "message_delta")
    usage = anthropic_usage(start["message"]["usage"])
    usage = anthropic_usage(delta["usage"], usage)
    assert usage == {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "cached_tokens": 0,
                     "cache_creation_tokens": 0}


def test_anthropic_prompt_includes_cache_reads_and_writes() -> None:
    start = anthropic_usage({"input_tokens": 10, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200,
                             "output_tokens": 1})
    assert start == {"prompt_tokens": 1210, "completion_tokens": 1, "total_tokens": 1211, "cached_tokens": 1000,
                     "cache_creation_tokens": 200}
    # A message_delta with only the output count keeps the input side of message_start.
    assert anthropic_usage({"output_tokens": 42}, start) == {
        "prompt_tokens": 1210, "completion_tokens": 42, "total_tokens": 1252, "cached_tokens": 1000,
        "cache_creation_tokens": 200}


def test_anthropic_tool_stream_recording() -> None:
    events = sse_events("anthropic/extracted__mirascope__claude_sonnet_4_0_tools_stream__0.sse")
    usage = None
    for event in events:
        if event["type"] == "message_start":
            usage = anthropic_usage(event["message"]["usage"])
        elif event["type"] == "message_delta":
            usage = anthropic_usage(event["usage"], usage)
    assert usage is not None and usage["completion_tokens"] == events[-2]["usage"]["output_tokens"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


# -- Gemini -----------------------------------------------------------------------------------------------------------


def test_gemini_whole_answer_counts_thoughts_as_output_and_reasoning() -> None:
    meta = json_file("gemini/extracted__mirascope__gemini_2_5_flash_sync__0.json")["usageMetadata"]
    assert gemini_usage(meta) == {"prompt_tokens": 13, "completion_tokens": 77 + 25, "total_tokens": 115,
                                  "reasoning_tokens": 25}


def test_gemini_stream_last_usage() -> None:
    events = sse_events("gemini/extracted__mirascope__gemini_2_5_flash_stream__0.sse")
    assert gemini_usage(_last_with(events, "usageMetadata")["usageMetadata"]) == {
        "prompt_tokens": 13, "completion_tokens": 63 + 75, "total_tokens": 151, "reasoning_tokens": 75}


def test_gemini_prompt_block_omitted_candidates_count_is_zero_and_no_made_up_details() -> None:
    meta = json_file("gemini/vercel_ai__issue-19758-prompt-block.json")["usageMetadata"]
    usage = gemini_usage(meta)
    assert usage == {"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9}
    assert "cached_tokens" not in usage and "reasoning_tokens" not in usage


def test_gemini_cached_content_and_sdk_object() -> None:
    from google.genai.types import GenerateContentResponseUsageMetadata

    meta = GenerateContentResponseUsageMetadata(prompt_token_count=4000, candidates_token_count=10,
                                                total_token_count=4010, cached_content_token_count=3000)
    assert gemini_usage(meta) == {"prompt_tokens": 4000, "completion_tokens": 10, "total_tokens": 4010,
                                  "cached_tokens": 3000}
    assert gemini_usage(GenerateContentResponseUsageMetadata()) is None


# -- Ollama -----------------------------------------------------------------------------------------------------------


def test_ollama_whole_answer_and_stream() -> None:
    data = body("ollama/openllmetry__test_ollama_chat_legacy.yaml")
    assert ollama_usage(data) == {"prompt_tokens": 17, "completion_tokens": 66, "total_tokens": 83}
    final = ndjson("ollama/extracted__openllmetry__streaming_chat__0.ndjson")[-1]
    assert ollama_usage(final) == {"prompt_tokens": 17, "completion_tokens": 50, "total_tokens": 67}
    # Only the final object of a stream has counts.
    assert ollama_usage(ndjson("ollama/extracted__openllmetry__streaming_chat__0.ndjson")[0]) is None


def test_ollama_cached_prompt_without_prompt_count_stays_unknown() -> None:
    from ollama import ChatResponse

    usage = ollama_usage(ChatResponse(model="llama3", done=True, eval_count=5,
                                      message={"role": "assistant", "content": "hi"}))
    assert usage == {"completion_tokens": 5}


# -- unknown stays unknown --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, 1.5, True, "12", 10**13, None])
def test_a_value_that_is_not_a_count_is_not_reported(bad: Any) -> None:
    usage = openai_usage({"prompt_tokens": bad, "completion_tokens": 3,
                          "prompt_tokens_details": {"cached_tokens": bad}})
    assert usage == {"completion_tokens": 3}


def test_no_usage_is_none_not_zero() -> None:
    assert openai_usage(None) is None and gemini_usage(None) is None and ollama_usage({}) is None
    assert anthropic_usage(None) is None
    assert openai_usage({}) == {}


def test_integral_float_counts_are_accepted() -> None:
    assert openai_usage({"prompt_tokens": 3.0, "completion_tokens": 2}) == {
        "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@pytest.mark.parametrize(("backend", "raw", "prompt"), [
    ("openai", {"prompt_tokens": 3, "completion_tokens": 1}, 3),
    ("deepseek", {"prompt_tokens": 4, "completion_tokens": 1}, 4),
    ("local", {"prompt_tokens": 5, "completion_tokens": 1}, 5),
    ("claude", {"input_tokens": 6, "output_tokens": 1}, 6),
    ("gemini", {"promptTokenCount": 7, "candidatesTokenCount": 1}, 7),
    ("ollama", {"prompt_eval_count": 8, "eval_count": 1}, 8),
])
def test_usage_for_backend_picks_the_vendor_shape(backend: str, raw: dict[str, Any], prompt: int) -> None:
    usage = usage_for_backend(backend, raw)
    assert usage is not None and usage["prompt_tokens"] == prompt and usage["completion_tokens"] == 1
    assert usage_for_backend("custom", raw) is None
