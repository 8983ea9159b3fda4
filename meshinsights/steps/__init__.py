"""Composable steps: pure functions from DataFrames (+ params) to a DataFrame; no I/O."""

from __future__ import annotations

from meshinsights.steps.registry import StepSpec, get_step, registered_steps, step

__all__ = ["StepSpec", "step", "get_step", "registered_steps"]
