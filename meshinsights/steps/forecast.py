"""Short-horizon forecasts with a stored backtest: moving average and lag regression.

From each *origin* (every ``origin_every`` in the window, plus the window's last grid time)
both models take the last ``history`` points and predict the next ``horizon``. Rows are stored
with ``ts`` = the origin (always inside the run window, as the store requires) and the
predicted time in ``target_ts`` (which may lie after the window). Where the target time is
already observed, ``actual`` and ``error`` (= yhat − actual) make the backtest;
:func:`forecast_errors` aggregates them per window.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.lib.stride_tricks import sliding_window_view

from meshinsights.model import TS, Window
from meshinsights.steps._util import UTC_US, empty_frame, in_window, infer_step, window_bounds
from meshinsights.steps.params import Duration, NonNegative, PositiveInt
from meshinsights.steps.registry import step

__all__ = [
    "forecast",
    "forecast_errors",
    "LagRegression",
    "FORECAST_SCHEMA",
    "FORECAST_ERRORS_SCHEMA",
    "METHODS",
]

logger = logging.getLogger(__name__)

METHODS = ("moving_average", "lag_regression")

FORECAST_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # forecast origin: the last observed time the forecast uses
        ("target_ts", TS),  # the predicted time
        ("metric", pa.string()),
        ("method", pa.string()),
        ("horizon", pa.int64()),  # steps ahead, 1..horizon
        ("yhat", pa.float64()),
        ("actual", pa.float64()),  # observed value at target_ts, if already known
        ("error", pa.float64()),  # yhat - actual
    ]
)

FORECAST_ERRORS_SCHEMA = pa.schema(
    [
        ("machine_id", pa.string()),
        ("ts", TS),  # window start
        ("metric", pa.string()),
        ("method", pa.string()),
        ("horizon", pa.int64()),  # null: over all horizons
        ("n", pa.int64()),
        ("mae", pa.float64()),
        ("rmse", pa.float64()),
        ("bias", pa.float64()),
    ]
)


class LagRegression:
    """Ridge regression of every horizon on the lags, refit as training rows accrue.

    Sums of the augmented design (a ones column plus the lags) are accumulated row by row, so
    refitting at each origin costs one small solve instead of a pass over the history. The
    intercept is not penalised; ``ridge`` is relative to the mean lag variance.
    """

    def __init__(self, history: int, horizon: int) -> None:
        self.gram = np.zeros((history + 1, history + 1))
        self.cross = np.zeros((history + 1, horizon))
        self.next = 0

    @property
    def n(self) -> int:
        return int(self.gram[0, 0])

    def add(self, x: np.ndarray, y: np.ndarray, usable: np.ndarray, upto: int) -> None:
        """Add the usable rows ``next .. upto-1`` (only ever moves forward in time)."""
        if upto <= self.next:
            return
        rows = np.flatnonzero(usable[self.next : upto]) + self.next
        a = np.column_stack([np.ones(len(rows)), x[rows]])
        self.gram += a.T @ a
        self.cross += a.T @ y[rows]
        self.next = upto

    def predict(self, x_row: np.ndarray, ridge: float) -> np.ndarray:
        n, sx, sy = self.gram[0, 0], self.gram[0, 1:], self.cross[0]
        cxx = self.gram[1:, 1:] - np.outer(sx, sx) / n
        cxy = self.cross[1:] - np.outer(sx, sy) / n
        lam = ridge * max(float(np.trace(cxx)) / len(sx), 1e-12)
        coef = np.linalg.solve(cxx + lam * np.eye(len(sx)), cxy)
        return sy / n + (x_row - sx / n) @ coef


def _origins(ts: pd.DatetimeIndex, lo: pd.Timestamp, hi: pd.Timestamp, every: str) -> np.ndarray:
    inside = np.flatnonzero((ts >= lo) & (ts < hi))
    if len(inside) == 0:
        return inside
    offset = (ts[inside] - lo) % pd.Timedelta(every)
    picked = inside[offset == pd.Timedelta(0)]
    return np.unique(np.concatenate([picked, inside[-1:]]))


def _design(v: np.ndarray, history: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Lag rows X[t] = v[t-history+1..t] and target rows Y[t] = v[t+1..t+horizon] (NaN-padded)."""
    n = len(v)
    pad_x = np.concatenate([np.full(history - 1, np.nan), v])
    pad_y = np.concatenate([v[1:], np.full(horizon, np.nan)])
    return sliding_window_view(pad_x, history)[:n], sliding_window_view(pad_y, horizon)[:n]


