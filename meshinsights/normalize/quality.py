"""The loud end of normalization: a run that quarantines most of what it read fails, and says why.

Quarantining is right for a few bad rows; when most rows of a window fail, the cause is
nearly always the configuration (a timestamp read the wrong way, a date without its time, a
decimal comma, another device's rows), and exiting 0 would hide it. :func:`check_share` raises
one :class:`DataQualityError` naming the rule that took most rows, an example of the original
values, and the likely fix.
"""

from __future__ import annotations

import json
from typing import Any

from meshinsights.errors import DataQualityError
from meshinsights.model import Window
from meshinsights.normalize.common import NormalizeResult
from meshinsights.normalize.timestamps import TimeFormat, explain_unparsed

__all__ = ["check_share", "DEFAULT_MAX_SHARE"]

#: A window quarantining more than this share of its rows fails (``max_quarantine_share``).
DEFAULT_MAX_SHARE = 0.5


def check_share(
    result: NormalizeResult,
    *,
    machine_id: str,
    window: Window,
    max_share: float = DEFAULT_MAX_SHARE,
    times: TimeFormat | None = None,
    time_column: str = "ts",
    what: str = "telemetry",
) -> None:
    """Raise DataQualityError when more than ``max_share`` of the rows read were quarantined."""
    n, bad = result.rows_in, len(result.quarantine)
    if n == 0 or bad / n <= max_share:
        return
    rules = result.by_rule
    rule, count = max(rules.items(), key=lambda kv: kv[1])
    examples = result.quarantine.loc[result.quarantine["rule"] == rule, "original"]
    original = _decode(examples.iloc[0]) if len(examples) else {}
    fix = _fix(rule, original, times or TimeFormat(), time_column)
    others = ", ".join(f"{r} {c}" for r, c in sorted(rules.items()) if r != rule)
    raise DataQualityError(
        f"machine {machine_id} {window}: {bad:,} of {n:,} {what} rows read ({bad / n:.0%}) were "
        f"quarantined, more than max_quarantine_share {max_share:g} — {count:,} as {rule!r}"
        + (f" (also {others})" if others else "")
        + f"; e.g. {json.dumps(original, default=str)[:300]}. {fix}. The rows are in the "
        "quarantine table with their reasons; the window's telemetry was not written and the "
        "watermark did not move. If the data really are this bad, raise max_quarantine_share "
        "in the source config."
    )


def _decode(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {"original": text}
    return value if isinstance(value, dict) else {"original": value}


def _fix(rule: str, original: dict[str, Any], times: TimeFormat, time_column: str) -> str:
    """The likely cause of most rows failing ``rule``, as an instruction."""
    if rule == "ts_parse":
        return "Likely fix: " + explain_unparsed(original.get("ts"), times, column=time_column)
    if rule in ("duplicate_ts", "clock_rollback"):
        return (
            "Likely cause: many rows share a timestamp — the time may be split over two columns "
            f"(set ts_columns: [Date, Time] instead of ts_column {time_column!r}), the source may "
            "hold several devices (set machine_column and the device mapping) or several runs "
            "(set run_column)"
        )
    if rule == "value_type":
        return (
            f"Likely fix: the values are not numbers as read (e.g. {original.get('value')!r}); "
            "check the source's decimal (decimal: ',') and separator, or list only numeric "
            "columns in metrics"
        )
    if rule == "value_missing":
        return (
            "Likely cause: the values are missing (null or an na_values marker); check that the "
            "metrics point at the right columns and that na_values is not too broad"
        )
    if rule == "machine_id":
        return (
            f"Likely fix: the rows belong to other devices (e.g. {original.get('machine_id')!r}); "
            "map the device column to machine ids (device, device_template) or filter the query"
        )
    if rule == "out_of_window":
        return (
            "Likely cause: the source returns rows outside the run window; filter the query by "
            ":start and :end, or check the source's timezone"
        )
    if rule == "unit":
        return "Likely fix: declare the source's units (units: {metric: unit}) so they convert"
    return (
        f"Likely cause: the validation rule {rule!r} rejected them; check the source's units "
        "and the pipeline's validation limits"
    )
