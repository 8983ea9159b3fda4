"""``meshinsights status``: pending reopened windows and stale partitions, and how to redo them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import typer
from rich.table import Table

from meshinsights.cli.app import app, console, out, state
from meshinsights.model import Window

__all__ = ["rerun_stale"]


def _since(value: str | None) -> Any:
    return None if value is None else Window.parse(value, "2199-12-31").start


def _contiguous(windows: list[Window]) -> list[Window]:
    spans: list[Window] = []
    for w in sorted(windows):
        if spans and w.start <= spans[-1].end:
            spans[-1] = Window(spans[-1].start, max(spans[-1].end, w.end))
        else:
            spans.append(w)
    return spans


@app.command()
def status(
    machine_id: str = typer.Argument(..., help="machine id from configs/machines"),
    since: str = typer.Option(None, "--since", help="only windows ending after this (ISO)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    airflow: bool = typer.Option(
        False, "--airflow", help="print the `airflow backfill create` commands that redo them"
    ),
) -> None:
    """Windows still pending after late data, and partitions made by an older definition or
    from inputs that changed after them. Exit 1 when there is anything to redo."""
    from meshinsights.config import load_configs
    from meshinsights.engine.status import machine_status

    settings = state.settings
    configs = load_configs(settings.configs_dir)
    machine = configs.machine(machine_id)
    pipeline = configs.pipeline_of(machine)
    store = settings.open_store()
    report = machine_status(store, pipeline, machine, since=_since(since))
    pending, stale = list(report.pending), list(report.stale)
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "machine_id": machine_id,
                    "pending": [w.as_dict() for w in pending],
                    "stale": [x.as_dict() for x in stale],
                }
            )
        )
    elif airflow:
        # A group member's backfill goes through its group's DAG, for this member only.
        conf = (
            f" --dag-run-conf '{json.dumps({'machines': [machine_id]})}'"
            if machine.group is not None
            else ""
        )
        for span in _contiguous([x.window for x in stale] + pending):
            out.print(
                f"airflow backfill create --dag-id {machine.dag_id} --from-date "
                f"{span.start.isoformat()} --to-date {span.end.isoformat()} "
                f"--reprocess-behavior completed{conf}",
                soft_wrap=True,
            )
    else:
        table = Table(title=f"{machine_id}: {len(pending)} pending, {len(stale)} stale")
        for col in ("step", "table", "window start", "window end", "reason"):
            table.add_column(col)
        for w in pending:
            table.add_row(
                "(all)",
                "",
                w.start.isoformat(),
                w.end.isoformat(),
                "reopened by late rows; steps not yet rerun",
            )
        for x in stale:
            table.add_row(
                x.step, x.table, x.window.start.isoformat(), x.window.end.isoformat(), x.reason
            )
        out.print(table)
        if stale or pending:
            console.print(f"redo them: meshinsights run {machine_id} --stale")
    if stale or pending:
        raise typer.Exit(1)


def rerun_stale(
    configs: Any, machine: Any, since: str | None, *, as_json: bool, batch: timedelta
) -> None:
    """``meshinsights run MACHINE --stale``: pending windows' steps, then every stale window."""
    from meshinsights.engine.ingest import ingest_state, record_drained
    from meshinsights.engine.runner import new_run_id, plan, run_steps
    from meshinsights.engine.status import run_stale, stale_windows

    store = state.settings.open_store()
    pipeline = configs.pipeline_of(machine)
    run_id = new_run_id()
    summaries: list[dict[str, Any]] = []
    pending = list(ingest_state(store, pipeline.name, machine.machine_id).pending)
    if pending:
        summaries += run_steps(
            plan(pipeline, machine),
            machine.machine_id,
            pipeline.name,
            pending,
            store,
            run_id=run_id,
            batch=batch,
        )
        record_drained(store, pipeline.name, machine.machine_id, pending, run_id=run_id)
    summaries += run_stale(
        store,
        pipeline,
        machine,
        run_steps=run_steps,
        run_id=run_id,
        since=_since(since),
        batch=batch,
    )
    left = stale_windows(store, pipeline, machine, since=_since(since))
    if as_json:
        out.print_json(json.dumps(summaries, default=str))
    else:
        out.print(f"{machine.machine_id}: {len(summaries)} step run(s); {len(left)} stale left")
