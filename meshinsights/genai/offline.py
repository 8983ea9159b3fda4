"""The offline analyst: deterministic rules over the same tables, used when no model is configured.

It produces the same structured :class:`Analysis` as a language model would, from the same
curated tables, and says plainly in its summary that it is a rule-based summary. It is also
the fallback when the configured provider fails, so the pipeline always has an analysis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta

import pandas as pd

from meshinsights.genai.models import Action, Analysis, Finding, max_severity, normalize_severity
from meshinsights.genai.prompt import is_absent
from meshinsights.genai.rows import clean_text, rank_rows
from meshinsights.model import Window

__all__ = ["OFFLINE_MODEL", "DISCLAIMER", "analyze"]

logger = logging.getLogger(__name__)

#: Recorded as the model of offline rows; bump it when the rules change (it keys the cache).
OFFLINE_MODEL = "offline-rules/1"
DISCLAIMER = "Rule-based summary by the offline analyst (not a language model)."

Rules = tuple[list[Finding], list[Action]]
_ACTIONS = (  # keyword in an issue's name → what an engineer does about it
    ("short", "Check compressor staging, minimum run time and thermostat deadband"),
    ("cycl", "Check compressor staging, minimum run time and thermostat deadband"),
    ("stuck", "Inspect the sensor and its wiring; replace it if the reading stays constant"),
    ("flat", "Inspect the sensor and its wiring; replace it if the reading stays constant"),
    ("drift", "Recalibrate the sensor against a reference instrument"),
    ("range", "Check the sensor and the validation limits for this metric"),
    ("missing", "Check the device's connectivity and the data feed"),
    ("gap", "Check the device's connectivity and the data feed"),
)


def _num(value: object) -> float | None:
    out = pd.to_numeric(value, errors="coerce")
    return None if pd.isna(out) else float(out)


def _fmt(value: object) -> str:
    num = _num(value)
    return "n/a" if num is None else f"{num:.4g}"


def _metric_rules(rec: dict[str, object], metric: str, unit: str, count: int) -> Rules:
    """No samples, or a flat line (a stuck sensor), for one metric's summary row."""
    if count == 0:
        return [
            Finding(
                title=f"No valid samples for {metric}",
                severity="medium",
                detail=f"{metric} has no valid values in this window.",
                evidence=["summary", metric],
            )
        ], [
            Action(
                action="Check the device's connectivity and the data feed",
                priority="soon",
                reason=f"no samples for {metric}",
            )
        ]
    std, lo, hi = _num(rec.get("std")), _num(rec.get("min")), _num(rec.get("max"))
    if count < 10 or not (std == 0 or (lo is not None and lo == hi)):
        return [], []
    return [
        Finding(
            title=f"{metric} is flat (possible stuck sensor)",
            severity="high",
            detail=f"All {count} samples of {metric} equal {_fmt(lo)}{unit}.",
            evidence=["summary", metric],
        )
    ], [
        Action(
            action=f"Inspect the {metric} sensor and its wiring",
            priority="soon",
            reason=f"{metric} reads a constant value",
        )
    ]


def _summary_rules(frame: pd.DataFrame, window: Window | None) -> Rules:
    findings: list[Finding] = []
    actions: list[Action] = []
    overview = []
    for rec in frame.to_dict("records"):
        metric = clean_text(rec.get("metric", "?"), 60)
        unit = f" {clean_text(rec['unit'], 20)}" if isinstance(rec.get("unit"), str) else ""
        count = int(_num(rec.get("count")) or 0)
        overview.append(
            f"{metric}: mean {_fmt(rec.get('mean'))}{unit} (min "
            f"{_fmt(rec.get('min'))}, max {_fmt(rec.get('max'))}, n={count})"
        )
        f, a = _metric_rules(rec, metric, unit, count)
        findings += f + (_coverage(rec, metric, window) if count else [])
        actions += a
    if overview:
        findings.append(
            Finding(
                title="Window overview",
                severity="info",
                detail="; ".join(overview) + ".",
                evidence=["summary"],
            )
        )
    return findings, actions


