"""Step registration checks wiring up front; unknown names suggest the closest match."""

from __future__ import annotations

import pandas as pd
import pytest

from meshinsights.errors import StepError
from meshinsights.steps.registry import get_step, registered_steps, step


def test_declared_input_must_be_a_parameter():
    with pytest.raises(TypeError, match=r"declared input\(s\) \['events'\] are not parameters"):
        @step(inputs=["events"], output="x_out")
        def f(telemetry: pd.DataFrame) -> pd.DataFrame:
            return telemetry


def test_other_parameters_need_defaults():
    with pytest.raises(TypeError, match="'freq' is neither a declared input"):
        @step(inputs=["telemetry"], output="x_out")
        def g(telemetry: pd.DataFrame, freq: str) -> pd.DataFrame:
            return telemetry


def test_optional_must_be_an_input():
    with pytest.raises(TypeError, match="optional"):
        @step(inputs=["telemetry"], output="x_out", optional=["events"])
        def h(telemetry: pd.DataFrame) -> pd.DataFrame:
            return telemetry


def test_bad_table_names_are_refused():
    from meshinsights.errors import ConfigError

    with pytest.raises(ConfigError, match="invalid table name"):
        @step(inputs=["../x"], output="y")
        def k(x: pd.DataFrame) -> pd.DataFrame:
            return x


def test_name_clash_with_another_function_is_refused():
    registered_steps()  # the built-ins are loaded lazily; load them before clashing
    with pytest.raises(StepError, match="already registered"):
        @step(inputs=["telemetry"], output="x_out", name="average_temperature")
        def other(telemetry: pd.DataFrame) -> pd.DataFrame:
            return telemetry


def test_unknown_step_lists_known_and_closest():
    with pytest.raises(StepError, match="Did you mean 'window_summary'.*Known steps:"):
        get_step("window_sumary")


def test_builtin_steps_come_through_the_entry_point():
    steps = registered_steps()
    assert {"average_temperature", "window_summary"} <= set(steps)
    spec = steps["average_temperature"]
    assert spec.inputs == ("telemetry",)
    assert spec.param_defaults == {"metric": "temperature", "freq": "1h"}
    assert spec.description.startswith("Mean, min, max")
    with pytest.raises(StepError, match=r"no parameter\(s\) \['bogus'\]"):
        spec.bind_params({"bogus": 1})


def test_third_party_steps_register_through_the_entry_point_group(tmp_path, monkeypatch):
    """A package that declares `meshinsights.steps` entry points is picked up on first use."""
    import sys

    from meshinsights.steps import registry

    (tmp_path / "acme_steps.py").write_text(
        "import pandas as pd\n"
        "from meshinsights.steps.registry import step\n"
        "@step(inputs=['telemetry'], output='acme_out')\n"
        "def acme_rows(telemetry: pd.DataFrame) -> pd.DataFrame:\n"
        "    '''Count rows.'''\n"
        "    return telemetry.head(1)\n"
    )
    dist = tmp_path / "acme_steps-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-steps\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[meshinsights.steps]\nacme = acme_steps\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    try:
        spec = get_step("acme_rows")
        assert (spec.inputs, spec.output, spec.description) == (("telemetry",), "acme_out",
                                                                 "Count rows.")
    finally:
        registry._REGISTRY.pop("acme_rows", None)
        sys.modules.pop("acme_steps", None)
