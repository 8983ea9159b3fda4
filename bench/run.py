"""Run the benchmarks: ``python -m bench.run [--only NAME ...] [--quick]``.

Prints one rich table and writes ``bench/results/latest.json`` (or ``--out``). ``--quick`` uses
small sizes and 3 repetitions (a smoke run, under two minutes); the full run uses the sizes of
the benchmarks issue and at least 5 interleaved repetitions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import REPO, Bench, machine_info

__all__ = ["BENCHMARKS", "main", "run"]

logger = logging.getLogger(__name__)

RESULTS = REPO / "bench" / "results" / "latest.json"


def _overhead(workdir: Path, quick: bool) -> Bench:
    from bench.overhead import bench_overhead

    return bench_overhead(workdir, quick=quick)


def _engine(workdir: Path, quick: bool) -> Bench:
    from bench.engine import bench_engine

    return bench_engine(workdir, quick=quick)


def _partitions(workdir: Path, quick: bool) -> Bench:
    from bench.partitions import bench_partitions

    return bench_partitions(workdir, quick=quick)


def _fleet(workdir: Path, quick: bool) -> Bench:
    from bench.fleet import bench_fleet

    return bench_fleet(workdir, quick=quick)


def _incremental(workdir: Path, quick: bool) -> Bench:
    from bench.incremental import bench_incremental

    return bench_incremental(workdir, quick=quick)


def _orchestration(workdir: Path, quick: bool) -> Bench:
    from bench.orchestration import bench_orchestration

    return bench_orchestration(workdir, quick=quick)


def _scheduler(workdir: Path, quick: bool) -> Bench:
    from bench.scheduler import bench_scheduler

    return bench_scheduler(workdir, quick=quick)


def _maintenance(workdir: Path, quick: bool) -> Bench:
    from bench.maintenance import bench_maintenance

    return bench_maintenance(workdir, quick=quick)


def _detectors(workdir: Path, quick: bool) -> Bench:
    from bench.detectors import bench_detectors

    return bench_detectors(workdir, quick=quick)


def _api(workdir: Path, quick: bool) -> Bench:
    from bench.api import bench_api

    return bench_api(workdir, quick=quick)


def _parsing(workdir: Path, quick: bool) -> Bench:
    from bench.parsing import bench_parsing

    return bench_parsing(workdir, quick=quick)


def _runs(workdir: Path, quick: bool) -> Bench:
    from bench.runs import bench_runs

    return bench_runs(workdir, quick=quick)


def _grain(workdir: Path, quick: bool) -> Bench:
    from bench.grain import bench_grain

    return bench_grain(workdir, quick=quick)


#: Name -> benchmark, in the order of the issue.
BENCHMARKS: dict[str, Callable[[Path, bool], Bench]] = {
    "overhead": _overhead,
    "engine": _engine,
    "partitions": _partitions,
    "fleet": _fleet,
    "incremental": _incremental,
    "orchestration": _orchestration,
    "scheduler": _scheduler,
    "maintenance": _maintenance,
    "detectors": _detectors,
    "api": _api,
    "parsing": _parsing,
    "runs": _runs,
    "grain": _grain,
}


def run(
    names: list[str],
    *,
    quick: bool,
    workdir: Path,
    out: Path | None = None,
    done: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the named benchmarks; a failing one is recorded with its error, the rest still run.

    With ``out``, the report so far is rewritten after every benchmark: a long run shows its
    progress, and an interrupted one keeps what it measured.
    """
    results: dict[str, Any] = dict(done or {})
    meta = {**machine_info(), "quick": quick, "command": _command(names, quick)}
    for name in names:
        if name in results:  # kept from the run being resumed
            continue
        started = time.perf_counter()
        try:
            bench = BENCHMARKS[name](workdir / name, quick)
            bench.seconds = time.perf_counter() - started
            results[name] = bench.as_dict()
        except Exception as exc:  # report and carry on: one broken benchmark is one row
            logger.error("benchmark %s failed: %s", name, exc)
            results[name] = {
                "name": name,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-3000:],
                "seconds": round(time.perf_counter() - started, 2),
            }
        if out is not None:
            _write(out, {"meta": meta, "benchmarks": results})
    return {"meta": meta, "benchmarks": results}


def _resumable(out: Path, *, quick: bool, names: list[str]) -> dict[str, Any]:
    """Benchmarks a previous run in the same mode finished without error."""
    if not out.exists():
        return {}
    previous = json.loads(out.read_text())
    if previous.get("meta", {}).get("quick") != quick:
        return {}
    return {
        name: res
        for name, res in previous.get("benchmarks", {}).items()
        if name in names and "error" not in res
    }


def _write(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))


def _command(names: list[str], quick: bool) -> str:
    only = "" if names == list(BENCHMARKS) else " " + " ".join(f"--only {n}" for n in names)
    return f"python -m bench.run{only}{' --quick' if quick else ''}"


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"MeshInsights benchmarks ({'quick' if report['meta']['quick'] else 'full'})"
    )
    for col in ("benchmark", "figure", "value", "target", "ok"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for name, res in report["benchmarks"].items():
        if "error" in res:
            table.add_row(name, "[red]error[/red]", "", "", res["error"][:80])
            continue
        for i, row in enumerate(res["rows"]):
            ok = {True: "[green]yes[/green]", False: "[red]no[/red]", None: ""}[row["ok"]]
            value = row["value"]
            text = f"{value:,.4g}" if isinstance(value, float) else str(value)
            table.add_row(
                name if i == 0 else "",
                row["metric"],
                f"{text} {row['unit']}".strip(),
                row["target"],
                ok,
            )
        table.add_section()
    Console().print(table)
    for name, res in report["benchmarks"].items():
        for note in res.get("notes", []):
            Console().print(f"[dim]{name}: {note}[/dim]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        help="run only this benchmark (repeatable)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repetitions")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the benchmarks --out already holds (same mode, no error); run the rest",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="scratch folder (default: a temporary folder, removed at the end)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("BENCH_LOG", "WARNING"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    os.environ.pop("OPENAI_API_KEY", None)  # the GenAI step must use the offline analyst here
    names = args.only or list(BENCHMARKS)
    done = _resumable(args.out, quick=args.quick, names=names) if args.resume else {}
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = run(names, quick=args.quick, workdir=args.workdir, out=args.out, done=done)
    else:
        with tempfile.TemporaryDirectory(prefix="meshinsights-bench-") as tmp:
            report = run(names, quick=args.quick, workdir=Path(tmp), out=args.out, done=done)
    _write(args.out, report)
    print_table(report)
    print(f"results: {args.out}")
    return 1 if any("error" in r for r in report["benchmarks"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
