"""A synthetic multivariate testbed: correlated 1 Hz sensors with one injected fault per run.

Each experiment has ``n_sensors`` sensors driven by three slow latent AR(1) factors (loadings
drawn once per testbed, so sensors are strongly correlated) plus AR(1) sensor noise and a slow
random-walk wander of the operating point — in-control data that a 400-row reference does not
fully cover, as on real rigs. After ``normal_rows`` rows (at least), one fault starts on one to
three sensors and lasts to a random end:

- ``drift``: a ramp reaching ``severity`` standard deviations at the end of the fault;
- ``step``: an offset of ``severity`` standard deviations;
- ``stuck``: the sensor freezes at its last value;
- ``noise``: the sensor noise grows ``1 + severity`` fold;
- ``correlation``: the sensor follows an independent factor of the same variance.

Files are written as ``datetime,<sensors...>,anomaly`` CSVs (``;``-separated like the
benchmark this mimics), one per experiment, named ``<fault>_<i>.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["FAULTS", "experiment", "write_testbed"]

FAULTS = ("drift", "step", "stuck", "noise", "correlation")


def _ar1(rng: np.random.Generator, n: int, phi: float, size: int = 1) -> np.ndarray:
    e = rng.normal(0, np.sqrt(1 - phi**2), (n, size))
    x = np.empty((n, size))
    x[0] = rng.normal(0, 1, size)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def experiment(
    rng: np.random.Generator,
    loadings: np.ndarray,
    fault: str,
    *,
    n: int = 1150,
    normal_rows: int = 500,
    severity: float = 2.0,
) -> pd.DataFrame:
    """One labelled experiment (``anomaly`` is 1 on the fault's rows)."""
    n_sensors = loadings.shape[1]
    latent = _ar1(rng, n, 0.98, loadings.shape[0])
    wander = np.cumsum(rng.normal(0, 0.02, (n, loadings.shape[0])), axis=0)
    signal = (latent + wander) @ loadings
    noise = 0.3 * _ar1(rng, n, 0.5, n_sensors)
    x = signal + noise
    sd = x[:normal_rows].std(axis=0)
    start = int(rng.integers(normal_rows, n - 350))
    end = int(rng.integers(start + 250, n + 1))
    sensors = rng.choice(n_sensors, size=int(rng.integers(1, 4)), replace=False)
    seg = slice(start, end)
    length = end - start
    for s in sensors:
        if fault == "drift":
            x[seg, s] += np.linspace(0, severity * sd[s], length)
        elif fault == "step":
            x[seg, s] += severity * sd[s] * rng.choice([-1, 1])
        elif fault == "stuck":
            x[seg, s] = x[start - 1, s]
        elif fault == "noise":
            x[seg, s] += severity * noise[seg, s]
        elif fault == "correlation":
            other = _ar1(rng, length, 0.98)[:, 0] * signal[:normal_rows, s].std()
            x[seg, s] = other + signal[:normal_rows, s].mean() + noise[seg, s]
        else:
            raise ValueError(f"unknown fault {fault!r}; use one of {FAULTS}")
    label = np.zeros(n, dtype=int)
    label[seg] = 1
    ts = pd.date_range("2024-01-01", periods=n, freq="1s")
    frame = pd.DataFrame(x, columns=[f"s{i + 1}" for i in range(n_sensors)])
    frame.insert(0, "datetime", ts.strftime("%Y-%m-%d %H:%M:%S"))
    frame["anomaly"] = label
    return frame


def write_testbed(
    folder: Path, *, per_fault: int = 6, n_sensors: int = 8, seed: int = 24, n: int = 1150
) -> list[Path]:
    """Write ``per_fault`` experiments of every fault type into ``folder``; return the paths."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(0, 1, (3, n_sensors))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fault in FAULTS:
        for i in range(per_fault):
            severity = float(rng.uniform(1.5, 3.0))
            path = folder / f"{fault}_{i}.csv"
            experiment(rng, loadings, fault, n=n, severity=severity).to_csv(
                path, sep=";", index=False
            )
            paths.append(path)
    return paths
