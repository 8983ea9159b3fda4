"""Process-wide settings from the environment: where configs and artifacts live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "get_settings", "PROJECT_ROOT"]

# The repository root when running from a checkout; settings default relative to it so that
# `make run`, tests and Airflow (whose cwd differs) all agree on the same folders.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Resolved settings; build with :func:`get_settings` so the environment is read once per call."""

    configs_dir: Path
    store_uri: str
    demo_source: Path

    @property
    def demo_source_url(self) -> str:
        return f"sqlite:///{self.demo_source}"


def _abs_uri(value: str) -> str:
    # Any deltalake URI (s3://, abfss://, az://, file://) passes through; a bare path is made
    # absolute (against the current directory) so Airflow workers and the CLI agree.
    if "://" in value:
        return value
    return str(Path(value).resolve())


def get_settings(*, configs: str | None = None, store: str | None = None) -> Settings:
    """Settings from arguments, then ``MESHINSIGHTS_*`` variables, then defaults."""
    env = os.environ.get
    configs_dir = configs or env("MESHINSIGHTS_CONFIGS") or PROJECT_ROOT / "configs"
    store_uri = store or env("MESHINSIGHTS_STORE") or str(PROJECT_ROOT / "data" / "artifacts")
    demo = env("MESHINSIGHTS_DEMO_SOURCE") or PROJECT_ROOT / "data" / "demo_source.db"
    return Settings(
        configs_dir=Path(configs_dir).resolve(),
        store_uri=_abs_uri(store_uri),
        demo_source=Path(demo).resolve(),
    )
