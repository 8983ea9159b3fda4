"""Example MeshInsights plugin: a JSON-lines drop-folder connector and a daily-range step."""

__version__ = "0.1.0"
