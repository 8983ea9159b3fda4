"""Evaluation of the anomaly detectors on labelled experiments (issue 24).

Protocol (that of the public multivariate benchmark the issue names): every detector is fitted
on the first ``reference_rows`` = 400 rows of each experiment and scores the rest; the
confusion matrix is pooled over all experiments and reported as
F1 = TP / (TP + (FN + FP)/2), FAR = FP / (FP + TN) and MAR = FN / (FN + TP). The reference rows
are never counted.

Input: a folder of CSVs, one experiment per file, with

- a time column (``datetime``, ``timestamp``, ``time`` or ``ts``; optional — rows are taken in
  file order and placed on a 1-row-per-second grid, so duplicate or irregular stamps lose
  nothing);
- a 0/1 label column (``anomaly`` unless ``--label`` says otherwise);
- numeric sensor columns (all other numeric columns; ``changepoint`` is ignored).

The separator (``,`` or ``;``) is detected. Files without the label column or with no more
than 400 rows are skipped and listed; a non-0/1 label is an error. Run on any folder:
``python -m bench.detectors FOLDER [--label anomaly]``; ``python -m bench.run --only detectors``
runs the synthetic testbed and the NAB files.

Parameters are fixed in :data:`RULE` before any scoring and are the same for every data set
(no labels are read to choose them); see ANALYTICS.md.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.harness import Bench
from meshinsights.model import Window

__all__ = [
    "RULE",
    "DETECTORS",
    "Experiment",
    "read_experiment",
    "read_folder",
    "nab_experiments",
    "pooled",
    "evaluate",
    "bench_detectors",
]

logger = logging.getLogger(__name__)

REFERENCE_ROWS = 400
TIME_COLUMNS = ("datetime", "timestamp", "time", "ts")
IGNORED = ("changepoint",)
T0 = pd.Timestamp("2000-01-01", tz="UTC")
NAB_FILES = ("machine_temperature_system_failure.csv", "ambient_temperature_system_failure.csv")

#: The parameter rule, written down before scoring: one level per statistic (1 %), an EWMA
#: with λ = 0.1 (a memory of about 2/λ − 1 = 19 rows), a 3-of-5 persistence rule, 5-fold
#: contiguous calibration, PCA keeping 90 % of the variance, kNN with 5 neighbours.
RULE: dict[str, Any] = {
    "alpha": 0.01,
    "smoothing": 0.1,
    "persist_k": 3,
    "persist_n": 5,
    "calibration_folds": 5,
    "variance_kept": 0.9,
    "n_neighbors": 5,
}


class MissingLabel(ValueError):
    """A CSV without the label column (e.g. an anomaly-free recording beside the runs)."""


@dataclass
class Experiment:
    """One labelled run: long ``clean`` rows (ts, metric, value) and the label per row."""

    name: str
    clean: pd.DataFrame
    labels: np.ndarray

    @property
    def window(self) -> Window:
        return Window(T0, T0 + pd.Timedelta(seconds=len(self.labels)))


def _long(values: pd.DataFrame) -> pd.DataFrame:
    ts = T0 + pd.to_timedelta(np.arange(len(values)), unit="s")
    wide = values.set_axis(pd.DatetimeIndex(ts, name="ts").astype("datetime64[us, UTC]"))
    # a sensor may itself be called "value" (NAB): melt under a name no column has
    long = wide.reset_index().melt(id_vars="ts", var_name="metric", value_name="__reading__")
    return long.rename(columns={"__reading__": "value"}).assign(filled=False)


def read_experiment(path: Path, *, label: str = "anomaly") -> Experiment:
    """One CSV as an :class:`Experiment`; a missing or non-0/1 label is a clear error."""
    frame = pd.read_csv(path, sep=None, engine="python")
    if label not in frame.columns:
        raise MissingLabel(
            f"{path}: no label column {label!r} (columns: {list(frame.columns)}); "
            "name the 0/1 column with --label"
        )
    y = pd.to_numeric(frame[label], errors="coerce")
    if y.isna().any() or not y.isin([0, 1]).all():
        raise ValueError(f"{path}: label column {label!r} must hold only 0 and 1")
    drop = [label, *IGNORED, *(c for c in frame.columns if c.lower() in TIME_COLUMNS)]
    sensors = frame.drop(columns=[c for c in drop if c in frame.columns])
    sensors = sensors.select_dtypes("number")
    if sensors.empty:
        raise ValueError(f"{path}: no numeric sensor columns besides {label!r}")
    return Experiment(path.stem, _long(sensors.astype("float64")), y.to_numpy(dtype=int))


def read_folder(folder: Path, *, label: str = "anomaly") -> tuple[list[Experiment], list[str]]:
    """Every ``*.csv`` under ``folder`` (sorted); unlabelled or too-short files are skipped and
    listed (an anomaly-free recording often sits beside the runs); none usable is an error."""
    paths = sorted(folder.rglob("*.csv"))
    if not paths:
        raise ValueError(f"{folder}: no .csv files found")
    experiments, skipped = [], []
    for path in paths:
        try:
            exp = read_experiment(path, label=label)
        except MissingLabel:
            skipped.append(f"{path.name}: no label column {label!r}")
            continue
        if len(exp.labels) <= REFERENCE_ROWS:
            skipped.append(f"{path.name}: {len(exp.labels)} rows, not more than {REFERENCE_ROWS}")
            continue
        experiments.append(exp)
    if not experiments:
        raise ValueError(f"{folder}: no usable labelled CSV ({'; '.join(skipped)})")
    return experiments, skipped


def nab_experiments(folder: Path) -> list[Experiment]:
    """The NAB files in ``folder`` labelled 1 inside their ``combined_windows.json`` windows."""
    windows = json.loads((folder / "combined_windows.json").read_text())
    out = []
    for name in NAB_FILES:
        frame = pd.read_csv(folder / name)
        ts = pd.to_datetime(frame["timestamp"])
        y = np.zeros(len(frame), dtype=int)
        for lo, hi in windows[f"realKnownCause/{name}"]:
            y[((ts >= pd.Timestamp(lo)) & (ts <= pd.Timestamp(hi))).to_numpy()] = 1
        out.append(Experiment(Path(name).stem, _long(frame[["value"]].astype("float64")), y))
    return out


def _steps() -> tuple[Callable[..., pd.DataFrame], ...]:
    from meshinsights.steps.anomaly import pca_anomaly
    from meshinsights.steps.nonparametric import knn_anomaly, vote_anomaly

    return pca_anomaly, knn_anomaly, vote_anomaly


def _pca(exp: Experiment, **params: Any) -> pd.DataFrame:
    pca_anomaly, _, _ = _steps()
    return pca_anomaly(exp.clean, reference_rows=REFERENCE_ROWS, window=exp.window, **params)


def _knn(exp: Experiment, **params: Any) -> pd.DataFrame:
    _, knn_anomaly, _ = _steps()
    return knn_anomaly(exp.clean, reference_rows=REFERENCE_ROWS, window=exp.window, **params)


def _smoothed() -> dict[str, Any]:
    return {k: RULE[k] for k in ("alpha", "smoothing", "persist_k", "persist_n")}


def _vote(min_votes: int) -> Callable[[Experiment], pd.DataFrame]:
    def run(exp: Experiment) -> pd.DataFrame:
        _, _, vote_anomaly = _steps()
        pca = _pca(exp, limits="crossval", variance_kept=RULE["variance_kept"],
                   calibration_folds=RULE["calibration_folds"], **_smoothed())
        knn = _knn(
            exp,
            n_neighbors=RULE["n_neighbors"],
            calibration_folds=RULE["calibration_folds"],
            **_smoothed(),
        )
        return vote_anomaly(pca, knn, min_votes=min_votes, window=exp.window)

    return run


#: Detector name -> function of an experiment returning the step's rows (ts, flagged, ...).
DETECTORS: dict[str, Callable[[Experiment], pd.DataFrame]] = {
    "flag everything": lambda exp: pd.DataFrame({"ts": _ts(exp), "flagged": True}),
    "PCA quantile (old step)": lambda exp: _pca(
        exp, limits="quantile", alpha=RULE["alpha"], variance_kept=RULE["variance_kept"]
    ),
    "PCA F / J-M limits": lambda exp: _pca(
        exp, limits="statistical", alpha=RULE["alpha"], variance_kept=RULE["variance_kept"]
    ),
    "PCA F / J-M + EWMA + 3 of 5": lambda exp: _pca(
        exp, limits="statistical", variance_kept=RULE["variance_kept"], **_smoothed()
    ),
    "PCA crossval + EWMA + 3 of 5": lambda exp: _pca(
        exp,
        limits="crossval",
        variance_kept=RULE["variance_kept"],
        calibration_folds=RULE["calibration_folds"],
        **_smoothed(),
    ),
    "kNN conformal + EWMA + 3 of 5": lambda exp: _knn(
        exp,
        n_neighbors=RULE["n_neighbors"],
        calibration_folds=RULE["calibration_folds"],
        **_smoothed(),
    ),
    "vote: PCA or kNN": _vote(1),
    "vote: PCA and kNN": _vote(2),
}


def _ts(exp: Experiment) -> pd.DatetimeIndex:
    return T0 + pd.to_timedelta(np.arange(len(exp.labels)), unit="s")


def _flags(exp: Experiment, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Flags per row of the experiment and which rows were scored at all.

    A row the detector did not return, or returned without a score (a missing sensor value),
    counts as unflagged — and is counted as unscored, so the loss shows.
    """
    n = len(exp.labels)
    pos = ((pd.to_datetime(rows["ts"], utc=True) - T0) / pd.Timedelta(seconds=1)).to_numpy()
    pos = pos.astype(int)
    flags, scored = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    flags[pos] = rows["flagged"].to_numpy(dtype=bool)
    has_score = rows["score"].notna().to_numpy() if "score" in rows else np.ones(len(rows), bool)
    scored[pos] = has_score
    return flags, scored


