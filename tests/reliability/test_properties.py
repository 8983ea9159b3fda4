"""Bad input, property-based: hostile frames through normalize → validate → store → steps.

Invariants for every drawn frame: nothing raises but a ``MeshInsightsError`` (and then only a
``ConfigError`` for a frame lacking a required column, naming it); every row is accounted for
(rows_in = clean + quarantined + duplicates removed); clean rows are canonical (this machine,
inside the window, finite values, one reading per time and metric, the rule's unit and range);
quarantined rows carry a rule, a reason and the original values; the store round-trips both
tables exactly; and every registered step of the repo's pipelines accepts the clean output and
returns rows the store accepts. ``make soak`` runs the same properties with many more examples.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from meshinsights.config import load_configs
from meshinsights.errors import ConfigError
from meshinsights.model import EVENTS_SCHEMA, QUARANTINE_SCHEMA, TELEMETRY_SCHEMA, Window
from meshinsights.normalize import NormalizeResult, normalize_events, normalize_telemetry
from meshinsights.normalize.timestamps import TimeFormat
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS
from tests.reliability.chain import as_stored, planned_steps, run_chain
from tests.reliability.conftest import SOAK, record
from tests.reliability.strategies import (
    MID,
    TS_STYLES,
    WINDOWS,
    ZONES,
    Drawn,
    events_frames,
    render_ts,
    telemetry_frames,
)

EXAMPLES = int(os.environ.get("MESHINSIGHTS_SOAK_EXAMPLES", "1000")) if SOAK else 60
PROPS = settings(max_examples=EXAMPLES, deadline=None, derandomize=not SOAK,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

RULES = {"none": None, "hvac_power": load_configs(CONFIGS).pipelines["hvac_power"].validation}
#: The day-one steps and the core of the HVAC analysis (cheap enough for every example).
FAST = {"average_temperature", "summary", "clean", "cycles", "cycle_stats", "variance",
        "thresholds", "anomalies"}
FAST_STEPS = [s for name in ("minimal", "hvac_power") for s in planned_steps(name) if s.id in FAST]
#: Every step of the HVAC pipeline in order (≈1.5 s an example): fewer examples.
FULL_STEPS = planned_steps("hvac_power")
FULL = settings(PROPS, max_examples=EXAMPLES // 4)


STATS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    """Tally what the examples held (rows, rules hit, refusals) for RELIABILITY.md."""
    STATS.clear()
    yield
    record("properties_soak" if SOAK else "properties", examples_per_test=EXAMPLES,
           **dict(sorted(STATS.items())))


def _tally(kind: str, result: NormalizeResult | None) -> None:
    STATS[f"{kind}.examples"] += 1
    if result is None:
        STATS[f"{kind}.refused_missing_column"] += 1
        return
    STATS[f"{kind}.rows_in"] += result.rows_in
    STATS[f"{kind}.rows_clean"] += len(result.clean)
    STATS[f"{kind}.duplicates_removed"] += result.duplicates_removed
    for rule, n in result.by_rule.items():
        STATS[f"{kind}.quarantined.{rule}"] += n


@pytest.fixture(scope="module")
def prop_store(tmp_path_factory: pytest.TempPathFactory) -> DeltaStore:
    """One store for all examples: each example overwrites its window (idempotency under test)."""
    return DeltaStore(str(tmp_path_factory.mktemp("props") / "artifacts"))


def _normalize(drawn: Drawn, fn, required: tuple[str, ...], **kw) -> NormalizeResult | None:
    """The result, or None when a required column is missing and a clear ConfigError said so."""
    missing = [c for c in required if c not in drawn.frame.columns]
    try:
        result = fn(drawn.frame, machine_id=MID, window=drawn.window,
                    times=TimeFormat(drawn.timezone), **kw)
    except ConfigError as exc:
        assert missing, f"unexpected ConfigError: {exc}"
        assert all(c in str(exc) for c in missing) and "alias" in str(exc)
        return None
    assert not missing, f"a frame without {missing} was accepted"
    return result


def _check_accounting(result: NormalizeResult, rows_in: int) -> None:
    assert result.rows_in == rows_in
    assert len(result.clean) + len(result.quarantine) + result.duplicates_removed == rows_in
    assert result.duplicates_removed >= 0


def _check_quarantine(q: pd.DataFrame, window: Window) -> None:
    assert (q["machine_id"] == MID).all()
    assert ((q["ts"] >= pd.Timestamp(window.start)) & (q["ts"] < pd.Timestamp(window.end))).all()
    assert q["rule"].notna().all() and (q["rule"].astype(str) != "").all()
    assert q["reason"].notna().all() and (q["reason"].astype(str) != "").all()
    for original in q["original"]:
        assert isinstance(json.loads(original), dict)


def _check_clean_telemetry(clean: pd.DataFrame, window: Window, rules) -> None:
    assert list(clean.columns) == TELEMETRY_SCHEMA.names
    assert str(clean["ts"].dtype) == "datetime64[us, UTC]"
    assert (clean["machine_id"] == MID).all()
    assert ((clean["ts"] >= pd.Timestamp(window.start))
            & (clean["ts"] < pd.Timestamp(window.end))).all()
    assert np.isfinite(clean["value"].to_numpy(dtype="float64")).all()
    assert not clean.duplicated(["ts", "metric"]).any()
    metrics = clean["metric"]
    assert metrics.map(lambda m: isinstance(m, str) and m == m.strip() and m != "").all()
    for metric, rule in (rules or {}).items():
        sel = clean[clean["metric"] == metric]
        if rule.min is not None:
            assert (sel["value"] >= rule.min).all(), metric
        if rule.max is not None:
            assert (sel["value"] <= rule.max).all(), metric
        if rule.unit is not None:
            assert (sel["unit"] == rule.unit).all(), (metric, set(sel["unit"]))


def _round_trip(store: DeltaStore, table: str, frame: pd.DataFrame, schema, window: Window
                ) -> pd.DataFrame:
    """Overwrite the window with ``frame``; what a reader gets back must be exactly it."""
    store.overwrite("props", table, frame, machine_ids=MID, window=window, schema=schema)
    back = store.read("props", table, MID, window)
    pd.testing.assert_frame_equal(_comparable(back), _comparable(frame), check_dtype=False)
    return back


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order, nulls as None (the store gives NaN for a null string, pandas 3)."""
    key = [c for c in frame.columns if c not in ("value", "ingested_at")]
    out = frame.sort_values(key, kind="stable", na_position="first").reset_index(drop=True)
    return out.astype(object).where(out.notna(), None)


