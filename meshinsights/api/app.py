"""The FastAPI application: read-only endpoints over the artifact store, behind API keys.

Every data endpoint needs a key (``X-API-Key: …`` or ``Authorization: Bearer …``); ``/docs``,
``/openapi.json`` and ``/health`` do not. A refused request gets a status and a one-line
``{"detail": …}``: 401 (no key), 403 (wrong key), 400 (bad parameter), 404 (unknown name) —
never a traceback. There is no route that writes.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from meshinsights import __version__
from meshinsights.api.encoding import choose_format, tabular_response
from meshinsights.api.errors import ApiError
from meshinsights.api.keys import KeyRing
from meshinsights.api.kpis import metrics_text
from meshinsights.api.source import DataSource, Limits
from meshinsights.dashboard.data import ReadOnlyStore
from meshinsights.errors import ConfigError, MeshInsightsError

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """Read-only access to MeshInsights artifact tables (current Delta versions).

Send the key as `X-API-Key: <key>` (or `Authorization: Bearer <key>`). Tabular endpoints answer
JSON, CSV or Arrow IPC (`?format=json|csv|arrow`, or the Accept header); a page holds at most
`limit` rows and, when more follow, a `next_page_token` (JSON body and `X-Next-Page-Token`
header) to pass back as `page_token` with the same parameters. Times are ISO 8601 (naive = UTC);
ranges are half-open `[start, end)`.
"""

Start = Annotated[str, Query(description="range start, ISO 8601 (naive = UTC), inclusive")]
End = Annotated[str, Query(description="range end, ISO 8601 (naive = UTC), exclusive")]
Limit = Annotated[int | None, Query(description="rows per page (default 10,000)")]
Token = Annotated[str | None, Query(description="next_page_token of the previous page")]
Fmt = Annotated[str | None, Query(alias="format", description="json, csv or arrow")]
PipelineOpt = Annotated[
    str | None, Query(description="the machine's pipeline, when it has data in several")
]
Metric = Annotated[list[str] | None, Query(description="metric name(s); repeat for several")]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def create_app(
    store_root: str,
    keys: KeyRing,
    *,
    storage_options: dict[str, str] | None = None,
    limits: Limits | None = None,
    catalog_ttl: float = 5.0,
) -> FastAPI:
    """The API over the store at ``store_root``, accepting the keys in ``keys``."""
    source = DataSource(
        ReadOnlyStore(store_root, storage_options=storage_options),
        limits=limits,
        catalog_ttl=catalog_ttl,
    )
    app = FastAPI(
        title="MeshInsights data API",
        version=__version__,
        description=_DESCRIPTION,
    )

    def require_key(
        x_api_key: Annotated[str | None, Header()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> None:
        presented = x_api_key
        if presented is None and authorization:
            scheme, _, value = authorization.partition(" ")
            presented = value.strip() if scheme.lower() == "bearer" else None
        if not presented:
            raise StarletteHTTPException(
                401, "missing API key: send it as 'X-API-Key: <key>' or 'Authorization: Bearer'"
            )
        if not keys.accepts(presented):
            raise StarletteHTTPException(403, "API key not accepted")

    secured = [Depends(require_key)]

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        detail = exc.detail
        if exc.status_code in (404, 405) and detail in ("Not Found", "Method Not Allowed"):
            detail = (
                f"no endpoint {request.method} {request.url.path}; the API is read-only and "
                "its endpoints are listed at /docs"
            )
        return JSONResponse(
            {"detail": _one_line(detail)}, status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        msg = first.get("msg", "invalid request")
        return JSONResponse({"detail": _one_line(f"invalid {where}: {msg}")}, status_code=400)

    @app.exception_handler(MeshInsightsError)
    async def _refused(_: Request, exc: MeshInsightsError) -> JSONResponse:
        status = (
            exc.status
            if isinstance(exc, ApiError)
            else 400
            if isinstance(exc, ConfigError)
            else 500
        )
        if status == 500:
            logger.error("request failed: %s", exc)
        return JSONResponse({"detail": _one_line(str(exc))}, status_code=status)

    @app.exception_handler(Exception)
    async def _crashed(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error in the API")
        return JSONResponse(
            {"detail": f"internal error ({type(exc).__name__}); the server log has the details"},
            status_code=500,
        )

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness: no key needed, no store access."""
        return {"status": "ok", "version": __version__}

    @app.get("/v1/machines", dependencies=secured, tags=["catalog"])
    def machines() -> dict[str, Any]:
        """Every machine with its pipeline, row count and time extent, and its last run."""
        return {"machines": source.machines()}

    @app.get("/v1/pipelines", dependencies=secured, tags=["catalog"])
    def pipelines() -> dict[str, Any]:
        """The pipelines in the store and their tables with current versions."""
        catalog = source.snapshot().catalog
        return {
            "pipelines": [{"pipeline": ns, "tables": v} for ns, v in sorted(catalog.tables.items())]
        }

    @app.get("/v1/pipelines/{pipeline}/tables", dependencies=secured, tags=["catalog"])
    def tables(pipeline: str) -> dict[str, Any]:
        """A pipeline's tables with their current version and schema."""
        return {"pipeline": pipeline, "tables": source.tables(pipeline)}

    @app.get("/v1/pipelines/{pipeline}/tables/{table}/rows", dependencies=secured, tags=["data"])
    def rows(
        request: Request,
        pipeline: str,
        table: str,
        machine: Annotated[str, Query(description="machine id")],
        start: Start,
        end: End,
        columns: Annotated[str | None, Query(description="comma-separated columns")] = None,
        limit: Limit = None,
        page_token: Token = None,
        fmt: Fmt = None,
    ) -> Response:
        """Rows of one table for one machine in ``[start, end)``, ordered by ``ts``."""
        chosen = choose_format(fmt, request.headers.get("accept"))
        cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        result = source.rows(
            pipeline,
            table,
            machine,
            source.window(start, end),
            columns=cols,
            limit=limit,
            token=page_token,
        )
        return tabular_response(
            result.page.rows, chosen, meta=result.meta, next_token=result.page.next_token
        )

    def _telemetry(
        request: Request,
        machine: str,
        start: str,
        end: str,
        metric: list[str] | None,
        pipeline: str | None,
        limit: int | None,
        page_token: str | None,
        fmt: str | None,
        wide: bool,
    ) -> Response:
        chosen = choose_format(fmt, request.headers.get("accept"))
        window = source.window(start, end)
        ns = source.machine(machine, pipeline)
        result = source.rows(
            ns,
            "telemetry",
            machine,
            window,
            where={"metric": metric} if metric else None,
            limit=limit,
            token=page_token,
            wide=wide,
        )
        return tabular_response(
            result.page.rows, chosen, meta=result.meta, next_token=result.page.next_token
        )

    @app.get("/v1/machines/{machine}/telemetry", dependencies=secured, tags=["data"])
    def telemetry(
        request: Request,
        machine: str,
        start: Start,
        end: End,
        metric: Metric = None,
        pipeline: PipelineOpt = None,
        limit: Limit = None,
        page_token: Token = None,
        fmt: Fmt = None,
    ) -> Response:
        """Telemetry in the long format (``ts, metric, value, unit``), optionally some metrics."""
        return _telemetry(
            request, machine, start, end, metric, pipeline, limit, page_token, fmt, False
        )

    @app.get("/v1/machines/{machine}/telemetry/wide", dependencies=secured, tags=["data"])
    def telemetry_wide(
        request: Request,
        machine: str,
        start: Start,
        end: End,
        metric: Metric = None,
        pipeline: PipelineOpt = None,
        limit: Limit = None,
        page_token: Token = None,
        fmt: Fmt = None,
    ) -> Response:
        """Telemetry wide: one row per ``ts``, one column per metric."""
        return _telemetry(
            request, machine, start, end, metric, pipeline, limit, page_token, fmt, True
        )

    @app.get("/v1/machines/{machine}/forecasts", dependencies=secured, tags=["data"])
    def forecasts(
        request: Request,
        machine: str,
        start: Start,
        end: End,
        horizon: Annotated[
            list[int] | None, Query(description="steps ahead (1 = next); repeat for several")
        ] = None,
        method: Annotated[list[str] | None, Query(description="forecast method(s)")] = None,
        pipeline: PipelineOpt = None,
        limit: Limit = None,
        page_token: Token = None,
        fmt: Fmt = None,
    ) -> Response:
        """Forecasts made in ``[start, end)`` (by origin ``ts``), optionally by horizon/method."""
        chosen = choose_format(fmt, request.headers.get("accept"))
        window = source.window(start, end)
        ns = source.machine(machine, pipeline)
        where = {k: v for k, v in (("horizon", horizon), ("method", method)) if v}
        result = source.rows(
            ns, "forecasts", machine, window, where=where, limit=limit, token=page_token
        )
        return tabular_response(
            result.page.rows, chosen, meta=result.meta, next_token=result.page.next_token
        )

    @app.get("/v1/machines/{machine}/quarantine", dependencies=secured, tags=["data"])
    def quarantine(
        request: Request,
        machine: str,
        start: Start,
        end: End,
        pipeline: PipelineOpt = None,
        limit: Limit = None,
        page_token: Token = None,
        fmt: Fmt = None,
    ) -> Response:
        """Quarantined rows (rule, reason, the original row as JSON) in ``[start, end)``."""
        chosen = choose_format(fmt, request.headers.get("accept"))
        window = source.window(start, end)
        ns = source.machine(machine, pipeline)
        result = source.rows(ns, "quarantine", machine, window, limit=limit, token=page_token)
        return tabular_response(
            result.page.rows, chosen, meta=result.meta, next_token=result.page.next_token
        )

    @app.get("/v1/machines/{machine}/quarantine/reasons", dependencies=secured, tags=["data"])
    def quarantine_reasons(
        request: Request,
        machine: str,
        start: Start,
        end: End,
        pipeline: PipelineOpt = None,
        fmt: Fmt = None,
    ) -> Response:
        """Quarantined rows per rule and reason in ``[start, end)``, most frequent first."""
        chosen = choose_format(fmt, request.headers.get("accept"))
        window = source.window(start, end)
        table = source.quarantine_reasons(machine, window, pipeline)
        meta = {
            "machine_id": machine,
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
        }
        return tabular_response(table, chosen, meta=meta, next_token=None)

    @app.get("/v1/machines/{machine}/runs", dependencies=secured, tags=["data"])
    def runs(
        request: Request,
        machine: str,
        start: Start,
        end: End,
        pipeline: PipelineOpt = None,
        fmt: Fmt = None,
    ) -> Response:
        """Commits of the machine's pipeline tables that touched it and overlap the range."""
        chosen = choose_format(fmt, request.headers.get("accept"))
        window = source.window(start, end)
        ns, table = source.runs(machine, window, pipeline)
        meta = {
            "pipeline": ns,
            "machine_id": machine,
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
        }
        return tabular_response(table, chosen, meta=meta, next_token=None)

    @app.get("/metrics", dependencies=secured, tags=["service"])
    def metrics() -> Response:
        """Pipeline KPIs in the Prometheus text format, from the commit metadata."""
        body, content_type = metrics_text(source.ro)
        return Response(body, media_type=content_type)

    return app
