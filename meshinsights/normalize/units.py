"""Units: the spellings sources use, and conversion of values to a rule's canonical unit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from meshinsights.errors import ConfigError

__all__ = ["UNIT_ALIASES", "canonical_unit", "can_convert", "convert_units"]

#: Spellings sources use for the same unit → the canonical spelling.
UNIT_ALIASES = {
    "°c": "degC",
    "c": "degC",
    "degc": "degC",
    "celsius": "degC",
    "°f": "degF",
    "f": "degF",
    "degf": "degF",
    "fahrenheit": "degF",
    "k": "K",
    "kelvin": "K",
    "w": "W",
    "watt": "W",
    "kw": "kW",
    "kilowatt": "kW",
    "mw": "MW",
    "megawatt": "MW",
    "%": "%",
    "percent": "%",
    "%rh": "%",
    "pa": "Pa",
    "kpa": "kPa",
    "hpa": "hPa",
    "bar": "bar",
    "psi": "psi",
}

_LINEAR: dict[tuple[str, str], Callable[[np.ndarray], np.ndarray]] = {
    ("degF", "degC"): lambda v: (v - 32.0) * 5.0 / 9.0,
    ("degC", "degF"): lambda v: v * 9.0 / 5.0 + 32.0,
    ("K", "degC"): lambda v: v - 273.15,
    ("degC", "K"): lambda v: v + 273.15,
    ("degF", "K"): lambda v: (v - 32.0) * 5.0 / 9.0 + 273.15,
    ("W", "kW"): lambda v: v / 1e3,
    ("kW", "W"): lambda v: v * 1e3,
    ("MW", "kW"): lambda v: v * 1e3,
    ("kW", "MW"): lambda v: v / 1e3,
    ("W", "MW"): lambda v: v / 1e6,
    ("Pa", "kPa"): lambda v: v / 1e3,
    ("kPa", "Pa"): lambda v: v * 1e3,
    ("hPa", "kPa"): lambda v: v / 10.0,
    ("bar", "kPa"): lambda v: v * 100.0,
    ("psi", "kPa"): lambda v: v * 6.894757293168,
}

_TSDB = {"time": "ts", "deviceId": "machine_id", "measure_name": "metric"}


def canonical_unit(unit: object) -> str | None:
    """The canonical spelling of a unit (``°F`` → ``degF``); None for missing."""
    if unit is None or (isinstance(unit, float) and np.isnan(unit)) or unit is pd.NA:
        return None
    text = str(unit).strip()
    return UNIT_ALIASES.get(text.lower(), text) if text else None


def can_convert(source: str | None, target: str | None) -> bool:
    """Whether values in ``source`` units can be expressed in ``target`` units."""
    s, t = canonical_unit(source), canonical_unit(target)
    return s is None or t is None or s == t or (s, t) in _LINEAR


def convert_units(values: pd.Series, source: str | None, target: str | None) -> pd.Series:
    """``values`` (in ``source`` units) expressed in ``target`` units; raises if impossible."""
    s, t = canonical_unit(source), canonical_unit(target)
    if s is None or t is None or s == t:
        return values
    if (s, t) not in _LINEAR:
        raise ConfigError(
            f"no conversion from unit {source!r} to {target!r}; known pairs: "
            + ", ".join(f"{a}→{b}" for a, b in sorted(_LINEAR))
        )
    return pd.Series(_LINEAR[(s, t)](values.to_numpy(dtype="float64")), index=values.index)
