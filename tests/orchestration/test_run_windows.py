"""Pipelines windowed by run (issue 18): a robot's runs share timestamps, arrive in any order
and late; each run is processed whole, exactly once per change, through the local runner and
through real Airflow ``dag.test()``.

The fixture is a long-format robot-run CSV shaped like the seed system's (time, value, field,
robot_id, run_uuid): 2 robots × 3 runs, two runs of a robot starting at the same instant, one
run crossing midnight UTC, one with a 30 s gap in positions, rows shuffled.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from meshinsights.config import load_configs
from meshinsights.engine.ingest import ingest_state
from meshinsights.engine.runner import new_run_id, plan, run_pipeline, run_runs
from meshinsights.engine.runs import run_spans, run_window, runs_updated_since
from meshinsights.errors import ConfigError, StoreError
from meshinsights.model import Window
from meshinsights.store import DeltaStore

NS = "robot_test"
RANGE = Window.parse("2024-03-04", "2024-03-06")
#: (run, start, seconds): r1 and r2 start together; r3 crosses midnight; r2 has a gap.
RUNS = [("r1", "2024-03-04T10:00:00Z", 600), ("r2", "2024-03-04T10:00:00Z", 600),
        ("r3", "2024-03-04T23:55:00Z", 600)]
GAP = ("r2", 200, 230)  # seconds of r2 without positions


def robot_rows(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for robot in ("robot-01", "robot-02"):
        for k, (run, start, n) in enumerate(RUNS):
            t0 = pd.Timestamp(start)
            for i in range(n):
                if (run, *GAP[1:]) == GAP and GAP[1] <= i < GAP[2]:
                    continue
                ts = t0 + pd.Timedelta(seconds=i)
                for axis, speed in (("x", 0.5), ("y", 0.2)):
                    rows.append((ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                                 round(speed * i + k, 3), axis, robot, f"{robot}-{run}"))
                if i % 10 == 0:  # a torque sensor at offset times
                    tt = ts + pd.Timedelta(milliseconds=300)
                    rows.append((tt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                                 float(rng.normal(5, 1)), "torque", robot, f"{robot}-{run}"))
    frame = pd.DataFrame(rows, columns=["time", "value", "field", "robot_id", "run_uuid"])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


PIPELINE = f"""
name: {NS}
window: run
steps:
  - id: summary
    uses: window_summary
  - id: genai
    uses: genai_analysis
    params: {{provider: offline}}
    when: {{any: [{{table: summary, column: max, gt: 300}}]}}  # per run: r2 and r3 reach it
"""

MACHINE = """
machine_id: {robot}
pipeline: {ns}
schedule: "@daily"
start_date: 2024-03-04
source:
  type: file
  path: robot_runs.csv
  layout: long
  ts_column: time
  metric_column: field
  value_column: value
  machine_column: robot_id
  run_column: run_uuid
