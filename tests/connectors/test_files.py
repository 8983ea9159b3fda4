"""FileConnector: the options real CSV/Parquet exports need, and window selection."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.connectors.files import FileConnector
from meshinsights.errors import ConnectorError
from meshinsights.normalize.layout import Shape, to_long

# UCI-air-quality style: ';' separated, decimal comma, -200 means missing, local time.
EURO_CSV = """\
01/03/2024;23.00.00;12,5;-200;48,1
01/03/2024;23.30.00;12,7;1015;47,9
02/03/2024;00.00.00;bad;1016;-200
02/03/2024;00.30.00;13,1;1017;47,0
"""


def _euro(tmp_path: Path) -> FileConnector:
    path = tmp_path / "air.csv"
    path.write_text(EURO_CSV, encoding="utf-8")
    frame = pd.read_csv(path, sep=";", header=None, dtype=str)
    frame.insert(0, "stamp", frame[0] + " " + frame[1])
    frame.drop(columns=[0, 1]).to_csv(path, sep=";", header=False, index=False)
    return FileConnector(path=str(path), separator=";", decimal=",", header=False,
                         names=["stamp", "temp", "pressure", "rh"], na_values=[-200],
                         ts_column="stamp", ts_format="%d/%m/%Y %H.%M.%S",
                         timezone="Europe/Rome")


def test_csv_options_decimal_comma_names_na_values_and_local_time(tmp_path: Path) -> None:
    conn = _euro(tmp_path)
    rows = conn.query("", {"start": pd.Timestamp("2024-03-01 22:00", tz="UTC"),
                           "end": pd.Timestamp("2024-03-02", tz="UTC")})
    # 23:00 and 23:30 local (UTC+1) are 22:00 and 22:30 UTC; 00:00 local is 23:00 UTC.
    assert list(rows["stamp"]) == ["01/03/2024 23.00.00", "01/03/2024 23.30.00",
                                   "02/03/2024 00.00.00", "02/03/2024 00.30.00"]
    assert rows["rh"].tolist()[:2] == [48.1, 47.9]
    assert pd.isna(rows["pressure"].iloc[0]) and pd.isna(rows["rh"].iloc[2])
    assert rows["temp"].iloc[2] == "bad"  # not a number: normalization quarantines it
    long = to_long(rows, Shape(layout="wide", ts_column="stamp",
                               metrics={"temp": "temperature", "rh": "humidity"})).frame
    assert set(long["metric"]) == {"temperature", "humidity"} and len(long) == 8


def test_window_bounds_are_half_open_in_utc(tmp_path: Path) -> None:
    conn = _euro(tmp_path)
    rows = conn.query("", {"start": pd.Timestamp("2024-03-01 22:30", tz="UTC"),
                           "end": pd.Timestamp("2024-03-01 23:30", tz="UTC")})
    assert list(rows["stamp"]) == ["01/03/2024 23.30.00", "02/03/2024 00.00.00"]


def test_unparsable_timestamps_belong_to_the_previous_rows_window(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("timestamp,value\nnot-a-time,0\n2024-01-01 23:59:00,1\nGARBAGE,2\n"
                    "2024-01-02 00:00:00,3\n")
    conn = FileConnector(path=str(path))
    day1 = conn.query("", {"start": "2024-01-01", "end": "2024-01-02"})
    day2 = conn.query("", {"start": "2024-01-02", "end": "2024-01-03"})
    assert list(day1["value"]) == [0, 1, 2] and list(day2["value"]) == [3]


def test_parquet_folder_long_layout_is_read_once_and_reread_on_change(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    for day in (1, 2):
        pd.DataFrame({"ts": pd.date_range(f"2024-01-0{day}", periods=3, freq="8h", tz="UTC"),
                      "metric": "power_kw", "value": [1.0, 2.0, -200.0]}).to_parquet(
            folder / f"day{day}.parquet")
    (folder / "notes.txt").write_text("ignored")
    conn = FileConnector(path=str(folder), format="parquet", ts_column="ts", na_values=[-200.0])
    rows = conn.query("", {"start": "2024-01-01", "end": "2024-01-03"})
    assert len(rows) == 6 and rows["value"].isna().sum() == 2
    first = conn.read()[0]
    assert conn.read()[0] is first  # cached
    pd.DataFrame({"ts": [pd.Timestamp("2024-01-02 20:00", tz="UTC")], "metric": "power_kw",
                  "value": [9.0]}).to_parquet(folder / "day3.parquet")
    os.utime(folder / "day3.parquet")
    assert len(conn.query("", {"start": "2024-01-01", "end": "2024-01-03"})) == 7


def test_tsdb_layout(tmp_path: Path) -> None:
    path = tmp_path / "ts.csv"
    path.write_text("time,deviceId,measure_name,measure_value::double\n"
                    "2024-01-01T00:00:00Z,m1,temperature,20.5\n"
                    "2024-01-01T00:01:00Z,m1,power_kw,3.1\n")
    conn = FileConnector(path=str(path), ts_column="time")
    long = to_long(conn.query(), Shape(layout="tsdb")).frame
    assert list(long.columns[:4]) == ["ts", "machine_id", "metric", "value"]
    assert long["value"].tolist() == [20.5, 3.1] and set(long["machine_id"]) == {"m1"}


@pytest.mark.parametrize("kwargs, message", [
    ({"path": "/no/such/file.csv"}, "no such file or folder"),
    ({"path": "{tmp}", "format": "parquet"}, "holds no .parquet files"),
    ({"path": "{tmp}/x.csv", "ts_column": "time"}, "no timestamp column 'time'"),
], ids=["missing", "empty-folder", "wrong-ts-column"])
def test_clear_errors(tmp_path: Path, kwargs: dict[str, str], message: str) -> None:
    (tmp_path / "x.csv").write_text("timestamp,value\n2024-01-01,1\n")
    kwargs = {k: v.replace("{tmp}", str(tmp_path)) for k, v in kwargs.items()}
    with pytest.raises(ConnectorError, match=message):
        FileConnector(**kwargs).query()