def _coverage(rec: dict[str, object], metric: str, window: Window | None) -> list[Finding]:
    first, last = rec.get("first_ts"), rec.get("last_ts")
    if window is None or not isinstance(first, pd.Timestamp) or not isinstance(last, pd.Timestamp):
        return []
    length = window.end - window.start
    missing = (first - pd.Timestamp(window.start)) + (pd.Timestamp(window.end) - last)
    if missing <= max(length / 4, timedelta(minutes=5)):
        return []
    return [
        Finding(
            title=f"{metric} covers only part of the window",
            severity="medium",
            detail=f"{metric} data runs from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC; "
            f"about {missing / length:.0%} of the window has no data.",
            evidence=["summary", metric],
        )
    ]


def _issue_rules(frame: pd.DataFrame, window: Window | None) -> Rules:
    name_col = next(
        (c for c in ("issue", "check", "kind", "type", "name", "code") if c in frame.columns), None
    )
    detail_col = next(
        (
            c
            for c in ("message", "detail", "evidence", "reason", "description")
            if c in frame.columns
        ),
        None,
    )
    findings, actions = [], []
    ranked = rank_rows("issues", frame)
    for rec in ranked.head(10).to_dict("records"):
        issue = clean_text(rec.get(name_col, "issue") if name_col else "issue", 60)
        metric = clean_text(rec["metric"], 60) if isinstance(rec.get("metric"), str) else None
        severity = normalize_severity(rec.get("severity"), "medium")
        title = f"{issue} on {metric}" if metric else issue
        raw = rec.get(detail_col) if detail_col else None
        detail = clean_text(raw, 300) if raw else title
        findings.append(
            Finding(
                title=title,
                severity=severity,
                detail=detail,  # type: ignore[arg-type]
                evidence=["issues"] + ([metric] if metric else []),
            )
        )
        todo = next((a for k, a in _ACTIONS if k in issue.lower()), f"Investigate {issue}")
        actions.append(
            Action(
                action=todo,
                priority="now" if severity in ("high", "critical") else "soon",
                reason=title,
            )
        )
    if len(ranked) > 10:
        findings.append(
            Finding(
                title=f"{len(ranked) - 10} more issues",
                severity="info",
                detail="See the issues table for the full list.",
                evidence=["issues"],
            )
        )
    return findings, actions


def _variance_rules(frame: pd.DataFrame, window: Window | None) -> Rules:
    col = next((c for c in frame.columns if "class" in str(c).lower()), None)
    if col is None or frame.empty:
        return [], []
    classes = {str(v).lower() for v in frame[col].dropna()}
    worst = next((c for c in ("high", "medium", "low") if c in classes), "unknown")
    cv_col = next((c for c in frame.columns if str(c).lower() == "cv"), None)
    cv = f" (coefficient of variation {_fmt(frame[cv_col].max())})" if cv_col else ""
    if worst in ("low", "unknown"):
        detail = (
            f"Power variance is classed low{cv}; thresholds can be updated."
            if worst == "low"
            else "Power variance could not be classified (too few valid cycles)."
        )
        return [
            Finding(
                title=f"Power variance is {worst}",
                severity="info",
                detail=detail,
                evidence=["variance"],
            )
        ], []
    finding = Finding(
        title=f"Power variance is {worst}",
        severity=worst,
        detail=f"Power variance is classed {worst}{cv}; cycle power is inconsistent.",
        evidence=["variance"],
    )
    action = Action(
        action="Review compressor behaviour before updating alarm thresholds",
        priority="soon",
        reason=f"power variance is {worst}",
    )
    return [finding], [action]


def _anomaly_rules(frame: pd.DataFrame, window: Window | None) -> Rules:
    flagged = rank_rows("anomalies", frame)
    if flagged.empty:
        return [], []
    share = len(flagged) / max(len(frame), 1)
    by_metric = ""
    if "metric" in flagged.columns:
        counts = flagged["metric"].astype(str).value_counts().head(5)
        by_metric = " (" + ", ".join(f"{clean_text(m, 40)}: {n}" for m, n in counts.items()) + ")"
    severity = "high" if share >= 0.05 and len(flagged) < len(frame) else "medium"
    return (
        [
            Finding(
                title=f"{len(flagged)} anomalous points",
                severity=severity,
                detail=f"{len(flagged)} of {len(frame)} scored rows are flagged{by_metric}.",
                evidence=["anomalies"],
            )
        ],
        [
            Action(
                action="Review the flagged periods in the dashboard against operating logs",
                priority="soon",
                reason="anomalies flagged",
            )
        ],
    )


