"""``meshinsights maintenance compact|vacuum``: keep tables fast and their storage bounded."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from meshinsights.cli.app import app, out, state

__all__: list[str] = []

maintenance_app = typer.Typer(
    help="Compact small files and vacuum old versions of tables.", no_args_is_help=True
)
app.add_typer(maintenance_app, name="maintenance")

_PIPELINE = typer.Option([], "--pipeline", "-p", help="only this pipeline (repeatable)")
_TABLE = typer.Option([], "--table", "-t", help="only this table (repeatable)")


def _pairs(pipelines: list[str], tables: list[str]) -> tuple[Any, list[tuple[str, str]]]:
    from meshinsights.orchestration.maintenance import select_tables

    store = state.settings.open_store()
    return store, select_tables(store, namespaces=pipelines, tables=tables)


def _show(title: str, results: list[Any]) -> None:
    table = Table(title=title)
    for col in (
        "pipeline",
        "table",
        "files before",
        "files after",
        "files removed",
        "version",
        "seconds",
    ):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.namespace,
            r.table,
            str(r.files_before),
            str(r.files_after),
            str(r.files_removed),
            str(r.version),
            f"{r.seconds:.2f}",
        )
    out.print(table)


@maintenance_app.command("compact")
def compact(pipeline: list[str] = _PIPELINE, table: list[str] = _TABLE) -> None:
    """Merge each machine-month partition into one file and checkpoint the log (safe while
    pipelines write; readers are unaffected)."""
    from meshinsights.orchestration.maintenance import compact_tables

    store, pairs = _pairs(pipeline, table)
    _show(f"compacted {len(pairs)} table(s) in {store.root}", compact_tables(store, pairs))


@maintenance_app.command("vacuum")
def vacuum(
    retention_hours: int = typer.Option(
        168, "--retention-hours", min=0, help="keep every version younger than this"
    ),
    pipeline: list[str] = _PIPELINE,
    table: list[str] = _TABLE,
) -> None:
    """Delete files no version younger than --retention-hours needs (ends older time travel)."""
    from meshinsights.orchestration.maintenance import vacuum_tables

    store, pairs = _pairs(pipeline, table)
    results = vacuum_tables(store, pairs, retention_hours=retention_hours)
    _show(f"vacuumed {len(pairs)} table(s) in {store.root} (retention {retention_hours}h)", results)
