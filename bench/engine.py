"""Benchmark 2 — step engine vs DuckDB: the same per-machine result from the pandas step and
from DuckDB SQL over the same Arrow data (results are checked equal before timing).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bench.harness import Bench, interleaved, median
from bench.overhead import MACHINE, prepare

__all__ = ["bench_engine", "HOURLY_SQL", "CYCLES_SQL"]

logger = logging.getLogger(__name__)

# Integer bucketing: 2.3x faster here than date_trunc('hour', ts) on TIMESTAMPTZ (ICU calendar).
HOURLY_SQL = """
SELECT make_timestamp(epoch_us(ts) // 3600000000 * 3600000000) AS ts, 'temperature' AS metric,
       avg(value) AS mean,
       min(value) AS min, max(value) AS max, count(value) AS count
FROM t WHERE metric = 'temperature' AND value IS NOT NULL
GROUP BY 1 ORDER BY 1
"""

# detect_cycles + cycle_medians in SQL: stage per sample, runs of equal stage, one row per run
# that ends before the data does, flagged complete/valid exactly as the pandas step does.
CYCLES_SQL = """
WITH s AS (
  SELECT ts, value,
         CASE WHEN value IS NULL OR isnan(value) THEN -1
              ELSE (value >= {e1})::INT + (value >= {e2})::INT END AS stage,
         row_number() OVER (ORDER BY ts) AS i
  FROM t WHERE metric = '{metric}'),
l AS (
  SELECT *, lag(stage) OVER (ORDER BY ts) AS prev_stage,
         coalesce(lag(stage) OVER (ORDER BY ts) >= 0
                  AND ts - lag(ts) OVER (ORDER BY ts) <= INTERVAL '{step_min} minutes',
                  false) AS known_before,
         coalesce(lead(stage) OVER (ORDER BY ts) >= 0
                  AND lead(ts) OVER (ORDER BY ts) - ts <= INTERVAL '{step_min} minutes',
                  false) AS known_after,
         lead(ts) OVER (ORDER BY ts) IS NULL AS is_last
  FROM s),
r AS (
  SELECT *, sum(CASE WHEN prev_stage IS DISTINCT FROM stage THEN 1 ELSE 0 END)
            OVER (ORDER BY ts ROWS UNBOUNDED PRECEDING) AS run
  FROM l),
seg AS (
  SELECT run, any_value(stage) AS stage, count(*) AS n, median(value) AS median,
         arg_min(known_before, ts) AS known_before, arg_max(known_after, ts) AS known_after,
         bool_or(is_last) AS at_end
  FROM r GROUP BY run),
c AS (
  SELECT stage, n * {step_min} AS duration_min, median, known_before AND known_after AS complete
  FROM seg WHERE stage >= 0 AND NOT at_end),
v AS (
  SELECT *, complete AND duration_min >= {min_minutes}
            AND NOT (stage > 0 AND duration_min > {max_minutes}) AS valid FROM c),
m AS (SELECT stage, median(median) FILTER (WHERE valid) AS center FROM v GROUP BY stage)
SELECT v.stage, count(*) FILTER (WHERE valid) AS n_cycles,
       count(*) FILTER (WHERE NOT valid) AS n_rejected,
       any_value(m.center) AS median,
       median(abs(v.median - m.center)) FILTER (WHERE valid) AS mad,
       stddev_samp(v.median) FILTER (WHERE valid) / avg(v.median) FILTER (WHERE valid) AS cv,
       median(duration_min) FILTER (WHERE valid) AS median_duration_min,
       sum(duration_min) AS total_minutes,
       count(*) FILTER (WHERE complete) / {hours} AS cycles_per_hour
FROM v JOIN m USING (stage) GROUP BY v.stage ORDER BY v.stage
"""


def _duck(threads: int | None = None) -> Any:
    """A DuckDB connection in UTC; ``threads=1`` compares like with like (pandas uses one core)."""
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    return con


def _hourly(bench: Bench, telemetry: pa.Table, reps: int) -> None:
    from meshinsights.steps.basic import average_temperature

    con, con1 = _duck(), _duck(threads=1)
    con.register("t", telemetry)
    con1.register("t", telemetry)
    df = telemetry.to_pandas()
    result = average_temperature(df, metric="temperature", freq="1h")
    expected = con.execute(HOURLY_SQL).df()
    _check_equal(result, expected, ["mean", "min", "max", "count"], "average_temperature")
    times = interleaved(
        {
            "pandas_step": lambda: average_temperature(df, metric="temperature", freq="1h"),
            "duckdb": lambda: con.sql(HOURLY_SQL).to_arrow_table(),
            "duckdb_1thread": lambda: con1.sql(HOURLY_SQL).to_arrow_table(),
            "arrow_to_pandas": lambda: telemetry.to_pandas(),
        },
        reps,
    )
    _ratio(bench, "hourly aggregates", times)


def _cycles(bench: Bench, telemetry: pa.Table, window: Any, reps: int) -> None:
    from meshinsights.steps.cycles import cycle_medians, detect_cycles
    from meshinsights.steps.registry import get_step
    from meshinsights.steps.resample import resample

    params = get_step("detect_cycles").bind_params(None)
    clean = resample(telemetry.to_pandas(), window=window)
    clean_arrow = pa.Table.from_pandas(clean[["ts", "metric", "value"]], preserve_index=False)
    con, con1 = _duck(), _duck(threads=1)
    con.register("t", clean_arrow)
    con1.register("t", clean_arrow)
    edges = sorted(params["stage_edges"])
    sql = CYCLES_SQL.format(
        e1=edges[0],
        e2=edges[1],
        metric=params["metric"],
        step_min=1,
        min_minutes=params["min_minutes"],
        max_minutes=params["max_minutes"],
        hours=(window.end - window.start).total_seconds() / 3600.0,
    )

    def pandas_steps() -> pd.DataFrame:
        return cycle_medians(detect_cycles(clean, **params, window=window), window=window)

    cols = [
        "n_cycles",
        "n_rejected",
        "median",
        "mad",
        "cv",
        "median_duration_min",
        "total_minutes",
        "cycles_per_hour",
    ]
    expected = con.execute(sql).df()
    _check_equal(pandas_steps(), expected, cols, "cycle_medians", key="stage")
    times = interleaved(
        {
            "pandas_step": pandas_steps,
            "duckdb": lambda: con.sql(sql).to_arrow_table(),
            "duckdb_1thread": lambda: con1.sql(sql).to_arrow_table(),
            "detect_cycles_only": lambda: detect_cycles(clean, **params, window=window),
        },
        reps,
    )
    _ratio(bench, "cycle medians (detect_cycles + cycle_medians)", times)
    bench.add(
        "cycles: detect_cycles share of the pandas time",
        median(times["detect_cycles_only"]) / median(times["pandas_step"]),
        "",
    )


def _check_equal(
    result: pd.DataFrame, expected: pd.DataFrame, cols: list[str], what: str, key: str = "ts"
) -> None:
    """Fail loudly if the two engines disagree: a benchmark of different results is worthless."""
    if len(result) != len(expected):
        raise AssertionError(f"{what}: pandas {len(result)} rows, DuckDB {len(expected)} rows")
    r = result.sort_values(key).reset_index(drop=True)
    e = expected.sort_values(key).reset_index(drop=True)
    for c in cols:
        a = pd.to_numeric(r[c], errors="coerce").to_numpy("float64")
        b = pd.to_numeric(e[c], errors="coerce").to_numpy("float64")
        if not np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True):
            raise AssertionError(f"{what}: column {c} differs between pandas and DuckDB")


def _ratio(bench: Bench, label: str, times: dict[str, list[float]]) -> None:
    key = label.split(" ")[0]
    bench.samples[key] = {k: [round(x, 5) for x in v] for k, v in times.items()}
    p, d = median(times["pandas_step"]), median(times["duckdb"])
    bench.add(f"{label}: pandas step", p * 1000, "ms")
    bench.add(f"{label}: DuckDB SQL", d * 1000, "ms")
    bench.add(f"{label}: pandas / DuckDB", p / d, "x", "<= 5", p / d <= 5)
    d1 = median(times["duckdb_1thread"])
    bench.add(f"{label}: pandas / DuckDB (1 thread)", p / d1, "x")
    if "arrow_to_pandas" in times:
        bench.add(
            f"{label}: Arrow -> pandas (runner read)", median(times["arrow_to_pandas"]) * 1000, "ms"
        )


def bench_engine(workdir: Path, *, quick: bool) -> Bench:
    days = 3 if quick else 90
    reps = 3 if quick else 7
    prep = prepare(workdir, days=days, quick=quick)
    telemetry = prep.store.read_arrow(
        prep.pipeline, "telemetry", MACHINE, prep.window, columns=["ts", "metric", "value", "unit"]
    )
    bench = Bench(
        "engine",
        "Step engine (pandas) vs DuckDB SQL over the same Arrow data",
        params={"machine": MACHINE, "days": days, "rows": telemetry.num_rows, "reps": reps},
    )
    _hourly(bench, telemetry, reps)
    _cycles(bench, telemetry, prep.window, reps)
    return bench
