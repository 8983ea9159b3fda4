"""Resolve a pipeline template (+ a machine's overrides) into ordered, wired steps.

Light on purpose: the DAG factory calls this while Airflow parses DAG files, so it must not
import the store (deltalake) or any I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
from dataclasses import dataclass
from typing import Any

from meshinsights.config import MachineConfig, PipelineConfig, When
from meshinsights.model import SOURCE_TABLES, Window
from meshinsights.steps.registry import StepSpec, get_step

__all__ = ["PlannedStep", "plan", "code_version", "SOURCE_TABLES", "INGEST"]

#: The source node every plan starts from: the ingest task, which writes SOURCE_TABLES.
INGEST = "ingest"


def code_version(func: Any) -> str:
    """A hash of the function's source (its qualified name if the source is unavailable)."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        source = f"{func.__module__}.{func.__qualname__}"
    return hashlib.sha256(source.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PlannedStep:
    """A pipeline step resolved against the registry: what to read, call and write."""

    id: str
    spec: StepSpec
    params: dict[str, Any]
    inputs: dict[str, str]  # function argument -> table
    output: str
    when: When | None
    lookback: str | None = None
    sink: dict[str, Any] | None = None
    evolve: bool = False
    #: The steps (or INGEST) that write the tables this step reads: its edges in the one plan.
    upstream: tuple[str, ...] = ()

    @functools.cached_property
    def fingerprint(self) -> str:
        """What made this step's output: its merged params, code, inputs and output schema.

        Recorded in every commit of the step, so partitions made by an older definition (or an
        older version of the function) can be listed and recomputed (``meshinsights status``).
        """
        blob = json.dumps(
            {
                "step": self.spec.name,
                "code": code_version(self.spec.func),
                "params": self.params,
                "inputs": self.inputs,
                "output": self.output,
                "lookback": self.lookback,
                "schema": None if self.spec.schema is None else str(self.spec.schema),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def tables_read(self) -> set[str]:
        """Tables this step depends on (its own output, read as a cache, excluded)."""
        tables = set(self.inputs.values()) | (self.when.tables() if self.when else set())
        return tables - {self.output}

    def read_window(self, window: Window) -> Window:
        """The window inputs are read over: the run window, widened back by ``lookback``."""
        if not self.lookback:
            return window
        import pandas as pd

        start = min(window.start, window.end - pd.Timedelta(self.lookback).to_pytimedelta())
        return Window(start, window.end, window.run)


def plan(pipeline: PipelineConfig, machine: MachineConfig | None = None) -> list[PlannedStep]:
    """Resolve a pipeline's steps (and a machine's overrides) in execution order.

    The one plan: the order is the pipeline's (config loading refuses a step that reads a table
    no earlier step writes, so it is topological), and each step's ``upstream`` names the
    steps — or :data:`INGEST` — writing what it reads. The local runner follows the order;
    the DAG factory draws the edges; ``meshinsights status`` and the dashboard walk the same
    list.
    """
    planned: list[PlannedStep] = []
    producers = dict.fromkeys(SOURCE_TABLES, INGEST)
    for s in pipeline.steps:
        spec = get_step(s.step_name)
        params = machine.params_for(s) if machine else dict(s.params)
        step = PlannedStep(
            id=s.id,
            spec=spec,
            params=spec.bind_params(params),
            inputs={arg: s.inputs.get(arg, arg) for arg in spec.inputs},
            output=s.output or spec.output,
            when=s.when,
            lookback=s.lookback,
            sink=s.sink.model_dump() if s.sink else None,
            evolve=s.evolve,
        )
        # A table read that nobody wrote yet (an optional input) has no edge.
        edges = sorted({producers[t] for t in step.tables_read if t in producers} - {s.id})
        planned.append(dataclasses.replace(step, upstream=tuple(edges)))
        producers[step.output] = s.id
    return planned
