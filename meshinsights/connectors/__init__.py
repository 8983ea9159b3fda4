"""Layer 1, data access: the only code that talks to source systems."""

from __future__ import annotations

from meshinsights.connectors.base import DBConnector, PluginManager, default_manager

__all__ = ["DBConnector", "PluginManager", "default_manager"]
