"""The grouped grain through real Airflow: one DAG per machine group writes what the members'
own DAGs write, addresses one member on request, leaves out paused members, and fails visibly
(without holding the others) when one member's source fails."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from meshinsights.config import load_configs, load_group_configs
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS
from tests.orchestration.test_fleet_dags import CONTEXT_DAG, CONTEXT_TASK, dagbag, machine_dags

pytestmark = pytest.mark.airflow

NS = "fleetcheck"
DAY2 = datetime(2024, 1, 2, tzinfo=UTC)  # the daily run whose window is 2024-01-01
GROUP_DAG = "fleetcheck__group__plant-a"
# Three steps, one of them a branch: genai runs only where the hourly table has ≥ 30 rows,
# i.e. only for the machine whose override makes the means half-hourly (48 rows, not 24).
PIPELINE = """\
name: fleetcheck
description: the grouped grain's test pipeline
steps:
  - id: average_temperature
    params: {metric: temperature, freq: 1h}
  - id: summary
    uses: window_summary
  - id: genai
    uses: genai_analysis
    when:
      all:
        - {table: temperature_hourly, min_rows: 30}
    params: {provider: auto, model: gpt-4o-mini}
"""
MACHINES = {
    "hvac-001": "",
    "hvac-002": "",
    "hvac-003": "overrides:\n  average_temperature: {freq: 30min}\n",
}
# Columns that differ between any two runs of the same work (ids, wall-clock times).
VOLATILE = {"run_id", "ingested_at", "analyzed_at", "latency_s"}


def _configs(tmp_path: Path, name: str, group: str | None, extra: dict[str, str] | None = None
             ) -> Path:
    root = tmp_path / name
    (root / "pipelines").mkdir(parents=True)
    (root / "machines").mkdir()
    (root / "pipelines" / "fleetcheck.yaml").write_text(PIPELINE)
    shutil.copy(CONFIGS / "machines" / "_defaults.yaml", root / "machines")
    for mid, body in MACHINES.items():
        text = f"machine_id: {mid}\npipeline: fleetcheck\n{body}{(extra or {}).get(mid, '')}"
        if group:
            text += f"group: {group}\n"
        (root / "machines" / f"{mid}.yaml").write_text(text)
    return root


def _use(monkeypatch, configs: Path, store: Path) -> DeltaStore:
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(configs))
    monkeypatch.setenv("MESHINSIGHTS_STORE", str(store))
    return DeltaStore(str(store))


def _tables(store: DeltaStore) -> dict[str, pd.DataFrame]:
    out = {}
    for info in store.tables():
        if info.namespace != NS:
            continue
        df = store.read_all(NS, info.name)
        df = df.drop(columns=[c for c in df.columns if c in VOLATILE])
        keys = [c for c in df.columns if df[c].dtype != object
                or df[c].map(lambda v: v is None or isinstance(v, str)).all()]
        out[info.name] = df.sort_values(keys).reset_index(drop=True)
    return out


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_the_group_dag_writes_what_the_members_own_dags_write(
        demo_env, airflow_db, tmp_path, monkeypatch):
    own = _use(monkeypatch, _configs(tmp_path, "own", None), tmp_path / "own_store")
    bag = dagbag()
    assert bag.import_errors == {}
    assert {f"fleetcheck__{m}" for m in MACHINES} <= machine_dags(bag)
    for mid in MACHINES:
        run = bag.get_dag(f"fleetcheck__{mid}").test(logical_date=DAY2)
        assert run.state == "success", _states(run)

    grouped = _use(monkeypatch, _configs(tmp_path, "grouped", "plant-a"),
                   tmp_path / "grouped_store")
    bag = dagbag()
    assert bag.import_errors == {}
    assert {d for d in machine_dags(bag) if d.startswith("fleetcheck")} == {GROUP_DAG}
    dag = bag.get_dag(GROUP_DAG)
    # No branch task: the rule is checked per member inside the genai task.
    assert set(dag.task_ids) == {"ingest", "average_temperature", "summary", "genai",
                                 "check_machines"}
    run = dag.test(logical_date=DAY2)
    assert run.state == "success", _states(run)

    mine, theirs = _tables(grouped), _tables(own)
    assert set(mine) == set(theirs) >= {"telemetry", "temperature_hourly", "summary",
                                        "genai_analysis", "runs"}
    for name in set(theirs) - {"runs"}:
        pd.testing.assert_frame_equal(mine[name], theirs[name], check_dtype=False, obj=name)
    # Run history stays per machine: each member has a row per task with its own counts, as
    # its own DAG's runs do (which also record the branch-check task a group does not have).
    # The group also records the members its branch rule left out, as skipped.
    cols = ["machine_id", "task_id", "state", "rows_in", "rows_out", "rows_quarantined"]
    runs_own = theirs["runs"][~theirs["runs"]["task_id"].str.startswith("check_")]
    runs_mine = mine["runs"][mine["runs"]["state"] != "skipped"]
    pd.testing.assert_frame_equal(
        runs_mine[cols].sort_values(cols[:2]).reset_index(drop=True),
        runs_own[cols].sort_values(cols[:2]).reset_index(drop=True), check_dtype=False)
    skipped = mine["runs"][mine["runs"]["state"] == "skipped"]
    assert sorted(zip(skipped["machine_id"], skipped["task_id"], strict=True)) == [
        ("hvac-001", "genai"), ("hvac-002", "genai")]
    assert set(mine["runs"]["dag_id"]) == {GROUP_DAG}
    hourly = mine["temperature_hourly"].groupby("machine_id").size().to_dict()
    assert hourly == {"hvac-001": 24, "hvac-002": 24, "hvac-003": 48}
    assert set(mine["genai_analysis"]["machine_id"]) == {"hvac-003"}  # the rule held there only
    # Two definitions of average_temperature among the members: two commits, not three.
    commits = [h["operationParameters"]["predicate"]
               for h in grouped.history(NS, "temperature_hourly") if "meshinsights.step" in h]
    assert len(commits) == 2
    assert "hvac-001" in commits[1] and "hvac-002" in commits[1] and "hvac-003" in commits[0]


def test_a_one_machine_rerun_through_the_group_dag_touches_no_other_member(
        demo_env, airflow_db, tmp_path, monkeypatch):
    configs = _configs(tmp_path, "grouped", "plant-a")
    store = _use(monkeypatch, configs, tmp_path / "store")
    dag = dagbag().get_dag(GROUP_DAG)
    assert dag.test(logical_date=DAY2).state == "success"
    before = store.read_all(NS, "temperature_hourly")
    others = before[before["machine_id"] != "hvac-002"].sort_values(["machine_id", "ts"])

    conf = {"machines": ["hvac-002"], "start": "2024-01-01T00:00:00+00:00",
            "end": "2024-01-02T00:00:00+00:00",
            "overrides": {"average_temperature": {"freq": "2h"}}}
    run = dag.test(logical_date=datetime(2024, 1, 2, 12, tzinfo=UTC), run_conf=conf)
    assert run.state == "success", _states(run)
    after = store.read_all(NS, "temperature_hourly")
    assert after.groupby("machine_id").size().to_dict() == {
        "hvac-001": 24, "hvac-002": 12, "hvac-003": 48}
    pd.testing.assert_frame_equal(
        after[after["machine_id"] != "hvac-002"].sort_values(["machine_id", "ts"]).reset_index(
            drop=True), others.reset_index(drop=True))
    # Made by another definition (the conf override): status offers the member's backfill
    # through its group's DAG, for that member only.
    from typer.testing import CliRunner

    from meshinsights.cli import app

    result = CliRunner().invoke(app, ["--configs", str(configs), "--store", str(tmp_path / "store"),
                                      "status", "hvac-002", "--airflow"])
    assert result.exit_code == 1, result.output  # 1: there is something to redo
    assert result.output.split() == [
        "airflow", "backfill", "create", "--dag-id", GROUP_DAG, "--from-date",
        "2024-01-01T00:00:00+00:00", "--to-date", "2024-01-02T00:00:00+00:00",
        "--reprocess-behavior", "completed", "--dag-run-conf", '\'{"machines":', '["hvac-002"]}\'']


def test_paused_members_are_left_out_and_a_failing_member_fails_the_run_visibly(
        demo_env, airflow_db, tmp_path, monkeypatch):
    configs = _configs(tmp_path, "grouped", "plant-a", extra={  # retries: 0, fail at once
        "hvac-001": "paused: true\nretries: 0\n",
        "hvac-002": "source: {conn_id: no_such_connection}\nretries: 0\n",
        "hvac-003": "retries: 0\n",
    })
    store = _use(monkeypatch, configs, tmp_path / "store")
    run = dagbag().get_dag(GROUP_DAG).test(logical_date=DAY2)
    states = _states(run)
    assert run.state == "failed", states
    # hvac-002's source failed: the others' steps ran anyway, and the last task says so.
    assert states["ingest"] == states["summary"] == states["genai"] == "success"
    assert states["check_machines"] == "failed"
    ingest = run.get_task_instance("ingest")
    assert ingest.xcom_pull(task_ids="ingest", key="machines") == ["hvac-003"]
    assert set(ingest.xcom_pull(task_ids="ingest", key="failed")) == {"hvac-002"}
    assert ingest.xcom_pull(task_ids="ingest", key="left_out") == {
        "hvac-001": "paused: true in its config"}
    assert set(store.read_all(NS, "summary")["machine_id"]) == {"hvac-003"}
    # Each member's history says what happened to it.
    runs = store.read_all(NS, "runs").set_index(["machine_id", "task_id"])
    assert runs.loc[("hvac-002", "ingest"), "state"] == "failed"
    assert "no_such_connection" in runs.loc[("hvac-002", "ingest"), "error"]
    assert runs.loc[("hvac-001", "ingest"), "state"] == "skipped"
    assert runs.loc[("hvac-003", "summary"), "state"] == "success"
    assert ("hvac-002", "summary") not in runs.index


def test_a_task_parse_of_the_group_dag_builds_it_from_its_members_files_only(
        demo_env, airflow_db, tmp_path, monkeypatch):
    configs = _configs(tmp_path, "grouped", "plant-a")
    for i in range(30):  # machines of no group and of another group
        group = "group: plant-b\n" if i % 2 else ""
        (configs / "machines" / f"unit-{i:02d}.yaml").write_text(
            f"machine_id: unit-{i:02d}\npipeline: fleetcheck\n{group}")
    _use(monkeypatch, configs, tmp_path / "store")
    full = dagbag()
    assert full.import_errors == {}
    assert {d for d in machine_dags(full) if d.startswith("fleetcheck")} == {
        GROUP_DAG, "fleetcheck__group__plant-b",
        *(f"fleetcheck__unit-{i:02d}" for i in range(0, 30, 2))}

    import meshinsights.config.loading as loading

    parsed: list[str] = []
    real = loading.load_machine

    def counting(path, *args, **kwargs):
        parsed.append(Path(path).stem)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loading, "load_machine", counting)
    monkeypatch.setenv(CONTEXT_DAG, GROUP_DAG)
    monkeypatch.setenv(CONTEXT_TASK, "summary")
    bag = dagbag()
    assert machine_dags(bag) == {GROUP_DAG}
    assert sorted(set(parsed)) == sorted(MACHINES)
    assert sorted(load_group_configs(configs, "plant-b").machines) == [
        f"unit-{i:02d}" for i in range(1, 30, 2)]


def test_a_group_whose_members_disagree_is_refused_in_each_members_file(tmp_path):
    configs = _configs(tmp_path, "grouped", "plant-a", extra={"hvac-002": "schedule: '@hourly'\n"})
    loaded = load_configs(configs)
    assert loaded.machines == {}
    assert len(loaded.errors) == 3
    assert all("members' schedule differ" in m and "split the group" in m
               for m in loaded.errors.values()), loaded.errors


def test_a_group_name_a_dag_id_cannot_give_back_is_refused(tmp_path):
    configs = _configs(tmp_path, "grouped", None, extra={"hvac-002": "group: plant.a\n"})
    errors = load_configs(configs).errors
    assert list(errors) == [str(configs / "machines" / "hvac-002.yaml")]
    assert "invalid group 'plant.a'" in next(iter(errors.values()))


def test_group_in_defaults_and_pause_without_a_group_are_refused(tmp_path):
    configs = _configs(tmp_path, "grouped", None, extra={"hvac-001": "paused: true\n"})
    with (configs / "machines" / "_defaults.yaml").open("a") as fh:
        fh.write("group: plant-a\n")
    errors = load_configs(configs).errors
    assert any("group: cannot be a default" in m for m in errors.values()), errors
    assert any("pause an ungrouped machine's own DAG" in m for m in errors.values()), errors


def test_a_group_line_the_scan_cannot_read_is_parsed_not_guessed(tmp_path):
    from meshinsights.config.fleet import UNKNOWN_GROUP, group_in

    assert group_in("machine_id: a\ngroup: plant-a  # east hall\n") == "plant-a"
    assert group_in("machine_id: a\ntags: [grouped]\n") is None
    assert group_in("machine_id: a\n'group': plant-a\n") == UNKNOWN_GROUP
    assert group_in("machine_id: a\n<<: *base\n") == UNKNOWN_GROUP
    assert group_in("{machine_id: a, group: plant-a}\n") == UNKNOWN_GROUP
    configs = _configs(tmp_path, "grouped", None, extra={"hvac-001": '"group": plant-a\n'})
    # The scan cannot tell this file's group, so the group's loader parses it: no member lost.
    assert load_group_configs(configs, "plant-a").machines.keys() == {"hvac-001"}
    assert load_group_configs(configs, "plant-b").machines == {}


def test_a_run_covers_the_asked_started_unpaused_members_and_refuses_strangers(tmp_path):
    """What every group task does first with the run's context (Airflow passes the DagRun;
    here its conf is the only part used)."""
    from types import SimpleNamespace

    from meshinsights.airflow.tasks import _group_setup
    from meshinsights.errors import ConfigError

    configs = _configs(tmp_path, "grouped", "plant-a", extra={
        "hvac-001": "paused: true\n", "hvac-003": "start_date: 2024-01-02\n"})

    def setup(conf):
        context = {"dag_run": SimpleNamespace(conf={
            "start": "2024-01-01T00:00:00+00:00", "end": "2024-01-02T00:00:00+00:00", **conf})}
        return _group_setup(str(configs), str(tmp_path / "store"), NS, "plant-a", context)

    machines, _, _, _, left_out = setup({})
    assert [m.machine_id for m in machines] == ["hvac-002"]
    assert left_out == {"hvac-001": "paused: true in its config",
                        "hvac-003": "start_date 2024-01-02 is after this window"}
    machines, _, _, _, left_out = setup({"machines": ["hvac-002"]})
    assert [m.machine_id for m in machines] == ["hvac-002"] and left_out == {}
    with pytest.raises(ConfigError, match=r"\['hvac-009'\] are not members of group 'plant-a'; "
                                          r"its members: hvac-001, hvac-002, hvac-003"):
        setup({"machines": ["hvac-009"]})


def test_a_step_that_raises_for_one_member_fails_for_the_group_and_writes_none(
        demo_env, tmp_path, monkeypatch):
    """Members share one commit: a step raising for one writes nobody's rows (the task fails
    and Airflow's retry reruns it for all), never a silent partial group."""
    from types import SimpleNamespace

    import meshinsights.engine.runner as runner
    from meshinsights.airflow.tasks import group_ingest_task, group_step_task

    configs = str(_configs(tmp_path, "grouped", "plant-a"))
    store_uri = str(tmp_path / "store")
    context = {"dag_run": SimpleNamespace(conf={
        "start": "2024-01-01T00:00:00+00:00", "end": "2024-01-02T00:00:00+00:00"})}
    ingested = group_ingest_task(configs, store_uri, NS, "plant-a", context)
    assert ingested["machines"] == list(MACHINES) and ingested["failed"] == {}
    real = runner._call

    def broken_for_002(spec, frames, params, machine_id, window, resources):
        if machine_id == "hvac-002":
            raise RuntimeError("sensor map missing")
        return real(spec, frames, params, machine_id, window, resources)

    monkeypatch.setattr(runner, "_call", broken_for_002)
    with pytest.raises(RuntimeError, match="sensor map missing"):
        group_step_task(configs, store_uri, NS, "plant-a", "summary", context)
    assert not DeltaStore(store_uri).exists(NS, "summary")
    monkeypatch.setattr(runner, "_call", real)  # the retry
    done = group_step_task(configs, store_uri, NS, "plant-a", "summary", context)
    assert done["machines"] == list(MACHINES) and done["commits"] == 1
