"""Every row read is counted: the source shapes that used to lose rows without a word.

Each case writes a small file (or SQLite table) shaped like what users have, ingests it, and
checks either the accounting from the store or the one loud error that names the column, an
example value and the fix.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshinsights.config import MachineConfig, PipelineConfig
from meshinsights.engine.ingest import run_ingest
from meshinsights.errors import DataQualityError
from meshinsights.model import Window
from meshinsights.store import DeltaStore

PIPELINE = PipelineConfig.model_validate(
    {"name": "byod", "steps": [{"id": "summary", "uses": "window_summary"}]}
)
DAY = Window.parse("2024-01-01", "2024-01-02")


def _file_machine(path: Path, **source: object) -> MachineConfig:
    return MachineConfig.model_validate(
        {
            "machine_id": "m1",
            "pipeline": "byod",
            "start_date": "2024-01-01",
            "source": {
                "type": "file",
                "path": str(path),
                "ts_column": "ts",
                "metrics": ["value"],
                **source,
            },
        }
    )


def _minutes(n: int, start: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="30s")


def test_epoch_milliseconds_are_read_and_the_unit_is_said(
    tmp_path: Path, store: DeltaStore
) -> None:
    path = tmp_path / "ms.csv"
    ts = _minutes(2880)
    pd.DataFrame({"ts": ts.as_unit("ms").asi8, "value": range(2880)}).to_csv(path, index=False)
    s = run_ingest(_file_machine(path), PIPELINE, DAY, store, run_id="t")
    assert (s["rows_in"], s["rows_clean"], s["rows_quarantined"]) == (2880, 2880, 0)
    assert s["ts_unit"] == "ms (detected)"
    history = store.history("byod", "telemetry")[0]
    assert history["meshinsights.ts_unit"] == "ms (detected)"


def test_a_format_that_matches_nothing_fails_naming_column_example_and_fix(
    tmp_path: Path, store: DeltaStore
) -> None:
    path = tmp_path / "ms.csv"
    pd.DataFrame({"ts": _minutes(10).as_unit("ms").asi8, "value": range(10)}).to_csv(
        path, index=False
    )
    with pytest.raises(DataQualityError) as err:
        run_ingest(
            _file_machine(path, ts_format="%Y-%m-%d %H:%M:%S"), PIPELINE, DAY, store, run_id="t"
        )
    message = str(err.value)
    assert "none of its 10 rows has a timestamp that parses" in message
    assert "column 'ts': '1704067200000' looks like epoch milliseconds" in message
    assert "set ts_unit: ms and remove ts_format" in message
    assert not store.exists("byod", "telemetry")


@pytest.mark.parametrize(
    "first",
    ["2024-01-01 00:00:00.000", "2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00"],
    ids=["fraction", "offset", "T"],
)
def test_a_first_value_written_differently_loses_nothing(
    tmp_path: Path, store: DeltaStore, first: str
) -> None:
    stamps = [first] + [t.strftime("%Y-%m-%d %H:%M:%S") for t in _minutes(2880)[1:]]
    path = tmp_path / "mixed.csv"
    pd.DataFrame({"ts": stamps, "value": range(2880)}).to_csv(path, index=False)
    s = run_ingest(_file_machine(path), PIPELINE, DAY, store, run_id="t")
    assert (s["rows_in"], s["rows_clean"], s["rows_quarantined"]) == (2880, 2880, 0)


def test_a_date_column_alone_fails_and_points_at_ts_columns(
    tmp_path: Path, store: DeltaStore
) -> None:
    hours = pd.date_range("2024-01-01", periods=24, freq="1h")
    path = tmp_path / "aq.csv"
    pd.DataFrame(
        {"Date": hours.strftime("%d/%m/%Y"), "Time": hours.strftime("%H.%M.%S"), "value": range(24)}
    ).to_csv(path, sep=";", index=False)
    machine = _file_machine(path, separator=";", ts_column="Date", ts_format="%d/%m/%Y")
    with pytest.raises(DataQualityError) as err:
        run_ingest(machine, PIPELINE, DAY, store, run_id="t")
    message = str(err.value)
    assert "23 of 24 telemetry rows read (96%) were quarantined" in message
    assert "'duplicate_ts'" in message and "ts_columns: [Date, Time]" in message
    # The quarantined rows are there to look at; telemetry and the watermark are not written.
    assert len(store.read_all("byod", "quarantine")) == 23
    assert not store.exists("byod", "telemetry")
    fixed = _file_machine(
        path, separator=";", ts_columns=["Date", "Time"], ts_format="%d/%m/%Y %H.%M.%S"
    )
    s = run_ingest(fixed, PIPELINE, DAY, store, run_id="t2")
    assert (s["rows_clean"], s["rows_quarantined"]) == (24, 0)
    assert store.read_all("byod", "quarantine").empty  # the rerun replaced the window


def test_sql_epoch_numbers_and_the_quarantine_share(
    tmp_path: Path, store: DeltaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (ts INTEGER, metric TEXT, value REAL)")
        rows = [(int(t.timestamp() * 1000), "temperature", 20.0) for t in _minutes(100)]
        con.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    monkeypatch.setenv("AIRFLOW_CONN_SRC", f"sqlite:///{db}")
    machine = MachineConfig.model_validate(
        {
            "machine_id": "m1",
            "pipeline": "byod",
            "start_date": "2024-01-01",
            "source": {"type": "sql", "conn_id": "src", "query": "SELECT ts, metric, value FROM t"},
        }
    )
    s = run_ingest(machine, PIPELINE, DAY, store, run_id="t")
    assert (s["rows_in"], s["rows_clean"], s["ts_unit"]) == (100, 100, "ms (detected)")
    seconds = machine.model_copy(
        update={"source": machine.source.model_copy(update={"ts_unit": "s"})}
    )
    with pytest.raises(DataQualityError, match=r"100 of 100 telemetry rows read .* 'ts_parse'"):
        run_ingest(seconds, PIPELINE, DAY, store, run_id="t")


# Garbage a timestamp column may hold: text, numbers, partial dates; some valid rows among them.
_GARBAGE = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(10**19), max_value=10**19).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        [
            "",
            "NaN",
            "null",
            "2024-13-01",
            "24:00",
            "2024-01-01T25:00",
            "1e12",
            "0001-01-01",
            "9999-12-31T23:59:59Z",
            "--",
            "10/03/2004",
        ]
    ),
)
_VALID = st.integers(min_value=0, max_value=86_399).map(
    lambda s: (pd.Timestamp("2024-01-01") + pd.Timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S")
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(_GARBAGE, _VALID), min_size=1, max_size=40))
def test_garbage_timestamps_are_counted_and_never_pass_silently(tmp_path_factory, stamps) -> None:
    folder = tmp_path_factory.mktemp("garbage")
    path = folder / "g.csv"
    pd.DataFrame({"ts": stamps, "value": range(len(stamps))}).to_csv(path, index=False)
    n_rows = len(pd.read_csv(path, dtype=str, keep_default_na=False))
    store = DeltaStore(str(folder / "artifacts"))
    machine = _file_machine(path)
    everything = Window.parse("1900-01-01", "2200-01-01")
    try:
        s = run_ingest(machine, PIPELINE, everything, store, run_id="g")
    except DataQualityError as exc:
        # Loud: the message names the time column; whatever was counted is in the quarantine.
        assert "'ts'" in str(exc)
        if store.exists("byod", "quarantine"):
            meta = store.history("byod", "quarantine")[0]
            assert meta["meshinsights.rows_in"] == n_rows
            assert meta["meshinsights.rows_quarantined"] > n_rows / 2
        return
    assert s["rows_in"] == n_rows
    assert s["rows_in"] == s["rows_clean"] + s["rows_quarantined"] + s["duplicates_removed"]
    assert s["rows_quarantined"] <= n_rows / 2 and s["rows_clean"] > 0