"""


@pytest.fixture
def robot_configs(tmp_path: Path) -> Path:
    root = tmp_path / "configs"
    (root / "pipelines").mkdir(parents=True)
    (root / "machines").mkdir()
    (root / "pipelines" / f"{NS}.yaml").write_text(PIPELINE)
    for robot in ("robot-01", "robot-02"):
        (root / "machines" / f"{robot}.yaml").write_text(MACHINE.format(robot=robot, ns=NS))
    robot_rows().to_csv(root / "robot_runs.csv", index=False)
    return root


def _run(root: Path, store: DeltaStore, robot: str = "robot-01") -> list[dict]:
    return run_pipeline(load_configs(root), robot, RANGE, store)


def _step_commits(store: DeltaStore, table: str = "summary") -> list[dict]:
    return [c for c in store.history(NS, table) if c.get("meshinsights.step") == "summary"]


def test_every_row_is_accounted_and_runs_overlap_without_rollback(robot_configs: Path,
                                                                    store: DeltaStore) -> None:
    summaries = _run(robot_configs, store)
    source = pd.read_csv(robot_configs / "robot_runs.csv")
    mine = source[source["robot_id"] == "robot-01"]
    ingests = [s for s in summaries if s["step"] == "ingest"]
    assert sum(s["rows_in"] for s in ingests) == len(mine)
    assert sum(s["rows_out"] + s["rows_quarantined"] + s["duplicates_removed"]
               for s in ingests) == len(mine)
    assert all(s["quarantine_rules"] == {} for s in ingests)  # shared timestamps: no rollback
    telemetry = store.read_all(NS, "telemetry")
    assert len(telemetry) == len(mine)
    assert telemetry.groupby("run_id").size().to_dict() == (
        mine.groupby("run_uuid").size().to_dict())
    # The steps ran once per run, each over the whole run (r3 crosses midnight: both days).
    steps = [s for s in summaries if s["step"] == "summary"]
    assert sorted(s["window"]["run"] for s in steps) == [
        "robot-01-r1", "robot-01-r2", "robot-01-r3"]
    summary = store.read_all(NS, "summary")
    expected = mine.groupby(["run_uuid", "field"])["value"].agg(["count", "mean", "max"])
    got = summary.set_index(["run_id", "metric"])[["count", "mean", "max"]].sort_index()
    expected.index.names = ["run_id", "metric"]
    pd.testing.assert_frame_equal(got, expected.sort_index(), check_dtype=False)
    r3 = summary[summary["run_id"] == "robot-01-r3"]
    assert set(r3["ts"]) == {pd.Timestamp("2024-03-04T23:55:00Z")}
    assert set(r3["window_end"]) == {pd.Timestamp("2024-03-05T00:04:59.000001Z")}
    assert ingest_state(store, NS, "robot-01").pending_runs == ()
    # The GenAI analysis of a run, a branch checked per run: x peaks at 299.5 in r1, 300.5 in r2
    # and 301.5 in r3; one current analysis per run that passed, its prompt names the run.
    genai = store.read_all(NS, "genai_analysis")
    assert sorted(genai.loc[genai["current"], "run_id"]) == ["robot-01-r2", "robot-01-r3"]
    assert [s["window"]["run"] for s in summaries if s["step"] == "genai" and s.get("skipped")
            ] == ["robot-01-r1"]
    r3_prompt = genai.loc[genai["run_id"] == "robot-01-r3", "user_prompt"].iloc[0]
    assert "Run: robot-01-r3" in r3_prompt and "2024-03-04T23:55Z to 2024-03-05T00:04Z" in r3_prompt


def test_late_rows_reprocess_that_run_once_and_no_other(robot_configs: Path,
                                                        store: DeltaStore) -> None:
    _run(robot_configs, store)
    before = store.read_all(NS, "summary")
    n_commits = len(_step_commits(store))
    # Unchanged source, same range again: ingest runs, no run changed, no step commits.
    again = _run(robot_configs, store)
    assert [s for s in again if s["step"] == "summary"] == []
    assert len(_step_commits(store)) == n_commits
    # Late rows for r2 (inside its gap) arrive after it was processed.
    late = pd.DataFrame({
        "time": [f"2024-03-04T10:03:{s:02d}.000Z" for s in range(25, 28)],
        "value": [101.0, 102.0, 103.0], "field": ["x"] * 3,
        "robot_id": ["robot-01"] * 3, "run_uuid": ["robot-01-r2"] * 3})
    pd.concat([pd.read_csv(robot_configs / "robot_runs.csv"), late]).to_csv(
        robot_configs / "robot_runs.csv", index=False)
    changed = _run(robot_configs, store)
    ran = [s["window"]["run"] for s in changed if s["step"] == "summary"]
    assert ran == ["robot-01-r2"]  # exactly once, only the run that changed
    after = store.read_all(NS, "summary")
    r2 = after[(after["run_id"] == "robot-01-r2") & (after["metric"] == "x")]
    assert int(r2["count"].iloc[0]) == 570 + 3
    now = pd.read_csv(robot_configs / "robot_runs.csv")
    x = now[(now["run_uuid"] == "robot-01-r2") & (now["field"] == "x")]["value"]
    assert float(r2["mean"].iloc[0]) == pytest.approx(x.mean())
    untouched = lambda f: (f[f["run_id"] != "robot-01-r2"]  # noqa: E731
                           .sort_values(["run_id", "metric"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(untouched(after), untouched(before))
    # And the next run of the same range commits nothing again.
    assert [s for s in _run(robot_configs, store) if s["step"] == "summary"] == []


def test_a_failed_step_leaves_the_run_pending_until_it_succeeds(
        robot_configs: Path, store: DeltaStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import meshinsights.engine.runner as runner

    real = runner._call

    def flaky(spec, frames, params, machine_id, window, resources):
        if window.run == "robot-01-r3":
            raise RuntimeError("disk full")
        return real(spec, frames, params, machine_id, window, resources)

    monkeypatch.setattr(runner, "_call", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        _run(robot_configs, store)
    state = ingest_state(store, NS, "robot-01")
    assert set(state.pending_runs) == {"robot-01-r1", "robot-01-r2", "robot-01-r3"}
    monkeypatch.setattr(runner, "_call", real)
    # No new rows: the next run still processes every pending run, then none is pending.
    second = _run(robot_configs, store)
    assert sorted(s["window"]["run"] for s in second if s["step"] == "summary") == [
        "robot-01-r1", "robot-01-r2", "robot-01-r3"]
    assert ingest_state(store, NS, "robot-01").pending_runs == ()
    assert set(store.read_all(NS, "summary")["run_id"]) == {
        "robot-01-r1", "robot-01-r2", "robot-01-r3"}


def test_rerun_of_one_run_is_idempotent_and_leaves_the_others(robot_configs: Path,
                                                              store: DeltaStore) -> None:
    _run(robot_configs, store)
    _run(robot_configs, store, "robot-02")
    before = store.read_all(NS, "summary").sort_values(["machine_id", "run_id", "metric"])
    configs = load_configs(robot_configs)
    machine = configs.machine("robot-01")
    steps = plan(configs.pipeline_of(machine), machine)
    window = run_window(store, NS, "robot-01", "robot-01-r1")
    assert window.run == "robot-01-r1"
    assert (window.start, window.end) == (datetime(2024, 3, 4, 10, tzinfo=UTC),
                                          datetime(2024, 3, 4, 10, 9, 59, 1, tzinfo=UTC))
    out = run_runs(steps, "robot-01", NS, store, [window], run_id=new_run_id())
    assert [(s["step"], s["window"]["run"], bool(s.get("skipped"))) for s in out] == [
        ("summary", "robot-01-r1", False), ("genai", "robot-01-r1", True)]
    commit = _step_commits(store)[0]
    assert commit["meshinsights.window"]["run"] == "robot-01-r1"
    after = store.read_all(NS, "summary").sort_values(["machine_id", "run_id", "metric"])
    pd.testing.assert_frame_equal(after.reset_index(drop=True), before.reset_index(drop=True))
    with pytest.raises(ConfigError, match="no run 'robot-01-r9'.*robot-01-r1, robot-01-r2"):
        run_window(store, NS, "robot-01", "robot-01-r9")
    # --since: runs whose rows changed at or after a time (all of them, just ingested).
    since = runs_updated_since(store, NS, "robot-01", datetime(2000, 1, 1, tzinfo=UTC))
    assert [w.run for w in since] == ["robot-01-r1", "robot-01-r2", "robot-01-r3"]
    assert runs_updated_since(store, NS, "robot-01", datetime(2199, 1, 1, tzinfo=UTC)) == []
    spans = run_spans(store, NS, "robot-01")
    assert spans["robot-01-r2"].rows == 2 * 570 + 57  # x, y and torque outside the gap


def test_a_run_window_writes_only_its_run(store: DeltaStore) -> None:
    ts = pd.Timestamp("2024-03-04T10:00Z")
    rows = pd.DataFrame({"machine_id": ["m"] * 2, "ts": [ts, ts], "v": [1.0, 2.0],
                         "run_id": ["a", "b"]})
    span = Window(ts.to_pydatetime(), (ts + pd.Timedelta("1s")).to_pydatetime())
    store.overwrite(NS, "t", rows.iloc[:1], machine_ids="m",
                    window=Window(span.start, span.end, "a"))
    store.overwrite(NS, "t", rows.iloc[1:], machine_ids="m",
                    window=Window(span.start, span.end, "b"))
    # Rerun a with a new value: b's row at the same instant stays.
    store.overwrite(NS, "t", rows.iloc[:1].assign(v=9.0), machine_ids="m",
                    window=Window(span.start, span.end, "a"))
    got = store.read_all(NS, "t").sort_values("run_id")
    assert got[["run_id", "v"]].values.tolist() == [["a", 9.0], ["b", 2.0]]
    assert store.read(NS, "t", "m", Window(span.start, span.end, "b"))["v"].tolist() == [2.0]
    with pytest.raises(StoreError, match="1 row\\(s\\) belong to runs other than 'a'"):
        store.overwrite(NS, "t", rows, machine_ids="m", window=Window(span.start, span.end, "a"))


def test_a_run_pipeline_needs_a_run_column(robot_configs: Path) -> None:
    path = robot_configs / "machines" / "robot-01.yaml"
    path.write_text(path.read_text().replace("  run_column: run_uuid\n", ""))
    errors = load_configs(robot_configs).errors
    assert "field source.run_column" in errors[str(path)]
    assert "window: run" in errors[str(path)]


@pytest.mark.airflow
def test_airflow_dag_processes_the_changed_runs_and_a_conf_run(
        robot_configs: Path, airflow_db: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same per-run tables through dag.test() as through the local runner; a DAG run
    with conf {"run": ...} reruns one run and commits nothing else."""
    from meshinsights.airflow.dag_factory import build_dags

    local = DeltaStore(str(tmp_path / "local"))
    _run(robot_configs, local)
    store_uri = str(tmp_path / "af-store")
    # dag.test() syncs the dags folder to the metadata DB: it must see these configs.
    monkeypatch.setenv("MESHINSIGHTS_CONFIGS", str(robot_configs))
    monkeypatch.setenv("MESHINSIGHTS_STORE", store_uri)
    dags, errors = build_dags(robot_configs, store_uri=store_uri)
    assert errors == {}
    dag = dags[f"{NS}__robot-01"]
    assert {"ingest", "summary", "drain_runs"} <= set(dag.task_ids)
    for day in (5, 6):  # the runs after 2024-03-04 and 2024-03-05: their data intervals
        run = dag.test(logical_date=datetime(2024, 3, day, tzinfo=UTC))
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert run.state == "success", states
    af = DeltaStore(store_uri)
    key = ["run_id", "metric"]
    pd.testing.assert_frame_equal(
        af.read_all(NS, "summary").sort_values(key).reset_index(drop=True),
        local.read_all(NS, "summary").sort_values(key).reset_index(drop=True))
    assert ingest_state(af, NS, "robot-01").pending_runs == ()
    analysed = lambda st: sorted(  # noqa: E731
        st.read_all(NS, "genai_analysis").query("current")[["run_id", "user_prompt"]]
        .itertuples(index=False))
    assert analysed(af) == analysed(local) and len(analysed(af)) == 2  # the branch, per run
    # The first day's run processed r1, r2 and r3's first part; the second r3 again (its
    # rows after midnight arrived).
    runs = [c["meshinsights.window"]["run"] for c in reversed(_step_commits(af))]
    assert runs == ["robot-01-r1", "robot-01-r2", "robot-01-r3", "robot-01-r3"]
    rerun = dag.test(logical_date=datetime(2024, 3, 7, tzinfo=UTC),
                     run_conf={"run": "robot-01-r2"})
    assert rerun.state == "success"
    runs = [c["meshinsights.window"]["run"] for c in reversed(_step_commits(af))]
    assert runs[-1] == "robot-01-r2" and len(runs) == 5


