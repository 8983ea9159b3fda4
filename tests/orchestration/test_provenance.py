"""A changed pipeline shows which partitions it left behind, and reruns exactly those.

Each step commit records its definition's fingerprint and the input versions it read;
``meshinsights status`` compares them with the current configs and the current inputs.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from meshinsights.cli import app
from meshinsights.config import load_configs
from meshinsights.demo import seed
from meshinsights.engine.plan import plan
from meshinsights.engine.runner import run_pipeline, run_step
from meshinsights.engine.status import stale_windows
from meshinsights.errors import StoreError
from meshinsights.model import Window
from meshinsights.steps.registry import step
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS

NS, MID = "minimal", "hvac-001"
runner = CliRunner()


def day(n: int) -> Window:
    start = datetime(2024, 1, n, tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, DeltaStore]:
    """Configs copied aside (so a test can edit them) and days 1-3 run."""
    src = tmp_path / "src.db"
    seed(f"sqlite:///{src}", machines=1, days=4, seed=7)
    monkeypatch.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{src}")
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    store = DeltaStore(str(tmp_path / "artifacts"))
    run_pipeline(load_configs(configs), MID, Window(day(1).start, day(4).start), store)
    return configs, store


def _stale(configs: Path, store: DeltaStore) -> list[tuple[str, Window, str]]:
    loaded = load_configs(configs)
    machine = loaded.machine(MID)
    found = stale_windows(store, loaded.pipeline_of(machine), machine)
    return [(x.step, x.window, x.reason) for x in found]


def _cli(configs: Path, store: DeltaStore, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--configs", str(configs), "--store", store.root, *args])
    return result.exit_code, result.output


def test_a_fresh_run_has_nothing_stale_and_status_exits_0(setup) -> None:
    configs, store = setup
    assert _stale(configs, store) == []
    code, output = _cli(configs, store, "status", MID, "--json")
    assert code == 0, output
    assert json.loads(output) == {"machine_id": MID, "pending": [], "stale": []}


def test_a_param_override_makes_exactly_that_steps_windows_stale_and_run_stale_redoes_them(
    setup,
) -> None:
    configs, store = setup
    summary_version = store.history(NS, "summary")[0]["version"]
    hourly_before = store.read_all(NS, "temperature_hourly")
    assert len(hourly_before) == 3 * 24
    (configs / "machines" / f"{MID}.yaml").write_text(
        f"machine_id: {MID}\npipeline: minimal\noverrides:\n"
        "  average_temperature: {freq: 30min}\n"
    )
    stale = _stale(configs, store)
    assert stale == [
        ("average_temperature", day(n), "definition changed (params or code)") for n in (1, 2, 3)
    ]
    code, output = _cli(configs, store, "status", MID)
    assert code == 1
    assert "meshinsights run hvac-001 --stale" in output

    code, output = _cli(configs, store, "run", MID, "--stale")
    assert code == 0, output
    assert "0 stale left" in output
    hourly = store.read_all(NS, "temperature_hourly")
    assert len(hourly) == 3 * 48  # the new definition's rows, every window
    # The steps whose definition did not change were not rerun.
    assert store.history(NS, "summary")[0]["version"] == summary_version
    assert _stale(configs, store) == []


def test_an_input_changed_after_a_step_read_it_marks_the_readers_of_that_window(setup) -> None:
    configs, store = setup
    summary_version = store.history(NS, "summary")[0]["version"]
    telemetry = store.read(NS, "telemetry", MID, day(2))
    telemetry["value"] = telemetry["value"] + 1.0  # a manual repair of day 2, outside the steps
    store.overwrite(
        NS, "telemetry", telemetry, machine_ids=MID, window=day(2),
        metadata={"meshinsights.step": "manual_fix", "meshinsights.window": day(2).as_dict()},
    )
    stale = _stale(configs, store)
    assert {(step, w) for step, w, _ in stale} == {
        ("average_temperature", day(2)),
        ("summary", day(2)),
    }
    assert all(reason.startswith("input telemetry changed") for _, _, reason in stale)

    code, output = _cli(configs, store, "run", MID, "--stale", "--json")
    assert code == 0, output
    # summary reran for day 2 only, and its new rows reflect the repaired readings.
    assert store.history(NS, "summary")[0]["version"] > summary_version
    summary = store.read(NS, "summary", MID, day(2))
    temp = summary[summary["metric"] == "temperature"]
    assert temp["mean"].iloc[0] == pytest.approx(
        telemetry.loc[telemetry["metric"] == "temperature", "value"].mean()
    )
    # genai reads summary: its day-2 window became stale in turn and was rerun too.
    assert _stale(configs, store) == []


_GROWN = {"on": False}


@step(
    inputs=["telemetry"],
    output="evolve_probe",
    schema=pa.schema(
        [("machine_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("rows", pa.int64())]
    ),
)
def evolve_probe(telemetry: pd.DataFrame, *, window: Window) -> pd.DataFrame:
    """One row per window; once ``_GROWN`` is on, with a column the schema does not declare."""
    frame = pd.DataFrame({"ts": [pd.Timestamp(window.start)], "rows": [len(telemetry)]})
    if _GROWN["on"]:
        frame["rows_clean"] = len(telemetry)
    return frame


def test_evolve_true_on_the_step_config_lets_a_new_column_in(setup, tmp_path: Path) -> None:
    configs, store = setup
    pipeline = configs / "pipelines" / "minimal.yaml"
    pipeline.write_text(pipeline.read_text() + "  - id: probe\n    uses: evolve_probe\n")

    def run(evolve: bool) -> None:
        text = pipeline.read_text().replace("    evolve: true\n", "")
        pipeline.write_text(text + ("    evolve: true\n" if evolve else ""))
        loaded = load_configs(configs)
        machine = loaded.machine(MID)
        (probe,) = [s for s in plan(loaded.pipeline_of(machine), machine) if s.id == "probe"]
        assert probe.evolve is evolve
        run_step(probe, MID, day(1), store, namespace=NS)

    run(evolve=False)
    _GROWN["on"] = True
    try:
        with pytest.raises(StoreError, match="set evolve: true on the step"):
            run(evolve=False)
        assert "rows_clean" not in store.read_all(NS, "evolve_probe").columns
        run(evolve=True)
    finally:
        _GROWN["on"] = False
    table = store.read_all(NS, "evolve_probe")
    assert table["rows_clean"].tolist() == [table["rows"].iloc[0]]
    assert store.history(NS, "evolve_probe")[0]["meshinsights.evolve"] is True


def test_every_step_commit_records_its_fingerprint_and_the_input_versions_it_read(setup) -> None:
    """Every step commit carries what status needs: fingerprint and the input versions read."""
    _, store = setup
    commit = store.history(NS, "summary")[0]
    assert isinstance(commit["meshinsights.fingerprint"], str)
    assert set(commit["meshinsights.inputs"]) == {"telemetry"}
    read = commit["meshinsights.inputs"]["telemetry"]
    # The version read is the telemetry commit the run made just before this step.
    telemetry = [c for c in store.history(NS, "telemetry") if c["timestamp"] <= commit["timestamp"]]
    assert read == max(c["version"] for c in telemetry if c.get("meshinsights.step") == "ingest")


def test_provenance_is_queryable_in_the_history_view(setup) -> None:
    from meshinsights.store.sql import ArtifactSQL

    _, store = setup
    with ArtifactSQL(store) as engine:
        rows = engine.execute(
            "SELECT step, fingerprint, inputs FROM meshinsights_history "
            "WHERE table_name = 'summary' ORDER BY version DESC LIMIT 1"
        ).to_pylist()
    assert rows[0]["step"] == "summary"
    assert rows[0]["fingerprint"] == store.history(NS, "summary")[0]["meshinsights.fingerprint"]
    assert set(json.loads(rows[0]["inputs"])) == {"telemetry"}
