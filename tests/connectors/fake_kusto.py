"""A small Kusto look-alike on loopback that speaks the REST v2 query protocol.

It receives what the real ``azure-kusto-data`` client sends (``POST /v2/rest/query`` with
``{"db", "csl", "properties"}``), checks that every parameter the query uses is declared in
``declare query_parameters(...)`` and supplied in the request properties, parses each value by
its declared type (as Kusto does), and evaluates a tiny KQL subset:

    declare query_parameters(p:type, ...);
    Table | where col op p [and col op p ...] [| project a, b] [| order by col [asc|desc]]

Answers are v2 frames (DataSetHeader, DataTable QueryProperties / PrimaryResult /
QueryCompletionInformation, DataSetCompletion). Error cases: an unknown table or parameter is
an HTTP 400 semantic error; table ``Broken`` answers 200 with an in-band OneApiErrors row;
table ``Throttled`` answers 429. Values are never interpolated, so an injection attempt is
just a string that matches nothing.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Column = tuple[str, str]  # (name, Kusto type)

_DECLARE = re.compile(r"^\s*declare\s+query_parameters\s*\((?P<body>[^)]*)\)\s*;", re.I | re.S)
_COND = re.compile(r"^\s*(\w+)\s*(==|!=|>=|<=|>|<)\s*(\w+)\s*$")
_OPS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}


class KustoQueryError(Exception):
    """A semantic or syntax error the server reports as HTTP 400."""


def _parse_datetime(text: str) -> datetime:
    text = text.strip()
    m = re.fullmatch(r"datetime\((.*)\)", text)
    if not m:
        raise KustoQueryError(f"Syntax error: expected a datetime literal, got '{text}'")
    raw = m.group(1).rstrip("Z")
    raw = re.sub(r"(\.\d{6})\d+", r"\1", raw)
    return datetime.fromisoformat(raw).replace(tzinfo=UTC)


def parse_value(kind: str, text: str) -> Any:
    """A parameter value parsed by its declared Kusto type."""
    if kind == "string":
        return text
    if kind == "datetime":
        return _parse_datetime(text)
    if kind in ("long", "int"):
        return int(text)
    if kind in ("real", "double"):
        return float(text)
    if kind == "bool":
        return {"true": True, "false": False}[text.lower()]
    raise KustoQueryError(f"unsupported parameter type {kind}")


def _cell(kind: str, value: Any) -> Any:
    """A Python value as Kusto puts it in a v2 JSON row."""
    if value is None:
        return None
    if kind == "datetime" and isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    if kind == "timespan" and isinstance(value, timedelta):
        total = value.total_seconds()
        days, rest = divmod(total, 86400)
        h, rest = divmod(rest, 3600)
        m, s = divmod(rest, 60)
        prefix = f"{int(days)}." if days else ""
        return f"{prefix}{int(h):02d}:{int(m):02d}:{s:010.7f}"
    if kind == "decimal":
        return str(value)
    return value


class FakeKusto:
    """Holds tables and serves them over HTTP on 127.0.0.1; ``url`` once started."""

    def __init__(self, tables: dict[str, tuple[list[Column], list[list[Any]]]]) -> None:
        self.tables = tables
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeKusto:
        handler = type("Handler", (_Handler,), {"kusto": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ query evaluation
    def run(self, csl: str, parameters: dict[str, str]) -> tuple[list[Column], list[list[Any]]]:
        declared: dict[str, str] = {}
        m = _DECLARE.match(csl)
        if m:
            for part in filter(None, (p.strip() for p in m.group("body").split(","))):
                name, _, kind = part.partition(":")
                declared[name.strip()] = kind.strip().lower()
            csl = csl[m.end():]
        values = {}
        for name, kind in declared.items():
            if name not in parameters:
                raise KustoQueryError(f"Semantic error: query parameter '{name}' has no value")
            values[name] = parse_value(kind, parameters[name])
        stages = [s.strip() for s in csl.strip().rstrip(";").split("|")]
        if stages[0] not in self.tables:
            raise KustoQueryError(f"Semantic error: 'table' operator: Failed to resolve table "
                                  f"or column expression named '{stages[0]}'")
        columns, rows = self.tables[stages[0]]
        names = [c for c, _ in columns]
        records = [dict(zip(names, r, strict=True)) for r in rows]
        for stage in stages[1:]:
            records, columns = self._stage(stage, records, columns, values)
        return columns, [[r[c] for c, _ in columns] for r in records]

    def _stage(self, stage: str, records: list[dict[str, Any]], columns: list[Column],
               values: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Column]]:
        verb, _, rest = stage.partition(" ")
        if verb == "where":
            for cond in re.split(r"\s+and\s+", rest):
                m = _COND.match(cond)
                if not m:
                    raise KustoQueryError(f"Syntax error: cannot parse '{cond.strip()}'")
                col, op, name = m.groups()
                if name not in values:
                    raise KustoQueryError(f"Semantic error: '{name}' is not declared")
                kinds = dict(columns)
                records = [r for r in records if r[col] is not None and _OPS[op](
                    _typed(kinds[col], r[col]), values[name])]
            return records, columns
        if verb == "project":
            keep = [c.strip() for c in rest.split(",")]
            kinds = dict(columns)
            return [{c: r[c] for c in keep} for r in records], [(c, kinds[c]) for c in keep]
        if verb == "order":
            parts = rest.split()
            col, desc = parts[1], len(parts) > 2 and parts[2] == "desc"
            return sorted(records, key=lambda r: r[col], reverse=desc), columns
        raise KustoQueryError(f"Syntax error: unsupported operator '{verb}'")


def _typed(kind: str, value: Any) -> Any:
    if kind == "datetime" and isinstance(value, str):
        return _parse_datetime(f"datetime({value})")
    return value


def _frames(columns: list[Column], rows: list[list[Any]], *, error: bool = False) -> list[dict]:
    v2cols = [{"ColumnName": n, "ColumnType": k} for n, k in columns]
    primary_rows: list[Any] = [[_cell(k, v) for (_, k), v in zip(columns, r, strict=True)]
                               for r in rows]
    completion_rows = [["2024-01-01T00:00:00Z", "crid", "aid", "sid", "pid", 4, "Info", 0,
                        "S_OK (0)", 4, "QueryInfo", '{"Count":1,"Text":"Query completed"}']]
    if error:
        primary_rows.append({"OneApiErrors": [{"error": {
            "code": "LimitsExceeded", "message": "Request is invalid and cannot be executed.",
            "@type": "Kusto.Data.Exceptions.KustoServicePartialQueryFailureLimitsExceededException",
            "@message": "Query execution has exceeded the allowed limits (80DA0003).",
            "@permanent": True}}]})
    qci = ["Timestamp:datetime", "ClientRequestId:string", "ActivityId:guid",
           "SubActivityId:guid", "ParentActivityId:guid", "Level:int", "LevelName:string",
           "StatusCode:int", "StatusCodeName:string", "EventType:int", "EventTypeName:string",
           "Payload:string"]
    return [
        {"FrameType": "DataSetHeader", "IsProgressive": False, "Version": "v2.0",
         "IsFragmented": False, "ErrorReportingPlacement": "InData"},
        {"FrameType": "DataTable", "TableId": 0, "TableKind": "QueryProperties",
         "TableName": "@ExtendedProperties",
         "Columns": [{"ColumnName": "TableId", "ColumnType": "int"},
                     {"ColumnName": "Key", "ColumnType": "string"},
                     {"ColumnName": "Value", "ColumnType": "dynamic"}],
         "Rows": [[1, "Visualization", {"Visualization": None}]]},
        {"FrameType": "DataTable", "TableId": 1, "TableKind": "PrimaryResult",
         "TableName": "PrimaryResult", "Columns": v2cols, "Rows": primary_rows},
        {"FrameType": "DataTable", "TableId": 2, "TableKind": "QueryCompletionInformation",
         "TableName": "QueryCompletionInformation",
         "Columns": [{"ColumnName": c.split(":")[0], "ColumnType": c.split(":")[1]} for c in qci],
         "Rows": completion_rows},
        {"FrameType": "DataSetCompletion", "HasErrors": error, "Cancelled": False},
    ]


class _Handler(BaseHTTPRequestHandler):
    kusto: FakeKusto

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        payload = json.loads(self.rfile.read(length) or b"{}")
        props = json.loads(payload.get("properties") or "{}")
        self.kusto.requests.append({"path": self.path, "headers": dict(self.headers),
                                    **payload, "properties": props})
        if self.path != "/v2/rest/query":
            self._send(404, {"error": {"code": "NotFound", "message": "no such endpoint"}})
            return
        csl = payload.get("csl", "")
        table = csl.split(";")[-1].strip().split("|")[0].strip()
        if table == "Throttled":
            self._send(429, {"error": {"code": "TooManyRequests", "message": "throttled",
                                       "@permanent": False}})
            return
        try:
            columns, rows = self.kusto.run(csl, props.get("Parameters", {}))
        except (KustoQueryError, ValueError, KeyError) as exc:
            self._send(400, {"error": {
                "code": "General_BadRequest", "message": "Request is invalid and cannot be "
                "executed.", "@type": "Kusto.Data.Exceptions.SemanticException",
                "@message": str(exc), "@permanent": True}})
            return
        self._send(200, _frames(columns, rows, error=table == "Broken"))
