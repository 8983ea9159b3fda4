"""``meshinsights maintenance compact|vacuum|repair``: keep tables fast, bounded and readable."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from meshinsights.cli.app import app, out, state
from meshinsights.errors import ConfigError

__all__: list[str] = []

maintenance_app = typer.Typer(
    help="Compact small files and vacuum old versions of tables.", no_args_is_help=True
)
app.add_typer(maintenance_app, name="maintenance")

_PIPELINE = typer.Option([], "--pipeline", "-p", help="only this pipeline (repeatable)")
_TABLE = typer.Option([], "--table", "-t", help="only this table (repeatable)")


def _pairs(pipelines: list[str], tables: list[str]) -> tuple[Any, list[tuple[str, str]]]:
    from meshinsights.engine.maintenance import select_tables

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
    from meshinsights.engine.maintenance import compact_tables

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
    from meshinsights.engine.maintenance import vacuum_tables

    store, pairs = _pairs(pipeline, table)
    results = vacuum_tables(store, pairs, retention_hours=retention_hours)
    _show(f"vacuumed {len(pairs)} table(s) in {store.root} (retention {retention_hours}h)", results)


@maintenance_app.command("repair")
def repair(
    pipeline: list[str] = _PIPELINE,
    table: list[str] = _TABLE,
    dry_run: bool = typer.Option(False, "--dry-run", help="say what would be done, change nothing"),
    as_json: bool = typer.Option(False, "--json", help="print the receipt as JSON"),
) -> None:
    """Make damaged tables readable again: a commit file that does not parse is moved aside with
    every later one (the table is back at its last readable version; what they wrote is listed
    to rerun), and data files the log names but storage lost are dropped from the log."""
    import json

    from meshinsights.store.repair import repair_table
    from meshinsights.store.sql import listed_tables

    store = state.settings.open_store()
    pairs = [
        (ns, t)
        for ns, t in listed_tables(store)
        if (not pipeline or ns in pipeline) and (not table or t in table)
    ]
    if (pipeline or table) and not pairs:
        raise ConfigError(f"no table matches --pipeline {pipeline} --table {table} in {store.root}")
    results = [repair_table(store, ns, t, dry_run=dry_run) for ns, t in pairs]
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in results], default=str))
        return
    changed = [r for r in results if r.changed]
    verb = "would repair" if dry_run else "repaired"
    out.print(f"{verb} {len(changed)} of {len(results)} table(s) in {store.root}")
    for r in changed:
        if r.moved_aside:
            out.print(
                f"{r.namespace}/{r.table}: back at version {r.restored_version}; "
                f"{len(r.moved_aside)} log file(s) moved aside"
            )
            for w in r.lost_writes:
                out.print(
                    f"  rerun: version {w['version']} {w.get('step', '?')} "
                    f"{w.get('machines', '')} {w.get('windows') or w.get('window', '')}"
                )
        if r.missing_files:
            out.print(
                f"{r.namespace}/{r.table}: {len(r.missing_files)} missing file(s) dropped "
                "from the log; rerun their partitions:"
            )
            for f in r.missing_files:
                out.print(f"  {f}")
