"""Security: SQL injection, path traversal, safe YAML and a dashboard without a write path.

Secrets (a database password, an API key) are in test_secrets.py. Injection is tried through
machine ids, config values and dashboard inputs; traversal through every place a table name
becomes a path. The dashboard is checked statically (its source calls nothing that writes) and
at run time (an AppTest run over a store leaves every table version and file as it was).
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
import yaml
from streamlit.testing.v1 import AppTest

import meshinsights
import meshinsights.dashboard
from meshinsights.config import load_configs
from meshinsights.connectors.base import PluginManager
from meshinsights.dashboard import data
from meshinsights.engine.ingest import run_ingest
from meshinsights.engine.runner import run_pipeline
from meshinsights.errors import ConfigError, StoreError
from meshinsights.model import TELEMETRY_SCHEMA
from meshinsights.store import DeltaStore
from tests.conftest import CONFIGS, REPO
from tests.reliability.writer import DAY, rows, write

EVIL_IDS = ["x' OR '1'='1", "hvac-001'; DROP TABLE telemetry; --", 'hvac-001" OR 1=1 --',
            "hvac-001 OR 1=1", "../hvac-001", "hvac-001/../../etc", "%2e%2e%2f", "", "a" * 200,
            "hvac-001\x00", "-hvac", "hvac;001", "hvac-001\n"]
TRAVERSAL = ["../x", "../../etc/passwd", "/etc/passwd", "..%2F..%2Fx", "%2e%2e%2fx", "x/../../y",
             "..", ".", "x\\..\\y", "C:\\x", "file:///etc", "x\x00", "Telemetry", "", "a b",
             "x;rm -rf", "a" * 64, "telemetry\n", "t\r\nx"]


# ---------------------------------------------------------------- SQL injection


def _configs_with(tmp_path: Path, machine: dict | None = None, pipeline: dict | None = None
                  ) -> Path:
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    if machine is not None:
        (configs / "machines" / "evil.yaml").write_text(yaml.safe_dump(machine))
    if pipeline is not None:
        (configs / "pipelines" / "evil.yaml").write_text(yaml.safe_dump(pipeline))
    return configs


@pytest.mark.parametrize("evil", EVIL_IDS, ids=range(len(EVIL_IDS)))
def test_machine_ids_that_could_inject_or_traverse_are_refused_at_load(tmp_path, evil):
    loaded = load_configs(_configs_with(tmp_path, {"machine_id": evil, "pipeline": "minimal"}))
    error = loaded.errors[str(tmp_path / "configs" / "machines" / "evil.yaml")]
    assert "field machine_id" in error and "invalid machine id" in error
    assert evil not in loaded.machines and "hvac-001" in loaded.machines  # the fleet still loads


@pytest.mark.parametrize("evil", EVIL_IDS, ids=range(len(EVIL_IDS)))
def test_store_refuses_injecting_machine_ids_and_reads_nothing_for_them(tmp_path, evil):
    root = str(tmp_path / "store")
    version = write(root, "hvac-001", 1)
    store = DeltaStore(root)
    frame = rows("hvac-001", 2).assign(machine_id=evil)
    with pytest.raises(ConfigError, match="invalid machine id"):
        store.overwrite("rel", "t", frame, machine_ids=evil, window=DAY, schema=TELEMETRY_SCHEMA)
    assert store.version("rel", "t") == version
    assert store.read("rel", "t", evil, DAY).empty  # a filter value, never a predicate
    assert len(store.read("rel", "t", "hvac-001", DAY)) == 1440


@pytest.mark.parametrize("evil", ["x' OR '1'='1", "temperature'; DROP TABLE telemetry; --",
                                  "temperature' UNION SELECT * FROM events --"])
def test_config_values_reach_the_source_as_bound_values(demo_db, store, evil):
    """A source param from YAML is bound, never spliced: it matches nothing and drops nothing."""
    honest = _metric_machine("temperature")
    s = run_ingest(honest, _pipeline(), DAY, store, run_id="honest",
                   resolver=lambda _: f"sqlite:///{demo_db}", manager=PluginManager())
    assert s["rows_in"] == 1440
    s = run_ingest(_metric_machine(evil), _pipeline(), DAY, store, run_id="evil",
                   resolver=lambda _: f"sqlite:///{demo_db}", manager=PluginManager())
    assert s["rows_in"] == 0
    s = run_ingest(honest, _pipeline(), DAY, store, run_id="again",
                   resolver=lambda _: f"sqlite:///{demo_db}", manager=PluginManager())
    assert s["rows_in"] == 1440  # the source table is whole


def _metric_machine(metric: str):
    from meshinsights.config import MachineConfig

    return MachineConfig.model_validate({
        "machine_id": "hvac-001", "pipeline": "inj", "start_date": "2024-01-01",
        "source": {"type": "sql", "conn_id": "inj", "params": {"metric": metric},
                   "query": "SELECT machine_id, ts, metric, value, unit, ingested_at FROM "
                            "telemetry WHERE machine_id = :machine_id AND metric = :metric "
                            "AND ts >= :start AND ts < :end"}})


def _pipeline():
    from meshinsights.config import PipelineConfig

    return PipelineConfig(name="inj", steps=[])


@pytest.mark.parametrize("field", ["id", "output", "name", "inputs", "when"])
def test_table_and_step_names_from_config_are_checked(tmp_path, field):
    evil = "x; DROP TABLE telemetry"
    step = {"id": "summary", "uses": "window_summary"}
    pipeline = {"name": "evil", "steps": [step]}
    if field == "name":
        pipeline["name"] = "../evil"
    elif field == "inputs":
        step["inputs"] = {"telemetry": "../../telemetry"}
    elif field == "when":
        step["when"] = {"any": [{"table": evil, "min_rows": 1}]}
    else:
        step[field] = evil
    configs = _configs_with(tmp_path, pipeline=pipeline)
    loaded = load_configs(configs)
    assert set(loaded.pipelines) == {"minimal", "hvac_power"}
    error = loaded.errors[str(configs / "pipelines" / "evil.yaml")]
    assert "invalid table name" in error or "'../../telemetry' is produced by no" in error, error


# ---------------------------------------------------------------- path traversal


@pytest.mark.parametrize("name", TRAVERSAL, ids=range(len(TRAVERSAL)))
def test_table_names_never_become_paths_outside_the_store(tmp_path, name):
    root = tmp_path / "store"
    write(str(root), "m", 1)
    store = DeltaStore(str(root))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    calls = {
        "uri": lambda ns, t: store.uri(ns, t),
        "exists": lambda ns, t: store.exists(ns, t),
        "version": lambda ns, t: store.version(ns, t),
        "history": lambda ns, t: store.history(ns, t),
        "read": lambda ns, t: store.read(ns, t, "m", DAY),
        "read_all": lambda ns, t: store.read_all(ns, t),
        "overwrite": lambda ns, t: store.overwrite(ns, t, rows("m", 3), machine_ids="m",
                                                   window=DAY, schema=TELEMETRY_SCHEMA),
        "compact": lambda ns, t: store.compact(ns, t),
        "vacuum": lambda ns, t: store.vacuum(ns, t, retention_hours=0),
        "table_names": lambda ns, _t: store.table_names(ns),
    }
    for what, call in calls.items():
        for ns, table in ((name, "t"), ("rel", name)):
            if what == "table_names" and ns == "rel":
                continue
            with pytest.raises(ConfigError, match="invalid table name"):
                call(ns, table)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# ---------------------------------------------------------------- the dashboard


@pytest.fixture(scope="module")
def dash_store(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The minimal pipeline run for hvac-001 over one day (the dashboard's input)."""
    root = tmp_path_factory.mktemp("dash") / "artifacts"
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_MESHINSIGHTS_DEMO", f"sqlite:///{demo_db}")
    try:
        run_pipeline(load_configs(CONFIGS), "hvac-001", DAY, DeltaStore(str(root)))
    finally:
        mp.undo()
    return root


