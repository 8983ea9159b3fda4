"""The structured answer of a window analysis (LLM or offline) and the audit table's schema."""

from __future__ import annotations

import json
import re
from typing import Any, Literal, get_args

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from meshinsights.model import TS

__all__ = [
    "Severity",
    "SEVERITIES",
    "Finding",
    "Action",
    "Analysis",
    "RESPONSE_SCHEMA",
    "GENAI_SCHEMA",
    "parse_answer",
    "max_severity",
    "normalize_severity",
]

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

# Words device tables and other tools use for severities, mapped onto ours.
_SEVERITY_SYNONYMS = {
    "debug": "info",
    "notice": "info",
    "ok": "info",
    "minor": "low",
    "warn": "medium",
    "warning": "medium",
    "moderate": "medium",
    "major": "high",
    "error": "high",
    "severe": "high",
    "fatal": "critical",
    "emergency": "critical",
    "alarm": "high",
}


def normalize_severity(value: Any, default: str = "medium") -> str:
    """One of SEVERITIES for a free-form severity (``'WARN'`` → ``'medium'``); unknown → default."""
    text = str(value).strip().lower() if value is not None else ""
    if text in SEVERITIES:
        return text
    return _SEVERITY_SYNONYMS.get(text, default)


def max_severity(values: list[str], default: str = "info") -> str:
    """The most severe of ``values`` (``default`` when empty)."""
    ranked = [SEVERITIES.index(v) for v in values if v in SEVERITIES]
    return SEVERITIES[max(ranked)] if ranked else default


class _Strict(BaseModel):
    # extra="forbid" + no defaults gives the JSON schema OpenAI's strict mode requires
    # (additionalProperties false, every property required).
    model_config = ConfigDict(extra="forbid")


class Finding(_Strict):
    """One thing the tables show that an engineer should know."""

    title: str = Field(description="one line naming the finding")
    severity: Severity = Field(description="how urgent it is")
    detail: str = Field(description="what the tables show, with the numbers")
    evidence: list[str] = Field(description="tables, metrics or codes that support it")


class Action(_Strict):
    """A recommended next step."""

    action: str = Field(description="what to do, imperative")
    priority: Literal["now", "soon", "later"] = Field(description="when to do it")
    reason: str = Field(description="which finding it addresses")


class Analysis(_Strict):
    """The structured result of analysing one machine-window."""

    summary: str = Field(description="two or three sentences for an engineer")
    overall_severity: Severity = Field(description="the most severe finding's severity")
    findings: list[Finding] = Field(description="findings, most severe first")
    recommended_actions: list[Action] = Field(description="next steps, most urgent first")

    @classmethod
    def from_text(cls, text: str) -> Analysis:
        """The plain-text fallback: the model's words as the summary, no structured findings."""
        return cls(
            summary=text.strip()[:4000],
            overall_severity="info",
            findings=[],
            recommended_actions=[],
        )


#: The JSON schema sent as the structured-output format (strict-mode compatible).
RESPONSE_SCHEMA: dict[str, Any] = Analysis.model_json_schema()

_FENCED_JSON = re.compile(r"```(?:json)?\s*(\{.*\})\s*```", re.DOTALL)


def parse_answer(content: str) -> tuple[Analysis, str]:
    """The model's answer as an Analysis plus how it was read.

    ``structured``: the content is the JSON we asked for; ``repaired``: the JSON was wrapped
    in prose or a code fence; ``text``: no valid JSON, the text becomes the summary.
    """
    try:
        return Analysis.model_validate_json(content), "structured"
    except ValidationError:
        pass
    candidates = [m.group(1) for m in _FENCED_JSON.finditer(content)]
    start, end = content.find("{"), content.rfind("}")
    if 0 <= start < end:
        candidates.append(content[start : end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
            if isinstance(data, dict) and "overall_severity" in data:
                data["overall_severity"] = normalize_severity(data["overall_severity"], "info")
            return Analysis.model_validate(data), "repaired"
        except (ValueError, ValidationError):
            continue
    return Analysis.from_text(content), "text"


#: One row per analysis: what was asked, of whom, what came back, what it cost.
GENAI_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # the window start (every analysis of a window shares it)
        ("window_end", TS),
        ("analyzed_at", TS),
        ("current", pa.bool_()),  # the analysis in force for the window (one per window)
        ("status", pa.string()),  # ok | fallback
        ("provider", pa.string()),  # who answered: openai | azure | compatible | offline
        ("requested_provider", pa.string()),
        ("model", pa.string()),  # the model that answered (offline rows: the rules' version)
        ("requested_model", pa.string()),
        ("cache_key", pa.string()),
        ("prompt_hash", pa.string()),
        ("input_hash", pa.string()),
        ("input_tables", pa.string()),  # JSON {table: {rows, hash}}
        ("prompt_version", pa.string()),
        ("system_prompt", pa.string()),
        ("user_prompt", pa.string()),
        ("prompt_tokens_est", pa.int64()),
        ("sections", pa.string()),  # JSON {section: {rows, kept}}
        ("response", pa.string()),  # the raw answer text
        ("parse_status", pa.string()),  # structured | repaired | text | offline
        ("findings", pa.string()),  # the Analysis as JSON
        ("overall_severity", pa.string()),
        ("summary", pa.string()),
        ("temperature", pa.float64()),
        ("max_tokens", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("latency_s", pa.float64()),
        ("attempts", pa.int64()),
        ("retry_waits", pa.string()),  # JSON list of seconds waited before each retry
        ("estimated_cost_usd", pa.float64()),
        ("error", pa.string()),  # why the provider failed (fallback rows); never a secret
    ]
)
