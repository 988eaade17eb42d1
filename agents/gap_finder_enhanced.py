"""Market gap analysis driven by an LLM: `EnhancedGapFinderAgent`.

Each stage (plan, think, act) sends one short prompt from `agents/prompts/gap_finder_agent/` and asks for structured
output (`llm_generate_structured`): the backend sends its vendor's native form (OpenAI json_schema, Claude's output
format, Gemini's response schema, Ollama's format, a grammar on the embedded model) and the answer comes back
validated. The schemas are made for small models too: short bounded strings, at most five items per list, and enums
wherever the domain has them (phases, severity, competition, opportunity, market size), which the rules turn into
figures. An answer that stays invalid after its one repair request makes that stage fall back to the rule-based
analysis of `agents.gap_finder`, and the output says so:

* `output.metadata["stages"]`: `{"plan": "llm" | "rules", "think": ..., "act": ...}`: who produced each stage;
* `output.metadata["llm_enhanced"]`: True only when the model's output was used in at least one stage;
* `output.metadata["fallbacks"]` / `["fallback_reasons"]`: the stages the rules produced, and why.

A failing LLM call (no backend, auth, timeout...) is not papered over: `execute` returns `success=False` with the error
text.

    agent = EnhancedGapFinderAgent()          # uses whatever backends are configured
    output = await agent.execute(AgentInput(data=GapFinderInput(...), metadata={}))
    output.result.market_gaps, output.result.result["key_insights"], output.result.metadata["stages"]

Routing: the calls carry `task_type="plan"|"think"|"act"`, so `agent.set_task_backend("act", "claude")` sends one
stage elsewhere; otherwise the `SCOUT_LLM_AGENT_GAP_FINDER_*` routes, the global default, then the manager's default.
"""

from __future__ import annotations

import math
import re
import time
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field

from agents.base import AgentInput, BaseAgent
from agents.gap_finder import (
    FALLBACK_PHASES,
    SEVERITY_WEIGHTS,
    GapFinderInput,
    GapFinderOutput,
    MarketGap,
    _landscape,
    _profile_for,
    build_gap_output,
    gap_input_from,
    key_insights_for,
    pain_point_text,
    prioritize,
    result_summary,
    risk_assessment_for,
    rule_based_plan,
    rule_based_thoughts,
)
from llm.errors import LLMStructuredOutputError
from llm.prompts import load_prompt_template
from llm.utils import LLMAgentMixin

__all__ = ["ActReply", "EnhancedGapFinderAgent", "GapReply", "PlanReply", "ThemeReply", "ThoughtsReply",
           "parse_money"]

# -- reading numbers the way models write them -------------------------------------------------------------------

MONEY_SCALES = {"": 1.0, "k": 1e3, "thousand": 1e3, "m": 1e6, "mm": 1e6, "mn": 1e6, "million": 1e6, "b": 1e9,
                "bn": 1e9, "billion": 1e9, "t": 1e12, "tn": 1e12, "trillion": 1e12}
_MONEY = re.compile(r"^(?:usd|us\$|\$|€|£)?([0-9][0-9,]*(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)([a-z]*?)(?:usd|dollars)?$")


