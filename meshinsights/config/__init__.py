"""Config schema and loader: pipeline templates and per-machine files, validated by pydantic.

``configs/pipelines/<name>.yaml`` is a template (ordered steps, params, branch rules,
validation rules); ``configs/machines/<machine>.yaml`` is one machine (source, schedule,
overrides). ``configs/machines/_defaults.yaml``, if present, is deep-merged under every
machine. Every problem is reported with the file, the field, the bad value and the fix;
one bad file never hides the others.
"""

from __future__ import annotations

from meshinsights.config.loading import (
    LoadedConfigs,
    load_configs,
    load_group_configs,
    load_machine,
    load_machine_configs,
    load_pipeline,
    machine_of_dag,
)
from meshinsights.config.machines import (
    ADXSource,
    FileSource,
    MachineConfig,
    SourceOptions,
    SQLSource,
    source_model,
)
from meshinsights.config.pipelines import (
    Condition,
    EventRules,
    MetricRule,
    PipelineConfig,
    SinkConfig,
    StepConfig,
    When,
)

__all__ = [
    "Condition",
    "When",
    "MetricRule",
    "EventRules",
    "SinkConfig",
    "StepConfig",
    "PipelineConfig",
    "SQLSource",
    "ADXSource",
    "FileSource",
    "SourceOptions",
    "source_model",
    "MachineConfig",
    "LoadedConfigs",
    "load_configs",
    "load_machine_configs",
    "machine_of_dag",
    "load_group_configs",
    "load_pipeline",
    "load_machine",
]
