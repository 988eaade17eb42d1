"""Market gap analysis without an LLM: pain points -> themes (keyword tables) -> scored market gaps.

`GapFinderAgent` runs the whole analysis with rules only; `EnhancedGapFinderAgent` (gap_finder_enhanced.py) asks an
LLM and falls back to the functions here, stage by stage, when a reply cannot be used.

    output = await GapFinderAgent().execute(AgentInput(data=GapFinderInput(
        validated_pain_points=[{"description": "Manual inventory tracking", "severity": "high"}],
        market_context="Small business software"), metadata={}))
    output.result.market_gaps[0].opportunity_score, output.result.result["key_insights"]

The sizes and scores are heuristics from the tables below (order-of-magnitude figures), not market research.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from agents.base import AgentInput, BaseAgent
from llm.utils import LLMAgentMixin

__all__ = [
    "ANALYSIS_SCOPES",
    "GapFinderAgent",
    "GapFinderInput",
    "GapFinderOutput",
    "MarketGap",
    "build_gap_output",
    "cluster_pain_points",
    "gap_input_from",
    "key_insights_for",
    "pain_point_text",
    "prioritize",
    "recommendations_for",
    "result_summary",
    "risk_assessment_for",
    "rule_based_plan",
    "rule_based_thoughts",
]

#: analysis_scope -> how many themes (by weight) become gaps; None = all.
ANALYSIS_SCOPES: dict[str, int | None] = {"quick": 3, "focused": 5, "comprehensive": None}
COMPETITION_LEVELS = ("low", "medium", "high")
SEVERITY_WEIGHTS = {"low": 1.0, "minor": 1.0, "medium": 2.0, "moderate": 2.0, "high": 3.0, "major": 3.0,
                    "critical": 4.0, "severe": 4.0}
TEXT_KEYS = ("description", "pain_point", "title", "text", "summary", "problem", "name")
SEGMENT_KEYS = ("target_segment", "segment", "audience", "industry", "persona")


@dataclass
class MarketGap:
    """One market gap. Money figures are in US dollars; `opportunity_score` is 0-100."""

    gap_description: str
    market_size: float
    competition_level: str
    opportunity_score: float
    target_segments: list[str]
    solution_ideas: list[str]
    barriers_to_entry: list[str]
    estimated_tam: float
    estimated_sam: float
    estimated_som: float
    risk_factors: list[str]
    timeline_to_market: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GapFinderInput:
    """Validated pain points plus the market they come from.

    Pain points are dicts (a `description` and optionally `severity`, `segment`, ...); plain strings are accepted and
    become `{"description": text}`.

    Raises:
        ValueError: no pain points, a pain point that is neither a dict nor a string, or an unknown analysis_scope.
    """

    validated_pain_points: list[dict[str, Any]]
    market_context: str
    analysis_scope: str = "comprehensive"
    include_competitive_analysis: bool = True
    include_market_sizing: bool = True
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.validated_pain_points or not isinstance(self.validated_pain_points, list):
            raise ValueError("Must provide validated pain points for gap analysis")
        points: list[dict[str, Any]] = []
        for i, point in enumerate(self.validated_pain_points):
            if isinstance(point, str) and point.strip():
                points.append({"description": point.strip()})
            elif isinstance(point, dict) and pain_point_text(point):
                points.append(point)
            else:
                raise ValueError(f"validated_pain_points[{i}] must be a non-empty string or a dict with a description")
        self.validated_pain_points = points
        if not isinstance(self.market_context, str):
            raise ValueError(f"market_context must be a string, got {type(self.market_context).__name__}")
        scope = str(self.analysis_scope).strip().lower()
        if scope not in ANALYSIS_SCOPES:
            raise ValueError(f"analysis_scope must be one of {', '.join(ANALYSIS_SCOPES)}, got {self.analysis_scope!r}")
        self.analysis_scope = scope
        self.metadata = self.metadata if self.metadata is not None else {}


@dataclass
class GapFinderOutput:
    """The analysis. `result` holds a summary dict with `key_insights`, `summary` and `top_opportunities`."""

    market_gaps: list[MarketGap]
    prioritized_opportunities: list[dict[str, Any]]
    market_analysis: dict[str, Any]
    competitive_landscape: dict[str, Any]
    recommendations: list[str]
    risk_assessment: dict[str, Any]
    result: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    logs: list[Any] = field(default_factory=list)
    execution_time: float = 0.0
    success: bool = True
    error: str | None = None

    def __post_init__(self) -> None:
        self.metadata = self.metadata if self.metadata is not None else {}
        self.logs = self.logs if self.logs is not None else []


# -- tables -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThemeProfile:
    keywords: tuple[str, ...]
    competition: str
    market_size: float  # USD, a rough base figure for one underserved niche
    solutions: tuple[str, ...]
    barriers: tuple[str, ...]
    risks: tuple[str, ...]


THEMES: dict[str, ThemeProfile] = {
    "Manual processes and automation": ThemeProfile(
        ("manual", "automat", "repetitive", "spreadsheet", "paper", "by hand", "tedious", "time-consuming",
         "time consuming"), "medium", 2.5e9,
        ("Workflow automation tool", "Templates and integrations for the common manual steps"),
        ("Changing established habits", "Integration effort"), ("Incumbent suites add the feature",)),
    "Cost and pricing": ThemeProfile(
        ("cost", "expensive", "price", "pricing", "budget", "afford", "fee"), "high", 1.5e9,
        ("Lower-cost alternative with usage-based pricing", "Freemium tier for small teams"),
        ("Price competition", "Customer acquisition cost"), ("Thin margins", "Race to the bottom on price")),
    "Integration and data silos": ThemeProfile(
        ("integrat", "sync", "connect", "silo", "api", "export", "import", "compatib"), "medium", 3.0e9,
        ("Integration hub with prebuilt connectors", "Two-way sync between the main tools"),
        ("Partner API access", "Maintenance of many connectors"), ("Platform vendors closing their APIs",)),
    "Visibility, tracking and reporting": ThemeProfile(
        ("track", "report", "visibility", "analytics", "insight", "dashboard", "inventory", "forecast"), "medium",
        2.0e9, ("Real-time tracking dashboard", "Automated reports and alerts"),
        ("Data quality at the source", "Trust in the numbers"), ("Commoditised dashboards",)),
    "Usability and onboarding": ThemeProfile(
        ("confus", "complex", "hard to use", "difficult", "learning curve", "onboard", "clunky", "ux"), "low", 1.0e9,
        ("Simpler product focused on the core job", "Guided onboarding"),
        ("Switching costs from current tools",), ("Feature creep erodes the simplicity",)),
    "Communication and collaboration": ThemeProfile(
        ("communicat", "collaborat", "team", "email", "share", "coordinat"), "high", 2.0e9,
        ("Shared workspace for the specific workflow", "Notifications tied to the work items"),
        ("Network effects of incumbents",), ("Crowded market of general collaboration tools",)),
    "Reliability and performance": ThemeProfile(
        ("slow", "crash", "downtime", "bug", "unreliable", "outage", "lag"), "low", 8.0e8,
        ("Faster, more reliable product for the same job", "Monitoring and failover as a service"),
        ("Engineering investment",), ("Incumbents fix their performance",)),
    "Compliance and security": ThemeProfile(
        ("complian", "regulat", "security", "privacy", "audit", "gdpr"), "medium", 1.8e9,
        ("Compliance automation for the regulated steps", "Audit-ready records by default"),
        ("Certifications", "Regulatory expertise"), ("Changing regulation", "Liability")),
    "Customer support": ThemeProfile(
        ("support", "customer service", "response time", "help desk"), "high", 1.2e9,
        ("Self-service knowledge base", "Faster support through automation"),
        ("Service quality at scale",), ("Support costs grow with customers",)),
}
GENERAL_THEME = "General unmet needs"
GENERAL_PROFILE = ThemeProfile((), "medium", 1.0e9, ("Purpose-built product for the unmet need",),
                               ("Proving demand",), ("Unclear willingness to pay",))
COMPETITION_PENALTY = {"low": 0.0, "medium": 8.0, "high": 16.0}
FALLBACK_PHASES = ["pain_point_clustering", "market_research", "competitive_analysis", "gap_identification",
                   "opportunity_scoring", "risk_assessment", "recommendation_generation"]


# -- pain points -> themes ------------------------------------------------------------------------------------------


def pain_point_text(point: Any) -> str:
    """The description of a pain point (a dict's first text field, or the string itself)."""
    if isinstance(point, str):
        return point.strip()
    if isinstance(point, dict):
        for key in TEXT_KEYS:
            value = point.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return ""


def _severity(point: dict[str, Any]) -> float:
    value = point.get("severity")
    if isinstance(value, str):
        return SEVERITY_WEIGHTS.get(value.strip().lower(), 2.0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0.0, min(4.0, float(value) / 2.5 if value > 4 else float(value)))  # 0-10 scales too
    return 2.0


def _severity_label(score: float) -> str:
    return "high" if score >= 2.5 else "medium" if score >= 1.5 else "low"


def cluster_pain_points(pain_points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group pain points into themes by keyword; heaviest themes (frequency x severity) first.

    Each theme: `theme_name`, `description`, `pain_points` (texts), `frequency`, `severity` (low/medium/high),
    `severity_score` (0-4), `segments`.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for point in pain_points:
        text = pain_point_text(point).lower()
        names = [name for name, profile in THEMES.items() if any(word in text for word in profile.keywords)]
        for name in names or [GENERAL_THEME]:
            groups.setdefault(name, []).append(point)
    themes = []
    for name, points in groups.items():
        score = sum(_severity(point) for point in points) / len(points)
        segments = sorted({str(point[key]) for point in points for key in SEGMENT_KEYS if point.get(key)})
        themes.append({
            "theme_name": name,
            "description": f"{len(points)} pain point(s) about {name.lower()}",
            "pain_points": [pain_point_text(point) for point in points],
            "frequency": len(points),
            "severity": _severity_label(score),
            "severity_score": round(score, 2),
            "segments": segments,
        })
    return sorted(themes, key=lambda theme: -theme["frequency"] * theme["severity_score"])


def key_insights_for(themes: list[dict[str, Any]], pain_points_count: int) -> list[str]:
    """Plain statements about the themes: what dominates, how severe, what is worth looking at first."""
    insights = [
        f"{theme['frequency']} of {pain_points_count} pain points concern {theme['theme_name'].lower()} "
        f"({theme['severity']} severity)"
        for theme in themes[:3]
    ]
    severe = [theme for theme in themes if theme["severity"] == "high"]
    if severe:
        insights.append(f"Most severe theme: {severe[0]['theme_name'].lower()}")
    if len(themes) > 1:
        insights.append(f"Pain points spread over {len(themes)} themes; start with the heaviest one")
    return insights


# -- stages ---------------------------------------------------------------------------------------------------------


def gap_input_from(agent_input: AgentInput) -> GapFinderInput:
    """The `GapFinderInput` in `agent_input.data`, or one built from a dict (`validated_pain_points` or
    `pain_points`, `market_context`, ...; `agent_input.context` supplies missing settings).

    Raises:
        ValueError: the data is neither, or fails `GapFinderInput` validation.
    """
    data = agent_input.data
    if isinstance(data, GapFinderInput):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"Expected GapFinderInput data (or a dict of its fields), got {type(data).__name__}")
    context = agent_input.context or {}

    def setting(key: str, default: Any) -> Any:
        return data.get(key, context.get(key, default))

    return GapFinderInput(
        validated_pain_points=data.get("validated_pain_points") or data.get("pain_points") or [],
        market_context=setting("market_context", ""),
        analysis_scope=setting("analysis_scope", "comprehensive"),
        include_competitive_analysis=bool(setting("include_competitive_analysis", True)),
        include_market_sizing=bool(setting("include_market_sizing", True)),
        context=agent_input.context,
    )


def rule_based_plan(gap_input: GapFinderInput) -> dict[str, Any]:
    return {
        "operation": "market_gap_analysis",
        "phases": list(FALLBACK_PHASES),
        "expected_duration": 600,
        "data_sources": ["pain_points", "market_context"],
        "special_considerations": [gap_input.analysis_scope],
        "source": "rules",
    }


def rule_based_thoughts(gap_input: GapFinderInput) -> dict[str, Any]:
    themes = cluster_pain_points(gap_input.validated_pain_points)
    count = len(gap_input.validated_pain_points)
    return {
        "market_themes": themes,
        "key_insights": key_insights_for(themes, count),
        "data_complexity": "low" if count < 5 else "medium" if count < 20 else "high",
        "analysis_scope": gap_input.analysis_scope,
        "pain_points_count": count,
        "expected_insights": len(themes),
        "source": "rules",
    }


def _profile_for(theme: dict[str, Any]) -> ThemeProfile:
    """The table row of a theme: by name, else by keywords in its name and description (themes from an LLM)."""
    name = str(theme.get("theme_name"))
    if name in THEMES:
        return THEMES[name]
    text = f"{name} {theme.get('description', '')}".lower()
    matches = [profile for profile in THEMES.values() if any(word in text for word in profile.keywords)]
    return matches[0] if matches else GENERAL_PROFILE


def _gap_for_theme(theme: dict[str, Any], gap_input: GapFinderInput) -> MarketGap:
    profile = _profile_for(theme)
    frequency = max(1, int(theme.get("frequency") or len(theme.get("pain_points") or []) or 1))
    severity = float(theme.get("severity_score") or SEVERITY_WEIGHTS.get(str(theme.get("severity")), 2.0))
    score = 30.0 + 12.0 * min(frequency, 4) + 10.0 * severity - COMPETITION_PENALTY[profile.competition]
    tam = profile.market_size * (1 + 0.25 * (frequency - 1)) if gap_input.include_market_sizing else 0.0
    examples = [str(point) for point in theme.get("pain_points") or []][:2]
    where = f" in {gap_input.market_context}" if gap_input.market_context else ""
    return MarketGap(
        gap_description=f"{theme.get('theme_name')}{where}: " + ("; ".join(examples) or "unmet need"),
        market_size=tam,
        competition_level=profile.competition,
        opportunity_score=round(max(0.0, min(100.0, score)), 1),
        target_segments=list(theme.get("segments") or []) or [gap_input.market_context or "general market"],
        solution_ideas=list(profile.solutions),
        barriers_to_entry=list(profile.barriers),
        estimated_tam=tam,
        estimated_sam=tam * 0.3,
        estimated_som=tam * 0.3 * 0.05,
        risk_factors=list(profile.risks),
        timeline_to_market="6-12 months" if profile.competition == "low" else "12-18 months",
    )


def prioritize(gaps: list[MarketGap]) -> list[dict[str, Any]]:
    ranked = sorted(gaps, key=lambda gap: -gap.opportunity_score)
    return [
        {"rank": rank, "gap_description": gap.gap_description, "opportunity_score": gap.opportunity_score,
         "competition_level": gap.competition_level,
         "rationale": f"score {gap.opportunity_score:g} with {gap.competition_level} competition"}
        for rank, gap in enumerate(ranked, start=1)
    ]


def _landscape(gaps: list[MarketGap], include: bool) -> dict[str, Any]:
    if not include:
        return {}
    levels = Counter(gap.competition_level for gap in gaps)
    return {
        "competition_levels": {level: levels.get(level, 0) for level in COMPETITION_LEVELS},
        "least_contested": [gap.gap_description for gap in gaps if gap.competition_level == "low"],
    }


def risk_assessment_for(gaps: list[MarketGap]) -> dict[str, Any]:
    """Overall risk (from how contested the gaps are), the gaps' risks, and a mitigation."""
    risks = list(dict.fromkeys(risk for gap in gaps for risk in gap.risk_factors))
    high = sum(1 for gap in gaps if gap.competition_level == "high")
    overall = "high" if high * 2 > len(gaps) else "medium" if high else "low"
    return {"overall_risk": overall, "risks": risks,
            "mitigations": ["Validate demand with paying pilot customers before building the full product"]}


def recommendations_for(gaps: list[MarketGap]) -> list[str]:
    """One line for each of the three best gaps."""
    lines = []
    for gap in sorted(gaps, key=lambda gap: -gap.opportunity_score)[:3]:
        idea = gap.solution_ideas[0] if gap.solution_ideas else "a focused solution"
        lines.append(f"Pursue '{gap.gap_description}' (score {gap.opportunity_score:g}): start with {idea.lower()}")
    return lines


def result_summary(gaps: list[MarketGap], key_insights: list[str]) -> dict[str, Any]:
    """`GapFinderOutput.result`: `key_insights`, `summary`, `top_opportunities`."""
    top = sorted(gaps, key=lambda gap: -gap.opportunity_score)[:3]
    best = f"; best score {top[0].opportunity_score:g}" if top else ""
    return {
        "key_insights": list(key_insights),
        "summary": f"{len(gaps)} market gap(s) found{best}",
        "top_opportunities": [gap.gap_description for gap in top],
    }


def build_gap_output(
    gap_input: GapFinderInput, themes: list[dict[str, Any]], key_insights: list[str]
) -> GapFinderOutput:
    """The rule-based act stage: one gap per theme (limited by the analysis scope), scored and ranked."""
    limit = ANALYSIS_SCOPES[gap_input.analysis_scope]
    gaps = [_gap_for_theme(theme, gap_input) for theme in themes[:limit]]
    prioritized = prioritize(gaps)
    analysis = {
        "market_context": gap_input.market_context,
        "total_gaps": len(gaps),
        "total_addressable_market": sum(gap.estimated_tam for gap in gaps),
        "average_opportunity_score": round(sum(g.opportunity_score for g in gaps) / len(gaps), 1) if gaps else 0.0,
        "top_themes": [theme.get("theme_name") for theme in themes[:3]],
        "key_insights": list(key_insights),
    }
    return GapFinderOutput(
        market_gaps=gaps,
        prioritized_opportunities=prioritized,
        market_analysis=analysis,
        competitive_landscape=_landscape(gaps, gap_input.include_competitive_analysis),
        recommendations=recommendations_for(gaps),
        risk_assessment=risk_assessment_for(gaps),
        result=result_summary(gaps, key_insights),
    )


class GapFinderAgent(BaseAgent, LLMAgentMixin):
    """Rule-based market gap analysis; makes no LLM call. `agent_input.data` is a `GapFinderInput` or a dict."""

    def __init__(self, agent_id: str | None = None, config: Any | None = None, name: str = "gap_finder") -> None:
        super().__init__(name=name, agent_id=agent_id, config=config)

    async def plan(self, agent_input: AgentInput) -> dict[str, Any]:
        return rule_based_plan(gap_input_from(agent_input))

    async def think(self, agent_input: AgentInput, plan: dict[str, Any]) -> dict[str, Any]:
        return rule_based_thoughts(gap_input_from(agent_input))

    async def act(self, agent_input: AgentInput, plan: dict[str, Any], thoughts: dict[str, Any]) -> GapFinderOutput:
        gap_input = gap_input_from(agent_input)
        output = build_gap_output(gap_input, thoughts["market_themes"], thoughts["key_insights"])
        output.metadata = {"llm_enhanced": False, "pain_points_count": len(gap_input.validated_pain_points),
                           "market_themes_count": len(thoughts["market_themes"])}
        self.log(f"found {len(output.market_gaps)} market gap(s)")
        return output
