"""Runs in a fresh interpreter: the local runner's cost per machine-day over the grain
benchmark's source (``bench/grain.py``); prints one JSON line."""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--machines", type=int, required=True)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from bench import fixtures
    from meshinsights.demo import machine_ids
    from meshinsights.engine.runner import run_pipeline
    from meshinsights.model import Window
    from meshinsights.store import DeltaStore

    root = Path(args.workdir)
    ids = machine_ids(args.machines)
    configs = fixtures.load(fixtures.write_configs(root / "configs-local", args.pipeline, ids))
    store = DeltaStore(str(root / "store-local"))
    url = f"sqlite:///{args.db}"
    day0 = datetime(2024, 1, 1, tzinfo=UTC)
    for mid in ids:  # day 0: the watermark and the tables exist, as in the Airflow runs
        run_pipeline(
            configs, mid, Window(day0, day0 + timedelta(days=1)), store, resolver=lambda _c: url
        )
    day1 = day0 + timedelta(days=1)
    t = time.perf_counter()
    for mid in ids:
        run_pipeline(
            configs, mid, Window(day1, day1 + timedelta(days=1)), store, resolver=lambda _c: url
        )
    wall = time.perf_counter() - t
    print(
        json.dumps({"machines": len(ids), "wall": wall, "seconds_per_machine_day": wall / len(ids)})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