def test_status_names_exactly_the_run_whose_rows_changed(robot_configs: Path,
                                                         store: DeltaStore) -> None:
    """Ingest alone (steps not run yet): only the changed run is stale, and --stale reruns it."""
    from meshinsights.engine.ingest import run_incremental
    from meshinsights.engine.runner import run_steps
    from meshinsights.engine.status import run_stale, stale_windows

    _run(robot_configs, store)
    configs = load_configs(robot_configs)
    machine = configs.machine("robot-01")
    pipeline = configs.pipeline_of(machine)
    assert stale_windows(store, pipeline, machine) == []
    late = pd.DataFrame({"time": ["2024-03-04T10:03:25.000Z"], "value": [7.0], "field": ["y"],
                         "robot_id": ["robot-01"], "run_uuid": ["robot-01-r2"]})
    pd.concat([pd.read_csv(robot_configs / "robot_runs.csv"), late]).to_csv(
        robot_configs / "robot_runs.csv", index=False)
    run_incremental(machine, pipeline, Window.day("2024-03-04"), store, run_id="t")
    stale = stale_windows(store, pipeline, machine)
    assert [(s.window.run, s.reason.split(" (")[0]) for s in stale] == [
        ("robot-01-r2", "input telemetry changed")]
    out = run_stale(store, pipeline, machine, run_steps=run_steps, run_id="t2")
    assert [(s["step"], s["window"]["run"]) for s in out] == [
        ("summary", "robot-01-r2"), ("genai", "robot-01-r2")]
    assert stale_windows(store, pipeline, machine) == []


