"""Market gap analysis with an LLM: `EnhancedGapFinderAgent`.

Each stage (plan, think, act) sends one prompt from `agents/prompts/gap_finder_agent/` and asks for JSON, which is
validated into the pydantic models below (numbers such as "$1.2B" are read as 1.2e9; a gap whose figures cannot be
read is dropped, never a crash). When a reply cannot be used, that stage falls back to the rule-based analysis of
`agents.gap_finder` and says so: `output.metadata["fallbacks"]` lists the stages, `["fallback_reasons"]` why. So a
valid input always yields gaps, in exactly three LLM calls. A failing LLM call (no backend, auth, timeout...) is not
papered over: `execute` returns `success=False` with the error text.

    agent = EnhancedGapFinderAgent()          # uses whatever backends are configured
    output = await agent.execute(AgentInput(data=GapFinderInput(...), metadata={}))
    output.result.market_gaps, output.result.result["key_insights"]

Routing: the calls carry `task_type="plan"|"think"|"act"`, so `agent.set_task_backend("act", "claude")` sends one
stage elsewhere; otherwise the `SCOUT_LLM_AGENT_GAP_FINDER_*` routes, the global default, then the manager's default.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Annotated, Any, TypeVar

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from agents.base import AgentInput, BaseAgent
from agents.gap_finder import (
    GapFinderInput,
    GapFinderOutput,
    MarketGap,
    build_gap_output,
    gap_input_from,
    key_insights_for,
    prioritize,
    recommendations_for,
    result_summary,
    risk_assessment_for,
    rule_based_plan,
    rule_based_thoughts,
)
from llm.prompts import load_prompt_template
from llm.structured import extract_json, to_string_list
from llm.utils import LLMAgentMixin

__all__ = ["EnhancedGapFinderAgent", "LLMActResult", "LLMMarketGap", "LLMPlan", "LLMThoughts", "parse_money"]

# -- reading numbers the way models write them -------------------------------------------------------------------

MONEY_SCALES = {"": 1.0, "k": 1e3, "thousand": 1e3, "m": 1e6, "mm": 1e6, "mn": 1e6, "million": 1e6, "b": 1e9,
                "bn": 1e9, "billion": 1e9, "t": 1e12, "tn": 1e12, "trillion": 1e12}
_MONEY = re.compile(r"^(?:usd|us\$|\$|€|£)?([0-9][0-9,]*(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)([a-z]*?)(?:usd|dollars)?$")
COMPETITION_WORDS = {"low": "low", "very low": "low", "minimal": "low", "medium": "medium", "moderate": "medium",
                     "med": "medium", "high": "high", "very high": "high", "intense": "high"}


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


def _parse_score(value: Any) -> float:
    text = value.strip().removesuffix("%").removesuffix("/100").strip() if isinstance(value, str) else value
    if isinstance(text, bool) or not isinstance(text, int | float | str):
        raise ValueError(f"not a score: {value!r}")
    score = float(text)  # ValueError for words
    if not 0 <= score <= 100:
        raise ValueError(f"score must be within 0-100, got {value!r}")
    return score


def _parse_competition(value: Any) -> str:
    level = COMPETITION_WORDS.get(str(value).strip().lower())
    if level is None:
        raise ValueError(f"competition_level must be low, medium or high, got {value!r}")
    return level


def _string_list(value: Any) -> list[str]:
    return to_string_list(value) if value is not None else []


def _dict_list(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [] if value is None else [value]
    return [item if isinstance(item, dict) else {"gap_description": str(item)} for item in items]


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {"items": value}
    return {"summary": str(value)} if value else {}


Money = Annotated[float, BeforeValidator(parse_money)]
Score = Annotated[float, BeforeValidator(_parse_score)]
Competition = Annotated[str, BeforeValidator(_parse_competition)]
StrList = Annotated[list[str], BeforeValidator(_string_list)]
DictList = Annotated[list[dict[str, Any]], BeforeValidator(_dict_list)]
AnyDict = Annotated[dict[str, Any], BeforeValidator(_as_dict)]


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LLMPlan(_Reply):
    """The plan stage's JSON."""

    operation: str = "market_gap_analysis"
    phases: StrList = Field(min_length=1)
    expected_duration: float = 600.0
    data_sources: StrList = Field(default_factory=list)
    special_considerations: StrList = Field(default_factory=list)


