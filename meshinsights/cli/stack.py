"""``meshinsights stack run|stop|demo``: the local stack (what ``make run``, ``make stop`` and
``make demo`` call). The tooling itself lives in :mod:`meshinsights.devstack`."""

from __future__ import annotations

import logging
import os
import signal

import typer

from meshinsights.cli.app import app

__all__: list[str] = []

stack_app = typer.Typer(
    help="The local stack: Airflow standalone, the dashboard, the data API and the live demo.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")

_API_PORT = typer.Option(
    int(os.environ.get("AIRFLOW_PORT", 8080)),
    "--api-port",
    min=1,
    max=65535,
    help="Airflow's port ($AIRFLOW_PORT)",
)
_DASHBOARD_PORT = typer.Option(
    int(os.environ.get("DASHBOARD_PORT", 8501)),
    "--dashboard-port",
    min=1,
    max=65535,
    help="the dashboard's port ($DASHBOARD_PORT)",
)


def _prepare() -> None:
    # A shell that starts us in the background ignores SIGINT, and ignored signals stay ignored
    # across exec: handle it here so every component we start gets the default (graceful) one.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@stack_app.command("run")
def run(api_port: int = _API_PORT, dashboard_port: int = _DASHBOARD_PORT) -> None:
    """Start the live demo, Airflow and the dashboard; the last day runs through Airflow before
    the URLs print. Ctrl-C (or ``meshinsights stack stop``) stops everything it started."""
    from meshinsights.devstack.local_stack import run_stack

    _prepare()
    raise typer.Exit(run_stack(api_port=api_port, dashboard_port=dashboard_port))


@stack_app.command("stop")
def stop() -> None:
    """Stop a running stack (the processes its pid files under $AIRFLOW_HOME/run/ name)."""
    from meshinsights.devstack.local_stack import stop_stack

    _prepare()
    raise typer.Exit(stop_stack())


@stack_app.command("demo")
def demo() -> None:
    """Headless day one: seed, run every demo machine's DAG once through Airflow, query."""
    from meshinsights.devstack.airflow_demo import run_demo

    _prepare()
    raise typer.Exit(run_demo())
