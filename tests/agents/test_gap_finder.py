"""Both gap finders: input validation, the rule-based agent, and the enhanced agent's structured-output path, its
per-stage rule fallback and failure reporting, against a real OpenAI backend on the fake server."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from agents.base import AgentInput
from agents.gap_finder import GapFinderAgent, GapFinderInput, GapFinderOutput, MarketGap
from agents.gap_finder_enhanced import EnhancedGapFinderAgent, parse_money
from llm.manager import LLMManager
from tests.agents.helpers import Configure, chat_requests, completion_reply, sent_text
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.server import Reply

PAIN_POINTS = [
    {"description": "Manual inventory tracking in spreadsheets", "severity": "high", "segment": "Small retailers"},
    {"description": "Inventory software is too expensive", "severity": "medium"},
    {"description": "No integration between the shop and the accounting tool", "severity": "high"},
    {"description": "Reports take hours to build", "severity": "low"},
]

PLAN = {"phases": ["pain_point_clustering", "opportunity_scoring"], "focus": "Small shops with tight budgets"}
THOUGHTS = {
    "themes": [
        {"name": "Inventory automation", "description": "Stock is tracked by hand", "severity": "high",
         "pain_points": [1, 4, 99]},  # 99 is not a pain point: dropped
        {"name": "Tool integration", "description": "The shop and the books do not talk", "severity": "medium",
         "pain_points": [3]},
    ],
    "insights": ["Small retailers still run stock on spreadsheets"],
}
GOOD_GAP = {"description": "Affordable automated inventory for small retailers", "segment": "Small retailers",
            "solution": "Barcode stock app", "competition": "medium", "opportunity": "high", "market_size": "large"}
ACT = {"gaps": [GOOD_GAP, {**GOOD_GAP, "description": "affordable automated inventory for small retailers "}],
       "recommendations": ["Start with a barcode app"]}


def gap_input(**overrides: Any) -> GapFinderInput:
    fields: dict[str, Any] = {"validated_pain_points": PAIN_POINTS, "market_context": "Small business software"}
    return GapFinderInput(**{**fields, **overrides})


def enhanced(manager: LLMManager) -> EnhancedGapFinderAgent:
    agent = EnhancedGapFinderAgent()
    agent._llm_manager = manager
    return agent


def fenced(value: Any) -> str:
    return f"Here is the analysis you asked for:\n```json\n{json.dumps(value, indent=2)}\n```\nLet me know!"


# -- input ----------------------------------------------------------------------------------------------------------


def test_gap_finder_input_validation() -> None:
    with pytest.raises(ValueError, match="Must provide validated pain points for gap analysis"):
        GapFinderInput(validated_pain_points=[], market_context="x")
    with pytest.raises(ValueError, match=r"validated_pain_points\[1\]"):
        GapFinderInput(validated_pain_points=[{"description": "ok"}, 42], market_context="x")  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"validated_pain_points\[0\]"):
        GapFinderInput(validated_pain_points=[{"severity": "high"}], market_context="x")
    with pytest.raises(ValueError, match="analysis_scope must be one of quick, focused, comprehensive"):
        gap_input(analysis_scope="deep")
    with pytest.raises(ValueError, match="market_context must be a string"):
        gap_input(market_context=None)
    coerced = GapFinderInput(validated_pain_points=["  Slow exports "], market_context="x", analysis_scope="Quick",
                             metadata=None)  # type: ignore[list-item, arg-type]
    assert coerced.validated_pain_points == [{"description": "Slow exports"}]
    assert coerced.analysis_scope == "quick" and coerced.metadata == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1200, 1200.0), ("1,200", 1200.0), ("$1.2B", 1.2e9), ("1.2 billion USD", 1.2e9), ("~$300M", 3e8),
     ("2.5k", 2500.0), ("€40 million", 4e7), ("1e6", 1e6)],
)
def test_parse_money_reads_what_models_write(value: Any, expected: float) -> None:
    assert parse_money(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["large", "$1-2B", "-5", "1.2 zillion", None, True, [], float("nan"), -3])
def test_parse_money_rejects_cleanly(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_money(value)


# -- the rule-based agent ---------------------------------------------------------------------------------------------


async def test_rule_based_agent_finds_gaps_without_an_llm() -> None:
    agent = GapFinderAgent()
    output = await agent.execute(AgentInput(data=gap_input(), metadata={}))
    assert output.success and output.error is None
    result = output.result
    assert isinstance(result, GapFinderOutput) and result.market_gaps
    assert all(isinstance(gap, MarketGap) and 0 <= gap.opportunity_score <= 100 for gap in result.market_gaps)
    assert result.result["key_insights"] and all(isinstance(text, str) for text in result.result["key_insights"])
    assert [item["rank"] for item in result.prioritized_opportunities] == list(range(1, len(result.market_gaps) + 1))
    assert result.recommendations and result.risk_assessment["risks"]
    assert output.metadata["plan"]["phases"] and output.metadata["thoughts"]["market_themes"]
    assert agent._llm_manager is None  # it never touched an LLM


async def test_rule_based_agent_accepts_a_dict_and_honours_the_options() -> None:
    data = {"pain_points": [p["description"] for p in PAIN_POINTS] * 2, "market_context": "Retail"}
    output = await GapFinderAgent().execute(AgentInput(data=data, metadata={}, context={
        "analysis_scope": "quick", "include_market_sizing": False, "include_competitive_analysis": False}))
    assert output.success
    gaps = output.result.market_gaps
    assert 1 <= len(gaps) <= 3
    assert all(gap.market_size == gap.estimated_tam == 0.0 for gap in gaps)
    assert output.result.competitive_landscape == {}


async def test_rule_based_agent_reports_invalid_input() -> None:
    output = await GapFinderAgent().execute(AgentInput(data={"pain_points": [], "market_context": "x"}, metadata={}))
    assert not output.success and output.result is None
    assert "Must provide validated pain points for gap analysis" in (output.error or "")


# -- the enhanced agent ------------------------------------------------------------------------------------------------


def test_enhanced_agent_has_no_hard_coded_backend() -> None:
    agent = EnhancedGapFinderAgent()
    assert agent.name == "gap_finder_agent" and agent._agent_key() == "gap_finder"
    assert agent.preferred_backend is None and agent.task_backend_preferences == {}
    assert EnhancedGapFinderAgent(preferred_backend="claude").preferred_backend == "claude"


async def test_every_stage_uses_the_models_structured_answer_in_three_calls(
    manager: LLMManager, openai_fake: FakeOpenAI
) -> None:
    openai_fake.enqueue(completion_reply(PLAN), completion_reply(THOUGHTS), completion_reply(ACT))
    output = await enhanced(manager).execute(AgentInput(data=gap_input(), metadata={}))
    assert output.success, output.error
    requests = chat_requests(openai_fake.requests)
    assert len(requests) == 3
    # each stage asked for its schema natively (strict json_schema), small-model friendly: enums and bounded lists
    formats = [request.body["response_format"]["json_schema"] for request in requests]
    assert [f["name"] for f in formats] == ["PlanReply", "ThoughtsReply", "ActReply"]
    gap_schema = formats[2]["schema"]["$defs"]["GapReply"]["properties"]
    assert gap_schema["competition"]["enum"] == ["low", "medium", "high"]
    assert formats[2]["schema"]["properties"]["gaps"]["maxItems"] == 5
    result: GapFinderOutput = output.result
    assert len(result.market_gaps) == 1  # the repeated gap is kept once
    gap = result.market_gaps[0]
    assert gap.gap_description == GOOD_GAP["description"] and gap.target_segments == ["Small retailers"]
    assert gap.opportunity_score == 82.0 and gap.competition_level == "medium"
    assert gap.estimated_tam == 5e9 and gap.estimated_sam == 1.5e9 and gap.estimated_som == pytest.approx(7.5e7)
    assert result.recommendations == ["Start with a barcode app"]
    assert result.result["key_insights"] == ["Small retailers still run stock on spreadsheets"]
    assert result.metadata["stages"] == {"plan": "llm", "think": "llm", "act": "llm"}
    assert result.metadata["llm_enhanced"] is True and result.metadata["fallbacks"] == []
    assert output.metadata["plan"]["phases"] == PLAN["phases"] and output.metadata["plan"]["source"] == "llm"
    themes = output.metadata["thoughts"]["market_themes"]
    assert [t["theme_name"] for t in themes] == ["Inventory automation", "Tool integration"]
    assert themes[0]["pain_points"] == [PAIN_POINTS[0]["description"], PAIN_POINTS[3]["description"]]
    # What the model was sent: the real data, placeholders filled
    texts = [sent_text(request) for request in requests]
    assert all("Small business software" in text for text in texts)
    assert "1. Manual inventory tracking in spreadsheets" in texts[1] and "Inventory automation" in texts[2]
    assert not any(re.search(r"\{[A-Za-z_]\w*\}", text) for text in texts)


async def test_invalid_answers_are_repaired_once_then_each_stage_falls_back(
    manager: LLMManager, openai_fake: FakeOpenAI
) -> None:
    for reply in ("I would start by clustering.", "Still prose.", '{"themes": []}', '{"themes": "none"}',
                  json.dumps(ACT)):
        openai_fake.enqueue(completion_reply(reply))
    output = await enhanced(manager).execute(AgentInput(data=gap_input(), metadata={}))
    assert output.success, output.error
    assert len(chat_requests(openai_fake.requests)) == 5  # plan and think: answer + one repair each; act: one
    result: GapFinderOutput = output.result
    assert result.metadata["stages"] == {"plan": "rules", "think": "rules", "act": "llm"}
    assert result.metadata["fallbacks"] == ["plan", "think"] and result.result["fallbacks"] == ["plan", "think"]
    assert "did not match the schema" in result.metadata["fallback_reasons"]["think"]
    assert result.metadata["llm_enhanced"] is True  # the gaps are the model's
    assert [gap.gap_description for gap in result.market_gaps] == [GOOD_GAP["description"]]
    assert any(entry["level"] == "warning" and "think" in entry["message"] for entry in output.logs)


async def test_when_no_stage_used_the_model_llm_enhanced_is_false(manager: LLMManager,
                                                                  openai_fake: FakeOpenAI) -> None:
    for _ in range(6):
        openai_fake.enqueue(completion_reply("Build an app!"))
    output = await enhanced(manager).execute(AgentInput(data=gap_input(), metadata={}))
    assert output.success, output.error
    result: GapFinderOutput = output.result
    assert result.metadata["llm_enhanced"] is False
    assert result.metadata["stages"] == {"plan": "rules", "think": "rules", "act": "rules"}
    assert result.metadata["fallbacks"] == ["plan", "think", "act"]
    assert result.market_gaps and result.result["key_insights"]  # the rules still deliver
    assert len(chat_requests(openai_fake.requests)) == 6


async def test_invalid_input_is_reported_before_any_llm_call(manager: LLMManager, openai_fake: FakeOpenAI) -> None:
    agent = enhanced(manager)
    output = await agent.execute(AgentInput(data={"validated_pain_points": [], "market_context": "x"}, metadata={}))
    assert not output.success and "Must provide validated pain points" in (output.error or "")
    output = await agent.execute(AgentInput(data="just a string", metadata={}))
    assert not output.success and "Expected GapFinderInput" in (output.error or "")
    assert agent.state.status == "failed"
    assert openai_fake.requests == []


async def test_an_llm_failure_is_reported_with_its_text(manager: LLMManager, openai_fake: FakeOpenAI) -> None:
    openai_fake.enqueue(Reply(status=401, body={"error": {"message": "Incorrect API key provided",
                                                          "type": "invalid_request_error", "code": "invalid_api_key",
                                                          "param": None}}))
    output = await enhanced(manager).execute(AgentInput(data=gap_input(), metadata={}))
    assert not output.success and output.result is None
    assert "LLMAuthenticationError" in (output.error or "") and "Incorrect API key provided" in (output.error or "")
    assert len(chat_requests(openai_fake.requests)) == 1


async def test_stages_follow_routing(configure: Configure, two_backends: LLMManager, openai_fake: FakeOpenAI,
                                     deepseek_fake: FakeOpenAI) -> None:
    configure(SCOUT_LLM_AGENT_GAP_FINDER_BACKEND="deepseek")
    agent = enhanced(two_backends)
    agent.set_task_backend("act", "openai")
    output = await agent.execute(AgentInput(data=gap_input(), metadata={}))
    assert output.success
    # each stage: the answer and its one repair (the fakes answer prose), on the stage's own backend
    assert len(chat_requests(deepseek_fake.requests)) == 4 and len(chat_requests(openai_fake.requests)) == 2


async def test_the_seed_readme_snippet(manager: LLMManager, openai_fake: FakeOpenAI) -> None:
    gap = GapFinderInput(validated_pain_points=[{"description": "Manual inventory tracking", "severity": "high"}],
                         market_context="Small business software", analysis_scope="comprehensive")
    agent = EnhancedGapFinderAgent()
    agent._llm_manager = manager
    result = await agent.execute(AgentInput(data=gap, metadata={}))
    assert len(result.result.market_gaps) >= 1
    assert isinstance(result.result.result["key_insights"], list) and result.result.result["key_insights"]
