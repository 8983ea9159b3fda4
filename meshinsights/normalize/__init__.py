"""Normalization and validation of source rows into the canonical telemetry and events schemas.

Every input row ends in exactly one place: the clean frame, the quarantine frame (with the
rule, the reason and the original values as JSON), or the exact-duplicate count. The
invariant ``rows_in == rows_clean + rows_quarantined + duplicates_removed`` is checked on
every call. Decisions worth knowing:

- Naive timestamps are read in the source's time zone; everything leaves in UTC. Local times
  that do not exist or are ambiguous (DST edges) are quarantined (``ts_parse``).
- Exact duplicates (same ts, metric, value and unit) are removed and counted, keeping the
  earliest ingested copy.
- A *repeated* timestamp with a different value is a conflict. The first occurrence wins
  (earliest ``ingested_at``, then source order); later ones are quarantined as
  ``clock_rollback`` when other times were reported in between (the device clock jumped
  back and replayed readings), else — right next to its twin in source order — as
  ``duplicate_ts``. Out-of-order but unique timestamps are simply sorted.
- Values are coerced to float; text that is not a number goes to ``value_type``, missing
  values (null or a source ``na_values`` marker) to ``value_missing``.
- Units are converted to the rule's canonical unit (degF→degC, W→kW, ...); rows whose unit
  cannot be converted go to ``unit``. Rows without a unit are taken as canonical.
- Rate rules compare each sample with the previous *accepted* one, so one spike costs one
  row (not its neighbour too); after three rejections in a row the new level is accepted.
"""

from __future__ import annotations

from meshinsights.normalize.common import (
    NormalizeResult,
    empty_quarantine,
    quarantine_frame,
    to_utc,
)
from meshinsights.normalize.events import normalize_events
from meshinsights.normalize.rules import apply_rules
from meshinsights.normalize.telemetry import normalize_telemetry

__all__ = [
    "NormalizeResult",
    "normalize_telemetry",
    "normalize_events",
    "apply_rules",
    "quarantine_frame",
    "empty_quarantine",
    "to_utc",
]