@PROPS
@given(drawn=telemetry_frames(), rules=st.sampled_from(sorted(RULES)))
def test_telemetry_properties(drawn: Drawn, rules: str, prop_store: DeltaStore) -> None:
    result = _normalize(drawn, normalize_telemetry, ("ts", "metric", "value"), rules=RULES[rules])
    _tally("telemetry", result)
    if result is None:
        return
    _check_accounting(result, len(drawn.frame))
    _check_clean_telemetry(result.clean, drawn.window, RULES[rules])
    _check_quarantine(result.quarantine, drawn.window)
    telemetry = _round_trip(prop_store, "telemetry", result.clean, TELEMETRY_SCHEMA, drawn.window)
    quarantine = _round_trip(prop_store, "quarantine", result.quarantine, QUARANTINE_SCHEMA,
                             drawn.window)
    tables = run_chain(FAST_STEPS, {"telemetry": telemetry, "quarantine": quarantine},
                       machine_id=MID, window=drawn.window)
    assert {s.output for s in FAST_STEPS} <= set(tables)


@FULL
@given(drawn=telemetry_frames(), rules=st.sampled_from(sorted(RULES)))
def test_every_hvac_step_accepts_normalized_output(drawn: Drawn, rules: str) -> None:
    """The whole HVAC pipeline (GenAI offline included) on the clean output, no store."""
    result = _normalize(drawn, normalize_telemetry, ("ts", "metric", "value"), rules=RULES[rules])
    if result is None:
        return
    tables = {"telemetry": as_stored(result.clean, TELEMETRY_SCHEMA, "telemetry", MID,
                                     drawn.window),
              "quarantine": as_stored(result.quarantine, QUARANTINE_SCHEMA, "quarantine", MID,
                                      drawn.window)}
    tables = run_chain(FULL_STEPS, tables, machine_id=MID, window=drawn.window)
    assert {s.output for s in FULL_STEPS} <= set(tables)
    STATS["full_chain.examples"] += 1
    STATS["full_chain.step_runs"] += len(FULL_STEPS)
    STATS["full_chain.output_rows"] += sum(len(tables[s.output]) for s in FULL_STEPS)


EVENT_STEPS = [s for s in planned_steps("hvac_power") if s.id in ("event_counts", "alarm_floods")]


