"""Run a pipeline's registered steps in order on in-memory tables, as the runner would.

Each step's pure function gets its inputs (absent optional ones as empty frames), its config
params, ``window`` and ``machine_id``; its output then goes through the store's own write-side
checks (schema cast, key columns, machine and window scope) without a Delta commit, and comes
back as Arrow → pandas, the way the next step would read it from the table.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from meshinsights.config import load_configs
from meshinsights.engine.plan import PlannedStep, plan
from meshinsights.model import Window
from meshinsights.store.frames import check_in_scope, prepare
from tests.conftest import CONFIGS

#: Steps with side effects beyond their table (a sink to an alert database).
SKIP = {"update_thresholds"}


def planned_steps(pipeline: str) -> list[PlannedStep]:
    """The repo pipeline's steps, resolved (params from its YAML)."""
    configs = load_configs(CONFIGS)
    return [s for s in plan(configs.pipelines[pipeline]) if s.id not in SKIP]


def as_stored(frame: pd.DataFrame, schema: Any, table: str, machine_id: str,
              window: Window) -> pd.DataFrame:
    """``frame`` after the store's write checks, as a reader of the table would get it back."""
    arrow = prepare(frame, table=table, schema=schema, evolve=False)
    check_in_scope(arrow, [machine_id], window, table)
    return arrow.to_pandas().drop(columns="month")


def run_chain(steps: list[PlannedStep], tables: dict[str, pd.DataFrame], *, machine_id: str,
              window: Window) -> dict[str, pd.DataFrame]:
    """Every step in order; returns all tables (inputs included). Exceptions propagate."""
    tables = dict(tables)
    for s in steps:
        frames = {}
        for arg, table in s.inputs.items():
            if table in tables:
                frames[arg] = tables[table]
            elif arg in s.spec.optional:
                frames[arg] = pd.DataFrame(columns=["machine_id", "ts"])
            else:
                raise AssertionError(f"{s.id}: input {table} missing from the chain")
        extra = {k: v for k, v in (("window", window), ("machine_id", machine_id))
                 if k in s.spec.wants}
        out = s.spec.func(**frames, **s.params, **extra)
        assert isinstance(out, pd.DataFrame), f"{s.id} returned {type(out).__name__}"
        out = out.copy()
        out["machine_id"] = machine_id
        tables[s.output] = as_stored(out, s.spec.schema, s.output, machine_id, window)
    return tables
