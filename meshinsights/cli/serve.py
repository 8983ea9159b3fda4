"""``meshinsights serve``: the read-only HTTP data API (FastAPI on uvicorn) over the store."""

from __future__ import annotations

import secrets
from datetime import timedelta

import typer

from meshinsights.cli.app import app, console, state

__all__: list[str] = []


@app.command()
def serve(
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="port to serve on"),
    address: str = typer.Option(
        "127.0.0.1", "--address", help="interface to bind (0.0.0.0 to serve the network)"
    ),
    generate_key: bool = typer.Option(
        False,
        "--generate-key",
        help="accept one random key for this process as well (printed once; local use)",
    ),
    max_page_rows: int = typer.Option(
        100_000, "--max-page-rows", min=1, help="largest 'limit' a request may ask for"
    ),
    max_range_days: float = typer.Option(
        31.0, "--max-range-days", min=0.001, help="longest [start, end) one request may cover"
    ),
    catalog_ttl: float = typer.Option(
        5.0, "--catalog-ttl", min=0.0, help="seconds the table/machine listing is kept"
    ),
) -> None:
    """Serve the artifacts over HTTP (read-only; keys from $MESHINSIGHTS_API_KEYS or the
    Connection meshinsights_api) until Ctrl-C. OpenAPI docs at /docs, KPIs at /metrics."""
    import uvicorn

    from meshinsights.api import Limits, create_app, load_keys

    settings = state.settings
    generated = secrets.token_urlsafe(32) if generate_key else None
    keys = load_keys(extra=[generated] if generated else [])
    limits = Limits(
        max_page_rows=max_page_rows,
        default_page_rows=min(10_000, max_page_rows),
        max_range=timedelta(days=max_range_days),
    )
    api = create_app(
        settings.store_uri,
        keys,
        storage_options=settings.storage_options,
        limits=limits,
        catalog_ttl=catalog_ttl,
    )
    console.print(
        f"data API on http://{address}:{port} (docs: /docs) over {settings.store_uri}; "
        f"{len(keys)} key(s) accepted (Ctrl-C stops)",
        highlight=False,
    )
    if generated:
        console.print(f"generated API key (this process only): {generated}", highlight=False)
    uvicorn.run(api, host=address, port=port, log_level="warning", workers=1)
