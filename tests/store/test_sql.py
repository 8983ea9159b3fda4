"""DuckDB over the artifacts: views of the current Delta versions, scripts, the CLI, exit safety."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from meshinsights.cli import app
from meshinsights.errors import StoreError
from meshinsights.model import TELEMETRY_SCHEMA, Window
from meshinsights.store import DeltaStore
from meshinsights.store.sql import ArtifactSQL, split_statements
from tests.conftest import REPO
from tests.dashboard.seed import run_demo

runner = CliRunner()
DAY1 = Window.parse("2024-01-01", "2024-01-02")
HVAC_TABLES = ("issues", "thresholds", "threshold_updates", "anomalies", "anomalies_mv")


@pytest.fixture(scope="module")
def seeded(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The minimal pipeline for hvac-001 and hvac-002 over 2024-01-01..02 (read-only tests)."""
    root = tmp_path_factory.mktemp("sql") / "artifacts"
    run_demo(root, demo_db, ["hvac-001", "hvac-002"], "2024-01-01", "2024-01-03")
    return root


@pytest.fixture
def writable(seeded: Path, tmp_path: Path) -> DeltaStore:
    """A private copy of the seeded store, for tests that write to it."""
    import shutil

    shutil.copytree(seeded, tmp_path / "artifacts")
    return DeltaStore(str(tmp_path / "artifacts"))


def sql(store: Path | str, *args: str, input: str | None = None):
    return runner.invoke(app, ["--store", str(store), "sql", *args], input=input)


def test_every_table_is_a_view_with_the_current_rows(seeded: Path):
    store = DeltaStore(str(seeded))
    with ArtifactSQL(store) as engine:
        for info in store.tables():
            expected = len(store.read_all(info.namespace, info.name))
            for view in (f"{info.namespace}__{info.name}", info.name):
                result = engine.execute(f'SELECT count(*) AS n FROM "{view}"')
                assert result.column("n")[0].as_py() == expected, view
        assert set(engine.views) == {f"minimal__{t.name}" for t in store.tables()} | {
            t.name for t in store.tables()
        }


def test_sql_reads_the_current_version_not_a_parquet_glob(writable: DeltaStore):
    before = len(writable.read_all("minimal", "telemetry"))
    day1 = writable.read("minimal", "telemetry", "hvac-001", DAY1)
    kept = day1[day1["metric"] == "temperature"]
    writable.overwrite(
        "minimal", "telemetry", kept, machine_ids="hvac-001", window=DAY1, schema=TELEMETRY_SCHEMA
    )
    current = len(writable.read_all("minimal", "telemetry"))
    removed = len(day1) - len(kept)
    assert removed > 0 and current == before - removed

    # The folder still holds the replaced files: a glob returns the removed rows too.
    glob = f"{writable.root}/minimal/telemetry/**/*.parquet"
    con = duckdb.connect()
    globbed = con.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0]
    con.close()
    assert globbed == before + len(kept)

    result = sql(writable.root, "-e", "SELECT count(*) AS n FROM telemetry")
    assert result.exit_code == 0, result.output
    assert str(current) in result.output and str(globbed) not in result.output
    with ArtifactSQL(writable) as engine:
        n = (
            engine.execute(
                "SELECT count(*) AS n FROM minimal__telemetry WHERE machine_id = "
                "'hvac-001' AND ts < '2024-01-02'"
            )
            .column("n")[0]
            .as_py()
        )
    assert n == len(kept)


