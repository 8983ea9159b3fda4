"""Fixtures for the step tests (frame builders live in tests/steps/builders.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.steps.builders import telemetry


@pytest.fixture
def hvac_telemetry() -> pd.DataFrame:
    """Two days of one HVAC unit at 1 min: 2-stage compressor cycles, temperature, humidity."""
    rng = np.random.default_rng(11)
    n = 2 * 1440
    minute = np.arange(n)
    phase = minute % 30
    power = np.where(phase < 8, 3.0, np.where(phase < 12, 6.0, 0.3)) + rng.normal(0, 0.05, n)
    daily = np.sin(2 * np.pi * minute / 1440)
    temp = 20 + 2 * daily + rng.normal(0, 0.1, n)
    hum = 45 + 3 * daily + rng.normal(0, 0.3, n)
    frames = [telemetry(m, minute, v.round(3), u) for m, v, u in (
        ("power_kw", power, "kW"), ("temperature", temp, "degC"), ("humidity", hum, "%"))]
    return pd.concat(frames, ignore_index=True)
