"""Layer 4, GenAI analysis: pure prompt building, one client edge, an offline analyst, the step.

Importing this package is light (no ``openai`` import); the SDK loads when a provider is called.
"""

from __future__ import annotations

from meshinsights.genai.client import ClientConfig, Completion, GenAIError
from meshinsights.genai.credentials import Credentials, resolve
from meshinsights.genai.models import GENAI_SCHEMA, Action, Analysis, Finding, parse_answer
from meshinsights.genai.offline import OFFLINE_MODEL, analyze
from meshinsights.genai.prompt import Prompt, build_prompt, estimate_tokens

__all__ = [
    "Action",
    "Analysis",
    "ClientConfig",
    "Completion",
    "Credentials",
    "Finding",
    "GENAI_SCHEMA",
    "GenAIError",
    "OFFLINE_MODEL",
    "Prompt",
    "analyze",
    "build_prompt",
    "estimate_tokens",
    "parse_answer",
    "resolve",
]
