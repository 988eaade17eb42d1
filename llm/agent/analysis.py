"""What `llm_analyze_text` and `llm_extract_insights` ask for and how they read the answer: the reply models sent as
structured output, the prompts, and the lenient reading that always yields a dict or a list of strings (README
"Agents")."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, model_validator

from llm.output.lenient import extract_json, to_string_list
from llm.prompts import AgentPrompt

__all__ = ["TextAnalysis", "TextInsights", "analysis_prompt", "insights_prompt", "read_analysis", "read_insights"]


class TextAnalysis(BaseModel):
    """What `llm_analyze_text` asks for: short, bounded fields a small model can fill too."""

    analysis_type: str = Field("", max_length=60)
    key_findings: list[str] = Field(default_factory=list, max_length=10)
    summary: str = Field("", max_length=1200)
    confidence: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _findings_alone(cls, value: Any) -> Any:
        """A bare array of findings is an answer too (no repair asked for it)."""
        return {"key_findings": to_string_list(value)} if isinstance(value, list) else value


class TextInsights(BaseModel):
    """What `llm_extract_insights` asks for: a bounded list of short insights."""

    insights: list[str] = Field(default_factory=list, max_length=12)

    @model_validator(mode="before")
    @classmethod
    def _insights_alone(cls, value: Any) -> Any:
        """A bare array is an answer too, and an insight given as an object counts by its text."""
        if isinstance(value, list):
            value = {"insights": value}
        if isinstance(value, dict) and isinstance(value.get("insights"), list):
            value = {**value, "insights": to_string_list(value["insights"])}
        return value


def analysis_prompt(text: str, analysis_type: str, context: str | None) -> AgentPrompt:
    user = f"Text to analyze:\n{text}"
    if context:
        user += f"\n\nAdditional context:\n{context}"
    return AgentPrompt(
        system_prompt=(
            f"You are an expert analyst performing {analysis_type} analysis. Reply with one JSON object only, "
            'with the keys "analysis_type" (string), "key_findings" (array of strings), "summary" (string), '
            '"confidence" (number from 0 to 1) and "details" (object).'
        ),
        user_prompt=user,
    )


def read_analysis(reply: str, analysis_type: str) -> dict[str, Any]:
    """The analysis in `reply` as a dict (with at least `analysis_type`); a reply that holds no object keeps its
    findings or its text."""
    parsed = extract_json(reply, expect=dict)
    if isinstance(parsed, dict):
        parsed.setdefault("analysis_type", analysis_type)
        return parsed
    findings = to_string_list(parsed) if isinstance(parsed, list) else []
    return {
        "analysis_type": analysis_type,
        "key_findings": findings,
        "summary": "" if findings else reply.strip(),
        "confidence": 0.5,
        "raw_response": reply,
    }


def insights_prompt(data: str | dict[str, Any] | list[Any], insight_type: str) -> AgentPrompt:
    text = json.dumps(data, indent=2, default=str) if isinstance(data, dict | list) else str(data)
    return AgentPrompt(
        system_prompt=(
            f"You are an expert at extracting {insight_type} insights from data. Reply with one JSON object only: "
            '{"insights": [...]}, an array of strings, one concise, actionable insight per string.'
        ),
        user_prompt=f"Extract the key {insight_type} insights from this data:\n\n{text}",
    )


def read_insights(reply: str) -> list[str]:
    """The insights in `reply`, always a list of strings (the whole reply when it holds no JSON)."""
    return to_string_list(extract_json(reply), fallback_text=reply)
