"""Bring your own data: the README's worked configs over files shaped like real public datasets.

Each case runs the shipped example (examples/byod/<shape>) through the real pipeline and checks
from the store that every source reading is accounted for (clean + quarantined + duplicates),
and that an output equals an independent pandas computation over the raw file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from meshinsights.config import load_configs
from meshinsights.engine.runner import run_pipeline
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.conftest import REPO

BYOD = REPO / "examples" / "byod"


def _ingest_totals(store: DeltaStore, namespace: str, machine_id: str) -> dict[str, int]:
    """Accounting summed over the machine's latest ingest commit per window."""
    latest: dict[str, dict] = {}
    for commit in reversed(store.history(namespace, "telemetry")):
        if commit.get("meshinsights.step") == "ingest" and machine_id in (
            commit.get("meshinsights.machines") or []
        ):
            latest[json.dumps(commit["meshinsights.window"])] = commit
    keys = ("rows_in", "rows_clean", "rows_quarantined", "duplicates_removed")
    return {k: sum(int(c[f"meshinsights.{k}"]) for c in latest.values()) for k in keys}


def _rows_of(store: DeltaStore, namespace: str, table: str, machine_id: str) -> pd.DataFrame:
    frame = store.read_all(namespace, table)
    return frame[frame["machine_id"] == machine_id].reset_index(drop=True)


def _check_accounting(store: DeltaStore, namespace: str, machine_id: str, rows_read: int) -> None:
    totals = _ingest_totals(store, namespace, machine_id)
    clean = _rows_of(store, namespace, "telemetry", machine_id)
    quarantined = _rows_of(store, namespace, "quarantine", machine_id)
    assert totals["rows_in"] == rows_read
    assert totals["rows_clean"] == len(clean)
    assert totals["rows_quarantined"] == len(quarantined)
    assert len(clean) + len(quarantined) + totals["duplicates_removed"] == rows_read


def _hourly_means(ts: pd.Series, values: pd.Series) -> pd.Series:
    frame = pd.DataFrame({"ts": ts, "value": values}).dropna()
    return frame.groupby(frame["ts"].dt.floor("1h"))["value"].mean().rename_axis(None)


def _stored_hourly(store: DeltaStore, namespace: str, machine_id: str) -> pd.Series:
    hourly = _rows_of(store, namespace, "temperature_hourly", machine_id)
    return hourly.set_index("ts")["mean"].sort_index().rename_axis(None)


def test_air_quality_csv_date_and_time_columns_decimal_comma_and_missing_markers(
    store: DeltaStore,
) -> None:
    configs = load_configs(BYOD / "air_quality")
    assert configs.errors == {}
    run_pipeline(configs, "air-quality", Window.parse("2004-03-10", "2004-03-14"), store)
    raw = pd.read_csv(
        BYOD / "air_quality" / "data" / "AirQualityUCI.csv", sep=";", decimal=",", dtype=str
    )
    metrics = ["T", "RH", "AH", "CO(GT)", "NOx(GT)", "NO2(GT)"]
    # Every line of the file is a row read, blank ';;;' lines included; each listed column of
    # each row is one reading.
    _check_accounting(store, "byod", "air-quality", len(raw) * len(metrics))
    q = _rows_of(store, "byod", "quarantine", "air-quality")
    assert q["rule"].value_counts().to_dict() == {"ts_parse": 3 * len(metrics), "value_missing": 5}
    # Independently: Date + Time in Rome local time, -200 is missing, decimal comma.
    ts = pd.to_datetime(raw["Date"] + " " + raw["Time"], format="%d/%m/%Y %H.%M.%S")
    ts = ts.dt.tz_localize("Europe/Rome").dt.tz_convert("UTC")
    temp = pd.to_numeric(raw["T"].str.replace(",", "."), errors="coerce").replace(-200, np.nan)
    expected = _hourly_means(ts, temp)
    result = _stored_hourly(store, "byod", "air-quality")
    pd.testing.assert_series_equal(result, expected, check_names=False, check_freq=False)
    assert len(result) == 71  # 72 hours, one with T = -200


