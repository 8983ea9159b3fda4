"""The installed plugins: connectors and step modules registered through entry points.

Listing reads package metadata only (nothing is imported), so it is safe and quick where a
plugin is broken; ``validate-configs`` prints it so a user sees which plugin — and which
version of the distribution that ships it — a config's ``type:`` or step name can reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

__all__ = ["PLUGIN_GROUPS", "Plugin", "installed_plugins"]

#: Entry-point group -> what its entries are.
PLUGIN_GROUPS = {"meshinsights.connectors": "connector", "meshinsights.steps": "steps"}


@dataclass(frozen=True)
class Plugin:
    """One entry point: its kind, name, target and the distribution (and version) shipping it."""

    kind: str
    name: str
    target: str
    distribution: str
    version: str


def installed_plugins() -> list[Plugin]:
    """Every connector and step entry point, sorted by kind and name (duplicates kept)."""
    found = []
    for group, kind in PLUGIN_GROUPS.items():
        for ep in entry_points(group=group):
            dist = ep.dist
            found.append(
                Plugin(
                    kind=kind,
                    name=ep.name,
                    target=ep.value,
                    distribution=dist.metadata["Name"] if dist is not None else "?",
                    version=dist.version if dist is not None else "?",
                )
            )
    return sorted(set(found), key=lambda p: (p.kind, p.name, p.distribution))
