"""Azure Data Explorer (Kusto) connector: KQL with declared query parameters into a DataFrame.

Values are never spliced into KQL: the query declares them
(``declare query_parameters(machine_id:string, start:datetime, end:datetime);``) and they
travel as ``ClientRequestProperties`` parameters, which Kusto parses by the declared type.

The connection URL (from the Airflow Connection or ``AIRFLOW_CONN_<ID>``) selects the auth:

- ``https://<app_id>:<secret>@<cluster>?tenant=<tenant>`` — AAD application key;
- ``https://<cluster>?auth=azcli|msi|default`` — Azure CLI, managed identity (``client_id=``)
  or ``DefaultAzureCredential``; ``https://<cluster>`` alone means ``default``;
- ``http://<host>:<port>`` — no auth, only over plain http (the Kusto emulator, tests).

``azure-data-explorer://`` and ``adx://`` mean https; ``adx+http://`` means http.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pandas as pd

from meshinsights.config.machines import ADXSource, SourceOptions
from meshinsights.connectors.base import DBConnector
from meshinsights.credentials import redact
from meshinsights.errors import ConnectorError, TransientConnectorError

if TYPE_CHECKING:
    from meshinsights.connectors.sources import SourceAccess

__all__ = ["ADXConnector", "kql_literal", "frame_from_table"]

logger = logging.getLogger(__name__)

_SCHEMES = {
    "https": "https",
    "http": "http",
    "adx": "https",
    "azure-data-explorer": "https",
    "azure_data_explorer": "https",
    "adx+https": "https",
    "adx+http": "http",
}
_AUTHS = ("none", "app_key", "azcli", "msi", "default")


def kql_literal(value: Any) -> str:
    """A query-parameter value as Kusto parses it for its declared type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | pd.Timestamp):
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return f"datetime({ts.strftime('%Y-%m-%dT%H:%M:%S.%f')}Z)"
    if isinstance(value, date):
        return f"datetime({value.isoformat()})"
    if isinstance(value, timedelta | pd.Timedelta):
        total = pd.Timedelta(value)
        sign = "-" if total < pd.Timedelta(0) else ""
        c = abs(total).components
        return (
            f"timespan({sign}{c.days}.{c.hours:02d}:{c.minutes:02d}:{c.seconds:02d}."
            f"{c.milliseconds * 1000 + c.microseconds:06d})"
        )
    if isinstance(value, dict | list | tuple):
        return f"dynamic({json.dumps(value, default=str)})"
    if isinstance(value, Decimal):
        return f"decimal({value})"
    if isinstance(value, int | float | np.integer | np.floating):
        return repr(value.item() if hasattr(value, "item") else value)
    return str(value)  # string parameters travel as their raw text


