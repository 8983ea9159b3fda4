"""The streamlit app's logic through ``AppTest``: stores seeded by the real pipelines."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import meshinsights.dashboard
from meshinsights.dashboard import data
from meshinsights.genai.models import GENAI_SCHEMA
from meshinsights.model import Window
from meshinsights.store import DeltaStore
from tests.dashboard.conftest import MINIMAL_MACHINES

APP = Path(meshinsights.dashboard.__file__).resolve().parent / "app.py"
WINDOW = Window.parse("2024-01-01", "2024-01-03")


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Each test starts with empty streamlit caches (they are process-wide)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    yield


def run_app(monkeypatch: pytest.MonkeyPatch, root: Path, **params: str) -> AppTest:
    monkeypatch.setenv("MESHINSIGHTS_STORE", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def _length(values: Any) -> int:
    if isinstance(values, dict) and "bdata" in values:  # plotly's typed-array encoding
        return len(np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]))
    return len(values or [])


def charts(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def test_minimal_store_renders_telemetry_and_analysis(monkeypatch, minimal_store: Path):
    at = run_app(monkeypatch, minimal_store)
    assert not at.exception
    assert at.selectbox(key="pipeline").options == ["minimal"]
    machine = at.selectbox(key="machine_minimal")
    assert machine.options == list(MINIMAL_MACHINES) and machine.value == "hvac-001"

    store = DeltaStore(str(minimal_store))
    telemetry = store.read("minimal", "telemetry", "hvac-001", WINDOW)
    spec = charts(at)[0]
    traces = {t["name"]: _length(t["x"]) for t in spec["data"]}
    assert sorted(traces) == sorted(telemetry["metric"].unique())
    assert all(0 < n <= data.MAX_POINTS for n in traces.values())
    assert f"{len(telemetry):,} rows → {sum(traces.values()):,} points plotted" in " ".join(
        texts(at, "caption")
    )

    genai = store.read("minimal", "genai_analysis", "hvac-001", WINDOW)
    latest = genai[genai["current"]].sort_values("ts").iloc[-1]
    markdown = texts(at, "markdown")
    assert data.md_escape(latest["summary"]) in markdown
    assert any(f"**{latest['overall_severity']}**" in m for m in markdown)
    assert "This pipeline has no issue checks (the hvac_power pipeline has them)." in texts(
        at, "info"
    )


def test_link_selects_machine_and_days(monkeypatch, minimal_store: Path):
    at = run_app(
        monkeypatch, minimal_store, machine="hvac-006", start="2024-01-02", end="2024-01-02"
    )
    assert not at.exception
    assert at.selectbox(key="machine_minimal").value == "hvac-006"
    day2 = Window.parse("2024-01-02", "2024-01-03")
    rows = len(DeltaStore(str(minimal_store)).read("minimal", "telemetry", "hvac-006", day2))
    assert any(c.startswith(f"{rows:,} rows → ") for c in texts(at, "caption"))
    assert at.query_params["machine"] == ["hvac-006"] or at.query_params["machine"] == "hvac-006"


@pytest.mark.parametrize("end", ["9999-12-31", "0001-01-01", "2024-13-01"])
def test_a_link_with_dates_out_of_range_falls_back_with_a_warning(
    monkeypatch, minimal_store: Path, end: str
):
    at = run_app(monkeypatch, minimal_store, start="2024-01-01", end=end)
    assert not at.exception, at.exception
    assert any("dates in the link" in w for w in texts(at, "warning"))
    assert charts(at)  # the page still shows the machine's last days


def test_data_quality_shows_quarantine_counts(monkeypatch, minimal_store: Path):
    at = run_app(monkeypatch, minimal_store, machine="hvac-006")
    quarantine = DeltaStore(str(minimal_store)).read("minimal", "quarantine", "hvac-006", WINDOW)
    expected = data.quarantine_counts(quarantine)
    shown = [d.value for d in at.dataframe if list(d.value.columns) == ["rule", "reason", "rows"]]
    assert len(shown) == 1
    pd.testing.assert_frame_equal(shown[0].reset_index(drop=True), expected)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["quarantined"] == f"{int((quarantine['source_table'] == 'telemetry').sum()):,}"


def test_bad_link_values_are_rejected_not_used(monkeypatch, minimal_store: Path):
    at = run_app(
        monkeypatch,
        minimal_store,
        machine="../../etc/passwd",
        pipeline="x'; drop",
        start="yesterday",
    )
    assert not at.exception
    assert at.selectbox(key="pipeline").value == "minimal"
    assert at.selectbox(key="machine_minimal").value == "hvac-001"
    warnings = " ".join(texts(at, "warning"))
    assert "pipeline in the link" in warnings and "machine in the link" in warnings
    assert "not YYYY-MM-DD" in warnings
    assert "passwd" not in warnings  # the bad value is not echoed back


def test_reads_only_the_selected_machine_window(monkeypatch, minimal_store: Path):
    calls: list[tuple[str, str, Any, Window]] = []
    original = DeltaStore.read

    def spy(self, namespace, table, machine_ids, window, **kw):
        calls.append((namespace, table, machine_ids, window))
        return original(self, namespace, table, machine_ids, window, **kw)

    def forbidden(*args, **kwargs):
        raise AssertionError("the dashboard must not read whole tables or write")

    monkeypatch.setattr(DeltaStore, "read", spy)
    for name in ("read_all", "dataset", "overwrite", "compact", "vacuum"):
        monkeypatch.setattr(DeltaStore, name, forbidden)
    at = run_app(monkeypatch, minimal_store)
    assert not at.exception
    assert {c[1] for c in calls} >= {"telemetry", "genai_analysis", "quarantine"}
    assert all(c[2] == "hvac-001" and c[3] == WINDOW for c in calls)

    calls.clear()
    at.selectbox(key="machine_minimal").set_value("hvac-006").run()
    assert not at.exception
    assert calls and all(c[2] == "hvac-006" for c in calls)


def test_hvac_power_tables_are_shown(monkeypatch, hvac_store: Path):
    at = run_app(monkeypatch, hvac_store)
    assert not at.exception
    assert at.selectbox(key="pipeline").options == ["hvac_power"]
    captions = " ".join(texts(at, "caption"))
    assert "overlays: anomalies, thresholds, cycles (" in captions
    names = {t["name"] for t in charts(at)[0]["data"]}
    assert any(n.startswith("threshold stage") for n in names)
    assert any(n.startswith("cycle (valid)") for n in names)
    curated = at.selectbox(key="curated_hvac_power")
    assert {"clean", "rolling", "features", "anomalies_mv", "forecasts"} <= set(curated.options)
    assert curated.value == curated.options[0] in ("temperature_hourly", "clean")
    issues = DeltaStore(str(hvac_store)).read("hvac_power", "issues", "hvac-003", WINDOW)
    assert "short_cycling" in set(issues["check"])
    shown = [d.value for d in at.dataframe if "message" in d.value.columns]
    assert len(shown) == 1 and sorted(shown[0]["check"]) == sorted(issues["check"])
    curated.set_value("forecasts").run()
    assert not at.exception
    assert {t["name"].split(" · ")[1] for t in charts(at)[1]["data"]} == {"yhat", "actual"}


def test_missing_genai_table_is_explained(monkeypatch, minimal_store: Path, tmp_path: Path):
    copy = tmp_path / "artifacts"
    shutil.copytree(minimal_store, copy)
    shutil.rmtree(copy / "minimal" / "genai_analysis")
    at = run_app(monkeypatch, copy)
    assert not at.exception
    assert any(i.startswith("No GenAI analysis in this pipeline yet") for i in texts(at, "info"))
    assert len(at.get("plotly_chart")) >= 1


def test_model_text_cannot_inject_markdown(monkeypatch, minimal_store: Path, tmp_path: Path):
    copy = tmp_path / "artifacts"
    shutil.copytree(minimal_store, copy)
    store = DeltaStore(str(copy))
    day = Window.parse("2024-01-02", "2024-01-03")
    rows = store.read("minimal", "genai_analysis", "hvac-001", day)
    evil = "![pixel](http://127.0.0.1:9/leak.png?k=v) [click](http://example.invalid) <b>x</b>"
    rows["summary"] = evil
    rows["findings"] = json.dumps(
        {
            "findings": [
                {"title": "[t](http://example.invalid)", "severity": ":red[boom]", "detail": evil}
            ]
        }
    )
    store.overwrite(
        "minimal", "genai_analysis", rows, machine_ids="hvac-001", window=day, schema=GENAI_SCHEMA
    )
    at = run_app(monkeypatch, copy)
    assert not at.exception
    markdown = " ".join(texts(at, "markdown"))
    assert "](http" not in markdown and "<b>" not in markdown and ":red[boom]" not in markdown
    assert data.md_escape(evil) in markdown  # shown, as inert text


def test_empty_store_says_what_to_run(monkeypatch, tmp_path: Path):
    at = run_app(monkeypatch, tmp_path / "nothing-here")
    assert not at.exception
    assert any("No artifacts in" in i and "meshinsights run" in i for i in texts(at, "info"))


def test_days_without_rows_say_so_and_offer_the_days_with_data(monkeypatch, minimal_store: Path):
    """The machine has data on 2024-01-01..02; a link to February shows none, honestly."""
    at = run_app(monkeypatch, minimal_store, machine="hvac-001", start="2024-02-01",
                 end="2024-02-03")
    assert not at.exception and charts(at) == []
    telemetry = DeltaStore(str(minimal_store)).read("minimal", "telemetry", "hvac-001", WINDOW)
    first, last = telemetry["ts"].min(), telemetry["ts"].max()
    expected = (f"telemetry: no rows for hvac-001 in 2024-02-01 → 2024-02-03. It holds "
                f"{len(telemetry):,} rows from {first:%Y-%m-%d %H:%M} to "
                f"{last:%Y-%m-%d %H:%M} UTC.")
    assert expected in texts(at, "info")
    assert any(t.startswith("genai_analysis: no rows for hvac-001 in 2024-02-01")
               for t in texts(at, "info"))
    at.button(key="show_telemetry").click().run()
    assert not at.exception
    assert at.date_input(key="days_minimal_hvac-001").value == (date(2024, 1, 1), date(2024, 1, 2))
    [spec, *_] = charts(at)
    assert sum(_length(t["x"]) for t in spec["data"]) > 0


def test_tables_without_rows_are_named_and_new_data_appears_on_refresh(
        monkeypatch, tmp_path: Path, minimal_store: Path):
    root = tmp_path / "artifacts"
    store = DeltaStore(str(root))
    empty = GENAI_SCHEMA.empty_table().to_pandas()
    store.overwrite("minimal", "genai_analysis", empty, machine_ids="hvac-001",
                    window=Window.parse("2026-12-05", "2026-12-06"), schema=GENAI_SCHEMA)
    at = run_app(monkeypatch, root)
    assert not at.exception
    [note] = texts(at, "info")
    assert f"The store {root} has tables (minimal: genai_analysis) but no rows in them yet" in note
    # Rows arrive (here: a copy of a run's tables); Refresh shows them without a restart.
    shutil.rmtree(root)
    shutil.copytree(minimal_store, root)
    at.sidebar.button[0].click().run()
    assert not at.exception
    assert at.selectbox(key="machine_minimal").options == list(MINIMAL_MACHINES)
    assert charts(at)
