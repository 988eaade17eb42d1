"""The agent side: `LLMAgentMixin`, its routing and analysis helpers, and one-shot calls (re-exported by `llm.utils`).

Where this sits among the layers: ARCHITECTURE.md.
"""
