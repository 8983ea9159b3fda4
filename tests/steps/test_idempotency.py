"""Idempotency of every analytics step: run through ``run_step`` on a Delta store twice for the
same machine-window; the rows are identical and other machines and windows are untouched."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.engine.plan import PlannedStep
from meshinsights.engine.runner import run_step
from meshinsights.model import QUARANTINE_SCHEMA, Window
from meshinsights.steps.registry import get_step
from meshinsights.store import DeltaStore
from tests.steps.builders import T0, events_frame, hvac_frame

DAY1 = Window(T0, T0 + timedelta(days=1))
DAY2 = Window(DAY1.end, DAY1.end + timedelta(days=1))
BOTH = Window(DAY1.start, DAY2.end)

# step name -> (params, lookback): params chosen so that every step writes rows.
STEPS: dict[str, tuple[dict, str | None]] = {
    "resample": ({"fill_limit": 5}, "1h"),
    "rolling_stats": ({"span": "15min"}, "1h"),
    "derivatives": ({}, "10min"),
    "detect_cycles": ({}, "6h"),
    "cycle_medians": ({}, None),
    "power_variance": ({}, "90D"),
    "alarm_thresholds": ({}, "90D"),
    "update_thresholds": ({}, None),
    "detect_issues": ({"missing_warn": 0.0, "drift_min_days": 1}, "14D"),
    "robust_zscore": ({"metrics": ["temperature", "humidity"]}, "1D"),
    "pca_anomaly": ({}, "1D"),
    "knn_anomaly": ({"smoothing": 0.1, "persist_k": 3, "persist_n": 5}, "1D"),
    "vote_anomaly": ({"min_votes": 1}, None),
    "event_counts": ({}, "1h"),
    "alarm_floods": ({"max_alarms": 5, "minutes": 10}, "1h"),
    "forecast": ({"origin_every": "2h"}, "1D"),
    "forecast_errors": ({}, None),
}


def _events() -> pd.DataFrame:
    rows = []
    for day in (0, 1440):
        rows += [(day + 100 + i, "alarm", "major", "HP", "high pressure") for i in range(8)]
        rows += [(day + 200, "event", "info", "HP", "HP cleared"), (day + 300, "log", "info",
                                                                   None, "door opened")]
    return events_frame(rows)


def _tables(telemetry: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table a step may read, for one machine over both days, from the real steps."""
    from meshinsights.steps import anomaly, cycles, forecast, nonparametric, power, resample

    clean = resample.resample(telemetry, window=BOTH)
    cyc = cycles.detect_cycles(clean, window=BOTH)
    per_day = {d: (power.alarm_thresholds(cyc, window=d), power.power_variance(cyc, window=d))
               for d in (DAY1, DAY2)}
    quarantine = pd.DataFrame({"ts": telemetry["ts"].iloc[[10, 2000]], "source_table": "telemetry",
                               "rule": "temperature.rate", "reason": "jump", "original": "{}"})
    return {
        "telemetry": telemetry, "clean": clean, "cycles": cyc, "events": _events(),
        "quarantine": quarantine,
        "thresholds": pd.concat([t for t, _ in per_day.values()], ignore_index=True),
        "variance": pd.concat([v for _, v in per_day.values()], ignore_index=True),
        "forecasts": pd.concat([forecast.forecast(clean, window=d) for d in (DAY1, DAY2)],
                               ignore_index=True),
        "anomalies_mv": pd.concat([anomaly.pca_anomaly(clean, reference_duration="6h", window=d)
                                   for d in (DAY1, DAY2)], ignore_index=True),
        "anomalies_knn": pd.concat([nonparametric.knn_anomaly(clean, reference_duration="6h",
                                                              window=d) for d in (DAY1, DAY2)],
                                   ignore_index=True),
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Input tables for machines m1 and m2 over two days (m2's temperature is shifted)."""
    base = hvac_frame()
    out = {}
    for m, shift in (("m1", 0.0), ("m2", 1.5)):
        tel = base.assign(machine_id=m)
        tel.loc[tel["metric"] == "temperature", "value"] += shift
        out[m] = {name: df.assign(machine_id=m) for name, df in _tables(tel).items()}
    return tmp_path_factory.mktemp("idem"), out


def _seed(store: DeltaStore, namespace: str, tables: dict[str, dict[str, pd.DataFrame]],
          needed: set[str]) -> None:
    for machine, frames in tables.items():
        for name in needed:
            schema = QUARANTINE_SCHEMA if name == "quarantine" else None
            store.overwrite(namespace, name, frames[name], machine_ids=machine, window=BOTH,
                            schema=schema)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in df.columns if df[c].dtype != object or df[c].map(type).eq(str).all()]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("name", sorted(STEPS))
def test_step_is_idempotent_and_leaves_others_untouched(inputs, name: str) -> None:
    root, tables = inputs
    store = DeltaStore(str(root / name))
    spec = get_step(name)
    params, lookback = STEPS[name]
    planned = PlannedStep(name, spec, spec.bind_params(params), {a: a for a in spec.inputs},
                          spec.output, None, lookback)
    _seed(store, "t", tables, set(spec.inputs))
    for machine, window in (("m2", DAY2), ("m1", DAY1), ("m1", DAY2)):
        run_step(planned, machine, window, store, namespace="t")
    others = {(m, w): store.read("t", spec.output, m, w) for m, w in (("m2", DAY2), ("m1", DAY1))}
    first = store.read("t", spec.output, "m1", DAY2)
    assert len(first) > 0, f"{name} wrote no rows: the test would prove nothing"
    summary = run_step(planned, "m1", DAY2, store, namespace="t")
    second = store.read("t", spec.output, "m1", DAY2)
    assert_frame_equal(_sorted(second), _sorted(first))
    assert summary["rows_out"] == len(first)
    for (m, w), before in others.items():
        assert_frame_equal(_sorted(store.read("t", spec.output, m, w)), _sorted(before))
    whole = store.read_all("t", spec.output)
    assert len(whole) == len(first) + sum(len(f) for f in others.values())
    if name == "resample":  # the two machines differ, so a crossed-over write would show
        assert not np.allclose(first["value"].fillna(0),
                               store.read("t", spec.output, "m2", DAY2)["value"].fillna(0))
