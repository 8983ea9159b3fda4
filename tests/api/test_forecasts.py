"""Forecasts by horizon and method over the hvac_power store, equal to DuckDB SQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.store import DeltaStore
from meshinsights.store.sql import ArtifactSQL
from tests.api.conftest import Served, serve, table_versions

BOTH = {"start": "2024-01-01", "end": "2024-01-03"}
KEYS = ["ts", "method", "horizon", "target_ts"]


@pytest.fixture(scope="module")
def hvac_api(hvac_store: Path) -> Iterator[Served]:
    """The API over the hvac_power store (hvac-003, two days, forecasts included)."""
    before = table_versions(hvac_store)
    with serve(hvac_store) as served:
        yield served
    assert table_versions(hvac_store) == before


def test_forecasts_by_horizon_match_sql(hvac_api: Served, hvac_store: Path) -> None:
    with ArtifactSQL(DeltaStore(str(hvac_store))) as engine:
        table = engine.execute(
            "SELECT * EXCLUDE (month) FROM hvac_power__forecasts WHERE machine_id = 'hvac-003' "
            "AND ts >= TIMESTAMPTZ '2024-01-01' AND ts < TIMESTAMPTZ '2024-01-03' "
            "AND horizon IN (1, 2)"
        )
    assert table is not None
    expected = table.to_pandas().sort_values(KEYS).reset_index(drop=True)
    assert set(expected["horizon"]) == {1, 2} and len(expected) > 10
    resp = hvac_api.client.get(
        "/v1/machines/hvac-003/forecasts",
        params={**BOTH, "horizon": [1, 2], "format": "arrow", "limit": 5000},
    )
    assert resp.status_code == 200, resp.text
    assert not resp.headers.get("x-next-page-token")
    result = pa.ipc.open_stream(resp.content).read_all().to_pandas()
    assert_frame_equal(result.sort_values(KEYS).reset_index(drop=True), expected, check_dtype=False)
    method = expected["method"].iloc[0]
    one = hvac_api.client.get(
        "/v1/machines/hvac-003/forecasts", params={**BOTH, "horizon": 1, "method": method}
    ).json()
    assert one["count"] == int(((expected["horizon"] == 1) & (expected["method"] == method)).sum())
    assert {r["method"] for r in one["rows"]} == {method}


def test_absent_horizon_and_missing_table_are_404(hvac_api: Served) -> None:
    resp = hvac_api.client.get("/v1/machines/hvac-003/forecasts", params={**BOTH, "horizon": 999})
    assert resp.status_code == 404
    assert "has no horizon [999] in this range; it has [1," in resp.json()["detail"]
    wrong = hvac_api.client.get("/v1/machines/hvac-003/forecasts", params={**BOTH, "horizon": "x"})
    assert wrong.status_code == 400 and "invalid horizon" in wrong.json()["detail"]
    assert pd.notna(hvac_api.client.get("/v1/machines").json()["machines"][0]["last_run"])


def test_pipeline_without_forecasts(hvac_api: Served, minimal_store: Path) -> None:
    with serve(minimal_store) as api:
        resp = api.client.get("/v1/machines/hvac-001/forecasts", params=BOTH)
    assert resp.status_code == 404
    assert "pipeline 'minimal' has no table 'forecasts'" in resp.json()["detail"]
