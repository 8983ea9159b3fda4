"""The built-in step library; importing it registers every built-in step (entry point target)."""

from __future__ import annotations

from meshinsights.steps import basic  # noqa: F401
from meshinsights.genai import step as genai_step  # noqa: F401

__all__: list[str] = []
