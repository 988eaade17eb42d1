"""The backend adapters, one module per vendor.

Importing this package imports no vendor SDK (and not even the adapter modules until a name is used): each adapter
imports its SDK when a backend is constructed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm.core.lazy import lazy_module

if TYPE_CHECKING:
    from llm.backends.claude import ClaudeBackend
    from llm.backends.deepseek import DeepSeekBackend
    from llm.backends.gemini import GeminiBackend
    from llm.backends.local import LocalBackend
    from llm.backends.ollama import OllamaBackend
    from llm.backends.openai import OpenAIBackend

__all__ = ["ClaudeBackend", "DeepSeekBackend", "GeminiBackend", "LocalBackend", "OllamaBackend", "OpenAIBackend"]

_MODULES = {
    "ClaudeBackend": "llm.backends.claude",
    "DeepSeekBackend": "llm.backends.deepseek",
    "GeminiBackend": "llm.backends.gemini",
    "LocalBackend": "llm.backends.local",
    "OllamaBackend": "llm.backends.ollama",
    "OpenAIBackend": "llm.backends.openai",
}


__getattr__, __dir__ = lazy_module(__name__, _MODULES, globals(), __all__)