class LLMTheme(_Reply):
    theme_name: str = Field(min_length=1, validation_alias=AliasChoices("theme_name", "theme", "name"))
    description: str = ""
    pain_points: StrList = Field(default_factory=list)
    severity: str = "medium"
    frequency: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _normalise(self) -> LLMTheme:
        self.severity = {"moderate": "medium", "critical": "high"}.get(self.severity.lower(), self.severity.lower())
        if self.severity not in ("low", "medium", "high"):
            self.severity = "medium"
        self.frequency = self.frequency or len(self.pain_points) or 1
        return self


class LLMThoughts(_Reply):
    """The think stage's JSON (a bare array is read as the themes)."""

    market_themes: list[LLMTheme] = Field(min_length=1)
    key_insights: StrList = Field(default_factory=list)
    data_complexity: str = "medium"

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        return {"market_themes": data} if isinstance(data, list) else data


class LLMMarketGap(_Reply):
    """One gap from the act stage. Missing figures default to 0; unreadable ones reject the gap."""

    gap_description: str = Field(min_length=1, validation_alias=AliasChoices("gap_description", "description", "gap"))
    market_size: Money = 0.0
    competition_level: Competition = "medium"
    opportunity_score: Score
    target_segments: StrList = Field(default_factory=list)
    solution_ideas: StrList = Field(default_factory=list)
    barriers_to_entry: StrList = Field(default_factory=list)
    estimated_tam: Money = 0.0
    estimated_sam: Money = 0.0
    estimated_som: Money = 0.0
    risk_factors: StrList = Field(default_factory=list)
    timeline_to_market: str = "12-18 months"


class LLMActResult(_Reply):
    """The act stage's JSON (a bare array is read as the gaps). Gaps are validated one by one afterwards."""

    market_gaps: list[Any] = Field(min_length=1)
    prioritized_opportunities: DictList = Field(default_factory=list)
    market_analysis: AnyDict = Field(default_factory=dict)
    competitive_landscape: AnyDict = Field(default_factory=dict)
    recommendations: StrList = Field(default_factory=list)
    risk_assessment: AnyDict = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        return {"market_gaps": data} if isinstance(data, list) else data


ReplyT = TypeVar("ReplyT", bound=_Reply)


def validate_reply(model: type[ReplyT], reply: str) -> tuple[ReplyT | None, str]:
    """(the validated reply, "") or (None, why it cannot be used)."""
    parsed = extract_json(reply, expect=dict)
    if not isinstance(parsed, dict | list):
        return None, "the reply contained no JSON object"
    try:
        return model.model_validate(parsed), ""
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "reply"
        return None, f"the JSON did not match the expected shape ({where}: {first['msg']})"


def _valid_gaps(items: list[Any]) -> tuple[list[MarketGap], int]:
    gaps, rejected = [], 0
    for item in items:
        try:
            gaps.append(MarketGap(**LLMMarketGap.model_validate(item).model_dump()))
        except ValidationError:
            rejected += 1
    return gaps, rejected


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


