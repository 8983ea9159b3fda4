"""``meshinsights erase MACHINE`` and ``meshinsights maintenance retain``: the data lifecycle."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from rich.table import Table

from meshinsights.cli.app import app, out, state
from meshinsights.cli.maintenance import _PIPELINE, maintenance_app
from meshinsights.errors import ConfigError

__all__: list[str] = []


def _receipt(title: str, rows: list[Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in rows]))
        return
    table = Table(title=title)
    for col in ("pipeline", "table", "rows removed", "version", "files vacuumed", "cutoff"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.namespace,
            r.table,
            str(r.rows_removed),
            f"{r.version_before} -> {r.version_after}",
            str(r.files_vacuumed),
            r.cutoff or "",
        )
    out.print(table)


@app.command()
def erase(
    machine_id: str = typer.Argument(..., help="the machine whose rows go"),
    yes: bool = typer.Option(False, "--yes", help="confirm: this cannot be undone"),
    as_json: bool = typer.Option(False, "--json", help="print the receipt as JSON"),
) -> None:
    """Delete one machine's rows from every table of every pipeline (its quarantine and run
    rows too), vacuum them so time travel cannot bring them back, and print a receipt that the
    tables' Delta logs back (each commit names the machine; rows removed per table)."""
    from meshinsights.engine.lifecycle import erase_machine

    if not yes:
        raise ConfigError(
            f"erase {machine_id} deletes its rows from every table and vacuums them (no time "
            "travel back); run again with --yes to confirm"
        )
    store = state.settings.open_store()
    rows = erase_machine(store, machine_id)
    total = sum(r.rows_removed for r in rows)
    _receipt(f"erased {machine_id}: {total} row(s) from {len(rows)} table(s)", rows, as_json)


@maintenance_app.command("retain")
def retain(
    pipeline: list[str] = _PIPELINE,
    now: str = typer.Option(None, "--now", help="cut off relative to this time (default: now)"),
    as_json: bool = typer.Option(False, "--json", help="print the receipt as JSON"),
) -> None:
    """Delete rows older than each table's retention (``retention:`` in the pipeline YAML);
    `maintenance vacuum` later removes their files."""
    from meshinsights.engine.lifecycle import retain_tables

    configs = _load()
    at = None if now is None else _instant(now)
    store = state.settings.open_store()
    rows = retain_tables(store, configs.pipelines, now=at, namespaces=pipeline)
    if not rows:
        out.print("no pipeline sets retention: nothing to do (add retention: to a pipeline)")
        return
    total = sum(r.rows_removed for r in rows)
    _receipt(f"retention: {total} row(s) deleted from {len(rows)} table(s)", rows, as_json)


def _load() -> Any:
    from meshinsights.config import load_configs

    return load_configs(state.settings.configs_dir)


def _instant(text: str) -> datetime:
    from datetime import UTC

    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--now {text!r} is not an ISO date/time; use e.g. 2024-03-01") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
