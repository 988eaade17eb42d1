"""The per-call fast paths give the verdict of the full checks they skip (llm/core/validation.py).

`validate_request` accepts the common message shape -- a dict of exactly `role` and ASCII string `content` -- at a
glance; whatever it accepts that way, the full message check must accept too, and whatever the full check refuses
must still be refused with the same field.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm.base import LLMRequest
from llm.core.validation import _check_message, _plain_message, validate_request
from llm.errors import LLMValidationError

ROLES = st.one_of(st.sampled_from(["system", "user", "assistant", "tool", "robot", ""]), st.none(), st.integers(),
                  st.lists(st.text(max_size=2), max_size=2))
CONTENTS = st.one_of(st.text(max_size=20), st.just("\ud800"), st.none(), st.integers(),
                     st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2), max_size=2))
MESSAGES = st.one_of(
    st.fixed_dictionaries({"role": ROLES, "content": CONTENTS}),
    st.dictionaries(st.sampled_from(["role", "content", "name", "tool_call_id", "tool_calls"]),
                    st.one_of(ROLES, CONTENTS), max_size=4),
)


def _full_verdict(message: Any) -> str | None:
    try:
        _check_message(0, message)
    except LLMValidationError as exc:
        return exc.field
    return None


@settings(max_examples=500, deadline=None)
@given(message=MESSAGES)
def test_a_message_the_fast_path_accepts_passes_the_full_check(message: dict[str, Any]) -> None:
    if _plain_message(message):
        assert _full_verdict(message) is None


@settings(max_examples=500, deadline=None)
@given(message=MESSAGES)
def test_validate_request_gives_the_full_checks_verdict_on_any_message(message: dict[str, Any]) -> None:
    try:
        validate_request(LLMRequest(messages=[message]))
    except LLMValidationError as exc:
        verdict: str | None = exc.field
    else:
        verdict = None
    expected = _full_verdict(message)
    if expected is None:
        assert verdict is None
    else:
        assert verdict is not None and verdict.startswith("messages[0]")


@pytest.mark.parametrize("message", [
    {"role": "tool", "content": "{}"},  # a tool result needs its tool_call_id: never the fast path
    {"role": "user", "content": "caf\u00e9 \ud800"},  # a lone surrogate: not ASCII, so fully checked
    {"role": ["user"], "content": "hi"},  # an unhashable role is refused, not a TypeError
])
def test_shapes_next_to_the_fast_path_are_refused_by_the_full_check(message: dict[str, Any]) -> None:
    assert not _plain_message(message)
    with pytest.raises(LLMValidationError) as caught:
        validate_request(LLMRequest(messages=[message]))
    assert caught.value.field is not None and caught.value.field.startswith("messages[0]")
