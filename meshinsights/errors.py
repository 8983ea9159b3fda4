"""The MeshInsights exception hierarchy: one root, one class per layer."""

from __future__ import annotations

__all__ = [
    "MeshInsightsError",
    "ConfigError",
    "ConnectorError",
    "TransientConnectorError",
    "StepError",
    "StoreError",
    "BrokenTableError",
    "DataQualityError",
]


class MeshInsightsError(Exception):
    """Root of every error MeshInsights raises on purpose."""


class ConfigError(MeshInsightsError):
    """A YAML config, setting or registration is wrong; the message names file, field and fix."""


class ConnectorError(MeshInsightsError):
    """A source could not be read; permanent (auth, syntax, missing table) unless subclassed."""


class TransientConnectorError(ConnectorError):
    """A source fault worth retrying: refused or dropped connection, timeout, deadlock."""


class StepError(MeshInsightsError):
    """A step's wiring, inputs or output are wrong."""


class StoreError(MeshInsightsError):
    """A Delta table could not be read or written as asked."""


class BrokenTableError(StoreError):
    """One table's Delta log or data files cannot be read; other tables are unaffected."""


class DataQualityError(MeshInsightsError):
    """A run quarantined more of its rows than the source allows; the message names the fix."""
