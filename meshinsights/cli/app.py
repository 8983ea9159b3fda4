"""The typer application and its global options (``--configs``, ``--store``, ``--verbose``)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.markup import escape

from meshinsights.errors import MeshInsightsError
from meshinsights.settings import Settings, get_settings

__all__ = ["app", "main", "state", "console"]

app = typer.Typer(
    name="meshinsights",
    help="Composable IoT time-series pipelines over Delta tables.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
demo_app = typer.Typer(help="The demo source.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")

console = Console(stderr=True)
out = Console()


@dataclass
class _State:
    configs: str | None = None
    store: str | None = None

    @property
    def settings(self) -> Settings:
        return get_settings(configs=self.configs, store=self.store)


state = _State()


@app.callback()
def _global(
    configs: str = typer.Option(
        None,
        "--configs",
        envvar="MESHINSIGHTS_CONFIGS",
        help="config folder (pipelines/ and machines/)",
    ),
    store: str = typer.Option(
        None,
        "--store",
        envvar="MESHINSIGHTS_STORE",
        help="artifact store root: a folder or any deltalake URI",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log at INFO level"),
) -> None:
    state.configs, state.store = configs, store
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Entry point: MeshInsights errors print one clear line and exit 1, no traceback."""
    try:
        app()
    except MeshInsightsError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
