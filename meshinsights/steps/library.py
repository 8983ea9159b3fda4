"""The built-in step library; importing it registers every built-in step (entry point target)."""

from __future__ import annotations

from meshinsights.genai import step as genai_step  # noqa: F401
from meshinsights.steps import (  # noqa: F401
    anomaly,
    basic,
    cycles,
    derivatives,
    events,
    forecast,
    issues,
    nonparametric,
    power,
    resample,
    runs,
)

__all__: list[str] = []
