"""Cleaning and ranking the rows that go into a prompt (shared by the offline analyser).

Device text is untrusted: :func:`clean_text` strips control and format characters and
neutralises anything that looks like the prompt's fence markers. :func:`rank_rows` orders a
section's rows by how much they should claim the token budget.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import numpy as np
import pandas as pd

from meshinsights.genai.models import SEVERITIES, normalize_severity

__all__ = ["cell", "clean_text", "missing", "rank_rows"]


# ---------------------------------------------------------------------- cleaning

_MARKERS = re.compile(r"<{2,}|>{2,}|`{3,}|device[_\s-]*data", re.IGNORECASE)


def _neutralise(match: re.Match[str]) -> str:
    text = match.group(0)
    if text[0] in "<>`":
        return {"<": "‹", ">": "›", "`": "'"}[text[0]] * len(text)
    return "device-data"


def clean_text(value: Any, max_len: int) -> str:
    """One line of untrusted text: no control/format chars, no fence markers, bounded length."""
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in str(value))
    text = " ".join(_MARKERS.sub(_neutralise, text).split())
    return text if len(text) <= max_len else text[: max_len - 1] + "…"


def missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str | list | dict) and bool(pd.isna(value)))


def cell(value: Any, max_cell: int) -> str:
    if missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, pd.Timestamp):
        ts = value.tz_convert("UTC") if value.tzinfo else value
        return ts.strftime("%Y-%m-%dT%H:%MZ")
    return clean_text(value, max_cell).replace("|", "\\|")


# ---------------------------------------------------------------------- ranking


def _severity_rank(col: pd.Series) -> pd.Series:
    # Built as a list: Series.map keeps the str dtype on an empty column (pandas 3).
    ranks = [SEVERITIES.index(normalize_severity(v, "info")) for v in col]
    return pd.Series(ranks, index=col.index, dtype="int64")


def _flag_column(frame: pd.DataFrame) -> str | None:
    for col in frame.columns:
        name = str(col).lower()
        if pd.api.types.is_bool_dtype(frame[col]) and any(
            k in name for k in ("anomal", "flag", "outlier")
        ):
            return str(col)
    return None


def _score_column(frame: pd.DataFrame) -> str | None:
    for col in frame.columns:
        name = str(col).lower()
        if ("score" in name or name in {"z", "zscore", "abs_z"}) and pd.api.types.is_numeric_dtype(
            frame[col]
        ):
            return str(col)
    return None


def rank_rows(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order they should claim the budget (flagged anomalies only)."""
    out = frame
    flag = _flag_column(out) if name == "anomalies" else None
    if flag is not None:
        out = out[out[flag].fillna(False).astype(bool)]
    keys: list[pd.Series] = []
    if "severity" in out.columns:
        keys.append(-_severity_rank(out["severity"]))
    score = _score_column(out)
    if score is not None:
        keys.append(-pd.to_numeric(out[score], errors="coerce").abs().fillna(0))
    if not keys:
        return out.reset_index(drop=True)
    order = pd.DataFrame({f"k{i}": k.to_numpy() for i, k in enumerate(keys)})
    idx = order.sort_values(list(order.columns), kind="stable").index
    return out.iloc[idx].reset_index(drop=True)