@pytest.mark.parametrize("ns,table,machine", [
    ("../minimal", "telemetry", "hvac-001"), ("minimal", "../../etc/passwd", "hvac-001"),
    ("minimal", "telemetry", "hvac-001' OR '1'='1"), ("minimal", "telemetry", "../hvac-001"),
    ("minimal; DROP", "telemetry", "hvac-001"), ("minimal", "telemetry", "hvac-002"),
    ("other", "telemetry", "hvac-001"), ("minimal", "secrets", "hvac-001"),
])
def test_dashboard_reads_only_names_in_the_store_listing(dash_store, ns, table, machine):
    ro = data.ReadOnlyStore(str(dash_store))
    catalog = data.load_catalog(ro)
    assert len(data.read_window(ro, catalog, "minimal", "telemetry", "hvac-001", DAY)) > 1000
    if not catalog.has(ns, table):  # absent tables read as empty, never as a path
        assert data.read_window(ro, catalog, ns, table, machine, DAY).empty
    with pytest.raises(StoreError):
        catalog.check(ns, table, machine)
    assert not hasattr(ro, "overwrite") and not hasattr(ro, "store")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def fresh_caches() -> Iterator[None]:
    """Streamlit caches are process-wide: start empty."""
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


EVIL_LINKS = [
    {"pipeline": "../../etc", "machine": "hvac-001' OR '1'='1", "start": "2024-01-01",
     "end": "2024-01-01"},
    {"pipeline": "minimal", "machine": "../../../etc/passwd", "start": "'; DROP TABLE x; --"},
    {"machine": "hvac-001", "start": "2024-01-01T00:00:00+99:00", "end": "../x"},
]


