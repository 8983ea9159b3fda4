"""The offline analyst: deterministic rules, the same structured result, plain about what it is."""

from __future__ import annotations

import pandas as pd
import pytest

from meshinsights.genai.offline import DISCLAIMER, analyze


def issues(window) -> pd.DataFrame:
    return pd.DataFrame({
        "machine_id": "hvac-001", "ts": pd.Timestamp(window.start),
        "check": ["short_cycling", "missing_data"], "metric": ["power_kw", "humidity"],
        "severity": ["high", "low"], "evidence": ["42 cycles under 3 min", "3% missing"],
    })


def test_a_normal_window_is_info_and_says_it_is_not_a_language_model(summary, window):
    result = analyze({"summary": summary}, window=window)
    assert result.summary.startswith(DISCLAIMER) and "not a language model" in result.summary
    assert result.overall_severity == "info" and result.recommended_actions == []
    [overview] = result.findings
    assert "power_kw: mean 2.147 kW (min 0.137, max 4.542, n=1440)" in overview.detail


def test_same_tables_give_the_same_answer(summary, window):
    tables = {"summary": summary, "issues": issues(window)}
    assert analyze(tables, window=window) == analyze(
        {k: v.copy() for k, v in tables.items()}, window=window)


def test_flat_metric_is_reported_as_a_stuck_sensor(summary, window):
    stuck = summary.copy()
    stuck.loc[1, ["std", "min", "p50", "max", "mean"]] = [0.0, 21.5, 21.5, 21.5, 21.5]
    result = analyze({"summary": stuck}, window=window)
    assert result.overall_severity == "high"
    assert result.findings[0].title == "temperature is flat (possible stuck sensor)"
    assert "All 1440 samples of temperature equal 21.5 degC" in result.findings[0].detail
    assert result.recommended_actions[0].action == "Inspect the temperature sensor and its wiring"


def test_partial_coverage_is_reported(summary, window):
    late = summary.assign(first_ts=pd.Timestamp("2024-01-01T12:00Z"))
    titles = [f.title for f in analyze({"summary": late}, window=window).findings]
    assert titles.count("power_kw covers only part of the window") == 1


def test_issues_variance_anomalies_and_alarms(summary, window):
    anomalies = pd.DataFrame({
        "machine_id": "hvac-001", "ts": pd.date_range(window.start, periods=100, freq="1min"),
        "metric": ["temperature"] * 100, "score": range(100),
        "is_anomaly": [i >= 90 for i in range(100)],
    })
    events = pd.DataFrame({
        "machine_id": "hvac-001", "ts": pd.date_range(window.start, periods=4, freq="1h"),
        "kind": ["alarm", "alarm", "log", "alarm"],
        "severity": ["warning", "critical", "info", "warning"],
        "code": ["HP1", "HP1", "L0", "LP2"], "message": ["x"] * 4,
    })
    variance = pd.DataFrame({"machine_id": "hvac-001", "ts": [pd.Timestamp(window.start)],
                             "variance_class": ["high"], "cv": [0.61]})
    result = analyze({"summary": summary, "issues": issues(window), "variance": variance,
                      "anomalies": anomalies, "events": events}, window=window)
    by_title = {f.title: f for f in result.findings}
    assert result.overall_severity == "critical"
    assert by_title["3 alarms raised"].severity == "critical"
    assert "HP1 ×2" in by_title["3 alarms raised"].detail
    assert by_title["short_cycling on power_kw"].severity == "high"
    assert by_title["missing_data on humidity"].severity == "low"
    assert by_title["Power variance is high"].detail.startswith(
        "Power variance is classed high (coefficient of variation 0.61)")
    assert by_title["10 anomalous points"].severity == "high"
    severities = [f.severity for f in result.findings]
    ranks = ["critical", "high", "medium", "low", "info"]
    assert severities == sorted(severities, key=ranks.index)
    actions = [a.action for a in result.recommended_actions]
    assert actions[0] == "Check compressor staging, minimum run time and thermostat deadband"
    assert len(actions) == len(set(actions))


@pytest.mark.parametrize("cls", ["low", "medium"])
def test_variance_classes(summary, window, cls):
    variance = pd.DataFrame({"machine_id": "m", "ts": [pd.Timestamp(window.start)],
                             "class": [cls]})
    finding = next(f for f in analyze({"summary": summary, "variance": variance},
                                      window=window).findings if "variance" in f.title)
    assert finding.severity == {"low": "info", "medium": "medium"}[cls]
