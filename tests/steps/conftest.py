"""Fixtures for the step tests (frame builders live in tests/steps/builders.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.steps.builders import hvac_frame


@pytest.fixture
def hvac_telemetry() -> pd.DataFrame:
    """Two days of one HVAC unit at 1 min: 2-stage compressor cycles, temperature, humidity."""
    return hvac_frame()
