"""One-shot calls through the global manager: `quick_llm_generate`, `llm_summarize`, `llm_classify`, and the pieces
`LLMAgentMixin` shares with them (`shared_llm_manager`, `backend_name`, prompt and reply handling).

Re-exported by `llm.utils`, the documented import path.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from llm.base import LLMRequest, LLMResponse
from llm.core.names import canonical_backend
from llm.errors import LLMBackendError, LLMValidationError
from llm.output.lenient import best_category
from llm.prompts import AgentPrompt

if TYPE_CHECKING:
    from llm.manager import LLMManager

__all__ = ["backend_name", "llm_classify", "llm_summarize", "quick_llm_generate", "shared_llm_manager"]


def backend_name(value: Any) -> str | None:
    """A backend given as a string, an alias or an `LLMBackendType` -> its name (`canonical_backend`); None for None
    or empty."""
    return canonical_backend(value) or None if value is not None else None


def _prompt_messages(prompt: Any) -> list[dict[str, Any]]:
    if isinstance(prompt, AgentPrompt):
        return prompt.to_messages()
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    raise LLMValidationError(
        f"Prompt must be string or AgentPrompt, got {type(prompt).__name__}", field="prompt"
    )


def _content(response: LLMResponse) -> str:
    """The text of a response; a response flagged as failed (custom backends may do that) raises."""
    if not response.success:
        raise LLMBackendError(
            f"LLM generation failed: {response.error}", backend=response.backend_type, model=response.model
        )
    return response.content


# The lock is per event loop: an asyncio.Lock used from a second loop raises RuntimeError.
_init_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def shared_llm_manager() -> LLMManager:
    """The global manager; while it has no backends, `initialize_llm_backends()` runs first, under a per-loop lock so
    that concurrent first callers initialise it once."""
    from llm.manager import get_llm_manager, initialize_llm_backends

    manager = get_llm_manager()
    if manager.get_available_backends():
        return manager
    loop = asyncio.get_running_loop()
    lock = _init_locks.setdefault(loop, asyncio.Lock())
    async with lock:
        if not manager.get_available_backends():
            await initialize_llm_backends()
    return manager




async def quick_llm_generate(
    prompt: str, backend_type: str | None = None, temperature: float = 0.7, max_tokens: int = 1000
) -> str:
    """One user message through the global manager (initialised on first use); returns the answer text."""
    messages = _prompt_messages(prompt)
    manager = await shared_llm_manager()
    request = LLMRequest(messages=messages, temperature=temperature, max_tokens=max_tokens)
    return _content(await manager.generate(request, backend_name(backend_type)))


async def llm_summarize(text: str, max_length: int = 200, backend_type: str | None = None) -> str:
    """A summary of about `max_length` words or less."""
    prompt = (
        f"Please provide a concise summary of the following text in approximately {max_length} words or less:\n\n"
        f"{text}\n\nSummary:"
    )
    reply = await quick_llm_generate(prompt, backend_type=backend_type, temperature=0.3, max_tokens=max_length * 2)
    return reply.strip()


async def llm_classify(text: str, categories: list[str], backend_type: str | None = None) -> str:
    """The category (one of `categories`) that fits `text` best; "unknown" when `categories` is empty."""
    if not categories:
        return "unknown"
    prompt = (
        f"Classify the following text into one of these categories: {', '.join(categories)}\n"
        "Answer with the category name only.\n\n"
        f"Text: {text}\n\nCategory:"
    )
    reply = await quick_llm_generate(prompt, backend_type=backend_type, temperature=0.1, max_tokens=50)
    return best_category(reply, categories)
