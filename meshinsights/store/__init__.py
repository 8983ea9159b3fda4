"""Storage: the only package that imports ``deltalake``; Delta partitions plus DuckDB over them."""

from __future__ import annotations

from meshinsights.store.delta import DeltaStore, TableInfo, WriteResult

__all__ = ["DeltaStore", "TableInfo", "WriteResult"]
