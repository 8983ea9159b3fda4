"""The data API against a real server on loopback: every answer equals what DuckDB SQL over the
same store (``meshinsights sql``'s engine) returns for the same question."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.store import DeltaStore
from meshinsights.store.sql import ArtifactSQL
from tests.api.conftest import KEYS, Served, table_versions

DAY1 = {"start": "2024-01-01", "end": "2024-01-02"}
BOTH = {"start": "2024-01-01", "end": "2024-01-03"}


@pytest.fixture(scope="module")
def engine(minimal_store: Path) -> Iterator[ArtifactSQL]:
    """The SQL engine ``meshinsights sql`` runs, over the same store."""
    with ArtifactSQL(DeltaStore(str(minimal_store))) as sql:
        yield sql


def sql_frame(engine: ArtifactSQL, query: str) -> pd.DataFrame:
    table = engine.execute(query)
    assert table is not None
    return table.to_pandas()


def arrow_pages(api: Served, path: str, params: dict[str, Any]) -> tuple[pa.Table, int]:
    """Every page of an Arrow answer, concatenated, and the number of pages."""
    tables, token, pages = [], None, 0
    while True:
        query = {**params, "format": "arrow", **({"page_token": token} if token else {})}
        resp = api.client.get(path, params=query)
        assert resp.status_code == 200, resp.text
        reader = pa.ipc.open_stream(resp.content)
        tables.append(reader.read_all())
        pages += 1
        token = resp.headers.get("x-next-page-token")
        if not token:
            return pa.concat_tables(tables), pages


def json_pages(api: Served, path: str, params: dict[str, Any]) -> tuple[pd.DataFrame, int]:
    frames, token, pages = [], None, 0
    while True:
        resp = api.client.get(path, params={**params, **({"page_token": token} if token else {})})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        frames.append(pd.DataFrame(body["rows"], columns=[c["name"] for c in body["columns"]]))
        pages += 1
        token = body["next_page_token"]
        assert token == resp.headers.get("x-next-page-token")
        if not token:
            return pd.concat(frames, ignore_index=True), pages


def _frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas().reset_index(drop=True)


def _window_sql(machine: str, start: str, end: str) -> str:
    return f"machine_id = '{machine}' AND ts >= TIMESTAMPTZ '{start}' AND ts < TIMESTAMPTZ '{end}'"


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True).dt.as_unit("us")


# ---------------------------------------------------------------------- catalog


def test_machines_match_sql(api: Served, engine: ArtifactSQL) -> None:
    resp = api.client.get("/v1/machines")
    assert resp.status_code == 200, resp.text
    result = pd.DataFrame(resp.json()["machines"])
    expected = sql_frame(
        engine,
        "SELECT machine_id, count(*) AS rows, min(ts) AS first_ts, max(ts) AS last_ts "
        "FROM minimal__telemetry GROUP BY machine_id ORDER BY machine_id",
    )
    assert list(result["pipeline"]) == ["minimal"] * len(expected)
    assert list(result["machine_id"]) == list(expected["machine_id"])
    assert list(result["rows"]) == list(expected["rows"])
    assert (_utc(result["first_ts"]) == _utc(expected["first_ts"])).all()
    assert (_utc(result["last_ts"]) == _utc(expected["last_ts"])).all()
    last = sql_frame(
        engine,
        "SELECT trim(machines, '[]\"') AS machine_id, arg_max(run_id, committed_at) AS run_id, "
        "max(committed_at) AS committed_at FROM meshinsights_history "
        "WHERE pipeline = 'minimal' AND step IS NOT NULL GROUP BY ALL ORDER BY machine_id",
    )
    runs = pd.DataFrame(list(result["last_run"]))
    assert list(runs["run_id"]) == list(last["run_id"])
    assert (_utc(runs["committed_at"]) == _utc(last["committed_at"])).all()


def test_tables_match_sql(api: Served, engine: ArtifactSQL) -> None:
    resp = api.client.get("/v1/pipelines/minimal/tables")
    assert resp.status_code == 200, resp.text
    tables = {t["table"]: t for t in resp.json()["tables"]}
    expected = {
        info.sources[0][1]: info.sources[0][2]
        for name, info in engine.views.items()
        if name.startswith("minimal__")
    }
    assert {t: v["version"] for t, v in tables.items()} == expected
    for table, info in tables.items():
        schema = engine.execute(f'SELECT * EXCLUDE (month) FROM "minimal__{table}" LIMIT 0')
        assert schema is not None
        assert [c["name"] for c in info["columns"]] == schema.column_names, table
    assert {"name": "value", "type": "double"} in tables["telemetry"]["columns"]


# ---------------------------------------------------------------------- data


@pytest.mark.parametrize("fmt", ["arrow", "json", "csv"])
def test_rows_match_sql(api: Served, engine: ArtifactSQL, fmt: str) -> None:
    path = "/v1/pipelines/minimal/tables/temperature_hourly/rows"
    params = {"machine": "hvac-006", **BOTH}
    expected = sql_frame(
        engine,
        "SELECT * EXCLUDE (month) FROM minimal__temperature_hourly WHERE "
        + _window_sql("hvac-006", **BOTH)
        + " ORDER BY ts",
    )
    assert len(expected) == 48  # two days of hourly means
    if fmt == "arrow":
        result, _ = arrow_pages(api, path, params)
        result_df = _frame(result)
    elif fmt == "json":
        result_df, _ = json_pages(api, path, {**params, "format": "json"})
        result_df["ts"] = _utc(result_df["ts"])
    else:
        resp = api.client.get(path, params={**params, "format": "csv"})
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
        result_df = pacsv.read_csv(io.BytesIO(resp.content)).to_pandas()
        result_df["ts"] = _utc(result_df["ts"])
    expected["ts"] = _utc(expected["ts"])
    assert_frame_equal(result_df, expected, check_dtype=False)


def test_accept_header_chooses_format(api: Served) -> None:
    path = "/v1/machines/hvac-001/telemetry"
    arrow = api.client.get(
        path, params=DAY1 | {"limit": 5}, headers={"Accept": "application/vnd.apache.arrow.stream"}
    )
    assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert pa.ipc.open_stream(arrow.content).read_all().num_rows == 5
    csv = api.client.get(path, params=DAY1 | {"limit": 5}, headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.strip().splitlines()) == 6  # header + 5 rows


def test_telemetry_by_metric_matches_sql(api: Served, engine: ArtifactSQL) -> None:
    result, _ = arrow_pages(
        api, "/v1/machines/hvac-006/telemetry", {**BOTH, "metric": ["temperature", "humidity"]}
    )
    expected = sql_frame(
        engine,
        "SELECT * EXCLUDE (month) FROM minimal__telemetry WHERE "
        + _window_sql("hvac-006", **BOTH)
        + " AND metric IN ('temperature', 'humidity') ORDER BY ts, metric",
    )
    assert len(expected) > 5000  # more than one page
    result_df = _frame(result)
    assert set(result_df["metric"]) == {"temperature", "humidity"}
    assert_frame_equal(result_df, expected, check_dtype=False)


def test_telemetry_wide_matches_sql_pivot(api: Served, engine: ArtifactSQL) -> None:
    result, _ = arrow_pages(api, "/v1/machines/hvac-001/telemetry/wide", DAY1)
    where = _window_sql("hvac-001", **DAY1)
    metrics = sql_frame(
        engine, f"SELECT DISTINCT metric FROM minimal__telemetry WHERE {where} ORDER BY metric"
    )["metric"]
    pivot = ", ".join(f"any_value(value) FILTER (WHERE metric = '{m}') AS {m}" for m in metrics)
    expected = sql_frame(
        engine,
        f"SELECT machine_id, ts, {pivot} FROM minimal__telemetry WHERE {where} "
        "GROUP BY machine_id, ts ORDER BY ts",
    )
    assert len(expected) == 1440  # one row per minute
    result_df = _frame(result)
    assert list(result_df.columns) == list(expected.columns)
    assert_frame_equal(result_df, expected, check_dtype=False)


def test_quarantine_rows_and_reasons_match_sql(api: Served, engine: ArtifactSQL) -> None:
    result, _ = arrow_pages(api, "/v1/machines/hvac-006/quarantine", BOTH)
    expected = sql_frame(
        engine,
        "SELECT * EXCLUDE (month) FROM minimal__quarantine WHERE "
        + _window_sql("hvac-006", **BOTH)
        + " ORDER BY ts, source_table, rule, reason, original",
    )
    assert len(expected) > 0 and expected["reason"].notna().all()
    assert_frame_equal(_frame(result), expected, check_dtype=False)
    reasons = api.client.get("/v1/machines/hvac-006/quarantine/reasons", params=BOTH).json()
    counts = sql_frame(
        engine,
        "SELECT rule, reason, count(*) AS rows FROM minimal__quarantine WHERE "
        + _window_sql("hvac-006", **BOTH)
        + " GROUP BY ALL ORDER BY rows DESC, rule",
    )
    result_counts = pd.DataFrame(reasons["rows"]).sort_values(
        ["rows", "rule"], ascending=[False, True]
    )
    assert_frame_equal(result_counts.reset_index(drop=True), counts, check_dtype=False)


def test_runs_match_history_sql(api: Served, engine: ArtifactSQL) -> None:
    resp = api.client.get("/v1/machines/hvac-006/runs", params={**DAY1, "format": "json"})
    assert resp.status_code == 200, resp.text
    result = pd.DataFrame(resp.json()["rows"])
    expected = sql_frame(
        engine,
        "SELECT table_name, version, run_id, step, rows_written FROM meshinsights_history "
        "WHERE pipeline = 'minimal' AND machines LIKE '%\"hvac-006\"%' "
        f"AND window_start < TIMESTAMPTZ '{DAY1['end']}' AND window_end > TIMESTAMPTZ "
        f"'{DAY1['start']}' ORDER BY committed_at DESC, table_name",
    )
    assert len(expected) >= 4  # ingest's three tables and the steps after it
    cols = list(expected.columns)
    assert_frame_equal(result[cols], expected, check_dtype=False)


# ---------------------------------------------------------------------- paging


@pytest.mark.parametrize(
    ("limit", "start", "end"),
    [
        (1, "2024-01-01T00:00", "2024-01-01T00:10"),
        (3, "2024-01-01", "2024-01-01T01:00"),
        (997, "2024-01-01", "2024-01-03"),
    ],
    ids=["one-row-pages", "pages-cut-inside-a-timestamp", "many-pages"],
)
def test_pagination_returns_every_row_once(
    api: Served, engine: ArtifactSQL, limit: int, start: str, end: str
) -> None:
    result, pages = json_pages(
        api, "/v1/machines/hvac-006/telemetry", {"start": start, "end": end, "limit": limit}
    )
    expected = sql_frame(
        engine,
        "SELECT * EXCLUDE (month) FROM minimal__telemetry WHERE "
        + _window_sql("hvac-006", start, end)
        + " ORDER BY ts, metric",
    )
    assert pages == -(-len(expected) // limit)
    assert not result.duplicated(["ts", "metric"]).any()
    result["ts"], result["ingested_at"] = _utc(result["ts"]), _utc(result["ingested_at"])
    expected["ts"], expected["ingested_at"] = _utc(expected["ts"]), _utc(expected["ingested_at"])
    assert_frame_equal(result, expected, check_dtype=False)


def test_token_of_another_query_is_refused(api: Served) -> None:
    first = api.client.get("/v1/machines/hvac-006/telemetry", params={**DAY1, "limit": 10})
    token = first.json()["next_page_token"]
    assert token
    other = api.client.get(
        "/v1/machines/hvac-001/telemetry", params={**DAY1, "limit": 10, "page_token": token}
    )
    assert other.status_code == 400
    assert "different query" in other.json()["detail"]


# ---------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({}, 401, "missing API key"),
        ({"X-API-Key": "not-a-key-of-this-server"}, 403, "not accepted"),
        ({"Authorization": "Bearer not-a-key-of-this-server"}, 403, "not accepted"),
        ({"Authorization": f"Basic {KEYS[0]}"}, 401, "missing API key"),
        ({"X-API-Key": KEYS[0][:-1]}, 403, "not accepted"),
        ({"X-API-Key": KEYS[1]}, 200, None),
        ({"Authorization": f"Bearer {KEYS[1]}"}, 200, None),
    ],
    ids=["missing", "wrong", "wrong-bearer", "not-bearer", "truncated", "second-key", "bearer"],
)
@pytest.mark.parametrize("path", ["/v1/machines", "/metrics", "/v1/pipelines/minimal/tables"])
def test_keys(
    api: Served, headers: dict[str, str], status: int, detail: str | None, path: str
) -> None:
    import httpx

    resp = httpx.get(api.url + path, headers=headers, timeout=60)
    assert resp.status_code == status, resp.text
    if detail:
        assert detail in resp.json()["detail"]
        assert "Traceback" not in resp.text


def test_docs_need_no_key(api: Served) -> None:
    import httpx

    spec = httpx.get(api.url + "/openapi.json", timeout=60)
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "/v1/machines/{machine}/telemetry" in paths
    assert all(set(methods) == {"get"} for methods in paths.values())  # no write path
    assert httpx.get(api.url + "/docs", timeout=60).status_code == 200


# ---------------------------------------------------------------------- bad input

TEL = "/v1/machines/hvac-001/telemetry"


@pytest.mark.parametrize(
    ("path", "params", "status", "detail"),
    [
        ("/v1/machines/hvac-999/telemetry", DAY1, 404, "unknown machine 'hvac-999'"),
        (TEL, {"start": "2024-01-02", "end": "2024-01-01"}, 400, "is not after start"),
        (TEL, {"start": "2024-01-01", "end": "2024-01-01"}, 400, "is not after start"),
        (TEL, {"start": "2024-01-01", "end": "2024-03-01"}, 400, "more than the 3 days"),
        (TEL, {"start": "yesterday", "end": "2024-01-02"}, 400, "not an ISO date/time"),
        (TEL, {"start": "2024-01-01"}, 400, "invalid end: Field required"),
        (TEL, DAY1 | {"limit": 0}, 400, "use 1..5000 rows per page"),
        (TEL, DAY1 | {"limit": 5001}, 400, "use 1..5000 rows per page"),
        (TEL, DAY1 | {"limit": "ten"}, 400, "invalid limit"),
        (TEL, DAY1 | {"format": "xml"}, 400, "unknown format 'xml'"),
        (TEL, DAY1 | {"metric": "pressure"}, 404, "no metric ['pressure']"),
        (TEL, DAY1 | {"page_token": "bm90IGEgdG9rZW4"}, 400, "not a token this API issued"),
        (TEL, DAY1 | {"pipeline": "other"}, 404, "unknown pipeline 'other'"),
        ("/v1/machines/hvac-001'; DROP TABLE x;--/telemetry", DAY1, 400, "invalid machine id"),
        ("/v1/machines/..%2F..%2Fetc/telemetry", DAY1, 404, "no endpoint GET /v1/machines/../"),
        ("/v1/pipelines/minimal;select/tables", {}, 400, "invalid table name"),
        ("/v1/pipelines/Minimal/tables", {}, 400, "invalid table name"),
        ("/v1/pipelines/nope/tables", {}, 404, "unknown pipeline 'nope'"),
        (
            "/v1/pipelines/minimal/tables/telemetry%20--/rows",
            {"machine": "hvac-001"} | DAY1,
            400,
            "invalid table name",
        ),
        (
            "/v1/pipelines/minimal/tables/temperature_hourlyy/rows",
            {"machine": "hvac-001"} | DAY1,
            404,
            "did you mean 'temperature_hourly'",
        ),
        (
            "/v1/pipelines/minimal/tables/telemetry/rows",
            {"machine": "hvac-001", "columns": "value,secret"} | DAY1,
            400,
            "no column(s) ['secret']",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("/") else None,
)
def test_bad_parameters_get_a_clear_4xx(
    api: Served, path: str, params: dict[str, Any], status: int, detail: str
) -> None:
    resp = api.client.get(path, params=params)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert detail in body["detail"]
    assert "\n" not in body["detail"] and "Traceback" not in resp.text


# ---------------------------------------------------------------------- KPIs


def test_metrics_parse_and_match_history(api: Served, engine: ArtifactSQL) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    resp = api.client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, s.labels.get("machine"), s.labels.get("step")): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
        if s.labels.get("pipeline") == "minimal"
    }
    counts = sql_frame(
        engine,
        "SELECT trim(machines, '[]\"') AS machine, sum(rows_in)::BIGINT AS rows_in, "
        "sum(rows_clean)::BIGINT AS rows_clean, sum(rows_quarantined)::BIGINT AS rows_quarantined, "
        "sum(duplicates_removed)::BIGINT AS duplicates_removed FROM ("
        "  SELECT *, row_number() OVER (PARTITION BY machines, window_start, window_end "
        "  ORDER BY committed_at DESC) AS newest FROM meshinsights_history "
        "  WHERE pipeline = 'minimal' AND step = 'ingest' AND table_name = 'telemetry'"
        ") WHERE newest = 1 GROUP BY ALL ORDER BY machine",
    )
    assert list(counts["machine"]) == ["hvac-001", "hvac-006"]
    for row in counts.to_dict("records"):
        m = row["machine"]
        for k in ("rows_in", "rows_clean", "rows_quarantined", "duplicates_removed"):
            assert samples[(f"meshinsights_ingest_{k}", m, None)] == row[k], (m, k)
        # Nothing lost: what ingest read is clean, quarantined or a removed duplicate.
        assert (
            row["rows_in"]
            == row["rows_clean"] + row["rows_quarantined"] + row["duplicates_removed"]
        )
        distinct = row["rows_in"] - row["duplicates_removed"]
        assert samples[("meshinsights_ingest_quality_ratio", m, None)] == pytest.approx(
            1 - row["rows_quarantined"] / distinct
        )
    assert samples[("meshinsights_ingest_rows_quarantined", "hvac-006", None)] > 0
    fresh = sql_frame(
        engine,
        "SELECT trim(machines, '[]\"') AS machine, step, max(window_end) AS window_end "
        "FROM meshinsights_history WHERE pipeline = 'minimal' AND step IS NOT NULL "
        "AND window_end IS NOT NULL GROUP BY ALL",
    )
    assert len(fresh) >= 4
    for row in fresh.to_dict("records"):
        key = ("meshinsights_last_window_end_timestamp_seconds", row["machine"], row["step"])
        assert samples[key] == pd.Timestamp(row["window_end"]).timestamp()
    for m in ("hvac-001", "hvac-006"):
        assert samples[("meshinsights_step_seconds", m, "ingest")] > 0
        assert (
            samples[("meshinsights_last_run_seconds", m, None)]
            >= samples[("meshinsights_step_seconds", m, "ingest")]
        )
        assert samples[("meshinsights_runs", m, None)] == 1


def test_requests_leave_every_table_version_unchanged(api: Served, minimal_store: Path) -> None:
    before = table_versions(minimal_store)
    for path, params in [
        ("/v1/machines", {}),
        ("/v1/pipelines/minimal/tables", {}),
        ("/v1/pipelines/minimal/tables/telemetry/rows", {"machine": "hvac-001", **DAY1}),
        ("/v1/machines/hvac-006/quarantine", BOTH),
        ("/v1/machines/hvac-006/runs", BOTH),
        ("/metrics", {}),
    ]:
        assert api.client.get(path, params=params).status_code == 200
    for method in ("post", "put", "delete", "patch"):
        resp = api.client.request(method, "/v1/machines/hvac-001/telemetry", params=DAY1)
        assert resp.status_code == 405, (method, resp.text)
    assert table_versions(minimal_store) == before
    assert json.dumps(before)  # versions are plain ints: comparable across processes


def test_metrics_equal_the_dashboards_data_quality_numbers(
    api: Served, minimal_store: Path
) -> None:
    """/metrics and the dashboard's data-quality section count the same commits alike."""
    from prometheus_client.parser import text_string_to_metric_families

    from meshinsights.dashboard import data
    from meshinsights.model import Window

    text = api.client.get("/metrics").text
    samples = {
        (s.name, s.labels["machine"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("meshinsights_ingest_") and s.labels.get("pipeline") == "minimal"
    }
    ro = data.ReadOnlyStore(str(minimal_store))
    catalog = data.load_catalog(ro)
    for machine in ("hvac-001", "hvac-006"):
        history = data.run_history(ro, catalog, "minimal", machine, Window.parse(**BOTH))
        shown = data.ingest_quality(history)
        assert shown["rows_in"] > 0
        for key, value in shown.items():
            assert samples[(f"meshinsights_ingest_{key}", machine)] == value, (machine, key)