def parse_money(value: Any) -> float:
    """A money figure as a float: 1200, "1,200", "$1.2B", "1.2 billion USD", "~$300M".

    Raises:
        ValueError: anything else (ranges, words, negative or non-finite numbers); pydantic reports it cleanly.
    """
    if isinstance(value, bool):
        raise ValueError("a money figure must be a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        compact = re.sub(r"[\s~≈]", "", value.lower()).removeprefix("approximately").removeprefix("about")
        match = _MONEY.match(compact)
        if match is None or match.group(2) not in MONEY_SCALES:
            raise ValueError(f"not a money figure: {value!r}")
        number = float(match.group(1).replace(",", "")) * MONEY_SCALES[match.group(2)]
    else:
        raise ValueError(f"not a money figure: {value!r}")
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a usable money figure: {value!r}")
    return number



# -- what each stage asks the model for ------------------------------------------------------------------------------

Level = Literal["low", "medium", "high"]
Phase = Literal[
    "pain_point_clustering", "market_research", "competitive_analysis", "gap_identification", "opportunity_scoring",
    "risk_assessment", "recommendation_generation",
]
Name = Annotated[str, Field(min_length=3, max_length=60)]
Line = Annotated[str, Field(min_length=3, max_length=160)]

#: What the enums mean in figures: opportunity -> score (0-100), market size -> US dollars (total addressable).
OPPORTUNITY_SCORES = {"low": 40.0, "medium": 62.0, "high": 82.0}
MARKET_SIZES = {"small": 2.5e8, "medium": 1.0e9, "large": 5.0e9}
SAM_SHARE, SOM_SHARE = 0.3, 0.05


class PlanReply(BaseModel):
    """The plan stage: the phases to run, in order, and the one thing to watch."""

    phases: list[Phase] = Field(min_length=1, max_length=7)
    focus: Line


class ThemeReply(BaseModel):
    """One market theme: a name, what it is about, how severe, and the numbers of the pain points it groups."""

    name: Name
    description: Line
    severity: Level
    pain_points: list[int] = Field(min_length=1, max_length=10)


class ThoughtsReply(BaseModel):
    """The think stage: the themes and the key insights."""

    themes: list[ThemeReply] = Field(min_length=1, max_length=5)
    insights: list[Line] = Field(min_length=1, max_length=3)


class GapReply(BaseModel):
    """One market gap, in words and levels; the rules turn the levels into figures."""

    description: Line
    segment: Name
    solution: Line
    competition: Level
    opportunity: Level
    market_size: Literal["small", "medium", "large"]


class ActReply(BaseModel):
    """The act stage: the gaps and the recommendations."""

    gaps: list[GapReply] = Field(min_length=1, max_length=5)
    recommendations: list[Line] = Field(min_length=1, max_length=3)


ReplyT = TypeVar("ReplyT", bound=BaseModel)


def _numbered(pain_points: list[Any], limit: int) -> str:
    return "\n".join(f"{i}. {pain_point_text(point)}" for i, point in enumerate(pain_points[:limit], start=1))


def _theme_from(reply: ThemeReply, pain_points: list[Any]) -> dict[str, Any]:
    """A model's theme in the shape the rules use (pain point numbers resolved; unknown numbers dropped)."""
    covered = list(dict.fromkeys(n for n in reply.pain_points if 1 <= n <= len(pain_points)))
    texts = [pain_point_text(pain_points[n - 1]) for n in covered]
    return {"theme_name": reply.name, "description": reply.description, "pain_points": texts,
            "frequency": max(1, len(texts)), "severity": reply.severity,
            "severity_score": SEVERITY_WEIGHTS[reply.severity], "segments": []}


def _gap_from(reply: GapReply, gap_input: GapFinderInput) -> MarketGap:
    """A model's gap as a `MarketGap`: its words as given, its levels turned into figures, barriers and risks from
    the rules' table for the theme its words match."""
    profile = _profile_for({"theme_name": reply.description, "description": reply.solution})
    tam = MARKET_SIZES[reply.market_size] if gap_input.include_market_sizing else 0.0
    return MarketGap(
        gap_description=reply.description, market_size=tam, competition_level=reply.competition,
        opportunity_score=OPPORTUNITY_SCORES[reply.opportunity], target_segments=[reply.segment],
        solution_ideas=[reply.solution], barriers_to_entry=list(profile.barriers), estimated_tam=tam,
        estimated_sam=tam * SAM_SHARE, estimated_som=tam * SAM_SHARE * SOM_SHARE,
        risk_factors=list(profile.risks),
        timeline_to_market="6-12 months" if reply.competition == "low" else "12-18 months",
    )


class EnhancedGapFinderAgent(BaseAgent, LLMAgentMixin):
    """LLM-driven market gap analysis with a rule-based fallback per stage; see the module docstring."""

    llm_name_defaults = False  # no hard-coded backend: whatever the caller or the configuration says
    prompt_folder = "gap_finder_agent"
    max_pain_points_in_prompt = 30
    max_themes_in_prompt = 5
    #: Sampling of the three calls: low temperature for an analysis; room for the bounded answers.
    temperature = 0.2
    max_tokens = {"plan": 200, "think": 700, "act": 900}

    def __init__(self, config: Any | None = None, agent_id: str | None = None, preferred_backend: str | None = None,
                 name: str = "gap_finder_agent") -> None:
        super().__init__(name=name, agent_id=agent_id, config=config, preferred_backend=preferred_backend)
        self.description = "AI-powered market gap analysis with LLM insights"

    def _prompt(self, stage: str, **substitutions: Any) -> str:
        return load_prompt_template(f"{stage}.prompt", agent_name=self.prompt_folder, substitutions=substitutions)

    async def _ask(self, stage: str, model: type[ReplyT], **substitutions: Any) -> tuple[ReplyT | None, str]:
        """(the model's validated answer, "") or (None, why the stage falls back to the rules). Only an answer that
        stayed invalid after its repair falls back; any other failure of the call is raised."""
        try:
            reply: ReplyT = await self.llm_generate_structured(
                self._prompt(stage, **substitutions), model, task_type=stage, temperature=self.temperature,
                max_tokens=self.max_tokens[stage])
        except LLMStructuredOutputError as exc:
            reason = f"the model's answer did not match the schema: {'; '.join(exc.errors[:2]) or exc}"
            self.log(f"{stage}: {reason}; used the rule-based analysis", level="warning")
            return None, reason
        return reply, ""

    async def plan(self, agent_input: AgentInput) -> dict[str, Any]:
        gap_input = gap_input_from(agent_input)
        reply, reason = await self._ask(
            "plan", PlanReply,
            pain_points_count=len(gap_input.validated_pain_points), market_context=gap_input.market_context,
            analysis_scope=gap_input.analysis_scope, phases=", ".join(FALLBACK_PHASES))
        if reply is None:
            return {**rule_based_plan(gap_input), "fallback_reason": reason}
        return {**rule_based_plan(gap_input), "phases": list(dict.fromkeys(reply.phases)),
                "special_considerations": [reply.focus], "source": "llm"}

    async def think(self, agent_input: AgentInput, plan: dict[str, Any]) -> dict[str, Any]:
        gap_input = gap_input_from(agent_input)
        points = gap_input.validated_pain_points[: self.max_pain_points_in_prompt]
        reply, reason = await self._ask(
            "think", ThoughtsReply,
            market_context=gap_input.market_context, pain_points=_numbered(points, len(points)))
        if reply is None:
            return {**rule_based_thoughts(gap_input), "fallback_reason": reason}
        themes = [_theme_from(theme, points) for theme in reply.themes]
        count = len(gap_input.validated_pain_points)
        return {
            "market_themes": themes, "key_insights": list(reply.insights) or key_insights_for(themes, count),
            "data_complexity": "low" if count < 5 else "medium" if count < 20 else "high",
            "analysis_scope": gap_input.analysis_scope, "pain_points_count": count,
            "expected_insights": len(themes), "source": "llm",
        }

    async def act(self, agent_input: AgentInput, plan: dict[str, Any], thoughts: dict[str, Any]) -> GapFinderOutput:
        started = time.perf_counter()
        gap_input = gap_input_from(agent_input)
        themes: list[dict[str, Any]] = thoughts["market_themes"]
        shown = themes[: self.max_themes_in_prompt]
        reply, reason = await self._ask(
            "act", ActReply,
            market_context=gap_input.market_context,
            themes="\n".join(f"- {t['theme_name']} ({t['severity']}): {t.get('description', '')}" for t in shown))
        if reply is None:
            output = build_gap_output(gap_input, themes, thoughts["key_insights"])
        else:
            output = self._output_from_reply(reply, gap_input, themes, thoughts["key_insights"])
        stages = {"plan": plan.get("source", "rules"), "think": thoughts.get("source", "rules"),
                  "act": "rules" if reply is None else "llm"}
        reasons = {"plan": plan.get("fallback_reason"), "think": thoughts.get("fallback_reason"), "act": reason}
        fallbacks = {stage: str(reasons[stage]) for stage, source in stages.items() if source == "rules"}
        output.execution_time = time.perf_counter() - started
        output.metadata = {
            "llm_enhanced": "llm" in stages.values(), "prompt_driven": True, "stages": stages,
            "market_themes_count": len(themes), "pain_points_count": len(gap_input.validated_pain_points),
            "fallbacks": list(fallbacks), "fallback_reasons": fallbacks,
        }
        output.result = {**(output.result or {}), "fallbacks": list(fallbacks), "stages": stages}
        self.log(f"found {len(output.market_gaps)} market gap(s); stages: {stages}")
        return output

    def _output_from_reply(self, reply: ActReply, gap_input: GapFinderInput, themes: list[dict[str, Any]],
                           key_insights: list[str]) -> GapFinderOutput:
        unique: dict[str, GapReply] = {}
        for gap in reply.gaps:  # small models repeat themselves: one gap per description
            unique.setdefault(gap.description.strip().lower(), gap)
        gaps = [_gap_from(gap, gap_input) for gap in unique.values()]
        analysis = {
            "market_context": gap_input.market_context, "total_gaps": len(gaps),
            "total_addressable_market": sum(gap.estimated_tam for gap in gaps),
            "average_opportunity_score": round(sum(g.opportunity_score for g in gaps) / len(gaps), 1),
            "top_themes": [theme.get("theme_name") for theme in themes[:3]], "key_insights": list(key_insights),
        }
        return GapFinderOutput(
            market_gaps=gaps, prioritized_opportunities=prioritize(gaps), market_analysis=analysis,
            competitive_landscape=_landscape(gaps, gap_input.include_competitive_analysis),
            recommendations=list(reply.recommendations), risk_assessment=risk_assessment_for(gaps),
            result=result_summary(gaps, key_insights),
        )