def _event_rules(frame: pd.DataFrame, window: Window | None) -> Rules:
    if "kind" not in frame.columns:
        return [], []
    alarms = frame[frame["kind"].astype(str).str.lower() == "alarm"]
    if alarms.empty:
        return [], []
    severity = max_severity(
        [
            normalize_severity(s, "medium")
            for s in alarms.get("severity", pd.Series(["medium"] * len(alarms)))
        ],
        "medium",
    )
    codes = ""
    if "code" in alarms.columns:
        top = alarms["code"].dropna().astype(str).value_counts().head(3)
        codes = "; top codes: " + ", ".join(f"{clean_text(c, 40)} ×{n}" for c, n in top.items())
    return (
        [
            Finding(
                title=f"{len(alarms)} alarms raised",
                severity=severity,  # type: ignore[arg-type]
                detail=f"{len(alarms)} alarm records in this window{codes}.",
                evidence=["events"],
            )
        ],
        [
            Action(
                action="Investigate the most frequent alarm codes",
                priority="soon",
                reason="alarms raised",
            )
        ],
    )


def _threshold_rules(frame: pd.DataFrame, window: Window | None) -> Rules:
    if frame.empty:
        return [], []
    return [
        Finding(
            title="Alarm thresholds computed",
            severity="info",
            detail=f"{len(frame)} threshold rows are available for this window.",
            evidence=["thresholds"],
        )
    ], []


def _forecast_rules(frame: pd.DataFrame, window: Window | None) -> Rules:
    col = next(
        (
            c
            for c in frame.columns
            if any(k in str(c).lower() for k in ("mae", "rmse", "mape", "error"))
        ),
        None,
    )
    if col is None or frame.empty:
        return [], []
    worst = pd.to_numeric(frame[col], errors="coerce").abs().max()
    return [
        Finding(
            title="Forecast available",
            severity="info",
            detail=f"{len(frame)} forecast rows; largest backtest |{col}| {_fmt(worst)}.",
            evidence=["forecasts"],
        )
    ], []


_RULES: dict[str, Callable[[pd.DataFrame, Window | None], Rules]] = {
    "summary": _summary_rules,
    "issues": _issue_rules,
    "variance": _variance_rules,
    "anomalies": _anomaly_rules,
    "events": _event_rules,
    "thresholds": _threshold_rules,
    "forecasts": _forecast_rules,
}


def analyze(tables: Mapping[str, pd.DataFrame | None], *, window: Window | None = None) -> Analysis:
    """The rule-based analysis of a window's tables (deterministic: same tables, same answer)."""
    findings: list[Finding] = []
    actions: list[Action] = []
    for name, rule in _RULES.items():
        frame = tables.get(name)
        if is_absent(frame):
            continue
        assert frame is not None
        f, a = rule(frame, window)
        findings += f
        actions += a
    ranks = ("critical", "high", "medium", "low", "info")
    findings.sort(key=lambda f: ranks.index(f.severity))
    unique: list[Action] = []
    for act in actions:
        if all(act.action != u.action for u in unique):
            unique.append(act)
    unique.sort(key=lambda a: ("now", "soon", "later").index(a.priority))
    notable = [f for f in findings if f.severity != "info"]
    overall = max_severity([f.severity for f in findings])
    if notable:
        tops = "; ".join(f.title for f in notable[:3])
        text = f"{DISCLAIMER} {len(notable)} notable finding(s), most severe {overall}: {tops}."
    else:
        text = f"{DISCLAIMER} Nothing notable in this window's tables."
    return Analysis(
        summary=text,
        overall_severity=overall,
        findings=findings,  # type: ignore[arg-type]
        recommended_actions=unique,
    )
