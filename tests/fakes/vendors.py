"""Every vendor of the shared behaviour table."""

from __future__ import annotations

from dataclasses import replace

from tests.fakes.claude_fake import VENDOR as CLAUDE
from tests.fakes.gemini_fake import VENDOR as GEMINI
from tests.fakes.ollama_fake import VENDOR as OLLAMA
from tests.fakes.openai_fake import VENDOR as OPENAI
from tests.fakes.vendor import Vendor

VENDORS: list[Vendor] = [OPENAI, CLAUDE, OLLAMA, GEMINI]

#: The shared behaviour table also runs OpenAI and Claude on httpx2: the adapters send through the SDK's generic
#: `client.post` on the SDK's httpx2 client instead of its aiohttp one (llm/backends/sdk/transport.py).
WIRE_VARIANTS: list[Vendor] = [
    replace(vendor, variant="httpx", backend_options={"http_transport": "httpx"}) for vendor in (OPENAI, CLAUDE)
]