def test_room_climate_headerless_multi_node_files_with_epoch_ms(store: DeltaStore, caplog) -> None:
    from meshinsights.connectors import files

    files._READS.clear()  # a fresh process: nothing read yet
    caplog.set_level(logging.INFO, logger="meshinsights.connectors.files")
    configs = load_configs(BYOD / "room_climate")
    assert configs.errors == {}
    folder = BYOD / "room_climate" / "data" / "location_A"
    names = configs.machines["room-a-node-1"].source.names
    raw = pd.concat(
        [pd.read_csv(p, header=None, names=names) for p in sorted(folder.glob("*.csv"))],
        ignore_index=True,
    )
    window = Window.parse("2015-04-28", "2015-04-30")
    for node in (1, 2, 3):
        machine = f"room-a-node-{node}"
        summaries = run_pipeline(configs, machine, window, store)
        mine = raw[raw["node_id"] == node]
        _check_accounting(store, "byod", machine, len(mine) * 4)
        # Other nodes' rows are not this machine's to quarantine.
        assert _rows_of(store, "byod", "quarantine", machine).empty
        assert summaries[0]["ts_unit"] == "ms"
        ts = pd.to_datetime(mine["timestamp"], unit="ms", utc=True)
        expected = _hourly_means(ts, mine["temperature"].astype(float))
        pd.testing.assert_series_equal(
            _stored_hourly(store, "byod", machine), expected, check_names=False, check_freq=False
        )
    # The folder feeds three machines and was parsed once for all of them in this process.
    reads = [r.getMessage() for r in caplog.records if "rows from" in r.getMessage()]
    files_in = len(list(folder.glob("*.csv")))
    assert len(reads) == 1 and f"read {len(raw)} rows from {files_in} file(s)" in reads[0], reads


def test_wide_multivariate_file_ingests_listed_sensors_not_labels(store: DeltaStore) -> None:
    configs = load_configs(BYOD / "skab")
    assert configs.errors == {}
    run_pipeline(
        configs, "skab-valve1-1", Window.parse("2020-03-09T10:00", "2020-03-09T11:00"), store
    )
    raw = pd.read_csv(BYOD / "skab" / "data" / "valve1" / "1.csv", sep=";")
    _check_accounting(store, "byod", "skab-valve1-1", len(raw) * 8)
    telemetry = _rows_of(store, "byod", "telemetry", "skab-valve1-1")
    assert "anomaly" not in set(telemetry["metric"]) and "changepoint" not in set(
        telemetry["metric"]
    )
    assert telemetry["metric"].nunique() == 8
    ts = pd.to_datetime(raw["datetime"]).dt.tz_localize("UTC")
    expected = _hourly_means(ts, raw["Temperature"])
    pd.testing.assert_series_equal(
        _stored_hourly(store, "byod", "skab-valve1-1"),
        expected,
        check_names=False,
        check_freq=False,
        rtol=1e-9,
    )


def test_wide_file_without_metrics_ingests_numeric_columns_and_says_what_it_skipped(
    tmp_path: Path, store: DeltaStore
) -> None:
    root = tmp_path / "configs"
    (root / "pipelines").mkdir(parents=True)
    (root / "machines").mkdir()
    (root / "pipelines" / "byod.yaml").write_text(
        (BYOD / "skab" / "pipelines" / "byod.yaml").read_text()
    )
    (root / "machines" / "aq.yaml").write_text(
        "machine_id: aq\npipeline: byod\nstart_date: 2004-03-10\nsource:\n  type: file\n"
        f"  path: {BYOD / 'air_quality' / 'data' / 'AirQualityUCI.csv'}\n  separator: ';'\n"
        "  decimal: ','\n  ts_columns: [Date, Time]\n  ts_format: '%d/%m/%Y %H.%M.%S'\n"
        "  na_values: [-200]\n  skip_columns: [NMHC(GT)]\n  max_quarantine_share: 1\n"
    )
    configs = load_configs(root)
    assert configs.errors == {}
    summaries = run_pipeline(configs, "aq", Window.parse("2004-03-10", "2004-03-14"), store)
    ingests = [s for s in summaries if s["step"] == "ingest"]
    skipped = ingests[0]["skipped_columns"]
    assert skipped == {
        "NMHC(GT)": "in skip_columns",
        "Unnamed: 15": "empty",
        "Unnamed: 16": "empty",
    }
    metrics = set(_rows_of(store, "byod", "telemetry", "aq")["metric"])
    assert len(metrics) == 12 and "T" in metrics and "NMHC(GT)" not in metrics
