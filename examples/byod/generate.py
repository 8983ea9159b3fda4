"""Writes the small sample files of examples/byod/ (shaped like three public datasets).

The files are committed; this script is how they were made (``python examples/byod/generate.py``,
deterministic). Each mimics the layout quirks of a real public dataset, not its values:

- air_quality: the UCI Air Quality CSV — ';' separated, decimal comma, Date and Time in two
  columns (dd/mm/yyyy, HH.MM.SS, local time), -200 for missing, two empty trailing columns
  on every line and a few blank ';;;' lines at the end.
- room_climate: multi-node room-climate files — headerless CSV, one file per measurement
  campaign in a folder, a node id column, epoch-millisecond timestamps, text label columns.
- skab: a 1-second multivariate testbed — ';' separated, ISO-like local times, eight sensor
  columns and the label columns anomaly and changepoint (not telemetry).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def _euro(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}".replace(".", ",")


def air_quality(rng: np.random.Generator) -> None:
    header = (
        "Date;Time;CO(GT);PT08.S1(CO);NMHC(GT);C6H6(GT);PT08.S2(NMHC);NOx(GT);PT08.S3(NOx);"
        "NO2(GT);PT08.S4(NO2);PT08.S5(O3);T;RH;AH;;"
    )
    lines = [header]
    start = pd.Timestamp("2004-03-10 18:00")
    for i in range(72):
        t = start + pd.Timedelta(hours=i)
        hour = t.hour
        temp = 12 + 6 * np.sin((hour - 9) / 24 * 2 * np.pi) + rng.normal(0, 0.4)
        rh = 55 - 1.5 * (temp - 12) + rng.normal(0, 2)
        co = max(0.1, 2 + np.sin(hour / 24 * 2 * np.pi) + rng.normal(0, 0.3))
        nox = int(150 + 60 * rng.random())
        cells = [
            t.strftime("%d/%m/%Y"),
            t.strftime("%H.%M.%S"),
            _euro(co),
            str(int(1200 + 100 * rng.random())),
            "-200" if i % 9 else str(int(100 + 50 * rng.random())),  # mostly missing, as in UCI
            _euro(10 + 3 * rng.random()),
            str(int(950 + 80 * rng.random())),
            "-200" if i in (20, 21) else str(nox),
            str(int(1000 + 100 * rng.random())),
            str(int(100 + 20 * rng.random())),
            str(int(1600 + 100 * rng.random())),
            str(int(1100 + 200 * rng.random())),
            "-200" if i == 30 else _euro(temp),
            "-200" if i == 30 else _euro(rh),
            "-200" if i == 30 else _euro(0.7 + 0.1 * rng.random(), 4),
            "",
            "",
        ]
        lines.append(";".join(cells))
    lines += [";" * 16] * 3  # blank rows at the end, as in the UCI file
    out = HERE / "air_quality" / "data" / "AirQualityUCI.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def room_climate(rng: np.random.Generator) -> None:
    folder = HERE / "room_climate" / "data" / "location_A"
    folder.mkdir(parents=True, exist_ok=True)
    entry = 0
    # Two campaigns (files), three nodes each, readings every ~30 s with jitter.
    for campaign, day in enumerate(("2015-04-28", "2015-04-29"), start=1):
        rows = []
        for node in (1, 2, 3):
            t0 = pd.Timestamp(f"{day} 06:00", tz="UTC").value // 1_000_000
            times = t0 + np.cumsum(rng.integers(25_000, 35_000, 480))
            temp = 21 + node * 0.4 + np.cumsum(rng.normal(0, 0.03, 480))
            rh = 40 - (temp - 21) * 1.2 + rng.normal(0, 0.5, 480)
            for k in range(480):
                entry += 1
                occupied = int(8 * 60 * 60 * 1000 < times[k] - t0 < 10 * 60 * 60 * 1000)
                rows.append(
                    f"{entry},{node},{times[k]},{temp[k]:.2f},{rh[k]:.2f},"
                    f"{int(rng.integers(0, 400))},{int(rng.integers(0, 400))},{occupied},"
                    f"{'work' if occupied else 'none'},0,{int(k % 97 == 0)}"
                )
        (folder / f"room_climate-location_A-measurement{campaign:02d}.csv").write_text(
            "\n".join(rows) + "\n", encoding="utf-8"
        )


def skab(rng: np.random.Generator) -> None:
    n = 1200
    ts = pd.date_range("2020-03-09 10:14:33", periods=n, freq="1s")
    base = rng.normal(0, 1, (n, 3)).cumsum(axis=0) * 0.01
    anomaly = np.zeros(n)
    anomaly[700:950] = 1
    changepoint = np.zeros(n)
    changepoint[[700, 950]] = 1
    frame = pd.DataFrame(
        {
            "datetime": ts.strftime("%Y-%m-%d %H:%M:%S"),
            "Accelerometer1RMS": 0.027 + 0.002 * base[:, 0] + 0.004 * anomaly,
            "Accelerometer2RMS": 0.040 + 0.002 * base[:, 1],
            "Current": 0.77 + 0.05 * rng.normal(size=n),
            "Pressure": 0.38 + 0.01 * base[:, 2] - 0.05 * anomaly,
            "Temperature": 71.2 + 0.01 * np.arange(n) / 60 + 0.05 * rng.normal(size=n),
            "Thermocouple": 25.08 + 0.02 * rng.normal(size=n),
            "Voltage": 219.8 + 1.5 * rng.normal(size=n),
            "Volume Flow RateRMS": 32.0 + 0.5 * rng.normal(size=n) - 2 * anomaly,
            "anomaly": anomaly,
            "changepoint": changepoint,
        }
    )
    out = HERE / "skab" / "data" / "valve1" / "1.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, sep=";", index=False, float_format="%.6g")


if __name__ == "__main__":
    generator = np.random.default_rng(17)
    air_quality(generator)
    room_climate(generator)
    skab(generator)
