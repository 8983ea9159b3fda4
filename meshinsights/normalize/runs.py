"""Sources with runs: normalize each run on its own, so runs of one machine may overlap in time.

A robot's runs (a batch, a test) share timestamps: the same instant in two runs is two
readings, not a clock that jumped back. Every check (duplicates, repeated timestamps, rate
rules, window) therefore applies *within* a run; rows with no run id go to quarantine as
``run_missing``. The run id is kept as ``run_id`` on clean and quarantined rows alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from meshinsights.model import RUN
from meshinsights.normalize.common import NormalizeResult, clean_text, quarantine_frame

__all__ = ["by_run", "run_text"]


def run_text(values: pd.Series) -> pd.Series:
    """Run ids as stripped text (None for missing/blank); ``7.0`` read as a number is ``7``."""

    def one(v: Any) -> str | None:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return clean_text(v)

    return values.astype(object).map(one)


def by_run(
    normalize: Callable[..., NormalizeResult],
    raw: pd.DataFrame,
    *,
    machine_id: str,
    window: Any,
    source_table: str,
    **options: Any,
) -> NormalizeResult:
    """``normalize`` applied to each run's rows of ``raw``; one result, accounting exact."""
    runs = run_text(raw[RUN]).reset_index(drop=True)
    frame = raw.reset_index(drop=True).drop(columns=[RUN])
    missing = runs.isna()
    results: list[tuple[str | None, NormalizeResult]] = []
    for run, rows in frame[~missing].groupby(runs[~missing], sort=True):
        results.append((str(run), normalize(rows, machine_id=machine_id, window=window, **options)))
    if not results:  # no row has a run: the normalizer still gives the empty frames' types
        results.append(
            (None, normalize(frame.iloc[:0], machine_id=machine_id, window=window, **options))
        )
    quarantined = [r.quarantine.assign(**{RUN: run}) for run, r in results]
    if missing.any():
        lost = raw.reset_index(drop=True)[missing]
        quarantined.append(
            quarantine_frame(
                lost,
                rule="run_missing",
                reason="the run id is missing (the source's run_column is empty)",
                machine_id=machine_id,
                window=window,
                source_table=source_table,
            ).assign(**{RUN: None})
        )
    clean = pd.concat([r.clean.assign(**{RUN: run}) for run, r in results], ignore_index=True)
    clean[RUN] = clean[RUN].astype(object)
    quarantine = pd.concat(
        [q for q in quarantined if not q.empty] or quarantined[:1], ignore_index=True
    )
    quarantine[RUN] = quarantine[RUN].astype(object)
    stats: dict[str, int] = {}
    notes: dict[str, Any] = {}
    for _, r in results:
        for k, v in r.stats.items():
            stats[k] = stats.get(k, 0) + v
        notes.update(r.notes)
    present = set(clean["metric"]) if "metric" in clean.columns else set()
    missing_required = sorted({m for _, r in results for m in r.missing_required} - present)
    result = NormalizeResult(
        clean,
        quarantine,
        len(raw),
        sum(r.duplicates_removed for _, r in results),
        stats=stats,
        missing_required=missing_required,
        notes={**notes, "runs": len([run for run, _ in results if run is not None])},
    )
    result.check()
    return result