def test_sql_and_export_address_one_run(robot_configs: Path, store: DeltaStore,
                                        tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from meshinsights.cli import app
    from meshinsights.store.sql import ArtifactSQL

    _run(robot_configs, store)
    with ArtifactSQL(store) as sql:
        got = sql.execute(f"SELECT run_id, count(*) AS n FROM {NS}__telemetry "
                        "WHERE machine_id = 'robot-01' GROUP BY run_id ORDER BY run_id")
    assert got is not None
    assert got.to_pandas().values.tolist() == [["robot-01-r1", 1260], ["robot-01-r2", 1197],
                                   ["robot-01-r3", 1260]]
    out = tmp_path / "r3.csv"
    result = CliRunner().invoke(app, ["--store", store.root, "--configs", str(robot_configs),
                                      "export", "telemetry", "-m", "robot-01",
                                      "--run", "robot-01-r3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    exported = pd.read_csv(out)
    assert len(exported) == 1260 and set(exported["run_id"]) == {"robot-01-r3"}
    assert exported["ts"].min().startswith("2024-03-04 23:55")  # across midnight, whole
    assert exported["ts"].max().startswith("2024-03-05 00:04:59")


def test_run_tables_keep_a_file_per_run_and_compaction_leaves_them(robot_configs: Path,
                                                                     store: DeltaStore) -> None:
    """Merging runs into one file would make each later run's overwrite rewrite them all
    (bench/runs.py); the time-windowed telemetry of the same source compacts as usual."""
    _run(robot_configs, store)
    assert store.compact(NS, "summary") == {
        "skipped": "laid out by run: one file per run keeps run writes flat"}
    assert "skipped" not in store.compact(NS, "telemetry")
    assert len(store.read_all(NS, "summary")) == 9


def test_normalization_checks_each_run_on_its_own_and_counts_every_row() -> None:
    from meshinsights.normalize import normalize_events, normalize_telemetry

    day = Window.parse("2024-03-04", "2024-03-05")
    t = ["2024-03-04T10:00:00Z", "2024-03-04T10:00:01Z"]
    raw = pd.DataFrame({
        "ts": [t[0], t[1], t[0], t[1], t[0], t[0], t[0]],
        "metric": ["x"] * 7,
        "value": [1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 1.0],
        "run_id": ["a", "a", "b", "b", None, "a", "a"]})
    result = normalize_telemetry(raw, machine_id="m", window=day)
    # a and b share timestamps: no verdict across runs. Within a, t0 again after t1 with
    # another value is a replay; the exact copy is a duplicate; no run id is quarantined.
    assert result.clean[["run_id", "value"]].values.tolist() == [
        ["a", 1.0], ["a", 2.0], ["b", 3.0], ["b", 4.0]]
    assert sorted(result.by_rule.items()) == [("clock_rollback", 1), ("run_missing", 1)]
    assert result.duplicates_removed == 1 and result.rows_in == 7
    assert set(result.quarantine["run_id"].tolist()) == {"a", None}
    events = pd.DataFrame({"ts": [t[0], t[0]], "kind": ["alarm", "alarm"], "code": ["E1", "E1"],
                           "run_id": ["a", "b"]})
    ev = normalize_events(events, machine_id="m", window=day)
    assert ev.clean["run_id"].tolist() == ["a", "b"] and ev.duplicates_removed == 0


def test_a_direct_ingest_keeps_the_runs_already_pending(robot_configs: Path,
                                                       store: DeltaStore) -> None:
    from meshinsights.engine.ingest import record_drained, run_ingest

    configs = load_configs(robot_configs)
    machine = configs.machine("robot-01")
    pipeline = configs.pipeline_of(machine)
    run_ingest(machine, pipeline, Window.day("2024-03-04"), store, run_id="a")
    assert set(ingest_state(store, NS, "robot-01").pending_runs) == {
        "robot-01-r1", "robot-01-r2", "robot-01-r3"}
    record_drained(store, NS, "robot-01", [], run_id="b", runs=["robot-01-r1"])
    # The next day changes only r3; r2, still pending, stays pending.
    run_ingest(machine, pipeline, Window.day("2024-03-05"), store, run_id="c")
    assert set(ingest_state(store, NS, "robot-01").pending_runs) == {
        "robot-01-r2", "robot-01-r3"}