@pytest.mark.parametrize("params", EVIL_LINKS, ids=range(len(EVIL_LINKS)))
def test_dashboard_links_cannot_steer_reads_or_write(dash_store, monkeypatch, fresh_caches,
                                                     params):
    store = DeltaStore(str(dash_store))
    versions = {t.name: t.version for t in store.tables()}
    before = _snapshot(dash_store)
    monkeypatch.setenv("MESHINSIGHTS_STORE", str(dash_store))
    app = Path(meshinsights.dashboard.__file__).resolve().parent / "app.py"
    at = AppTest.from_file(str(app), default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="pipeline").value == "minimal"
    assert at.selectbox(key="machine_minimal").value == "hvac-001"
    assert any("not in the store" in w.value or "no data in the store" in w.value
               or "not YYYY-MM-DD" in w.value for w in at.sidebar.warning)
    assert {t.name: t.version for t in store.tables()} == versions
    assert _snapshot(dash_store) == before  # not one file written, touched or removed


WRITE_CALLS = {"overwrite", "compact", "vacuum", "delete", "create_checkpoint", "optimize",
               "write_deltalake", "restore", "merge", "cleanup_metadata", "_commit_with_retry",
               "_commit_once", "_create", "to_delta", "to_parquet", "to_csv", "unlink", "rmtree",
               "write_text", "write_bytes", "mkdir", "replace_table", "sql", "execute"}


def _calls_and_imports(path: Path) -> tuple[set[str], set[str], set[str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    calls, imports, attrs = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            calls.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
        elif isinstance(node, ast.Import):
            imports |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imports |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Attribute):
            attrs.add(node.attr)
    return calls, imports, attrs


def test_dashboard_source_has_no_write_path():
    folder = Path(meshinsights.dashboard.__file__).resolve().parent
    files = sorted(folder.glob("*.py"))
    assert {f.name for f in files} >= {"app.py", "data.py", "charts.py"}
    for path in files:
        calls, imports, attrs = _calls_and_imports(path)
        assert not calls & WRITE_CALLS, (path.name, calls & WRITE_CALLS)
        assert not any(i.split(".")[0] == "deltalake" for i in imports), path.name
        assert "_ReadOnlyStore__store" not in attrs, path.name  # no reaching past the wrapper
        if path.name != "data.py":  # only the read-only wrapper may hold a DeltaStore
            assert not any("DeltaStore" in i or i.startswith("meshinsights.store") for i in
                           imports), (path.name, imports)
    public = {n for n in vars(data.ReadOnlyStore) if not n.startswith("_")}
    assert "read" in public and not public & (WRITE_CALLS | {"store", "delta", "table"}), public


# ---------------------------------------------------------------- YAML


PAYLOADS = [
    "machine_id: !!python/object/apply:os.system ['touch {marker}']\npipeline: minimal\n",
    "!!python/object/apply:subprocess.check_call [['touch', '{marker}']]\n",
    "machine_id: hvac-x\npipeline: !!python/name:os.system\n",
    "machine_id: !!python/object/new:type ['X', !!python/tuple [], {{}}]\npipeline: minimal\n",
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_yaml_python_tags_are_refused_and_never_run(tmp_path, payload):
    configs = _configs_with(tmp_path)
    marker = tmp_path / "pwned"
    (configs / "machines" / "evil.yaml").write_text(payload.format(marker=marker))
    (configs / "pipelines" / "evil.yaml").write_text(payload.format(marker=marker))
    loaded = load_configs(configs)
    assert not marker.exists()
    for kind in ("machines", "pipelines"):
        error = loaded.errors[str(configs / kind / "evil.yaml")]
        assert "not valid YAML" in error and "python" in error
    assert "hvac-001" in loaded.machines


def test_no_unsafe_yaml_loader_anywhere():
    unsafe = re.compile(r"yaml\.(load|load_all|unsafe_load|full_load)\s*\(|Loader\s*=\s*yaml\."
                        r"(Loader|UnsafeLoader|FullLoader)")
    roots = [Path(meshinsights.__file__).parent, REPO / "dags", REPO / "plugins",
             REPO / "scripts"]
    hits = [f"{p}:{i}" for root in roots if root.exists() for p in root.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if unsafe.search(line)]
    assert hits == []


def test_frames_are_never_pickled_or_evaluated():
    """No eval/exec/pickle on anything that could come from a source, a config or a link."""
    bad = re.compile(r"\b(eval|exec)\(|pickle\.loads?\(|pd\.read_pickle|\.query\(f?\"")
    root = Path(meshinsights.__file__).parent
    hits = [f"{p.relative_to(root)}:{i}: {line.strip()}" for p in root.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if bad.search(line) and not line.lstrip().startswith("#")]
    assert hits == [], hits
