"""Core commands: run, step, tables, validate-configs, demo seed."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from meshinsights.cli.app import app, console, demo_app, out, state
from meshinsights.errors import ConfigError

__all__: list[str] = []


def _store() -> Any:
    return state.settings.open_store()


def _configs(*, strict: bool = False) -> Any:
    from meshinsights.config import load_configs

    configs = load_configs(state.settings.configs_dir)
    if strict and configs.errors:
        raise ConfigError("; ".join(configs.errors.values()))
    return configs


@app.command()
def run(
    machine_id: str = typer.Argument(..., help="machine id from configs/machines"),
    start: str = typer.Option(None, "--start", help="window start, ISO (UTC if no zone)"),
    end: str = typer.Option(None, "--end", help="window end, ISO (exclusive)"),
    stale: bool = typer.Option(
        False,
        "--stale",
        help="recompute exactly the stale windows (`meshinsights status`; --start limits how "
        "far back) instead of a range",
    ),
    no_split: bool = typer.Option(
        False, "--no-split", help="one window instead of one per schedule interval"
    ),
    batch_days: float = typer.Option(
        31,
        "--batch-days",
        min=0,
        help="each step runs once per this many days of windows, one commit each (same "
        "tables; 0: one run per window, as the scheduled DAG does)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the step summaries as JSON"),
    run_ids: list[str] = typer.Option(  # noqa: B008 (typer declares options this way)
        None,
        "--run",
        help="a pipeline windowed by run: rerun the steps of this run (repeatable) from the "
        "stored telemetry, no ingest",
    ),
    since: str = typer.Option(
        None,
        "--since",
        help="a pipeline windowed by run: rerun every run whose rows changed at or after this "
        "time (ISO)",
    ),
) -> None:
    """Run a machine's whole pipeline in-process, in dependency order (no Airflow).

    A pipeline windowed by run ingests --start..--end and then runs the steps over every run
    whose rows changed, each whole; --run and --since rerun chosen runs.
    """
    from datetime import timedelta

    from meshinsights.engine.runner import run_pipeline
    from meshinsights.model import Window

    configs = _configs()
    machine = configs.machine(machine_id)
    if run_ids or since:
        summaries = _rerun_runs(configs, machine, list(run_ids or []), since)
        _print_summaries(f"{machine_id} runs", summaries, as_json)
        return
    if stale:
        from meshinsights.cli.status import rerun_stale

        rerun_stale(configs, machine, start, as_json=as_json, batch=timedelta(days=batch_days))
        return
    if not (start and end):
        raise ConfigError("run needs --start and --end (or --stale to recompute stale windows)")
    window = Window.parse(start, end)
    n_steps = 1 + len(configs.pipeline_of(machine).steps)
    from meshinsights import schedules

    n_windows = 1 if no_split else len(schedules.windows(machine.schedule, window))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task(f"{machine_id}", total=n_steps * n_windows)

        def tick(step_id: str, summary: dict[str, Any]) -> None:
            done = len(summary.get("windows") or [None])  # a batch covers several windows
            progress.update(bar, advance=done, description=f"{machine_id} {step_id}")

        summaries = run_pipeline(
            configs,
            machine_id,
            window,
            _store(),
            split=not no_split,
            on_progress=tick,
            batch=timedelta(days=batch_days),
        )
    _print_summaries(f"{machine_id} {window}", summaries, as_json)


def _rerun_runs(configs: Any, machine: Any, runs: list[str], since: str | None) -> list[Any]:
    from meshinsights.engine.runner import new_run_id, plan, run_runs
    from meshinsights.engine.runs import run_window, runs_updated_since
    from meshinsights.model import parse_instant

    pipeline = configs.pipeline_of(machine)
    if pipeline.window != "run":
        raise ConfigError(
            f"--run/--since need a pipeline windowed by run; {pipeline.name} is windowed by "
            "time (use --start/--end)"
        )
    store, mid = _store(), machine.machine_id
    windows = [run_window(store, pipeline.name, mid, r) for r in runs]
    if since:
        found = runs_updated_since(store, pipeline.name, mid, parse_instant(since, "--since"))
        if not found:
            console.print(f"no run of {mid} changed since {since}: nothing to do")
        windows += [w for w in found if w not in windows]
    return run_runs(
        plan(pipeline, machine), mid, pipeline.name, store, windows, run_id=new_run_id()
    )


def _print_summaries(title: str, summaries: list[Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(summaries, default=str))
        return
    table = Table(title=title)
    for col in ("window", "step", "table", "rows in", "rows out", "quarantined", "seconds"):
        table.add_column(col)
    for s in summaries:
        w = s["window"]
        table.add_row(
            f"run {w['run']}" if w.get("run") else w["start"][:16],
            s["step"],
            s.get("table", ""),
            str(s.get("rows_in", "")),
            _rows_out_cell(s),
            str(s.get("rows_quarantined", "")),
            str(s.get("seconds", "")),
        )
    out.print(table)


def _rows_out_cell(summary: dict[str, Any]) -> str:
    if summary.get("skipped"):
        return "skipped (no input rows)" if summary.get("skip_reason") else "skipped (rule)"
    rows = str(summary.get("rows_out", ""))
    return f"{rows} ({summary['skipped_empty']} empty)" if "skipped_empty" in summary else rows


@app.command()
def step(
    machine_id: str = typer.Argument(...),
    step_id: str = typer.Argument(..., help="step id from the machine's pipeline"),
    start: str = typer.Option(..., "--start"),
    end: str = typer.Option(..., "--end"),
) -> None:
    """Run one step against what the store holds."""
    from meshinsights.engine.ingest import run_ingest
    from meshinsights.engine.runner import new_run_id, plan, run_step
    from meshinsights.model import Window

    configs = _configs()
    machine = configs.machine(machine_id)
    pipeline = configs.pipeline_of(machine)
    window = Window.parse(start, end)
    if step_id == "ingest":
        summary = run_ingest(machine, pipeline, window, _store(), run_id=new_run_id())
    else:
        steps = {p.id: p for p in plan(pipeline, machine)}
        if step_id not in steps:
            raise ConfigError(
                f"pipeline {pipeline.name!r} has no step {step_id!r}; its steps are "
                f"ingest, {', '.join(steps)}"
            )
        summary = run_step(steps[step_id], machine_id, window, _store(), namespace=pipeline.name)
    out.print_json(json.dumps(summary, default=str))


@app.command()
def tables() -> None:
    """Artifact tables with their version, row count and file count."""
    store = _store()
    infos = store.tables()
    table = Table(title=f"artifacts in {state.settings.store_uri}")
    for col in ("pipeline", "table", "version", "rows", "files"):
        table.add_column(col)
    for t in infos:
        table.add_row(t.namespace, t.name, str(t.version), f"{t.rows:,}", str(t.files))
    for name in sorted(store.broken):
        ns, _, tbl = name.partition("/")
        table.add_row(ns, tbl, "[bold red]unreadable[/]", "-", "-")
    out.print(table)
    for reason in store.broken.values():
        console.print(f"[bold red]error:[/] {escape(reason)}", highlight=False, soft_wrap=True)
    if store.broken:
        raise typer.Exit(1)
    if not infos:
        console.print("no tables yet: run `meshinsights run MACHINE --start ... --end ...`")


@app.command("validate-configs")
def validate_configs(
    sources: bool = typer.Option(
        True,
        "--sources/--no-sources",
        help="also read the first rows of every file source and check them against its config",
    ),
) -> None:
    """Check every pipeline and machine config; list every problem; exit 1 if any. Lists the
    installed connector and step plugins (entry points) with their distributions' versions."""
    from meshinsights.connectors.probe import probe

    configs = _configs()
    problems = dict(configs.errors)
    notes: list[str] = []
    if sources:
        for mid, machine in sorted(configs.machines.items()):
            found = probe(machine)
            if found is None:
                continue
            for i, problem in enumerate(found.problems):
                problems[f"{mid}#{i}"] = f"machine {mid}: {problem}"
            notes += [f"machine {mid}: {note}" for note in found.notes]
    from meshinsights.plugins import installed_plugins

    for plugin in installed_plugins():
        out.print(
            f"{plugin.kind} {plugin.name}: {plugin.target} "
            f"({plugin.distribution} {plugin.version})",
            highlight=False,
            soft_wrap=True,
        )
    for _key, msg in sorted(problems.items()):
        console.print(f"[red]✗[/] {escape(msg)}", highlight=False, soft_wrap=True)
    for note in notes:
        console.print(f"[yellow]•[/] {escape(note)}", highlight=False, soft_wrap=True)
    out.print(
        f"{len(configs.pipelines)} pipeline(s), {len(configs.machines)} machine(s) valid; "
        f"{len(problems)} problem(s)"
    )
    if problems:
        raise typer.Exit(1)


@demo_app.command("seed")
def demo_seed(
    machines: int = typer.Option(10, "--machines", min=1, help="number of HVAC units"),
    days: int = typer.Option(7, "--days", min=1, help="days of 1-minute data"),
    seed: int = typer.Option(7, "--seed", help="random seed (same seed, same data)"),
    url: str = typer.Option(None, "--url", help="SQLAlchemy URL (default: the demo SQLite file)"),
) -> None:
    """Write the demo source and print the machines and time range it covers."""
    from meshinsights.demo import seed as do_seed

    if url is None:
        from meshinsights.credentials import demo_source_url

        url = demo_source_url(state.settings)
    fleet = do_seed(url, machines=machines, days=days, seed=seed)
    out.print(
        f"seeded {fleet.rows:,} telemetry rows for {len(fleet.machines)} machine(s): "
        f"{', '.join(fleet.machines[:10])}{' …' if len(fleet.machines) > 10 else ''}"
    )
    out.print(f"time range: {fleet.start.isoformat()} → {fleet.end.isoformat()} (UTC)")