def test_a_name_in_several_pipelines_is_their_union(writable: DeltaStore):
    other = writable.read("minimal", "telemetry", "hvac-002", DAY1).head(10)
    writable.overwrite(
        "other", "telemetry", other, machine_ids="hvac-002", window=DAY1, schema=TELEMETRY_SCHEMA
    )
    with ArtifactSQL(writable) as engine:
        counts = {
            v: engine.execute(f"SELECT count(*) AS n FROM {v}").column("n")[0].as_py()
            for v in ("telemetry", "minimal__telemetry", "other__telemetry")
        }
        assert engine.views["telemetry"].sources[0][:2] == ("minimal", "telemetry")
    assert counts["other__telemetry"] == 10
    assert counts["telemetry"] == counts["minimal__telemetry"] + 10


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("select 1; select 2", ["select 1", "select 2"]),
        (
            "select ';' as a;\n-- c; d\nselect \"x;y\" from t",
            ["select ';' as a", 'select "x;y" from t'],
        ),
        ("/* a; b */ select 1;;  ;\n-- only a comment", ["/* a; b */ select 1"]),
        ("select 'it''s; fine'", ["select 'it''s; fine'"]),
    ],
    ids=["plain", "quotes-and-line-comment", "block-comment-and-empties", "escaped-quote"],
)
def test_split_statements(script: str, expected: list[str]):
    assert [s.sql for s in split_statements(script)] == expected


def test_requires_directive_and_titles():
    stmts = split_statements(
        "-- File header.\n\n-- Top issues\n-- across machines.\n"
        "-- requires: issues, thresholds\nSELECT 1;\nSELECT 2;"
    )
    assert stmts[0].requires == ("issues", "thresholds")
    assert stmts[0].title == "Top issues across machines."
    assert stmts[1].requires == () and stmts[1].title == "" and stmts[1].label == "SELECT 2"


def test_history_view_has_every_commit(seeded: Path):
    store = DeltaStore(str(seeded))
    with ArtifactSQL(store) as engine:
        history = engine.execute("SELECT * FROM meshinsights_history").to_pandas()
    expected = sum(len(store.history(t.namespace, t.name)) for t in store.tables())
    assert len(history) == expected
    ingest = history[(history["step"] == "ingest") & (history["table_name"] == "telemetry")]
    assert len(ingest) == 4  # 2 machines × 2 days
    assert (
        ingest["rows_in"]
        == ingest["rows_clean"] + ingest["rows_quarantined"] + ingest["duplicates_removed"]
    ).all()
    assert ingest["run_id"].str.startswith("local__").all()


def test_errors_name_the_problem(seeded: Path):
    with ArtifactSQL(DeltaStore(str(seeded))) as engine:
        with pytest.raises(StoreError, match="did you mean telemetry"):
            engine.execute("SELECT * FROM telemetri")
        with pytest.raises(StoreError, match="statement 'broken'.*syntax error"):
            engine.run_script("-- broken\nSELEC 1;")
    result = sql(seeded, "-e", "SELECT * FROM nope_nope")
    assert result.exit_code != 0 and isinstance(result.exception, StoreError)


