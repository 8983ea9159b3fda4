"""Constrained parameter types for step signatures: configs are checked against them on load.

``bind_params`` validates a step's params with pydantic against the function's annotations,
so ``alpha: Fraction`` turns ``alpha: 2`` in a YAML file into an error naming the file, the
step, the parameter and the rule, instead of a numpy error deep inside a run.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

__all__ = ["Duration", "Fraction", "Share", "Positive", "NonNegative", "PositiveInt", "Count"]


def _duration(value: str) -> str:
    import pandas as pd

    try:
        length = pd.Timedelta(value)
        pd.tseries.frequencies.to_offset(value)  # also a frequency: floor/resample/rolling need it
    except (ValueError, TypeError):
        raise ValueError(
            f"{value!r} is not a duration; use a pandas duration such as '1h', '15min', '1D'"
        ) from None
    if length <= pd.Timedelta(0):
        raise ValueError(f"{value!r} must be a positive duration")
    return value


#: A positive pandas duration string: ``1h``, ``15min``, ``1D``.
Duration = Annotated[str, AfterValidator(_duration)]
#: Strictly between 0 and 1 (a level, a probability).
Fraction = Annotated[float, Field(gt=0, lt=1)]
#: From 0 to 1 inclusive (a share of rows).
Share = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
