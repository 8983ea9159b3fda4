"""Power analysis over cycles: variance classification, baseline alarm thresholds, and the
threshold update proposed to the alert database.

These are the "most recent N days" analyses: give them a ``lookback`` (e.g. ``90D``) so they
read the cycles of the whole period; each writes one result per window with ``ts`` = window
start.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from meshinsights.model import TS, Window
from meshinsights.steps._util import UTC_US, dumps, empty_frame
from meshinsights.steps.params import NonNegative, Positive, PositiveInt
from meshinsights.steps.registry import step

__all__ = [
    "power_variance",
    "alarm_thresholds",
    "update_thresholds",
    "classify_cv",
    "VARIANCE_SCHEMA",
    "THRESHOLDS_SCHEMA",
    "THRESHOLD_UPDATES_SCHEMA",
]

logger = logging.getLogger(__name__)

#: 1.4826 · MAD estimates the standard deviation of normally distributed data.
MAD_TO_SIGMA = 1.4826

VARIANCE_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # window start
        ("variance_class", pa.string()),  # low | medium | high | unknown
        ("cv", pa.float64()),  # the largest per-stage CV (the class is decided by it)
        ("worst_stage", pa.int64()),
        ("n_cycles", pa.int64()),
        ("cv_by_stage", pa.string()),  # JSON {stage: cv}
        ("low_max", pa.float64()),
        ("high_min", pa.float64()),
        ("basis_start", TS),
        ("basis_end", TS),
    ]
)

THRESHOLDS_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # window start
        ("metric", pa.string()),
        ("stage", pa.int64()),
        ("method", pa.string()),
        ("center", pa.float64()),
        ("lower", pa.float64()),
        ("upper", pa.float64()),
        ("n_cycles", pa.int64()),
        ("basis_start", TS),
        ("basis_end", TS),
    ]
)

THRESHOLD_UPDATES_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # window start
        ("metric", pa.string()),
        ("stage", pa.int64()),
        ("lower", pa.float64()),
        ("upper", pa.float64()),
        ("center", pa.float64()),
        ("method", pa.string()),
        ("n_cycles", pa.int64()),
        ("valid_from", TS),  # the window end: computed from data up to then
        ("variance_class", pa.string()),
        ("cv", pa.float64()),
    ]
)


def classify_cv(cv: float, *, low_max: float, high_min: float) -> str:
    """``low`` if cv ≤ low_max, ``high`` if cv ≥ high_min, else ``medium``; NaN is ``unknown``."""
    if cv is None or np.isnan(cv):
        return "unknown"
    if cv <= low_max:
        return "low"
    return "high" if cv >= high_min else "medium"


def _valid(cycles: pd.DataFrame, stages: list[int] | None) -> pd.DataFrame:
    if cycles.empty:
        return cycles
    ok = cycles["valid"].astype(bool)
    if stages is not None:
        ok &= cycles["stage"].isin(stages)
    return cycles[ok]


@step(inputs=["cycles"], output="variance", schema=VARIANCE_SCHEMA)
def power_variance(
    cycles: pd.DataFrame,
    *,
    stages: list[int] | None = None,
    low_max: NonNegative = 0.1,
    high_min: NonNegative = 0.3,
    min_cycles: PositiveInt = 5,
    window: Window,
) -> pd.DataFrame:
    """Coefficient of variation of valid cycle medians per on-stage, classed low/medium/high.

    The class follows the most variable stage with at least ``min_cycles`` valid cycles
    (``unknown`` if none has). ``stages`` defaults to every on-stage (stage ≥ 1).
    """
    valid = _valid(cycles, stages)
    if stages is None and not valid.empty:
        valid = valid[valid["stage"] >= 1]
    cvs: dict[int, float] = {}
    for stage, group in valid.groupby("stage", sort=True) if not valid.empty else []:
        med = group["median"].astype("float64")
        if len(med) >= max(min_cycles, 2) and med.mean() != 0:
            cvs[int(stage)] = float(med.std(ddof=1) / abs(med.mean()))
    worst = max(cvs, key=lambda k: cvs[k]) if cvs else None
    cv = cvs[worst] if worst is not None else np.nan
    row = {
        "ts": pd.Timestamp(window.start),
        "variance_class": classify_cv(cv, low_max=low_max, high_min=high_min),
        "cv": cv,
        "worst_stage": worst,
        "n_cycles": len(valid),
        "cv_by_stage": dumps({str(k): round(v, 6) for k, v in cvs.items()}),
        "low_max": float(low_max),
        "high_min": float(high_min),
        "basis_start": valid["start_ts"].min() if len(valid) else pd.NaT,
        "basis_end": valid["ts"].max() if len(valid) else pd.NaT,
    }
    out = pd.DataFrame([row])
    for col in ("ts", "basis_start", "basis_end"):
        out[col] = pd.to_datetime(out[col], utc=True).astype(UTC_US)
    out["worst_stage"] = out["worst_stage"].astype("Int64")
    return out


def _band(
    values: pd.Series, *, method: str, k: float, percentiles: list[float], min_half_width: float
) -> tuple[float, float, float]:
    center = float(values.median())
    if method == "mad":
        half = k * MAD_TO_SIGMA * float((values - center).abs().median())
        lo, hi = center - half, center + half
    else:
        lo, hi = (float(np.percentile(values, p)) for p in sorted(percentiles))
    # A perfectly steady basis would give a zero-width band that alarms on any noise.
    floor = min_half_width * abs(center)
    return center, min(lo, center - floor), max(hi, center + floor)


@step(inputs=["cycles"], output="thresholds", schema=THRESHOLDS_SCHEMA)
def alarm_thresholds(
    cycles: pd.DataFrame,
    *,
    method: Literal["mad", "percentile"] = "mad",
    k: Positive = 3.0,
    percentiles: list[float] | tuple[float, ...] = (1.0, 99.0),
    min_cycles: PositiveInt = 5,
    min_half_width: NonNegative = 0.05,
    stages: list[int] | None = None,
    window: Window,
) -> pd.DataFrame:
    """Per stage, a robust band of valid cycle medians: median ± k·1.4826·MAD, or percentiles.

    ``min_half_width`` (a fraction of the center) keeps a band from collapsing to zero width.
    """
    if method not in ("mad", "percentile"):
        raise ValueError(f"method {method!r} is not 'mad' or 'percentile'")
    valid = _valid(cycles, stages)
    rows = []
    for stage, group in valid.groupby("stage", sort=True) if not valid.empty else []:
        if len(group) < min_cycles:
            continue
        center, lo, hi = _band(
            group["median"].astype("float64"),
            method=method,
            k=k,
            percentiles=list(percentiles),
            min_half_width=min_half_width,
        )
        rows.append(
            {
                "ts": pd.Timestamp(window.start),
                "metric": str(group["metric"].iloc[0]),
                "stage": int(stage),
                "method": method,
                "center": center,
                "lower": lo,
                "upper": hi,
                "n_cycles": len(group),
                "basis_start": group["start_ts"].min(),
                "basis_end": group["ts"].max(),
            }
        )
    if not rows:
        return empty_frame(THRESHOLDS_SCHEMA)
    out = pd.DataFrame(rows)
    for col in ("ts", "basis_start", "basis_end"):
        out[col] = out[col].astype(UTC_US)
    return out


@step(
    inputs=["thresholds", "variance"], output="threshold_updates", schema=THRESHOLD_UPDATES_SCHEMA
)
def update_thresholds(
    thresholds: pd.DataFrame,
    variance: pd.DataFrame,
    *,
    allowed_classes: list[str] | tuple[str, ...] = ("low",),
    window: Window,
) -> pd.DataFrame:
    """The window's thresholds as alert-database rows, only if its variance class is allowed.

    The pipeline also gates this step with a branch rule; checking here too means a manual
    run can never push thresholds learnt from erratic data. ``valid_from`` is the window end.
    """
    if thresholds.empty or variance.empty:
        return empty_frame(THRESHOLD_UPDATES_SCHEMA)
    current = variance.sort_values("ts").iloc[-1]
    if current["variance_class"] not in set(allowed_classes):
        logger.info(
            "variance class %s is not in %s: no threshold update",
            current["variance_class"],
            list(allowed_classes),
        )
        return empty_frame(THRESHOLD_UPDATES_SCHEMA)
    out = thresholds[
        ["ts", "metric", "stage", "lower", "upper", "center", "method", "n_cycles"]
    ].copy()
    out["valid_from"] = pd.Timestamp(window.end)
    out["valid_from"] = out["valid_from"].astype(UTC_US)
    out["variance_class"] = current["variance_class"]
    out["cv"] = float(current["cv"])
    return out.sort_values("stage", kind="stable").reset_index(drop=True)