def test_out_writes_csv_and_parquet(seeded: Path, tmp_path: Path):
    query = "SELECT machine_id, metric, count(*) AS n FROM telemetry GROUP BY ALL ORDER BY ALL"
    with ArtifactSQL(DeltaStore(str(seeded))) as engine:
        expected = engine.execute(query).to_pandas()
    assert len(expected) == 2 * 4  # two machines × four metrics
    for name in ("out.csv", "out.parquet"):
        result = sql(seeded, "-e", query, "--out", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        got = (
            pd.read_csv(tmp_path / name)
            if name.endswith(".csv")
            else pq.read_table(tmp_path / name).to_pandas()
        )
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_interactive_prompt(seeded: Path):
    result = sql(
        seeded,
        input="SELECT 6 * 7\n  AS answer;\n.tables\nSELECT * FROM nope;\n.quit\n"
        "SELECT 'never reached';\n",
    )
    assert result.exit_code == 0, result.output
    assert "answer" in result.output and "42" in result.output
    assert "minimal__temperature_hourly" in result.output  # .tables
    flat = " ".join(result.output.split())
    assert "Table with name nope does not exist" in flat  # an error; the prompt goes on
    assert "never reached" not in result.output


_EXIT_RIGHT_AFTER_A_LIMIT = """
import sys
from meshinsights.store import DeltaStore
from meshinsights.store.sql import ArtifactSQL
engine = ArtifactSQL(DeltaStore(sys.argv[1]))
print(engine.execute("SELECT * FROM minimal__telemetry LIMIT 3").num_rows)
# no close(): the interpreter exits while the scan was abandoned early
"""


def test_limit_query_exits_cleanly(seeded: Path):
    # pyarrow's threaded scanner, abandoned by a LIMIT, hung or crashed (SIGSEGV) the interpreter
    # at exit in most runs; the serial dataset must make every run exit 0.
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, "-c", _EXIT_RIGHT_AFTER_A_LIMIT, str(seeded)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (proc.returncode, proc.stdout.strip()) == (0, "3"), proc.stderr[-2000:]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from meshinsights.cli import main; main()",
            "--store",
            str(seeded),
            "sql",
            "-e",
            "SELECT machine_id, ts, value FROM telemetry LIMIT 3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "3 row(s)" in proc.stdout, proc.stderr[-2000:]
    assert "leaked" not in proc.stderr


def _result(results, title: str):
    (table,) = [r.table for r in results if r.statement.title.startswith(title)]
    return table


def test_query_artifacts_file_on_a_day_one_store(seeded: Path):
    text = (REPO / "query_artifacts.sql").read_text()
    with ArtifactSQL(DeltaStore(str(seeded))) as engine:
        results = engine.run_script(text)
    skipped = {r.statement.requires[0] for r in results if r.skipped}
    assert skipped == set(HVAC_TABLES)  # and every other statement ran
    daily = _result(results, "Per-machine daily averages").to_pandas()
    assert len(daily) == 2 * 2 * 4  # machines × days × metrics
    assert (daily["samples"] == 1440).all()
    runs = _result(results, "The 20 most recent runs").to_pandas()
    assert sorted(runs["machines"]) == ['["hvac-001"]', '["hvac-002"]']  # one run per machine
    assert set(runs["first_day"].astype(str)) == {"2024-01-01"}
    assert set(runs["last_day"].astype(str)) == {"2024-01-02"}
    quality = _result(results, "Data quality per ingest window").to_pandas()
    assert len(quality) == 4 and (quality["pct_clean"] <= 100).all()
    result = sql(seeded, "-f", str(REPO / "query_artifacts.sql"))
    assert result.exit_code == 0, result.output
    assert result.output.count("skipped") == len(HVAC_TABLES)


def test_query_artifacts_file_on_an_hvac_power_store(demo_db: Path, tmp_path: Path):
    store = run_demo(
        tmp_path / "artifacts",
        demo_db,
        ["hvac-003"],
        "2024-01-01",
        "2024-01-03",
        pipeline="hvac_power",
    )
    with ArtifactSQL(store) as engine:
        results = engine.run_script((REPO / "query_artifacts.sql").read_text())
    present = set(store.table_names("hvac_power"))
    assert set(HVAC_TABLES) <= present
    for r in results:  # skipped exactly when a required table is absent
        assert bool(r.skipped) == (not set(r.statement.requires) <= present), r.statement.label
    tables = {r.statement.requires[0]: r.table for r in results if r.statement.requires}
    issues = tables["issues"].to_pandas()
    assert "short_cycling" in set(issues["check"])
    thresholds = tables["thresholds"].to_pandas()
    assert set(thresholds["window_start"].astype(str)) == {"2024-01-01", "2024-01-02"}
    anomalies = tables["anomalies"].to_pandas()
    assert (anomalies["scored"] == 2880).all()  # two days of one-minute scores per metric


def test_stray_folders_in_the_store_are_ignored(writable: DeltaStore):
    root = Path(writable.root)
    (root / "lost+found").mkdir()
    (root / "minimal" / "Not-A-Table" / "_delta_log").mkdir(parents=True)
    with ArtifactSQL(writable) as engine:
        assert "minimal__telemetry" in engine.views
        assert not any("Not-A-Table" in v or "lost" in v for v in engine.views)
        assert engine.execute("SELECT count(*) AS n FROM meshinsights_history").num_rows == 1
