"""scout-llm: one async interface over OpenAI, Anthropic Claude, Google Gemini and Ollama.

    from llm import LLMManager, LLMRequest
    from llm.backends import OpenAIBackend

Importing `llm` loads no vendor SDK; each adapter imports its SDK when a backend is constructed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm.base import LLMBackendType, LLMConfig, LLMRequest, LLMResponse, ToolCall
from llm.core.lazy import lazy_module
from llm.errors import *  # noqa: F403  (the error tree: `from llm import LLMError`)
from llm.errors import __all__ as _error_names

if TYPE_CHECKING:
    from llm.backends import ClaudeBackend, DeepSeekBackend, GeminiBackend, OllamaBackend, OpenAIBackend
    from llm.backends.base import LLMBackend
    from llm.manager import LLMManager, get_llm_manager, initialize_llm_backends
    from llm.sync import SyncClient, generate_sync, run_sync, stream_sync

__all__ = [
    "ClaudeBackend",
    "DeepSeekBackend",
    "GeminiBackend",
    "LLMBackend",
    "LLMBackendType",
    "LLMConfig",
    "LLMManager",
    "LLMRequest",
    "LLMResponse",
    "OllamaBackend",
    "OpenAIBackend",
    "SyncClient",
    "ToolCall",
    "generate_sync",
    "get_llm_manager",
    "initialize_llm_backends",
    "run_sync",
    "stream_sync",
]
__all__ += _error_names

# Loaded on first use, so that `import llm` stays cheap.
_LAZY = {
    "LLMBackend": "llm.backends.base",
    "LLMManager": "llm.manager",
    "get_llm_manager": "llm.manager",
    "initialize_llm_backends": "llm.manager",
    "ClaudeBackend": "llm.backends",
    "DeepSeekBackend": "llm.backends",
    "GeminiBackend": "llm.backends",
    "OllamaBackend": "llm.backends",
    "OpenAIBackend": "llm.backends",
    "SyncClient": "llm.sync",
    "generate_sync": "llm.sync",
    "run_sync": "llm.sync",
    "stream_sync": "llm.sync",
}


__getattr__, __dir__ = lazy_module(__name__, _LAZY, globals(), __all__)