@PROPS
@given(drawn=events_frames())
def test_events_properties(drawn: Drawn, prop_store: DeltaStore) -> None:
    result = _normalize(drawn, normalize_events, ("ts", "kind"))
    _tally("events", result)
    if result is None:
        return
    _check_accounting(result, len(drawn.frame))
    clean = result.clean
    assert list(clean.columns) == EVENTS_SCHEMA.names
    assert (clean["machine_id"] == MID).all()
    assert clean["kind"].isin(["event", "alarm", "log"]).all()
    assert ((clean["ts"] >= pd.Timestamp(drawn.window.start))
            & (clean["ts"] < pd.Timestamp(drawn.window.end))).all()
    _check_quarantine(result.quarantine, drawn.window)
    events = _round_trip(prop_store, "events", clean, EVENTS_SCHEMA, drawn.window)
    tables = run_chain(EVENT_STEPS, {"events": events}, machine_id=MID, window=drawn.window)
    assert {"event_counts", "alarm_floods"} <= set(tables)


@st.composite
def timed_frames(draw: st.DrawFn) -> tuple[pd.DataFrame, list[pd.Timestamp], Window, str, str]:
    """Rows whose value is their index and whose ts renders a known moment in some style."""
    window = WINDOWS[draw(st.sampled_from(sorted(WINDOWS)))]
    tz, style = draw(st.sampled_from(ZONES)), draw(st.sampled_from(TS_STYLES))
    seconds = draw(st.lists(st.integers(-7200, 26 * 3600), min_size=1, max_size=40))
    moments = [pd.Timestamp(window.start) + pd.Timedelta(seconds=x) for x in seconds]
    shift = draw(st.integers(0, 4))  # "mixed" cycles the styles row by row from here
    cells = [render_ts(m.to_pydatetime(), style, tz, i + shift) for i, m in enumerate(moments)]
    frame = pd.DataFrame({"ts": cells, "metric": [f"m{i}" for i in range(len(cells))],
                          "value": np.arange(len(cells), dtype=float)})
    return frame, moments, window, tz, style


_MIXED = pd.DataFrame({  # found by this property: naive values next to aware ones read as UTC
    "ts": [pd.Timestamp("2024-10-27 03:00", tz="Europe/Berlin"), pd.Timestamp("2024-10-27 05:00"),
           "2024-10-27 06:00:00", "2024-10-27T06:30:00+01:00"],
    "metric": ["m0", "m1", "m2", "m3"], "value": [0.0, 1.0, 2.0, 3.0]})
_MIXED_AT = [pd.Timestamp(t) for t in ("2024-10-27 02:00Z", "2024-10-27 04:00Z",
                                       "2024-10-27 05:00Z", "2024-10-27 05:30Z")]


@settings(PROPS, max_examples=EXAMPLES * 2)  # no store, no steps: cheaper
@given(case=timed_frames())
@example(case=(_MIXED, _MIXED_AT, WINDOWS["autumn_dst"], "Europe/Berlin", "mixed"))
def test_times_land_where_they_were_meant(case) -> None:
    """Naive, aware, text, offset, epoch or all mixed in one column: never a shifted time."""
    frame, moments, window, tz, style = case
    result = normalize_telemetry(frame, machine_id=MID, window=window, times=TimeFormat(tz))
    meant = [moments[int(v)] for v in result.clean["value"]]
    assert result.clean["ts"].tolist() == meant, (style, tz)
    inside = {i for i, m in enumerate(moments) if window.start <= m < window.end}
    lost = inside - {int(v) for v in result.clean["value"]}
    if style in ("aware", "text_offset", "epoch"):
        assert not lost  # unambiguous times are never refused
    for original in result.quarantine["original"]:
        i = int(json.loads(original)["value"])
        assert i not in inside or i in lost
    STATS["timed.rows"] += len(frame)
    STATS["timed.clean"] += len(result.clean)


# ---------------------------------------------------------------- DST edges, by example

BERLIN_DAY = {"2024-03-31": Window.parse("2024-03-30T12:00", "2024-04-01"),
              "2024-10-27": Window.parse("2024-10-26T12:00", "2024-10-28")}