def pooled(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """F1 = TP / (TP + (FN + FP)/2), FAR = FP / (FP + TN), MAR = FN / (FN + TP)."""
    return {
        "f1": tp / (tp + (fn + fp) / 2) if tp + fn + fp else float("nan"),
        "far": fp / (fp + tn) if fp + tn else float("nan"),
        "mar": fn / (fn + tp) if fn + tp else float("nan"),
    }


def evaluate(
    experiments: list[Experiment], detectors: dict[str, Callable[[Experiment], pd.DataFrame]]
) -> dict[str, dict[str, float]]:
    """Pooled F1/FAR/MAR (and the confusion counts) per detector over rows after the reference."""
    out = {}
    for name, detect in detectors.items():
        tp = fp = fn = tn = unscored = 0
        for exp in experiments:
            y = exp.labels[REFERENCE_ROWS:].astype(bool)
            flags, scored = _flags(exp, detect(exp))
            f = flags[REFERENCE_ROWS:]
            tp += int(np.sum(f & y))
            fp += int(np.sum(f & ~y))
            fn += int(np.sum(~f & y))
            tn += int(np.sum(~f & ~y))
            unscored += int(np.sum(~scored[REFERENCE_ROWS:]))
        out[name] = {**pooled(tp, fp, fn, tn), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                     "unscored": unscored}
    return out


#: The detectors broken down per fault type of the testbed.
BY_FAULT = ("PCA crossval + EWMA + 3 of 5", "kNN conformal + EWMA + 3 of 5", "vote: PCA or kNN")


def by_group(
    experiments: list[Experiment], names: tuple[str, ...]
) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`evaluate` per group of experiments (the file name before its last ``_``)."""
    groups: dict[str, list[Experiment]] = {}
    for exp in experiments:
        groups.setdefault(exp.name.rsplit("_", 1)[0], []).append(exp)
    return {g: evaluate(exps, {n: DETECTORS[n] for n in names}) for g, exps in groups.items()}


def markdown(results: dict[str, dict[str, float]]) -> str:
    """The results as a markdown table (FAR and MAR in percent of rows; unscored rows count
    as not flagged)."""
    lines = ["| detector | F1 | FAR | MAR | unscored rows |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['f1']:.3f} | {r['far']:.1%} | {r['mar']:.1%} | {r['unscored']} |"
        )
    return "\n".join(lines)


def bench_detectors(workdir: Path, *, quick: bool) -> Bench:
    """Two synthetic testbeds (30 experiments each; 10 with --quick) and the two NAB files."""
    from bench.testbed import write_testbed

    bench = Bench(
        "detectors",
        "Anomaly detectors: pooled F1/FAR/MAR, fit on the first 400 rows",
        params={"rule": RULE, "reference_rows": REFERENCE_ROWS},
    )
    per_fault = 2 if quick else 6
    # seed 24 is the one the detectors were developed on; seed 25 was only ever scored
    write_testbed(workdir / "testbed", per_fault=per_fault, seed=24)
    write_testbed(workdir / "testbed_25", per_fault=per_fault, seed=25)
    sets: dict[str, list[Experiment]] = {
        "synthetic": read_folder(workdir / "testbed")[0],
        "synthetic seed 25": read_folder(workdir / "testbed_25")[0],
    }
    nab = Path("/work/shared/data/nab")
    if (nab / "combined_windows.json").exists():
        sets["NAB"] = nab_experiments(nab)
    else:
        bench.notes.append(f"NAB files not found under {nab}: NAB rows skipped")
    for set_name, experiments in sets.items():
        results = evaluate(experiments, DETECTORS)
        bench.samples[set_name] = results
        if set_name.startswith("synthetic"):
            bench.samples[f"{set_name} by fault"] = by_group(experiments, BY_FAULT)
        for name, r in results.items():
            bench.add(f"{set_name}: {name} F1", r["f1"], target="≥ 0.80")
            bench.add(f"{set_name}: {name} FAR", r["far"], target="≤ 0.30")
            bench.add(f"{set_name}: {name} MAR", r["mar"])
    return bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.detectors",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="folder of labelled CSVs (searched recursively)")
    parser.add_argument("--label", default="anomaly", help="name of the 0/1 label column")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        experiments, skipped = read_folder(args.folder, label=args.label)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    for s in skipped:
        print(f"skipped {s}")
    print(f"{len(experiments)} experiments, rule {RULE}")
    results = evaluate(experiments, DETECTORS)
    print(markdown(results))
    if args.json is not None:
        report = {"rule": RULE, "experiments": len(experiments), "skipped": skipped,
                  "results": results}
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