class EnhancedGapFinderAgent(BaseAgent, LLMAgentMixin):
    """LLM-driven market gap analysis with a rule-based fallback per stage; see the module docstring."""

    llm_name_defaults = False  # no hard-coded backend: whatever the caller or the configuration says
    prompt_folder = "gap_finder_agent"
    max_pain_points_in_prompt = 50
    max_themes_in_prompt = 20

    def __init__(self, config: Any | None = None, agent_id: str | None = None, preferred_backend: str | None = None,
                 name: str = "gap_finder_agent") -> None:
        super().__init__(name=name, agent_id=agent_id, config=config, preferred_backend=preferred_backend)
        self.description = "AI-powered market gap analysis with LLM insights"

    def _prompt(self, stage: str, **substitutions: Any) -> str:
        return load_prompt_template(f"{stage}.prompt", agent_name=self.prompt_folder, substitutions=substitutions)

    def _fell_back(self, stage: str, reason: str) -> None:
        self.log(f"{stage}: model reply unusable ({reason}); used the rule-based analysis", level="warning")

    async def plan(self, agent_input: AgentInput) -> dict[str, Any]:
        gap_input = gap_input_from(agent_input)
        reply = await self.llm_generate(self._prompt(
            "plan",
            pain_points_count=len(gap_input.validated_pain_points),
            market_context=gap_input.market_context,
            analysis_scope=gap_input.analysis_scope,
            include_competitive_analysis=gap_input.include_competitive_analysis,
            include_market_sizing=gap_input.include_market_sizing,
        ), task_type="plan")
        plan, reason = validate_reply(LLMPlan, reply)
        if plan is None:
            self._fell_back("plan", reason)
            return {**rule_based_plan(gap_input), "fallback_reason": reason}
        return {**plan.model_dump(), "source": "llm"}

    async def think(self, agent_input: AgentInput, plan: dict[str, Any]) -> dict[str, Any]:
        gap_input = gap_input_from(agent_input)
        count = len(gap_input.validated_pain_points)
        reply = await self.llm_generate(self._prompt(
            "think",
            pain_points_count=count,
            market_context=gap_input.market_context,
            analysis_scope=gap_input.analysis_scope,
            pain_points_sample=_dumps(gap_input.validated_pain_points[: self.max_pain_points_in_prompt]),
        ), task_type="think")
        thoughts, reason = validate_reply(LLMThoughts, reply)
        if thoughts is None:
            self._fell_back("think", reason)
            return {**rule_based_thoughts(gap_input), "fallback_reason": reason}
        themes = [theme.model_dump() for theme in thoughts.market_themes]
        return {
            "market_themes": themes,
            "key_insights": thoughts.key_insights or key_insights_for(themes, count),
            "data_complexity": thoughts.data_complexity,
            "analysis_scope": gap_input.analysis_scope,
            "pain_points_count": count,
            "expected_insights": len(themes),
            "source": "llm",
        }

    async def act(self, agent_input: AgentInput, plan: dict[str, Any], thoughts: dict[str, Any]) -> GapFinderOutput:
        started = time.perf_counter()
        gap_input = gap_input_from(agent_input)
        themes: list[dict[str, Any]] = thoughts["market_themes"]
        reply = await self.llm_generate(self._prompt(
            "act",
            market_themes_count=len(themes),
            pain_points_count=len(gap_input.validated_pain_points),
            market_context=gap_input.market_context,
            analysis_scope=gap_input.analysis_scope,
            include_competitive_analysis=gap_input.include_competitive_analysis,
            include_market_sizing=gap_input.include_market_sizing,
            market_themes_sample=_dumps(themes[: self.max_themes_in_prompt]),
        ), task_type="act")
        output, reason, rejected = self._output_from_reply(reply, gap_input, thoughts)
        if output is None:
            self._fell_back("act", reason)
            output = build_gap_output(gap_input, themes, thoughts["key_insights"])
        fallbacks = {stage: str(part.get("fallback_reason")) for stage, part in (("plan", plan), ("think", thoughts))
                     if part.get("source") == "rules"}
        if reason:
            fallbacks["act"] = reason
        output.execution_time = time.perf_counter() - started
        output.metadata = {
            "llm_enhanced": True, "prompt_driven": True, "market_themes_count": len(themes),
            "pain_points_count": len(gap_input.validated_pain_points), "fallbacks": list(fallbacks),
            "fallback_reasons": fallbacks, "rejected_gaps": rejected,
        }
        output.result = {**(output.result or {}), "fallbacks": list(fallbacks)}
        self.log(f"found {len(output.market_gaps)} market gap(s); fallbacks: {list(fallbacks) or 'none'}")
        return output

    def _output_from_reply(
        self, reply: str, gap_input: GapFinderInput, thoughts: dict[str, Any]
    ) -> tuple[GapFinderOutput | None, str, int]:
        """(output, "", rejected gaps) from a usable act reply, else (None, why, rejected gaps)."""
        act, reason = validate_reply(LLMActResult, reply)
        if act is None:
            return None, reason, 0
        gaps, rejected = _valid_gaps(act.market_gaps)
        if not gaps:
            return None, f"none of the {rejected} market gap(s) in the reply was usable", rejected
        insights = to_string_list(act.market_analysis.get("key_insights")) or list(thoughts["key_insights"])
        analysis = {**act.market_analysis, "key_insights": insights}
        output = GapFinderOutput(
            market_gaps=gaps,
            prioritized_opportunities=act.prioritized_opportunities or prioritize(gaps),
            market_analysis=analysis,
            competitive_landscape=act.competitive_landscape if gap_input.include_competitive_analysis else {},
            recommendations=act.recommendations or recommendations_for(gaps),
            risk_assessment=act.risk_assessment or risk_assessment_for(gaps),
            result=result_summary(gaps, insights),
        )
        return output, "", rejected
