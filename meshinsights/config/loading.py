"""Loading a config folder: YAML read, defaults merged, every bad file reported with its fix."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from meshinsights.config.fleet import fleet_key, scan_machine_files
from meshinsights.config.machines import SHAPE_KEYS, MachineConfig
from meshinsights.config.pipelines import PipelineConfig
from meshinsights.errors import ConfigError
from meshinsights.model import RESERVED_TABLES, SOURCE_TABLES

__all__ = [
    "LoadedConfigs",
    "load_configs",
    "load_machine_configs",
    "machine_of_dag",
    "load_group_configs",
    "load_pipeline",
    "load_machine",
]


@dataclass
class LoadedConfigs:
    """What a config folder holds: valid pipelines and machines, and one error per bad file."""

    root: Path
    pipelines: dict[str, PipelineConfig] = field(default_factory=dict)
    machines: dict[str, MachineConfig] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: The file each valid machine came from.
    paths: dict[str, Path] = field(default_factory=dict)

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


#: A config file larger than this is refused before parsing (configs are a few KB).
MAX_CONFIG_BYTES = 1_000_000
#: YAML aliases a config may use; an "alias bomb" (nested anchors) would expand exponentially.
MAX_ALIASES = 100


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents with more than MAX_ALIASES aliases."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(
                    f"more than {MAX_ALIASES} aliases (*name): expand them, configs need few"
                )
        return super().compose_node(parent, index)


def _parse_yaml(path: Path, text: str) -> Any:
    # libyaml's safe loader is several times faster, which matters at thousands of machine
    # files; a text without '*' has no aliases to count. Errors are re-read by the Python
    # loader so that the message is the same whichever parser ran first.
    if _CLoader is not None and "*" not in text:
        fast = _CLoader(text)  # libyaml's SafeLoader: plain data only
        try:
            return fast.get_single_data()
        except yaml.YAMLError:
            pass
        finally:
            fast.dispose()
    try:
        loader = _Loader(text)  # a SafeLoader: plain data only, no Python objects
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc)[:300]}); fix the syntax") from None


_CLoader = getattr(yaml, "CSafeLoader", None)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: {path.stat().st_size:,} bytes is too large for a config file "
                f"(limit {MAX_CONFIG_BYTES:,}); split it or remove what does not belong"
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a config file; rename it (no .yaml)") from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.strerror or exc}); fix or remove the file "
            "(a broken symlink?)"
        ) from None
    data = _parse_yaml(path, text)
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


def _short(value: Any, limit: int = 80) -> str:
    """A bounded repr: never renders more than a few levels of a (possibly huge) value."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded_repr() -> reprlib.Repr:
    r = reprlib.Repr()  # keyword arguments only from Python 3.12
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset = 3, 4, 4, 4, 4
    r.maxstring = r.maxother = 60
    return r


_REPR = _bounded_repr()


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
        shown = "" if err["type"] == "missing" else f" (got {_short(value)})"
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


