"""The built-in step library; importing it registers every built-in step (entry point target).

The GenAI step registers through its own entry point (``genai`` in ``meshinsights.steps``):
it builds on this package, so importing it from here would make steps and genai import each
other."""

from __future__ import annotations

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
