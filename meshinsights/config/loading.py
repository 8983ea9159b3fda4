"""Loading a config folder: YAML read, defaults merged, every bad file reported with its fix."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from meshinsights.config.machines import MachineConfig
from meshinsights.config.pipelines import PipelineConfig
from meshinsights.errors import ConfigError

__all__ = ["LoadedConfigs", "load_configs", "load_pipeline", "load_machine"]


@dataclass
class LoadedConfigs:
    """What a config folder holds: valid pipelines and machines, and one error per bad file."""

    root: Path
    pipelines: dict[str, PipelineConfig] = field(default_factory=dict)
    machines: dict[str, MachineConfig] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def machine(self, machine_id: str) -> MachineConfig:
        if machine_id in self.machines:
            return self.machines[machine_id]
        if any(machine_id in msg for msg in self.errors.values()):
            bad = "; ".join(self.errors.values())
            raise ConfigError(f"machine {machine_id!r} has an invalid config: {bad}")
        close = difflib.get_close_matches(machine_id, self.machines, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"no machine {machine_id!r} in {self.root / 'machines'}.{hint} "
            f"Known: {', '.join(sorted(self.machines)) or 'none'}"
        )

    def pipeline_of(self, machine: MachineConfig) -> PipelineConfig:
        return self.pipelines[machine.pipeline]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def _explain(path: Path, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        value = err.get("input")
        hint = ""
        if err["type"] == "extra_forbidden":
            hint = " — remove it or check its spelling"
        elif err["type"] == "missing":
            hint = " — add it"
        shown = "" if err["type"] == "missing" else f" (got {value!r:.80})"
        parts.append(f"field {loc}: {msg}{shown}{hint}")
    return f"{path}: " + "; ".join(parts)


def load_pipeline(path: Path) -> PipelineConfig:
    """Parse one pipeline template; raises ConfigError naming the file and field."""
    try:
        cfg = PipelineConfig.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(_explain(path, exc)) from None
    if cfg.name != path.stem:
        raise ConfigError(
            f"{path}: field name: {cfg.name!r} must match the file name {path.stem!r}"
        )
    return cfg


def load_machine(path: Path, defaults: dict[str, Any] | None = None) -> MachineConfig:
    """Parse one machine file (merged over ``_defaults.yaml``); raises ConfigError."""
    raw = _deep_merge(defaults or {}, _read_yaml(path))
    try:
        return MachineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(path, exc)) from None


def _check_steps(path: Path, pipeline: PipelineConfig) -> None:
    # Imported here: validating step names loads the step library (pandas), which the
    # lightweight config schema itself does not need.
    from meshinsights.steps.registry import get_step

    produced = {"telemetry", "events", "quarantine"}
    for s in pipeline.steps:
        try:
            spec = get_step(s.step_name)
            spec.bind_params(s.params)
        except Exception as exc:  # StepError: unknown step or parameter
            raise ConfigError(f"{path}: field steps.{s.id}: {exc}") from None
        for arg in spec.inputs:
            table = s.inputs.get(arg, arg)
            if table not in produced and arg not in spec.optional:
                raise ConfigError(
                    f"{path}: field steps.{s.id}: input table {table!r} is produced by no earlier "
                    f"step; available: {sorted(produced)} — reorder the steps or map the input"
                )
        if s.when is not None:
            unknown = s.when.tables() - produced
            if unknown:
                raise ConfigError(
                    f"{path}: field steps.{s.id}.when: table(s) {sorted(unknown)} are produced by "
                    "no earlier step"
                )
        produced.add(s.output or spec.output)


def load_configs(root: Path | str, *, check_steps: bool = True) -> LoadedConfigs:
    """Load every pipeline and machine under ``root``; collect one error per bad file."""
    root = Path(root)
    out = LoadedConfigs(root=root)
    if not root.is_dir():
        out.errors[str(root)] = (
            f"{root}: config folder not found; set MESHINSIGHTS_CONFIGS or --configs"
        )
        return out
    for path in sorted((root / "pipelines").glob("*.yaml")):
        try:
            pipeline = load_pipeline(path)
            if check_steps:
                _check_steps(path, pipeline)
            out.pipelines[pipeline.name] = pipeline
        except ConfigError as exc:
            out.errors[str(path)] = str(exc)
    defaults_path = root / "machines" / "_defaults.yaml"
    defaults: dict[str, Any] = {}
    if defaults_path.exists():
        try:
            defaults = _read_yaml(defaults_path)
        except ConfigError as exc:
            out.errors[str(defaults_path)] = str(exc)
    seen: dict[str, Path] = {}
    for path in sorted((root / "machines").glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        try:
            machine = load_machine(path, defaults)
            if machine.pipeline not in out.pipelines:
                close = difflib.get_close_matches(machine.pipeline, out.pipelines, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{path}: field pipeline: no valid pipeline {machine.pipeline!r} in "
                    f"{root / 'pipelines'}{hint} (known: {', '.join(sorted(out.pipelines))})"
                )
            if machine.machine_id in seen:
                raise ConfigError(
                    f"{path}: field machine_id: {machine.machine_id!r} is already defined in "
                    f"{seen[machine.machine_id]}; machine ids must be unique"
                )
            seen[machine.machine_id] = path
            out.machines[machine.machine_id] = machine
        except ConfigError as exc:
            out.errors[str(path)] = str(exc)
    return out
