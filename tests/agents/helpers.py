"""Helpers for the agent-layer tests: scripted OpenAI replies and a manager wired to fake OpenAI-protocol servers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from llm.config import ScoutConfig
from tests.fakes.server import Recorded, Reply

#: The `configure` fixture: sets SCOUT_* variables and rebuilds the global configuration.
Configure = Callable[..., ScoutConfig]


def completion_reply(text: Any, model: str = "gpt-4.1-mini") -> Reply:
    """A 200 `chat.completion` whose message content is `text` (a dict or list is sent as its JSON text)."""
    content = text if isinstance(text, str) else json.dumps(text)
    return Reply(body={
        "id": "chatcmpl-agent-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    })


def chat_requests(requests: list[Recorded]) -> list[Recorded]:
    """The chat-completion requests among those a fake saw."""
    return [request for request in requests if request.path.endswith("/chat/completions")]


def sent_text(request: Recorded) -> str:
    """All message contents of one recorded chat request, joined."""
    body: dict[str, Any] = request.body
    return "\n".join(str(message.get("content")) for message in body["messages"])
