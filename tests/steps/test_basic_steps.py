"""Golden and idempotency tests for the day-one steps (average_temperature, window_summary)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.engine.runner import run_step
from meshinsights.model import TELEMETRY_SCHEMA, Window
from meshinsights.steps.basic import average_temperature, window_summary
from meshinsights.steps.registry import get_step
from meshinsights.store import DeltaStore


def telemetry(machine: str = "m", start: str = "2024-01-01", minutes: int = 120) -> pd.DataFrame:
    ts = pd.date_range(start, periods=minutes, freq="1min", tz="UTC")
    temp = pd.DataFrame({"machine_id": machine, "ts": ts, "metric": "temperature",
                         "value": np.arange(minutes, dtype=float), "unit": "degC"})
    power = temp.assign(metric="power_kw", value=2.0, unit="kW")
    out = pd.concat([temp, power], ignore_index=True)
    out["ingested_at"] = out["ts"]
    return out


CASES = [
    ("hourly", "1h", [0, 60], [29.5, 89.5], [60, 60]),
    ("half_hourly", "30min", [0, 30, 60, 90], [14.5, 44.5, 74.5, 104.5], [30, 30, 30, 30]),
]


@pytest.mark.parametrize("freq,offsets,means,counts", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_average_temperature_golden(freq, offsets, means, counts):
    result = average_temperature(telemetry(), freq=freq)
    base = pd.Timestamp("2024-01-01", tz="UTC")
    expected = pd.DataFrame({
        "ts": [base + pd.Timedelta(minutes=o) for o in offsets],
        "metric": "temperature",
        "mean": means,
        "min": [float(o) for o in offsets],
        "max": [float(o + (offsets[1] - offsets[0]) - 1) for o in offsets],
        "count": counts,
    })
    assert_frame_equal(result.reset_index(drop=True), expected, check_dtype=False)


def test_average_temperature_ignores_nulls_and_other_metrics():
    df = telemetry()
    df.loc[0:9, "value"] = np.nan
    result = average_temperature(df)
    assert result["count"].tolist() == [50, 60]
    assert average_temperature(df, metric="nope").empty


def test_window_summary_golden(day: Window):
    result = window_summary(telemetry(), window=day)
    assert result["metric"].tolist() == ["power_kw", "temperature"]
    temp = result.set_index("metric").loc["temperature"]
    assert (temp["count"], temp["mean"], temp["min"], temp["max"], temp["unit"]) == (
        120, 59.5, 0.0, 119.0, "degC")
    assert (result["ts"] == pd.Timestamp(day.start)).all()


@pytest.mark.parametrize("name", ["average_temperature", "window_summary"])
def test_step_is_idempotent_and_leaves_others_untouched(store: DeltaStore, day: Window, name):
    day2 = Window(day.end, day.end + timedelta(days=1))
    for m in ("a", "b"):
        for w, start in ((day, "2024-01-01"), (day2, "2024-01-02")):
            store.overwrite("t", "telemetry", telemetry(m, start), machine_ids=m, window=w,
                            schema=TELEMETRY_SCHEMA)
    spec = get_step(name)
    for m, w in (("a", day), ("a", day2), ("b", day)):
        run_step(spec, m, w, store, namespace="t")
    before = store.read_all("t", spec.output).sort_values(["machine_id", "ts", "metric"])
    summary = run_step(spec, "a", day, store, namespace="t")
    after = store.read_all("t", spec.output).sort_values(["machine_id", "ts", "metric"])
    assert_frame_equal(after.reset_index(drop=True), before.reset_index(drop=True))
    assert not after.duplicated(["machine_id", "ts", "metric"]).any()
    assert summary["rows_in"] == 240 and summary["rows_out"] == len(
        store.read("t", spec.output, "a", day))
