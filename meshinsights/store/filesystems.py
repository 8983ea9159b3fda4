"""The pyarrow filesystem for a store root, built from the same storage options deltalake gets.

deltalake reads and writes the tables itself; the store lists namespaces and tables (folders)
through pyarrow, which needs the endpoint and credentials in its own terms. This module maps
deltalake's option names (case-insensitive, with their aliases, falling back to the standard
``AWS_*`` / ``AZURE_STORAGE_*`` environment variables as deltalake does) onto
``S3FileSystem`` / ``AzureFileSystem`` arguments, so ``tables()`` works wherever writes do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from meshinsights.model import check_table_name

__all__ = [
    "filesystem_for",
    "s3_arguments",
    "azure_arguments",
    "list_namespaces",
    "list_table_names",
]

_S3_SCHEMES = frozenset({"s3", "s3a"})
_AZURE_SCHEMES = frozenset({"az", "abfs", "abfss", "adl", "azure"})
# Azurite's well-known development account (public, documented by Microsoft).
_EMULATOR_ACCOUNT = "devstoreaccount1"
_EMULATOR_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _lookup(options: Mapping[str, str], env: Mapping[str, str]) -> Callable[..., str | None]:
    lowered = {k.lower(): v for k, v in options.items()}

    def get(*names: str) -> str | None:
        for name in names:  # explicit options win over the environment, as in deltalake
            if name in lowered:
                return lowered[name]
        for name in names:
            if name.upper() in env:
                return env[name.upper()]
        return None

    return get


def _truthy(value: str | None) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def s3_arguments(
    options: Mapping[str, str], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``S3FileSystem`` keyword arguments for deltalake's S3 options (pure; for tests)."""
    get = _lookup(options, os.environ if env is None else env)
    out: dict[str, Any] = {}
    for arg, names in {
        "access_key": ("aws_access_key_id", "access_key_id"),
        "secret_key": ("aws_secret_access_key", "secret_access_key"),
        "session_token": ("aws_session_token", "session_token", "token"),
        "region": ("aws_region", "region", "aws_default_region"),
    }.items():
        value = get(*names)
        if value:
            out[arg] = value
    endpoint = get("aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        out["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        out["scheme"] = parts.scheme
    return out


def azure_arguments(
    root: str, options: Mapping[str, str], env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    """``AzureFileSystem`` keyword arguments and the container-relative base path for ``root``."""
    get = _lookup(options, os.environ if env is None else env)
    parts = urlsplit(root)
    # abfss://container@account.dfs.core.windows.net/path, or az://container/path
    if "@" in parts.netloc:
        container, host = parts.netloc.split("@", 1)
        account_from_url: str | None = host.split(".", 1)[0]
    else:
        container, account_from_url = parts.netloc, None
    base = f"{container}/{parts.path.strip('/')}".rstrip("/")
    out: dict[str, Any] = {}
    if _truthy(get("azure_storage_use_emulator", "use_emulator")):
        out.update(
            account_name=_EMULATOR_ACCOUNT,
            account_key=_EMULATOR_KEY,
            blob_storage_authority="127.0.0.1:10000",
            blob_storage_scheme="http",
            dfs_storage_authority="127.0.0.1:10000",
            dfs_storage_scheme="http",
        )
    account = get("azure_storage_account_name", "account_name") or account_from_url
    if account:
        out["account_name"] = account
    key = get("azure_storage_account_key", "azure_storage_access_key", "account_key", "access_key")
    if key:
        out["account_key"] = key
    sas = get("azure_storage_sas_key", "azure_storage_sas_token", "sas_key", "sas_token")
    if sas and "account_key" not in out:
        out["sas_token"] = sas
    for arg, names in {
        "client_id": ("azure_storage_client_id", "azure_client_id", "client_id"),
        "client_secret": ("azure_storage_client_secret", "azure_client_secret", "client_secret"),
        "tenant_id": ("azure_storage_tenant_id", "azure_tenant_id", "tenant_id"),
    }.items():
        value = get(*names)
        if value:
            out[arg] = value
    endpoint = get("azure_storage_endpoint", "azure_endpoint", "endpoint")
    if endpoint:
        ep = urlsplit(endpoint)
        out.update(
            blob_storage_authority=ep.netloc,
            blob_storage_scheme=ep.scheme or "https",
            dfs_storage_authority=ep.netloc,
            dfs_storage_scheme=ep.scheme or "https",
        )
    if "account_name" not in out:
        from meshinsights.errors import ConfigError

        raise ConfigError(
            f"store {root}: no Azure storage account; set azure_storage_account_name in "
            "MESHINSIGHTS_STORAGE_OPTIONS (or AZURE_STORAGE_ACCOUNT_NAME), or use an "
            "abfss://container@account.dfs.core.windows.net/ URI"
        )
    return out, base


def filesystem_for(root: str, storage_options: Mapping[str, str]) -> tuple[Any, str]:
    """``(pyarrow filesystem, base path)`` for a store root and its deltalake storage options."""
    from pyarrow import fs as pafs

    if "://" not in root:
        return pafs.LocalFileSystem(), root
    scheme = root.split("://", 1)[0].lower()
    if scheme == "file":
        return pafs.LocalFileSystem(), urlsplit(root).path
    if scheme in _S3_SCHEMES:
        return pafs.S3FileSystem(**s3_arguments(storage_options)), root.split("://", 1)[1]
    if scheme in _AZURE_SCHEMES:
        kwargs, base = azure_arguments(root, storage_options)
        return pafs.AzureFileSystem(**kwargs), base
    fs, path = pafs.FileSystem.from_uri(root)
    return fs, path


def _is_name(name: str) -> bool:
    try:
        check_table_name(name)
    except Exception:
        return False
    return True


def list_namespaces(root: str, storage_options: Mapping[str, str]) -> list[str]:
    """Folders under ``root`` named like namespaces (stray ones such as lost+found skipped)."""
    from pyarrow import fs as pafs

    fs, base = filesystem_for(root, storage_options)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    return sorted(
        i.base_name for i in infos if i.type == pafs.FileType.Directory and _is_name(i.base_name)
    )


def list_table_names(root: str, storage_options: Mapping[str, str], namespace: str) -> list[str]:
    """Folders of ``namespace`` that hold a Delta log."""
    from pyarrow import fs as pafs

    fs, base = filesystem_for(root, storage_options)
    infos = fs.get_file_info(
        pafs.FileSelector(f"{base}/{check_table_name(namespace)}", allow_not_found=True)
    )
    return sorted(
        i.base_name
        for i in infos
        if i.type == pafs.FileType.Directory
        and _is_name(i.base_name)
        and fs.get_file_info(f"{i.path}/_delta_log").type == pafs.FileType.Directory
    )