def _forecast_frames(
    rows: pd.DataFrame,
    lo: pd.Timestamp,
    hi: pd.Timestamp,
    *,
    history: int,
    horizon: int,
    methods: list[str],
    origin_every: str,
    ridge: float,
    min_train: int,
) -> Iterator[pd.DataFrame]:
    """One frame of ``horizon`` rows per origin in ``[lo, hi)`` and method."""
    ts = pd.DatetimeIndex(rows["ts"])
    step_ = infer_step(rows["ts"])
    v = rows["value"].to_numpy(dtype="float64", na_value=np.nan)
    observed = v.copy()
    if "filled" in rows:
        observed[rows["filled"].to_numpy(dtype=bool)] = np.nan
    # Shifting by one constant (the first value: nothing from the future) leaves the fit
    # unchanged and keeps the running sums well conditioned when values sit far from zero.
    finite = v[np.isfinite(v)]
    shift = float(finite[0]) if len(finite) else 0.0
    x = _design(v, history, horizon)[0] - shift
    y = _design(observed, history, horizon)[1] - shift
    usable = np.asarray(~np.isnan(x).any(axis=1) & ~np.isnan(y).any(axis=1), dtype=bool)
    model = LagRegression(history, horizon)
    steps = np.arange(1, horizon + 1)
    for o in _origins(ts, lo, hi, origin_every):
        if np.isnan(x[o]).any() or ts[o] - ts[max(o - history + 1, 0)] != (history - 1) * step_:
            continue
        targets = ts[o] + step_ * steps
        actual = _actuals(ts, observed, targets)
        model.add(x, y, usable, o - horizon + 1)  # targets observed by the origin: no leakage
        for method in methods:
            if method == "moving_average":
                yhat = np.full(horizon, x[o].mean()) + shift
            elif model.n >= min_train:
                yhat = model.predict(x[o], ridge) + shift
            else:
                continue
            yield pd.DataFrame(
                {
                    "ts": ts[o],
                    "target_ts": targets,
                    "metric": rows["metric"].iloc[0],
                    "method": method,
                    "horizon": steps,
                    "yhat": yhat,
                    "actual": actual,
                    "error": yhat - actual,
                }
            )


@step(inputs=["clean"], output="forecasts", schema=FORECAST_SCHEMA)
def forecast(
    clean: pd.DataFrame,
    *,
    metric: str = "temperature",
    history: PositiveInt = 60,
    horizon: PositiveInt = 15,
    methods: list[str] | tuple[str, ...] = METHODS,
    origin_every: Duration = "1h",
    ridge: NonNegative = 1e-3,
    min_train: PositiveInt = 240,
    window: Window | None = None,
) -> pd.DataFrame:
    """Forecast ``horizon`` steps from the last ``history`` grid points, from every origin.

    An origin whose history has a gap is skipped (no forecast rather than one from made-up
    inputs). Lag regression trains on the input before each origin (the step's ``lookback``)
    and needs ``min_train`` complete examples. Filled cells are used as inputs, never as
    actuals.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown forecast method(s) {unknown}; known: {list(METHODS)}")
    rows = (
        clean[clean["metric"] == metric].sort_values("ts", kind="stable") if len(clean) else clean
    )
    if rows.empty:
        return empty_frame(FORECAST_SCHEMA)
    lo, hi = window_bounds(window, rows["ts"])
    out = list(
        _forecast_frames(
            rows,
            lo,
            hi,
            history=history,
            horizon=horizon,
            methods=list(methods),
            origin_every=origin_every,
            ridge=ridge,
            min_train=min_train,
        )
    )
    if not out:
        return empty_frame(FORECAST_SCHEMA)
    result = pd.concat(out, ignore_index=True)
    for col in ("ts", "target_ts"):
        result[col] = result[col].astype(UTC_US)
    return in_window(result, window)


def _actuals(ts: pd.DatetimeIndex, observed: np.ndarray, targets: pd.DatetimeIndex) -> np.ndarray:
    pos = ts.get_indexer(targets)
    return np.where(pos >= 0, observed[np.clip(pos, 0, None)], np.nan)


@step(inputs=["forecasts"], output="forecast_errors", schema=FORECAST_ERRORS_SCHEMA)
def forecast_errors(forecasts: pd.DataFrame, *, window: Window) -> pd.DataFrame:
    """Backtest error per method and horizon (and over all horizons) for the window."""
    done = forecasts.dropna(subset=["error"]) if len(forecasts) else forecasts
    if done.empty:
        return empty_frame(FORECAST_ERRORS_SCHEMA)

    def agg(g: pd.DataFrame) -> pd.Series:
        e = g["error"].astype("float64")
        return pd.Series(
            {
                "n": len(e),
                "mae": e.abs().mean(),
                "rmse": float(np.sqrt((e**2).mean())),
                "bias": e.mean(),
            }
        )

    by_h = done.groupby(["metric", "method", "horizon"], sort=True)[["error"]].apply(agg)
    overall = done.groupby(["metric", "method"], sort=True)[["error"]].apply(agg)
    overall["horizon"] = pd.NA
    out = pd.concat([by_h.reset_index(), overall.reset_index()], ignore_index=True)
    out.insert(0, "ts", pd.Timestamp(window.start))
    out["ts"] = out["ts"].astype(UTC_US)
    out["n"] = out["n"].astype("int64")
    out["horizon"] = out["horizon"].astype("Int64")
    return out.sort_values(
        ["metric", "method", "horizon"], kind="stable", na_position="last"
    ).reset_index(drop=True)
