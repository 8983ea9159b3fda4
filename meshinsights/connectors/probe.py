"""A look at a file source before any run: are the columns the config names really there?

``validate-configs`` calls :func:`probe` for every machine with a file source. It reads the
first rows of the first file with the source's own options and checks what a run would
otherwise discover window by window: the timestamp column(s) exist and parse, the device and
long-layout columns exist, the listed metrics exist; for a wide file without ``metrics`` it
says which columns would be ingested and which skipped. SQL and ADX sources are not queried
here (that needs their credentials and a window).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshinsights.config import FileSource, MachineConfig
from meshinsights.connectors.sources import SourceAccess, shape_of, times_of
from meshinsights.errors import MeshInsightsError
from meshinsights.normalize.layout import TS_JOINED, combine_ts, to_long
from meshinsights.normalize.timestamps import explain_unparsed, parse_times

__all__ = ["Probe", "probe"]

#: Rows read from the first file.
SAMPLE_ROWS = 200


@dataclass
class Probe:
    """What a look at a machine's source found: problems (a run would fail) and notes."""

    machine_id: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def probe(machine: MachineConfig, access: SourceAccess | None = None) -> Probe | None:
    """Check a file source's first rows against its config; None for other source types."""
    source = machine.source
    if not isinstance(source, FileSource):
        return None
    found = Probe(machine.machine_id)
    access = access or SourceAccess()
    try:
        conn = access.connector(machine)
        sample = conn.sample(SAMPLE_ROWS)  # type: ignore[attr-defined]
    except MeshInsightsError as exc:
        found.problems.append(str(exc))
        return found
    shape, times = shape_of(source), times_of(source)
    try:
        rows = to_long(sample, shape)
    except MeshInsightsError as exc:
        found.problems.append(f"{conn.describe()}: {exc}")
        return found
    stamps = (
        combine_ts(sample, shape.ts_columns) if shape.ts_columns else sample.get(shape.ts_column)
    )
    if stamps is not None and len(stamps):
        try:
            parsed = parse_times(stamps, times)
        except MeshInsightsError as exc:
            found.problems.append(f"{conn.describe()}: {exc}")
            return found
        if parsed.ts.isna().all():
            example = stamps.dropna().iloc[0] if stamps.notna().any() else None
            column = shape.time_label if shape.time_column == TS_JOINED else shape.ts_column
            found.problems.append(
                f"{conn.describe()}: no timestamp of the first {len(stamps)} rows parses. "
                + explain_unparsed(example, times, column=column)
            )
        elif parsed.note:
            found.notes.append(f"timestamps are epoch {parsed.note}")
    if shape.machine_column and shape.machine_column not in sample.columns:
        found.problems.append(
            f"{conn.describe()}: no device column {shape.machine_column!r}; columns are "
            f"{list(sample.columns)[:20]} — fix machine_column"
        )
    if source.layout == "wide" and not source.metrics:
        ingested = sorted(set(rows.frame["metric"])) if len(rows.frame) else []
        found.notes.append(
            f"wide file without metrics: would ingest {ingested}"
            + (
                "; skipped " + ", ".join(f"{c} ({why})" for c, why in rows.skipped.items())
                if rows.skipped
                else ""
            )
            + " — list the columns in metrics to be explicit"
        )
    return found
