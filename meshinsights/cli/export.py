"""``meshinsights export``: one machine's rows of one table, for a time range, to CSV or Parquet."""

from __future__ import annotations

import difflib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from meshinsights.cli.app import app, console, out, state
from meshinsights.errors import ConfigError

__all__ = ["write_table", "resolve_table"]

Format = Literal["csv", "parquet"]


def output_format(path: Path, fmt: str | None) -> Format:
    """The format asked for, else the one the file suffix names."""
    chosen = (fmt or path.suffix.lstrip(".")).lower()
    if chosen in ("csv", "parquet"):
        return chosen  # type: ignore[return-value]
    if chosen == "pq":
        return "parquet"
    raise ConfigError(
        f"cannot tell the output format of {str(path)!r}: pass --format csv|parquet or use a "
        ".csv/.parquet suffix"
    )


def write_table(table: Any, path: Path, fmt: Format) -> None:
    """Write an Arrow table as CSV (ISO timestamps, header) or Parquet; parents are created."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)


def resolve_table(store: Any, table: str, pipeline: str | None, machine: str | None = None) -> str:
    """The pipeline holding ``table`` (for ``machine``); ambiguity and absence are clear errors.

    A table name several pipelines share is resolved by the machine: a machine belongs to one
    pipeline, so the one pipeline whose table has the machine's rows is meant.
    """
    from meshinsights.model import check_table_name
    from meshinsights.store.sql import listed_tables, table_extents

    check_table_name(table)
    owners = [ns for ns, name in listed_tables(store) if name == table]
    if pipeline is None and len(owners) > 1 and machine is not None:
        having = [ns for ns in owners if machine in table_extents(store, ns, table)]
        owners = having if len(having) == 1 else owners
    if pipeline is not None:
        if pipeline not in owners:
            raise ConfigError(
                f"pipeline {pipeline!r} has no table {table!r}; pipelines with it: "
                f"{', '.join(owners) or 'none'}"
            )
        return pipeline
    if len(owners) == 1:
        return owners[0]
    if owners:
        raise ConfigError(
            f"table {table!r} exists in several pipelines ({', '.join(owners)}) with this "
            f"machine's rows; pass --pipeline {owners[0]} (or another)"
        )
    every = sorted({name for _, name in listed_tables(store)})
    close = difflib.get_close_matches(table, every, n=3)
    raise ConfigError(
        f"no table {table!r} in {store.root}"
        + (f"; did you mean {', '.join(close)}?" if close else f"; tables: {', '.join(every)}")
    )


def _window(extent: Any, start: str | None, end: str | None, last_days: int | None) -> Any:
    from meshinsights.model import Window

    if last_days is not None:
        if start or end:
            raise ConfigError("pass either --last-days or --start/--end, not both")
        if extent is None or extent.max_ts is None:
            raise ConfigError("--last-days needs data to count back from; pass --start/--end")
        midnight = extent.max_ts.replace(hour=0, minute=0, second=0, microsecond=0)
        day_end = midnight + timedelta(days=1)
        return Window(day_end - timedelta(days=last_days), day_end)
    if not (start and end):
        raise ConfigError("pass --start and --end (ISO, UTC if no zone), or --last-days N")
    return Window.parse(start, end)


@app.command()
def export(
    table: Annotated[str, typer.Argument(help="artifact table, e.g. telemetry, issues")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="file to write (replaced)")],
    machine: str = typer.Option(..., "--machine", "-m", help="machine id"),
    start: str = typer.Option(None, "--start", help="window start, ISO (UTC if no zone)"),
    end: str = typer.Option(None, "--end", help="window end, ISO (exclusive)"),
    last_days: int = typer.Option(
        None, "--last-days", min=1, help="the N whole days up to the machine's latest row"
    ),
    fmt: str = typer.Option(None, "--format", help="csv or parquet (default: from --out)"),
    pipeline: str = typer.Option(
        None, "--pipeline", help="pipeline holding the table, when several do"
    ),
    run: str = typer.Option(
        None, "--run", help="one run's rows (a source with runs; instead of a time range)"
    ),
) -> None:
    """Write one machine's rows of a table for a time range, or of one run (the current
    Delta version)."""
    from meshinsights.model import check_machine_id
    from meshinsights.store.sql import table_extents

    fmt_checked = output_format(out_path, fmt)
    store = state.settings.open_store()
    check_machine_id(machine)
    namespace = resolve_table(store, table, pipeline, machine)
    extents = table_extents(store, namespace, table)
    if machine not in extents:
        listed = sorted(extents)
        raise ConfigError(
            f"machine {machine!r} has no rows in {namespace}/{table}; machines there: "
            f"{', '.join(listed[:20]) or 'none'}{' …' if len(listed) > 20 else ''}"
        )
    if run is not None:
        from meshinsights.engine.runs import run_window

        if start or end or last_days:
            raise ConfigError("pass either --run or a time range (--start/--end, --last-days)")
        window = run_window(store, namespace, machine, run)
    else:
        window = _window(extents[machine], start, end, last_days)
    arrow = store.read_arrow(namespace, table, machine, window)
    arrow = arrow.drop_columns(["month"]) if "month" in arrow.column_names else arrow
    arrow = arrow.sort_by([("ts", "ascending")]) if "ts" in arrow.column_names else arrow
    write_table(arrow, out_path, fmt_checked)
    if arrow.num_rows == 0:
        console.print(f"[yellow]warning:[/] no rows for {machine} in {window}; wrote an empty file")
    out.print(
        f"wrote {arrow.num_rows:,} rows of {namespace}/{table} for {machine} {window} "
        f"to {out_path} ({fmt_checked})",
        highlight=False,
    )
