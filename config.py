"""ScoutAgent compatibility: `from config import get_config`, as the original project and its README wrote it.

The settings live in `llm.config`; this top-level module only re-exports them.
"""

from llm.config import (
    APIConfig,
    LLMRoutingConfig,
    LLMSettings,
    ScoutConfig,
    get_config,
    init_config,
    reload_config,
)

__all__ = ["APIConfig", "LLMRoutingConfig", "LLMSettings", "ScoutConfig", "get_config", "init_config", "reload_config"]
