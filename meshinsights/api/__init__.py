"""The read-only HTTP data API over the artifact store (``meshinsights serve``) and its KPIs."""

from __future__ import annotations

from meshinsights.api.app import create_app
from meshinsights.api.keys import KeyRing, load_keys
from meshinsights.api.source import Limits

__all__ = ["KeyRing", "Limits", "create_app", "load_keys"]
