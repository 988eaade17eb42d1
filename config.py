"""ScoutAgent compatibility: `from config import get_config`, as the original project and its README wrote it.

The settings live in `llm.config`; this top-level module only re-exports them. It serves the in-repo layout (scripts
run from the repository root, as in ScoutAgent) and is not part of the wheel: installed, a top-level `config` module
would shadow every user's own `config.py`. Installed code writes `from llm.config import get_config`.
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
