"""ADXConnector: the real azure-kusto-data client against a loopback server speaking REST v2."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from meshinsights.connectors.adx import ADXConnector, kql_literal
from meshinsights.connectors.retry import with_retry
from meshinsights.errors import ConnectorError, TransientConnectorError
from tests.connectors.fake_kusto import FakeKusto

COLUMNS = [("machine_id", "string"), ("ts", "datetime"), ("metric", "string"),
           ("value", "real"), ("runtime", "timespan"), ("price", "decimal"),
           ("attrs", "dynamic"), ("count", "long"), ("ok", "bool")]
ROWS = [
    ["m1", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), "temperature", 20.5,
     timedelta(hours=1, seconds=5.5), Decimal("1.25"), {"site": "a"}, 3, True],
    ["m1", datetime(2024, 1, 1, 6, tzinfo=UTC), "temperature", None, None, None, None, None,
     None],
    ["m1", datetime(2024, 1, 2, tzinfo=UTC), "temperature", 22.0, timedelta(days=2),
     Decimal("2.5"), [1, 2], 4, False],
    ["m2", datetime(2024, 1, 1, 3, tzinfo=UTC), "temperature", 30.0, timedelta(0),
     Decimal("0"), None, 1, True],
]
KQL = ("declare query_parameters(machine:string, start:datetime, end:datetime);\n"
       "Telemetry | where machine_id == machine and ts >= start and ts < end | order by ts")
DAY = {"start": datetime(2024, 1, 1, tzinfo=UTC), "end": datetime(2024, 1, 2, tzinfo=UTC)}


@pytest.fixture
def kusto() -> Iterator[FakeKusto]:
    """A Kusto look-alike on 127.0.0.1 holding ``Telemetry`` (and the error tables)."""
    with FakeKusto({"Telemetry": (COLUMNS, ROWS), "Broken": (COLUMNS, ROWS)}) as server:
        yield server


def test_declared_parameters_select_the_window_with_kusto_types(kusto: FakeKusto) -> None:
    with ADXConnector(url=kusto.url, database="iot") as conn:
        result = conn.query(KQL, {"machine": "m1", **DAY})
    sent = kusto.requests[-1]
    assert sent["db"] == "iot" and sent["csl"] == KQL  # the KQL text is sent untouched
    assert sent["properties"]["Parameters"] == {
        "machine": "m1", "start": "datetime(2024-01-01T00:00:00.000000Z)",
        "end": "datetime(2024-01-02T00:00:00.000000Z)"}
    assert "Authorization" not in sent["headers"]
    assert len(result) == 2
    assert str(result["ts"].dtype) == "datetime64[ns, UTC]"
    assert result["ts"].iloc[0] == pd.Timestamp("2024-01-01 00:00:00.123456", tz="UTC")
    assert result["runtime"].iloc[0] == pd.Timedelta(hours=1, seconds=5.5)
    assert pd.isna(result["runtime"].iloc[1])
    assert result["price"].dtype == "float64" and result["price"].iloc[0] == 1.25
    assert result["attrs"].iloc[0] == {"site": "a"}
    assert result["value"].iloc[0] == 20.5 and pd.isna(result["value"].iloc[1])
    assert list(result["count"].astype("Int64")) == [3, pd.NA]
    assert bool(result["ok"].iloc[0]) is True


@pytest.mark.parametrize("evil", ["m1' or 1==1 //", 'm1" or true', "m1; .drop table Telemetry"],
                         ids=["quote", "double-quote", "control-command"])
def test_injection_through_a_parameter_matches_nothing(kusto: FakeKusto, evil: str) -> None:
    with ADXConnector(url=kusto.url, database="iot") as conn:
        assert conn.query(KQL, {"machine": evil, **DAY}).empty
        assert len(conn.query(KQL, {"machine": "m1", **DAY})) == 2
    assert kusto.requests[0]["properties"]["Parameters"]["machine"] == evil


def test_semantic_error_is_one_permanent_line(kusto: FakeKusto) -> None:
    with pytest.raises(ConnectorError) as info:
        ADXConnector(url=kusto.url, database="iot").query("NoSuchTable | where x == y")
    message = str(info.value)
    assert not isinstance(info.value, TransientConnectorError)
    assert "NoSuchTable" in message and "fix the KQL" in message and "\n" not in message


def test_undeclared_parameter_value_is_reported(kusto: FakeKusto) -> None:
    with pytest.raises(ConnectorError, match="has no value"):
        ADXConnector(url=kusto.url, database="iot").query(KQL, {"machine": "m1"})


def test_in_band_error_frame_fails_the_query(kusto: FakeKusto) -> None:
    with pytest.raises(ConnectorError, match="exceeded the allowed limits"):
        ADXConnector(url=kusto.url, database="iot").query(
            KQL.replace("Telemetry", "Broken"), {"machine": "m1", **DAY})


def test_throttling_is_transient_and_retried(kusto: FakeKusto) -> None:
    conn = ADXConnector(url=kusto.url, database="iot")
    sleeps: list[float] = []
    with pytest.raises(ConnectorError, match="after 3 attempts") as info:
        with_retry(lambda: conn.query("Throttled"), attempts=3, base_delay=0.01,
                   sleep=sleeps.append)
    assert isinstance(info.value.__cause__, TransientConnectorError)
    assert len(kusto.requests) == 3 and len(sleeps) == 2


def test_unreachable_cluster_is_transient_unknown_host_permanent() -> None:
    with pytest.raises(TransientConnectorError, match="cannot reach"):
        ADXConnector(url="http://127.0.0.1:1", database="iot").query("T")
    with pytest.raises(ConnectorError, match="unknown host") as info:
        ADXConnector(url="http://nohost.invalid:8080", database="iot").query("T")
    assert not isinstance(info.value, TransientConnectorError)


@pytest.mark.parametrize("url, fragment", [
    ("https://cluster.example.net?auth=none", "only allowed over http"),
    ("https://app:s3cret-key@cluster.example.net", "needs https://<app_id>"),
    ("ftp://cluster.example.net", "not an ADX URL"),
    ("https://cluster.example.net?auth=magic", "unknown auth"),
], ids=["none-over-https", "app-key-without-tenant", "bad-scheme", "bad-auth"])
def test_connection_url_errors_are_clear_and_secret_free(url: str, fragment: str) -> None:
    with pytest.raises(ConnectorError, match=fragment) as info:
        ADXConnector(url=url, database="iot").connect()
    assert "s3cret-key" not in str(info.value)


@pytest.mark.parametrize("value, expected", [
    (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "datetime(2024-01-02T03:04:05.000000Z)"),
    (datetime(2024, 1, 2, 3, 4, 5), "datetime(2024-01-02T03:04:05.000000Z)"),
    (timedelta(days=1, hours=2, microseconds=5), "timespan(1.02:00:00.000005)"),
    (True, "true"), (42, "42"), (1.5, "1.5"), ({"a": [1]}, 'dynamic({"a": [1]})'),
    (Decimal("1.10"), "decimal(1.10)"), ("it's", "it's"),
], ids=["aware", "naive-utc", "timespan", "bool", "long", "real", "dynamic", "decimal",
        "string-raw"])
def test_kql_literal(value: object, expected: str) -> None:
    assert kql_literal(value) == expected
