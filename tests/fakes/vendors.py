"""Every vendor of the shared behaviour table."""

from __future__ import annotations

from tests.fakes.claude_fake import VENDOR as CLAUDE
from tests.fakes.gemini_fake import VENDOR as GEMINI
from tests.fakes.ollama_fake import VENDOR as OLLAMA
from tests.fakes.openai_fake import VENDOR as OPENAI
from tests.fakes.vendor import Vendor

VENDORS: list[Vendor] = [OPENAI, CLAUDE, OLLAMA, GEMINI]
