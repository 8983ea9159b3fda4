"""Process-wide settings from the environment: where configs and artifacts live."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Settings", "get_settings", "storage_options_from_env", "PROJECT_ROOT"]

# The repository root when running from a checkout; settings default relative to it so that
# `make run`, tests and Airflow (whose cwd differs) all agree on the same folders.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Resolved settings; build with :func:`get_settings` so the environment is read once per
    call."""

    configs_dir: Path
    store_uri: str
    demo_source: Path
    #: The alert-threshold sink's SQLite file when the meshinsights_alerts connection is unset.
    alerts_db: Path
    #: deltalake/object_store options for the store (endpoint, credentials, locking); never logged.
    storage_options: dict[str, str] = field(default_factory=dict, hash=False, repr=False)

    @property
    def demo_source_url(self) -> str:
        return f"sqlite:///{self.demo_source}"

    def open_store(self) -> Any:
        """The artifact store these settings point at (with its storage options)."""
        from meshinsights.store import DeltaStore

        return DeltaStore(self.store_uri, storage_options=self.storage_options)


def storage_options_from_env() -> dict[str, str]:
    """``MESHINSIGHTS_STORAGE_OPTIONS`` (a JSON object of strings), e.g. for S3 or Azure.

    Unset, deltalake still reads the standard ``AWS_*`` / ``AZURE_STORAGE_*`` variables itself.
    """
    raw = os.environ.get("MESHINSIGHTS_STORAGE_OPTIONS", "").strip()
    if not raw:
        return {}
    from meshinsights.errors import ConfigError

    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        # The value may hold credentials: name the variable, never echo it.
        raise ConfigError(
            "MESHINSIGHTS_STORAGE_OPTIONS must be a JSON object of strings, e.g. "
            '{"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ALLOW_HTTP": "true"}'
        )
    return {str(k): str(v) for k, v in value.items()}


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
    store_uri = _abs_uri(store_uri)
    # The demo's SQLite files sit next to a local store (data/ by default), so redirecting the
    # store redirects them too; a remote store keeps them in the checkout's data/.
    data_dir = Path(store_uri).parent if "://" not in store_uri else PROJECT_ROOT / "data"
    demo = Path(env("MESHINSIGHTS_DEMO_SOURCE") or data_dir / "demo_source.db").resolve()
    alerts = env("MESHINSIGHTS_ALERTS_DB") or demo.parent / "alerts.db"
    return Settings(
        configs_dir=Path(configs_dir).resolve(),
        store_uri=store_uri,
        demo_source=demo,
        alerts_db=Path(alerts).resolve(),
        storage_options=storage_options_from_env(),
    )
