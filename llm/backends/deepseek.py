"""DeepSeek adapter: DeepSeek speaks the OpenAI Chat Completions protocol, so this is the OpenAI adapter with another
default URL and key variable (and, being another endpoint than OpenAI's, `max_tokens` for the output limit).

Structured output: DeepSeek's JSON Output takes `response_format: {"type": "json_object"}` only (no `json_schema`),
and wants the expected shape described in the prompt, so the schema goes into a system message.
https://api-docs.deepseek.com/guides/json_mode

API reference: https://api-docs.deepseek.com/api/create-chat-completion
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

from llm.backends.openai import OpenAIBackend
from llm.base import LLMConfig, LLMRequest
from llm.output.spec import OutputSpec

__all__ = ["DEFAULT_DEEPSEEK_URL", "DeepSeekBackend"]

DEFAULT_DEEPSEEK_URL = "https://api.deepseek.com/v1"


class DeepSeekBackend(OpenAIBackend):
    """DeepSeek through `openai.AsyncOpenAI` pointed at DeepSeek's OpenAI-compatible endpoint."""

    display_name: ClassVar[str] = "DeepSeek"
    key_variable: ClassVar[str | None] = "SCOUT_DEEPSEEK_API_KEY"
    schema_rules: ClassVar[frozenset[str]] = frozenset({"object_root"})  # JSON Output answers an object

    def __init__(self, config: LLMConfig) -> None:
        if not config.base_url:
            config = dataclasses.replace(config, base_url=DEFAULT_DEEPSEEK_URL)
        super().__init__(config)
        self.base_url = config.base_url

    def _wire_format(self, spec: OutputSpec) -> dict[str, Any]:
        return {"type": "json_object"}

    def _native_request(self, request: LLMRequest, spec: OutputSpec | None) -> LLMRequest:
        native = super()._native_request(request, spec)
        if spec is None or spec.schema is None:
            return native
        shape = (f"Answer with one JSON object only, matching this JSON schema:\n"
                 f"{json.dumps(spec.schema, ensure_ascii=False)}")
        system = f"{native.system_prompt}\n\n{shape}" if native.system_prompt else shape
        return dataclasses.replace(native, system_prompt=system)
