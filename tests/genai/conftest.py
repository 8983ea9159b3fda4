"""Fixtures for the GenAI tests: a loopback OpenAI-compatible server and a key-free environment."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from meshinsights.model import Window

from .fake_openai import FakeOpenAI

_PROVIDER_VARS = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT",
                  "OPENAI_BASE_URL", "OPENAI_API_VERSION", "AIRFLOW_CONN_MESHINSIGHTS_GENAI")


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key or endpoint leaks in from the developer's shell: the default is the offline path."""
    for name in _PROVIDER_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A started fake OpenAI server on 127.0.0.1 (random port), stopped after the test."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def window() -> Window:
    """The day 2024-01-01 UTC."""
    return Window.parse("2024-01-01", "2024-01-02")


@pytest.fixture
def summary(window: Window) -> pd.DataFrame:
    """A window summary as the ``summary`` step writes it (two metrics)."""
    start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
    return pd.DataFrame({
        "machine_id": ["hvac-001", "hvac-001"], "ts": [start, start], "window_end": [end, end],
        "metric": ["power_kw", "temperature"], "unit": ["kW", "degC"], "count": [1440, 1440],
        "mean": [2.147, 20.01], "std": [1.854, 1.776], "min": [0.137, 17.09],
        "p50": [1.939, 19.98], "max": [4.542, 22.85],
        "first_ts": [start, start], "last_ts": [end - pd.Timedelta("1min")] * 2,
    })
