"""Golden tests: compressor stage segments, their filtering, and per-stage cycle medians."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from meshinsights.steps.cycles import cycle_medians, detect_cycles, stage_of
from tests.steps.builders import at, cycles_frame, grid, win

NAN = np.nan

# minute: 0-1 off | 2-4 stage 1 | 5 stage 2 | 6-10 stage 1 | 11-12 off | 13 gap | 14-15 stage 1
# | 16-17 off (still running at the end of the data: reported by the next window)
POWER = grid("power_kw", [0.3, 0.3, 3.0, 3.2, 2.8, 6.0, 3, 3, 3, 3, 3, 0.3, 0.3, None, 3, 3,
                          0.3, 0.3])

# (end, start, stage, duration, median, mean, min, max, complete, reason)
ALL_SEGMENTS = [
    (2, 0, 0, 2, 0.3, 0.3, 0.3, 0.3, False, "incomplete"),
    (5, 2, 1, 3, 3.0, 3.0, 2.8, 3.2, True, None),
    (6, 5, 2, 1, 6.0, 6.0, 6.0, 6.0, True, "too_short"),
    (11, 6, 1, 5, 3.0, 3.0, 3.0, 3.0, True, "too_long"),
    (13, 11, 0, 2, 0.3, 0.3, 0.3, 0.3, False, "incomplete"),
    (16, 14, 1, 2, 3.0, 3.0, 3.0, 3.0, False, "incomplete"),
]


def cycle_rows(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["end", "start", "stage", "duration_min", "median", "mean",
                                     "min", "max", "complete", "reject_reason"])
    out = pd.DataFrame({"ts": at(*df["end"]), "start_ts": at(*df["start"]),
                        "metric": "power_kw", "stage": df["stage"].astype("int64"),
                        "duration_min": df["duration_min"].astype("float64"),
                        "n_samples": df["duration_min"].astype("int64")})
    for col in ("median", "mean", "min", "max"):
        out[col] = df[col].astype("float64")
    out["complete"] = df["complete"].astype(bool)
    out["valid"] = df["reject_reason"].isna()
    out["reject_reason"] = df["reject_reason"].astype(object)
    return out


CASES = [
    pytest.param(POWER, {"min_minutes": 2, "max_minutes": 4}, win(0, 18),
                 cycle_rows(ALL_SEGMENTS), id="stages-gaps-and-filter-reasons"),
    pytest.param(POWER, {"min_minutes": 2, "max_minutes": 4}, win(5, 18),
                 cycle_rows(ALL_SEGMENTS[1:]), id="cycles-belong-to-the-window-they-end-in"),
    pytest.param(POWER, {"min_minutes": 1, "max_minutes": 10}, win(0, 18),
                 cycle_rows([(*r[:9], None if r[9] != "incomplete" else r[9])
                             for r in ALL_SEGMENTS]), id="looser-filter"),
    pytest.param(POWER, {"stage_edges": [1.5], "min_minutes": 1, "max_minutes": 100},
                 win(0, 18),
                 cycle_rows([(2, 0, 0, 2, 0.3, 0.3, 0.3, 0.3, False, "incomplete"),
                             (11, 2, 1, 9, 3.0, 30 / 9, 2.8, 6.0, True, None),
                             (13, 11, 0, 2, 0.3, 0.3, 0.3, 0.3, False, "incomplete"),
                             (16, 14, 1, 2, 3.0, 3.0, 3.0, 3.0, False, "incomplete")]),
                 id="single-stage-on-off"),
]


@pytest.mark.parametrize(("clean", "params", "window", "expected"), CASES)
def test_detect_cycles_golden(clean: pd.DataFrame, params: dict, window, expected) -> None:
    assert_frame_equal(detect_cycles(clean, window=window, **params), expected)


def test_detect_cycles_without_the_metric_is_empty() -> None:
    assert detect_cycles(grid("temperature", [1.0, 2.0]), window=win(0, 2)).empty


@pytest.mark.parametrize(
    ("values", "edges", "expected"),
    [([0.3, 1.5, 4.49, 4.5, 7.0], [1.5, 4.5], [0, 1, 1, 2, 2]),
     ([NAN, 2.0], [1.5], [-1, 1])],
    ids=["two-edges-inclusive-lower-bound", "null-is-unknown"],
)
def test_stage_of(values, edges, expected) -> None:
    assert stage_of(np.array(values), edges).tolist() == expected


def test_cycle_medians_golden() -> None:
    valid = cycles_frame([(0, 10, 1, 3.0), (20, 12, 1, 3.2), (40, 8, 1, 2.8), (60, 5, 2, 6.0)])
    rejected = cycles_frame([(70, 1, 2, 6.5)], valid=False).assign(reject_reason="too_short")
    result = cycle_medians(pd.concat([valid, rejected], ignore_index=True), window=win(0, 120))
    expected = pd.DataFrame({
        "ts": at(0, 0), "stage": pd.array([1, 2], dtype="int64"),
        "n_cycles": pd.array([3, 1], dtype="int64"), "n_rejected": pd.array([0, 1], dtype="int64"),
        "median": [3.0, 6.0], "mad": [0.2, 0.0], "cv": [0.2 / 3.0, NAN],
        "median_duration_min": [10.0, 5.0], "total_minutes": [30.0, 6.0],
        "cycles_per_hour": [1.5, 1.0],
    })
    assert_frame_equal(result, expected, check_exact=False, rtol=1e-12)


def _segments_reference(s, edges, step):
    """The former loop over runs, kept as the specification of the vectorised ``_segments``."""
    from meshinsights.steps._util import runs

    values, idx = s.to_numpy(dtype="float64"), s.index
    stage = stage_of(values, edges)
    rows = []
    for start, n in zip(*runs(stage), strict=True):
        after = start + n
        if stage[start] < 0 or after == len(values):
            continue
        known_before = start > 0 and idx[start] - idx[start - 1] <= step and stage[start - 1] >= 0
        known_after = stage[after] >= 0 and idx[after] - idx[after - 1] <= step
        seg = values[start:after]
        rows.append({"ts": idx[after - 1] + step, "start_ts": idx[start],
                     "stage": int(stage[start]), "duration_min": n * step / pd.Timedelta("1min"),
                     "n_samples": int(n), "median": float(np.median(seg)),
                     "mean": float(seg.mean()), "min": float(seg.min()),
                     "max": float(seg.max()), "complete": bool(known_before and known_after)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_segments_equal_the_loop(seed):
    """Random power traces with NaNs, gaps and stage changes: same rows as the reference loop."""
    from meshinsights.steps.cycles import _segments

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    ts = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    if n:
        ts = ts.delete(rng.choice(n, size=min(n, int(rng.integers(0, 20))), replace=False))
    levels = rng.choice([0.0, 2.5, 6.0, np.nan], size=len(ts), p=[0.3, 0.3, 0.3, 0.1])
    values = np.repeat(levels[: max(1, len(ts) // 7 + 1)], 7)[: len(ts)] if len(ts) else levels
    values = values + rng.normal(0, 0.1, len(values))
    s = pd.Series(values, index=ts)
    got = _segments(s, [1.0, 4.0], pd.Timedelta("1min"))
    want = _segments_reference(s, [1.0, 4.0], pd.Timedelta("1min"))
    if want.empty:
        assert got.empty and n < 30  # only the shortest traces have no finished cycle
        return
    assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False, check_index_type=False,
                       rtol=1e-12)
