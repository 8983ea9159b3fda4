"""Events normalization: events/alarms/logs → canonical events + quarantine."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from meshinsights.model import RUN, Window
from meshinsights.normalize.common import (
    EVENTS_COLUMNS,
    NormalizeResult,
    RowSorter,
    clean_text,
    prepare_rows,
    rule_value,
)
from meshinsights.normalize.runs import by_run
from meshinsights.normalize.timestamps import TimeFormat

__all__ = ["normalize_events", "DEFAULT_KINDS"]

logger = logging.getLogger(__name__)

DEFAULT_KINDS = ("event", "alarm", "log")


def normalize_events(
    raw: pd.DataFrame,
    *,
    machine_id: str,
    window: Window,
    times: TimeFormat | None = None,
    rules: Any = None,
) -> NormalizeResult:
    """Source events/alarms/logs → canonical events + quarantine, with exact accounting.

    ``rules`` (an ``EventRules`` or a mapping) may restrict ``kinds``, ``severities`` and
    ``codes`` per kind; without it kinds must be one of event, alarm, log. With a ``run_id``
    column each run is checked on its own and keeps its run id.
    """
    if RUN in raw.columns:
        return by_run(
            normalize_events,
            raw,
            machine_id=machine_id,
            window=window,
            source_table="events",
            times=times,
            rules=rules,
        )
    df = prepare_rows(raw, ("ts", "kind"), "events", machine_id)
    original = raw.reset_index(drop=True)
    sorter = RowSorter(df, original, machine_id=machine_id, window=window, source_table="events")
    sorter.common(times or TimeFormat())
    for col in ("kind", "severity", "code", "message"):
        if col not in sorter.df.columns:
            sorter.df[col] = None
        sorter.df[col] = sorter.df[col].astype(object).map(clean_text)
    sorter.df["kind"] = sorter.df["kind"].map(lambda k: k.lower() if isinstance(k, str) else None)
    kinds = list(rule_value(rules, "kinds") or DEFAULT_KINDS)
    sorter.reject(
        ~sorter.df["kind"].isin(kinds), "events.kind", f"kind missing or not one of {kinds}"
    )
    severities = rule_value(rules, "severities")
    if severities:
        sorter.reject(
            ~sorter.df["severity"].isin(list(severities)),
            "events.severity",
            f"severity not one of {list(severities)}",
        )
    for kind, codes in dict(rule_value(rules, "codes") or {}).items():
        wrong = (sorter.df["kind"] == kind) & ~sorter.df["code"].isin(list(codes))
        sorter.reject(wrong, f"{kind}.code", f"{kind} code not in the allowed codes {list(codes)}")
    duplicates = sorter.dedupe(["ts", "kind", "severity", "code", "message"])
    clean = sorter.df.assign(machine_id=machine_id)[EVENTS_COLUMNS]
    clean = clean.sort_values(["ts", "kind"], kind="stable").reset_index(drop=True)
    result = NormalizeResult(clean, sorter.quarantined(), len(raw), duplicates, notes=sorter.notes)
    result.check()
    return result