DST_CASES = [
    ("2024-03-31 01:59:00", "2024-03-31 00:59:00+00:00"),  # last minute of CET
    ("2024-03-31 02:00:00", None),  # does not exist: clocks jump 02:00 → 03:00
    ("2024-03-31 02:30:00", None),
    ("2024-03-31 03:00:00", "2024-03-31 01:00:00+00:00"),  # first minute of CEST
    ("2024-10-27 01:59:00", "2024-10-26 23:59:00+00:00"),
    ("2024-10-27 02:00:00", None),  # happens twice (CEST, then CET): ambiguous
    ("2024-10-27 02:30:00", None),
    ("2024-10-27 03:00:00", "2024-10-27 02:00:00+00:00"),
    ("2024-10-27T02:30:00+02:00", "2024-10-27 00:30:00+00:00"),  # an offset settles it
    ("2024-10-27T02:30:00+01:00", "2024-10-27 01:30:00+00:00"),
]


@pytest.mark.parametrize(("local", "utc"), DST_CASES, ids=[c[0] for c in DST_CASES])
def test_berlin_dst_edges(local: str, utc: str | None) -> None:
    window = BERLIN_DAY[local[:10]]
    raw = pd.DataFrame({"ts": [local], "metric": ["temperature"], "value": [20.0]})
    result = normalize_telemetry(raw, machine_id=MID, window=window,
                                 times=TimeFormat("Europe/Berlin"))
    if utc is None:
        assert result.clean.empty
        assert result.quarantine["rule"].tolist() == ["ts_parse"]
        assert json.loads(result.quarantine["original"].iloc[0])["ts"] == local
    else:
        assert result.clean["ts"].tolist() == [pd.Timestamp(utc)]


def test_a_whole_berlin_autumn_day_keeps_every_unambiguous_minute() -> None:
    local = pd.date_range("2024-10-27 00:00", "2024-10-27 23:59", freq="1min")
    raw = pd.DataFrame({"ts": local.strftime("%Y-%m-%d %H:%M:%S"), "metric": "temperature",
                        "value": np.arange(len(local), dtype=float)})
    window = Window.parse("2024-10-26T20:00", "2024-10-28")
    result = normalize_telemetry(raw, machine_id=MID, window=window,
                                 times=TimeFormat("Europe/Berlin"))
    assert len(local) == 1440 and result.by_rule == {"ts_parse": 60}  # 02:00-02:59 twice
    assert len(result.clean) == 1380 and result.clean["ts"].is_monotonic_increasing
    assert math.isclose(result.clean["ts"].diff().dt.total_seconds().max(), 2 * 3600 + 60)


def test_absurd_magnitudes_are_quarantined_so_aggregates_stay_finite() -> None:
    """Found by the properties: 1e200 readings made mean/std overflow to inf in every step."""
    window = Window.parse("2024-01-01", "2024-01-02")
    ts = pd.date_range("2024-01-01", periods=6, freq="1min", tz="UTC")
    raw = pd.DataFrame({"ts": ts, "metric": "temperature",
                        "value": [20.0, 1e200, -1e308, 1e15, 21.0, 2.0**70]})
    result = normalize_telemetry(raw, machine_id=MID, window=window)
    assert result.clean["value"].tolist() == [20.0, 1e15, 21.0]
    assert result.by_rule == {"value_magnitude": 3}
    tables = run_chain(FAST_STEPS, {
        "telemetry": as_stored(result.clean, TELEMETRY_SCHEMA, "telemetry", MID, window),
        "quarantine": as_stored(result.quarantine, QUARANTINE_SCHEMA, "quarantine", MID, window)},
        machine_id=MID, window=window)
    summary = tables["summary"].set_index("metric").loc["temperature"]
    assert np.isfinite([summary["mean"], summary["std"], summary["max"]]).all()


ENDS = ["9999-12-31 23:59:59", "0001-01-01 00:00:00", "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00+05:00", "1677-09-21 00:12:43", "2262-04-11 23:47:16"]


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Europe/Berlin"])
def test_times_at_the_ends_of_the_datetime_range_are_quarantined(tz: str) -> None:
    """Found by `make soak`: year-9999 local times made normalization raise NotImplementedError."""
    window = WINDOWS["plain"]
    raw = pd.DataFrame({"ts": [*ENDS, "2024-01-01 12:00:00"], "metric": "temperature",
                        "value": np.arange(len(ENDS) + 1, dtype=float)})
    for kind, fn in (("telemetry", normalize_telemetry), ("events", normalize_events)):
        frame = raw if kind == "telemetry" else raw.rename(columns={"metric": "kind"}).assign(
            kind="event")
        result = fn(frame, machine_id=MID, window=window, times=TimeFormat(tz))
        assert len(result.clean) == 1 and result.by_rule == {"ts_parse": len(ENDS)}, kind
