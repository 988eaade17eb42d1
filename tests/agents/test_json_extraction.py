"""extract_json, to_string_list and best_category: model replies in every wrapping come back as the documented type."""

from __future__ import annotations

import re
from typing import Any

import pytest

from llm.output.lenient import best_category, extract_json, to_string_list
from llm.utils import extract_json as extract_json_from_utils

NESTED = {"market_gaps": [{"gap": "a", "figures": {"tam": 1, "regions": [{"eu": 2}, {"us": [3, 4]}]}}], "n": 1}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"a": 1, "b": [1, 2]}', {"a": 1, "b": [1, 2]}),
        ('  ["x", "y"]\n', ["x", "y"]),
        ('```json\n{"a": {"b": 2}}\n```', {"a": {"b": 2}}),
        ('Sure, here it is:\n```json\n{"a": 1}\n```\nAnything else?', {"a": 1}),
        ('```\n["no", "language", "tag"]\n```', ["no", "language", "tag"]),
        ('```JSON\n{"upper": true}\n```', {"upper": True}),
        ('Here you go: {"a": 1, "b": "two"} Hope it helps!', {"a": 1, "b": "two"}),
        ('Insights: ["first", "second"] -- done', ["first", "second"]),
        ('{"text": "braces } and { in strings", "ok": true}', {"text": "braces } and { in strings", "ok": True}),
        ('Result:\n{"a": [1, 2,], "b": {"c": 3,},}\nThanks', {"a": [1, 2], "b": {"c": 3}}),
        ("The answer is 42", None),
    ],
)
def test_extracts_json_from_every_wrapping(reply: str, expected: Any) -> None:
    assert extract_json(reply) == expected


def test_nested_objects_come_out_whole_where_a_non_greedy_regex_truncates() -> None:
    import json

    reply = f"Analysis follows.\n{json.dumps(NESTED)}\nThat is all."
    assert extract_json(reply) == NESTED
    # The original's non-greedy match stops at the first closing brace and yields invalid JSON.
    truncated = re.search(r"\{.*?\}", reply, re.DOTALL)
    assert truncated is not None and truncated.group(0) != json.dumps(NESTED)


def test_the_longest_value_in_prose_wins_over_citation_brackets() -> None:
    reply = 'As shown in [1] and [2], the result is {"score": 80, "tags": ["a", "b"]}.'
    assert extract_json(reply) == {"score": 80, "tags": ["a", "b"]}


def test_expect_prefers_a_value_of_that_type() -> None:
    reply = 'Meta: {"k": 1, "longer": "object here"} and the list ["a", "b"]'
    assert extract_json(reply, expect=list) == ["a", "b"]
    assert extract_json(reply, expect=dict) == {"k": 1, "longer": "object here"}
    # Nothing of the expected type: the best value of any type is still returned, for the caller to coerce.
    assert extract_json('{"insights": ["x"]}', expect=list) == {"insights": ["x"]}


def test_first_parseable_fenced_block_is_used_and_code_blocks_are_skipped() -> None:
    reply = "```python\nprint({'not': json})\n```\nthen\n```json\n{\"real\": 1}\n```\n```json\n{\"second\": 2}\n```"
    assert extract_json(reply) == {"real": 1}


@pytest.mark.parametrize("garbage", ["", "   ", "no json here", "{not json", "}{", "[[[", "{'single': 'quotes'}",
                                     "```json\n{broken\n```"])
def test_garbage_gives_none(garbage: str) -> None:
    assert extract_json(garbage) is None


def test_non_string_input_gives_none() -> None:
    assert extract_json(None) is None  # type: ignore[arg-type]
    assert extract_json(b'{"a": 1}') is None  # type: ignore[arg-type]


def test_utils_reexports_the_same_helper() -> None:
    assert extract_json_from_utils is extract_json


@pytest.mark.parametrize(
    ("value", "fallback", "expected"),
    [
        (["a", " b ", "", None, 3], "", ["a", "b", "3"]),
        ([{"insight": "x"}, {"text": "y"}, {"other": 1}], "", ["x", "y", '{"other": 1}']),
        ({"insights": ["one", "two"], "meta": ["ignored"]}, "", ["one", "two"]),
        ({"whatever": ["p", "q"]}, "", ["p", "q"]),
        ({"summary": "only strings", "confidence": 0.9}, "", ["only strings"]),
        ("a single insight", "", ["a single insight"]),
        (None, "Insights:\n- first point\n* second point\n• third\n1. fourth\n2) fifth\n```\n\n", [
            "Insights:", "first point", "second point", "third", "fourth", "fifth"]),
        (42, "just prose", ["just prose"]),
        ({"sales": 3}, "Sales are flat.\n- Push upsells", ["Sales are flat.", "Push upsells"]),
        ([], "from the text", ["from the text"]),
    ],
)
def test_to_string_list_always_gives_strings(value: Any, fallback: str, expected: list[str]) -> None:
    assert to_string_list(value, fallback_text=fallback) == expected


@pytest.mark.parametrize(
    ("reply", "categories", "expected"),
    [
        ("negative", ["positive", "negative"], "negative"),
        ("Negative.", ["positive", "negative"], "negative"),
        ("Category: Positive", ["negative", "positive"], "positive"),
        ("smart home", ["home", "smart home"], "smart home"),
        ("smart home", ["smart home", "home"], "smart home"),
        ("This is about smart devices", ["art", "smart devices"], "smart devices"),
        ("The text is about art history", ["smart devices", "art"], "art"),
        ("I would say: billing issue, not a bug", ["bug", "billing issue"], "billing issue"),
        ("negatve", ["positive", "negative"], "negative"),
    ],
)
def test_best_category_is_not_order_dependent(reply: str, categories: list[str], expected: str) -> None:
    assert best_category(reply, categories) == expected
    assert best_category(reply, list(reversed(categories))) == expected


def test_best_category_falls_back_to_the_first_category() -> None:
    assert best_category("something else entirely", ["alpha", "beta"]) == "alpha"
    assert best_category("", ["beta", "alpha"]) == "beta"


@pytest.mark.parametrize("reply", ["[" * 20000, "{" * 20000, "[1," * 20000, '{"a": [1, {"b": ' * 5000,
                                   "x [ y { z " * 10000, '{"k": ' * 20000])
def test_pathological_replies_are_cheap(reply: str) -> None:
    import time

    started = time.perf_counter()
    assert extract_json(reply) is None
    assert time.perf_counter() - started < 1.0


def test_json_after_long_prose_is_found() -> None:
    assert extract_json("word " * 20000 + '{"ok": [1, {"n": 2}]} {stray') == {"ok": [1, {"n": 2}]}
