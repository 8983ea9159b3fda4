"""``meshinsights sql``: DuckDB SQL over every artifact table (current Delta versions).

Runs one query (``-e``), a script (``-f query_artifacts.sql``: every statement, each result
printed), or an interactive prompt; ``--out`` writes the (last) result to CSV or Parquet.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from meshinsights.cli.app import app, console, out, state
from meshinsights.cli.export import output_format, write_table
from meshinsights.errors import ConfigError, MeshInsightsError

__all__: list[str] = []

_PROMPT = "meshinsights> "
_HELP = (
    "Statements end with ';'.  .tables  lists the views,  .help  this text,  .quit  (or Ctrl-D) "
    "leaves.  Views: <pipeline>__<table>, <table>, meshinsights_history."
)


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]NULL[/]"
    if isinstance(value, float):
        return f"{value:.6g}"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value).replace("[", r"\[")


def render(table: Any, *, title: str | None = None, max_rows: int = 50) -> Table:
    """A rich table of the first ``max_rows`` rows of an Arrow table."""
    shown = table.slice(0, max_rows)
    grid = Table(title=title, title_justify="left", highlight=False)
    for name in table.column_names:
        grid.add_column(name, overflow="fold")
    for row in shown.to_pylist():
        grid.add_row(*(_cell(row[c]) for c in table.column_names))
    more = table.num_rows - shown.num_rows
    grid.caption = (
        f"{table.num_rows:,} row(s)"
        if not more
        else f"{table.num_rows:,} rows, first {max_rows} shown (--max-rows)"
    )
    return grid


def _tables_grid(engine: Any) -> Table:
    grid = Table(title="views", title_justify="left")
    for col in ("view", "Delta table(s)", "version(s)"):
        grid.add_column(col)
    for name, info in sorted(engine.views.items()):
        grid.add_row(
            name,
            ", ".join(f"{ns}/{t}" for ns, t, _ in info.sources),
            ", ".join(str(v) for _, _, v in info.sources),
        )
    grid.add_row("meshinsights_history", "commit logs of every table", "")
    return grid


def _run_script(engine: Any, text: str, max_rows: int) -> Any:
    last = None
    for result in engine.run_script(text):
        stmt = result.statement
        if result.skipped:
            console.print(f"[yellow]skipped[/] {stmt.label}: {result.skipped}", highlight=False)
        elif result.table is not None:
            out.print(render(result.table, title=stmt.title or None, max_rows=max_rows))
            last = result.table
        else:
            out.print(f"[green]ok[/] {stmt.label}", highlight=False)
    return last


def _interactive(engine: Any, max_rows: int) -> None:
    interactive = sys.stdin.isatty()
    if interactive:
        console.print(_HELP, highlight=False)
    buffer: list[str] = []
    while True:
        prompt = (_PROMPT if not buffer else "...> ".rjust(len(_PROMPT))) if interactive else ""
        try:
            line = input(prompt)
        except EOFError:
            break
        command = line.strip()
        if not buffer and command.startswith("."):
            if command in (".quit", ".exit", ".q"):
                break
            out.print(_tables_grid(engine) if command == ".tables" else _HELP, highlight=False)
            continue
        buffer.append(line.rstrip("\n"))
        if command.endswith(";"):
            try:
                _run_script(engine, "\n".join(buffer), max_rows)
            except MeshInsightsError as exc:
                console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            buffer = []


@app.command()
def sql(
    execute: str = typer.Option(None, "--execute", "-e", help="SQL to run"),
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            exists=True,
            dir_okay=False,
            help="SQL script to run, e.g. query_artifacts.sql",
        ),
    ] = None,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="write the (last) result here instead of printing it"),
    ] = None,
    fmt: str = typer.Option(None, "--format", help="csv or parquet (default: from --out)"),
    max_rows: int = typer.Option(50, "--max-rows", min=1, help="rows printed per result"),
    list_views: bool = typer.Option(False, "--tables", help="list the views and exit"),
) -> None:
    """DuckDB SQL over the artifact tables (each table's current Delta version is a view)."""
    from meshinsights.store.sql import ArtifactSQL

    if execute and file:
        raise ConfigError("pass either -e SQL or -f FILE, not both")
    fmt_checked = output_format(out_path, fmt) if out_path else None
    with ArtifactSQL(state.settings.open_store()) as engine:
        if list_views:
            out.print(_tables_grid(engine))
            return
        if execute is None and file is None:
            if out_path:
                raise ConfigError("--out needs -e or -f (the interactive prompt prints results)")
            _interactive(engine, max_rows)
            return
        text = execute if execute is not None else file.read_text()  # type: ignore[union-attr]
        if out_path is None:
            _run_script(engine, text, max_rows)
            return
        results = [r.table for r in engine.run_script(text) if r.table is not None]
        if not results:
            raise ConfigError("no statement returned rows: nothing to write to --out")
        write_table(results[-1], out_path, fmt_checked)  # type: ignore[arg-type]
        out.print(f"wrote {results[-1].num_rows:,} rows to {out_path}", highlight=False)
