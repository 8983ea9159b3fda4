"""``meshinsights dashboard``: start the streamlit dashboard over the artifact store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from meshinsights.cli.app import app, console, state

__all__ = ["APP_PATH", "streamlit_command"]

APP_PATH = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def streamlit_command(*, port: int, address: str, headless: bool = True) -> list[str]:
    """The ``streamlit run`` command line for the dashboard (no usage statistics are sent)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true" if headless else "false",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "viewer",
    ]


@app.command()
def dashboard(
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="port to serve on"),
    address: str = typer.Option(
        "127.0.0.1", "--address", help="interface to bind (0.0.0.0 to serve the network)"
    ),
    open_browser: bool = typer.Option(
        False, "--open/--no-open", help="open a browser tab on start"
    ),
) -> None:
    """Serve the read-only dashboard (streamlit) over the artifact store until Ctrl-C."""
    settings = state.settings
    env = {
        **os.environ,
        "MESHINSIGHTS_STORE": settings.store_uri,
        "MESHINSIGHTS_CONFIGS": str(settings.configs_dir),
    }
    console.print(
        f"dashboard on http://{address}:{port} over {settings.store_uri} (Ctrl-C stops)",
        highlight=False,
    )
    cmd = streamlit_command(port=port, address=address, headless=not open_browser)
    # Become streamlit (exec, no child): Ctrl-C and SIGTERM reach the server itself, and no
    # orphan is left behind. This process never imported deltalake, so nothing is inherited.
    os.execve(cmd[0], cmd, env)
