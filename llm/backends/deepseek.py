"""DeepSeek adapter: DeepSeek speaks the OpenAI Chat Completions protocol, so this is the OpenAI adapter with another
default URL and key variable (and, being another endpoint than OpenAI's, `max_tokens` for the output limit).

API reference: https://api-docs.deepseek.com/api/create-chat-completion
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from llm.backends.openai import OpenAIBackend
from llm.base import LLMConfig

__all__ = ["DEFAULT_DEEPSEEK_URL", "DeepSeekBackend"]

DEFAULT_DEEPSEEK_URL = "https://api.deepseek.com/v1"


class DeepSeekBackend(OpenAIBackend):
    """DeepSeek through `openai.AsyncOpenAI` pointed at DeepSeek's OpenAI-compatible endpoint."""

    display_name: ClassVar[str] = "DeepSeek"
    key_variable: ClassVar[str | None] = "SCOUT_DEEPSEEK_API_KEY"

    def __init__(self, config: LLMConfig) -> None:
        if not config.base_url:
            config = dataclasses.replace(config, base_url=DEFAULT_DEEPSEEK_URL)
        super().__init__(config)
        self.base_url = config.base_url
