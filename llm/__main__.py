"""`python -m llm` runs the `scout-llm` command."""

import sys

from llm.cli import main

sys.exit(main())
