"""The demo source: a small, deterministic HVAC fleet written to SQLite (or any SQL URL)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

__all__ = ["DemoFleet", "generate_telemetry", "seed", "DEMO_START"]

logger = logging.getLogger(__name__)

DEMO_START = datetime(2024, 1, 1, tzinfo=UTC)

TELEMETRY_DDL = """
CREATE TABLE IF NOT EXISTS telemetry (
    machine_id VARCHAR(128) NOT NULL,
    ts VARCHAR(32) NOT NULL,
    metric VARCHAR(64) NOT NULL,
    value DOUBLE PRECISION,
    unit VARCHAR(16),
    ingested_at VARCHAR(32)
)"""


@dataclass(frozen=True)
class DemoFleet:
    """What a seed wrote: machine ids, the UTC time range covered, and the row count."""

    machines: list[str]
    start: datetime
    end: datetime
    rows: int
    url: str


def machine_ids(n: int) -> list[str]:
    return [f"hvac-{i:03d}" for i in range(1, n + 1)]


def generate_telemetry(machine_id: str, index: int, start: datetime, days: int,
                       seed: int) -> pd.DataFrame:
    """One machine's long-form telemetry at 1-minute resolution (deterministic per seed)."""
    rng = np.random.default_rng([seed, index])
    n = days * 24 * 60
    ts = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    minute = np.arange(n)
    daily = np.sin(2 * np.pi * (minute % 1440) / 1440 - np.pi / 2)
    base = 20.0 + index % 5
    temperature = base + 2.5 * daily + rng.normal(0, 0.15, n)
    period = 20 + index % 7
    on = (minute % period) < period // 2
    power = np.where(on, 4.0 + rng.normal(0, 0.2, n), 0.3 + rng.normal(0, 0.05, n))
    humidity = 45 + 5 * daily + rng.normal(0, 0.5, n)
    frames = []
    for metric, values, unit in (
        ("temperature", temperature, "degC"),
        ("power_kw", power, "kW"),
        ("humidity", humidity, "%"),
    ):
        frames.append(pd.DataFrame({"ts": ts, "metric": metric, "value": values.round(3),
                                    "unit": unit}))
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "machine_id", machine_id)
    df["ingested_at"] = df["ts"] + pd.Timedelta(minutes=1)
    return df


def _to_text(ts: pd.Series) -> pd.Series:
    return ts.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S")


def seed(url: str, *, machines: int = 3, days: int = 3, seed: int = 7,
         start: datetime = DEMO_START) -> DemoFleet:
    """(Re)write the demo source tables at ``url``; returns what was written."""
    from sqlalchemy import create_engine, text

    from meshinsights.connectors.credentials import normalize_url

    engine = create_engine(normalize_url(url))
    ids = machine_ids(machines)
    rows = 0
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS telemetry"))
        conn.execute(text(TELEMETRY_DDL))
        for i, mid in enumerate(ids):
            df = generate_telemetry(mid, i, start, days, seed)
            df["ts"] = _to_text(df["ts"])
            df["ingested_at"] = _to_text(df["ingested_at"])
            df.to_sql("telemetry", conn, if_exists="append", index=False, chunksize=20_000)
            rows += len(df)
        conn.execute(text("CREATE INDEX ix_telemetry_machine_ts ON telemetry (machine_id, ts)"))
    engine.dispose()
    end = start + timedelta(days=days)
    logger.info("seeded %d rows for %d machines into %s", rows, machines, url.split("://")[0])
    return DemoFleet(ids, start, end, rows, url)
