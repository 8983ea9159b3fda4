"""The dashboard's data layer: catalog, checked and pruned reads, down-sampling, sections."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from meshinsights.dashboard import charts, data
from meshinsights.dashboard import status as dashboard_status
from meshinsights.errors import StoreError
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.dashboard.conftest import MINIMAL_MACHINES

WINDOW = Window.parse("2024-01-01", "2024-01-03")


def _series(n: int, *, spike_at: int, gap: slice | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    ts = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    value = np.sin(np.arange(n) / 500.0) + rng.normal(0, 0.05, n)
    value[spike_at] = 25.0
    value[spike_at + 7] = -25.0
    if gap is not None:
        value[gap] = np.nan
    return pd.DataFrame({"ts": ts, "value": value})


def test_downsample_bounds_points_and_keeps_every_bucket_extreme():
    df = _series(100_000, spike_at=51_234, gap=slice(70_000, 72_000))
    result = data.downsample(df, max_points=2000)
    assert len(result) <= 2000
    assert result["ts"].is_monotonic_increasing
    # Every min/max-bucket's extremes survive: recompute the buckets independently.
    t = df["ts"].astype("int64").to_numpy()
    bucket = (t - t[0]) * 1000 // (t[-1] - t[0] + 1)
    expected = df.assign(b=bucket).groupby("b")["value"].agg(["min", "max"]).dropna()
    got = result.assign(b=bucket[result.index]).groupby("b")["value"].agg(["min", "max"]).dropna()
    pd.testing.assert_frame_equal(got, expected)
    assert result["value"].max() == 25.0 and result["value"].min() == -25.0
    # The gap stays a gap: all-null buckets keep a null row, so plotly breaks the line there.
    assert result.loc[70_100:71_900, "value"].isna().any()


def test_downsample_leaves_short_series_alone():
    df = _series(1500, spike_at=10)
    assert data.downsample(df, max_points=2000) is df


def test_catalog_lists_tables_machines_and_extents(minimal_store: Path):
    store = DeltaStore(str(minimal_store))
    catalog = data.load_catalog(data.ReadOnlyStore(str(minimal_store)))
    expected_tables = {t.name: t.version for t in store.tables() if t.namespace == "minimal"}
    assert catalog.tables == {"minimal": expected_tables}
    assert {"telemetry", "temperature_hourly", "summary", "quarantine", "genai_analysis"} <= set(
        expected_tables
    )
    assert list(catalog.machines["minimal"]) == list(MINIMAL_MACHINES)
    telemetry = store.read_all("minimal", "telemetry")
    for machine, extent in catalog.machines["minimal"].items():
        rows = telemetry[telemetry["machine_id"] == machine]
        assert extent.rows == len(rows)
        assert pd.Timestamp(extent.min_ts) == rows["ts"].min()
        assert pd.Timestamp(extent.max_ts) == rows["ts"].max()
    window = data.default_window(catalog.machines["minimal"]["hvac-001"], days=7)
    assert window == WINDOW  # clipped to the first day of data, ending after the last


def test_read_window_checks_names_and_returns_one_machine(minimal_store: Path):
    ro = data.ReadOnlyStore(str(minimal_store))
    catalog = data.load_catalog(ro)
    day1 = Window.parse("2024-01-01", "2024-01-02")
    rows = data.read_window(ro, catalog, "minimal", "telemetry", "hvac-006", day1)
    assert set(rows["machine_id"]) == {"hvac-006"}
    assert rows["ts"].min() >= pd.Timestamp(day1.start)
    assert rows["ts"].max() < pd.Timestamp(day1.end)
    expected = DeltaStore(str(minimal_store)).read("minimal", "telemetry", "hvac-006", day1)
    pd.testing.assert_frame_equal(rows, expected)
    with pytest.raises(StoreError, match="machine 'hvac-999' has no data"):
        data.read_window(ro, catalog, "minimal", "telemetry", "hvac-999", day1)
    # A name the store does not list never reaches the store (no path is built from it).
    assert data.read_window(ro, catalog, "minimal", "../../etc", "hvac-001", day1).empty
    assert data.read_window(ro, catalog, "nope", "telemetry", "hvac-001", day1).empty


def test_read_only_store_has_no_write_or_whole_table_path():
    public = {n for n, _ in inspect.getmembers(data.ReadOnlyStore) if not n.startswith("_")}
    assert public == {
        "root", "tables", "version", "schema", "extents", "history", "read", "read_arrow",
        "runs",  # one machine's run index
        "exists",  # the stale panel asks which of a step's tables exist
    }  # fmt: skip
    for read in (data.ReadOnlyStore.read, data.ReadOnlyStore.read_arrow):
        assert inspect.signature(read).parameters["machine_id"].default is inspect.Parameter.empty
    sources = "".join(inspect.getsource(m) for m in (data, charts, dashboard_status))
    for forbidden in ("overwrite(", "read_all(", ".dataset(", "vacuum(", "compact(", ".delete("):
        assert forbidden not in sources


def test_run_history_keeps_this_machine_and_window(minimal_store: Path):
    ro = data.ReadOnlyStore(str(minimal_store))
    catalog = data.load_catalog(ro)
    day2 = Window.parse("2024-01-02", "2024-01-03")
    history = data.run_history(ro, catalog, "minimal", "hvac-001", day2)
    assert set(history["step"]) == {"ingest", "average_temperature", "summary", "genai"}
    # Every commit wrote day 2; the local runner's batch commits cover both days.
    assert (history["window_start"] < pd.Timestamp(day2.end)).all()
    assert (history["window_end"] > pd.Timestamp(day2.start)).all()
    assert all(json.loads(m) == ["hvac-001"] for m in history["machines"])
    # One commit per table that holds rows for the machine-day (an empty overwrite of an
    # empty partition may commit nothing, e.g. quarantine for a clean unit).
    store = DeltaStore(str(minimal_store))
    with_rows = {
        t for t in catalog.tables["minimal"] if len(store.read("minimal", t, "hvac-001", day2))
    }
    per_table = history.groupby("table_name").size().to_dict()
    assert {t: n for t, n in per_table.items() if t in with_rows} == dict.fromkeys(with_rows, 1)
    assert {"telemetry", "temperature_hourly", "summary", "genai_analysis"} <= with_rows
    assert history["committed_at"].is_monotonic_decreasing


def test_ingest_quality_matches_the_tables(minimal_store: Path):
    ro = data.ReadOnlyStore(str(minimal_store))
    catalog = data.load_catalog(ro)
    history = data.run_history(ro, catalog, "minimal", "hvac-006", WINDOW)
    q = data.ingest_quality(history)
    store = DeltaStore(str(minimal_store))
    telemetry = store.read("minimal", "telemetry", "hvac-006", WINDOW)
    quarantine = store.read("minimal", "quarantine", "hvac-006", WINDOW)
    assert q["rows_clean"] == len(telemetry)
    assert q["rows_quarantined"] == int((quarantine["source_table"] == "telemetry").sum()) > 0
    assert q["rows_in"] == q["rows_clean"] + q["rows_quarantined"] + q["duplicates_removed"]
    counts = data.quarantine_counts(quarantine)
    assert counts["rows"].sum() == len(quarantine)
    assert counts["rows"].is_monotonic_decreasing
    assert "temperature.rate" in set(counts["rule"])


def test_analyses_parse_the_genai_rows(minimal_store: Path):
    genai = DeltaStore(str(minimal_store)).read("minimal", "genai_analysis", "hvac-001", WINDOW)
    found = data.analyses(genai)
    assert [a["ts"] for a in found] == sorted(genai.loc[genai["current"], "ts"], reverse=True)
    first = found[0]
    row = genai.loc[genai["ts"] == first["ts"]].iloc[0]
    assert first["summary"] == row["summary"] and first["severity"] == row["overall_severity"]
    assert [f["title"] for f in first["findings"]] == [
        f["title"] for f in json.loads(row["findings"])["findings"]
    ]
    assert first["error"] is None  # a null column is None, never NaN


def test_analyses_tolerate_other_shapes():
    ts = pd.Timestamp("2024-01-01", tz="UTC")
    plain = pd.DataFrame({"ts": [ts], "response": ["free text"], "severity": ["high"]})
    assert data.analyses(plain) == [
        {
            "ts": ts,
            "window_end": None,
            "provider": None,
            "model": None,
            "status": None,
            "error": None,
            "response": "free text",
            "analyzed_at": None,
            "severity": "high",
            "summary": "",
            "findings": [],
            "actions": [],
        }
    ]
    listed = pd.DataFrame({"ts": [ts], "findings": ['[{"title": "t", "severity": "low"}]']})
    assert data.analyses(listed)[0]["findings"] == [{"title": "t", "severity": "low"}]
    assert data.analyses(pd.DataFrame()) == []


def test_hvac_figure_overlays_and_point_budget(hvac_store: Path):
    ro = data.ReadOnlyStore(str(hvac_store))
    catalog = data.load_catalog(ro)

    def load(table: str) -> pd.DataFrame:
        return data.read_window(ro, catalog, "hvac_power", table, "hvac-003", WINDOW)

    telemetry, anomalies = load("telemetry"), load("anomalies")
    fig = charts.telemetry_figure(
        telemetry,
        anomalies=anomalies,
        thresholds=load("thresholds"),
        cycles=load("cycles"),
        window_end=WINDOW.end,
    )
    names = [t.name for t in fig.data]
    metrics = sorted(telemetry["metric"].unique())
    assert names[: len(metrics)] == metrics or set(metrics) <= set(names)
    assert any(n.startswith("threshold stage") for n in names)
    assert any(n.startswith("cycle (valid)") for n in names)
    flagged = int(anomalies["flagged"].sum())
    assert ("anomaly" in names) == (flagged > 0)
    assert all(len(t.x) <= data.MAX_POINTS for t in fig.data)
    per_metric = telemetry.groupby("metric").size()
    assert (per_metric > data.MAX_POINTS).all()  # 2 days at 1 min: down-sampling did work
    assert charts.points_plotted(fig) < len(telemetry)


def test_plot_spec_for_curated_tables(hvac_store: Path):
    ro = data.ReadOnlyStore(str(hvac_store))
    catalog = data.load_catalog(ro)
    curated = data.curated_tables(catalog, "hvac_power")
    assert {"clean", "rolling", "features", "cycles", "variance", "thresholds", "forecasts"} <= set(
        curated
    )
    assert not set(curated) & data.SECTION_TABLES
    forecasts = data.read_window(ro, catalog, "hvac_power", "forecasts", "hvac-003", WINDOW)
    frame, columns, group = data.plot_spec("forecasts", forecasts)
    assert columns == ["yhat", "actual"] and group == "method"
    one_step = forecasts.loc[forecasts["horizon"] == 1, "target_ts"]
    assert (frame["ts"].to_numpy() == one_step.to_numpy()).all()
    fig = charts.curated_figure(frame, columns, group)
    assert {t.name for t in fig.data} == {
        f"{m} · {c}" for m in forecasts["method"].unique() for c in columns
    }


@pytest.mark.parametrize(
    "text",
    [
        "![x](http://example.invalid/p.png)",
        "[a](javascript:alert(1))",
        "<img src=x>",
        ":red[**boom**]",
        "`code` *em* _u_ ~~s~~ $x$",
        "www.example.invalid",
    ],
    ids=["image", "link", "html", "directive", "inline-marks", "autolink"],
)
def test_md_escape_leaves_no_active_markdown(text: str):
    escaped = data.md_escape(text)
    unescaped = escaped.replace("\\", "")
    assert unescaped == text  # the same characters are shown
    for active in ("](", "<", "[", "*", "_", "`", ":", "$", "~", "."):
        assert active not in escaped.replace("\\" + active, "")


def test_catalog_ignores_stray_folders(minimal_store: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "artifacts"
    shutil.copytree(minimal_store, copy)
    (copy / "lost+found").mkdir()
    (copy / "minimal" / "Bad Name" / "_delta_log").mkdir(parents=True)
    catalog = data.load_catalog(data.ReadOnlyStore(str(copy)))
    original = data.load_catalog(data.ReadOnlyStore(str(minimal_store)))
    assert (catalog.tables, catalog.machines) == (original.tables, original.machines)