def _to_float(col: str, df: pd.DataFrame) -> pd.Series:
    values = df[col].replace({"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf})
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _to_timedelta(col: str, df: pd.DataFrame) -> pd.Series:
    from azure.kusto.data.helpers import parse_timedelta

    return df[col].map(lambda v: pd.NaT if v is None else parse_timedelta(v))


#: Kusto type → column conversion (datetime to UTC, timespan to Timedelta, decimal to float;
#: dynamic stays as parsed JSON objects).
_CONVERTERS: dict[str, Any] = {
    "datetime": lambda col, df: pd.to_datetime(
        df[col], format="ISO8601", utc=True, errors="coerce"
    ),
    "date": lambda col, df: pd.to_datetime(df[col], format="ISO8601", utc=True, errors="coerce"),
    "timespan": _to_timedelta,
    "time": _to_timedelta,
    "real": _to_float,
    "double": _to_float,
    "decimal": _to_float,
    "dynamic": lambda col, df: df[col].astype(object),
    "string": lambda col, df: df[col].astype(object),
}


def frame_from_table(table: Any) -> pd.DataFrame:
    """A Kusto result table as a DataFrame with the types converted (see ``_CONVERTERS``)."""
    from azure.kusto.data.helpers import dataframe_from_result_table

    if not table.columns:
        return pd.DataFrame()
    return dataframe_from_result_table(table, nullable_bools=True, converters_by_type=_CONVERTERS)


class ADXConnector(DBConnector):
    """KQL into a DataFrame. Config: ``url`` (cluster + auth, see module doc), ``database``."""

    conn_type = "adx"
    options = ADXSource

    @classmethod
    def config_from_source(
        cls, source: SourceOptions, *, machine_id: str, access: SourceAccess
    ) -> dict[str, Any]:
        assert isinstance(source, ADXSource)
        return {"url": access.resolver(source.conn_id), "database": source.database}

    def __init__(
        self, *, url: str, database: str | None = None, timeout_s: int = 240, **options: Any
    ) -> None:
        super().__init__(url=url, database=database, timeout_s=timeout_s, **options)
        self.url = url

    @property
    def _secret(self) -> str | None:
        try:
            return unquote(urlsplit(self.url).password or "") or None
        except ValueError:
            return None

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return redact(
            f"adx {parts.scheme}://{parts.hostname or ''}"
            f"{':' + str(parts.port) if parts.port else ''}",
            self._secret,
        )

    def connect(self) -> Any:
        from azure.kusto.data import KustoClient

        client = KustoClient(self._kcsb())
        client.set_http_retries(0)  # retries are ours (with_retry), with backoff and logging
        return client

    def _kcsb(self) -> Any:
        from azure.kusto.data import KustoConnectionStringBuilder as KCSB

        parts = urlsplit(self.url)
        scheme = _SCHEMES.get(parts.scheme.lower())
        if scheme is None or not parts.hostname:
            raise ConnectorError(
                f"{self.describe()}: not an ADX URL; use https://<cluster> "
                "(or http://host:port for the local emulator)"
            )
        cluster = f"{scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"
        qs = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        default = "app_key" if parts.username else ("none" if scheme == "http" else "default")
        auth = qs.get("auth", default)
        if auth not in _AUTHS:
            raise ConnectorError(f"{self.describe()}: unknown auth {auth!r}; use one of {_AUTHS}")
        if auth == "none":
            if scheme != "http":
                raise ConnectorError(
                    f"{self.describe()}: auth=none is only allowed over http "
                    "(a local emulator); use AAD auth for https clusters"
                )
            return KCSB.with_no_authentication(cluster)
        if auth == "app_key":
            if not (parts.username and qs.get("tenant")):
                raise ConnectorError(
                    f"{self.describe()}: application-key auth needs "
                    "https://<app_id>:<secret>@<cluster>?tenant=<tenant id>"
                )
            return KCSB.with_aad_application_key_authentication(
                cluster, unquote(parts.username), unquote(parts.password or ""), qs["tenant"]
            )
        if auth == "azcli":
            return KCSB.with_az_cli_authentication(cluster)
        if auth == "msi":
            client_id: Any = qs.get("client_id")  # None: the system-assigned identity
            return KCSB.with_aad_managed_service_identity_authentication(cluster, client_id)
        from azure.identity import DefaultAzureCredential

        return KCSB.with_azure_token_credential(cluster, DefaultAzureCredential())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        super().close()

    def query(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        from azure.kusto.data import ClientRequestProperties

        props = ClientRequestProperties()
        props.application = "meshinsights"
        props.set_option(
            ClientRequestProperties.request_timeout_option_name,
            timedelta(seconds=int(self.config["timeout_s"])),
        )
        for name, value in (params or {}).items():
            props.set_parameter(name, kql_literal(value))
        try:
            response = self.client.execute_query(self.config["database"], query, props)
            if response.errors_count:
                raise ConnectorError(
                    f"{self.describe()}: query failed "
                    f"({'; '.join(response.get_exceptions())[:300]})"
                )
            primary = response.primary_results
            return frame_from_table(primary[0]) if primary else pd.DataFrame()
        except ConnectorError:
            raise
        except Exception as exc:
            raise self._wrap(exc) from None

    def _wrap(self, exc: Exception) -> ConnectorError:
        """One secret-free line; throttling, 5xx and network faults are transient."""
        from azure.kusto.data.exceptions import (
            KustoApiError,
            KustoMultiApiError,
            KustoNetworkError,
            KustoThrottlingError,
        )

        where = self.describe()
        chain = _chain_text(exc)
        detail = redact(_first_line(exc), self._secret)
        status = getattr(getattr(exc, "http_response", None), "status_code", None)
        if isinstance(exc, KustoNetworkError):
            if any(
                p in chain
                for p in (
                    "name or service not known",
                    "nameresolution",
                    "failed to resolve",
                    "getaddrinfo",
                )
            ):
                return ConnectorError(f"{where}: unknown host; check the cluster URL")
            return TransientConnectorError(
                f"{where}: cannot reach the cluster ({detail}); retrying"
            )
        if isinstance(exc, KustoThrottlingError) or (status and status >= 500):
            return TransientConnectorError(
                f"{where}: the cluster is busy (HTTP {status}); retrying"
            )
        if status in (401, 403):
            return ConnectorError(
                f"{where}: authentication failed (HTTP {status}); check the "
                "credentials and the principal's database permissions"
            )
        errors = (
            exc.get_api_errors()
            if isinstance(exc, KustoMultiApiError)
            else [exc.get_api_error()]
            if isinstance(exc, KustoApiError)
            else []
        )
        if errors and any(e.permanent is False for e in errors):
            return TransientConnectorError(f"{where}: transient query failure ({detail})")
        if errors:
            return ConnectorError(
                f"{where}: query failed ({detail}); fix the KQL or the declared parameters"
            )
        return ConnectorError(f"{where}: query failed ({detail})")


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message_text", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0][:300]


def _chain_text(exc: BaseException) -> str:
    parts: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(f"{type(cur).__name__} {cur}")
        cur = cur.__cause__ or cur.__context__
    return " ".join(parts).lower()
