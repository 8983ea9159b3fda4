"""The ``dag-shards`` command: how many DAG files the fleet's DAGs are spread over."""

from __future__ import annotations

from pathlib import Path

import typer

from meshinsights.cli.app import app, out

__all__: list[str] = []

_DAGS_FOLDER = typer.Option(
    None, "--dags-folder", help="Airflow's DAG folder (default: dags/ of this checkout)"
)


@app.command("dag-shards")
def dag_shards(
    count: int = typer.Argument(..., min=1, help="number of shard files (DAG files) to keep"),
    dags_folder: Path | None = _DAGS_FOLDER,
) -> None:
    """Write meshinsights_shard_<k>.py for k < COUNT and remove the others.

    Set MESHINSIGHTS_DAG_SHARDS=COUNT for Airflow too; until both agree, the missing files are
    reported as an import error.
    """
    from meshinsights.airflow.shards import DEFAULT_SHARDS, SHARD_ENV, write_shard_files
    from meshinsights.settings import PROJECT_ROOT

    folder = dags_folder or PROJECT_ROOT / "dags"
    written, removed = write_shard_files(folder, count)
    out.print(f"{folder}: {count} shard file(s); {len(written)} written, {len(removed)} removed")
    if count != DEFAULT_SHARDS:
        out.print(f"set {SHARD_ENV}={count} in Airflow's environment (default {DEFAULT_SHARDS})")
