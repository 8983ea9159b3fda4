"""The ``meshinsights`` command line (typer): run pipelines, inspect tables, seed the demo."""

from __future__ import annotations

# Each module adds its commands to ``app`` when imported.
from meshinsights.cli import core as _core  # noqa: E402,F401
from meshinsights.cli import dags as _dags  # noqa: E402,F401
from meshinsights.cli import dashboard as _dashboard  # noqa: E402,F401
from meshinsights.cli import export as _export  # noqa: E402,F401
from meshinsights.cli import lifecycle as _lifecycle  # noqa: E402,F401
from meshinsights.cli import maintenance as _maintenance  # noqa: E402,F401
from meshinsights.cli import serve as _serve  # noqa: E402,F401
from meshinsights.cli import sql as _sql  # noqa: E402,F401
from meshinsights.cli import stack as _stack  # noqa: E402,F401
from meshinsights.cli import status as _status  # noqa: E402,F401
from meshinsights.cli.app import app, main

__all__ = ["app", "main"]
