"""The agent-layer fixtures (isolated configuration, fake OpenAI-protocol servers, quiet managers) for the tests that
reproduce how ScoutAgent's own code uses the layer."""

from __future__ import annotations

from tests.agents.conftest import configure, deepseek_fake, global_manager, manager, openai_fake, two_backends

__all__ = ["configure", "deepseek_fake", "global_manager", "manager", "openai_fake", "two_backends"]