def _merge_defaults(defaults: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` deep-merged over ``defaults``; a default source of another type lends only the
    options every source type has (its queries and connection stay out)."""
    base = dict(defaults)
    src, own = base.get("source"), raw.get("source")
    if isinstance(src, dict) and isinstance(own, dict):
        kind = own.get("type", src.get("type"))
        if kind != src.get("type"):
            base["source"] = {k: v for k, v in src.items() if k in SHAPE_KEYS}
    return _deep_merge(base, raw)


def load_machine(
    path: Path, defaults: dict[str, Any] | None = None, *, root: Path | None = None
) -> MachineConfig:
    """Parse one machine file (merged over ``_defaults.yaml``); raises ConfigError.

    A relative path option of the source (its ``path_fields``: a file source's ``path``) is
    made absolute against ``root`` (the config folder given to the CLI, the DAGs or the
    loader), so every reader resolves it the same way.
    """
    raw = _merge_defaults(defaults or {}, _read_yaml(path))
    try:
        machine = MachineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(path, exc)) from None
    source = machine.source
    relative = {
        name: str((root / value).resolve())
        for name in source.path_fields
        if root is not None
        and isinstance(value := getattr(source, name), str)
        and not Path(value).is_absolute()
    }
    if relative:
        machine = machine.model_copy(update={"source": source.model_copy(update=relative)})
    return machine


def _check_overrides(path: Path, machine: MachineConfig, pipeline: PipelineConfig) -> None:
    """Overrides must name the pipeline's steps and valid parameters of them."""
    from meshinsights.steps.registry import get_step

    steps = {s.id: s for s in pipeline.steps}
    for step_id in machine.overrides:
        if step_id not in steps:
            close = difflib.get_close_matches(step_id, steps, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{path}: field overrides.{step_id}: pipeline {pipeline.name!r} has no step "
                f"{step_id!r}.{hint} Its steps: {', '.join(steps)}"
            )
        try:
            get_step(steps[step_id].step_name).bind_params(machine.params_for(steps[step_id]))
        except Exception as exc:  # StepError: unknown or invalid parameter
            raise ConfigError(f"{path}: field overrides.{step_id}: {exc}") from None


def _check_runs(path: Path, machine: MachineConfig, pipeline: PipelineConfig) -> None:
    """A pipeline windowed by run needs sources that say which column holds the run."""
    if pipeline.window == "run" and not getattr(machine.source, "run_column", None):
        raise ConfigError(
            f"{path}: field source.run_column: pipeline {pipeline.name!r} is windowed by run "
            "(window: run) but this source names no run column; set run_column: <the column "
            "holding the run id>, or use a pipeline windowed by time"
        )


def _check_steps(path: Path, pipeline: PipelineConfig) -> None:
    # Imported here: validating step names loads the step library (pandas), which the
    # lightweight config schema itself does not need.
    from meshinsights.steps.registry import get_step

    produced = set(SOURCE_TABLES)
    writers: dict[str, str] = {}
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
        output = s.output or spec.output
        if output in RESERVED_TABLES:
            raise ConfigError(
                f"{path}: field steps.{s.id}.output: {output!r} is written by ingest; a step "
                "must not overwrite it — give the step its own output table"
            )
        if output in writers:
            raise ConfigError(
                f"{path}: field steps.{s.id}: its output table {output!r} is also written by "
                f"step {writers[output]!r}, and each would wipe the other's rows; give one of "
                "them its own output: <table>"
            )
        writers[output] = s.id
        produced.add(output)


def load_configs(
    root: Path | str, *, check_steps: bool = True, only: Callable[[str], bool] | None = None
) -> LoadedConfigs:
    """Load every pipeline and machine under ``root``; collect one error per bad file.

    ``only(machine_id)`` keeps a subset of the fleet (one shard of the DAG files, one task's
    machine): files whose text names another machine are not parsed at all (see
    :mod:`.fleet`). Give a predicate that keeps machines sharing a
    :func:`~meshinsights.config.fleet.fleet_key` together, so id clashes are still refused.
    """
    root = Path(root)
    out = LoadedConfigs(root=root)
    if not root.is_dir():
        out.errors[str(root)] = (
            f"{root}: config folder not found; set MESHINSIGHTS_CONFIGS or --configs"
        )
        return out
    declared = scan_machine_files(root, max_bytes=MAX_CONFIG_BYTES)
    if only is not None:
        declared = {p: d for p, d in declared.items() if d is None or only(d)}
        if not declared:  # none of the wanted machines: spare validating the pipelines
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
        if "group" in defaults:  # refused; the other defaults still apply
            del defaults["group"]
            out.errors[str(defaults_path)] = (
                f"{defaults_path}: field group: cannot be a default — set `group:` in each "
                "member's own file, on its own line (that line is how a group's DAG finds its "
                "machines without parsing the whole fleet)"
            )
    by_id: dict[str, list[Path]] = {}
    loaded: dict[Path, MachineConfig] = {}
    for path in declared:
        try:
            machine = load_machine(path, defaults, root=root)
            if only is not None and not only(machine.machine_id):
                continue
            if machine.pipeline not in out.pipelines:
                close = difflib.get_close_matches(machine.pipeline, out.pipelines, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{path}: field pipeline: no valid pipeline {machine.pipeline!r} in "
                    f"{root / 'pipelines'}{hint} (known: {', '.join(sorted(out.pipelines))})"
                )
            _check_runs(path, machine, out.pipelines[machine.pipeline])
            if check_steps:
                _check_overrides(path, machine, out.pipelines[machine.pipeline])
            loaded[path] = machine
            by_id.setdefault(machine.machine_id, []).append(path)
        except ConfigError as exc:
            out.errors[str(path)] = str(exc)
    _refuse_clashes(loaded, by_id, out)
    _check_groups(out)
    return out


#: DAG-level settings every member of a machine group must share (its one DAG has one each).
GROUP_SHARED = ("schedule", "catchup", "retries", "owner", "alert_conn_id")


def _check_groups(out: LoadedConfigs) -> None:
    """A group whose members cannot share one DAG is refused, with an error in each member's
    file (a group of a run-windowed pipeline, members disagreeing on a DAG-level setting)."""
    groups: dict[tuple[str, str], list[MachineConfig]] = {}
    for machine in out.machines.values():
        if machine.group is not None:
            groups.setdefault((machine.pipeline, machine.group), []).append(machine)
    for (pipeline, group), members in groups.items():
        problem = None
        if out.pipelines[pipeline].window == "run":
            problem = (
                f"pipeline {pipeline} is windowed by run, and a run-windowed pipeline is "
                "scheduled one DAG per machine: remove `group:`"
            )
        for name in GROUP_SHARED:
            values = {m.machine_id: getattr(m, name) for m in sorted(members, key=_mid)}
            if problem is None and len({repr(v) for v in values.values()}) > 1:
                shown = ", ".join(f"{mid}: {v!r}" for mid, v in list(values.items())[:4])
                problem = (
                    f"its members' {name} differ ({shown}); the group's one DAG has one "
                    f"{name}: set it the same in each member, or split the group"
                )
        if problem is None:
            continue
        for m in members:
            path = out.paths.pop(m.machine_id)
            del out.machines[m.machine_id]
            out.errors[str(path)] = f"{path}: field group: group {group!r}: {problem}"


def _mid(machine: MachineConfig) -> str:
    return machine.machine_id


def load_machine_configs(root: Path | str, machine_id: str) -> LoadedConfigs:
    """The pipelines and this one machine, parsing no other machine's file (see :mod:`.fleet`).

    Machines whose ids could clash with it are loaded too, so a clash is refused as in a full
    load; ``.machine(machine_id)`` raises the same errors.
    """
    key = fleet_key(machine_id)
    return load_configs(root, only=lambda other: fleet_key(other) == key)


def load_group_configs(root: Path | str, group: str) -> LoadedConfigs:
    """The pipelines and the members of machine group ``group``, parsing only the files whose
    text names that group (and those whose group their text does not tell plainly)."""
    from meshinsights.config.fleet import UNKNOWN_GROUP, scan_machine_groups

    root = Path(root)
    ids = scan_machine_files(root, max_bytes=MAX_CONFIG_BYTES)
    groups = scan_machine_groups(root, max_bytes=MAX_CONFIG_BYTES)
    # Left out: machines whose text plainly says they are in no group or in another one.
    elsewhere = {
        ids[p] for p, g in groups.items() if ids[p] is not None and g not in (group, UNKNOWN_GROUP)
    }
    loaded = load_configs(root, only=lambda mid: mid not in elsewhere)
    loaded.machines = {k: m for k, m in loaded.machines.items() if m.group == group}
    loaded.paths = {k: p for k, p in loaded.paths.items() if k in loaded.machines}
    return loaded


def machine_of_dag(root: Path | str, dag_id: str) -> MachineConfig | None:
    """The valid machine whose DAG is ``dag_id``, parsing no other machine's file; else None."""
    loaded = load_configs(root, only=lambda other: dag_id.endswith("__" + fleet_key(other)))
    return next((m for m in loaded.machines.values() if m.dag_id == dag_id), None)


def _refuse_clashes(
    loaded: dict[Path, MachineConfig], by_id: dict[str, list[Path]], out: LoadedConfigs
) -> None:
    """Machines whose ids or DAG ids clash are all refused: running "whichever file won"
    would be a silent choice."""
    dag_ids: dict[str, list[Path]] = {}
    group_ids = {m.dag_id for m in loaded.values() if m.group is not None}
    for path, machine in loaded.items():
        if machine.group is None:  # a group's members share its DAG id by design
            dag_ids.setdefault(machine.dag_id, []).append(path)
    for path, machine in loaded.items():
        same_id = [p for p in by_id[machine.machine_id] if p != path]
        same_dag = [p for p in dag_ids.get(machine.dag_id, []) if p != path and p not in same_id]
        if machine.group is None and machine.dag_id in group_ids:
            out.errors[str(path)] = (
                f"{path}: field machine_id: {machine.machine_id!r} gives the DAG id "
                f"{machine.dag_id!r}, which is also a machine group's DAG; rename the machine "
                "or the group"
            )
            continue
        if same_id:
            out.errors[str(path)] = (
                f"{path}: field machine_id: {machine.machine_id!r} is also defined in "
                f"{', '.join(map(str, same_id))}; machine ids must be unique — rename or remove one"
            )
        elif same_dag:
            other = loaded[same_dag[0]].machine_id
            out.errors[str(path)] = (
                f"{path}: field machine_id: {machine.machine_id!r} and {other!r} (in "
                f"{same_dag[0]}) give the same DAG id {machine.dag_id!r} ('.' becomes '_'); "
                "rename one of them"
            )
        else:
            out.machines[machine.machine_id] = machine
            out.paths[machine.machine_id] = path
