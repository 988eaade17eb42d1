"""`scout-llm gap-finder`: the agents package's contribution to the `scout-llm` command.

    scout-llm gap-finder "pain point" ... [--file pains.json] [--context "..."] [--scope quick|focused|comprehensive]
                                          [--json]

The command is declared in pyproject.toml under the entry-point group `scout_llm.commands`, which `llm.cli` reads: the
agents package depends on `llm`, never the other way round.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from llm.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CLIError, Command, configured_manager, progress

__all__ = ["GAP_FINDER"]


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pain_points", nargs="*", help="pain points, one per argument")
    parser.add_argument("--file", type=Path, help="JSON file: a list of strings or of {description, severity} objects")
    parser.add_argument("--context", default="General market", help="market context")
    parser.add_argument("--scope", default="comprehensive", choices=["quick", "focused", "comprehensive"])
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def load_pain_points(args: argparse.Namespace) -> list[dict[str, Any]]:
    items: list[Any] = list(args.pain_points)
    if args.file is not None:
        try:
            loaded = json.loads(args.file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CLIError(f"cannot read {args.file}: {exc}", EXIT_USAGE) from exc
        if not isinstance(loaded, list):
            raise CLIError(f"{args.file} must hold a JSON list of pain points", EXIT_USAGE)
        items.extend(loaded)
    if not items:
        raise CLIError("give pain points as arguments or with --file", EXIT_USAGE)
    return [item if isinstance(item, dict) else {"description": str(item), "severity": "medium"} for item in items]


async def run_gap_finder(args: argparse.Namespace, out: TextIO) -> int:
    from agents.base import AgentInput
    from agents.gap_finder import GapFinderInput
    from agents.gap_finder_enhanced import EnhancedGapFinderAgent

    pain_points = load_pain_points(args)
    manager = await configured_manager()
    agent = EnhancedGapFinderAgent()
    agent._llm_manager = manager
    gap_input = GapFinderInput(validated_pain_points=pain_points, market_context=args.context,
                               analysis_scope=args.scope)
    async with progress("analysing market gaps"):
        result = await agent.execute(AgentInput(data=gap_input, metadata={"source": "cli"}))
    if not result.success:
        raise CLIError(f"gap analysis failed: {result.error}", EXIT_FAILED)
    output = result.result
    if args.json:
        payload = {"market_gaps": [gap.to_dict() for gap in output.market_gaps],
                   "recommendations": output.recommendations, "result": output.result,
                   "metadata": output.metadata}
        out.write(json.dumps(payload, indent=2, default=str) + "\n")
        return EXIT_OK
    out.write(f"Found {len(output.market_gaps)} market gaps ({result.execution_time:.1f}s)\n")
    for i, gap in enumerate(output.market_gaps, 1):
        out.write(f"{i}. {gap.gap_description}\n   opportunity {gap.opportunity_score:.0f}/100, "
                  f"competition {gap.competition_level}\n")
    insights = (output.result or {}).get("key_insights", [])
    if insights:
        out.write("Key insights:\n" + "".join(f"- {item}\n" for item in insights))
    return EXIT_OK


#: The command `llm.cli` loads from the `scout_llm.commands` entry point `gap-finder`.
GAP_FINDER = Command("gap-finder", "run the GapFinder analysis on pain points", _configure, run_gap_finder)
