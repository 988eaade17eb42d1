"""What the `scout-llm` command shows and runs: its commands and their rendering (entry point: `llm.cli`)."""
